"""Time evolution of the chemical master equation with a variational autoregressive network.

The CME ``dP/dt = W P`` is stepped on a time grid. Given the current model ``P_t`` (frozen),
one step of size ``h`` fits ``P_theta`` to the Euler target

    TP(n) = P_t(n) (1 + h E(n)),
    E(n)  = sum_k a_k(n - s_k) P_t(n - s_k) / P_t(n) - sum_k a_k(n),

(``s_k`` the stoichiometry of reaction ``k``), so that ``log TP = log P_t + log(1 + h E)``.

**Truncation rule (reflecting box).** States live in the box ``0 <= n_i < M_i`` (the caps). A
reaction whose product state would leave the box is switched off in that state: it neither
drains ``n`` (outflow) nor feeds ``n + s_k`` (inflow). This is the CME of the chain restricted
to the box; it conserves probability, so ``sum_n TP(n) = 1`` exactly. Choose caps so that the
true chain rarely reaches them (FSP reports the mass that leaves a box).

**Second order** (``order=2``): the target is ``P_t (1 + h E + h^2 E2 / 2)`` with
``E2(n) = (W^2 P_t)(n) / P_t(n)`` (:func:`local_energy`), the Taylor polynomial of
``exp(h W)`` to second order. Its global error is O(h^2) instead of O(h); it matters in far
tails, which a k-reaction-deep path builds from k factors of the step error (1-site Schlögl,
P(x <= 15 | x0 = 50) ~ 1e-7: 13 % low with order 1, < 0.1 % with order 2).

**Step size.** ``E`` depends on ``P_t`` only, so it is computed first; the step is
``h = min(dt, t_next - t, courant / q99(|E|))`` (``q99`` the weighted 99th percentile over the
samples), so that ``1 + h E`` stays positive for almost all samples. Remaining values of
``1 + h E`` below ``floor`` are clamped to ``floor`` and counted (``stats["n_clamped"]``).

**Step check** (``step_check``): each step is judged on a batch drawn independently of its
fit, by the relative out-of-sample error :func:`step_error` under ``P_t``; a step above the
tolerance is undone and redone with ``h / 2`` on that batch (which is also the next attempt's
fitting batch), as long as halving lowers the error: ``eta`` is relative to a target ~ ``h``,
i.e. an error per unit time, and an error halving does not lower is the fit's (too few samples,
too small a network), which smaller steps cannot remove; the longer step is then kept
(``stats["n_futile_halvings"]``). Monte-Carlo TDVP with fewer samples than parameters makes
steps that are right on their samples and noisy elsewhere (median error ~1 on the toggle
switch), and now and then one that is far off (~50): the check removes those.

**Species order.** The model factorizes in the order of ``prob.network``'s columns; a
:class:`ReorderedNetwork` presents a network in another order (``solve(species_order=...)``).

**Optimizers** (``f(n) = log P_theta(n) - log TP(n)``; samples ``n_s ~ q`` with normalized
importance weights ``w_s``; ``G_s = d log P_theta(n_s)/d theta``):

* ``O_s = sqrt(w_s) (G_s - sum_r w_r G_r)``, ``eps_s = sqrt(w_s) (f_s - sum_r w_r f_r)``; the
  REINFORCE gradient of ``KL(P_theta || TP)`` is ``F = O^T eps`` and the Fisher matrix is
  ``S = O^T O``.
* ``adam``: ``n_iter`` Adam steps on ``F`` per time step (baseline: the weighted mean of ``f``).
* ``natgrad``: ``n_iter`` steps ``theta <- theta - lr delta`` with ``(S + lambda I) delta = F``.
  With ``N`` samples and ``P`` parameters the solve is done in the smaller space: for
  ``N < P`` by the push-through (Woodbury) identity
  ``delta = O^T (O O^T + lambda I)^{-1} eps`` (one ``N x N`` Cholesky), else by a ``P x P``
  Cholesky.
* ``tdvp``: one such solve per step at ``theta = theta_t``, where ``f = -log(1 + h E)``: the
  damped least-squares fit ``O delta ~ -eps`` of the change of ``log P``.
  ``lambda = damping * trace(S) / min(N, P)`` (relative to the mean nonzero eigenvalue).
  With ``n_iter > 1`` the fit is iterated Gauss-Newton fashion: on the same samples and the same
  target ``log TP``, ``f = log P_theta - log TP`` is re-evaluated at the new ``theta`` (with its
  Jacobian) and solved again. One solve is an explicit Euler step in parameter space, and
  ``log P_theta`` is not linear in ``theta``: its error, O(h^2) per step, adds up to a drift
  that shows once the Monte-Carlo noise is small (toggle switch from the exact law at t = 5 with
  1,600 samples: P(Gx = 0) rose steadily from 0.471 to 0.52-0.53 by t = 10, marginals 0.05-0.09
  off; with a second iteration 0.017 / 0.027, ``benchmarks/RESULTS.md``). An iteration costs a
  Jacobian and a solve, no local energy.

**Integrator of the TDVP step** (``integrator``). ``"euler"`` moves by the fit at ``theta_t``,
``theta_1 = theta_t + delta_1``. ``"heun"`` (explicit trapezoid) takes the step again from
``theta_1``, with ``E`` and ``log P`` of ``P_{theta_1}`` on the same samples and weights, and
moves by ``(delta_1 + delta_2) / 2``: two local energies, Jacobians and solves per step. It
averages the velocity of the start and of the end of the step, which damps the drift of the
Euler step more than Gauss-Newton iterations do (toggle switch from the exact law at t = 5, 1,600
samples, Hellinger at t = 10: Euler 0.048 / 0.086 on two seeds, Heun 0.012 / 0.006 / 0.006 on
three, Gauss-Newton 0.017 / 0.027). With the targets ``log(1 + h E)`` it is not second order in
time: on a one-species chain (immigration-death, every state enumerated, so the network
represents any law) its error is 1.3-1.5x Euler's.

**Implicit step** (``integrator="implicit"``): backward Euler, ``(I - h W) P_{t+h} = P_t``.
The explicit targets are stable only while ``h`` stays below ~1 / (the fastest relaxation
rate of the chain): on the 2-site Schlögl box that is ~3e-5 time units, set by states whose
total propensity is ~10^4-10^5 (27,000 steps to t = 1), though the law itself changes on
times of ~0.01-1. Explicit Euler on the exact 85 x 85 box generator diverges even at
h = 2.5e-5, while backward Euler on it is within Hellinger 5e-4 (h = 1e-3) and 0.003
(h = 5e-3) of the exact marginals at t = 0.1 (``benchmarks/RESULTS.md``). The step fits
``P' = P_theta`` to the equation at each sample,

    (1 + h a_0(n)) P'(n) = P_t(n) + h sum_k a_k(n - s_k) P'(n - s_k),

by Gauss-Newton on the residual between the logarithms of the two sides
(:func:`backward_euler_residual`; both sides are positive for every ``h``), starting from
``theta_t``; ``n_iter`` iterations (default 1, the linearly implicit step). The new law enters
at the predecessors ``n - s_k``, so a step needs the network's gradients there too (at
``K + 1`` states per sample before repeated ones are merged), combined into the ``[N, P]``
Jacobian from the network's factors. The step is ``h = min(dt, t_next - t)``: no Courant limit
applies, ``dt`` sets the accuracy. Start it from a spread-out law (``init_time`` in
:func:`cupyssa.cme.solve`): from a smoothed point mass the first steps change ``log P`` by tens,
more than one Gauss-Newton iteration follows. With fewer samples than network parameters,
further iterations (``n_iter > 1``) fit the step's samples ever more closely, not the law
between them (2-site Schlögl, 500 samples: marginals 0.31 and 0.51 off at t = 0.1 with
``n_iter=2``, 0.005 with one).

**Frontier rows** (``frontier=True``, implicit step only). A fit moves ``log P`` only where it
has rows. A law whose values above some edge are far below the bulk (a cliff: no sample, not
even a tempered one, lands there) cannot give them the probability the CME sends across the
edge: the step fits the law killed at the edge and renormalized, and the support stops growing.
That is what slowed the MAPK cascade (NADE hidden 2, ``alpha`` 0.5, ``eps`` 0): at t = 5.3 K, KK
and KKK had ~10 decades between their largest sampled value and the next (K: ``p(12) = 0.04``,
``p(13) = 1e-11``), and one step from the product of its marginals moved K's mean at 0.71
against the CME's 1.24, close to the 0.78 of that law killed at K = 13. The frontier adds to
each batch one successor ``n + s_k`` of each sample (``k`` uniform among the reactions that can
fire): rows at the edge's far side, where the backward-Euler residual is finite and linear in
the new value's output bias, so one Gauss-Newton iteration moves the edge (the same step: 1.24
and 1.05 on two seeds). The explicit targets ``log(1 + h E)`` are unbounded there
(``E ~ P(n - s_k) / P(n) ~ 1e10``), hence implicit only. Once the support can grow, the
tempered proposal is what slows the means: at t = 10 on MAPK, exact sampling (``alpha=1``)
moved them at the CME's rate, ``alpha=0.5`` at 0-70 % of it (``benchmarks/RESULTS.md``,
session 25).

**The step size can set the Monte-Carlo error too, also where the law is stationary.** Backward
Euler's fixed point is the exact stationary law for every ``h``, but each fitted step is a
stochastic-approximation step of size ``h``: right at its samples, off between them by an amount
proportional to the change it makes. The parameters then fluctuate about the law, and, as with
constant-step stochastic gradient descent, that can cost a bias that grows with ``h`` and does
not average out over steps. On the 3x3 Schlögl lattice (2,000 samples, 6,965 parameters, nine
single-site marginals against 10^5 SSA trajectories) the largest Hellinger distance at t = 1 is
0.033-0.034 on two seeds with ``dt = 5e-4``, at least 0.066-0.089 with ``dt = 1e-3`` (two
starts, two proposals; some runs reported three sites), 0.156 with ``dt = 1e-2`` after t = 0.1,
and ``dt = 5e-2`` diverges (``benchmarks/RESULTS.md``). It is not the only long-time error: on
the 2-site lattice with 500 samples (1,554 parameters) the low state fills too slowly, and the
marginals end 0.073-0.078 off at t = 1 whether ``dt`` is 1e-3, 5e-4 or 2.5e-4 (1,000 samples:
0.023). Nor does halving help without end: on the 3x3 lattice ``dt = 2.5e-4`` is no better
than ``5e-4`` at t = 0.25 (worst site 0.035). Try a halved ``dt`` and more samples when
long-time marginals are off.

**The damping also slows the law down.** With fewer samples than parameters the damping is what
keeps the fit stable, and it shrinks every step. On the 3x3 lattice at t = 0.25 (a solved law
whose means are 0.5 low), the exact CME moves the site means up at 17 counts per time unit and
one step with the default damping 1e-4 at 1.3. With 1e-7 one step is right (16.9), but whole
runs with 1e-6 or 1e-7 diverged before t = 0.25. Exact sampling (``alpha=1``) moved them at 22
with the default damping, but from the start it leaves the mode where it began (session 21).
``benchmarks/van_moment_velocity.py`` compares a step's moment velocities with the CME's
(``benchmarks/RESULTS.md``, session 24).

**A step sees the law's motion only through its batch.** The velocity of a mean is
``Cov_P(x_i, E)``, and ``E(n)`` carries the ratios ``P(n - s_k) / P(n)``: where the law's tails
are thinner than the flow into them, ``E`` is heavy-tailed and its sample averages fall below
their expectation at any affordable size. On the MAPK cascade at t = 50 (hidden 8, the upper
tails of KKpp, Kpp and C5 too thin) averages over 10^5 states give 0.07-0.11 of KKpp's exact 0.17
per time unit, batches of 2,700 a median of 0.07, and the steps move KKpp at 0.03-0.08 whatever
the damping, samples, step size, integrator or width (tempered proposals: 0.03, or backwards;
``benchmarks/RESULTS.md``, session 33). ``van_moment_velocity.py --subset N`` shows it for a
law, against the drift ``E_P[sum_k a_k(x) s_k]``, which has no ratios. The part a step misses
lies in states the law holds below the balance of the flow into them: drawn where the chain's
jumps land and weighted back to ``P`` (``van_moment_velocity.py --inflow``), the states in local
balance carry 0.07-0.09 of KKpp's velocity, what the steps do, and ~10^-4 of the law, held at
1/1.5 to 1/100 of its inflow's balance, and the flow into cliffs carry about as much again
(session 34); SSA from the law's states confirms that the CME moves KKpp at 0.14 over a whole
time unit (``--pushed``). A batch rarely holds such a state, and fitting the few it holds does
not move the others: the conditionals' upper tails have free logits that no batch reaches.

**Moment projection** (``project_moments``). The moments have equations of their own without
ratios, ``d E[x_i^p] / dt = E[sum_k a_k(x) ((x + s_k)_i^p - x_i^p)]``, whose averages draws of
the law estimate with the spread of the propensities. After each accepted step, every
conditional of the new law is tilted by ``exp(sum_p tau_pi (m / M_i)^p)`` so that the means
(``project_moments=1``), or the means and second moments (2), move by the implicit trapezoid
rule of those equations (:func:`cupyssa.cme.moments.project_moments`): what the batch missed
is put back as a smooth change of every value's logit, the upper tails included. The fit still
makes the law's shape and correlations; the projection adds the velocity of the moments it
could not see. Where the fit is right the tilts are noise-sized (``projection_draws``). On the
MAPK cascade (hidden 8, resumed at t = 51 with ``project_moments=2``) every species is within
0.8 % of SSA's mean and 0.026 in Hellinger at t = 100, where the steps alone left KKpp and Kpp
5 % low. The moment equations are the law's own: with correlations the network cannot hold
(hidden 4 there, two neighbour covariances of the wrong sign) they send the means to wrong
places faster (Kpp 17 % high at t = 50; ``benchmarks/RESULTS.md``, session 35), and with
correlations the steps have built only halfway (hidden 8 from t = 25: Kpp 10 % high at
t = 50). ``project_covariances=True`` also moves the products ``E[x_i x_j]`` of the species
that react together by their own equations, through the network's parameters
(``project_moments(pairs=...)``); with 8 of MAPK's 9 such pairs the projection can start at
t = 25 and the run is within 0.2 % and 0.017 of SSA at t = 100 (session 37).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..errors import CupyssaError
from .autoregressive import DEFAULT_ACTIVATION, NADE, MADE, AutoregressiveModel
from .fisher import natural_direction
from .moments import project_moments, reacting_pairs
from .sampling import effective_sample_size, psis

__all__ = ["CMEProblem", "VANOptions", "VANError", "ReorderedNetwork", "Flows", "evolve",
           "local_energy", "backward_euler_residual", "natural_direction", "step_error"]


class VANError(CupyssaError, ValueError):
    """Invalid input to the VAN solver (caps, times, options, checkpoint mismatch)."""


@dataclass
class CMEProblem:
    """A CME on a box.

    Attributes
    ----------
    network : ReactionNetwork
    x0 : [S] int64 initial state
    theta : [P] rate parameters (the network's parameter vector)
    caps : [S] int64, states satisfy ``0 <= n_i < caps[i]``
    params_at : callable ``t -> theta [P]``, optional
        Time-dependent parameters (held constant over each step at its left end).
    """

    network: object
    x0: np.ndarray
    theta: np.ndarray
    caps: np.ndarray
    params_at: Callable | None = None

    def rates(self, t: float) -> np.ndarray:
        return self.theta if self.params_at is None else np.asarray(self.params_at(t), dtype=float)


@dataclass
class VANOptions:
    """Options of :func:`evolve` (see the module docstring for the equations)."""

    method: str = "tdvp"
    dt: float = 1e-2
    n_samples: int = 1000
    n_iter: int = 1  # per time step (natgrad, adam: fresh batches; tdvp: Gauss-Newton)
    lr: float = 1.0  # natgrad step; adam learning rate when method == "adam"
    damping: float = 1e-3
    courant: float = 0.2
    floor: float = 1e-2
    step_check: float | None = None  # reject steps whose out-of-sample error exceeds this
    sampling: str = "exact"  # "exact", "enumerate", "tempered"
    alpha: float = 0.5
    eps: float = 0.02
    reweight: bool = False
    frontier: bool = False  # implicit step: also fit at one-jump successors of the samples
    project_moments: int = 0  # tilt each step's law onto the moment equations up to this power
    projection_draws: int = 20_000  # draws of each law per projection
    # with project_moments=2: also E[x_i x_j] of the reacting pairs (True) or of these names
    project_covariances: bool | tuple = False
    center_outputs: bool = False  # Fisher solves in centred output coordinates (NADE)
    order: int = 1  # Taylor order of the step target: 1 (Euler) or 2
    integrator: str = "euler"  # of the TDVP step: "euler", "heun" or "implicit"
    adam_betas: tuple = (0.9, 0.999)
    adam_eps: float = 1e-8
    checkpoint: str | None = None
    checkpoint_every: int = 100
    progress: bool = False
    seed: int = 0
    callback: Callable | None = None  # callback(step, t, model) after every step

    def validate(self):
        if self.method not in ("tdvp", "natgrad", "adam"):
            raise VANError(f"unknown method {self.method!r}; choose 'tdvp', 'natgrad' or 'adam'")
        if self.sampling not in ("exact", "enumerate", "tempered"):
            raise VANError(f"unknown sampling {self.sampling!r}; choose 'exact', 'enumerate' or "
                           "'tempered'")
        for name in ("dt", "n_samples", "n_iter", "lr", "courant", "floor"):
            if not getattr(self, name) > 0:
                raise VANError(f"option {name} must be positive, got {getattr(self, name)}")
        if self.order not in (1, 2):
            raise VANError(f"order must be 1 or 2, got {self.order}")
        if self.integrator not in ("euler", "heun", "implicit"):
            raise VANError(f"unknown integrator {self.integrator!r}; choose 'euler', 'heun' or "
                           "'implicit'")
        if self.integrator != "euler" and self.method != "tdvp":
            raise VANError(f"integrator={self.integrator!r} is a TDVP step; method "
                           f"{self.method!r} minimizes a divergence per step instead")
        if self.integrator == "implicit" and self.order != 1:
            raise VANError("order=2 is the explicit step's Taylor target; the implicit "
                           "(backward-Euler) step is first order")
        if self.frontier and self.integrator != "implicit":
            raise VANError("frontier=True needs integrator='implicit': the explicit targets "
                           "log(1 + h E) are unbounded at states the law has not reached")
        if self.frontier and self.sampling == "enumerate":
            raise VANError("frontier=True adds the successors of sampled states; with "
                           "sampling='enumerate' every box state is already in the fit")
        if self.center_outputs and self.method == "adam":
            raise VANError("center_outputs=True changes the coordinates of each Fisher solve; "
                           "adam's moments would mix coordinates: use tdvp or natgrad")
        if self.damping < 0:
            raise VANError(f"damping must be non-negative, got {self.damping}")
        if self.project_moments not in (0, 1, 2):
            raise VANError(f"project_moments must be 0 (off), 1 (means) or 2 (means and second "
                           f"moments), got {self.project_moments}")
        if self.project_covariances is not False and self.project_moments != 2:
            raise VANError("project_covariances projects the products E[x_i x_j], moments of "
                           f"degree 2: it needs project_moments=2, got {self.project_moments}")
        if not self.projection_draws > 0:
            raise VANError(f"projection_draws must be positive, got {self.projection_draws}")
        if self.step_check is not None and not self.step_check > 0:
            raise VANError(f"step_check must be positive or None, got {self.step_check}")


class ReorderedNetwork:
    """A network seen with its species columns in another order (the factorization order of
    the autoregressive model): ``columns[j]`` is the network's index of the ``j``-th column.
    It offers what :func:`local_energy` and the moment projection use: ``stoichiometry``,
    ``reactant_matrix``, ``species`` and ``propensities``."""

    def __init__(self, network, columns):
        self.network = network
        self.columns = np.asarray(columns, dtype=np.int64)
        #: [S] position of each network species among the columns
        self._inverse = np.argsort(self.columns)
        self.stoichiometry = np.asarray(network.stoichiometry)[:, self.columns]
        self.reactant_matrix = np.asarray(network.reactant_matrix)[:, self.columns]
        self.species = tuple(network.species[i] for i in self.columns)

    def propensities(self, n, theta):
        return self.network.propensities(n[..., self._inverse], theta)


# -- the CME operator on samples --------------------------------------------------------------
@dataclass
class Flows:
    """The CME's terms at a batch of states ``n`` [N, S] under the reflecting box.

    Attributes
    ----------
    n : [N, S] the states
    feed : [N, K] ``a_k(n - s_k)``, the rate at which reaction ``k`` feeds ``n`` (0 where the
        predecessor ``n - s_k`` lies outside the box)
    outflow : [N] ``a_0(n) = sum_k a_k(n)`` over the reactions whose product stays in the box
    pred : [N K, S] the predecessors ``n - s_k`` (``n`` itself where outside the box)
    caps : [S] the box
    """

    n: np.ndarray
    feed: np.ndarray
    outflow: np.ndarray
    pred: np.ndarray
    caps: np.ndarray

    @classmethod
    def at(cls, model: AutoregressiveModel, network, theta, n) -> "Flows":
        s = network.stoichiometry  # [K, S]
        N, S = n.shape
        K = s.shape[0]
        out_ok = model.in_box(n[:, None, :] + s[None])  # [N, K]
        outflow = np.sum(np.where(out_ok, network.propensities(n, theta), 0.0), axis=1)
        m = n[:, None, :] - s[None]  # [N, K, S]
        in_ok = np.all((m >= 0) & (m < model.caps), axis=-1)
        pred = np.where(in_ok[:, :, None], m, n[:, None, :]).reshape(-1, S)
        a_m = network.propensities(pred, theta).reshape(N, K, K)
        feed = np.where(in_ok, np.einsum("nkk->nk", a_m), 0.0)
        return cls(n, feed, outflow, pred, model.caps)

    @cached_property
    def union(self):
        """``(states [U, S], at_n [N], at_pred [N, K])``: the distinct states among ``n`` and
        ``pred``, and the rows holding each sample and each predecessor."""
        N, K = self.feed.shape
        both = np.concatenate([self.n, self.pred])
        first, inverse = _distinct(self.caps, both)
        return both[first], inverse[:N], inverse[N:].reshape(N, K)


def local_energy(model: AutoregressiveModel, network, theta, n, log_p_n=None, order: int = 1):
    """``E(n) = sum_k a_k(n - s_k) P(n - s_k)/P(n) - sum_k a_k(n)`` under the reflecting box.

    Parameters
    ----------
    model : the (frozen) current distribution ``P_t``
    network : ReactionNetwork
    theta : [P] rate parameters
    n : [N, S] states inside the box
    log_p_n : [N] ``log P_t(n)`` if already known
    order : 1, or 2 to also return ``E2(n) = (W^2 P)(n) / P(n)
        = sum_k a_k(n - s_k) P(n - s_k) E(n - s_k) / P(n) - sum_k a_k(n) E(n)``
        (``E`` evaluated at the predecessors: ``K`` times the work).

    Returns
    -------
    E : [N]  (order 1), or ``(E, E2)`` (order 2)
    """
    if log_p_n is None:
        log_p_n = model.log_prob(n)
    fl = Flows.at(model, network, theta, n)
    lp_m = _log_prob_of_distinct(model, fl.pred).reshape(fl.feed.shape)
    ratio = np.exp(np.minimum(lp_m - log_p_n[:, None], 700.0))
    E = np.sum(fl.feed * ratio, axis=1) - fl.outflow
    if order == 1:
        return E
    E_m = local_energy(model, network, theta, fl.pred, lp_m.reshape(-1)).reshape(lp_m.shape)
    E2 = np.sum(fl.feed * ratio * E_m, axis=1) - fl.outflow * E
    return E, E2


def backward_euler_residual(model: AutoregressiveModel, flows: Flows, log_p_t, h: float,
                            jacobian: bool = False):
    """Residual of the backward-Euler step ``(I - h W) P' = P_t`` at ``P' = model``.

    At a state ``n`` the step's equation under the reflecting box is

        (1 + h a_0(n)) P'(n) = P_t(n) + h sum_k a_k(n - s_k) P'(n - s_k).

    Both sides are positive for every ``h``, so the residual compares their logarithms,

        f(n) = log P'(n) + log(1 + h a_0(n)) - log(P_t(n) + h sum_k a_k(n - s_k) P'(n - s_k)),

    which is finite wherever the step goes (the explicit target ``log(1 + h E)`` is not once
    ``h E < -1``). The normalizer of ``P'`` cancels in centred residuals.

    Parameters
    ----------
    model : the new distribution ``P'``
    flows : :class:`Flows` at the states ``n`` [N, S]
    log_p_t : [N] ``log P_t(n)``
    h : time step
    jacobian : also return ``df / dtheta`` [N, P], whose row ``n`` is
        ``G(n) - sum_k b_k(n) G(n - s_k)`` with ``G = d log P' / d theta`` and
        ``b_k = h a_k(n - s_k) P'(n - s_k) / (P_t(n) + h sum_j a_j(n - s_j) P'(n - s_j))``
        (``b_k >= 0``, ``sum_k b_k < 1``): the network's gradients at the ``K`` predecessors
        enter (:meth:`~cupyssa.cme.autoregressive.Jacobian.left_multiply`, block by block of
        samples).

    Returns
    -------
    f : [N], or ``(f, J)``
    """
    N, K = flows.feed.shape
    states, at_n, at_pred = flows.union
    cols = np.concatenate([at_n[:, None], at_pred], axis=1)  # [N, K + 1] rows of `states`
    with np.errstate(divide="ignore"):
        log_feed = np.log(h * flows.feed)  # -inf where reaction k does not feed n
    log_out = np.log1p(h * flows.outflow)

    def residual(rows, lp):
        """``f`` and the weights ``b`` [R, K] at the samples ``rows``, given ``log P'`` at
        their states ``lp`` [R, K + 1] (the sample, then its predecessors)."""
        terms = np.concatenate([log_p_t[rows, None], log_feed[rows] + lp[:, 1:]], axis=1)
        top = terms.max(axis=1)
        log_rhs = top + np.log(np.exp(terms - top[:, None]).sum(axis=1))
        return lp[:, 0] + log_out[rows] - log_rhs, np.exp(terms[:, 1:] - log_rhs[:, None])

    if not jacobian:
        return residual(slice(None), model.log_prob(states)[cols])[0]
    f, J = np.empty(N), np.empty((N, model.n_params))
    # blocks of samples, each with the network at the states it refers to (a state shared by two
    # blocks is evaluated in both)
    rows_per_block = max(1, _JACOBIAN_BLOCK_ENTRIES // ((K + 1) * model.n_params))
    for lo in range(0, N, rows_per_block):
        rows = slice(lo, lo + rows_per_block)
        used, local = np.unique(cols[rows], return_inverse=True)
        local = local.reshape(-1, K + 1)
        R = len(local)
        lp, jac = model.log_prob_and_jacobian(states[used])
        f[rows], b = residual(rows, lp[local])
        # row r of C: +1 at the sample, -b_k at its predecessors
        C = sp.csr_matrix((np.concatenate([np.ones((R, 1)), -b], axis=1).reshape(-1),
                           (np.repeat(np.arange(R), K + 1), local.reshape(-1))),
                          shape=(R, len(used)))
        J[rows] = jac.left_multiply(C)
    return f, J


#: :func:`backward_euler_residual` differentiates the network at the states of so many samples
#: at a time that their assembled gradient rows would hold at most this many entries (128 MiB)
_JACOBIAN_BLOCK_ENTRIES = 2 ** 24


#: boxes up to this many states key their rows by an int64 mixed-radix index
_MAX_KEYED_STATES = 2.0 ** 62


def _distinct(caps, states):
    """``(first, inverse)`` with ``states[first][inverse] == states``: the distinct rows of
    ``states`` (inside the box ``caps``), told apart by their mixed-radix index; every row
    counts as distinct when the box is too large for an int64 index."""
    if np.prod(caps.astype(float)) >= _MAX_KEYED_STATES:
        every = np.arange(len(states))
        return every, every
    radix = np.cumprod(np.r_[1, caps[:-1]]).astype(np.int64)
    _, first, inverse = np.unique(states @ radix, return_index=True, return_inverse=True)
    return first, inverse


def _log_prob_of_distinct(model: AutoregressiveModel, states):
    """``model.log_prob(states)``, evaluated once per distinct row: the predecessors of nearby
    samples coincide (2-site Schlögl, 500 samples: 1,942 distinct of 5,000)."""
    first, inverse = _distinct(model.caps, states)
    return model.log_prob(states[first])[inverse]


# -- sampling ---------------------------------------------------------------------------------
def _draw(model, opts, rng, enumerated):
    """Samples, normalized weights ``w`` (``sum w = 1``) defining the fitting measure, and
    ``info`` (``p_weights``: normalized weights of the measure ``P_theta`` itself; ESS and khat
    of the tempered proposal).

    * ``exact``: ``n ~ P_theta``, ``w = 1/N`` (the measure is ``P_theta``).
    * ``enumerate``: every box state, ``w ∝ P_theta^alpha``.
    * ``tempered``: ``n ~ q`` (the tempered / uniform-mixture proposal) and ``w = 1/N``: the fit
      is done under ``q``, which puts weight on the tails that drive rare events; with
      ``reweight=True`` the PSIS-smoothed weights ``∝ P_theta/q`` restore the measure
      ``P_theta``. The ESS and Pareto ``khat`` of ``P_theta/q`` are recorded either way.
    """
    if opts.sampling == "enumerate":
        n = enumerated
        lp = model.log_prob(n)
        lpa = lp * opts.alpha
        w = np.exp(lpa - lpa.max())
        p = np.exp(lp - lp.max())
        return n, w / w.sum(), {"p_weights": p / p.sum()}
    if opts.sampling == "tempered":
        n, lp, lq = model.sample(opts.n_samples, rng, alpha=opts.alpha, eps=opts.eps)
        lw, khat = psis(lp - lq)
        w = np.exp(lw)
        info = {"khat": khat, "ess": effective_sample_size(w), "p_weights": w / w.sum()}
        if not opts.reweight:
            w = np.full(len(n), 1.0 / len(n))
        return n, w, info
    n, _, _ = model.sample(opts.n_samples, rng)
    w = np.full(len(n), 1.0 / len(n))
    return n, w, {"p_weights": w}


def _weighted_quantile(x, w, q):
    order = np.argsort(x)
    c = np.cumsum(w[order])
    return x[order][min(np.searchsorted(c, q * c[-1]), len(x) - 1)]


# -- initial condition ------------------------------------------------------------------------
def point_mass_log_probs(x0, caps, width: float):
    """Per-species ``log p_i(m) ∝ -|m - x0_i| / width`` (normalized): a smoothed point mass."""
    out = []
    for xi, Mi in zip(x0, caps):
        z = -np.abs(np.arange(Mi) - xi) / width
        out.append(z - np.log(np.exp(z - z.max()).sum()) - z.max())
    return out


def fit_initial(model, log_p0, opts, rng, n_iter=200, enumerated=None):
    """Fit ``P_theta`` to a user distribution ``log_p0(states [N, S]) -> [N]`` by natural
    gradient on ``KL(P_theta || p0)`` (``f = log P_theta - log p0``)."""
    for _ in range(n_iter):
        n, w, _ = _draw(model, opts, rng, enumerated)
        def residual(n=n):
            lp, J = model.log_prob_and_jacobian(n)
            return lp - np.asarray(log_p0(n), dtype=float), J

        model.theta -= 0.5 * _fisher_step(model, n, w, opts, residual)
    return model


# -- one step ---------------------------------------------------------------------------------
def _batch(model, frozen, prob, opts, rates, rng, enumerated):
    """Samples ``n``, weights ``w``, sampling info, ``log P_t(n)`` and the terms of the step's
    target at ``n``: the local energy (``E``, or ``(E, E2)`` for ``order=2``) for the explicit
    integrators, the box's :class:`Flows` for ``"implicit"``."""
    n, w, info = _draw(model, opts, rng, enumerated)
    if opts.frontier:
        n, w, info = _add_frontier(n, w, info, frozen, prob.network, rates, rng)
    lp_frozen = frozen.log_prob(n)
    if opts.integrator == "implicit":
        return n, w, info, lp_frozen, Flows.at(frozen, prob.network, rates, n)
    EE = local_energy(frozen, prob.network, rates, n, lp_frozen, order=opts.order)
    return n, w, info, lp_frozen, EE


