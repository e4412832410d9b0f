"""Reverse sweep over one recorded trajectory (shared CPU/CUDA source).

The forward pass (:func:`~cupyssa.kernels.trajectory.simulate_trajectory`) recorded the event
sequence ``r_k`` (the tape), time checkpoints, and per observation ``m`` the step ``k(m)`` it
falls after and its fraction ``lambda_m`` of the straddling interval. The sweep walks back from
the final state:

* states exactly, ``x_k = x_{k+1} - nu_{r_k}`` (integers), with the propensities updated through
  the dependency graph, so ``a(x_k)`` and ``a0(x_k)`` are the forward's doubles;
* the draws from the counter: ``E_k = -log u_tau(k)``, ``tau_k = E_k / a0(x_k)``;
* times ``t_k = t_{k+1} - tau_k``, reset to the forward's exact value at every checkpoint.

Straight-through Gumbel-Softmax (``estimator = STRAIGHT_THROUGH``), DESIGN.md: the surrogate
recursion is ``x_{k+1} = x_k + nu^T y_k``, ``t_{k+1} = t_k + E_k / a0(x_k)``, with
``y_k = softmax((log a(x_k) + g_k) / T)``. With ``s = nu xbar_{k+1}``:
``dL/dlog a_j = y_j (s_j - y.s) / T``; ``dL/da0 = -tbar_{k+1} E_k / a0^2``; both are chained through
``da/dx`` into ``xbar_k`` and through ``da/dtheta`` into the gradient. ``g_k`` is redrawn
conditionally on ``argmax = r_k`` (top-down: the maximum is ``Gumbel(log a0)``, the others
Gumbels truncated below it), from its own counter streams, whose uniforms are turned into
exponentials ``-log u`` a block of steps at a time (:func:`load_draws`).

Score function (``estimator = SCORE``): ``weight * d log p(path) / d theta`` with
``log p = sum_k [log a_{r_k}(x_k) - a0(x_k) tau_k] - a0(x_K) (H - t_K)`` (the censored last
interval's survival term; for linear observations the path instead ends with the first event
after the grid, which the observation reads).

Observations (``mode``): ``FILL`` ``Y_m = x_{k(m)}`` (blind to event times); ``LINEAR``
``Y_m = x_k + lambda_m nu_{r_k}``, ``lambda_m = (t_m - t_k) / (t_{k+1} - t_k)``; ``KERNEL``
``Y_m = sum_k x_k [F((t_{k+1} - t_m)/w) - F((t_k - t_m)/w)]`` (biweight window of half-width w).
"""

import math

from .philox import STREAM_FORWARD, STREAM_GUMBEL, uniform_block
from .propensity import propensity, propensity_adjoint
from .trajectory import (all_propensities, cumulate, reaction_count, select_reaction,
                         window_cdf, window_density)

FILL = 0
LINEAR = 1
KERNEL = 2
STRAIGHT_THROUGH = 0
SCORE = 1


def sweep_variant(mode, estimator):
    """``(mode, estimator)`` of the compiled sweep that serves this pair: the score estimator
    reads the observation mode only to know whether the path ends with the first event after the
    grid (``LINEAR``), so its ``FILL`` and ``KERNEL`` sweeps are one. (Plain Python: the CPU
    build compiles one sweep per variant with these as constants.)"""
    if mode not in (FILL, LINEAR, KERNEL) or estimator not in (STRAIGHT_THROUGH, SCORE):
        raise ValueError(f"unknown observation mode {mode} or estimator {estimator}")
    if estimator == SCORE and mode != LINEAR:
        mode = FILL
    return mode, estimator


def ratio_power(w, q):
    """``w^q`` for ``0 <= w <= 1``: by repeated squaring when ``q`` is an integer from 0 to 64
    (``q = 1/T - 1`` at the usual temperatures ``T = 1/p``; a few roundings instead of an ``exp``
    and a ``log``), else ``pow``, with ``0`` at ``w = 0`` (where a negative ``q``, ``T > 1``, would
    give infinity: :func:`conditional_softmax` multiplies it by ``w``, whose underflow means a
    reaction out of the race)."""
    n = int(q)
    if n != q or n < 0 or n > 64:
        return w ** q if w > 0.0 else 0.0
    r = 1.0
    while n > 0:
        if n & 1:
            r *= w
        w *= w
        n >>= 1
    return r


