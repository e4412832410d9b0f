"""The CME's exact moment equations, and a step's law projected onto them.

For a function ``f`` of the state the CME gives ``d E_P[f] / dt = E_P[(L f)(x)]`` with the
generator

    (L f)(x) = sum_k a_k(x) (f(x + s_k) - f(x)),

``a_k`` switched off where ``x + s_k`` leaves the box (the reflecting truncation of
:mod:`cupyssa.cme.van`). For the powers ``f = x_i^p`` used here,

    L x_i   = sum_k a_k(x) s_ki,
    L x_i^2 = sum_k a_k(x) (2 x_i s_ki + s_ki^2).

No ratio of probabilities enters: an average of ``L f`` over draws of ``P`` has the spread of
the propensities. The velocity a VAN step gives the same moments, ``Cov_P(f, E)`` with the local
energy ``E``, is the same number in expectation, but where the law's tails are thinner than the
flow into them ``E`` is heavy-tailed and a batch sees a fraction of it (MAPK cascade at t = 50:
KKpp's mean moves at 0.03-0.08 per time unit in the steps, 0.17 in the CME;
``benchmarks/RESULTS.md``, sessions 33-34).

**Projection** (:func:`project_moments`). After a step from ``P_t`` to ``P'`` of size ``h``, the
conditionals of ``P'`` are tilted, ``P(n_i = m | n_<i) -> ∝ P(n_i = m | n_<i) exp(sum_p
tau_pi (m / M_i)^p)``, with the ``tau`` that make the change of each moment ``E[x_i^p]``
(``p <= degree``) the implicit trapezoid rule's ``h/2 (E_{P_t}[L x_i^p] + E_{P''}[L x_i^p])``,
``P''`` the tilted law itself (implicit: a step that did not move the law would otherwise get explicit
Euler's change, O(h) off over a run), solved by Newton iterations. A tilt of
each conditional is the smallest change of the law (in KL divergence, to first order) that
moves the moments of its own species, and it moves every value's logit by a smooth function of
the value, also in the tails no batch holds. The changes are measured on ``n_draws`` draws of
``P_t`` and ``P'`` taken with the same uniforms (common random numbers: the two laws are close,
so most draws coincide and the difference carries little noise). The targets' noise is that of
a mean of ``L f`` over ``n_draws`` states, and it does not build up like a bias: the moment
equations relax a mean that wanders off back towards where the propensities send it.

The linear response of the moments to the tilts is ``J[(p, j), (q, i)] = Cov(x_j^p, (x_i / M_i)^q
- E[(x_i / M_i)^q | n_<i])``, zero whenever ``j`` precedes ``i`` in the factorization order (a
function of ``n_<i`` is uncorrelated with the conditional's centred score), which the estimate
is given exactly; that of the targets ``K`` is the same covariance with ``L x_j^p`` in place of
``x_j^p`` (no zeros: the propensities depend on every species). A Newton iteration at the
current tilted law ``P'`` tilts it further by the ``d`` that solves ``(J - h/2 K) d =
h/2 (E_{P_t}[L f] + E_{P'}[L f]) - (E_{P'}[f] - E_{P_t}[f])``.

**Products of pairs** (``pairs``, with degree 2). The means of a bimolecular network depend on
the products ``E[x_i x_j]`` of the species that react together (:func:`reacting_pairs`), whose
equations are ``L(x_i x_j) = sum_k a_k(x) (x_i s_kj + x_j s_ki + s_ki s_kj)``, and a tilt of
each conditional by its own value cannot move them. Each pair instead moves along the parameter
change whose first-order change of ``log P`` is the best fit (Fisher metric) of ``x_i x_j`` less
its regression on every species' own powers (:func:`_pair_directions`): the network's nearest
tilt by the product, and what the own tilts cannot do. Its response is measured on draws the fit
did not see and re-measured at each Newton iteration; the pairs and the tilts are solved
together. These directions are not an exponential family, so the Newton iterations converge only
for moves that are small against the law's spread, as a VAN step's corrections are (MAPK: ~1 %
of a spread per step). Only the pairs asked for: all 120 pairs of MAPK's 16 species tie most
products to others through the conservation laws, and the solve's nearly dependent columns,
estimated from draws, sent a projection that had to make a whole step of 0.25 from the t = 25
law away (residual 3.8, then 29); its 9 reacting pairs converge (3.8, then 0.45).
"""

from __future__ import annotations

from math import comb

import numpy as np

from .autoregressive import AutoregressiveModel
from .fisher import natural_direction

__all__ = ["box_propensities", "power_moments", "reacting_pairs", "pair_products",
           "moment_functions", "generator_of_powers", "project_moments"]

