"""SSA throughput (issue 2): events per second of cupyssa's ``cpu`` backend, side by side in one
run, against a hand-written Numba loop specialised to each model and GillesPy2's C++ SSA solver.

Models (cupyssa's combinatorial mass action: ``2A -> B`` has ``k A(A-1)/2``):

(a) ``dimerization``: ``2A -> B`` (k1=1e-3), ``B -> 2A`` (k2=0.1), A0=1000, B0=0, T=50;
(b) ``vilar``: the Vilar-Kueh-Barkai-Leibler oscillator, 9 species, 16 reactions, T=200;
(c) ``schlogl``: a 1-D Schlögl chain of 16 sites with nearest-neighbour diffusion (c1=2.676,
    c2=0.040, c3=108.102, c4=37.881, d=8.2207, 50 per site), T=1.

All contenders observe the same grid (51 points on [0, T]). Rates are events per second of wall
time (best of ``--repeats`` interleaved runs, each sized to last at least ``--min-time`` seconds),
with events per CPU-second beside them (less sensitive to other processes on a shared machine).

* cupyssa: ``cupyssa.simulate(..., backend="cpu")``; events from ``SimulationResult.n_events``.
* hand-written: ``benchmarks/handwritten.py`` (its own xoshiro256+ RNG); events counted by the loop.
  Its final-time ensemble means must agree with cupyssa's: for every species,
  ``z = (m_h - m_c) / sqrt(s^2 (1/n_h + 1/n_c))`` (sample means ``m``, trajectory counts ``n``,
  ``s^2`` the sample variance of the two ensembles pooled: under the tested hypothesis, same law,
  it estimates the common variance) must satisfy ``|z| <= 5``; the same test on the events per
  trajectory. A fast wrong loop is useless.
* GillesPy2 ``SSACSolver`` (C++; one process, one thread): its mass action for ``2X`` is
  ``k X(X-1)`` without the 1/2, so each constant is divided by ``prod_i nu_i!``; reactions of total
  order > 2 (``3X -> 2X``) get the custom propensity ``(c2/6) X(X-1)(X-2)``. GillesPy2 does not
  report events: its events are **its trajectory count x cupyssa's mean events per trajectory**
  for the same model and horizon (measured in this run). Its means are checked with the same z-test.
* cupyssa's default on a long run (``--long-seconds``, models of at most 32 reactions): one
  ``cupyssa.simulate`` call with every option at its default (``specialize=None``), sized so that
  the generic kernel would take about ``--long-seconds`` (60 s), in a new process whose Numba and
  cupyssa caches (``NUMBA_CACHE_DIR``, ``CUPYSSA_CACHE_DIR``) are empty directories: every
  compilation happens inside the timed call (the shared kernel, then, once a pilot chunk has
  projected the rest of the run, the network-specific update). This is what the first long
  ensemble after installing cupyssa costs; its first trajectories must equal the generic
  kernel's of the same seed bit for bit.
* start-up: ``import cupyssa`` + ``simulate(dimerization, n_trajectories=1)`` in a fresh
  subprocess with ``NUMBA_CACHE_DIR`` an empty directory (cold compile), then again with the cache
  it populated (warm start-up).

Usage::

    python benchmarks/ssa_throughput.py                 # full run, ~5-10 minutes on 2 cores
    python benchmarks/ssa_throughput.py --quick         # smoke run, < 60 s
    python benchmarks/ssa_throughput.py --models dimerization,vilar --trajectories 4000
    python benchmarks/ssa_throughput.py --results benchmarks/RESULTS.md   # also record the tables
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numba  # noqa: E402

import cupyssa as cs  # noqa: E402
import handwritten as hw  # noqa: E402
from _report import cold_and_warm, empty_cache_env, startup_table, write_section  # noqa: E402

MODELS = {
    "dimerization": ("(a) reversible dimerization, 2 species, 2 reactions, T=50",
                     lambda: cs.models.dimerization(k1=1e-3, k2=0.1, A0=1000, B0=0), 50.0),
    "vilar": ("(b) Vilar-Kueh-Barkai-Leibler oscillator, 9 species, 16 reactions, T=200",
              cs.models.vilar_oscillator, 200.0),
    "schlogl": ("(c) 1-D Schlögl chain, 16 sites, 94 reactions, T=1",
                lambda: cs.models.schlogl_lattice(shape=(16,), c1=2.676, c2=0.040, c3=108.102,
                                                  c4=37.881, d=8.2207, x0=50), 1.0),
}
GOAL_HANDWRITTEN = {"dimerization": 0.7, "vilar": 0.7}  # cupyssa / hand-written
GOAL_GILLESPY2 = 10.0  # cupyssa / GillesPy2
Z_MAX = 5.0
SECTION = "## SSA throughput (issue 2)"


# -- measurement records ----------------------------------------------------------------------

@dataclass
class Runs:
    """Timed runs of one contender on one model."""

    label: str
    threads: int
    short: str = ""
    events_exact: bool = True  # False: events estimated from cupyssa's mean per trajectory
    n: list = field(default_factory=list)
    events: list = field(default_factory=list)
    wall: list = field(default_factory=list)
    cpu: list = field(default_factory=list)
    finals: list = field(default_factory=list)  # [n, S] final-time states, pooled for checks
    per_traj_events: list = field(default_factory=list)
    startup: str = ""
    error: str = ""
    check: str = ""
    passed: object = None  # None: not checked

    def add(self, n, events, wall, cpu, final=None, per_traj=None):
        self.n.append(int(n))
        self.events.append(float(events))
        self.wall.append(wall)
        self.cpu.append(cpu)
        if final is not None:
            self.finals.append(np.asarray(final, dtype=float))
        if per_traj is not None:
            self.per_traj_events.append(np.asarray(per_traj, dtype=float))

    def best(self):
        """(index of the best wall rate, wall rate, best CPU rate)."""
        rates = [e / w for e, w in zip(self.events, self.wall)]
        i = int(np.argmax(rates))
        return i, rates[i], max(e / c for e, c in zip(self.events, self.cpu))

    @property
    def ok(self):
        return bool(self.wall) and not self.error


def _cpu_now():
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def _timed(fn):
    c0, w0 = _cpu_now(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - w0, _cpu_now() - c0


def zscores(a, b):
    """Per-column two-sample z of equal laws: ``(mean_a - mean_b) / sqrt(s2 (1/n_a + 1/n_b))``
    with ``s2`` the sample variance (ddof 1) of ``a`` and ``b`` pooled. Under the hypothesis that
    both ensembles sample the same law, ``s2`` estimates their common variance; pooling keeps the
    statistic finite when a small ensemble happens to be constant in a rare binary species (the
    gene states of the Vilar model), where the unpooled ``var_a/n_a + var_b/n_b`` collapses."""
    a = np.asarray(a, dtype=float).reshape(len(a), -1)
    b = np.asarray(b, dtype=float).reshape(len(b), -1)
    num = a.mean(0) - b.mean(0)
    s2 = np.concatenate([a, b]).var(0, ddof=1)
    den = np.sqrt(s2 * (1.0 / len(a) + 1.0 / len(b)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num == 0, 0.0, np.inf))


def _size(rate, events_per_traj, min_time, threads, lo, hi):
    """Trajectories for a run of about ``1.2 min_time`` s, a multiple of ``threads``."""
    n = math.ceil(1.2 * min_time * rate / max(events_per_traj, 1.0))
    n = max(lo, min(hi, n))
    return int(threads * math.ceil(n / threads))


def _pilot(run, n0, min_wall=0.2, n_max=1 << 20, warm=True):
    """Double the trajectory count from ``n0`` until a run lasts ``min_wall`` s; returns
    (events per second, events per trajectory). ``run(n) -> (total events, wall s)``; one
    discarded call at ``n0`` first if ``warm``."""
    if warm:  # first-call costs (cache loads, thread pool start) are not throughput
        run(n0)
    n = n0
    while True:
        events, wall = run(n)
        if wall >= min_wall or n >= n_max:
            return events / wall, events / n
        n *= 2


# -- contenders -------------------------------------------------------------------------------

def cupyssa_run(model, t_eval, n, seed, specialize=False):
    res, wall, cpu = _timed(lambda: cs.simulate(model, t_eval=t_eval, n_trajectories=n, seed=seed,
                                                backend="cpu", specialize=specialize))
    return res, wall, cpu


def handwritten_inputs(name, model):
    species = hw.SPECIES[name] or model.network.species
    x0 = np.array([model.x0[s] for s in species], dtype=np.int64)
    params = np.array([model.params[p] for p in hw.PARAMS[name]], dtype=float)
    cols = [model.network.species.index(s) for s in species]  # cupyssa column of each
    return species, x0, params, cols


def handwritten_run(loop, t_eval, n, seed, params, x0):
    out = np.empty((n, len(t_eval), len(x0)), dtype=np.int32)
    n_events = np.empty(n, dtype=np.int64)
    _, wall, cpu = _timed(lambda: loop(n, t_eval, seed, params, x0, out, n_events))
    return out, n_events, wall, cpu


def gillespy2_model(model, t_eval, name):
    """The cupyssa model as a GillesPy2 model with the same propensities (see module doc)."""
    import gillespy2 as gp

    net = model.network
    g = gp.Model(name=f"bench_{name}")
    g.add_species([gp.Species(name=s, initial_value=int(model.x0[s]), mode="discrete")
                   for s in net.species])
    params = {p: float(model.params[p]) for p in net.parameters}
    g.add_parameter([gp.Parameter(name=p, expression=repr(v)) for p, v in params.items()])
    extra = {}
    reactions = []
    for i, rx in enumerate(net.reactions):
        law = rx.law
        if type(law).__name__ != "MassAction":
            raise ValueError(f"reaction {rx}: only mass action is converted")
        k = net.parameters[law.k]
        order = sum(rx.reactants.values())
        factor = math.prod(math.factorial(o) for o in rx.reactants.values())
        kname = k if factor == 1 else f"{k}_over_{factor}"
        if kname not in params and kname not in extra:
            extra[kname] = params[k] / factor
        kw = dict(name=f"r{i}", reactants=dict(rx.reactants), products=dict(rx.products))
        if order <= 2:
            kw["rate"] = kname  # GillesPy2 mass action: k X for 2X, k X Y, k X, k
        else:  # total order > 2 is not mass action in GillesPy2: the falling factorials
            terms = [f"{s}" if o == 1 else "*".join(f"({s}-{q})" if q else s for q in range(o))
                     for s, o in rx.reactants.items()]
            kw["propensity_function"] = "*".join([kname] + terms)
        reactions.append(gp.Reaction(**kw))
    g.add_parameter([gp.Parameter(name=p, expression=repr(v)) for p, v in extra.items()])
    g.add_reaction(reactions)
    g.timespan(np.asarray(t_eval, dtype=float))
    return g


def gillespy2_run(gmodel, solver, species, n, seed):
    def go():
        res = gmodel.run(solver=solver, number_of_trajectories=int(n), seed=int(seed))
        return np.array([[traj[s][-1] for s in species] for traj in res], dtype=float)
    return _timed(go)


def digest(res, n):
    """SHA-1 of the states and event counts of trajectories ``0 .. n-1`` of a result."""
    return hashlib.sha1(res.states[:n].tobytes() + res.n_events[:n].tobytes()).hexdigest()


# -- cupyssa's default on one long run of a network it has not seen -----------------------------

_LONG_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from ssa_throughput import MODELS, digest
import cupyssa as cs
from cupyssa.backends.cpu import is_compiled
name = sys.argv[2]
n, seed, points, n_check = map(int, sys.argv[3:7])
_, factory, t_end = MODELS[name]
model = factory()
w0, c0 = time.perf_counter(), time.process_time()
res = cs.simulate(model, t_eval=np.linspace(0.0, t_end, points), n_trajectories=n, seed=seed)
wall, cpu = time.perf_counter() - w0, time.process_time() - c0
print(json.dumps({"wall": wall, "cpu": cpu, "events": int(res.n_events.sum()),
                  "specialized": is_compiled(model.network, specialize=True),
                  "digest": digest(res, n_check)}))
"""


