"""One exact SSA trajectory (direct method), observed on a time grid. Shared CPU/CUDA source.

At step ``k`` with propensities ``a`` and ``a0 = sum_j a_j``, the counter-based uniforms
``(u_tau, u_sel)`` of ``(seed, trajectory, k, STREAM_FORWARD)`` give the waiting time
``tau = -log(u_tau) / a0`` and the event ``r`` = the first ``j`` whose running sum of propensities
exceeds ``u_sel a0`` (inverse-CDF search; exact, and equal in law to the Gumbel-max choice of
DESIGN.md, whose Gumbels the backward pass reconstructs conditionally on ``r``). Only the
propensities that depend on the species changed by ``r`` are recomputed (dependency graph).
Observation is right-continuous: the state reported at ``t_eval[m]`` is the state after every event
with time ``<= t_eval[m]``.

A trajectory can run in segments (``k_start``, ``obs_start``, ``t_stop``): at ``t_stop`` the
pending waiting time is discarded — exact by memorylessness — and step ``k`` is consumed without
an event, so the resumed segment draws fresh numbers. This serves events (SBML) that change the
state or parameters at a given time, and ``event_trigger`` stops a trajectory right after an event
that makes a condition on the state true.
"""

import math

from .codes import (BAD_PROPENSITY, MAX_STEPS, NEGATIVE_POPULATION, OK, POPULATION_OVERFLOW,
                    STOPPED, TRIGGERED)
from .philox import STREAM_FORWARD, uniform_block
from .propensity import propensity

_INF = math.inf
#: reactions per block of the two-level running sums (:func:`cumulate`); a network of at most
#: this many reactions is one block, and its event is counted without branches
BLOCK = 8


def event_trigger(x, t, theta):
    """Whether a state-triggered event fires after an event (default: never; code-generated
    networks supply their own)."""
    return False


def reaction_count(a):
    """``M``, the number of reactions: the length of the propensity vector ``a``. A network's
    specialized family (:mod:`cupyssa.specialize`) returns it as a literal, so that the loops over
    reactions have a constant trip count, which LLVM unrolls for small networks."""
    return a.shape[0]


def cumulate(a, cum):
    """The total ``a0`` of the propensities, in the kernels' two-level order (``M >= 1``).

    The reactions are cut into blocks of ``BLOCK``; block ``b`` sums sequentially to ``s_b``, and
    the block totals sum sequentially to the prefixes ``P_{b+1} = P_b + s_b`` (``P_0 = 0``), of
    which ``a0 = P_B`` is the last. The running sum at reaction ``j`` of block ``b`` is
    ``R_j = P_b + (a_{8b} + ... + a_j)``; it ends the block at exactly ``P_{b+1}``. The block chains
    are independent, so the dependent additions per step are ``BLOCK + M / BLOCK`` instead of
    ``M``: the whole-network running sum made the 94-reaction Schlögl chain latency-bound (1.8x
    faster with blocks; full blocks have a fixed trip count, which LLVM unrolls). One
    block (``M <= BLOCK``) is plain sequential summation. For more than one block the prefixes
    ``P_1 .. P_B`` are stored in ``cum[0 .. B-1]`` for :func:`select_reaction`."""
    M = reaction_count(a)
    total = a[0]  # not 0.0 + a_0: one addition fewer on the event-to-event chain
    if M <= BLOCK:
        for j in range(1, M):
            total += a[j]
        return total
    total = 0.0
    n_full = M // BLOCK
    for b in range(n_full):
        lo = b * BLOCK
        s = a[lo]
        for j in range(1, BLOCK):
            s += a[lo + j]
        total += s
        cum[b] = total
    lo = n_full * BLOCK
    if lo < M:
        s = a[lo]
        for j in range(lo + 1, M):
            s += a[j]
        total += s
        cum[n_full] = total
    return total


def select_reaction(a, cum, target):
    """The first ``j`` with running sum ``R_j > target`` (the two-level sums of :func:`cumulate`,
    same doubles; this is always a positive ``a_j``, since a zero one repeats the previous sum);
    the last positive ``a_j`` if rounding leaves ``target`` at the total.

    One block is counted, ``r = #{j : R_j <= target}``, with no data-dependent branch (an early
    exit at a random ``j`` costs a branch misprediction per event: 1.3x on the dimerization).
    Several blocks are scanned with early exits, first the prefixes ``P_{b+1}`` for the block, then
    the ``R_j`` inside it: the prefixes and the ``R_j`` are non-decreasing and the block ends at
    ``P_{b+1}``, so the first hit is the first ``R_j > target``. (Counting either level instead
    was slower: 0.85x on the Vilar oscillator, whose few dominant reactions make the exits
    predictable, and no faster on the Schlögl chain.)"""
    M = reaction_count(a)
    r = M
    if M <= BLOCK:
        r = a[0] <= target
        acc = a[0]
        for j in range(1, M):
            acc += a[j]
            r += acc <= target
    else:
        n_blocks = (M + BLOCK - 1) // BLOCK
        b = 0
        while b < n_blocks and cum[b] <= target:
            b += 1
        if b < n_blocks:
            below = cum[b - 1] if b > 0 else 0.0
            within = 0.0
            for j in range(b * BLOCK, min(b * BLOCK + BLOCK, M)):
                within += a[j]
                if below + within > target:
                    r = j
                    break
    if r < M:
        return r
    for j in range(M - 1, -1, -1):
        if a[j] > 0.0:
            return j
    return -1


