"""Gradient throughput (issue 3): events per second of ``cupyssa.value_and_grad`` side by side, in
one run, with cupyssa's own forward-only simulation and with the JAX library ``stochastix``
differentiating the same loss through its differentiable (straight-through Gumbel-Softmax) SSA.

Model: reversible dimerization ``2A -> B`` (k1=1e-3, combinatorial ``k1 A(A-1)/2`` in both
packages), ``B -> 2A`` (k2=0.1), A0=1000, B0=0, horizon T=50 (about 3 900 events per trajectory).
Loss: ``L = E[B(T)]`` over the ensemble (``cs.losses.Mean`` with weight 1 on B at T); gradient with
respect to (k1, k2).

Contenders (same number of trajectories N each):

* cupyssa forward only: ``cs.simulate(model, t_eval=[T], n_trajectories=N, seed=s)``; events from
  ``SimulationResult.n_events``.
* cupyssa full gradient, the default configuration (``estimator="st"``, ``observation="kernel"``,
  ``temperature=0.1``): ``cs.value_and_grad`` = pilot + recording forward + loss + reverse sweep;
  also ``st``/``fill`` (the estimator stochastix implements) and the ``score`` estimator. Their
  events are those of the same trajectories (same seed, counter-based RNG) up to T, i.e. the
  forward's ``n_events`` (the kernel window makes the recording forward run on to T + w: its
  recorded steps are shown by the profile).
* stochastix (``pip install stochastix``; JAX on CPU, float32 by default), run in a subprocess with
  ``--stochastix-python`` (a separate virtual environment): ``jax.jit(jax.value_and_grad(loss))``
  of ``loss(k, keys) = mean_i B_i(T)``, where each trajectory is
  ``stochsimsolve(key_i, network, x0, T=50, max_steps=L, solver=DifferentiableDirect(
  logits_scale=0.1), save_trajectory=False, save_propensities=False)`` vmapped over N keys (its
  documented reverse-mode path: a ``lax.scan`` of ``L`` steps, ``L`` fixed at compile time; L is
  1.15 x the longest of cupyssa's N trajectories, and trajectories that would need more are
  counted and reported). Its events are counted exactly by re-running the same keys forward with
  ``save_trajectory=True`` (steps whose reaction index is >= 0).

All rates are the best of ``--repeats`` measurements of warm calls (compilation excluded: every
configuration runs once before, also with ``specialize=True``, so that the default,
``specialize=None``, finds the network-specific machine code as it does after any earlier
``specialize=True`` call, whatever the disk cache held when the benchmark started), in
events per second of wall time and per CPU-second of the process (all threads). On the cupyssa
side a measurement repeats the same call back to back until ``--min-seconds`` (default 1 s) have
passed and takes the mean per call: a forward call of N = 1000 lasts ~0.04 s, too short to time
alone. (stochastix's calls last seconds and are timed one by one.) The ratios of each gradient
to the forward are also given within each repetition, where the two are timed seconds apart
(median and range over the repetitions): the host's speed drifts by tens of percent over minutes.

Memory per step:

* cupyssa ``grad.tape_bytes_per_step``: bytes of the tape and time-checkpoint arrays allocated by
  ``value_and_grad`` divided by the recorded steps (what the design bounds by 2 bytes);
* cupyssa, the whole call: peak bytes of NumPy arrays alive during one default ``value_and_grad``
  call (``tracemalloc``, which traces NumPy's allocations: tapes, checkpoints, observations,
  ``dL/dY``, per-trajectory gradients), divided by the recorded steps;
* stochastix, peak RSS delta: in its subprocess, after ``lower().compile()`` and one small
  untimed call, the peak RSS is reset (``/proc/self/clear_refs``), ``VmRSS`` is read, the first
  timed gradient runs, and the peak ``VmHWM`` is read; the delta is divided by the scan steps
  (N x L) and by the real events;
* stochastix also: XLA's ``memory_analysis()`` of the compiled gradient (temporary buffer bytes)
  divided by the scan steps.

Profile of the default gradient (skipped by ``--no-profile``): ``value_and_grad`` is run once
more with timing wrappers around ``cupyssa.gradients._forward`` (first call: the 64-trajectory
pilot; then the recording forward) and the CPU kernels' ``replay_batch`` (the reverse sweep);
the remainder is the loss and Python bookkeeping. With it, the reverse sweep alone is timed five
ways on the same recorded tapes of the ``st``/``fill`` gradient: cupyssa's generic kernel, its
generated network-specific one (``specialize``) one trajectory at a time and with trajectories in
SIMD lanes (:mod:`cupyssa.lanes`, what ``value_and_grad`` runs; it must return the generic
kernel's gradients exactly, which the run checks), the sweep written out for this one model in
``benchmarks/handwritten.py`` (the practical limit, as the hand-written loops are for the forward;
it returns cupyssa's per-trajectory gradients exactly, also checked), and that sweep with
``handwritten.SWEEP_LANES`` trajectories in lockstep SIMD lanes (the same doubles, also checked).

Start-up (``--startup``; a few minutes): ``import cupyssa``, a first ``simulate``, a first
default ``value_and_grad`` and a first ``value_and_grad(..., specialize=True)`` of the
dimerization, in a new process with an empty Numba cache (cold: everything compiles), then again
with the cache that run wrote (warm).

Usage::

    python benchmarks/gradient_throughput.py                       # N=1000, ~1-2 minutes
    python benchmarks/gradient_throughput.py --quick               # N=200, 1 repeat
    python benchmarks/gradient_throughput.py --stochastix-python /tmp/sx/bin/python
    python benchmarks/gradient_throughput.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

import cupyssa as cs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import (cold_and_warm, cpu_model, git_revision, startup_table,  # noqa: E402
                     write_section)

SECTION = "## Gradient throughput (issue 3)"
K1, K2, A0, T_END = 1e-3, 0.1, 1000, 50.0
TEMPERATURE = 0.1
GOAL_VS_STOCHASTIX = 20.0
GOAL_VS_FORWARD = 1.0 / 3.0
GOAL_TAPE = 2.0


def model():
    return cs.models.dimerization(k1=K1, k2=K2, A0=A0, B0=0)


def mean_b_loss(net):
    W = np.zeros((1, net.n_species))
    W[0, net.species.index("B")] = 1.0
    return cs.losses.Mean(W)


def _cpu_now():
    me = resource.getrusage(resource.RUSAGE_SELF)
    return me.ru_utime + me.ru_stime


#: default of ``--min-seconds``: a cupyssa measurement repeats its call until this many seconds
#: have passed
MIN_SECONDS = 1.0


def _timed(fn, min_seconds):
    """``fn()``'s result and its mean wall and CPU seconds per call over back-to-back calls that
    last at least ``min_seconds`` together (one call at least)."""
    c0, w0 = _cpu_now(), time.perf_counter()
    calls = 0
    while True:
        out = fn()
        calls += 1
        wall = time.perf_counter() - w0
        if wall >= min_seconds:
            return out, wall / calls, (_cpu_now() - c0) / calls


# -- the cupyssa side -----------------------------------------------------------------------------

CONFIGS = {
    "grad st/kernel (default)": dict(estimator="st", observation="kernel", temperature=TEMPERATURE),
    "grad st/fill": dict(estimator="st", observation="fill", temperature=TEMPERATURE),
    "grad score": dict(estimator="score", observation="fill"),
    # the default configuration recorded with the network-specific event update (same gradient)
    "grad st/kernel, specialize=True": dict(estimator="st", observation="kernel",
                                           temperature=TEMPERATURE, specialize=True),
}


def _has_specialize():
    import inspect

    return "specialize" in inspect.signature(cs.simulate).parameters


def run_cupyssa(N, seed, repeats, min_seconds, log):
    m = model()
    loss = mean_b_loss(m.network)
    t_eval = [T_END]
    # warm: compile (or load from the cache) every kernel variant before timing
    cs.simulate(m, t_eval=t_eval, n_trajectories=8, seed=seed)
    specialize = _has_specialize()
    if specialize:
        cs.simulate(m, t_eval=t_eval, n_trajectories=8, seed=seed, specialize=True)
    for kw in CONFIGS.values():
        cs.value_and_grad(loss, m, t_eval=t_eval, n_trajectories=8, seed=seed, **kw)
        if specialize and not kw.get("specialize"):
            # the default (specialize=None) runs the network-specific recording and sweep once
            # their machine code exists, in this process or in the disk cache: without this, a
            # configuration whose specialized sweep no earlier process compiled is timed with
            # the generic one
            cs.value_and_grad(loss, m, t_eval=t_eval, n_trajectories=8, seed=seed,
                              **{**kw, "specialize": True})
    res = {"forward": {"wall": [], "cpu": []}, "forward_specialized": {"wall": [], "cpu": []}}
    res.update({name: {"wall": [], "cpu": []} for name in CONFIGS})
    events = None
    for rep in range(repeats):
        r, w, c = _timed(lambda: cs.simulate(m, t_eval=t_eval, n_trajectories=N, seed=seed),
                         min_seconds)
        ev = r.n_events.astype(np.int64)
        events = ev if events is None else events
        assert np.array_equal(ev, events)
        res["forward"]["wall"].append(w)
        res["forward"]["cpu"].append(c)
        res["forward"]["final_B"] = r.states[:, -1, m.network.species.index("B")].astype(float)
        log(f"  rep {rep}: forward {w:.2f} s")
        if specialize:
            r, w, c = _timed(lambda: cs.simulate(m, t_eval=t_eval, n_trajectories=N, seed=seed,
                                                 specialize=True), min_seconds)
            assert np.array_equal(r.n_events, events)
            res["forward_specialized"]["wall"].append(w)
            res["forward_specialized"]["cpu"].append(c)
        for name, kw in CONFIGS.items():
            (v, g), w, c = _timed(lambda kw=kw: cs.value_and_grad(
                loss, m, t_eval=t_eval, n_trajectories=N, seed=seed, **kw), min_seconds)
            res[name]["wall"].append(w)
            res[name]["cpu"].append(c)
            res[name]["grad"] = g.vector.tolist()
            res[name]["stderr"] = g.stderr_vector.tolist()
            res[name]["tape_bytes_per_step"] = g.tape_bytes_per_step
            log(f"  rep {rep}: {name} {w:.2f} s")
    res["events"] = int(events.sum())
    res["max_events"] = int(events.max())
    res["mean_events"] = float(events.mean())
    return res


def profile_default(N, seed, repeats=3, config="grad st/kernel (default)"):
    """Time the stages of ``value_and_grad`` through wrappers; the fastest of ``repeats`` calls."""
    runs = [_profile_once(N, seed, config) for _ in range(max(1, repeats))]
    return min(runs, key=lambda r: r["total"])


@contextlib.contextmanager
def _wrapped_replays(families, wrap):
    """Within the block, each family's ``replay_batch`` is ``wrap(original)``."""
    originals = [f.replay_batch for f in families]
    for family, orig in zip(families, originals):
        family.replay_batch = wrap(orig)
    try:
        yield
    finally:
        for family, orig in zip(families, originals):
            family.replay_batch = orig