def long_default_run(name, n, seed, points, n_check):
    """``simulate`` with its defaults, ``n`` trajectories, in a new process with empty Numba and
    cupyssa caches (nothing compiled to load: the compiled families of the shared kernels carry
    the network's generated update inlined, so an empty ``CUPYSSA_CACHE_DIR`` alone would still
    find them in Numba's cache). Returns the child's record: wall and CPU seconds of the call,
    events, whether the specialized update ran, and the :func:`digest` of the first ``n_check``
    trajectories."""
    with tempfile.TemporaryDirectory() as fresh:
        out = subprocess.run([sys.executable, "-c", _LONG_CHILD, HERE, name, str(n), str(seed),
                              str(points), str(n_check)],
                             capture_output=True, text=True, env=empty_cache_env(fresh),
                             check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- start-up (cold compile / warm cache) -----------------------------------------------------

_CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import cupyssa as cs
t1 = time.perf_counter()
res = cs.simulate(cs.models.dimerization(), t_eval=np.linspace(0, 50, 51), n_trajectories=1,
                  seed=0, backend="cpu")
t2 = time.perf_counter()
res = cs.simulate(cs.models.dimerization(), t_eval=np.linspace(0, 50, 51), n_trajectories=1,
                  seed=0, backend="cpu", specialize=True)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_simulate": t2 - t1, "first_specialized": t3 - t2}))
"""


def startup_times():
    """Cold (empty NUMBA_CACHE_DIR) and warm (populated cache) start-up, each in a new process."""
    return cold_and_warm(_CHILD)


# -- machine description ----------------------------------------------------------------------

def machine():
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", lscpu).group(1).strip()
    except Exception:  # noqa: BLE001
        model = platform.processor() or "unknown"
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        nproc = str(os.cpu_count())
    try:
        rev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", HERE, "status", "--porcelain", "--", "../kernels",
                                "../cupyssa"], capture_output=True, text=True).stdout.strip()
        rev += " (working tree modified)" if dirty else ""
    except Exception:  # noqa: BLE001
        rev = "unknown"
    return {"nproc": nproc, "cpu": model, "python": platform.python_version(),
            "numba": numba.__version__, "numpy": np.__version__, "cupyssa": cs.__version__,
            "git": rev, "threads": numba.get_num_threads(),
            "threading_layer": numba.config.THREADING_LAYER}


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


# -- the benchmark ----------------------------------------------------------------------------

def bench_model(name, args, log):
    title, factory, t_end = MODELS[name]
    model = factory()
    t_eval = np.linspace(0.0, t_end, args.points)
    threads = numba.get_num_threads()
    seed0 = args.seed
    log(f"\n== {name}: {title}")

    # cupyssa: compile / cache load, then a pilot of one trajectory per thread
    c = Runs("cupyssa `cpu`", threads, "cupyssa")
    _, w, _ = _timed(lambda: cs.simulate(model, t_eval=t_eval[:2], n_trajectories=1, seed=0))
    c.startup = f"first call {w:.2f} s"
    def c_pilot(n):
        res, w, _ = cupyssa_run(model, t_eval, n, seed0 + 999)
        return res.n_events.sum(), w
    rate, ev_per_traj = _pilot(c_pilot, threads, args.min_time / 10)
    n_c = args.trajectories or _size(rate, ev_per_traj, args.min_time, threads, threads,
                                     args.max_trajectories)
    log(f"   cupyssa pilot: {ev_per_traj:.4g} events/trajectory, {rate / 1e6:.2f} Mevents/s "
        f"-> {n_c} trajectories per run")

    # cupyssa with the network-specific event update (cupyssa.specialize): compile, same size
    sp = Runs("cupyssa `cpu`, specialize=True", threads, "cupyssa/specialized")
    try:
        _, w, _ = _timed(lambda: cs.simulate(model, t_eval=t_eval[:2], n_trajectories=1, seed=0,
                                             specialize=True))
        sp.startup = f"first call {w:.2f} s (compile, or disk-cache load)"
    except cs.NetworkError as exc:
        sp.error = f"not available: {exc}"

    # hand-written loop: compile, pilot
    h = Runs("hand-written Numba", threads, "hand-written")
    loop = hw.LOOPS[name]
    species, x0, params, cols = handwritten_inputs(name, model)
    _, _, w, _ = handwritten_run(loop, t_eval[:2], 1, 0, params, x0)
    h.startup = f"compile {w:.2f} s"
    def h_pilot(n):
        _, ne, w, _ = handwritten_run(loop, t_eval, n, seed0 + 999, params, x0)
        return ne.sum(), w
    h_rate, h_ev = _pilot(h_pilot, threads, args.min_time / 10)
    n_h = args.trajectories or _size(h_rate, h_ev, args.min_time, threads, threads,
                                     args.max_trajectories)
    log(f"   hand-written pilot: {h_rate / 1e6:.2f} Mevents/s -> {n_h} trajectories per run")

    # profiling variant (dimerization): hand-written loop with cupyssa's Philox draws
    p = None
    if name == "dimerization":
        p = Runs("hand-written Numba, cupyssa's Philox RNG", threads, "hand-written/Philox")
        _, _, w, _ = handwritten_run(hw.dimerization_philox, t_eval[:2], 1, 0, params, x0)
        p.startup = f"compile {w:.2f} s"

        def p_pilot(n):
            _, ne, w, _ = handwritten_run(hw.dimerization_philox, t_eval, n, seed0 + 999, params, x0)
            return ne.sum(), w
        p_rate, p_ev = _pilot(p_pilot, threads, args.min_time / 10)
        n_p = args.trajectories or _size(p_rate, p_ev, args.min_time, threads, threads,
                                         args.max_trajectories)

    # GillesPy2: build the C++ solver, pilot
    g = Runs("GillesPy2 `SSACSolver` (C++)", 1, "GillesPy2", events_exact=False)
    gmodel = solver = None
    n_g = 0
    if args.no_gillespy2:
        g.error = "skipped (--no-gillespy2)"
    else:
        try:
            # GillesPy2 runs SCons as `resolve(sys.executable) -m SCons` when no `scons` is on
            # PATH: the resolved path of a virtual environment's python is the base interpreter,
            # which lacks the environment's SCons. Its `scons` script sits beside this python.
            os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
            from gillespy2 import SSACSolver
            gmodel = gillespy2_model(model, t_eval, name)
            solver, w, _ = _timed(lambda: SSACSolver(model=gmodel))
            g.startup = f"C++ build {w:.2f} s"
            def g_pilot(n):
                _, w, _ = gillespy2_run(gmodel, solver, model.network.species, n, seed0 + 999)
                return n * ev_per_traj, w
            g_rate, _ = _pilot(g_pilot, max(1, math.ceil(0.2 * 2e6 / ev_per_traj)),
                               args.min_time / 10, warm=False)
            n_g = args.gillespy2_trajectories or _size(g_rate, ev_per_traj, args.min_time, 1, 1,
                                                       args.max_trajectories)
            log(f"   GillesPy2 pilot: {g_rate / 1e6:.2f} Mevents/s (estimated) "
                f"-> {n_g} trajectories per run")
        except Exception as exc:  # noqa: BLE001
            g.error = f"GillesPy2 unavailable or failed: {type(exc).__name__}: {exc}"
            log("   " + g.error)

    # timed runs, interleaved
    for rep in range(args.repeats):
        seed = seed0 + rep
        res, w, cpu = cupyssa_run(model, t_eval, n_c, seed)
        c.add(n_c, res.n_events.sum(), w, cpu, res.states[:, -1, :], res.n_events)
        if rep == 0:
            generic_digest = digest(res, n_c)
        if sp.error:
            res_sp = None
        else:
            res_sp, w, cpu = cupyssa_run(model, t_eval, n_c, seed, specialize=True)
            sp.add(n_c, res_sp.n_events.sum(), w, cpu)
        if rep == 0 and res_sp is not None:
            sp.check = ("same trajectories as the generic kernel, bit for bit"
                        if np.array_equal(res_sp.states, res.states) else
                        "DIFFERS from the generic kernel")
        out, ne, w, cpu = handwritten_run(loop, t_eval, n_h, seed, params, x0)
        final = np.empty((n_h, len(cols)))
        final[:, cols] = out[:, -1, :]
        h.add(n_h, ne.sum(), w, cpu, final, ne)
        if p is not None:
            out, ne, w, cpu = handwritten_run(hw.dimerization_philox, t_eval, n_p, seed, params, x0)
            p.add(n_p, ne.sum(), w, cpu)
            if rep == 0:
                m = min(n_p, n_c)
                same = (np.array_equal(out[:m], res.states[:m])
                        and np.array_equal(ne[:m], res.n_events[:m]))
                p.check = ("reproduces cupyssa's trajectories bit for bit" if same
                           else "DIFFERS from cupyssa's trajectories")
        if gmodel is not None and not g.error:
            try:
                final, w, cpu = gillespy2_run(gmodel, solver, model.network.species, n_g, seed)
                g.add(n_g, n_g * ev_per_traj, w, cpu, final)
            except Exception as exc:  # noqa: BLE001
                g.error = f"GillesPy2 run failed: {type(exc).__name__}: {exc}"
                log("   " + g.error)
        log(f"   repeat {rep + 1}/{args.repeats}: " + ", ".join(
            f"{r.short} {r.events[-1] / r.wall[-1] / 1e6:.2f}"
            for r in (c, sp, h, p, g) if r is not None and len(r.wall) == rep + 1) + " Mevents/s")

    # the default call on one long run, sized from the generic kernel's best rate
    d = None
    if args.long_seconds > 0 and not sp.error:
        d = Runs("cupyssa `cpu`, defaults, one long run, empty caches", threads,
                 "cupyssa/default")
        _, rate, _ = c.best()
        ev = np.concatenate(c.per_traj_events).mean()
        n_d = _size(rate, ev, args.long_seconds / 1.2, threads, n_c, 1 << 40)
        log(f"   default call, {n_d} trajectories (generic kernel ~{args.long_seconds:g} s) ...")
        rec = long_default_run(name, n_d, seed0, args.points, n_c)
        d.add(n_d, rec["events"], rec["wall"], rec["cpu"])
        d.startup = ("every compilation inside the call; the network-specific update chosen"
                     if rec["specialized"] else
                     "every compilation inside the call; the generic kernel throughout")
        d.check = (f"its first {n_c} trajectories equal the generic kernel's, bit for bit"
                   if rec["digest"] == generic_digest else
                   "DIFFERS from the generic kernel's trajectories")
        d.passed = rec["digest"] == generic_digest
        log(f"   default call: {rec['events'] / rec['wall'] / 1e6:.2f} Mevents/s over "
            f"{rec['wall']:.1f} s; {d.startup}")

    # untimed top-up runs so that every check pools at least --check-trajectories trajectories
    need = args.check_trajectories
    top = 0
    while sum(c.n) + top < need:
        m = need - sum(c.n) - top
        res = cs.simulate(model, t_eval=t_eval, n_trajectories=m, seed=seed0 + 100 + top)
        c.finals.append(res.states[:, -1, :].astype(float))
        c.per_traj_events.append(res.n_events.astype(float))
        top += m
    if sum(h.n) < need:
        m = need - sum(h.n)
        out, ne, _, _ = handwritten_run(loop, t_eval, m, seed0 + 100, params, x0)
        final = np.empty((m, len(cols)))
        final[:, cols] = out[:, -1, :]
        h.finals.append(final)
        h.per_traj_events.append(ne.astype(float))
    if g.ok and sum(g.n) < need:
        try:
            final, _, _ = gillespy2_run(gmodel, solver, model.network.species, need - sum(g.n),
                                        seed0 + 100)
            g.finals.append(final)
        except Exception as exc:  # noqa: BLE001
            g.error = f"GillesPy2 run failed: {type(exc).__name__}: {exc}"

    # GillesPy2's events are estimated from cupyssa's mean events per trajectory over all runs
    mean_ev = np.concatenate(c.per_traj_events).mean()
    g.events = [n * mean_ev for n in g.n]

    # correctness: final-time means (and events per trajectory) against cupyssa's
    ref = np.concatenate(c.finals)
    hf = np.concatenate(h.finals)
    zh = zscores(hf, ref)
    ze = zscores(np.concatenate(h.per_traj_events)[:, None], np.concatenate(c.per_traj_events)[:, None])
    h.check = (f"max|z| = {np.max(np.abs(zh)):.2f} over {len(zh)} species means, "
               f"|z| = {abs(ze[0]):.2f} events/trajectory (n = {len(hf)} vs {len(ref)})")
    h.passed = bool(np.max(np.abs(zh)) <= Z_MAX and abs(ze[0]) <= Z_MAX)
    if g.finals:
        gf = np.concatenate(g.finals)
        zg = zscores(gf, ref)
        g.check = (f"max|z| = {np.max(np.abs(zg)):.2f} over {len(zg)} species means "
                   f"(n = {len(gf)} vs {len(ref)})")
        g.passed = bool(np.max(np.abs(zg)) <= Z_MAX)
    c.check = f"{mean_ev:.6g} events/trajectory"
    log(f"   check hand-written: {h.check} -> {'ok' if h.passed else 'FAILED'}")
    if g.finals:
        log(f"   check GillesPy2: {g.check} -> {'ok' if g.passed else 'FAILED'}")
    return {"name": name, "title": title,
            "runs": [r for r in (c, sp, d, h, p, g) if r is not None], "mean_events": mean_ev}


def table(result):
    runs = result["runs"]
    c, sp = runs[0], runs[1]
    _, c_rate, c_cpu = c.best()
    sp_rate = sp.best()[1] if sp.ok else 0.0
    best = max(c_rate, sp_rate)  # goals are judged with the faster cupyssa configuration
    lines = [f"**{result['title']}** — cupyssa mean {result['mean_events']:.4g} events/trajectory",
             "",
             "| contender | threads | trajectories/run | Mevents/s (wall) | Mevents/CPU-s "
             "| cupyssa ÷ this (wall) | cupyssa specialize=True ÷ this | goal (faster cupyssa) "
             "| start-up | check |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if not r.ok:
            lines.append(f"| {r.label} | {r.threads} | – | – | – | – | – | – | {r.startup or '–'} "
                         f"| {r.error} |")
            continue
        _, rate, cpu_rate = r.best()
        ratio = c_rate / rate
        ratio_sp = sp_rate / rate
        ratio_best = best / rate
        goal = ""
        if r.label.startswith("hand-written Numba") and "Philox" not in r.label:
            g = GOAL_HANDWRITTEN.get(result["name"])
            if g:
                goal = f"cupyssa ≥ {g}× this: {'met' if ratio_best >= g else 'NOT met'}"
        elif r.label.startswith("GillesPy2"):
            goal = (f"cupyssa ≥ {GOAL_GILLESPY2:g}× this: "
                    f"{'met' if ratio_best >= GOAL_GILLESPY2 else 'NOT met'}")
        check = r.check
        if r.passed is not None:
            check += " ✓" if r.passed else " ✗ FAILED"
        est = "" if r.events_exact else " (est.)"
        lines.append(f"| {r.label} | {r.threads} | {r.n[0]} | {rate / 1e6:.2f}{est} "
                     f"| {cpu_rate / 1e6:.2f}{est} | {'1' if r is c else f'{ratio:.3g}'} "
                     f"| {'1' if r is sp else (f'{ratio_sp:.3g}' if sp.ok else '–')} | {goal} "
                     f"| {r.startup} | {check} |")
    return "\n".join(lines)


def write_results(path, text):
    """Replace (or append) this benchmark's section of RESULTS.md, leaving the others alone."""
    write_section(path, SECTION, text)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="dimerization,vilar,schlogl",
                    help="comma-separated subset of: " + ", ".join(MODELS))
    ap.add_argument("--trajectories", type=int, default=None,
                    help="trajectories per run for cupyssa and the hand-written loops "
                         "(default: sized so that each run lasts --min-time)")
    ap.add_argument("--gillespy2-trajectories", type=int, default=None,
                    help="trajectories per GillesPy2 run (default: sized by --min-time)")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds per timed run (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timed runs; best is kept")
    ap.add_argument("--check-trajectories", type=int, default=32,
                    help="trajectories per contender pooled by the correctness checks (untimed "
                         "runs are added when the timed ones hold fewer; default 32)")
    ap.add_argument("--max-trajectories", type=int, default=200_000)
    ap.add_argument("--points", type=int, default=51, help="observation grid points on [0, T]")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--no-gillespy2", action="store_true", help="skip GillesPy2")
    ap.add_argument("--no-startup", action="store_true", help="skip the cold/warm start-up runs")
    ap.add_argument("--long-seconds", type=float, default=60.0,
                    help="size of the default call's long run, in seconds of the generic kernel "
                         "(0 skips it)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (< 60 s): --min-time 0.25 --repeats 1 "
                         "--check-trajectories 4 (checks indicative only)")
    ap.add_argument("--results", default=None,
                    help="write the tables into this RESULTS.md under '" + SECTION + "'")
    args = ap.parse_args(argv)
    if args.quick:
        args.min_time = min(args.min_time, 0.25)
        args.repeats = 1
        args.check_trajectories = min(args.check_trajectories, 4)
        args.long_seconds = min(args.long_seconds, 2.0)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        ap.error(f"unknown models {unknown}; choose from {list(MODELS)}")

    t_start = time.perf_counter()
    mach = machine()
    cmd = "python " + " ".join([os.path.relpath(__file__, os.path.dirname(HERE))] +
                               (sys.argv[1:] if argv is None else list(argv)))
    log = print
    load0 = loadavg()
    log(f"SSA throughput (issue 2) — {datetime.date.today().isoformat()}")
    log(f"machine: nproc={mach['nproc']}, CPU {mach['cpu']}; Numba {mach['numba']} "
        f"({mach['threads']} threads, layer {mach['threading_layer']}), NumPy {mach['numpy']}, "
        f"Python {mach['python']}; cupyssa {mach['cupyssa']} at {mach['git']}; load average {load0}")
    log(f"hand-written RNG: {hw.RNG_DESCRIPTION}")

    startup = None
    if not args.no_startup:
        log("\n== start-up: import cupyssa + simulate(dimerization, n_trajectories=1) in a new process")
        startup = startup_times()
        for kind in ("cold", "warm"):
            log(f"   {kind}: {startup[kind]}")

    results = [bench_model(name, args, log) for name in names]
    load1 = loadavg()
    elapsed = time.perf_counter() - t_start

    md = [SECTION, "",
          f"Date {datetime.date.today().isoformat()}. Machine: `nproc` = {mach['nproc']}, CPU "
          f"`{mach['cpu']}` (lscpu); Python {mach['python']}, NumPy {mach['numpy']}, Numba "
          f"{mach['numba']} with {mach['threads']} threads; cupyssa {mach['cupyssa']} at git "
          f"{mach['git']}. Load average (1/5/15 min) {load0} at the start, {load1} at the end.",
          "", f"Command: `{cmd}` ({elapsed:.0f} s).", "",
          f"Rates are the best of {args.repeats} interleaved run(s) per contender, each sized to "
          f"≥ {args.min_time:g} s; 51 observation points; cupyssa/hand-written use all "
          f"{mach['threads']} threads (prange over trajectories), GillesPy2 one process. "
          "GillesPy2 reports no event counts: its events (est.) are its trajectories × cupyssa's "
          "mean events per trajectory. Hand-written RNG: " + hw.RNG_DESCRIPTION + ". Checks: "
          "z = (m_x - m_cupyssa) / sqrt(s² (1/n_x + 1/n_cupyssa)), s² the sample variance of both "
          "ensembles pooled, on the final-time mean "
          f"of every species (and of the events per trajectory), pass if |z| ≤ {Z_MAX:g}; the "
          "timed runs are pooled, topped up by untimed ones to at least "
          f"{args.check_trajectories} trajectories per contender. A load average above `nproc` means "
          "other processes shared the CPUs: wall rates are then depressed by about that factor, "
          "while the events per CPU-second (summed over threads, i.e. per core) and the ratios "
          "between contenders run side by side are the comparable figures.", ""]
    if startup:
        md += ["Start-up (`import cupyssa` + `simulate(dimerization, n_trajectories=1)`, then the "
               "same with `specialize=True`, in a new process; cold: empty `NUMBA_CACHE_DIR`, "
               "warm: the cache the cold run wrote):", "",
               *startup_table(startup, [("import", "import s"),
                                        ("first_simulate", "first simulate s"),
                                        ("first_specialized", "first `specialize=True` simulate s")])]
        md.append("")
    for r in results:
        md += [table(r), ""]
    text = "\n".join(md)
    print("\n" + text)
    if args.results:
        write_results(args.results, text)
        print(f"\n(written to {args.results})")
    failed = [r["name"] for r in results for x in r["runs"] if x.passed is False]
    if failed:
        print(f"\nCORRECTNESS CHECK FAILED for: {sorted(set(failed))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