def _add_frontier(n, w, info, model, network, rates, rng):
    """The batch ``(n, w, info)`` with one successor ``n + s_k`` of each sample appended (``k``
    uniform among the reactions with ``a_k(n) > 0`` whose product stays in the box; samples
    with none add nothing). A successor row has its parent's fitting weight and no weight in
    ``info["p_weights"]`` (it is not a draw of ``P_t``): the fitting measure becomes
    ``(q + q J) / 2``, ``J`` that uniform jump kernel, and ``step_error`` still judges under
    ``P_t``. Uniform rather than ``∝ a_k``: a frontier needs rows in every direction the chain
    can move, and propensity weights would give most of them to fast reversible reactions
    (MAPK: binding and unbinding)."""
    s = np.asarray(network.stoichiometry)
    fires = (network.propensities(n, rates) > 0) & model.in_box(n[:, None, :] + s[None])
    counts = np.cumsum(fires, axis=1)  # [N, K]
    pick = np.floor(rng.random(len(n)) * counts[:, -1])  # the pick-th firing reaction
    k = np.argmax(counts > pick[:, None], axis=1)
    has = counts[:, -1] > 0
    succ = (n + s[k])[has]
    w = np.concatenate([w, w[has]])
    info = {**info, "p_weights": np.concatenate([info["p_weights"], np.zeros(len(succ))])}
    return np.concatenate([n, succ]), w / w.sum(), info


