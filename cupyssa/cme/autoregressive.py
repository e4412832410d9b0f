"""Autoregressive distributions over bounded count vectors: NADE and MADE in NumPy.

A model over ``n = (n_0, ..., n_{S-1})`` with per-species caps ``M_i`` (``0 <= n_i < M_i``) is

    P_theta(n) = prod_i P(n_i | n_<i),    P(. | n_<i) = softmax(logits_i(n_<i))  over 0..M_i-1.

Every model exposes the flat parameter vector ``theta`` ([P]), exact ancestral sampling, exact
``log P`` and hand-written **per-sample** gradients ``G[s] = d log P(n_s) / d theta`` ([N, P]),
which the natural-gradient and TDVP solvers need. Those solvers use ``G`` only through the sample
Gram matrix ``G G^T`` ([N, N]) and products ``G^T v`` ([P]): :meth:`log_prob_and_jacobian`
returns a :class:`Jacobian` offering exactly these, which NADE computes from its factors without
forming ``G`` (:class:`NADEJacobian`).

Inputs to the networks are the scaled counts ``u_j = n_j / M_j`` (so every input lies in
``[0, 1)``, whatever the caps), or, after :meth:`AutoregressiveModel.standardize_inputs`, the
standardized counts ``u_j = (n_j - mu_j) / sigma_j``. For MADE that is a change of parameters
(the first layer's bias absorbs the centre); for NADE the centre also shifts each conditional's
hidden pre-activation by its own amount, which the shared bias ``c`` does not absorb. Either way
it changes what a fit with fewer samples than parameters does, since a minimum-norm step moves
the parameters with large gradients most: with ``n_j / M_j``, a law ``sigma_j`` counts wide moves
the inputs by only ``sigma_j / M_j`` (3x3 Schlögl lattice: 5-10 of 85), so at the start the
hidden units hardly depend on ``n_<i`` and the gradients of the weights into them are small.

Logits are kept padded to ``[N, S, M_max]`` with ``-inf`` beyond each species' cap; only the
real entries are parameters.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..errors import CupyssaError
from ..kernels.blockwise import per_species_matmul
from ..kernels.softmax import log_prob_and_logit_adjoint, log_prob_of_hidden, log_prob_rows

__all__ = ["AutoregressiveModel", "NADE", "MADE", "ModelSpecError", "Jacobian", "DenseJacobian",
           "NADEJacobian"]


class ModelSpecError(CupyssaError, ValueError):
    """Invalid autoregressive-model specification or input (caps, widths, states)."""


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


#: NADE's hidden activations: ``name -> (f, f' as a function of h = f(a))``
_ACTIVATIONS = {"sigmoid": (_sigmoid, lambda h: h * (1.0 - h)),
                "tanh": (np.tanh, lambda h: 1.0 - h * h)}
#: NADE's activation unless another is chosen
DEFAULT_ACTIVATION = "sigmoid"


class AutoregressiveModel:
    """Base class: caps bookkeeping, ragged softmax, sampling and log-probabilities.

    Subclasses implement :meth:`_logits` (teacher-forced logits ``[N, S, M_max]`` given full
    states; the logits of species ``i`` may depend only on ``n_<i``) and :meth:`_backward`
    (per-sample gradients given ``dL/dlogits`` per sample).
    """

    def __init__(self, caps):
        caps = np.asarray(caps, dtype=np.int64).reshape(-1)
        if caps.size == 0 or np.any(caps < 1):
            raise ModelSpecError(f"caps must be a non-empty sequence of integers >= 1, got {caps}")
        self.caps = caps
        self.S = int(caps.size)
        self.M_max = int(caps.max())
        #: [S, M_max] True where the value m < M_i is allowed
        self.valid = np.arange(self.M_max)[None, :] < caps[:, None]
        #: ``valid``, or None when every entry is (equal caps): no masking pass is needed then
        self._mask = None if self.valid.all() else self.valid
        #: the network's inputs are ``(n - input_center) / input_scale`` ([S] each)
        self.input_center, self.input_scale = self._default_inputs()
        self.theta = np.zeros(0)

    # -- parameters ------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return int(self.theta.size)

    def get_params(self) -> np.ndarray:
        return self.theta.copy()

    def set_params(self, theta) -> None:
        theta = np.asarray(theta, dtype=float)
        if theta.shape != self.theta.shape:
            raise ModelSpecError(f"parameter vector has shape {theta.shape}, expected {self.theta.shape}")
        self.theta = theta.copy()

    def set_product_law(self, log_probs) -> None:
        """Make the model the product law ``P(n) = prod_i p_i(n_i)`` exactly: the output biases
        are ``log_probs[i]`` ([M_i] each, normalized or not) and the weights into the outputs
        are zero, so no conditional depends on ``n_<i`` (the hidden layers keep their weights:
        the outputs' gradients still reach them once those weights move)."""
        self.theta[self._output_weights] = 0.0
        self.set_marginal_bias(log_probs)

    def copy(self) -> "AutoregressiveModel":
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.theta = self.theta.copy()
        return new

    # -- states ----------------------------------------------------------------------------
    def check_states(self, n) -> np.ndarray:
        n = np.asarray(n)
        if n.ndim != 2 or n.shape[1] != self.S:
            raise ModelSpecError(f"states must have shape [N, {self.S}], got {n.shape}")
        return n.astype(np.int64)

    def in_box(self, n) -> np.ndarray:
        """``[...]`` bool: every ``0 <= n_i < M_i``."""
        return np.all((n >= 0) & (n < self.caps), axis=-1)

    def standardize_inputs(self, center, scale) -> None:
        """Feed the network ``u_j = (n_j - center_j) / scale_j`` instead of ``n_j / M_j``.

        Parameters
        ----------
        center, scale : [S] counts (``scale > 0``), e.g. the mean and standard deviation of the
            law the network starts from.

        The law the parameters hold changes unless the weights into the outputs are zero (a
        product law, :meth:`set_product_law`): call it before fitting, not in the middle of an
        evolution.
        """
        center = np.asarray(center, dtype=float)
        scale = np.asarray(scale, dtype=float)
        if center.shape != (self.S,) or scale.shape != (self.S,):
            raise ModelSpecError(f"center and scale must have shape ({self.S},), got "
                                 f"{center.shape} and {scale.shape}")
        if not (np.all(np.isfinite(center)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise ModelSpecError("input center must be finite and input scale finite and > 0, got "
                                 f"{center.tolist()} and {scale.tolist()}")
        self.input_center, self.input_scale = center, scale

    def _scaled(self, n):
        return (n - self.input_center) / self.input_scale

    def _default_inputs(self):
        """Centre 0 and scale the caps: inputs ``n / M``."""
        return np.zeros(self.S), self.caps.astype(float)

    def definition(self, as_built: bool = False) -> dict:
        """What defines the law besides ``theta`` and the caps: the inputs' centre and scale
        (and NADE's activation), as arrays; ``as_built``: those a model has before
        :meth:`standardize_inputs`, with the constructor's defaults."""
        center, scale = self._default_inputs() if as_built else (self.input_center,
                                                                   self.input_scale)
        return {"input_center": center, "input_scale": scale}

    # -- core ------------------------------------------------------------------------------
    @property
    def _output_weights(self) -> slice:  # pragma: no cover - abstract
        """The entries of ``theta`` that carry ``n_<i`` into the logits."""
        raise NotImplementedError

    @property
    def _output_biases(self) -> slice:  # pragma: no cover - abstract
        """The entries of ``theta`` holding the output biases ``b`` (the real entries of
        ``[S, M_max]``, row-major): ``logits_i(m) = b_i(m) + (terms in n_<i)``."""
        raise NotImplementedError

    def set_marginal_bias(self, log_probs) -> None:
        """Set ``b_i`` so that, ignoring the weights into the outputs, conditional ``i`` is
        ``log_probs[i]`` ([M_i])."""
        b = np.zeros((self.S, self.M_max))
        for i, lp in enumerate(log_probs):
            b[i, :self.caps[i]] = lp
        self.theta[self._output_biases] = b[self.valid]

    def tilt_conditionals(self, f) -> None:
        """Add ``f[i, m]`` to the logit of value ``m`` of conditional ``i`` at every context:
        ``P(n_i = m | n_<i)`` becomes ``∝ P(n_i = m | n_<i) exp(f[i, m])``.

        Parameters
        ----------
        f : [S, M_max] (entries beyond each cap are ignored)
        """
        f = np.asarray(f, dtype=float)
        if f.shape != (self.S, self.M_max):
            raise ModelSpecError(f"tilt must have shape ({self.S}, {self.M_max}), got {f.shape}")
        self.theta[self._output_biases] += f[self.valid]

    def _logits(self, n):  # pragma: no cover - abstract
        raise NotImplementedError

    def _backward(self, cache, dlogits):  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_softmax(self, logits, alpha=1.0):
        return _masked_log_softmax(logits if alpha == 1.0 else alpha * logits, self._mask)

    def conditionals(self, n) -> np.ndarray:
        """``[N, S, M_max]`` conditional probabilities ``P(n_i = m | n_<i)`` (0 beyond caps)."""
        n = self.check_states(n)
        logits, _ = self._logits(n)
        return np.exp(self._log_softmax(logits))

    def log_prob(self, n) -> np.ndarray:
        """Exact ``log P_theta(n)`` ``[N]``; ``-inf`` for states outside the caps."""
        n = self.check_states(n)
        inside = self.in_box(n)
        nc = np.where(inside[:, None], n, 0)
        return np.where(inside, self._log_prob_in_box(nc), -np.inf)

    def _log_prob_in_box(self, n):
        """``log P`` ``[N]`` of states ``n`` inside the caps (the forward pass alone)."""
        return log_prob_rows(self._logits(n)[0], n, self.caps)

    def log_prob_and_grad(self, n):
        """``(log P [N], G [N, P])`` with ``G[s] = d log P(n_s) / d theta`` (states in the box).

        With ``g_i = onehot(n_i) - softmax(logits_i)`` the gradient w.r.t. the logits of sample
        ``s`` is ``g`` itself; :meth:`_backward` chains it into the parameters per sample.
        """
        lp, cache, g = self._logits_adjoint(n, "log_prob_and_grad")
        return lp, self._backward(cache, g)

    def log_prob_and_jacobian(self, n):
        """``(log P [N], J)``: the per-sample gradients of :meth:`log_prob_and_grad` as a
        :class:`Jacobian` (``J.gram() = G G^T``, ``J.rmatvec(v) = G^T v``), for the solvers that
        need no more than that."""
        lp, cache, g = self._logits_adjoint(n, "log_prob_and_jacobian")
        return lp, self._jacobian(cache, g)

    def _logits_adjoint(self, n, caller):
        """``(log P [N], cache of _logits, g [N, S, M_max])`` with ``g = d log P / d logits``."""
        n = self.check_states(n)
        if not np.all(self.in_box(n)):
            raise ModelSpecError(f"{caller} needs states inside the caps")
        logits, cache = self._logits(n)
        lp, g = log_prob_and_logit_adjoint(logits, n, self.caps)
        return lp, cache, g

    def _jacobian(self, cache, g) -> "Jacobian":
        return DenseJacobian(self._backward(cache, g))

    def sample(self, n_samples: int, rng: np.random.Generator, alpha: float = 1.0,
               eps: float = 0.0, lo=None, hi=None):
        """Ancestral sampling, optionally from a proposal.

        The proposal conditional is ``q_i = (1 - eps) softmax(alpha * logits_i) + eps U_i``
        (``U_i`` uniform over ``0..M_i-1``), restricted to ``lo_i <= n_i <= hi_i`` when bounds
        are given (renormalized). ``alpha = 1, eps = 0`` and no bounds is exact sampling from
        ``P_theta``.

        Returns
        -------
        n : [N, S] int64
        log_p : [N] ``log P_theta(n)``
        log_q : [N] log-probability of ``n`` under the proposal that drew it
        """
        N = int(n_samples)
        n = np.zeros((N, self.S), dtype=np.int64)
        log_p = np.zeros(N)
        log_q = np.zeros(N)
        lo = np.zeros(self.S, np.int64) if lo is None else np.asarray(lo, np.int64)
        hi = self.caps - 1 if hi is None else np.asarray(hi, np.int64)
        m = np.arange(self.M_max)
        step = self._sampler(N)
        for i in range(self.S):
            logits_i = step(n, i)  # [N, M_max]
            valid = self.valid[i]
            mask = None if self._mask is None else valid
            lp_i = _masked_log_softmax(logits_i, mask)
            if alpha == 1.0 and eps == 0.0:
                q = np.exp(lp_i)
            else:
                tempered = np.exp(_masked_log_softmax(alpha * logits_i, mask))
                q = (1.0 - eps) * tempered + eps * valid / self.caps[i]
            window = valid & (m >= lo[i]) & (m <= hi[i])
            q = np.where(window, q, 0.0)
            mass = q.sum(axis=1)
            if np.any(mass <= 0):
                raise ModelSpecError(f"empty sampling window for species {i}: [{lo[i]}, {hi[i]}]")
            cdf = np.cumsum(q, axis=1)
            r = rng.random(N) * mass
            # inverse CDF; clamp round-off past the end to the last value of positive mass
            last = self.M_max - 1 - np.argmax(q[:, ::-1] > 0, axis=1)
            k = np.minimum((cdf < r[:, None]).sum(axis=1), last)
            n[:, i] = k
            log_p += lp_i[np.arange(N), k]
            log_q += np.log(q[np.arange(N), k] / mass)
        return n, log_p, log_q

    def _sampler(self, N):
        """A function ``(n, i) -> logits_i [N, M_max]`` given ``n[:, :i]`` (generic: one full
        teacher-forced pass per species; subclasses may do it incrementally)."""
        def step(n, i):
            logits, _ = self._logits(n)
            return logits[:, i]
        return step

    def enumerate_states(self, limit: int = 200_000) -> np.ndarray:
        """All states of the box ``[prod M_i, S]`` (only when there are at most ``limit``)."""
        total = int(np.prod(self.caps.astype(float)))
        if total > limit:
            raise ModelSpecError(f"the box holds {total} states, more than limit={limit}")
        grids = np.meshgrid(*[np.arange(c) for c in self.caps], indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=1)


def _legendre_basis(cap: int, degree: int) -> np.ndarray:
    """``[cap, k]``, ``k = min(degree, cap - 1)``: the Legendre polynomials of degrees ``1..k``
    on ``m = 0..cap-1`` (mapped to [-1, 1]), made orthonormal over those points and orthogonal
    to the constant (which the softmax ignores)."""
    k = min(degree, cap - 1)
    if k == 0:
        return np.zeros((cap, 0))
    x = np.linspace(-1.0, 1.0, cap)
    P = np.polynomial.legendre.legvander(x, k)[:, 1:]
    # Gram-Schmidt in degree order, against the constant too: the basis spans the polynomials
    # of degree <= k modulo constants, whatever the points do to Legendre's orthogonality
    q, _ = np.linalg.qr(P - P.mean(axis=0))
    return q


def _masked_log_softmax(z, valid):
    """``log softmax`` over the last axis restricted to ``valid`` (-inf outside; None: all)."""
    if valid is not None:
        z = np.where(valid, z, -np.inf)
    zmax = z.max(axis=-1, keepdims=True)
    return z - (zmax + np.log(np.exp(z - zmax).sum(axis=-1, keepdims=True)))


class Jacobian:
    """Per-sample gradients ``G [N, P]`` seen through what the Fisher solves use."""

    shape: tuple  # (N, P)

    @property
    def gram_entry_cost(self) -> int:
        """Multiply-adds per entry of :meth:`gram` (``P`` for the assembled rows)."""
        return self.shape[1]

    def gram(self) -> np.ndarray:
        """``G G^T`` [N, N]."""
        raise NotImplementedError

    def rmatvec(self, v) -> np.ndarray:
        """``G^T v`` [P] for ``v`` [N]."""
        raise NotImplementedError

    def rmatmat(self, V) -> np.ndarray:
        """``G^T V``: [P] for ``V`` [N], [P, Q] for ``V`` [N, Q] (one :meth:`rmatvec` per
        column unless a subclass has better)."""
        V = np.asarray(V)
        if V.ndim == 1:
            return self.rmatvec(V)
        return np.stack([self.rmatvec(v) for v in V.T], axis=1)

    def dense(self) -> np.ndarray:
        """``G`` [N, P] itself."""
        raise NotImplementedError

    def left_multiply(self, C) -> np.ndarray:
        """``C G`` [R, P] for a sparse ``C`` [R, N] (``scipy.sparse``): combinations of the
        per-sample gradients, e.g. a state's gradient minus weighted ones of its neighbours."""
        return C @ self.dense()


class DenseJacobian(Jacobian):
    """A Jacobian held as the matrix ``G``."""

    def __init__(self, G):
        self.G = G
        self.shape = G.shape

    def gram(self):
        return self.G @ self.G.T

    def rmatvec(self, v):
        return self.G.T @ v

    def rmatmat(self, V):
        return self.G.T @ V

    def dense(self):
        return self.G


class NADEJacobian(Jacobian):
    """NADE's per-sample gradients from their factors (see :meth:`NADE._backward`).

    With ``g_i`` the logit adjoints and ``h_i`` the hidden units of conditional ``i``, the ``V``
    and ``b`` blocks of ``G_s`` are ``g_i h_i^T`` and ``g_i``, so their Gram matrix is
    ``sum_i (g_i g_i^T) * (h_i h_i^T + 1)`` (elementwise product): ``N^2 sum_i (M_i + H)``
    operations instead of ``N^2 sum_i M_i H`` for the product of assembled rows (2-site Schlögl,
    M = 85, H = 8: 7x fewer), plus the small ``W`` and ``c`` blocks.
    """

    def __init__(self, model, cache, g, dA, R):
        u, h, V, W = cache
        N = g.shape[0]
        self.model, self.cache, self.g, self.dA, self.R = model, cache, g, dA, R
        #: what the output weights' columns take for the hidden units (``h - hbar`` in
        #: centred coordinates)
        self.h = model._output_inputs(h)
        self.shape = (N, model.n_params)
        #: [N, H S + H] the ``W`` and ``c`` blocks of ``G``, laid out as in ``theta``
        self.small = np.concatenate([(R * u[:, :, None]).transpose(0, 2, 1).reshape(N, -1),
                                     dA.sum(axis=1)], axis=1)

    @property
    def gram_entry_cost(self):
        return self.small.shape[1] + sum(cap + self.h.shape[2] for cap in self.model.caps)

    def gram(self):
        K = self.small @ self.small.T
        m = self.model
        for i, cap in enumerate(m.caps):
            g = self.g[:, i, :cap]  # the real entries only
            h = self.h[:, i]
            block = h @ h.T
            gg = g @ g.T
            if m._basis[i] is None:  # (g g^T) * (h h^T + 1)
                block += 1.0
                block *= gg
            else:  # (g Phi Phi^T g^T) * (h h^T) + g g^T
                gv = m._output_adjoint(g, i)
                block *= gv @ gv.T
                block += gg
            K += block
        return K

    def rmatvec(self, v):
        m = self.model
        o = m._offsets
        out = np.empty(m.n_params)
        out[o[0]:o[2]] = self.small.T @ v
        gv = self.g * v[:, None, None]  # [N, S, M]
        dV = np.matmul(gv.transpose(1, 2, 0), self.h.transpose(1, 0, 2))  # [S, M, H]
        if m.output_degree is None:
            out[o[2]:o[3]] = dV[m._vmask]
        else:
            for i, cap, v_block, _ in m._output_blocks():
                out[v_block] = (m._basis[i].T @ dV[i, :cap]).reshape(-1)
        out[o[3]:o[4]] = gv.sum(axis=0)[m.valid]
        return out

    def dense(self):
        return self.model._backward(self.cache, self.g, self.dA, self.R, self.h)

    def left_multiply(self, C):
        """``C G`` from the factors: row ``r`` of the ``V`` block of species ``i`` is
        ``sum_s C[r, s] g_i(s) h_i(s)^T``, one ``[M_i, J] @ [J, H]`` product per row over its
        ``J`` nonzeros, so the ``[N, P]`` rows of ``G`` are never formed (they would be for
        ``C @ dense()``: on the 3x3 Schlögl lattice, ~60 states per row of ``C``)."""
        m = self.model
        C = C.tocsr()
        R = C.shape[0]
        out = np.empty((R, m.n_params))
        out[:, :m._offsets[2]] = C @ self.small
        # C's nonzeros padded to [R, J]: column index and value (0 in the padding)
        counts = np.diff(C.indptr)
        filled = np.arange(max(int(counts.max(initial=0)), 1)) < counts[:, None]
        cols = np.zeros(filled.shape, dtype=np.int64)
        vals = np.zeros(filled.shape)
        cols[filled], vals[filled] = C.indices, C.data
        for i, cap, v_block, b_block in m._output_blocks():
            g = self.g[cols, i, :cap] * vals[:, :, None]  # [R, J, M_i]
            gv = m._output_adjoint(g, i)
            out[:, v_block] = np.matmul(gv.transpose(0, 2, 1), self.h[cols, i]).reshape(R, -1)
            out[:, b_block] = g.sum(axis=1)
        return out


class NADE(AutoregressiveModel):
    """Neural autoregressive distribution estimator.

    ``a_i = c + W[:, :i] u_<i`` ([H]), ``h_i = f(a_i)``, ``logits_i = b_i + V_i h_i``, with
    ``f`` the logistic sigmoid (default) or ``tanh``.

    Parameter layout of ``theta``: ``W [H, S]``, ``c [H]``, the output weights (``V``: real
    rows of ``[S, M_max, H]``; with ``output_degree`` ``C``: ``[k_i, H]`` per species), ``b``
    (real entries of ``[S, M_max]``).

    Parameters
    ----------
    caps : sequence of int, length S
    hidden : int
        Width ``H``.
    rng : numpy Generator, optional
        Initialisation of ``W`` (``N(0, 1/S)``) and ``V`` (``N(0, init_scale^2)``).
    activation : {"sigmoid", "tanh"}
        ``f``. With ``tanh`` and standardized inputs (:meth:`standardize_inputs`) a unit at
        ``c = 0`` is centred on the law, so its ``V_i h_i`` is not one more copy of the bias
        ``b_i``; with the sigmoid every unit adds ``V_i / 2`` to it.
    output_degree : int, optional
        Restrict the output weights to polynomials in the value: ``V_i = Phi_i C_i`` with
        ``Phi_i [M_i, k_i]`` the Legendre polynomials of degrees ``1..k_i`` in ``m``
        (``k_i = min(output_degree, M_i - 1)``), orthonormal over ``m = 0..M_i-1``. The
        biases ``b_i`` keep every value's own parameter, so the marginal of a conditional is
        as free as before, while the hidden units can only tilt it: with degree 2, shift its
        mean and scale its width as functions of ``n_<i``. ``None`` (default): ``V_i`` free,
        ``M_i H`` parameters per species instead of ``k_i H``. Why: on the 3x3 Schlögl
        lattice (caps 85, ``H`` 8) the free ``V`` is 6,120 of the 6,965 parameters, and a
        step's fit to 2,000 samples puts its noise there; the hidden units then lose their
        spread over the law, and the law its correlations. With degree 2 (and
        ``solve(center_outputs=True)``) that lattice's law keeps SSA's neighbour covariances
        (``benchmarks/RESULTS.md``, session 28). It is a restriction, for wide unimodal
        conditionals: on a small toggle switch (caps 2, 2, 12, 12) degree 2 left the marginals
        0.01-0.06 from FSP where the free ``V`` came within 0.002-0.017.
    """

    def __init__(self, caps, hidden: int = 32, rng=None, init_scale: float = 1e-2,
                 activation: str = DEFAULT_ACTIVATION, output_degree: int | None = None):
        super().__init__(caps)
        if int(hidden) < 1:
            raise ModelSpecError(f"hidden must be >= 1, got {hidden}")
        if activation not in _ACTIVATIONS:
            raise ModelSpecError(f"unknown activation {activation!r}; choose "
                                 f"{' or '.join(map(repr, _ACTIVATIONS))}")
        self.activation = activation
        self.H = H = int(hidden)
        rng = np.random.default_rng(0) if rng is None else rng
        S, Mx = self.S, self.M_max
        self._vmask = np.broadcast_to(self.valid[:, :, None], (S, Mx, H))
        if output_degree is not None and int(output_degree) < 1:
            raise ModelSpecError(f"output_degree must be >= 1 or None, got {output_degree}")
        self.output_degree = None if output_degree is None else int(output_degree)
        #: per species ``Phi_i [M_i, k_i]``, or None where ``V_i`` is free
        self._basis = [None if output_degree is None else _legendre_basis(int(cap), self.output_degree)
                       for cap in caps]
        #: rows of each species' output weights in ``theta`` (``M_i``, or ``k_i``)
        self._out_rows = [int(cap) if B is None else B.shape[1]
                          for cap, B in zip(self.caps, self._basis)]
        nV = H * sum(self._out_rows)
        nb = int(self.valid.sum())
        self._sizes = [H * S, H, nV, nb]
        self._offsets = np.concatenate([[0], np.cumsum(self._sizes)])
        theta = np.zeros(self._offsets[-1])
        theta[:H * S] = rng.normal(0, 1 / np.sqrt(S), H * S)
        theta[self._offsets[2]:self._offsets[3]] = rng.normal(0, init_scale, nV)
        self.theta = theta
        #: ``hbar [S, H]`` while the Jacobians are taken in centred coordinates, else None
        self._hidden_center = None

    def _unpack(self, theta=None):
        th = self.theta if theta is None else theta
        o = self._offsets
        W = th[o[0]:o[1]].reshape(self.H, self.S)
        c = th[o[1]:o[2]]
        V = np.zeros((self.S, self.M_max, self.H))
        if self.output_degree is None:
            V[self._vmask] = th[o[2]:o[3]]
        else:
            for i, cap, v_block, _ in self._output_blocks():
                V[i, :cap] = self._basis[i] @ th[v_block].reshape(-1, self.H)
        b = np.zeros((self.S, self.M_max))
        b[self.valid] = th[o[3]:o[4]]
        return W, c, V, b

    @property
    def _output_weights(self) -> slice:
        return slice(self._offsets[2], self._offsets[3])  # V

    @property
    def _output_biases(self) -> slice:
        return slice(self._offsets[3], self._offsets[4])  # b

    def definition(self, as_built: bool = False) -> dict:
        # the width and output degree too (0: free V), so that a checkpoint names its network:
        # the parameter count alone does not (caps 2, 2, 12, 12: 3 units of degree 2 have as
        # many parameters as 1 unit of free V). ``as_built`` keeps them: a checkpoint written
        # before they were recorded was checked against the parameter count alone
        return {**super().definition(as_built),
                "activation": np.array(DEFAULT_ACTIVATION if as_built else self.activation),
                "hidden": np.array(self.H), "output_degree": np.array(self.output_degree or 0)}

    def widened(self, hidden: int, rng=None) -> "NADE":
        """The same law in a NADE of ``hidden >= H`` units.

        The new units' weights into the outputs are zero, so ``log P_theta`` is unchanged (to
        rounding); their input weights are drawn as a new network's (``N(0, 1/S)``, ``c = 0``),
        so that they differ from one another and a fit moves them once their output weights
        move. For a network that carries a law through a regime where a narrow one is right
        and must then hold more correlation than it can (the MAPK cascade:
        ``benchmarks/RESULTS.md``, session 31). Inputs, activation and output degree are kept.
        """
        if int(hidden) < self.H:
            raise ModelSpecError(f"widened to {hidden} units, fewer than the network's {self.H}")
        wide = NADE(self.caps, hidden=hidden, rng=rng, activation=self.activation,
                    output_degree=self.output_degree)
        wide.standardize_inputs(self.input_center, self.input_scale)
        H, S, o, w = self.H, self.S, self._offsets, wide._offsets
        W_new = wide.theta[:wide.H * S].reshape(wide.H, S)
        W_new[:H] = self.theta[:H * S].reshape(H, S)
        wide.theta[w[1]:w[1] + H] = self.theta[o[1]:o[2]]
        wide.theta[w[1] + H:w[2]] = 0.0
        for (_, _, v_old, b_old), (_, _, v_new, b_new) in zip(self._output_blocks(),
                                                             wide._output_blocks()):
            rows = self.theta[v_old].reshape(-1, H)
            block = np.zeros((len(rows), wide.H))
            block[:, :H] = rows
            wide.theta[v_new] = block.ravel()
            wide.theta[b_new] = self.theta[b_old]
        return wide

    def _hidden(self, n):
        """``(u [N, S], h [N, S, H], W, V, b)``: the inputs, each conditional's hidden units
        and the unpacked parameters."""
        W, c, V, b = self._unpack()
        u = self._scaled(n)  # [N, S]
        # a_i = c + sum_{j<i} W[:, j] u_j  (exclusive cumulative sum over j)
        contrib = u[:, :, None] * W.T[None, :, :]  # [N, S, H]
        A = np.cumsum(contrib, axis=1) - contrib + c
        return u, _ACTIVATIONS[self.activation][0](A), W, V, b

    def _logits(self, n):
        u, h, W, V, b = self._hidden(n)
        logits = per_species_matmul(h, V.transpose(0, 2, 1), b)
        return logits, (u, h, V, W)

    def _log_prob_in_box(self, n):
        # the logits made row by row where the softmax reads them: the same bits as the base
        # class's path without its [N, S, M_max] array (MAPK's implicit step: 60 % of its time
        # was the forward pass over ~10^5 predecessor states, most of it that array's traffic)
        _, h, _, V, b = self._hidden(n)
        return log_prob_of_hidden(h, V, b, n, self.caps)

    def _hidden_adjoints(self, cache, g):
        """``(dA [N, S, H], R [N, S, H])``: adjoints of the pre-activations ``a_i`` and their
        suffix sums ``R_j = sum_{i>j} dA_i`` (what ``W[:, j]`` sees through ``u_j``)."""
        u, h, V, W = cache
        dA = per_species_matmul(g, V) * _ACTIVATIONS[self.activation][1](h)
        return dA, np.cumsum(dA[:, ::-1], axis=1)[:, ::-1] - dA

    def _jacobian(self, cache, g):
        return NADEJacobian(self, cache, g, *self._hidden_adjoints(cache, g))

    def _backward(self, cache, g, dA=None, R=None, h_out=None):
        """Per-sample gradients ``[N, P]``; ``h_out``: what the output weights' columns take
        for the hidden units (default :meth:`_output_inputs` of ``h``)."""
        u, h, V, W = cache
        h = self._output_inputs(h) if h_out is None else h_out
        if dA is None:
            dA, R = self._hidden_adjoints(cache, g)
        N = g.shape[0]
        out = np.empty((N, self.n_params))
        o = self._offsets
        # dW[:, j] = (sum_{i>j} dA_i) u_j
        out[:, o[0]:o[1]] = (R * u[:, :, None]).transpose(0, 2, 1).reshape(N, -1)
        out[:, o[1]:o[2]] = dA.sum(axis=1)
        # written in place species by species (a boolean gather of [N, S, M, H] is ~10x slower)
        for i, cap, v_block, b_block in self._output_blocks():
            gv = self._output_adjoint(g[:, i, :cap], i)
            np.multiply(gv[:, :, None], h[:, i, None, :],
                        out=out[:, v_block].reshape(N, gv.shape[1], self.H))
            out[:, b_block] = g[:, i, :cap]
        return out

    @contextlib.contextmanager
    def centred_outputs(self, n, w):
        """Take the Jacobians in coordinates where the output layer sees centred hidden units.

        ``logits_i = b_i + V_i h_i = b'_i + V_i (h_i - hbar_i)`` with ``b'_i = b_i + V_i hbar_i``
        and ``hbar_i = sum_s w_s h_i(n_s)`` frozen: the law is the same, but in the Jacobians
        (:meth:`log_prob_and_jacobian`) the output weights' columns ``g_i (h_i - hbar_i)^T``
        no longer hold the part ``g_i hbar_i^T`` that is a copy of the bias columns ``g_i``.
        Why: a minimum-norm or damped fit otherwise shares every change of a marginal between
        ``b_i`` and the ``H`` copies in ``V_i``, and the weights that grow so drive the hidden
        units into saturation (3x3 Schlögl lattice, ``benchmarks/RESULTS.md``, session 28).
        Centring is the change of variables of Schraudolph's centred gradient factors.

        Parameters
        ----------
        n : [N, S] states; w : [N] weights (summing to 1) of the mean

        Yields
        ------
        to_theta : function mapping a step ``delta'`` [P] in the centred coordinates to the
            same step in ``theta`` (``db = db' - dV hbar``, the output weights' and hidden
            layers' parts unchanged).
        """
        hbar = np.einsum("n,nsh->sh", np.asarray(w, dtype=float), self._hidden(self.check_states(n))[1])

        def to_theta(delta):
            delta = np.array(delta, dtype=float)
            for i, _, v_block, b_block in self._output_blocks():
                C = delta[v_block].reshape(-1, self.H)
                delta[b_block] -= (C if self._basis[i] is None else self._basis[i] @ C) @ hbar[i]
            return delta

        self._hidden_center = hbar
        try:
            yield to_theta
        finally:
            self._hidden_center = None

    def _output_inputs(self, h):
        """``h`` [N, S, H], or ``h - hbar`` inside :meth:`centred_outputs`."""
        return h if self._hidden_center is None else h - self._hidden_center

    def _output_adjoint(self, g_i, i):
        """``d log P / d`` (species ``i``'s rows of output weights) per unit of ``h_i``:
        ``g_i`` [..., M_i] itself for a free ``V_i``, ``g_i Phi_i`` [..., k_i] with a basis."""
        return g_i if self._basis[i] is None else g_i @ self._basis[i]

    def _output_blocks(self):
        """Yield ``(i, M_i, V_i, b_i)``: species ``i``, its cap and the slices of ``theta`` that
        hold its output weights (``[M_i, H]``, or ``C_i [k_i, H]``, C order) and its ``b``
        ([M_i])."""
        v_at, b_at = self._offsets[2], self._offsets[3]
        for i, (cap, rows) in enumerate(zip(self.caps, self._out_rows)):
            yield i, int(cap), slice(v_at, v_at + rows * self.H), slice(b_at, b_at + cap)
            v_at += rows * self.H
            b_at += cap

    def _sampler(self, N):
        W, c, V, b = self._unpack()
        A = np.broadcast_to(c, (N, self.H)).copy()
        f = _ACTIVATIONS[self.activation][0]
        center, scale = self.input_center, self.input_scale

        def step(n, i):
            if i > 0:
                A[:] += ((n[:, i - 1] - center[i - 1]) / scale[i - 1])[:, None] * W[:, i - 1]
            return f(A) @ V[i].T + b[i]
        return step


class MADE(AutoregressiveModel):
    """Masked autoencoder for distribution estimation: a masked MLP with ``depth`` hidden layers
    of ``width`` tanh units.

    Degrees: input ``j`` has degree ``j``; hidden unit ``k`` of every layer has degree
    ``k mod (S-1)``; a connection input/hidden ``d -> d'`` exists iff ``d' >= d``; the logits of
    species ``i`` see hidden units of degree ``< i`` only, so they depend on ``n_<i`` alone.
    Layers: ``z_1 = (M_1 * W_1) u + c_1``, ``h_l = tanh(z_l)``, ..., logits ``= (M_o * W_o) h_L + b``.
    """

    def __init__(self, caps, width: int = 32, depth: int = 2, rng=None, init_scale: float = 1e-2):
        super().__init__(caps)
        if int(width) < 1 or int(depth) < 1:
            raise ModelSpecError(f"width and depth must be >= 1, got {width}, {depth}")
        rng = np.random.default_rng(0) if rng is None else rng
        S, Mx = self.S, self.M_max
        width, depth = int(width), int(depth)
        deg_in = np.arange(S)
        deg_h = np.arange(width) % max(S - 1, 1)
        self.masks = [deg_h[:, None] >= deg_in[None, :]]
        self.masks += [deg_h[:, None] >= deg_h[None, :] for _ in range(depth - 1)]
        out_species = np.repeat(np.arange(S), Mx)  # output unit -> species (padded layout)
        mo = deg_h[None, :] < out_species[:, None]
        mo &= self.valid.reshape(-1)[:, None]
        self.masks.append(mo)
        self.bias_valid = self.valid.reshape(-1)
        sizes, theta_parts = [], []
        fan_in = S
        for mk in self.masks[:-1]:
            w = rng.normal(0, 1 / np.sqrt(fan_in), mk.shape)[mk]
            theta_parts += [w, np.zeros(mk.shape[0])]
            sizes += [int(mk.sum()), mk.shape[0]]
            fan_in = mk.shape[0]
        theta_parts += [rng.normal(0, init_scale, int(mo.sum())), np.zeros(int(self.bias_valid.sum()))]
        sizes += [int(mo.sum()), int(self.bias_valid.sum())]
        self._sizes = sizes
        self._offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.theta = np.concatenate(theta_parts)

    def _layers(self):
        o = self._offsets
        layers = []
        for li, mk in enumerate(self.masks):
            W = np.zeros(mk.shape)
            W[mk] = self.theta[o[2 * li]:o[2 * li + 1]]
            if li < len(self.masks) - 1:
                c = self.theta[o[2 * li + 1]:o[2 * li + 2]]
            else:
                c = np.zeros(mk.shape[0])
                c[self.bias_valid] = self.theta[o[2 * li + 1]:o[2 * li + 2]]
            layers.append((W, c))
        return layers

    @property
    def _output_weights(self) -> slice:
        return slice(self._offsets[-3], self._offsets[-2])  # the masked W_o

    @property
    def _output_biases(self) -> slice:
        return slice(self._offsets[-2], self._offsets[-1])  # b

    def _logits(self, n):
        layers = self._layers()
        x = self._scaled(n)
        acts = [x]
        for W, c in layers[:-1]:
            x = np.tanh(x @ W.T + c)
            acts.append(x)
        W, c = layers[-1]
        logits = (x @ W.T + c).reshape(-1, self.S, self.M_max)
        return logits, (acts, layers)

    def _backward(self, cache, g):
        acts, layers = cache
        N = g.shape[0]
        delta = g.reshape(N, -1)
        parts = []
        for li in range(len(layers) - 1, -1, -1):
            W, _ = layers[li]
            a = acts[li]
            mk = self.masks[li]
            dW = (delta[:, :, None] * a[:, None, :])[:, mk]
            db = delta if li < len(layers) - 1 else delta[:, self.bias_valid]
            parts = [dW, db] + parts
            if li > 0:
                delta = (delta @ W) * (1.0 - a ** 2)
        return np.concatenate(parts, axis=1)
