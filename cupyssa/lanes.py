"""The straight-through reverse sweep with trajectories in SIMD lanes: generated per network.

The shared sweep (:func:`cupyssa.kernels.backward.replay_trajectory`) walks one trajectory at a
time; each event is a short chain of dependent arithmetic (the step back, the propensities, the
conditional Gumbel-softmax, ``s = nu xbar``, the adjoints) with little for the CPU's vector units
to do. This sweep walks ``SWEEP_LANES`` trajectories in lockstep instead: at sweep step ``i``
lane ``l`` holds step ``k = K_l - 1 - i`` of its trajectory, every phase of a step is a loop over
the lanes, and the compiler turns those loops into SIMD instructions (AVX2/AVX-512 lanes of
doubles; Philox's 32 x 32 -> 64-bit products are ``vpmuludq`` lanes). A lane whose trajectory is
done computes on its step 0 and discards the result, so a group costs its longest path: the
batch is cut into groups in the order of its path lengths.

Each lane's arithmetic is the scalar sweep's, in the same order, so the gradients are the same
doubles (tested against the table-driven sweep):

* the step back ``x_k = x_{k+1} - nu_r`` by selects on the lane's reaction ``r``; populations are
  held as doubles (exact below 2^53);
* every propensity recomputed, ``a_j = theta_k (C(x_s0, o0) C(x_s1, o1))``, ``a0`` their sequential
  sum (:func:`~cupyssa.kernels.trajectory.cumulate` for ``M <= 8``);
* the draws of the step from its counters (one Philox call per stream per lane, not blocks of
  steps: a counter-based draw is a function of its counter alone), ``-log u`` by
  :func:`~cupyssa.kernels.backward.exponential`;
* :func:`~cupyssa.kernels.backward.conditional_softmax` with ``w^q``, ``q = 1/T - 1``, by
  :func:`~cupyssa.kernels.backward.ratio_power`'s repeated squaring unrolled over the 7 bits of
  ``q <= 64``, the same multiplications (selects on bits of ``q``, the same in every lane);
* ``s``, ``y.s``, ``abar`` and the propensity adjoints as in the generated ``stoich_adjoint`` and
  ``rates_adjoint`` of :mod:`cupyssa.specialize`, their updates masked per lane;
* the observation terms (forward fill; kernel windows) as a masked scalar phase per lane after
  the vector one, through the shared helpers; they do work only at the steps an observation reads.

Networks qualify when every law is mass action in at most two species of order <= 3 (the laws of
``NetworkTables.pair_law``) and ``M <= LANES_MAX_REACTIONS``; the sweep serves the
straight-through estimator with fill and kernel observations when ``1/T - 1`` is an integer from
0 to 64 (``T = 1, 1/2, ..., 1/65``; the default ``T = 0.1``). Everything else runs the scalar
sweep. On the dimerization the lanes sweep ran 1.40-1.51x the generated sweep one trajectory
at a time, as fast as the same sweep written out by hand for that model (benchmarks/RESULTS.md,
"Gradient throughput, session 20").
"""

from __future__ import annotations

from .codegen import load_function
from .specialize import _binomial

__all__ = ["LANES_MAX_REACTIONS", "lanes_sweep_source", "lanes_functions"]

#: every propensity is recomputed at every step (no branch on the lane's reaction), so the work
#: per event grows with ``M``; up to ``trajectory.BLOCK`` reactions ``a0`` is a plain running sum
LANES_MAX_REACTIONS = 8


def _lines(block: str, indent: int) -> list[str]:
    pad = " " * indent
    return [pad + line if line else line for line in block.strip("\n").split("\n")]


def _select(pairs, default: str) -> str:
    """``v_a if r == a else (v_b if r == b else default)`` over ``pairs`` of (reaction, value)."""
    out = default
    for j, value in reversed(pairs):
        out = f"({value} if r == {j} else {out})"
    return out