def _log_target_change(EE, h, opts, stats=None):
    """``log(1 + h E)`` (or the second-order polynomial), clamped below at ``log(floor)``."""
    one = 1.0 + h * EE if opts.order == 1 else 1.0 + h * EE[0] + 0.5 * h * h * EE[1]
    if stats is not None:
        stats["n_clamped"] += int(np.sum(one < opts.floor))
    return np.log(np.maximum(one, opts.floor))


def step_error(model, frozen, batch, h, opts) -> float:
    """Relative error of a step out of sample: on a batch ``n`` drawn independently of the fit,

        eta = ||(d - p.d) - (tau - p.tau)||_p / ||tau - p.tau||_p,

    with ``d = log P_new(n) - log P_t(n)`` the change the step made, ``tau = log(1 + h E(n))``
    the change it should have made, and the norms under ``P_t`` (``p``: the batch's
    importance weights of ``P_t``; centring removes the normalizer). ``eta = 0`` is a perfect
    step and ``eta = 1`` is no better than not moving at all. Under ``P_t``, not under the
    fitting measure: the far tails a tempered proposal samples have ``|E|`` orders of magnitude
    above the bulk and would dominate an unweighted norm.

    For ``integrator="implicit"`` the residual of the backward-Euler equation takes the place
    of ``d - tau``: ``eta = ||f_new - p.f_new||_p / ||f_t - p.f_t||_p`` with ``f``
    (:func:`backward_euler_residual`) at the new parameters and at ``theta_t`` (not moving). To
    first order in ``h`` both measures are the same."""
    n, _, info, lp_frozen, target = batch
    w = info["p_weights"]
    if opts.integrator == "implicit":
        r = backward_euler_residual(model, target, lp_frozen, h)
        tau = backward_euler_residual(frozen, target, lp_frozen, h)
    else:
        tau = _log_target_change(target, h, opts)
        d = model.log_prob(n) - lp_frozen
        r = d - tau
    r = r - w @ r
    tc = tau - w @ tau
    return float(np.sqrt(w @ (r * r) / max(w @ (tc * tc), 1e-300)))


