"""Hand-written Numba SSA loops, one per benchmark model: the practical speed limit on a CPU.

Each loop is an ``@numba.njit(parallel=True)`` function with the model hard-coded: propensity
formulas inline, Gillespie's direct method, ``prange`` over trajectories, the same observation
rule as cupyssa (the state reported at ``t_eval[m]`` is the state after every event with time
``<= t_eval[m]``), and the combinatorial mass-action convention (``2A -> B``: ``k A(A-1)/2``).

Random numbers: **xoshiro256+**, one generator per trajectory, its 256-bit state seeded by
SplitMix64 from ``seed + GOLDEN * trajectory``; uniforms in ``(0, 1]`` are
``((r >> 11) + 1) 2^-53``. Per step: one uniform for the waiting time ``-log(u) / a0`` and one
for the event (linear search ``u a0`` over the propensities). The streams differ from cupyssa's
Philox ones, so the loops agree with cupyssa in distribution, not trajectory by trajectory.

Every loop has the signature ``loop(n, t_eval, seed, params, x0, out, n_events)``: ``params`` the
float64 rate constants in the order of ``PARAMS[name]``, ``x0`` the int64 initial state in the
order of ``SPECIES[name]``, ``out [n, T, S]`` (integer) the observed states, ``n_events [n]``
(int64) the events per trajectory (up to the last grid time).

The ``*_philox`` variant of the dimerization loop draws its numbers from cupyssa's counter-based
Philox4x32-10 (same keying as cupyssa, so it reproduces cupyssa's trajectories exactly); it exists
to measure what the RNG costs (see ``benchmarks/ssa_throughput.py --profile``).

``dimerization_sweep_st_fill`` is the gradient's counterpart: cupyssa's straight-through reverse
sweep of the dimerization written out for that one model, the speed limit that
``benchmarks/gradient_throughput.py`` compares the package's sweeps with.
``dimerization_sweep_st_fill_lanes`` is the same sweep with ``SWEEP_LANES`` trajectories in
lockstep, one per SIMD lane: the same doubles, and the measure of what vectorizing across
trajectories would buy the package's sweep.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from cupyssa.kernels import backward, philox
from cupyssa.kernels.cpu import SWEEP_BLOCK
from cupyssa.kernels.targets import retarget

__all__ = ["LOOPS", "SPECIES", "PARAMS", "RNG_DESCRIPTION", "dimerization", "vilar", "schlogl",
           "dimerization_philox", "dimerization_sweep_st_fill", "dimerization_sweep_st_fill_lanes"]

RNG_DESCRIPTION = ("xoshiro256+ per trajectory, seeded by SplitMix64(seed + 0x9E3779B97F4A7C15 "
                   "* trajectory); u = ((r >> 11) + 1) * 2^-53 in (0, 1]")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SM1 = np.uint64(0xBF58476D1CE4E5B9)
_SM2 = np.uint64(0x94D049BB133111EB)
_U11 = np.uint64(11)
_U17 = np.uint64(17)
_U45 = np.uint64(45)
_U19 = np.uint64(19)
_U27 = np.uint64(27)
_U30 = np.uint64(30)
_U31 = np.uint64(31)
_TWO_M53 = 1.0 / 9007199254740992.0


@numba.njit(inline="always")
def _splitmix(z):
    z = z + _GOLDEN
    y = (z ^ (z >> _U30)) * _SM1
    y = (y ^ (y >> _U27)) * _SM2
    return z, y ^ (y >> _U31)


@numba.njit(inline="always")
def _seed(seed, trajectory):
    z = np.uint64(seed) + _GOLDEN * np.uint64(trajectory)
    z, s0 = _splitmix(z)
    z, s1 = _splitmix(z)
    z, s2 = _splitmix(z)
    z, s3 = _splitmix(z)
    return s0, s1, s2, s3


@numba.njit(inline="always")
def _next(s0, s1, s2, s3):
    """xoshiro256+: returns (uniform in (0, 1], new state)."""
    r = s0 + s3
    t = s1 << _U17
    s2 = s2 ^ s0
    s3 = s3 ^ s1
    s1 = s1 ^ s2
    s0 = s0 ^ s3
    s2 = s2 ^ t
    s3 = (s3 << _U45) | (s3 >> _U19)
    u = (np.int64(r >> _U11) + 1) * _TWO_M53
    return u, s0, s1, s2, s3


# -- (a) reversible dimerization: 2A -> B (k1 A(A-1)/2), B -> 2A (k2 B) ------------------------

@numba.njit(parallel=True, nogil=True)
def dimerization(n, t_eval, seed, params, x0, out, n_events):
    k1 = params[0]
    k2 = params[1]
    T = t_eval.shape[0]
    for i in prange(n):
        s0, s1, s2, s3 = _seed(seed, i)
        A = x0[0]
        B = x0[1]
        t = 0.0
        obs = 0
        k = 0
        while True:
            a1 = k1 * (A * (A - 1)) * 0.5
            a2 = k2 * B
            a0 = a1 + a2
            t_next = math.inf
            if a0 > 0.0:
                u, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                t_next = t - math.log(u) / a0
            while obs < T and t_eval[obs] < t_next:
                out[i, obs, 0] = A
                out[i, obs, 1] = B
                obs += 1
            if obs == T:
                break
            u, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            if u * a0 <= a1:
                A -= 2
                B += 1
            else:
                A += 2
                B -= 1
            t = t_next
            k += 1
        n_events[i] = k


# -- (b) Vilar-Kueh-Barkai-Leibler oscillator: 9 species, 16 reactions ------------------------

@numba.njit(parallel=True, nogil=True)
def vilar(n, t_eval, seed, params, x0, out, n_events):
    (gammaA, thetaA, gammaR, thetaR, alphaA, alphapA, alphaR, alphapR, betaA, betaR, gammaC,
     deltaA, deltaR, deltaMA, deltaMR) = (params[0], params[1], params[2], params[3], params[4],
                                          params[5], params[6], params[7], params[8], params[9],
                                          params[10], params[11], params[12], params[13],
                                          params[14])
    T = t_eval.shape[0]
    for i in prange(n):
        s0, s1, s2, s3 = _seed(seed, i)
        A = x0[0]
        DA = x0[1]
        DpA = x0[2]
        DR = x0[3]
        DpR = x0[4]
        MA = x0[5]
        MR = x0[6]
        R = x0[7]
        C = x0[8]
        t = 0.0
        obs = 0
        k = 0
        while True:
            a1 = gammaA * A * DA
            a2 = thetaA * DpA
            a3 = gammaR * A * DR
            a4 = thetaR * DpR
            a5 = alphaA * DA
            a6 = alphapA * DpA
            a7 = alphaR * DR
            a8 = alphapR * DpR
            a9 = betaA * MA
            a10 = betaR * MR
            a11 = gammaC * A * R
            a12 = deltaA * C
            a13 = deltaA * A
            a14 = deltaR * R
            a15 = deltaMA * MA
            a16 = deltaMR * MR
            # running sums; the last one is a0, so u a0 <= a0 always lands on a positive a_j
            c1 = a1
            c2 = c1 + a2
            c3 = c2 + a3
            c4 = c3 + a4
            c5 = c4 + a5
            c6 = c5 + a6
            c7 = c6 + a7
            c8 = c7 + a8
            c9 = c8 + a9
            c10 = c9 + a10
            c11 = c10 + a11
            c12 = c11 + a12
            c13 = c12 + a13
            c14 = c13 + a14
            c15 = c14 + a15
            a0 = c15 + a16
            t_next = math.inf
            if a0 > 0.0:
                u, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                t_next = t - math.log(u) / a0
            while obs < T and t_eval[obs] < t_next:
                out[i, obs, 0] = A
                out[i, obs, 1] = DA
                out[i, obs, 2] = DpA
                out[i, obs, 3] = DR
                out[i, obs, 4] = DpR
                out[i, obs, 5] = MA
                out[i, obs, 6] = MR
                out[i, obs, 7] = R
                out[i, obs, 8] = C
                obs += 1
            if obs == T:
                break
            u, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            # first j with u a0 <= c_j: u a0 > 0, and a zero a_j repeats c_{j-1}, so it is skipped
            r = u * a0
            if r <= c8:
                if r <= c4:
                    if r <= c1:
                        A -= 1
                        DA -= 1
                        DpA += 1
                    elif r <= c2:
                        A += 1
                        DA += 1
                        DpA -= 1
                    elif r <= c3:
                        A -= 1
                        DR -= 1
                        DpR += 1
                    else:
                        A += 1
                        DR += 1
                        DpR -= 1
                elif r <= c6:
                    MA += 1  # DA -> DA + MA or DpA -> DpA + MA
                else:
                    MR += 1  # DR -> DR + MR or DpR -> DpR + MR
            elif r <= c12:
                if r <= c9:
                    A += 1
                elif r <= c10:
                    R += 1
                elif r <= c11:
                    A -= 1
                    R -= 1
                    C += 1
                else:
                    C -= 1
                    R += 1
            elif r <= c13:
                A -= 1
            elif r <= c14:
                R -= 1
            elif r <= c15:
                MA -= 1
            else:
                MR -= 1
            t = t_next
            k += 1
        n_events[i] = k


# -- (c) 1-D Schlögl chain, open boundaries, nearest-neighbour diffusion ----------------------

@numba.njit(inline="always")
def _site_total(x, c1h, c2s, c3, c4, d, nb):
    """Total propensity of a site: 2X->3X, 3X->2X, 0->X, X->0 and ``nb`` hops out."""
    return c1h * (x * (x - 1)) + c2s * (x * (x - 1) * (x - 2)) + c3 + (c4 + d * nb) * x


@numba.njit(parallel=True, nogil=True)
def schlogl(n, t_eval, seed, params, x0, out, n_events):
    """Two-level direct method: a site by its total propensity, then the reaction within it."""
    c1h = params[0] * 0.5  # c1 X(X-1)/2
    c2s = params[1] / 6.0  # c2 X(X-1)(X-2)/6
    c3 = params[2]
    c4 = params[3]
    d = params[4]
    L = x0.shape[0]
    T = t_eval.shape[0]
    for i in prange(n):
        s0, s1, s2, s3 = _seed(seed, i)
        x = x0.copy()
        nb = np.full(L, 2.0)
        nb[0] = 1.0 if L > 1 else 0.0
        nb[L - 1] = 1.0 if L > 1 else 0.0
        asite = np.empty(L)
        for s in range(L):
            asite[s] = _site_total(x[s] * 1.0, c1h, c2s, c3, c4, d, nb[s])
        t = 0.0
        obs = 0
        k = 0
        while True:
            a0 = 0.0
            for s in range(L):
                a0 += asite[s]
            t_next = math.inf
            if a0 > 0.0:
                u, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
                t_next = t - math.log(u) / a0
            while obs < T and t_eval[obs] < t_next:
                for s in range(L):
                    out[i, obs, s] = x[s]
                obs += 1
            if obs == T:
                break
            u, s0, s1, s2, s3 = _next(s0, s1, s2, s3)
            r = u * a0
            # site: first s with u a0 <= running sum (the same sum as a0, so a positive site)
            acc = 0.0
            base = 0.0
            site = 0
            for s in range(L):
                base = acc
                acc += asite[s]
                if r <= acc:
                    site = s
                    break
            # reaction within the site, on the remainder; guards keep rounding on a positive one
            rl = r - base
            xs = x[site] * 1.0
            b = c1h * (xs * (xs - 1.0))
            dd = c2s * (xs * (xs - 1.0) * (xs - 2.0))
            e = c4 * xs
            h = d * xs
            dest = -1
            if rl <= b and b > 0.0:
                x[site] += 1
            elif rl <= b + dd and dd > 0.0:
                x[site] -= 1
            elif rl <= b + dd + c3 or xs == 0.0:
                x[site] += 1
            elif rl <= b + dd + c3 + e or L == 1:
                x[site] -= 1
            elif site > 0 and (rl <= b + dd + c3 + e + h or site == L - 1):
                dest = site - 1
            else:
                dest = site + 1
            if dest >= 0:
                x[site] -= 1
                x[dest] += 1
                asite[dest] = _site_total(x[dest] * 1.0, c1h, c2s, c3, c4, d, nb[dest])
            asite[site] = _site_total(x[site] * 1.0, c1h, c2s, c3, c4, d, nb[site])
            t = t_next
            k += 1
        n_events[i] = k


# -- profiling variant: dimerization with cupyssa's Philox4x32-10 draws ------------------------

# cupyssa's own Philox source, compiled inline for these loops: the draws are exactly cupyssa's
_philox = retarget([philox.philox4x32, philox.words_to_uniform, philox.uniform_pair,
                    philox.uniform_block], numba.njit(inline="always"))
_uniform_pair = _philox.uniform_pair
_philox4x32 = _philox.philox4x32
_words_to_uniform = _philox.words_to_uniform
_MASK32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)


@numba.njit(inline="always")
def _philox_pair(seed_lo, seed_hi, trajectory, step):
    """cupyssa's ``uniform_pair(seed_lo, seed_hi, trajectory, step, STREAM_FORWARD)``."""
    return _uniform_pair(seed_lo, seed_hi, trajectory, step, philox.STREAM_FORWARD)