def _profile_once(N, seed, config):
    import cupyssa.gradients as G
    from cupyssa.backends.cpu import kernels_for

    m = model()
    loss = mean_b_loss(m.network)
    # the sweep runs in the generic or the network-specific family (value_and_grad's choice):
    # both are timed
    families = [kernels_for(m.network, False)] + ([kernels_for(m.network, True)]
                                                  if _has_specialize() else [])
    calls = []
    orig_forward = G._forward

    def forward(*a, **k):
        t0 = time.perf_counter()
        seg = orig_forward(*a, **k)
        calls.append(("forward", time.perf_counter() - t0, int(np.asarray(seg.k).sum()),
                      int(np.asarray(seg.k).shape[0])))
        return seg

    def timed_replay(orig):
        def replay(*a, **k):
            t0 = time.perf_counter()
            out = orig(*a, **k)
            calls.append(("replay", time.perf_counter() - t0, 0, 0))
            return out
        return replay

    G._forward = forward
    try:
        with _wrapped_replays(families, timed_replay):
            t0 = time.perf_counter()
            cs.value_and_grad(loss, m, t_eval=[T_END], n_trajectories=N, seed=seed,
                              **CONFIGS[config])
            total = time.perf_counter() - t0
    finally:
        G._forward = orig_forward
    fw = [c for c in calls if c[0] == "forward"]
    out = {"total": total, "pilot": fw[0][1] if fw else 0.0, "pilot_steps": fw[0][2] if fw else 0,
           "record": sum(c[1] for c in fw[1:]), "record_steps": sum(c[2] for c in fw[1:]),
           "replay": sum(c[1] for c in calls if c[0] == "replay")}
    out["other"] = total - out["pilot"] - out["record"] - out["replay"]
    return out