def fire(r, x, theta, a, tab):
    """Apply reaction ``r`` to ``x`` and recompute the propensities that depend on it (the
    dependency graph). Returns ``(status, reaction)``: ``OK`` and -1, ``NEGATIVE_POPULATION`` and
    ``r``, or ``BAD_PROPENSITY`` and a reaction whose new propensity is negative. NaN and
    infinite propensities are stored: they make ``a0`` NaN or infinite, which the trajectory loop
    checks once per step (:func:`first_invalid` then names the reaction). A network may supply a
    code-generated version with the same contract (``cupyssa.specialize``).

    Small networks (``tab.dense_delta`` has rows; :func:`cupyssa.network.recompute_all_dependents`)
    add the dense row of ``r`` to every species and recompute every propensity any event can
    change (``tab.any_dep``; the others come out as the same doubles), so that no load hangs off
    ``r`` but the row's own."""
    if tab.dense_delta.shape[0] > 0:
        for s in range(x.shape[0]):
            x[s] += tab.dense_delta[r, s]
        for s in range(x.shape[0]):
            if x[s] < 0:
                return NEGATIVE_POPULATION, r
        deps, lo, hi = tab.any_dep, 0, tab.any_dep.shape[0]
    else:
        for e in range(tab.net_ptr[r], tab.net_ptr[r + 1]):
            s = tab.net_species[e]
            x[s] += tab.net_delta[e]
            if x[s] < 0:
                return NEGATIVE_POPULATION, r
        deps, lo, hi = tab.dep_reaction, tab.dep_ptr[r], tab.dep_ptr[r + 1]
    for e in range(lo, hi):
        j = deps[e]
        aj = propensity(j, x, theta, tab)
        if aj < 0.0:
            return BAD_PROPENSITY, j
        a[j] = aj
    return OK, -1


def first_invalid(a):
    """The first ``j`` whose propensity is negative, NaN or infinite, or -1."""
    for j in range(a.shape[0]):
        if not (a[j] >= 0.0 and a[j] < _INF):
            return j
    return -1


def all_propensities(x, theta, a, tab):
    """Fill ``a`` with every propensity; returns the first bad reaction (negative, NaN or
    infinite propensity) or -1."""
    for j in range(a.shape[0]):
        a[j] = propensity(j, x, theta, tab)
    return first_invalid(a)


def window_cdf(u):
    """CDF of the biweight window ``K(u) = 15/16 (1 - u^2)^2`` on ``[-1, 1]``."""
    if u <= -1.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    u2 = u * u
    return 0.5 + 0.9375 * u * (1.0 - u2 * (2.0 / 3.0) + u2 * u2 * 0.2)


def window_density(u):
    """The biweight window ``K(u) = 15/16 (1 - u^2)^2`` on ``[-1, 1]``, zero outside."""
    if u <= -1.0 or u >= 1.0:
        return 0.0
    v = 1.0 - u * u
    return 0.9375 * v * v