@numba.njit(parallel=True, nogil=True)
def dimerization_philox(n, t_eval, seed, params, x0, out, n_events):
    """:func:`dimerization` drawing ``(u_tau, u_sel)`` from cupyssa's Philox keying and choosing
    the event as cupyssa does (first reaction whose running sum exceeds ``u_sel a0``)."""
    k1 = params[0]
    k2 = params[1]
    T = t_eval.shape[0]
    seed_lo = np.uint64(seed) & _MASK32
    seed_hi = np.uint64(seed) >> _U32
    for i in prange(n):
        A = x0[0]
        B = x0[1]
        t = 0.0
        obs = 0
        k = 0
        while True:
            a1 = k1 * (A * (A - 1)) * 0.5
            a2 = k2 * B
            a0 = a1 + a2
            t_next = math.inf
            u_sel = 0.0
            if a0 > 0.0:
                u_tau, u_sel = _philox_pair(seed_lo, seed_hi, i, k)
                t_next = t - math.log(u_tau) / a0
            while obs < T and t_eval[obs] < t_next:
                out[i, obs, 0] = A
                out[i, obs, 1] = B
                obs += 1
            if obs == T:
                break
            if (a1 > u_sel * a0 and a1 > 0.0) or a2 <= 0.0:
                A -= 2
                B += 1
            else:
                A += 2
                B -= 1
            t = t_next
            k += 1
        n_events[i] = k