def sweep_alone(N, seed, min_seconds, rounds=5):
    """The reverse sweep alone, five ways, on the same recorded tapes of the ``st``/``fill``
    gradient (the estimator the written-out sweeps implement): cupyssa's generic kernel, its
    generated network-specific one (``specialize``) one trajectory at a time and in SIMD lanes
    (:mod:`cupyssa.lanes`), :func:`handwritten.dimerization_sweep_st_fill` (the practical limit of
    a sweep per trajectory) and its lanes version
    (:func:`handwritten.dimerization_sweep_st_fill_lanes`); the generated lanes sweep and the two
    written-out ones must return the generic kernel's gradients exactly, which is checked.
    Returns ``{name: events/s}`` (the median of ``rounds`` rounds, each timing the five in turn:
    one timing of each after the other let the host's drift decide the ratios, 0.71-0.76 for
    generated ÷ hand-written where interleaved rounds gave 0.78-0.97, benchmarks/RESULTS.md,
    session 17), the recorded steps, whether the three were exact, and the written-out lanes
    sweep's lane count."""
    import handwritten
    from cupyssa.backends.cpu import kernels_for
    from cupyssa.kernels.cpu import replay_arguments, split_replay_args

    m = model()
    captured = []
    generic = kernels_for(m.network, False)
    orig = generic.replay_batch

    def capture(orig):
        def replay(*a):
            captured.append(a)
            return orig(*a)
        return replay

    with _wrapped_replays([generic], capture):
        cs.value_and_grad(mean_b_loss(m.network), m, t_eval=[T_END], n_trajectories=N, seed=seed,
                          **{**CONFIGS["grad st/fill"], "specialize": False})
    args = replay_arguments(*captured[0])
    want = args["grads"]
    steps = int(args["K"].sum())
    out = {"steps": steps}
    kernels = [("generic", orig)]
    if _has_specialize():
        family = kernels_for(m.network, True)
        # sweep(mode, estimator) without the temperature: the sweep one trajectory at a time
        per_trajectory = family.sweep(args["mode"], args["estimator"])
        kernels.append(("generated", lambda *a: per_trajectory(*split_replay_args(a)[2])))
        if hasattr(family, "sweep_of"):
            kernels.append(("generated, lanes", family.replay_batch))
    calls = {}
    outputs = {}
    for name, fn in kernels:
        grads = outputs[name] = np.empty_like(want)
        calls[name] = (lambda fn=fn, grads=grads: fn(*{**args, "grads": grads}.values()))
    got = np.empty_like(want)
    calls["hand-written"] = lambda: handwritten.dimerization_sweep_from_replay(args, got)
    got_lanes = np.empty_like(want)
    calls["hand-written, lanes"] = lambda: handwritten.dimerization_sweep_from_replay(
        args, got_lanes, lanes=True)
    for call in calls.values():
        call()  # compile, or load from the cache
    out["hand_exact"] = bool(np.array_equal(got, want))
    out["lanes_exact"] = bool(np.array_equal(got_lanes, want))
    if "generated, lanes" in outputs:
        out["generated_lanes_exact"] = bool(np.array_equal(outputs["generated, lanes"], want))
    out["lanes"] = handwritten.SWEEP_LANES
    rates = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            rates[name].append(steps / _timed(call, min_seconds)[1])
    out.update({name: float(np.median(r)) for name, r in rates.items()})
    out["rounds"] = rounds
    return out


