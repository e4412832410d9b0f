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
"""

from __future__ import annotations

from math import comb

import numpy as np

from .autoregressive import AutoregressiveModel

__all__ = ["box_propensities", "power_moments", "generator_of_powers", "project_moments"]

#: singular values of the tilts' response below this fraction of the largest are dropped: the
#: conditionals a conservation law makes (nearly) deterministic, whose tilts move nothing
_RCOND = 1e-6


def power_moments(x, degree: int) -> np.ndarray:
    """``[N, degree * S]`` powers ``x_i^p`` of states ``x [N, S]``, columns ordered ``(p, i)``."""
    x = np.asarray(x, dtype=float)
    return np.concatenate([x ** p for p in range(1, degree + 1)], axis=1)


def box_propensities(network, rates, caps, x) -> np.ndarray:
    """``a_k(x)`` ``[N, K]`` of states ``x [N, S]`` in the box, 0 where ``x + s_k`` leaves it
    (the reflecting truncation). ``network`` needs ``stoichiometry [K, S]`` and
    ``propensities(x, rates) [N, K]``; ``caps [S]``: the box ``0 <= x_i < caps_i``."""
    x = np.asarray(x)
    after = x[:, None, :] + np.asarray(network.stoichiometry)[None]  # [N, K, S]
    inside = np.all((after >= 0) & (after < np.asarray(caps)), axis=-1)
    return np.where(inside, network.propensities(x, rates), 0.0)


def generator_of_powers(network, rates, caps, x, degree: int) -> np.ndarray:
    """``[N, degree * S]`` ``(L x_i^p)(x)`` for the box chain, columns as :func:`power_moments`.

    Parameters
    ----------
    network : needs ``stoichiometry [K, S]`` and ``propensities(x, rates) [N, K]``
    rates : the network's parameter vector
    caps : [S] the box ``0 <= x_i < caps_i``
    x : [N, S] states in the box
    """
    a = box_propensities(network, rates, caps, x)  # [N, K]
    s = np.asarray(network.stoichiometry)
    # (x + s)^p - x^p = sum_{j=1..p} C(p, j) x^(p-j) s^j: one [N, K] x [K, S] product per j
    flux = [a @ s.astype(float) ** j for j in range(1, degree + 1)]  # flux[j-1] = sum_k a_k s_k^j
    xf = np.asarray(x, dtype=float)
    return np.concatenate([sum(comb(p, j) * xf ** (p - j) * flux[j - 1] for j in range(1, p + 1))
                           for p in range(1, degree + 1)], axis=1)


def _tilt_scores(model: AutoregressiveModel, x, u, degree: int) -> np.ndarray:
    """``[N, degree * S]`` ``u_i^q - E[u_i^q | n_<i]`` with ``u_i = x_i / M_i`` (``u [S, M_max]``
    its values ``m / M_i``): the derivative of ``log P(x)`` along the tilt of conditional ``i``
    by ``u^q``."""
    cond = model.conditionals(x)  # [N, S, M_max]
    xu = np.asarray(x) / model.caps
    return np.concatenate([xu ** q - np.einsum("nsm,sm->ns", cond, u ** q)
                           for q in range(1, degree + 1)], axis=1)


def project_moments(model: AutoregressiveModel, frozen: AutoregressiveModel, network, rates,
                    h: float, degree: int, n_draws: int, rng: np.random.Generator,
                    iterations: int = 2) -> dict:
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
        projection asks far less)

    Returns
    -------
    dict : ``tilt`` ([degree, S], the ``tau``), ``moved`` ([degree * S], the step's change of
        the moments, before any tilt) and ``residual`` (target less change at the last
        iteration's start)
    """
    if degree not in (1, 2) or iterations < 1 or n_draws < 1:
        raise ValueError(f"project_moments needs degree 1 or 2, iterations >= 1 and n_draws >= 1; "
                         f"got {degree}, {iterations}, {n_draws}")
    seed = int(rng.integers(2 ** 63))
    x0 = frozen.sample(n_draws, np.random.default_rng(seed))[0]
    F0 = power_moments(x0, degree).mean(axis=0)
    L0 = generator_of_powers(network, rates, model.caps, x0, degree).mean(axis=0)
    species = np.tile(np.arange(model.S), degree)
    u = np.arange(model.M_max)[None, :] / model.caps[:, None]  # [S, M_max]: m / M_i
    tau = np.zeros(degree * model.S)
    for it in range(iterations):
        x1 = model.sample(n_draws, np.random.default_rng(seed))[0]
        F1 = power_moments(x1, degree)
        L1 = generator_of_powers(network, rates, model.caps, x1, degree)
        if it == 0:
            moved = F1.mean(axis=0) - F0
        residual = 0.5 * h * (L0 + L1.mean(axis=0)) - (F1.mean(axis=0) - F0)
        scores = _tilt_scores(model, x1, u, degree)
        J = (F1 - F1.mean(axis=0)).T @ scores / n_draws
        J[species[:, None] < species[None, :]] = 0.0
        K = (L1 - L1.mean(axis=0)).T @ scores / n_draws  # the response of E[L x^p] to the tilts
        # the implicit trapezoid, linear in the tilt d: J d = residual + h/2 K d
        d = np.linalg.lstsq(J - 0.5 * h * K, residual, rcond=_RCOND)[0].reshape(degree, model.S)
        model.tilt_conditionals(sum(d[q][:, None] * u ** (q + 1) for q in range(degree)))
        tau += d.ravel()
    return {"tilt": tau.reshape(degree, model.S), "moved": moved, "residual": residual}