def lanes_sweep_source(network) -> str | None:
    """Python source of the network's ``sweep_lanes`` (see the module docstring), with the
    signature of :func:`cupyssa.kernels.cpu.sweep_batch`; ``None`` when the network does not
    qualify. The module-level constants it reads (``SWEEP_MODE``, ``SWEEP_LANES``) and the kernel
    helpers it calls come from the family that compiles it."""
    tab = network.tables
    pair = tab.pair_law
    M, S, P = network.n_reactions, network.n_species, network.n_parameters
    if M > LANES_MAX_REACTIONS or (pair[:, 0] < 0).any():
        return None
    nu = network.stoichiometry.astype(int)
    slots = sorted({int(k) for k in pair[:, 0]})
    n_streams = (M + 1) // 2  # Gumbel streams: reaction j's exponential is element j % 2 of j // 2

    def per_lane(names, dtype="np.float64"):
        return [f"{name} = np.zeros(L, dtype={dtype})" for name in names]

    X = [f"x{s}" for s in range(S)]
    XB = [f"xb{s}" for s in range(S)]
    GB = [f"g{p}" for p in range(P)]
    TH = [f"th{k}" for k in slots]
    src = ["from numba import prange",
           "from cupyssa.kernels.backward import KERNEL",
           "from cupyssa.kernels.philox import STREAM_FORWARD, STREAM_GUMBEL",
           "",
           "",
           "def sweep_lanes(x_final, theta, first, t_final, K, tape, t_checkpoints, checkpoint_every,",
           "                obs_step, obs_frac, t_eval, G, width, horizon, inv_temp, weights, seed_lo,",
           "                seed_hi, tab, grads, x_start, t_start):",
           "    N = x_final.shape[0]",
           "    T = t_eval.shape[0]",
           "    n_check = t_checkpoints.shape[1]",
           "    if n_check == 0:  # no checkpoints: every lane reads a dummy one, never used",
           "        t_checkpoints = np.zeros((N, 1))",
           "    q = int(inv_temp - 1.0)  # the caller checked: an integer from 0 to 64",
           "    # groups of similar path lengths: a group costs its longest path (stable: the same",
           "    # groups for the same batch)",
           "    order = np.argsort(K, kind=\"mergesort\")",
           "    for group in prange((N + SWEEP_LANES - 1) // SWEEP_LANES):",
           "        L = SWEEP_LANES"]
    body = per_lane(X + XB + GB + TH + ["t", "t_next", "tbar", "live", "at_check", "t_check",
                                        "drop", "reach"])
    body += per_lane(["n_of", "K_of", "m_obs", "k_obs", "m_hi", "i_check", "k_check", "rr"],
                     "np.int64")
    body += per_lane(["traj_lo", "traj_hi", "step"], "np.uint64")
    body += [f"u = np.empty(({1 + 2 * n_streams}, L))  # the step's uniforms, then -log u: "
             "E, then the Gumbel streams",
             "xs = np.zeros(%d)  # one lane's xbar, for the shared observation helpers" % S,
             "k_max = 0",
             "for lane in range(L):",
             "    n = order[min(group * L + lane, N - 1)]  # lanes past the batch repeat a path",
             "    n_of[lane] = n",
             "    traj = np.uint64(first + n)",
             "    traj_lo[lane] = traj & np.uint64(0xFFFFFFFF)",
             "    traj_hi[lane] = traj >> np.uint64(32)",
             "    it = n * (theta.shape[0] > 1)"]
    body += [f"    th{k}[lane] = theta[it, {k}]" for k in slots]
    body += [f"    x{s}[lane] = x_final[n, {s}]" for s in range(S)]
    body += _lines("""
    t[lane] = t_final[n]
    if group * L + lane >= N or K[n] > tape.shape[1]:
        t[lane] = math.nan  # K_of = 0: never live; an outgrown tape has nothing to replay
        continue
    Kn = K[n]
    K_of[lane] = Kn
    k_max = max(k_max, Kn)
    # the last interval [t_K, t_{K+1}): observations after the last event (replay_trajectory)
    for i in range(xs.shape[0]):
        xs[i] = 0.0
    tbar[lane] = 0.0
    if SWEEP_MODE == KERNEL:
        tbar[lane] += add_kernel_terms(t_final[n], math.inf, tape[n, Kn - 1] if Kn > 0 else -1,
                                       t_eval, G[n], width, xs, T, tab)
        m_hi[lane] = T
        drop[lane] = t_eval[T - 1] - width if T > 0 else -math.inf
        reach[lane] = t_eval[T - 1] + width if T > 0 else -math.inf
    else:
        m = add_fill_terms(T - 1, Kn, obs_step[n], G[n], xs)
        m_obs[lane] = m
        k_obs[lane] = obs_step[n, m] if m >= 0 else -1
    ic = last_checkpoint(Kn, checkpoint_every, n_check)
    i_check[lane] = ic
    k_check[lane] = ic * checkpoint_every if ic >= 0 else -1""", 0)
    body += [f"    xb{s}[lane] = xs[{s}]" for s in range(S)]
    body += _lines("""
for i in range(k_max):
    pending = 0  # lanes whose observations read the new level (the scalar phase below)
    for lane in range(L):  # gathers
        k = K_of[lane] - 1 - i
        kk = max(k, 0)
        n = n_of[lane]
        on = k >= 0
        live[lane] = 1.0 if on else 0.0
        step[lane] = np.uint64(kk)
        rr[lane] = tape[n, kk]
        pending += 1 if SWEEP_MODE != KERNEL and on and kk == k_obs[lane] else 0
        at = kk == k_check[lane]
        at_check[lane] = 1.0 if at else 0.0
        t_check[lane] = t_checkpoints[n, max(i_check[lane], 0)]
        i_check[lane] -= 1 if at and on else 0
        k_check[lane] -= checkpoint_every if at and on else 0
    # every stream of the step in one loop: the counters differ only in the stream word, so the
    # first round and a half of Philox are common to them (1.05-1.08x the sweep with a loop per
    # stream); the exponentials stay in loops of their own (in this loop: 0.8x)
    for lane in range(L):
        c0, c1, _, _ = philox4x32(step[lane], np.uint64(STREAM_FORWARD), traj_lo[lane],
                                  traj_hi[lane], seed_lo, seed_hi)
        u[0, lane] = words_to_uniform(c0, c1)""", 0)
    for b in range(n_streams):
        body += _lines(f"""
        c0, c1, c2, c3 = philox4x32(step[lane], np.uint64(STREAM_GUMBEL + {b}), traj_lo[lane],
                                    traj_hi[lane], seed_lo, seed_hi)
        u[{1 + 2 * b}, lane] = words_to_uniform(c0, c1)
        u[{2 + 2 * b}, lane] = words_to_uniform(c2, c3)""", 0)
    body += _lines(f"""
    for h in range({1 + M}):
        for lane in range(L):
            u[h, lane] = exponential(u[h, lane])
    for lane in range(L):  # the event: replay_trajectory's step, in its doubles
        r = rr[lane]
        on = live[lane] != 0.0""", 0)
    ev = []
    # the step back x_k = x_{k+1} - nu_r (adding 0.0 in dead lanes is exact)
    for s in range(S):
        column = [(j, f"{float(-nu[j, s])!r}") for j in range(M) if nu[j, s]]
        if column:
            ev.append(f"x{s}[lane] += live[lane] * {_select(column, '0.0')}")
    # propensities a_j = theta_k (c0 c1), the generated rates_adjoint's factors
    for j in range(M):
        k, s0, o0, s1, o1 = (int(v) for v in pair[j])
        ev.append(f"c{j}_0 = {_binomial(f'x{s0}[lane]', o0, False)}")
        ev.append(f"c{j}_1 = {_binomial(f'x{s1}[lane]', o1, False)}")
        ev.append(f"a_{j} = th{k}[lane] * (c{j}_0 * c{j}_1)")
    ev.append("a0 = " + " + ".join(f"a_{j}" for j in range(M)))
    ev += ["inv_a0 = 1.0 / a0",
           "tau = u[0, lane] * inv_a0",
           "t_next[lane] = t[lane]",
           "t_new = t_check[lane] if at_check[lane] != 0.0 else t[lane] - tau",
           "# kernel windows: one to close (t_{k+1} <= its start) or one that holds t_k",
           "window = t[lane] <= drop[lane] or reach[lane] > t_new",
           "pending += 1 if SWEEP_MODE == KERNEL and on and window else 0",
           # the exponentials loaded once, outside the selects (loads under a condition are not
           # speculated)
           *[f"e_{j} = u[{1 + j}, lane]" for j in range(M)],
           f"e_r = {_select([(j, f'e_{j}') for j in range(M)], 'math.nan')}",
           f"a_r = {_select([(j, f'a_{j}') for j in range(M)], 'math.nan')}",
           "total = 1.0  # sum_j y_j / y_r"]
    # conditional_softmax: y_j / y_r = w_j^q w_j, c_j / c_r = w_j^q (w_j / a_j) for the racing
    # j != r with a_j > 0, w_j = a_j e_r / (a_j e_r + a0 e_j), summed in index order. Every j
    # computes (one division wasted on r): picking the racing ones by selects on r instead kept
    # LLVM from vectorizing the loop (0.85x the scalar sweep)
    for j in range(M):
        ev += _lines(f"""
ae = a_{j} * e_r
inv_den = 1.0 / (ae + a0 * e_{j})
w = ae * inv_den
wq = 1.0
for bit in range(7):
    wq = wq * w if (q >> bit) & 1 else wq
    w *= w
racing = r != {j} and a_{j} > 0.0
y_{j} = wq * (ae * inv_den) if racing else 0.0
cc_{j} = wq * (e_r * inv_den) if racing else 0.0
total += y_{j}""", 0)
    ev += ["inv_a_total = 1.0 / (a_r * total)",
           "y_r = a_r * inv_a_total",
           "c_r = inv_temp * y_r"]
    for j in range(M):
        ev.append(f"y_{j} = y_r if r == {j} else y_{j} * y_r")
        ev.append(f"cc_{j} = inv_temp * inv_a_total if r == {j} else cc_{j} * c_r")
    # s = nu xbar_{k+1} in the table order of stoich_adjoint, then abar
    for j in range(M):
        terms = "".join(f" + {float(tab.net_delta[e])!r} * xb{tab.net_species[e]}[lane]"
                        for e in range(tab.net_ptr[j], tab.net_ptr[j + 1]))
        ev.append(f"s_{j} = 0.0{terms}")
    ev.append("ys = 0.0" + "".join(f" + y_{j} * s_{j}" for j in range(M)))
    # dL/da0 = -tbar E / a0^2; fill observations leave tbar = +0.0, whence -0.0
    ev.append("abar0 = -tbar[lane] * tau * inv_a0 if SWEEP_MODE == KERNEL else -0.0")
    for j in range(M):
        ev.append(f"ab_{j} = abar0 + (s_{j} - ys) * cc_{j}")
    # rates_adjoint, reaction by reaction; a dead lane keeps its values (the same zeros)
    for j in range(M):
        k, s0, o0, s1, o1 = (int(v) for v in pair[j])
        ev.append(f"g{k}[lane] = g{k}[lane] + ab_{j} * (c{j}_0 * c{j}_1) if on else g{k}[lane]")
        for s, order, other in ((s0, o0, f"c{j}_1"), (s1, o1, f"c{j}_0")):
            if order:
                d = _binomial(f"x{s}[lane]", order, True)
                ev.append(f"xb{s}[lane] = xb{s}[lane] + ab_{j} * (th{k}[lane] * {other} * {d}) "
                          f"if on else xb{s}[lane]")
    ev.append("t[lane] = t_new if on else t[lane]")
    body += _lines("\n".join(ev), 8)
    # the observations that read level k, for the lanes flagged above: scalar, and idle at most
    # steps. A skipped lane's tbar misses a "+= 0.0" of replay_trajectory, which is exact:
    # tbar is a sum of terms none of which is -0.0
    copy_in = [f"xs[{s}] = xb{s}[lane]" for s in range(S)]
    copy_out = [f"xb{s}[lane] = xs[{s}]" for s in range(S)]
    body += _lines("""
    if pending == 0:
        continue
    for lane in range(L):
        k = K_of[lane] - 1 - i
        if k < 0:
            continue
        n = n_of[lane]
        if SWEEP_MODE == KERNEL:
            mh = close_windows(m_hi[lane], t_next[lane], t_eval, width)
            m_hi[lane] = mh
            drop[lane] = t_eval[mh - 1] - width if mh > 0 else -math.inf
            reach[lane] = t_eval[mh - 1] + width if mh > 0 else -math.inf
            if reach[lane] > t[lane]:  # a window holds t_k""", 0)
    body += _lines("\n".join(copy_in + [
        "r_lo = tape[n, k - 1] if k > 0 else -1",
        "tbar[lane] += add_kernel_terms(t[lane], t_next[lane], r_lo, t_eval, G[n], width, xs, mh,",
        "                               tab)"] + copy_out), 16)
    body += _lines("elif k == k_obs[lane]:", 8)
    body += _lines("\n".join(copy_in + [
        "m = add_fill_terms(m_obs[lane], k, obs_step[n], G[n], xs)",
        "m_obs[lane] = m",
        "k_obs[lane] = obs_step[n, m] if m >= 0 else -1"] + copy_out), 12)
    body += ["for lane in range(L):",
             "    if group * L + lane < N:",
             "        n = n_of[lane]",
             "        t_start[n] = t[lane]"]
    body += [f"        grads[n, {p}] = g{p}[lane]" for p in range(P)]
    body += [f"        x_start[n, {s}] = np.int64(x{s}[lane])" for s in range(S)]
    src += _lines("\n".join(body), 8)
    return "\n".join(src) + "\n"


def lanes_functions(network, load: bool = True) -> dict:
    """``{"sweep_lanes": the generated function}`` (a plain Python function kept in a file,
    :mod:`cupyssa.codegen`) for a network that qualifies, ``{}`` for one that does not. With
    ``load=False`` nothing is written or imported: the function is ``None`` unless already
    loaded."""
    source = lanes_sweep_source(network)
    return {} if source is None else {"sweep_lanes": load_function(source, "sweep_lanes", load)}