# -- gradient: the straight-through reverse sweep of the dimerization, written out --------------

_uniform_block = _philox.uniform_block
#: cupyssa's ``w^q`` for ``w`` in ``[0, 1]`` (repeated squaring for integer ``q``), compiled inline
_ratio_power = numba.njit(inline="always")(backward.ratio_power)
#: cupyssa's ``-log u`` without a library call, so that the block's exponentials vectorize
_exponential = numba.njit(inline="always")(backward.exponential)


@numba.njit(parallel=True, nogil=True, error_model="numpy")
def dimerization_sweep_st_fill(x_final, params, n_steps, tape, t_checkpoints, checkpoint_every,
                               seed_lo, seed_hi, G, inv_temp, grads):
    """The straight-through (Gumbel-softmax) reverse sweep of cupyssa's ``value_and_grad`` for the
    dimerization with forward-fill observations read at the end of the path only (``G [n, 1, 2]``
    is ``dL/dY`` there): the practical speed limit of that sweep on a CPU.

    Everything the generic kernels look up is literal: the step back, the two propensities, the
    conditional Gumbel-softmax of two reactions (``T = 1 / inv_temp``), ``s = nu xbar`` and the
    adjoints. The draws are cupyssa's (Philox, regenerated ``SWEEP_BLOCK`` steps at a time, as
    cupyssa's sweep does), the times are walked back as cupyssa does (``-log u_tau / a0``, reset at
    the checkpoints), and the arithmetic follows the kernels' order, so ``grads [n, 2]``
    (``dL/d(k1, k2)`` per trajectory) equals cupyssa's per-trajectory gradient exactly (the same
    doubles; at most the sign of a zero differs).
    Arguments are those cupyssa's ``replay_batch`` receives (the recorded tapes), for trajectories
    ``0 .. n-1``."""
    k1 = params[0]
    k2 = params[1]
    for n in prange(x_final.shape[0]):
        forward = np.empty((2, SWEEP_BLOCK))
        gumbel = np.empty((2, SWEEP_BLOCK))
        A = x_final[n, 0]
        B = x_final[n, 1]
        xa = G[n, 0, 0]
        xb = G[n, 0, 1]
        g0 = 0.0
        g1 = 0.0
        t = 0.0
        k_lo = n_steps[n] + 1
        for k in range(n_steps[n] - 1, -1, -1):
            if tape[n, k] == 0:  # 2A -> B fired from x_k
                A += 2
                B -= 1
            else:
                A -= 2
                B += 1
            c0 = ((A * 1.0) * ((A * 1.0) - 1.0)) * 0.5
            a_0 = k1 * c0
            a_1 = k2 * (B * 1.0)
            a0 = a_0 + a_1
            if k < k_lo:
                k_lo = max(k - SWEEP_BLOCK + 1, 0)
                _uniform_block(forward, seed_lo, seed_hi, n, k_lo, philox.STREAM_FORWARD, 1, 0)
                _uniform_block(gumbel, seed_lo, seed_hi, n, k_lo, philox.STREAM_GUMBEL, 1, 0)
                # the block's exponentials, a row at a time as in cupyssa's load_draws: loops that
                # vectorize (one loop over c writing all three rows ran 2.7x slower)
                for c in range(forward.shape[1]):
                    forward[0, c] = _exponential(forward[0, c])
                for h in range(2):
                    for c in range(gumbel.shape[1]):
                        gumbel[h, c] = _exponential(gumbel[h, c])
            c = k - k_lo
            inv_a0 = 1.0 / a0
            tau = forward[0, c] * inv_a0
            if k % checkpoint_every == 0:
                t = t_checkpoints[n, k // checkpoint_every]
            else:
                t -= tau
            s0 = 0.0 + -2.0 * xa + 1.0 * xb  # nu_j . xbar_{k+1}
            s1 = 0.0 + 2.0 * xa + -1.0 * xb
            if tape[n, k] == 0:  # the fired reaction's exponential makes the maximum
                a_r, a_o, e_r, e_o = a_0, a_1, gumbel[0, c], gumbel[1, c]
            else:
                a_r, a_o, e_r, e_o = a_1, a_0, gumbel[1, c], gumbel[0, c]
            # the relaxed event and its coefficients c_j = y_j / (T a_j), as backward's
            # conditional_softmax computes them: w = a_o e_r / (a_o e_r + a0 e_o), y_o / y_r = w^p
            y_o = 0.0
            c_o = 0.0
            if a_o > 0.0:
                ae = a_o * e_r
                inv_den = 1.0 / (ae + a0 * e_o)
                wq = _ratio_power(ae * inv_den, inv_temp - 1.0)
                y_o = wq * (ae * inv_den)
                c_o = wq * (e_r * inv_den)
            inv_a_total = 1.0 / (a_r * (1.0 + y_o))
            y_r = a_r * inv_a_total
            y_o *= y_r
            c_o *= inv_temp * y_r
            c_r = inv_temp * inv_a_total
            if tape[n, k] == 0:
                y0, y1, cc0, cc1 = y_r, y_o, c_r, c_o
            else:
                y0, y1, cc0, cc1 = y_o, y_r, c_o, c_r
            ys = 0.0 + y0 * s0 + y1 * s1
            ab0 = -0.0 + (s0 - ys) * cc0
            ab1 = -0.0 + (s1 - ys) * cc1
            # adding ab * (finite) when ab = 0 changes at most the sign of a zero
            g0 += ab0 * (c0 * 1.0)
            xa += ab0 * (k1 * 1.0 * ((((A * 1.0) - 1.0) + A * 1.0) / 2.0))
            g1 += ab1 * ((B * 1.0) * 1.0)
            xb += ab1 * (k2 * 1.0 * 1.0)
        grads[n, 0] = g0
        grads[n, 1] = g1


#: trajectories that :func:`dimerization_sweep_st_fill_lanes` sweeps together. The lane loops
#: must be long enough for LLVM to vectorize them behind its run-time alias checks: in a first
#: draft with 8 lanes the Philox rounds stayed scalar (no ``vpmuludq``) and the sweep ran
#: 0.65-0.70x the scalar one; this version ran 1.35x with 16 lanes and 1.25x with 32
#: (benchmarks/RESULTS.md, "Gradient throughput, session 19")
SWEEP_LANES = 16


@numba.njit(parallel=True)
def dimerization_sweep_st_fill_lanes(x_final, params, n_steps, tape, t_checkpoints,
                                     checkpoint_every, seed_lo, seed_hi, G, inv_temp, grads):
    """:func:`dimerization_sweep_st_fill` with ``SWEEP_LANES`` trajectories swept in lockstep: at
    sweep step ``i`` lane ``l`` holds step ``k = K_l - 1 - i`` of its trajectory, and a lane whose
    trajectory is done (``k < 0``) computes on step 0 and discards the result. Every phase of a
    step is a loop over the lanes (the per-lane gathers from the tape and the checkpoints; the
    two Philox counters of each lane; the three exponentials; the event's arithmetic; ``w^q`` by
    squaring, the same for every lane), so that the compiler turns the lanes into SIMD lanes.
    Each lane draws its own step's numbers (no blocks of steps): the counter-based draws make a
    step's numbers a function of its counter alone.

    The arithmetic is the scalar sweep's in the same order, so ``grads [n, 2]`` is the same
    doubles (checked by the benchmark and the tests). The padding costs the group's longest path
    for every lane; the dimerization's paths differ by a few per cent."""
    k1 = params[0]
    k2 = params[1]
    N = x_final.shape[0]
    q = inv_temp - 1.0  # y_o / y_r = w^q
    q_bits = int(q)
    if q_bits != q or not 0 <= q_bits <= 64:
        raise ValueError("the lanes sweep needs 1/T - 1 to be an integer from 0 to 64")
    for group in prange((N + SWEEP_LANES - 1) // SWEEP_LANES):
        L = SWEEP_LANES
        A = np.zeros(L)
        B = np.zeros(L)
        xa = np.zeros(L)
        xb = np.zeros(L)
        g0 = np.zeros(L)
        g1 = np.zeros(L)
        t = np.zeros(L)
        K = np.full(L, -1, dtype=np.int64)  # -1: a lane past the last trajectory
        n_of = np.zeros(L, dtype=np.int64)
        t_lo = np.zeros(L, dtype=np.uint64)
        t_hi = np.zeros(L, dtype=np.uint64)
        k_max = 0
        for lane in range(L):
            n = min(group * L + lane, N - 1)
            n_of[lane] = n
            t_lo[lane] = np.uint64(n) & _MASK32
            t_hi[lane] = np.uint64(n) >> _U32
            if group * L + lane < N:
                A[lane] = x_final[n, 0]
                B[lane] = x_final[n, 1]
                xa[lane] = G[n, 0, 0]
                xb[lane] = G[n, 0, 1]
                K[lane] = n_steps[n]
                k_max = max(k_max, n_steps[n])
        step = np.zeros(L, dtype=np.uint64)
        live = np.zeros(L)  # 1.0 while the lane's trajectory has steps left
        second = np.zeros(L)  # 1.0 where the step's reaction is B -> 2A
        at_check = np.zeros(L)  # 1.0 where the step is a checkpoint
        t_check = np.zeros(L)
        u = np.empty((3, L))  # the step's uniforms, then exponentials: E, Gumbel pair
        for i in range(k_max):
            for lane in range(L):  # gathers
                k = K[lane] - 1 - i
                kk = max(k, 0)
                step[lane] = np.uint64(kk)
                live[lane] = 1.0 if k >= 0 else 0.0
                second[lane] = 1.0 if tape[n_of[lane], kk] != 0 else 0.0
                j = kk // checkpoint_every
                at_check[lane] = 1.0 if j * checkpoint_every == kk else 0.0
                t_check[lane] = t_checkpoints[n_of[lane], j]
            for lane in range(L):  # both streams in one loop: their first rounds are common
                c0, c1, _, _ = _philox4x32(step[lane] & _MASK32, np.uint64(philox.STREAM_FORWARD),
                                           t_lo[lane], t_hi[lane], seed_lo, seed_hi)
                u[0, lane] = _words_to_uniform(c0, c1)
                c0, c1, c2, c3 = _philox4x32(step[lane] & _MASK32, np.uint64(philox.STREAM_GUMBEL),
                                             t_lo[lane], t_hi[lane], seed_lo, seed_hi)
                u[1, lane] = _words_to_uniform(c0, c1)
                u[2, lane] = _words_to_uniform(c2, c3)
            for h in range(3):
                for lane in range(L):
                    u[h, lane] = _exponential(u[h, lane])
            for lane in range(L):  # the event, as the scalar sweep computes it
                r1 = second[lane]
                r0 = 1.0 - r1
                A[lane] += live[lane] * (2.0 * r0 - 2.0 * r1)  # the step back, x_k = x_{k+1} - nu_r
                B[lane] += live[lane] * (r1 - r0)
                Al = A[lane] * 1.0
                c0 = (Al * (Al - 1.0)) * 0.5
                a_0 = k1 * c0
                a_1 = k2 * (B[lane] * 1.0)
                a0 = a_0 + a_1
                tau = u[0, lane] * (1.0 / a0)
                t_new = t_check[lane] if at_check[lane] != 0.0 else t[lane] - tau
                s0 = 0.0 + -2.0 * xa[lane] + 1.0 * xb[lane]
                s1 = 0.0 + 2.0 * xa[lane] + -1.0 * xb[lane]
                a_r = a_0 if r1 == 0.0 else a_1
                a_o = a_1 if r1 == 0.0 else a_0
                e_r = u[1, lane] if r1 == 0.0 else u[2, lane]
                e_o = u[2, lane] if r1 == 0.0 else u[1, lane]
                ae = a_o * e_r
                inv_den = 1.0 / (ae + a0 * e_o)
                # w^q by ratio_power's repeated squaring, its loop unrolled over the 7 bits of
                # q <= 64 (the same multiplications of wq; the squarings past q's top bit are
                # unused): selects on bits of q, the same in every lane, keep this one SIMD loop
                ww = ae * inv_den
                wq = 1.0
                for bit in range(7):
                    wq = wq * ww if (q_bits >> bit) & 1 else wq
                    ww *= ww
                y_o = wq * (ae * inv_den) if a_o > 0.0 else 0.0
                c_o = wq * (e_r * inv_den) if a_o > 0.0 else 0.0
                inv_a_total = 1.0 / (a_r * (1.0 + y_o))
                y_r = a_r * inv_a_total
                y_o *= y_r
                c_o *= inv_temp * y_r
                c_r = inv_temp * inv_a_total
                y0 = y_r if r1 == 0.0 else y_o
                y1 = y_o if r1 == 0.0 else y_r
                cc0 = c_r if r1 == 0.0 else c_o
                cc1 = c_o if r1 == 0.0 else c_r
                ys = 0.0 + y0 * s0 + y1 * s1
                ab0 = -0.0 + (s0 - ys) * cc0
                ab1 = -0.0 + (s1 - ys) * cc1
                on = live[lane] != 0.0
                t[lane] = t_new if on else t[lane]
                g0[lane] += ab0 * (c0 * 1.0) if on else 0.0
                xa[lane] += ab0 * (k1 * 1.0 * (((Al - 1.0) + Al) / 2.0)) if on else 0.0
                g1[lane] += ab1 * ((B[lane] * 1.0) * 1.0) if on else 0.0
                xb[lane] += ab1 * (k2 * 1.0 * 1.0) if on else 0.0
        for lane in range(L):
            if group * L + lane < N:
                grads[group * L + lane, 0] = g0[lane]
                grads[group * L + lane, 1] = g1[lane]


def dimerization_sweep_from_replay(replay, grads, lanes=False):
    """:func:`dimerization_sweep_st_fill` (or, with ``lanes``, :func:`dimerization_sweep_st_fill_lanes`)
    on cupyssa's reverse-sweep arguments, given by name (``cupyssa.kernels.cpu.replay_arguments(
    *args)`` of a captured ``replay_batch`` call), writing the per-trajectory gradients to
    ``grads``."""
    sweep = dimerization_sweep_st_fill_lanes if lanes else dimerization_sweep_st_fill
    sweep(replay["x_final"], replay["theta"][0], replay["K"], replay["tape"],
          replay["t_checkpoints"], replay["checkpoint_every"], replay["seed_lo"],
          replay["seed_hi"], replay["G"], replay["inv_temp"], grads)


#: model name -> loop
LOOPS = {"dimerization": dimerization, "vilar": vilar, "schlogl": schlogl}
#: model name -> species order of ``x0`` and ``out`` (``None``: the lattice sites in order)
SPECIES = {"dimerization": ("A", "B"),
           "vilar": ("A", "DA", "DpA", "DR", "DpR", "MA", "MR", "R", "C"),
           "schlogl": None}
#: model name -> parameter order of ``params``
PARAMS = {"dimerization": ("k1", "k2"),
          "vilar": ("gammaA", "thetaA", "gammaR", "thetaR", "alphaA", "alphapA", "alphaR",
                    "alphapR", "betaA", "betaR", "gammaC", "deltaA", "deltaR", "deltaMA",
                    "deltaMR"),
          "schlogl": ("c1", "c2", "c3", "c4", "d")}
