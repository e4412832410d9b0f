"""The ``numpy`` backend: the readable reference, vectorized over trajectories.

It recomputes every propensity each step with the vectorized laws of :mod:`cupyssa.ratelaws` and
draws the same counter-based uniforms as the kernels (the Philox source runs elementwise on
arrays), so it produces the same trajectories as the ``cpu`` backend. Same segment semantics as
:func:`cupyssa.kernels.trajectory.simulate_trajectory`; state-triggered events are not supported.
"""

import numpy as np

from ..kernels import codes
from ..kernels.philox import STREAM_FORWARD, split_seed, uniform_pair
from ..kernels.trajectory import BLOCK


def running_sums(a: np.ndarray) -> np.ndarray:
    """The running sums ``R [N, M]`` of propensities ``a [N, M]`` in the kernels' two-level order
    (:func:`cupyssa.kernels.trajectory.cumulate`): ``R_j = P_b + (a_{8b} + ... + a_j)`` for ``j`` in
    block ``b``, with the block prefixes ``P_{b+1} = P_b + s_b`` summed sequentially; ``R[:, -1]``
    is the total ``a0``. ``cumsum`` is sequential, so these are the kernels' doubles."""
    N, M = a.shape
    if M <= BLOCK:
        return np.cumsum(a, axis=1)
    n_blocks = -(-M // BLOCK)
    padded = np.zeros((N, n_blocks * BLOCK))
    padded[:, :M] = a  # trailing zeros leave the last block's sums unchanged
    within = np.cumsum(padded.reshape(N, n_blocks, BLOCK), axis=2)
    prefix = np.cumsum(within[:, :, -1], axis=1)
    below = np.concatenate([np.zeros((N, 1)), prefix[:, :-1]], axis=1)
    return (below[:, :, None] + within).reshape(N, -1)[:, :M]


def simulate_segment(network, seg, t_stop, t_eval, seed, max_steps, specialize=False):
    if seg.obs_step.shape[1] or seg.smooth.shape[1] or seg.horizon > -np.inf:
        raise NotImplementedError("the numpy backend records no observation data for gradients; "
                                  "use backend='cpu'")
    N, T, S = seg.states.shape
    nu = network.stoichiometry
    lo, hi = split_seed(seed)
    count_limit = np.iinfo(seg.states.dtype).max
    theta = np.broadcast_to(seg.theta, (N, seg.theta.shape[-1]))
    x, t, k, obs = seg.x, seg.t, seg.k, seg.obs
    L, C = seg.tape.shape[1], seg.checkpoint_every
    status = np.zeros(N, dtype=np.int8)
    fail_reaction = np.full(N, -1, dtype=np.int64)
    active = np.arange(N)

    def retire(mask, code, reaction=None):
        """Give status ``code`` to the active rows in ``mask`` and drop them."""
        nonlocal active
        status[active[mask]] = code
        if reaction is not None:
            fail_reaction[active[mask]] = reaction[mask]
        keep = ~mask
        active = active[keep]
        return keep

    while active.size:
        with np.errstate(all="ignore"):  # NaN/inf/negative propensities are reported just below
            a = network.propensities(x[active], theta[active])
        bad = ~((a >= 0.0) & (a < np.inf))
        keep = retire(bad.any(axis=1), codes.BAD_PROPENSITY, bad.argmax(axis=1))
        a = a[keep]
        if not active.size:
            break
        if seg.t_checkpoints.shape[1]:
            due = (k[active] % C == 0) & (k[active] // C < seg.t_checkpoints.shape[1])
            seg.t_checkpoints[active[due], k[active[due]] // C] = t[active[due]]
        cum = running_sums(a)
        a0 = cum[:, -1]
        u_tau, u_sel = uniform_pair(lo, hi, (seg.first + active).astype(np.uint64),
                                    k[active].astype(np.uint64), STREAM_FORWARD)
        with np.errstate(divide="ignore"):
            t_next = np.where(a0 > 0.0, t[active] - np.log(u_tau) / np.where(a0 > 0.0, a0, 1.0), np.inf)
        # record every grid time strictly before min(next event, t_stop) with the current state
        n_before = np.searchsorted(t_eval, np.minimum(t_next, t_stop), side="left")
        overflow = np.zeros(active.size, dtype=bool)
        while True:
            rec = (obs[active] < n_before) & ~overflow
            if not rec.any():
                break
            rows = active[rec]
            over = (x[rows] > count_limit).any(axis=1)
            overflow[np.flatnonzero(rec)[over]] = True
            ok = rows[~over]
            seg.states[ok, obs[ok]] = x[ok]
            obs[ok] += 1
        keep = retire(overflow, codes.POPULATION_OVERFLOW)
        a, cum, a0, u_sel, t_next = (v[keep] for v in (a, cum, a0, u_sel, t_next))
        keep = retire(obs[active] == T, codes.OK)
        a, cum, a0, u_sel, t_next = (v[keep] for v in (a, cum, a0, u_sel, t_next))
        stopped = t_stop < t_next
        t[active[stopped]] = t_stop
        k[active[stopped]] += 1
        keep = retire(stopped, codes.STOPPED)
        a, cum, a0, u_sel, t_next = (v[keep] for v in (a, cum, a0, u_sel, t_next))
        keep = retire(k[active] >= max_steps, codes.MAX_STEPS)
        a, cum, a0, u_sel, t_next = (v[keep] for v in (a, cum, a0, u_sel, t_next))
        if not active.size:
            break
        hit = (cum > (u_sel * a0)[:, None]) & (a > 0.0)
        last_positive = a.shape[1] - 1 - np.argmax((a > 0.0)[:, ::-1], axis=1)
        r = np.where(hit.any(axis=1), np.argmax(hit, axis=1), last_positive)
        taped = k[active] < L
        seg.tape[active[taped], k[active[taped]]] = r[taped]
        x[active] += nu[r]
        negative = (x[active] < 0).any(axis=1)
        t[active[negative]] = t_next[negative]
        keep = retire(negative, codes.NEGATIVE_POPULATION, r)
        t[active] = t_next[keep]
        k[active] += 1
    return status, fail_reaction