def cupyssa_traced_memory(N, seed):
    """Peak bytes of NumPy arrays alive during one default ``value_and_grad`` call (tracemalloc
    traces NumPy's allocations; the tapes, observations and per-trajectory buffers are NumPy
    arrays), above what was allocated before the call."""
    import tracemalloc

    m = model()
    loss = mean_b_loss(m.network)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        cs.value_and_grad(loss, m, t_eval=[T_END], n_trajectories=N, seed=seed)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - base


# -- the stochastix side (runs in its own interpreter) ------------------------------------------

STOCHASTIX_CHILD = r'''
import json, os, resource, sys, time
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import warnings
warnings.filterwarnings("ignore")
import jax, jax.numpy as jnp
import stochastix as sx
from stochastix.kinetics import MassAction

cfg = json.loads(sys.argv[1])
N, L, T, reps = cfg["N"], cfg["max_steps"], cfg["T"], cfg["repeats"]
x0 = jnp.array([float(cfg["A0"]), 0.0])  # species are sorted: ("A", "B")
solver = sx.DifferentiableDirect(logits_scale=cfg["temperature"])

def kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def network(k):
    return sx.ReactionNetwork([sx.Reaction("2 A -> B", MassAction(k=k[0])),
                               sx.Reaction("B -> 2 A", MassAction(k=k[1]))])

def loss(k, keys):
    net = network(k)
    def one(key):
        r = sx.stochsimsolve(key, net, x0, T=T, max_steps=L, solver=solver,
                             save_trajectory=False, save_propensities=False)
        return r.x[-1, 1], r.time_overflow
    b, overflow = jax.vmap(one)(keys)
    return jnp.mean(b), (b, overflow)

def count_events(k, keys):
    net = network(k)
    def one(key):
        r = sx.stochsimsolve(key, net, x0, T=T, max_steps=L, solver=solver,
                             save_trajectory=True, save_propensities=False)
        return jnp.sum(r.reactions >= 0)
    return jax.vmap(one)(keys)

out = {"stochastix": sx.__version__, "jax": jax.__version__,
       "devices": [str(d) for d in jax.devices()], "x64": bool(jax.config.jax_enable_x64)}
k = jnp.array([cfg["k1"], cfg["k2"]])
keys = jax.random.split(jax.random.PRNGKey(cfg["seed"]), N)
vg = jax.jit(jax.value_and_grad(loss, has_aux=True))
t0 = time.perf_counter()
compiled = vg.lower(k, keys).compile()
out["compile_s"] = time.perf_counter() - t0
try:
    ma = compiled.memory_analysis()
    out["xla_temp_bytes"] = int(ma.temp_size_in_bytes)
    out["xla_argument_bytes"] = int(ma.argument_size_in_bytes)
    out["xla_output_bytes"] = int(ma.output_size_in_bytes)
except Exception as e:  # not every backend reports it
    out["xla_memory_error"] = repr(e)
# one small untimed call so that the runtime's own allocations are in place
small = jax.jit(jax.value_and_grad(loss, has_aux=True))
jax.block_until_ready(small(k, keys[:8]))
with open("/proc/self/clear_refs", "w") as fh:  # reset the peak RSS to the current RSS
    fh.write("5")
out["rss_before_kb"] = kb("VmRSS")
walls, cpus = [], []
for rep in range(reps):
    c0, w0 = cpu(), time.perf_counter()
    (val, (b, overflow)), g = compiled(k, keys)
    jax.block_until_ready(g)
    walls.append(time.perf_counter() - w0)
    cpus.append(cpu() - c0)
    if rep == 0:
        out["hwm_after_kb"] = kb("VmHWM")
out["wall"], out["cpu"] = walls, cpus
out["value"] = float(val)
out["grad"] = [float(x) for x in g]
out["final_B"] = [float(x) for x in b]
out["overflow"] = int(jnp.sum(overflow))
ev = jax.jit(count_events)(k, keys)
out["events"] = int(jnp.sum(ev))
out["max_events"] = int(jnp.max(ev))
print("JSON " + json.dumps(out))
'''