def _fit(model, frozen, batch, h, opts, rng, prob, rates, enumerated, adam, stats):
    """Move ``model`` (at ``theta_t`` on entry) towards the step target of size ``h``.

    ``integrator="heun"``: the first stage reaches the Euler point ``theta_1``; the second makes
    the same fit from ``theta_1``, with ``log P`` and ``E`` of ``P_{theta_1}`` on the first
    stage's samples and weights, reaching ``theta_2``; the step is the mean of the two stages'
    steps, ``theta_t + ((theta_1 - theta_t) + (theta_2 - theta_1)) / 2 = (theta_t + theta_2) / 2``.
    """
    if opts.integrator == "implicit":
        _implicit_fit(model, batch, h, opts)
        return
    _fit_stage(model, frozen, batch, h, opts, rng, prob, rates, enumerated, adam, stats)
    if opts.integrator == "heun":
        n, w, info = batch[:3]
        euler_point = model.copy()
        lp = euler_point.log_prob(n)
        EE = local_energy(euler_point, prob.network, rates, n, lp, order=opts.order)
        _fit_stage(model, euler_point, (n, w, info, lp, EE), h, opts, rng, prob, rates,
                   enumerated, adam, stats)
        model.theta = 0.5 * (frozen.theta + model.theta)


def _fit_stage(model, frozen, batch, h, opts, rng, prob, rates, enumerated, adam, stats):
    """One fit of ``model`` to ``log P_frozen + log(1 + h E)`` of ``batch`` (``opts.n_iter``
    iterations: fresh batches for natgrad and adam, Gauss-Newton on the same batch for tdvp)."""
    n, w, info, lp_frozen, EE = batch
    log_target = lp_frozen + _log_target_change(EE, h, opts, stats)
    for it in range(opts.n_iter):
        if it > 0 and opts.method != "tdvp":
            # natgrad and adam iterate on fresh batches; tdvp's iterations are Gauss-Newton
            # iterations of one fit (same samples, same target)
            n, w, info, lp_frozen, EE = _batch(model, frozen, prob, opts, rates, rng, enumerated)
            log_target = lp_frozen + _log_target_change(EE, h, opts, stats)
        if opts.method == "adam":
            lp, J = model.log_prob_and_jacobian(n)
            f = lp - log_target
            # REINFORCE gradient O^T eps = G^T (w (f - w.f)) (the baseline is the weighted mean)
            grad = J.rmatvec(w * (f - w @ f))
            b1, b2 = opts.adam_betas
            adam["k"] += 1
            adam["m"] = b1 * adam["m"] + (1 - b1) * grad
            adam["v"] = b2 * adam["v"] + (1 - b2) * grad ** 2
            mhat = adam["m"] / (1 - b1 ** adam["k"])
            vhat = adam["v"] / (1 - b2 ** adam["k"])
            model.theta -= opts.lr * mhat / (np.sqrt(vhat) + opts.adam_eps)
        else:
            def residual(n=n, log_target=log_target):
                lp, J = model.log_prob_and_jacobian(n)
                return lp - log_target, J

            delta = _fisher_step(model, n, w, opts, residual)
            model.theta -= (1.0 if opts.method == "tdvp" else opts.lr) * delta
        if "ess" in info:
            stats["min_ess"] = min(stats.get("min_ess", np.inf), info["ess"])
            stats["max_khat"] = max(stats.get("max_khat", -np.inf), info["khat"])


