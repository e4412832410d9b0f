"""One exact SSA trajectory (direct method), observed on a time grid. Shared CPU/CUDA source.

At step ``k`` with propensities ``a`` and ``a0 = sum_j a_j``, the counter-based uniforms
``(u_tau, u_sel)`` of ``(seed, trajectory, k, STREAM_FORWARD)`` give the waiting time
``tau = -log(u_tau) / a0`` and the event ``r`` = the first ``j`` whose running sum of propensities
exceeds ``u_sel a0`` (inverse-CDF search; exact, and equal in law to the Gumbel-max choice of
DESIGN.md, whose Gumbels the backward pass reconstructs conditionally on ``r``). Only the
propensities that depend on the species changed by ``r`` are recomputed (dependency graph).
Observation is right-continuous: the state reported at ``t_eval[m]`` is the state after every event
with time ``<= t_eval[m]``.
"""

import math

from .codes import BAD_PROPENSITY, MAX_STEPS, NEGATIVE_POPULATION, OK, POPULATION_OVERFLOW
from .philox import STREAM_FORWARD, uniform_pair
from .propensity import propensity

_INF = math.inf


def select_reaction(a, target):
    """First ``j`` with ``a_0 + ... + a_j > target`` among positive ``a_j``; the last positive one
    if rounding leaves ``target`` at the total."""
    acc = 0.0
    last = -1
    for j in range(a.shape[0]):
        if a[j] > 0.0:
            acc += a[j]
            last = j
            if acc > target:
                return j
    return last


def simulate_trajectory(trajectory, x, theta, t0, t_eval, out, a, seed_lo, seed_hi, max_steps,
                        count_limit, tab):
    """Simulate one trajectory; ``x`` (int64 ``[S]``) is advanced in place and ``out[m, :]`` receives
    the state at ``t_eval[m]``. ``a`` is scratch ``[M]``.

    Returns ``(status, n_events, t, reaction)``: a ``codes`` status, the number of events that
    happened up to ``t_eval[-1]``, the time reached (the failure time when ``status != OK``) and the
    reaction involved in a failure (-1 if none).
    """
    M = a.shape[0]
    for j in range(M):
        aj = propensity(j, x, theta, tab)
        if not (aj >= 0.0 and aj < _INF):
            return BAD_PROPENSITY, 0, t0, j
        a[j] = aj
    n_obs = t_eval.shape[0]
    t = t0
    obs = 0
    k = 0
    while True:
        a0 = 0.0
        for j in range(M):
            a0 += a[j]
        u_sel = 0.0
        t_next = _INF
        if a0 > 0.0:
            u_tau, u_sel = uniform_pair(seed_lo, seed_hi, trajectory, k, STREAM_FORWARD)
            t_next = t - math.log(u_tau) / a0
        while obs < n_obs and t_eval[obs] < t_next:
            for s in range(x.shape[0]):
                if x[s] > count_limit:
                    return POPULATION_OVERFLOW, k, t, -1
                out[obs, s] = x[s]
            obs += 1
        if obs == n_obs:
            return OK, k, t, -1
        if k >= max_steps:
            return MAX_STEPS, k, t, -1
        r = select_reaction(a, u_sel * a0)
        for e in range(tab.net_ptr[r], tab.net_ptr[r + 1]):
            s = tab.net_species[e]
            x[s] += tab.net_delta[e]
            if x[s] < 0:
                return NEGATIVE_POPULATION, k, t_next, r
        t = t_next
        k += 1
        for e in range(tab.dep_ptr[r], tab.dep_ptr[r + 1]):
            j = tab.dep_reaction[e]
            aj = propensity(j, x, theta, tab)
            if not (aj >= 0.0 and aj < _INF):
                return BAD_PROPENSITY, k, t, j
            a[j] = aj