def squaring_exponent(inv_temp):
    """Whether ``q = 1/T - 1`` (``inv_temp = 1/T``) is an exponent that :func:`ratio_power` takes
    by repeated squaring, an integer from 0 to 64 (``T = 1, 1/2, ..., 1/65``; the default
    ``T = 0.1``). Plain Python: the lanes sweep (:mod:`cupyssa.lanes`) unrolls those
    multiplications and serves only these temperatures."""
    q = inv_temp - 1.0
    return q == int(q) and 0 <= q <= 64


#: ln 2 split so that ``e * LN2_HI`` is exact for the integers ``e <= 64`` (fdlibm's constants)
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10


def exponential(u):
    """``-log u`` for a uniform ``u`` in ``(0, 1)`` with no library call, within 2 ulp of libm's.

    ``u = m 2^-e`` with ``m`` in ``[1/sqrt 2, sqrt 2)``: ``e`` by a binary search of scalings by
    powers of two (exact), then ``log m = 2 atanh s = 2 s (1 + z/3 + z^2/5 + ... + z^10/21)``,
    ``s = (m - 1)/(m + 1)``, ``z = s^2 <= (3 - 2 sqrt 2)^2 = 0.0295``, whose first omitted term
    is below ``z^11 / 23 < 1e-18`` relative. Its tests compile to selects and it calls nothing, so
    a loop of it over a block of draws (:func:`load_draws`) vectorizes (AVX-512 code on the
    benchmark machine), where libm's ``log`` is one scalar call per draw: the dimerization's
    sweep ran 1.25-1.33x faster (benchmarks/RESULTS.md, "Gradient throughput, session 15")."""
    e = 0.0
    if u < 2.3283064365386963e-10:  # 2^-32
        u *= 4294967296.0
        e += 32.0
    if u < 1.52587890625e-05:  # 2^-16
        u *= 65536.0
        e += 16.0
    if u < 0.00390625:  # 2^-8
        u *= 256.0
        e += 8.0
    if u < 0.0625:
        u *= 16.0
        e += 4.0
    if u < 0.25:
        u *= 4.0
        e += 2.0
    if u < 0.5:
        u *= 2.0
        e += 1.0
    if u < 0.7071067811865476:  # u now in [1/2, 1): to [1/sqrt 2, sqrt 2)
        u *= 2.0
        e += 1.0
    s = (u - 1.0) / (u + 1.0)
    z = s * s
    p = 1.0 / 21.0
    for n in range(9, 0, -1):
        p = p * z + 1.0 / (2 * n + 1)
    log_m = 2.0 * s + 2.0 * s * z * p
    return e * LN2_HI + (e * LN2_LO - log_m)