def run_stochastix(python, N, seed, max_steps, repeats):
    cfg = dict(N=N, max_steps=max_steps, T=T_END, repeats=repeats, A0=A0, k1=K1, k2=K2,
               temperature=TEMPERATURE, seed=seed)
    # a private directory (a shared /tmp may hold files that shadow modules) and isolated mode
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stochastix_child.py")
        with open(path, "w") as fh:
            fh.write(STOCHASTIX_CHILD)
        try:
            p = subprocess.run([python, "-I", path, json.dumps(cfg)], capture_output=True,
                               text=True, cwd=tmp)
        except OSError as e:
            return {"error": f"cannot run {python}: {e}"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("JSON ")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()
        return {"error": f"exit {p.returncode}: " + (tail[-1] if tail else "no output")}
    return json.loads(lines[-1][5:])


def find_stochastix_python(given):
    candidates = [given] if given else ["/tmp/sx/bin/python", sys.executable]
    for py in candidates:
        if py and os.path.exists(py):
            ok = subprocess.run([py, "-I", "-c", "import stochastix"], capture_output=True,
                                cwd=os.path.expanduser("~"))
            if ok.returncode == 0:
                return py, None
    return None, ("stochastix is not importable from " + ", ".join(c for c in candidates if c)
                  + " (install it, e.g. `python -m venv /tmp/sx && /tmp/sx/bin/pip install "
                    "stochastix`, and pass --stochastix-python /tmp/sx/bin/python)")


# -- report ---------------------------------------------------------------------------------------

_LOAD_AT_START = os.getloadavg()


def environment(cmd):
    cpu, rev = cpu_model(), git_revision()
    import numba
    return (f"Date {datetime.date.today().isoformat()}. Machine: `nproc` = {os.cpu_count()}, CPU "
            f"`{cpu}` (lscpu); Python {platform.python_version()}, NumPy {np.__version__}, Numba "
            f"{numba.__version__} with {numba.get_num_threads()} threads; cupyssa {cs.__version__} "
            f"at git {rev}. Load average (1/5/15 min) at the start "
            + " ".join(f"{x:.2f}" for x in _LOAD_AT_START) + ".\n\nCommand: `" + cmd + "`")


def report(N, seed, ours, sx, sx_error, prof, rss_ours, cmd, repeats, max_steps, exact=None,
           min_seconds=MIN_SECONDS):
    ev = ours["events"]
    rows = []

    def best(wall, cpu, events):
        return events / min(wall), events / min(cpu)

    fwd_rate, fwd_cpu = best(ours["forward"]["wall"], ours["forward"]["cpu"], ev)
    rows.append(("cupyssa forward only (`cs.simulate`)", N, ev, min(ours["forward"]["wall"]),
                 fwd_rate, fwd_cpu, "—"))
    if ours["forward_specialized"]["wall"]:
        r, c = best(ours["forward_specialized"]["wall"], ours["forward_specialized"]["cpu"], ev)
        rows.append(("cupyssa forward only, `specialize=True` (not the default)", N, ev,
                     min(ours["forward_specialized"]["wall"]), r, c, "—"))
    rates = {}
    for name in CONFIGS:
        r, c = best(ours[name]["wall"], ours[name]["cpu"], ev)
        rates[name] = (r, c)
        rows.append((f"cupyssa {name}", N, ev, min(ours[name]["wall"]), r, c,
                     f"tape {ours[name]['tape_bytes_per_step']:.2f}"))
    d_rate, d_cpu = rates["grad st/kernel (default)"]
    steps_ours = prof["record_steps"] if prof else ev
    rss_txt = ""
    if rss_ours is not None:
        rss_txt = (f"peak NumPy memory of the whole call (tracemalloc) {rss_ours / 2**20:.1f} MiB = "
                   f"{rss_ours / steps_ours:.1f} B/recorded step")
    if sx is not None:
        sx_rate, sx_cpu = best(sx["wall"], sx["cpu"], sx["events"])
        scan = N * max_steps
        mem = []
        if "hwm_after_kb" in sx:
            d = (sx["hwm_after_kb"] - sx["rss_before_kb"]) * 1024
            mem.append(f"peak RSS +{d / 2**20:.0f} MiB = {d / scan:.0f} B/scan step, "
                       f"{d / sx['events']:.0f} B/event")
        if "xla_temp_bytes" in sx:
            mem.append(f"XLA temp {sx['xla_temp_bytes'] / 2**20:.0f} MiB = "
                       f"{sx['xla_temp_bytes'] / scan:.0f} B/scan step")
        rows.append((f"stochastix {sx['stochastix']} `DifferentiableDirect` grad (JAX "
                     f"{sx['jax']}, CPU)", N, sx["events"], min(sx["wall"]), sx_rate, sx_cpu,
                     "; ".join(mem)))
    head = ("| contender | trajectories | events | best wall s | Mevents/s (wall) | "
            "Mevents/CPU-s | memory |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for lab, n, e, w, r, c, mem in rows:
        lines.append(f"| {lab} | {n} | {e} | {w:.2f} | {r / 1e6:.3f} | {c / 1e6:.3f} | {mem} |")
    table = "\n".join(lines)

    goals = []
    tape = ours["grad st/kernel (default)"]["tape_bytes_per_step"]
    if sx is not None:
        ratio = d_rate / sx_rate
        goals.append(f"- full gradient (default st/kernel) ÷ stochastix gradient: **{ratio:.2f}×** "
                     f"wall ({d_cpu / sx_cpu:.2f}× per CPU-s); goal ≥ {GOAL_VS_STOCHASTIX:g}×: "
                     + ("met" if ratio >= GOAL_VS_STOCHASTIX else "**NOT met**"))
        ratio_f = rates["grad st/fill"][0] / sx_rate
        goals.append(f"- same estimator as stochastix (st/fill, T=0.1) ÷ stochastix: "
                     f"{ratio_f:.2f}× wall")
    else:
        goals.append(f"- full gradient ÷ stochastix: **not measured** — {sx_error}")
    rf = d_rate / fwd_rate
    fs = ours["forward_specialized"]
    spec = (f" (÷ the `specialize=True` forward: {d_rate / best(fs['wall'], fs['cpu'], ev)[0]:.3f})"
            if fs["wall"] else "")
    # the same ratios within each repetition (the forward and the gradient timed a few seconds
    # apart): the host's speed drifts by tens of percent over minutes, which the ratio of two
    # best-of-n figures taken at different moments carries in full
    def per_repetition(name):
        return np.asarray(ours["forward"]["wall"]) / np.asarray(ours[name]["wall"])

    def spread(ratios):
        return f"median {np.median(ratios):.3f}, range {ratios.min():.3f}-{ratios.max():.3f}"

    per_rep = per_repetition("grad st/kernel (default)")
    goals.append(f"- full gradient ÷ cupyssa forward only (default `cs.simulate`): **{rf:.3f}** wall "
                 f"({d_cpu / fwd_cpu:.3f} per CPU-s; within each of the {per_rep.size} repetitions: "
                 f"{spread(per_rep)}); "
                 "goal ≥ 1/3: " + ("met" if rf >= GOAL_VS_FORWARD else "**NOT met**") + spec)
    goals.append(f"- tape: **{tape:.2f} bytes per recorded step** (`grad.tape_bytes_per_step`, "
                 f"allocated tape + checkpoint arrays ÷ recorded steps); goal ≤ {GOAL_TAPE:g}: "
                 + ("met" if tape <= GOAL_TAPE else "**NOT met**")
                 + (f"; {rss_txt}" if rss_txt else ""))
    score_r = rates["grad score"][0]
    goals.append(f"- score estimator ÷ forward only: {score_r / fwd_rate:.3f} (per repetition "
                 f"{spread(per_repetition('grad score'))}); st/fill ÷ forward only: "
                 f"{rates['grad st/fill'][0] / fwd_rate:.3f} (per repetition "
                 f"{spread(per_repetition('grad st/fill'))}); default "
                 "configuration recorded with `specialize=True` ÷ the default: "
                 f"{rates['grad st/kernel, specialize=True'][0] / d_rate:.2f} (÷ stochastix: "
                 + (f"{rates['grad st/kernel, specialize=True'][0] / sx_rate:.2f}×)" if sx is not None
                    else "–)"))
    notes = []
    if sx is not None:
        ours_b = ours["forward"]["final_B"]
        sb = np.asarray(sx["final_B"])
        z = (sb.mean() - ours_b.mean()) / np.sqrt(sb.var(ddof=1) / len(sb)
                                                   + ours_b.var(ddof=1) / len(ours_b))
        g_sx = sx["grad"]
        notes.append(
            f"Checks: stochastix simulates the same chain — final-time mean B {sb.mean():.2f} vs "
            f"cupyssa {ours_b.mean():.2f} (z = {z:.2f}); events/trajectory {sx['events'] / N:.0f} "
            f"vs {ev / N:.0f}; {sx['overflow']} of its trajectories hit max_steps = {max_steps} "
            f"(its scan runs all {max_steps} steps for every trajectory: {N * max_steps} scan "
            f"steps for {sx['events']} events). Its gradient dL/d(k1, k2) = "
            f"({g_sx[0]:.5g}, {g_sx[1]:.5g}). stochastix compile "
            f"{sx['compile_s']:.1f} s (excluded), float64 {'on' if sx['x64'] else 'off'} "
            f"(its default), devices {', '.join(sx['devices'])}, interpreter `{sx['python']}` "
            f"(a separate virtual environment: `python -m venv /tmp/sx && /tmp/sx/bin/pip install "
            f"stochastix`). For reference, the issue quotes stochastix at 1.1×10^6 events/s and "
            f"~170 bytes/step as measured by others on a 2-core machine; the figures above are "
            f"this run's own.")
    if exact is not None:
        parts = []
        for name in CONFIGS:
            g, se = np.asarray(ours[name]["grad"]), np.asarray(ours[name]["stderr"])
            parts.append(f"cupyssa {name} " + ", ".join(
                f"{p} {gi:.5g} ± {si:.2g} ({100 * (gi - e) / abs(e):+.1f} ± {100 * si / abs(e):.1f} %)"
                for p, gi, si, e in zip(("k1", "k2"), g, se, exact)))
        if sx is not None:
            parts.append("stochastix " + ", ".join(
                f"{p} {gi:.5g} ({100 * (gi - e) / abs(e):+.1f} %)"
                for p, gi, e in zip(("k1", "k2"), sx["grad"], exact)))
        notes.append(f"Gradient values (one call of N = {N}; exact by FSP sensitivities: dE[B(T)]/d(k1, "
                     f"k2) = ({exact[0]:.6g}, {exact[1]:.6g})): " + "; ".join(parts) + ".")
    if prof:
        tot = prof["total"]
        notes.append(
            "Profile of the default gradient (fastest of %d calls, N = %d): total %.2f s = pilot "
            "forward %.2f s (%d trajectories) + recording forward %.2f s (%.2f Mevents/s over %d "
            "recorded steps) + reverse sweep %.2f s (%.2f Mevents/s) + loss and bookkeeping "
            "%.2f s; forward only ran at %.2f Mevents/s. Shares: pilot %.0f %%, record %.0f %%, "
            "replay %.0f %%, other %.0f %%." % (
                repeats, N, tot, prof["pilot"], min(N, 64), prof["record"],
                prof["record_steps"] / prof["record"] / 1e6, prof["record_steps"], prof["replay"],
                prof["record_steps"] / prof["replay"] / 1e6, prof["other"], fwd_rate / 1e6,
                100 * prof["pilot"] / tot, 100 * prof["record"] / tot, 100 * prof["replay"] / tot,
                100 * prof["other"] / tot)
            + (" The score estimator's reverse sweep over the same trajectories (to T: %d "
               "steps) takes %.2f s (%.2f Mevents/s): the straight-through part (conditional "
               "Gumbel-softmax, s = ν x̄, the state adjoints through da/dx, kernel time terms) "
               "costs the other %.2f s." % (
                   prof["score_steps"], prof["score_replay"],
                   prof["score_steps"] / prof["score_replay"] / 1e6,
                   prof["replay"] - prof["score_replay"]) if "score_replay" in prof else ""))
    text = "\n".join([
        SECTION, "", environment(cmd), "",
        f"Reversible dimerization `2A -> B` (k1={K1:g}), `B -> 2A` (k2={K2:g}), A0={A0}, B0=0, "
        f"T={T_END:g}; loss E[B(T)]; N = {N} trajectories per call, seed {seed}; best of "
        f"{repeats} measurements per contender (cupyssa: the mean per call over back-to-back "
        f"calls lasting >= {min_seconds:g} s; compilation excluded). Events = the trajectories' "
        f"events up to T (cupyssa: `n_events` of the same seed; stochastix: counted on its own "
        f"trajectories). Memory: see the benchmark's docstring for how each figure is measured.",
        "", table, "", *goals, "", *notes])
    return text


_STARTUP_CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import cupyssa as cs
t1 = time.perf_counter()
m = cs.models.dimerization(A0=60, k1=0.01)
loss = cs.losses.Mean(np.array([[0.0, 1.0]]))
cs.simulate(m, t_eval=[1.0], n_trajectories=1, seed=0, specialize=False)
t2 = time.perf_counter()
cs.value_and_grad(loss, m, t_eval=[1.0], n_trajectories=4, seed=0)
t3 = time.perf_counter()
cs.value_and_grad(loss, m, t_eval=[1.0], n_trajectories=4, seed=0, specialize=True)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "simulate": t2 - t1, "grad": t3 - t2, "grad_specialized": t4 - t3}))
"""


def write_results(path, text):
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the others alone."""
    write_section(path, SECTION, text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=1000, help="N per call (default 1000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--stochastix-python", default=None,
                    help="interpreter with stochastix installed (default: /tmp/sx/bin/python, "
                         "else this one)")
    ap.add_argument("--no-stochastix", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-rss", action="store_true",
                    help="skip the memory measurements beyond the tape (tracemalloc, RSS)")
    ap.add_argument("--no-exact", action="store_true",
                    help="skip the exact gradient by FSP (501 states, a few seconds)")
    ap.add_argument("--min-seconds", type=float, default=MIN_SECONDS,
                    help="a cupyssa measurement repeats its call for at least this long (1 s)")
    ap.add_argument("--quick", action="store_true", help="N=200, 1 repeat")
    ap.add_argument("--startup", action="store_true",
                    help="also time the cold (compiling) and warm start-up in new processes")
    ap.add_argument("--results", metavar="RESULTS.md", help="record the section in this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.trajectories, args.repeats = min(args.trajectories, 200), 1
    min_seconds = 0.0 if args.quick else args.min_seconds
    cmd = "python benchmarks/gradient_throughput.py" + "".join(
        " " + a for a in (sys.argv[1:] if argv is None else argv))
    N = args.trajectories

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    log("cupyssa ...")
    ours = run_cupyssa(N, args.seed, args.repeats, min_seconds, log)
    max_steps = int(1.15 * ours["max_events"]) + 1
    sx, sx_error = None, None
    if args.no_stochastix:
        sx_error = "skipped (--no-stochastix)"
    else:
        py, sx_error = find_stochastix_python(args.stochastix_python)
        if py:
            log(f"stochastix ({py}, max_steps {max_steps}) ...")
            sx = run_stochastix(py, N, args.seed, max_steps, args.repeats)
            if "error" in sx:
                sx_error, sx = "stochastix failed: " + sx["error"], None
            else:
                sx["python"] = py
    prof = None
    if not args.no_profile:
        log("profile ...")
        prof = profile_default(N, args.seed, args.repeats)
        sp = profile_default(N, args.seed, args.repeats, "grad score")
        prof["score_replay"], prof["score_steps"] = sp["replay"], sp["record_steps"]
        log("reverse sweep alone: generic, generated, generated lanes, hand-written, "
            "hand-written lanes ...")
        prof["sweeps"] = sweep_alone(N, args.seed, max(min_seconds, 0.2))
    rss = None if args.no_rss else cupyssa_traced_memory(N, args.seed)
    exact = None
    if not args.no_exact:
        log("exact gradient (FSP) ...")
        m = model()
        exact = cs.cme.fsp(m, t_eval=[T_END], sensitivities=True).d_mean()[0, m.network.species.index("B")]
    text = report(N, args.seed, ours, sx, sx_error, prof, rss, cmd, args.repeats, max_steps,
                  exact, min_seconds)
    if prof and "sweeps" in prof:
        sw = prof["sweeps"]
        rates = ", ".join(f"{name} {sw[name] / 1e6:.1f}" for name in
                          ("generic", "generated", "generated, lanes", "hand-written",
                           "hand-written, lanes")
                          if name in sw)
        text += (f"\n\nReverse sweep alone (st/fill, T = {TEMPERATURE}, the same recorded tapes of "
                 f"{sw['steps']} steps; mean per call over >= {max(min_seconds, 0.2):g} s, "
                 f"median of {sw['rounds']} rounds that time the sweeps in turn), "
                 f"Mevents/s: {rates} (the hand-written sweep for this model, "
                 "`benchmarks/handwritten.py`, returns cupyssa's per-trajectory gradients "
                 f"{'exactly' if sw['hand_exact'] else 'NOT exactly (a bug)'}, and its "
                 f"{sw['lanes']}-lane version "
                 f"{'exactly' if sw['lanes_exact'] else 'NOT exactly (a bug)'})")
        text += (f"; lanes ÷ hand-written {sw['hand-written, lanes'] / sw['hand-written']:.2f}")
        if "generated" in sw:
            text += (f"; generated ÷ hand-written {sw['generated'] / sw['hand-written']:.2f}, "
                     f"generic ÷ hand-written {sw['generic'] / sw['hand-written']:.2f}")
        if "generated, lanes" in sw:
            text += (f"; generated lanes ÷ generated {sw['generated, lanes'] / sw['generated']:.2f}, "
                     "÷ hand-written lanes "
                     f"{sw['generated, lanes'] / sw['hand-written, lanes']:.2f} (the generated lanes "
                     "sweep returns the generic kernel's gradients "
                     f"{'exactly' if sw['generated_lanes_exact'] else 'NOT exactly (a bug)'})")
        text += "."
    if args.startup:
        log("start-up (cold compile, then warm cache) ...")
        text += "\n\n" + "\n".join([
            "Start-up, each in a new process (cold: empty `NUMBA_CACHE_DIR`, everything compiles; "
            "warm: the cache the cold run wrote), seconds of wall time:", "",
            *startup_table(cold_and_warm(_STARTUP_CHILD), [
                ("import", "import s"), ("simulate", "first `simulate` s"),
                ("grad", "first `value_and_grad` (default) s"),
                ("grad_specialized", "then `value_and_grad(specialize=True)` s")])])
    text += "\n\nLoad average at the end " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + \
        f"; benchmark wall time {time.perf_counter() - t_start:.0f} s."
    print(text)
    if args.results:
        write_results(args.results, text)
        log(f"recorded in {args.results}")


if __name__ == "__main__":
    main()
