"""The ``numpy`` backend: the readable reference, vectorized over trajectories.

It recomputes every propensity each step with the vectorized laws of :mod:`cupyssa.ratelaws` and
draws the same counter-based uniforms as the kernels (the Philox source runs elementwise on
arrays), so it produces the same trajectories as the ``cpu`` backend.
"""

import numpy as np

from ..kernels import codes
from ..kernels.philox import STREAM_FORWARD, split_seed, uniform_pair


def simulate_chunk(network, x0, theta, first, t0, t_eval, seed, max_steps, states):
    N, T, S = states.shape
    nu = network.stoichiometry
    lo, hi = split_seed(seed)
    count_limit = np.iinfo(states.dtype).max
    x = np.array(np.broadcast_to(x0, (N, S)), dtype=np.int64)
    theta = np.broadcast_to(theta, (N, theta.shape[-1]))
    t = np.full(N, float(t0))
    k = np.zeros(N, dtype=np.int64)
    obs = np.zeros(N, dtype=np.int64)
    status = np.zeros(N, dtype=np.int8)
    fail_reaction = np.full(N, -1, dtype=np.int64)
    active = np.arange(N)

    while active.size:
        a = network.propensities(x[active], theta[active])
        bad = ~((a >= 0.0) & (a < np.inf))
        if bad.any():
            rows = bad.any(axis=1)
            fail_reaction[active[rows]] = bad[rows].argmax(axis=1)
            status[active[rows]] = codes.BAD_PROPENSITY
            keep = ~rows
            active, a = active[keep], a[keep]
            if not active.size:
                break
        cum = np.cumsum(a, axis=1)  # sequential sums: the same doubles as the kernel's loop
        a0 = cum[:, -1]
        u_tau, u_sel = uniform_pair(lo, hi, (first + active).astype(np.uint64),
                                    k[active].astype(np.uint64), STREAM_FORWARD)
        with np.errstate(divide="ignore"):
            t_next = np.where(a0 > 0.0, t[active] - np.log(u_tau) / np.where(a0 > 0.0, a0, 1.0), np.inf)
        # record every grid time strictly before the next event with the current state
        n_before = np.searchsorted(t_eval, t_next, side="left")
        while True:
            rec = obs[active] < n_before
            if not rec.any():
                break
            rows = active[rec]
            over = (x[rows] > count_limit).any(axis=1)
            status[rows[over]] = codes.POPULATION_OVERFLOW
            states[rows[~over], obs[rows[~over]]] = x[rows[~over]]
            obs[rows] += 1
            n_before[rec] = np.where(over, -1, n_before[rec])
        live = (obs[active] < T) & (status[active] == codes.OK)
        steps_out = live & (k[active] >= max_steps)
        status[active[steps_out]] = codes.MAX_STEPS
        live &= ~steps_out
        active, a, cum, a0, u_sel, t_next = (v[live] for v in (active, a, cum, a0, u_sel, t_next))
        if not active.size:
            break
        target = u_sel * a0
        hit = (cum > target[:, None]) & (a > 0.0)
        last_positive = a.shape[1] - 1 - np.argmax((a > 0.0)[:, ::-1], axis=1)
        r = np.where(hit.any(axis=1), np.argmax(hit, axis=1), last_positive)
        x[active] += nu[r]
        negative = (x[active] < 0).any(axis=1)
        if negative.any():
            rows = active[negative]
            status[rows] = codes.NEGATIVE_POPULATION
            fail_reaction[rows] = r[negative]
            t[rows] = t_next[negative]
            active, t_next = active[~negative], t_next[~negative]
        t[active] = t_next
        k[active] += 1
    return status, k, t, fail_reaction