def conditional_softmax(gumbel, col, r, a, a0, inv_temp, y, c):
    """``y = softmax((log a + g) / T)`` with Gumbels ``g`` drawn conditionally on ``argmax = r``,
    and the coefficients ``c_j = y_j / (T a_j)`` of ``dL/da_j`` (``c_j = 0`` where ``a_j = 0``).

    Top-down construction: the maximum is ``z_r = log a0 + G`` with ``G ~ Gumbel(0, 1)``; reaction
    ``j != r`` gets ``Gumbel(log a_j)`` truncated below ``z_r``, ``z_j = -log(e^{-z_r} + e^{-g_j})``.
    Step ``k``'s exponential ``e_j = -log u_j``, with ``u_j`` element ``j % 2`` of the pair at
    ``(seed, trajectory, k, STREAM_GUMBEL + j // 2)``, is column ``col`` of ``gumbel[j // 2]``
    (see :func:`load_draws`). Reaction ``r``'s own exponential makes the maximum,
    ``e^{z_r} = a0 / e_r``: the conditional law needs ``G`` independent of ``r``, which a draw
    of the stream is (one fresh exponential beside the others, none of them spent on ``r``).

    With ``e^{g_j} = a_j / e_j``, ``y_j / y_r = exp((z_j - z_r)/T) = w_j^p``, ``p = 1/T``,
    ``w_j = (1 + (a0/a_j) e_j / e_r)^(-1) = a_j e_r / (a_j e_r + a0 e_j)`` in ``[0, 1]`` (a power
    that cannot overflow), and ``c_j = w_j^(p-1) (w_j / a_j) y_r / T`` with
    ``w_j / a_j = e_r / (a_j e_r + a0 e_j)``: one division per reaction ``j != r``, and one more,
    ``1 / (a_r sum_i y_i / y_r)``, normalizes both ``y`` and ``c``. That is 2 divisions per event
    of a two-reaction network where the previous form took 6 (benchmarks/RESULTS.md, "Gradient
    throughput, session 17").
    """
    M = reaction_count(a)
    e_max = gumbel[r >> 1, r & 1, col]
    total = 1.0  # sum_j y_j / y_r
    for j in range(M):
        yj = 0.0
        cj = 0.0
        if j != r and a[j] > 0.0:
            ae = a[j] * e_max
            inv_den = 1.0 / (ae + a0 * gumbel[j >> 1, j & 1, col])
            wq = ratio_power(ae * inv_den, inv_temp - 1.0)
            yj = wq * (ae * inv_den)
            cj = wq * (e_max * inv_den)
            total += yj
        y[j] = yj
        c[j] = cj
    inv_a_total = 1.0 / (a[r] * total)
    y_r = a[r] * inv_a_total
    c_r = inv_temp * y_r
    for j in range(M):
        y[j] *= y_r
        c[j] *= c_r
    y[r] = y_r
    c[r] = inv_temp * inv_a_total


def add_kernel_terms(t_lo, t_hi, r_lo, t_eval, G, width, xbar, m_hi, tab):
    """The adjoints of the smoothed observations for the state held on ``[t_lo, t_hi)`` and for
    the event at ``t_lo`` (reaction ``r_lo``, which jumps ``x`` by ``nu_{r_lo}``; ``-1`` for the
    first interval, which starts at ``t_0`` with no event and ``F = 0`` below it), over the windows
    ``m < m_hi`` that contain ``t_lo``, with ``u_m = (t_lo - t_m) / w``:
    ``xbar += G_m [F((t_hi - t_m)/w) - F(u_m)]``, and the return value
    ``dL/dt_lo = -sum_m (G_m . nu_{r_lo}) K(u_m) / w``. One walk over the windows serves both,
    the event's term taken one interval early (the sweep adds it to ``tbar`` before the event's
    step)."""
    tb = 0.0
    m = m_hi - 1
    while m >= 0 and t_eval[m] + width > t_lo:
        u_lo = (t_lo - t_eval[m]) / width
        f_lo = 0.0
        if r_lo >= 0:
            f_lo = window_cdf(u_lo)
            dens = window_density(u_lo)
            if dens > 0.0:
                gnu = 0.0
                for e in range(tab.net_ptr[r_lo], tab.net_ptr[r_lo + 1]):
                    gnu += G[m, tab.net_species[e]] * tab.net_delta[e]
                tb -= gnu * dens / width
        mass = window_cdf((t_hi - t_eval[m]) / width) - f_lo
        if mass != 0.0:
            for i in range(xbar.shape[0]):
                xbar[i] += G[m, i] * mass
        m -= 1
    return tb