#: singular values of the tilts' response below this fraction of the largest are dropped: the
#: conditionals a conservation law makes (nearly) deterministic, whose tilts move nothing
_RCOND = 1e-6


def power_moments(x, degree: int) -> np.ndarray:
    """``[N, degree * S]`` powers ``x_i^p`` of states ``x [N, S]``, columns ordered ``(p, i)``."""
    x = np.asarray(x, dtype=float)
    return np.concatenate([x ** p for p in range(1, degree + 1)], axis=1)


def reacting_pairs(network) -> tuple[np.ndarray, np.ndarray]:
    """``(I, J)``: the pairs of species ``i < j`` (columns of ``network``) that are reactants of
    one reaction, whose products ``E[x_i x_j]`` the means' equations read. ``network`` needs
    ``reactant_matrix [K, S]``."""
    R = np.asarray(network.reactant_matrix) > 0
    pairs = sorted({(i, j) for row in R for i in np.flatnonzero(row) for j in np.flatnonzero(row)
                    if i < j})
    return (np.array([i for i, _ in pairs], dtype=np.int64),
            np.array([j for _, j in pairs], dtype=np.int64))


def pair_products(x, pairs) -> np.ndarray:
    """``[N, Q]`` products ``x_i x_j`` of states ``x [N, S]`` for the ``pairs (I, J)``."""
    x = np.asarray(x, dtype=float)
    return x[:, pairs[0]] * x[:, pairs[1]]


def box_propensities(network, rates, caps, x) -> np.ndarray:
    """``a_k(x)`` ``[N, K]`` of states ``x [N, S]`` in the box, 0 where ``x + s_k`` leaves it
    (the reflecting truncation). ``network`` needs ``stoichiometry [K, S]`` and
    ``propensities(x, rates) [N, K]``; ``caps [S]``: the box ``0 <= x_i < caps_i``."""
    x = np.asarray(x)
    after = x[:, None, :] + np.asarray(network.stoichiometry)[None]  # [N, K, S]
    inside = np.all((after >= 0) & (after < np.asarray(caps)), axis=-1)
    return np.where(inside, network.propensities(x, rates), 0.0)


def generator_of_powers(network, rates, caps, x, degree: int, pairs=None) -> np.ndarray:
    """``[N, degree * S (+ Q)]`` ``(L x_i^p)(x)`` for the box chain, columns as
    :func:`power_moments`, followed by ``(L x_i x_j)(x)`` for the ``pairs`` if given.

    Parameters
    ----------
    network : needs ``stoichiometry [K, S]`` and ``propensities(x, rates) [N, K]``
    rates : the network's parameter vector
    caps : [S] the box ``0 <= x_i < caps_i``
    x : [N, S] states in the box
    pairs : ``(I, J)`` index arrays (e.g. :func:`reacting_pairs`), or None for the powers alone
    """
    a = box_propensities(network, rates, caps, x)  # [N, K]
    s = np.asarray(network.stoichiometry).astype(float)
    # (x + s)^p - x^p = sum_{j=1..p} C(p, j) x^(p-j) s^j: one [N, K] x [K, S] product per j
    flux = [a @ s ** j for j in range(1, degree + 1)]
    xf = np.asarray(x, dtype=float)
    columns = [sum(comb(p, j) * xf ** (p - j) * flux[j - 1] for j in range(1, p + 1))
               for p in range(1, degree + 1)]
    if pairs is not None:
        # (x_i + s_i)(x_j + s_j) - x_i x_j = x_i s_j + x_j s_i + s_i s_j
        first, second = pairs
        columns.append(xf[:, first] * flux[0][:, second] + xf[:, second] * flux[0][:, first]
                       + a @ (s[:, first] * s[:, second]))
    return np.concatenate(columns, axis=1)


def moment_functions(x, degree: int, pairs=None) -> np.ndarray:
    """The functions whose means are projected: :func:`power_moments` and, with ``pairs``,
    :func:`pair_products`, in :func:`generator_of_powers`' column order."""
    F = power_moments(x, degree)
    return F if pairs is None else np.concatenate([F, pair_products(x, pairs)], axis=1)


def _tilt_scores(model: AutoregressiveModel, x, u, degree: int) -> np.ndarray:
    """``[N, degree * S]`` ``u_i^q - E[u_i^q | n_<i]`` with ``u_i = x_i / M_i`` (``u [S, M_max]``
    its values ``m / M_i``): the derivative of ``log P(x)`` along the tilt of conditional ``i``
    by ``u^q``."""
    cond = model.conditionals(x)  # [N, S, M_max]
    xu = np.asarray(x) / model.caps
    return np.concatenate([xu ** q - np.einsum("nsm,sm->ns", cond, u ** q)
                           for q in range(1, degree + 1)], axis=1)