def simulate_trajectory(trajectory, x, theta, t_start, k_start, obs_start, t_stop, horizon, t_eval,
                        out, a, cum, block, seed_lo, seed_hi, max_steps, count_limit, rec, tab):
    """Simulate one trajectory (or one segment of it).

    Parameters
    ----------
    trajectory : int
        Global trajectory index (the RNG key).
    x : int64 array [S]
        State at ``t_start``; advanced in place.
    theta : float64 array [P]
    t_start, k_start, obs_start :
        Time, step counter and next unfilled index of ``t_eval`` at the start of the segment.
    t_stop : float
        End of the segment (``inf`` for none).
    horizon : float
        Keep simulating until the first event after ``horizon`` even once the grid is filled
        (smoothed observations need the path on ``[t, t + w]``); ``-inf`` for none.
    t_eval : float64 array [T]; out : integer array [T, S]
        Observation grid and the states observed on it.
    a, cum : float64 arrays [M]
        Scratch for the propensities and their running sums.
    block : float64 array [2, B]
        Scratch for the forward draws of ``B`` consecutive steps (:func:`uniform_block`; ``B = 1``
        draws step by step).
    max_steps, count_limit : int
        Step budget; largest population the output type holds.
    rec : tuple (tape, t_checkpoints, checkpoint_every, obs_step, obs_frac, obs_next, width,
                 smooth)
        What the backward pass needs (zero-length arrays record nothing):
        ``tape[k] = r_k`` (unsigned ``[L]``); ``t_checkpoints[k // C] = t_k`` when ``k % C == 0``;
        per observation ``m``: ``obs_step[m]`` = events before ``t_eval[m]``, ``obs_frac[m]`` =
        ``(t_eval[m] - t_k) / (t_{k+1} - t_k)`` and ``obs_next[m] = r_k`` (linear interpolation);
        ``smooth[m] += x(s)`` averaged against the biweight window of half-width ``width``
        around ``t_eval[m]`` (``width = 0``: off).

    Returns
    -------
    (status, k, t, reaction, obs)
        ``codes`` status, steps taken so far (events up to the end of the grid when ``OK``), time
        reached (the failure time otherwise), reaction involved (-1 if none), next ``t_eval`` index.
    """
    tape, t_checkpoints, checkpoint_every, obs_step, obs_frac, obs_next, width, smooth = rec
    bad = all_propensities(x, theta, a, tab)
    if bad >= 0:
        return BAD_PROPENSITY, k_start, t_start, bad, obs_start
    n_obs = t_eval.shape[0]
    n_tape = tape.shape[0]
    n_check = t_checkpoints.shape[0]
    record_obs = obs_step.shape[0] > 0
    t = t_start
    obs = obs_start
    k = k_start
    m_lo = 0  # first observation whose smoothing window ends after t
    n_block = block.shape[1]
    k_block = k_start - n_block  # block holds the draws of steps k_block .. k_block + n_block - 1
    # the next checkpoint, index i_check at step k_check = i_check C (-1: none left); stepped
    # forward at each one, not found by an integer division k % C per event
    i_check = (k_start + checkpoint_every - 1) // checkpoint_every if n_check > 0 else 0
    k_check = i_check * checkpoint_every if i_check < n_check else -1
    while True:
        if k == k_check:
            t_checkpoints[i_check] = t
            i_check += 1
            k_check = k_check + checkpoint_every if i_check < n_check else -1
        a0 = cumulate(a, cum)
        if not (a0 < _INF):
            # a NaN or infinite propensity (fire rejects negative ones); one test per step
            return BAD_PROPENSITY, k, t, first_invalid(a), obs
        r = -1
        t_next = _INF
        if a0 > 0.0:
            if k - k_block >= n_block:
                k_block = k
                uniform_block(block, seed_lo, seed_hi, trajectory, k, STREAM_FORWARD, 1, 0)
            u_tau = block[0, k - k_block]
            u_sel = block[1, k - k_block]
            t_next = t - math.log(u_tau) / a0
            r = select_reaction(a, cum, u_sel * a0)
        t_obs = min(t_next, t_stop)
        while obs < n_obs and t_eval[obs] < t_obs:
            for s in range(x.shape[0]):
                if x[s] > count_limit:
                    return POPULATION_OVERFLOW, k, t, -1, obs
                out[obs, s] = x[s]
            if record_obs:
                obs_step[obs] = k
                obs_frac[obs] = (t_eval[obs] - t) / (t_next - t) if t_next < _INF else 0.0
                obs_next[obs] = r
            obs += 1
        if width > 0.0:
            # interval [t, t_obs) holds x: smooth[m] += x (F((t_obs - t_m)/w) - F((t - t_m)/w)),
            # with F = 0 below the first interval (the state before t0 is x0)
            while m_lo < n_obs and t_eval[m_lo] + width <= t:
                m_lo += 1
            m = m_lo
            while m < n_obs and t_eval[m] - width < t_obs:
                f_lo = 0.0 if k == 0 else window_cdf((t - t_eval[m]) / width)
                mass = window_cdf((t_obs - t_eval[m]) / width) - f_lo
                for s in range(x.shape[0]):
                    smooth[m, s] += x[s] * mass
                m += 1
        if obs == n_obs and t_next > horizon:
            return OK, k, t, -1, obs
        if t_stop < t_next:
            return STOPPED, k + 1, t_stop, -1, obs
        if k >= max_steps:
            return MAX_STEPS, k, t, -1, obs
        if k < n_tape:
            tape[k] = r
        status, culprit = fire(r, x, theta, a, tab)
        if status == NEGATIVE_POPULATION:
            return status, k, t_next, culprit, obs
        t = t_next
        k += 1
        if status != OK:
            return status, k, t, culprit, obs
        if event_trigger(x, t, theta):
            return TRIGGERED, k, t, r, obs