def last_checkpoint(K, checkpoint_every, n_check):
    """The index of the last time checkpoint of a path of ``K`` steps, the one at step
    ``i C <= K - 1`` (``C = checkpoint_every``, ``n_check`` of them recorded), or -1 if none: where
    the reverse sweep's walk down the checkpoints starts."""
    return min((K - 1) // checkpoint_every, n_check - 1) if K > 0 and n_check > 0 else -1


def close_windows(m_hi, t_hi, t_eval, width):
    """The kernel windows ``m < m_hi`` that start before ``t_hi`` (``t_m - w < t_hi``), walking
    down from ``m_hi``: the windows an interval ending at ``t_hi`` can fall in. Returns the new
    ``m_hi``."""
    while m_hi > 0 and t_eval[m_hi - 1] - width >= t_hi:
        m_hi -= 1
    return m_hi


def add_fill_terms(m, k, obs_step, G, xbar):
    """The adjoints of the forward-fill observations ``Y_m = x_k`` that read level ``k``, the
    observations ``m, m - 1, ...`` with ``obs_step[m] = k`` (walking down the grid):
    ``xbar += G_m``. Returns the next observation below them."""
    while m >= 0 and obs_step[m] == k:
        for i in range(xbar.shape[0]):
            xbar[i] += G[m, i]
        m -= 1
    return m


def unfire(r, x, theta, a, tab):
    """Undo reaction ``r``: ``x_k = x_{k+1} - nu_r``, and recompute the propensities that depend
    on it (the dependency graph), which gives back the forward's doubles ``a(x_k)``. The states
    walked back are the forward's, so nothing can turn negative here. A network may supply a
    code-generated version with the same contract (:mod:`cupyssa.specialize`)."""
    for e in range(tab.net_ptr[r], tab.net_ptr[r + 1]):
        x[tab.net_species[e]] -= tab.net_delta[e]
    for e in range(tab.dep_ptr[r], tab.dep_ptr[r + 1]):
        j = tab.dep_reaction[e]
        a[j] = propensity(j, x, theta, tab)


def stoich_adjoint(xbar, s, tab):
    """``s_j = nu_j . xbar`` for every reaction (the net changes of the table, in table order).
    A network may supply a code-generated version (:mod:`cupyssa.specialize`)."""
    for j in range(s.shape[0]):
        sj = 0.0
        for e in range(tab.net_ptr[j], tab.net_ptr[j + 1]):
            sj += tab.net_delta[e] * xbar[tab.net_species[e]]
        s[j] = sj


def rates_adjoint(x, theta, abar, xbar, gbar, with_x, tab):
    """``gbar += sum_j abar_j da_j/dtheta`` and, when ``with_x``, ``xbar += sum_j abar_j da_j/dx``,
    reaction by reaction in order (``abar [M]``; reactions with ``abar_j = 0`` are skipped).

    Every reaction's adjoint goes through the one ``propensity_adjoint`` below: the helpers are
    inlined, so each call site would be another copy of every rate law for the compiler. A
    network of mass-action laws may supply a code-generated version (:mod:`cupyssa.specialize`)."""
    for j in range(abar.shape[0]):
        if abar[j] != 0.0:
            propensity_adjoint(j, x, theta, abar[j], xbar, gbar, with_x, tab)


def step_adjoint(gumbel, col, r, x, theta, a, a0, inv_a0, tau, tbar, estimator, inv_temp,
                 weight, y, c, s, xbar, gbar, tab):
    """Chain the adjoints of level ``k+1`` (``xbar``, ``tbar``) through event ``k`` (reaction ``r``
    fired from ``x = x_k``); ``xbar`` becomes ``xbar_k`` in place; returns ``tbar_k``.

    Score function: ``d/dtheta [log a_r - a0 tau]`` (``tau`` is data of the path); ``r = -1`` gives
    the survival term ``-a0 tau`` of a censored interval alone. ``inv_a0 = 1 / a0`` and
    ``tau = E / a0`` come from the caller, which walks the time back with them. ``y``, ``c`` and
    ``s`` (``[M]``) are scratch: the relaxed event and its coefficients
    (:func:`conditional_softmax`), ``s = nu xbar_{k+1}``, then the propensity adjoints
    ``abar = dL/da`` that :func:`rates_adjoint` chains into ``xbar`` and ``gbar``."""
    M = reaction_count(a)
    st = estimator == STRAIGHT_THROUGH
    if st:
        # the relaxed event first: it needs only the draws and a(x_k), so it runs ahead of the
        # chain of dependent steps xbar_{k+1} -> s -> y.s -> abar -> xbar_k, which then has the
        # coefficient c_j = y_j / (T a_j) in hand (one multiplication on the chain instead of two
        # and a division: benchmarks/RESULTS.md, "Gradient throughput, session 16")
        conditional_softmax(gumbel, col, r, a, a0, inv_temp, y, c)
        stoich_adjoint(xbar, s, tab)  # before xbar is updated
        ys = 0.0
        for j in range(M):
            ys += y[j] * s[j]
        abar0 = -tbar * tau * inv_a0  # dL/da0 = -tbar E / a0^2, through tau = E / a0
        for j in range(M):
            s[j] = abar0 + (s[j] - ys) * c[j]
    else:
        abar0 = -weight * tau
        for j in range(M):
            s[j] = abar0 + (weight / a[r] if j == r else 0.0)
    rates_adjoint(x, theta, s, xbar, gbar, st, tab)
    return tbar


def load_draws(forward, gumbel, seed_lo, seed_hi, trajectory, k):
    """Regenerate the draws of the ``B`` steps ending at ``k`` (``B = forward.shape[1]``, from step
    ``max(k - B + 1, 0)``, which is returned): the forward pair into ``forward [2, B]`` with the
    waiting-time uniforms of row 0 as exponentials ``E = -log u_tau``, and the Gumbel stream ``b``
    into ``gumbel[b] [2, B]`` as exponentials ``-log u`` (``gumbel`` is ``[0, 2, B]`` when unused).

    The logarithms are taken here, by :func:`exponential` on whole rows, rather than one to three
    per event inside the sweep (benchmarks/RESULTS.md, "Gradient throughput", sessions 14 and 15).
    ``E`` may differ from the forward's ``-log u_tau`` (libm) in its last bits; the times walked
    back are rounded anyway and reset to the forward's at every checkpoint."""
    k_lo = max(k - forward.shape[1] + 1, 0)
    uniform_block(forward, seed_lo, seed_hi, trajectory, k_lo, STREAM_FORWARD, 1, 0)
    for c in range(forward.shape[1]):
        forward[0, c] = exponential(forward[0, c])
    for b in range(gumbel.shape[0]):
        uniform_block(gumbel[b], seed_lo, seed_hi, trajectory, k_lo, STREAM_GUMBEL + b, 1, 0)
        for h in range(2):
            for c in range(gumbel.shape[2]):
                gumbel[b, h, c] = exponential(gumbel[b, h, c])
    return k_lo


def replay_trajectory(trajectory, x, theta, t_final, K, tape, t_checkpoints, checkpoint_every,
                      obs_step, obs_frac, t_eval, G, mode, width, horizon, estimator, inv_temp,
                      weight, seed_lo, seed_hi, a, y, c, s, xbar, forward, gumbel, gbar, tab):
    """Reverse sweep of one trajectory; adds its gradient contribution to ``gbar [P]``.

    ``x`` (int64 ``[S]``) is the final state ``x_K`` on entry and ``x_0`` on return; ``t_final`` is
    ``t_K``; ``G [T, S]`` is ``dL/dY`` of this trajectory's observations (straight-through);
    ``weight`` multiplies the score. ``a``, ``y``, ``c``, ``s`` (``[M]``) and ``xbar`` (``[S]``) are
    scratch (see :func:`step_adjoint`); ``forward [2, B]`` and ``gumbel [(M + 1) // 2 or 0, 2, B]``
    (float64) are scratch for the regenerated draws of ``B`` steps at a time. Returns the recovered
    initial time ``t_0``.
    """
    if K > tape.shape[0]:
        return math.nan  # the path outgrew its tape: nothing to replay (the caller re-records it)
    st = estimator == STRAIGHT_THROUGH
    all_propensities(x, theta, a, tab)
    for i in range(xbar.shape[0]):
        xbar[i] = 0.0
    tbar = 0.0
    t = t_final
    n_check = t_checkpoints.shape[0]
    m = t_eval.shape[0] - 1  # next observation to attach (fill / linear), walking down
    m_hi = t_eval.shape[0]  # kernel windows that start before the current interval's end
    a0 = cumulate(a, y)  # the forward's doubles; y is scratch until step_adjoint fills it
    k_lo = K + 1  # first step whose draws the blocks hold (none yet)
    # the next checkpoint walking down, index i_check at step k_check = i_check C (negative: none
    # left), stepped down at each one instead of testing k % C, an integer division per event
    i_check = last_checkpoint(K, checkpoint_every, n_check)
    k_check = i_check * checkpoint_every if i_check >= 0 else -1

    # ---- the last interval, [t_K, t_{K+1}) --------------------------------------------------
    # linear observations read the first event after the grid, so it is part of the path; the
    # score of a path censored at H = horizon instead ends with the survival term -a0 (H - t_K),
    # which is step_adjoint with no event (r = -1) and tau = H - t_K
    last_event = mode == LINEAR and a0 > 0.0
    r = -1
    inv_a0 = 0.0
    tau = horizon - t
    m_top = m
    if last_event:
        k_lo = load_draws(forward, gumbel, seed_lo, seed_hi, trajectory, K)
        inv_a0 = 1.0 / a0
        tau = forward[0, K - k_lo] * inv_a0
        r = select_reaction(a, y, forward[1, K - k_lo] * a0)
        if st:
            while m >= 0 and obs_step[m] == K:
                tbar = linear_obs_terms(m, r, obs_frac[m], tau, G, xbar, tbar, True, tab)
                m -= 1
    if last_event or (not st and a0 > 0.0):
        tbar = step_adjoint(gumbel, K - k_lo, r, x, theta, a, a0, inv_a0, tau, tbar, estimator,
                            inv_temp, weight, y, c, s, xbar, gbar, tab)
    if last_event:
        if st:
            for mm in range(m_top, m, -1):
                tbar = linear_obs_terms(mm, r, obs_frac[mm], tau, G, xbar, tbar, False, tab)
    elif st and mode == KERNEL:
        tbar += add_kernel_terms(t, math.inf, tape[K - 1] if K > 0 else -1, t_eval, G, width,
                                 xbar, m_hi, tab)
    elif st:
        m = add_fill_terms(m, K, obs_step, G, xbar)

    # ---- events K-1 .. 0 --------------------------------------------------------------------
    for k in range(K - 1, -1, -1):
        r = tape[k]
        unfire(r, x, theta, a, tab)
        a0 = cumulate(a, y)
        if k < k_lo:
            k_lo = load_draws(forward, gumbel, seed_lo, seed_hi, trajectory, k)
        inv_a0 = 1.0 / a0
        tau = forward[0, k - k_lo] * inv_a0
        t_next = t
        if k == k_check:
            t = t_checkpoints[i_check]
            i_check -= 1
            k_check -= checkpoint_every
        else:
            t = t_next - tau
        m_top = m
        if st and mode == LINEAR:
            while m >= 0 and obs_step[m] == k:
                tbar = linear_obs_terms(m, r, obs_frac[m], tau, G, xbar, tbar, True, tab)
                m -= 1
        tbar = step_adjoint(gumbel, k - k_lo, r, x, theta, a, a0, inv_a0, tau, tbar, estimator,
                            inv_temp, weight, y, c, s, xbar, gbar, tab)
        if st and mode == LINEAR:
            for mm in range(m_top, m, -1):
                tbar = linear_obs_terms(mm, r, obs_frac[mm], tau, G, xbar, tbar, False, tab)
        elif st and mode == FILL:
            m = add_fill_terms(m, k, obs_step, G, xbar)
        elif st and mode == KERNEL:
            m_hi = close_windows(m_hi, t_next, t_eval, width)
            tbar += add_kernel_terms(t, t_next, tape[k - 1] if k > 0 else -1, t_eval, G, width,
                                     xbar, m_hi, tab)
    return t


def linear_obs_terms(m, r, lam, tau, G, xbar, tbar, upper, tab):
    """Adjoint of ``Y_m = x_k + lambda (x_{k+1} - x_k)``, ``lambda = (t_m - t_k) / tau_k``: the
    level-``k+1`` half (``upper``: ``xbar += lambda G_m``, ``tbar += -(G_m . nu_r) lambda / tau``) or
    the level-``k`` half (``xbar += (1 - lambda) G_m``, ``tbar += -(G_m . nu_r)(1 - lambda) / tau``).
    Returns the updated ``tbar``."""
    c = lam if upper else 1.0 - lam
    gnu = 0.0
    for e in range(tab.net_ptr[r], tab.net_ptr[r + 1]):
        gnu += G[m, tab.net_species[e]] * tab.net_delta[e]
    for i in range(xbar.shape[0]):
        xbar[i] += c * G[m, i]
    return tbar - gnu * c / tau