def _implicit_fit(model, batch, h, opts):
    """``opts.n_iter`` Gauss-Newton iterations on the backward-Euler residual of ``batch``
    (:func:`backward_euler_residual`), from ``theta_t``: one iteration is the linearly implicit
    step."""
    n, w, info, lp_frozen, flows = batch
    for _ in range(opts.n_iter):
        model.theta -= _fisher_step(
            model, n, w, opts,
            lambda: backward_euler_residual(model, flows, lp_frozen, h, jacobian=True))


def _check_centring(model, opts):
    if opts.center_outputs and not isinstance(model, NADE):
        raise VANError("center_outputs=True needs a NADE (the centred output coordinates are "
                       f"NADE's); got {type(model).__name__}")


def _fisher_step(model, n, w, opts, residual):
    """:func:`natural_direction` of ``residual() -> (f [N], J)`` with the weights ``w`` of the
    states ``n``, as a step of ``theta``; with ``opts.center_outputs`` the Jacobian is taken
    and the solve made in centred output coordinates
    (:meth:`~cupyssa.cme.autoregressive.NADE.centred_outputs`)."""
    coordinates = (model.centred_outputs(n, w) if opts.center_outputs
                   else contextlib.nullcontext(lambda delta: delta))
    with coordinates as to_theta:
        f, J = residual()
        delta, _ = natural_direction(J, f, w, opts.damping)
    return to_theta(delta)