def _pair_directions(model: AutoregressiveModel, pairs, x_fit, damping: float) -> np.ndarray:
    """``[P, Q]`` the parameter changes that tilt the law by the products ``x_i x_j``.

    A tilt ``P -> ∝ P exp(mu g_ij(x))`` by ``g_ij``, the product ``x_i x_j`` less its regression
    on every species' own powers and scaled to unit spread, couples two species, which no
    output bias can do. Its Fisher-metric projection onto the network, the ``delta`` whose
    change of ``log P`` is the least-squares fit of ``g_ij`` on draws ``x_fit``
    (:func:`~cupyssa.cme.fisher.natural_direction`, one factorization for every pair), is the
    smallest change of the law (in KL divergence, to first order) in that direction that the
    network can make. ``damping``: the relative damping of that solve.
    """
    N = len(x_fit)
    _, jac = model.log_prob_and_jacobian(x_fit)
    products = pair_products(x_fit, pairs)
    # less their regression on every species' own powers: the tilts move those, and a direction
    # that also moved them would be cancelled by the tilts, leaving the solve ill-conditioned
    own = np.column_stack([np.ones(N), power_moments(x_fit, 2)])
    products -= own @ np.linalg.lstsq(own, products, rcond=None)[0]
    sd = products.std(axis=0)
    # in units of each product's spread: the responses then have the scale of the moments',
    # whatever the caps, and the least-squares cut-off treats pairs and tilts alike
    return natural_direction(jac, products / np.where(sd > 0, sd, 1.0), np.full(N, 1.0 / N),
                             damping)[0]


#: the finite differences along the pairs' directions move no parameter by more than this: far
#: above the rounding of ``log P`` (relative error ~1e-16 / 1e-5) and far below its curvature
_FD_STEP = 1e-5


def _directional_scores(model: AutoregressiveModel, x, directions) -> np.ndarray:
    """``[N, Q]`` ``d log P(x) / d mu_q`` along each column of ``directions [P, Q]``, centred,
    by forward differences: one pass of ``log P`` per direction, where the per-sample Jacobian
    would cost an ``[N, P]`` matrix."""
    theta = model.theta.copy()
    lp = model.log_prob(x)
    score = np.empty((len(x), directions.shape[1]))
    for q, d in enumerate(directions.T):
        step = _FD_STEP / max(float(np.abs(d).max()), 1e-300)
        model.theta = theta + step * d
        score[:, q] = (model.log_prob(x) - lp) / step
    model.theta = theta
    return score - score.mean(axis=0)