#: at most this many halvings of a step that fails ``step_check``
_MAX_STEP_HALVINGS = 6


def _step(model, prob, opts, t, h_max, rng, enumerated, adam, stats, pairs=None):
    """One step of at most ``h_max`` from ``t`` (``model`` moved in place); returns its size.
    ``pairs``: the columns of the pairs whose products the projection moves
    (:func:`_projected_pairs`)."""
    frozen = model.copy()
    h = _fitted_step(model, frozen, prob, opts, t, h_max, rng, enumerated, adam, stats)
    if opts.project_moments:
        projected = project_moments(model, frozen, prob.network, prob.rates(t), h,
                                    opts.project_moments, opts.projection_draws, rng,
                                    pairs=pairs,
                                    direction_draws=opts.n_samples)
        stats["max_tilt"] = max(stats.get("max_tilt", 0.0), float(np.abs(projected["tilt"]).max()))
        stats["n_projections_reverted"] = (stats.get("n_projections_reverted", 0)
                                           + int(projected["reverted"]))
    return h


def _projected_pairs(network, option):
    """The ``(I, J)`` columns of the pairs ``project_covariances`` names: None for False, the
    network's reacting pairs for True, else the given ``(species, species)`` names."""
    if option is False:
        return None
    if option is True:
        return reacting_pairs(network)
    index = {name: i for i, name in enumerate(network.species)}
    try:
        cols = [(index[a], index[b]) for a, b in option]
    except (KeyError, TypeError, ValueError) as err:
        raise VANError(f"project_covariances must be True, False or pairs of species names of "
                       f"{list(network.species)}; got {option!r}") from err
    if any(i == j for i, j in cols):
        raise VANError(f"project_covariances pairs two distinct species; got {option!r}")
    return (np.array([i for i, _ in cols], dtype=np.int64),
            np.array([j for _, j in cols], dtype=np.int64))


def _fitted_step(model, frozen, prob, opts, t, h_max, rng, enumerated, adam, stats):
    rates = prob.rates(t)
    batch = _batch(model, frozen, prob, opts, rates, rng, enumerated)
    h = h_max
    if opts.integrator != "implicit":  # the backward-Euler step is stable for every h
        EE = batch[4]
        E = EE if opts.order == 1 else EE[0]
        # |E|, not only the draining part max(-E, 0): the TDVP fit is a linearization in log P,
        # so large positive log(1 + h E) at improbable states next to probable ones must be
        # avoided too (limiting by the outflow alone was tried: 20x fewer steps after a
        # point-mass start, but Hellinger errors 0.04-0.6 instead of <= 0.013 on the
        # autoregulatory loop)
        scale = _weighted_quantile(np.abs(E), batch[1], 0.99)
        if scale * h_max > opts.courant:
            h = opts.courant / scale
    longer = None  # (eta, theta, h) of the rejected attempt before this one
    for halving in range(_MAX_STEP_HALVINGS + 1):
        _fit(model, frozen, batch, h, opts, rng, prob, rates, enumerated, adam, stats)
        if opts.step_check is None:
            return h
        # judged on a fresh batch at theta_t, which is also the next attempt's batch
        batch = _batch(frozen, frozen, prob, opts, rates, rng, enumerated)
        eta = step_error(model, frozen, batch, h, opts)
        futile = longer is not None and eta >= longer[0]
        if futile:
            # eta is the error relative to the step's target, which is ~ h, so it is the error
            # per unit time: a halving that does not lower it buys nothing for twice the steps.
            # Such an error is the fit's, not the step size's, and halving further only makes it
            # worse: as h -> 0 the target h E is dominated by the sampled tails' large |E|, which
            # the saturating target (clamped log(1 + h E), or the backward-Euler logarithms)
            # keeps down at larger h (immigration-death, 50 tempered samples, explicit step:
            # eta 0.019 at h = 1/16, 1.4 at h = 1/2048). Keep the longer step (MAPK past t ~ 9:
            # eta 0.8-2.8 at every h; six halvings made the run crawl)
            eta, model.theta, h = longer
            stats["n_futile_halvings"] += 1
        if eta <= opts.step_check or halving == _MAX_STEP_HALVINGS or futile:
            stats["step_errors"].append(eta)
            stats["n_unresolved"] += int(eta > opts.step_check)
            return h
        stats["n_rejected"] += 1
        longer = (eta, model.theta.copy(), h)
        model.theta = frozen.theta.copy()
        h *= 0.5