def project_moments(model: AutoregressiveModel, frozen: AutoregressiveModel, network, rates,
                    h: float, degree: int, n_draws: int, rng: np.random.Generator,
                    iterations: int = 2, pairs=None, direction_draws: int = 2000,
                    damping: float = 1e-3) -> dict:
    """Tilt the conditionals of ``model`` (the law after a step of ``h`` from ``frozen``) so that
    its moments ``E[x_i^p]``, ``p <= degree``, moved by the trapezoid rule of the CME's moment
    equations (module docstring). ``model.theta`` is changed in place.

    Parameters
    ----------
    model, frozen : the laws after and before the step (same network and caps)
    network, rates : the CME (``network.propensities(x, rates)``); the step's rates
    h : the step (time units)
    degree : 1 (means) or 2 (means and second moments)
    n_draws : draws of each law for the moments' changes, the targets and the responses
    rng : seeds the draws (one seed for every law: common random numbers)
    iterations : Newton iterations (the moments are exponential in the tilts: a tilt asked to
        move a mean by 20 % of its standard deviation overshoots by ~10 % in one; a VAN step's
        projection asks far less). An iteration is kept only if it shrinks the residual (in
        units of each function's spread): one more draw of the law measures the last one
    pairs : ``(I, J)``, index arrays of species pairs ``i != j`` whose products ``E[x_i x_j]``
        are also projected, through the network's parameters (:func:`_pair_directions`; needs
        ``degree=2``), e.g. :func:`reacting_pairs`; None or empty: none
    direction_draws : draws that fit the pairs' directions, and as many others that measure
        their response (at most ``n_draws / 2`` each)
    damping : relative damping of the directions' Fisher solve (the directions' own: a step's
        damping can be set high to keep the steps still, as in the tests)

    Returns
    -------
    dict : ``tilt`` ([degree, S], the ``tau``), ``pair_tilt`` ([Q], the pairs' coefficients),
        ``moved`` (the step's change of the projected moments, before any tilt), ``residual``
        (target less change at the law returned), ``size`` (its norm in units of each
        function's spread) and ``reverted`` (whether an iteration that made it larger was
        undone)
    """
    if degree not in (1, 2) or iterations < 1 or n_draws < 1:
        raise ValueError(f"project_moments needs degree 1 or 2, iterations >= 1 and n_draws >= 1; "
                         f"got {degree}, {iterations}, {n_draws}")
    covariances = pairs is not None and len(pairs[0]) > 0
    if covariances:
        pairs = tuple(np.asarray(p, dtype=np.int64) for p in pairs)
        if (degree != 2 or n_draws < 2 or direction_draws < 1 or len(pairs[0]) != len(pairs[1])
                or np.any(pairs[0] == pairs[1]) or np.any(np.concatenate(pairs) < 0)
                or np.any(np.concatenate(pairs) >= model.S)):
            raise ValueError(f"pairs need degree 2, n_draws >= 2, direction_draws >= 1 and two "
                             f"equally long arrays of distinct species in [0, {model.S}); got "
                             f"degree {degree}, {n_draws}, {direction_draws}, {pairs}")
        # the last of each pair in the factorization order second (the response's zeros)
        pairs = (np.minimum(*pairs), np.maximum(*pairs))
    else:
        pairs = None
    seed = int(rng.integers(2 ** 63))
    x0 = frozen.sample(n_draws, np.random.default_rng(seed))[0]
    F0 = moment_functions(x0, degree, pairs).mean(axis=0)
    L0 = generator_of_powers(network, rates, model.caps, x0, degree, pairs).mean(axis=0)
    species = np.arange(model.S)
    # the last species (in the factorization order) each projected function depends on: its
    # response to the tilt of a later conditional is zero
    last = np.concatenate([np.tile(species, degree)] + ([] if pairs is None else [pairs[1]]))
    unmoved = last[:, None] < np.tile(species, degree)[None, :]  # [functions, tilts]
    u = np.arange(model.M_max)[None, :] / model.caps[:, None]  # [S, M_max]: m / M_i
    n_tilts = degree * model.S
    coefficients = np.zeros(n_tilts + (0 if pairs is None else len(pairs[0])))
    reverted, before = False, None  # before: (residual, its size, theta, d) of the latest update
    for it in range(iterations + 1):  # the last pass measures the last update
        x1 = model.sample(n_draws, np.random.default_rng(seed))[0]
        F1 = moment_functions(x1, degree, pairs)
        L1 = generator_of_powers(network, rates, model.caps, x1, degree, pairs)
        if it == 0:
            moved = F1.mean(axis=0) - F0
            # the residuals' size in units of each function's spread under the stepped law
            spread = F1.std(axis=0)
            spread[spread == 0] = 1.0
            if covariances:  # fitted once, at the stepped law
                nd = min(direction_draws, n_draws // 2)
                directions = _pair_directions(model, pairs, x1[:nd], damping)
        residual = 0.5 * h * (L0 + L1.mean(axis=0)) - (F1.mean(axis=0) - F0)
        size = float(np.linalg.norm(residual / spread))
        if before is not None and size >= before[1]:
            # the linearization failed (a move too large for it, or a response the draws got
            # wrong): undo the update that made things worse, and stop
            residual, size, model.theta, d = before
            coefficients -= d
            reverted = True
            break
        if it == iterations:
            break
        scores = _tilt_scores(model, x1, u, degree)
        J = (F1 - F1.mean(axis=0)).T @ scores / n_draws
        J[unmoved] = 0.0
        K = (L1 - L1.mean(axis=0)).T @ scores / n_draws  # the response of E[L x^p] to the tilts
        # the implicit trapezoid, linear in the tilt d: J d = residual + h/2 K d
        A = J - 0.5 * h * K
        if covariances:
            # the response to the pairs' directions on the draws they were not fitted on (with
            # more parameters than draws a fit is exact on its own draws)
            f = F1[nd:2 * nd] - 0.5 * h * L1[nd:2 * nd]
            score = _directional_scores(model, x1[nd:2 * nd], directions)
            A = np.concatenate([A, (f - f.mean(axis=0)).T @ score / len(f)], axis=1)
        d = np.linalg.lstsq(A, residual, rcond=_RCOND)[0]
        before = (residual, size, model.theta.copy(), d)
        tilt = d[:n_tilts].reshape(degree, model.S)
        model.tilt_conditionals(sum(tilt[q][:, None] * u ** (q + 1) for q in range(degree)))
        if covariances:
            model.theta = model.theta + directions @ d[n_tilts:]
        coefficients += d
    return {"tilt": coefficients[:n_tilts].reshape(degree, model.S),
            "pair_tilt": coefficients[n_tilts:], "moved": moved, "residual": residual,
            "size": size, "reverted": reverted}