# -- checkpoints ------------------------------------------------------------------------------
def _save_checkpoint(path, state):
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{k: v for k, v in state.items() if k != "rng"},
             rng=np.array(json.dumps(state["rng"])))
    os.replace(tmp, path)


def _load_checkpoint(path, model, t_eval):
    with np.load(path, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    if state["theta"].shape != model.theta.shape or not np.array_equal(state["caps"], model.caps):
        raise VANError(f"checkpoint {path!r} was written for a different model (parameters or caps)")
    if not np.array_equal(state["t_eval"], t_eval):
        raise VANError(f"checkpoint {path!r} was written for a different t_eval")
    # checkpoints written before the definition was recorded had the one a model is built with
    as_built = model.definition(as_built=True)
    if not all(np.array_equal(state.get(k, as_built[k]), v)
               for k, v in model.definition().items()):
        raise VANError(f"checkpoint {path!r} was written for a network with other inputs, "
                       "another activation or another output degree (solve's inputs=, "
                       "activation= and output_degree=)")
    state["rng"] = json.loads(str(state["rng"]))
    return state


# -- the driver -------------------------------------------------------------------------------
def evolve(prob: CMEProblem, model: AutoregressiveModel, t_eval, opts: VANOptions):
    """Evolve ``model`` (holding ``P_{t_eval[0]}``) through ``t_eval``.

    Returns
    -------
    thetas : [T, n_params] the model parameters at each time of ``t_eval``
    stats : dict (steps, wall time, clamped count, ESS / khat with tempered sampling, ...)
    """
    opts.validate()
    _check_centring(model, opts)
    pairs = _projected_pairs(prob.network, opts.project_covariances)  # checked before any step
    t_eval = np.asarray(t_eval, dtype=float)
    rng = np.random.default_rng(opts.seed)
    enumerated = model.enumerate_states() if opts.sampling == "enumerate" else None
    P = model.n_params
    adam = {"k": 0, "m": np.zeros(P), "v": np.zeros(P)}
    thetas = np.zeros((len(t_eval), P))
    thetas[0] = model.theta
    t, step, k_next = float(t_eval[0]), 0, 1
    stats = {"n_clamped": 0, "steps": 0, "n_rejected": 0, "n_unresolved": 0,
             "n_futile_halvings": 0, "step_errors": []}
    if opts.checkpoint and os.path.exists(opts.checkpoint):
        st = _load_checkpoint(opts.checkpoint, model, t_eval)
        model.theta = st["theta"].copy()
        thetas = st["thetas"].copy()
        t, step, k_next = float(st["t"]), int(st["step"]), int(st["k_next"])
        adam = {"k": int(st["adam_k"]), "m": st["adam_m"].copy(), "v": st["adam_v"].copy()}
        stats["n_clamped"] = int(st["n_clamped"])
        rng.bit_generator.state = st["rng"]
        stats["resumed_from_step"] = step

    def save():  # the state after the latest whole step (read when called)
        _save_checkpoint(opts.checkpoint, {
            "theta": model.theta, "thetas": thetas, "t": np.array(t), "step": np.array(step),
            "k_next": np.array(k_next), "adam_k": np.array(adam["k"]), "adam_m": adam["m"],
            "adam_v": adam["v"], "caps": model.caps, "t_eval": t_eval, **model.definition(),
            "n_clamped": np.array(stats["n_clamped"]), "rng": rng.bit_generator.state})

    bar = None
    if opts.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=float(t_eval[-1] - t_eval[0]), initial=t - t_eval[0], unit="t",
                   desc=f"VAN {opts.method}")
    start = time.perf_counter()
    try:
        while k_next < len(t_eval):
            t_next = float(t_eval[k_next])
            h_max = min(opts.dt, t_next - t)
            h = _step(model, prob, opts, t, h_max, rng, enumerated, adam, stats, pairs)
            t = t_next if h >= t_next - t - 1e-12 * max(1.0, abs(t_next)) else t + h
            step += 1
            if bar is not None:
                bar.update(h)
            while k_next < len(t_eval) and t >= t_eval[k_next]:
                thetas[k_next] = model.theta
                k_next += 1
            if not np.all(np.isfinite(model.theta)):
                raise VANError(f"parameters became non-finite at t={t:.6g} (step {step}); "
                               "reduce dt or courant, or increase damping")
            # the last step is saved too: a finished run's checkpoint holds every t_eval's
            # parameters, and rerunning it returns them without stepping again
            finished = k_next == len(t_eval)
            saved = bool(opts.checkpoint) and (step % opts.checkpoint_every == 0 or finished)
            if saved:
                save()
            if opts.callback is not None:
                try:
                    opts.callback(step, t, model)
                except BaseException:
                    # a callback that ends the run (a wall-clock budget, Ctrl-C while it ran)
                    # ends it after a whole step: keep that step, not the last multiple of
                    # checkpoint_every, which may be hours behind on a long solve
                    if opts.checkpoint and not saved:
                        save()
                    raise
    finally:
        if bar is not None:
            bar.close()
    stats["steps"] = step
    stats["wall_time"] = time.perf_counter() - start
    stats["step_errors"] = np.asarray(stats["step_errors"])
    if stats["step_errors"].size:
        stats["step_error_median"] = float(np.median(stats["step_errors"]))
        stats["step_error_max"] = float(stats["step_errors"].max())
    return thetas, stats


def make_model(kind: str, caps, rng, **kw) -> AutoregressiveModel:
    """``"nade"`` (``hidden``, ``activation``, ``output_degree``) or ``"made"`` (``width``,
    ``depth``)."""
    if kind == "nade":
        return NADE(caps, hidden=kw.get("hidden", 32), rng=rng,
                    activation=kw.get("activation", DEFAULT_ACTIVATION),
                    output_degree=kw.get("output_degree"))
    if kind == "made":
        nade_only = {k: kw[k] for k in ("activation", "output_degree")
                     if kw.get(k) not in (None, DEFAULT_ACTIVATION)}
        if nade_only:
            raise VANError(f"{', '.join(nade_only)} {'is a' if len(nade_only) == 1 else 'are'} "
                           "NADE option(s); the MADE has tanh units and free output weights")
        return MADE(caps, width=kw.get("width", 32), depth=kw.get("depth", 2), rng=rng)
    raise VANError(f"unknown model {kind!r}; choose 'nade' or 'made'")
