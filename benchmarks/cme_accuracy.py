"""Accuracy of the VAN solver (cupyssa.cme.solve) against exact and SSA references.

Parts (``--part``):

* ``rare``: 1-site Schlögl, P(x <= 15) starting from 50 at early times where it is 1e-7..1e-3;
  VAN (box estimator, exact for one species) vs the exact CME, and the hits of plain sampling
  with the same budget;
* ``toggle``: toggle switch (25,600 states) Px, Py marginals at t = 1, 5, 20 (Hellinger);
* ``schlogl2``: 2-site Schlögl (7,225 states) marginals at t = 0.1, 0.5, 1 (Hellinger);
* ``mapk``: MAPK cascade means and marginals of the monitored species at t = 100 vs SSA, and on
  the way at t = 10, 25, 50 (``--full``; the quick size: t = 2, 5, 10);
* ``schlogl3x3``: 2-D Schlögl 3x3 single-site marginals at t = 1 vs SSA, and on the way at
  t = 0.25, 0.5 (``--full``; the quick size: t = 0.05).

The SSA comparisons report the intermediate times so that a run that misses the final target
shows when it left the reference.

The exact references are the CME of the chain in the VAN's box with its reflecting rule
(:func:`cupyssa.cme.box.box_cme`, the same state space as FSP with bounds ``caps - 1``); the
absorbing FSP's lost mass is printed where it is cheap. For the Schlögl model with cap 85 the
absorbing FSP loses 29 % of the mass by t = 1 (the flux through x = 84 is large), so it is not a
usable reference there, while the reflecting box chain differs from the untruncated one (FSP
with bound 300, lost < 1e-10) by Hellinger <= 0.008 (1 site, t <= 1).

Every solve reports the Hellinger distances as soon as each check time is reached (so a run
stopped by ``--budget`` still reports the times it reached). With ``--checkpoint PATH`` the
solve saves its parameters every ``--checkpoint-every`` steps and at a ``--budget`` stop, and
the same command run again resumes from them: the 3x3 lattice and MAPK at full size take hours
per attempt on a 2-core CPU.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/cme_accuracy.py --part rare toggle ... [--full]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time

import numpy as np

import cupyssa
import cupyssa.models as models
from cupyssa.cme import NADE, fsp, solve
from cupyssa.cme.autoregressive import DEFAULT_ACTIVATION
from cupyssa.cme.box import box_cme
from cupyssa.kernels.cpu import source_digest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import hellinger  # noqa: E402


def empirical_marginal(x, cap):
    """Histogram of the counts ``x`` as probabilities of ``0..max(cap, max(x) + 1) - 1``."""
    return np.bincount(x, minlength=int(cap)) / len(x)


def model_marginal(ar, i, n=10_000, seed=0):
    """Rao-Blackwellized marginal of species ``i`` of an autoregressive model."""
    x = ar.sample(n, np.random.default_rng(seed))[0]
    p = ar.conditionals(x)[:, i, :ar.caps[i]].mean(axis=0)
    return p / p.sum()


class Reporter:
    """A ``solve`` callback: at each check time prints ``report(model, k)``; stops at the budget."""

    class OutOfTime(Exception):
        pass

    #: wall seconds between progress lines (long runs: hours per report)
    every = 600.0

    def __init__(self, t_eval, report, budget):
        self.t_eval, self.report, self.k = t_eval, report, 1
        self.t, self.step = float(t_eval[0]), 0
        self.start = time.perf_counter()
        self.deadline = self.start + budget
        self.next_line = self.start + self.every

    def __call__(self, step, t, model):
        if self.step == 0 and step > 1:  # resumed from a checkpoint: earlier models are gone
            while self.k < len(self.t_eval) and t > self.t_eval[self.k] + 1e-12:
                print(f"  t = {self.t_eval[self.k]} was passed before the checkpoint this run "
                      f"resumed from (step {step}): not reported", flush=True)
                self.k += 1
        self.t, self.step = t, step
        while self.k < len(self.t_eval) and t >= self.t_eval[self.k] - 1e-12:
            print(f"  [{time.perf_counter() - self.start:7.1f} s, step {step}] t = "
                  f"{self.t_eval[self.k]}: {self.report(model, self.k)}", flush=True)
            self.k += 1
        now = time.perf_counter()
        if now > self.next_line:
            print(f"  [{now - self.start:7.1f} s, step {step}] t = {t:.4g}", flush=True)
            self.next_line = now + self.every
        if now > self.deadline:
            raise Reporter.OutOfTime


def run_reported(m, t_eval, report, budget, **kw):
    rep = Reporter(t_eval, report, budget)
    try:
        sol = solve(m, t_eval=t_eval, callback=rep, **kw)
    except Reporter.OutOfTime:
        print(f"  stopped at the budget of {budget:.0f} s at t = {rep.t:.4g} (step {rep.step}; "
              f"t_eval[{rep.k}] = {t_eval[min(rep.k, len(t_eval) - 1)]} not reached)")
        return None
    st = sol.stats
    checked = (f"; step check: median error {st['step_error_median']:.3g}, {st['n_rejected']} "
               f"attempts rejected, {st['n_futile_halvings']} futile halvings, "
               f"{st['n_unresolved']} unresolved" if "step_error_median" in st else "")
    print(f"  done: {time.perf_counter() - rep.start:.1f} s, {st['steps']} steps{checked}")
    return sol


def rare(args):
    m = models.schlogl_paper((1,))
    times = np.array([0.0, 0.01, 0.012, 0.014, 0.016, 0.02, 0.03])
    ref = box_cme(m, times)
    low = ref.states[:, 0] <= 15
    # one species: the NADE's hidden layer sees no input, the 85 output biases are the free
    # parameters (hidden=1 keeps P = 172 < N, so the Fisher solve is a small P x P Cholesky)
    kw = dict(method="tdvp", hidden=1, n_samples=args.rare_samples, dt=1e-3, seed=0,
              sampling=args.rare_sampling, alpha=0.5 if args.rare_sampling == "tempered" else 0.0,
              eps=args.rare_eps, courant=args.rare_courant,
              order=args.rare_order)
    print(f"\n## rare event: 1-site Schlögl, P(x <= 15) from x0 = 50 ({kw})")
    print("| t | exact | VAN | rel. error | VAN stderr | plain sampling hits / 10^4 |")
    print("|---|---|---|---|---|---|")
    from cupyssa.cme.sampling import region_probability

    def report(ar, k):
        exact = ref.p[k][low].sum()
        rng = np.random.default_rng(k)
        est = region_probability(ar, {0: (0, 15)}, 10_000, rng)
        plain = region_probability(ar, {0: (0, 15)}, 10_000, rng, method="plain")
        return (f"| {times[k]} | {exact:.3e} | {est.probability:.3e} | "
                f"{abs(est.probability / exact - 1):.3f} | {est.stderr:.1e} | {plain.n_hits} |")
    run_reported(m, times, report, args.budget, **kw)


def _vs_exact(name, m, times, species, target, args, **kw):
    t_eval = np.r_[0.0, times]
    ref = box_cme(m, t_eval)
    idx = [m.network.species.index(s) for s in species]
    print(f"\n## {name} vs the exact box CME ({len(ref.states)} states), target Hellinger <= "
          f"{target}; solve({kw})")

    def report(ar, k):
        d = {s: round(hellinger(model_marginal(ar, i), ref.marginal(s, k)), 4)
             for s, i in zip(species, idx)}
        return f"Hellinger {d} {'(target met)' if max(d.values()) <= target else ''}"
    return run_reported(m, t_eval, report, args.budget, **kw)


def toggle(args):
    m = models.toggle_switch()
    times = [1.0, 5.0, 20.0] if args.full else [1.0]
    ab = fsp(m, t_eval=np.r_[0.0, times], bounds={s: c - 1 for s, c in m.metadata["caps"].items()})
    print(f"absorbing FSP lost mass at {times}: {ab.lost[1:]}")
    _vs_exact("toggle switch", m, times, ("Px", "Py"), 0.02, args, method=args.method,
              hidden=args.hidden or 32, n_samples=args.samples or 1000, dt=args.dt or 0.02,
              eps=args.eps, alpha=args.alpha, init_width=args.init_width, seed=args.seed,
              step_check=args.step_check, **_start_and_integrator(args))


def _covariances_option(names):
    """``solve(project_covariances=...)`` of ``--project-covariances``: False when absent, True
    (the reacting pairs) when given no pair, else the ``A:B`` pairs named."""
    if names is None:
        return False
    return [tuple(pair.split(":")) for pair in names] or True


def _start_and_integrator(args):
    """The solve options shared by the toggle, Schlögl and MAPK parts: the integrator, the start,
    the checkpoint a long run saves and resumes from, the Fisher damping when given, whether
    the tempered samples are reweighted to the model's own measure, and the network's inputs,
    activation and output weights."""
    damping = {} if args.damping is None else {"damping": args.damping}
    return dict(integrator=args.integrator, init_time=args.init_time, init_law=args.init_law,
                checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                reweight=args.reweight, frontier=args.frontier,
                project_moments=args.project_moments,
                project_covariances=_covariances_option(args.project_covariances),
                activation=args.activation,
                output_degree=args.output_degree, center_outputs=args.center_outputs,
                inputs=args.inputs, **damping)


def schlogl2(args):
    m = models.schlogl_paper((2,))
    times = [0.1, 0.5, 1.0] if args.full else [0.1]
    _vs_exact("2-site Schlögl", m, times, ("X0", "X1"), 0.015, args, method=args.method,
              hidden=args.hidden or 32, n_samples=args.samples or 800, dt=args.dt or 1e-3,
              eps=args.eps, alpha=args.alpha, init_width=args.init_width, seed=args.seed,
              step_check=args.step_check, **_start_and_integrator(args))


def ssa_states(m, times, n_traj, cache_dir=None, seed=0):
    """The states at ``times`` of ``n_traj`` SSA trajectories, ``[n_traj, len(times), S]``.

    With ``cache_dir`` they are kept in a ``.npz`` file named by a digest of what determines them
    (the network's reactions and laws, ``x0``, parameters, ``times``, ``n_traj``, the seed) and of
    the forward's kernel sources, so a rerun of the benchmark loads them (the 3x3 lattice's 10^5
    took 698 s on one thread) and a change of either recomputes them. The reverse sweep's source
    (``kernels/backward.py``) and the CME models' softmax and output products
    (``kernels/softmax.py``, ``kernels/blockwise.py``) are left out of the digest: they do not
    enter ``simulate``, and keying on the sweep made every gradient edit discard a 13-minute
    reference."""
    times = [float(t) for t in times]
    key = repr((str(m.network), sorted(m.x0.items()), sorted(m.params.items()), times, n_traj,
                seed, source_digest(exclude=("backward.py", "softmax.py", "blockwise.py"))))
    path = None
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        path = os.path.join(cache_dir, f"ssa-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz")
        if os.path.exists(path):
            with np.load(path) as f:
                if str(f["key"]) == key:
                    return f["states"]
    states = cupyssa.simulate(m, t_eval=[0.0, *times], n_trajectories=n_traj, seed=seed).states[:, 1:]
    if path:
        np.savez(path, states=states, key=key)
    return states


def _vs_ssa(name, m, times, species, args, **kw):
    """The VAN's marginals of ``species`` against SSA's at each of ``times`` (the last one is the
    target's)."""
    n_traj = 100_000 if args.full else 10_000
    t_eval = np.r_[0.0, times]
    start = time.perf_counter()
    ssa = ssa_states(m, times, n_traj, args.ssa_cache)
    print(f"\n## {name} vs SSA ({n_traj} trajectories, {time.perf_counter() - start:.1f} s"
          f"{', cache ' + args.ssa_cache if args.ssa_cache else ''}) at t = {times}; solve({kw})")
    caps = m.metadata["caps"]
    idx = [m.network.species.index(s) for s in species]
    for s, i in zip(species, idx):
        x = ssa[:, -1, i]
        print(f"  SSA {s} at t = {times[-1]}: mean {x.mean():.3f} sd {x.std():.3f} max {x.max()} "
              f"(cap {caps[s]})")

    first = 0  # t_eval[first] is the solve's start
    if args.widen_from:
        first, kw = _widened_start(m, t_eval, args, kw)

    def report(ar, k):
        k += first
        out = []
        for s, i in zip(species, idx):
            x = ssa[:, k - 1, i]
            emp = empirical_marginal(x, caps[s])
            p = model_marginal(ar, i)
            mean = np.arange(len(p)) @ p
            rel = f"{abs(mean / x.mean() - 1):.3f}" if x.mean() > 0 else "-"  # SSA mean 0: none
            out.append(f"{s}: mean SSA {x.mean():.3f} VAN {mean:.3f} (rel {rel}), "
                       f"Hellinger {hellinger(p, emp):.4f}")
        return "; ".join(out)
    return run_reported(m, t_eval[first:], report, args.budget, **kw)


def _widened_start(m, t_eval, args, kw):
    """``(k, kw)``: the solve of ``--widen-from CK`` starts at ``t_eval[k]`` (the checkpoint's
    time ``--widen-at``) from the law CK holds there, moved into a NADE of ``--hidden`` units
    (:meth:`NADE.widened`, the same law); ``kw`` without the options of a start from ``x0``."""
    caps = np.array([m.metadata["caps"][s] for s in m.network.species])
    narrow, t0 = checkpoint_law(args.widen_from, caps, at=args.widen_at,
                                output_degree=args.output_degree)
    at = np.flatnonzero(np.isclose(t_eval, t0))
    if not at.size:
        raise SystemExit(f"--widen-from: the checkpoint's t = {t0} is not one of t_eval "
                         f"{t_eval.tolist()}")
    wide = narrow.widened(kw["hidden"], rng=np.random.default_rng(args.seed))
    print(f"  start: the law of {args.widen_from} at t = {t0} (hidden {narrow.H}), widened to "
          f"hidden {wide.H} ({wide.n_params} parameters)")
    dropped = ("init_time", "init_law", "inputs", "hidden", "activation", "output_degree")
    return int(at[0]), {
        **{k: v for k, v in kw.items() if k not in dropped}, "model": wide}


def checkpoint_law(path, caps, at=None, at_time=None, output_degree=None):
    """``(NADE, t)``: the law that the checkpoint of ``solve(checkpoint=path)`` holds at
    ``t_eval[at]``, or at its time ``at_time``, or (neither) its latest parameters, at the
    time the run stopped; in the network the solve defined, as the checkpoint records it.

    Checkpoints record the activation and inputs since session 27 (older ones: the defaults a
    network is built with), the width and output degree since session 32 (older ones: the
    width read off the parameter count for ``output_degree``, which they do not record).

    Parameters
    ----------
    path : the ``.npz`` file
    caps : [S] the model's caps
    at : index into the checkpoint's ``t_eval``; at_time : one of its values
    output_degree : the network's ``output_degree`` where the checkpoint does not record it
    """
    caps = np.asarray(caps)
    with np.load(path) as z:
        t_eval = [float(t) for t in z["t_eval"]]
        if at_time is not None:
            if at_time not in t_eval:
                raise SystemExit(f"{path}: t = {at_time} is not one of its times {t_eval}")
            at = t_eval.index(at_time)
        theta = z["theta"] if at is None else z["thetas"][at]
        t = float(z["t"]) if at is None else t_eval[at]
        if at is not None and not np.any(theta):  # rows of times a run has not reached
            raise SystemExit(f"{path} holds no law at t = {t} (its run stopped at t = "
                             f"{float(z['t']):.4g})")
        activation = str(z["activation"]) if "activation" in z.files else DEFAULT_ACTIVATION
        inputs = (z["input_center"], z["input_scale"]) if "input_center" in z.files else None
        width = int(z["hidden"]) if "hidden" in z.files else None
        if "output_degree" in z.files:
            output_degree = int(z["output_degree"]) or None
    if width is None:  # W [H, S], c [H] and output rows (H each), then one bias per value
        per_unit = NADE(caps, hidden=1, output_degree=output_degree).n_params - int(caps.sum())
        width, rest = divmod(len(theta) - int(caps.sum()), per_unit)
        if rest or width < 1:
            raise SystemExit(f"{path}: {len(theta)} parameters are no NADE of output_degree "
                             f"{output_degree} on these caps")
    law = NADE(caps, hidden=width, activation=activation, output_degree=output_degree)
    if inputs is not None:
        law.standardize_inputs(*inputs)
    law.set_params(theta)
    return law, t


def mapk(args):
    m = models.mapk_cascade()
    times = [10.0, 25.0, 50.0, 100.0] if args.full else [2.0, 5.0, 10.0]
    _vs_ssa("MAPK cascade", m, times, args.species or m.metadata["monitored"], args,
            method=args.method, hidden=args.hidden or 32, n_samples=args.samples or 800,
            dt=args.dt or 0.05, eps=args.eps, alpha=args.alpha, seed=args.seed,
            step_check=args.step_check, **_start_and_integrator(args))


def schlogl3x3(args):
    m = models.schlogl_paper((3, 3))
    times = [0.25, 0.5, 1.0] if args.full else [0.05]
    _vs_ssa("2-D Schlögl 3x3", m, times, args.species or m.network.species, args,
            method=args.method, hidden=args.hidden or 32, n_samples=args.samples or 800,
            # dt = 5e-4, not 1e-3: here the stochastic steps' bias grew with the step even where
            # the law is stationary (benchmarks/RESULTS.md, 3x3 lattice, session 22)
            dt=args.dt or 5e-4, eps=args.eps, alpha=args.alpha, seed=args.seed,
            step_check=args.step_check, **_start_and_integrator(args))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--part", nargs="+", default=["rare", "toggle", "schlogl2", "mapk", "schlogl3x3"])
    ap.add_argument("--budget", type=float, default=600.0, help="seconds per solve")
    # the options below reach solve() in the parts that evolve a network law; "rare" is the
    # time-independent importance-sampling check and has its own --rare-* options
    sv = ap.add_argument_group("solve options", "passed to solve() by the parts toggle, "
                               "schlogl2, mapk and schlogl3x3")
    sv.add_argument("--method", default="tdvp")
    sv.add_argument("--samples", type=int, default=None, help="n_samples (default: the part's)")
    sv.add_argument("--dt", type=float, default=None, help="the step (default: the part's)")
    sv.add_argument("--hidden", type=int, default=None, help="NADE's units (default: the part's)")
    sv.add_argument("--eps", type=float, default=0.02, help="uniform share of the proposal")
    sv.add_argument("--init-width", type=float, default=0.2)
    sv.add_argument("--alpha", type=float, default=0.5,
                    help="tempering exponent of the proposal; 0.2 carries the 2-site Schlögl flux "
                         "into the low state, see RESULTS.md")
    sv.add_argument("--seed", type=int, default=0, help="seed of the solves")
    sv.add_argument("--step-check", type=float, default=None,
                    help="solve(step_check=...): redo steps whose out-of-sample error exceeds it")
    sv.add_argument("--damping", type=float, default=None,
                    help="solve(damping=...), the relative Fisher damping (default: solve's)")
    sv.add_argument("--reweight", action="store_true",
                    help="solve(reweight=True): fit under the PSIS-reweighted measure P_theta "
                         "instead of the tempered proposal")
    sv.add_argument("--frontier", action="store_true",
                    help="solve(frontier=True): also fit at one-jump successors of the samples")
    sv.add_argument("--project-moments", type=int, default=0, choices=(0, 1, 2),
                    help="solve(project_moments=...): tilt each step's law onto the CME's "
                         "moment equations (1: means, 2: and second moments)")
    sv.add_argument("--project-covariances", nargs="*", default=None, metavar="A:B",
                    help="solve(project_covariances=...): with --project-moments 2, also the "
                         "products E[x_i x_j] of the species that react together (no value) or "
                         "of the pairs named, e.g. KKpp:Kp")
    sv.add_argument("--activation", default="sigmoid", choices=("sigmoid", "tanh"),
                    help="solve(activation=...): NADE's hidden activation")
    sv.add_argument("--output-degree", type=int, default=None,
                    help="solve(output_degree=...): NADE's output weights polynomials of this "
                         "degree in the value")
    sv.add_argument("--center-outputs", action="store_true",
                    help="solve(center_outputs=True): Fisher solves in centred output coordinates")
    sv.add_argument("--inputs", default="caps", choices=("caps", "start"),
                    help="solve(inputs=...): feed the network n / M, or n standardized by the "
                         "start law")
    sv.add_argument("--integrator", default="euler", choices=("euler", "heun", "implicit"),
                    help="solve(integrator=...) of the tdvp step")
    sv.add_argument("--init-time", type=float, default=None,
                    help="solve(init_time=...): start from the exact short-time law at this time "
                         "instead of evolving the point mass through it")
    sv.add_argument("--init-law", default="exact", choices=("exact", "product"),
                    help="solve(init_law=...): the law at --init-time, exact or the product of "
                         "per-species laws (the 3x3 lattice: the exact set is out of reach)")
    sv.add_argument("--checkpoint", default=None, metavar="PATH",
                    help="solve(checkpoint=PATH): save the parameters to this .npz and resume "
                         "from it when it exists (one part per path)")
    sv.add_argument("--checkpoint-every", type=int, default=10, metavar="STEPS")
    sv.add_argument("--widen-from", default=None, metavar="CK",
                    help="mapk, schlogl3x3: start at the checkpoint's t_eval[--widen-at] from the "
                         "law it holds there, in a NADE of --hidden units (NADE.widened)")
    sv.add_argument("--widen-at", type=int, default=1, metavar="K")
    ap.add_argument("--ssa-cache", default=None, metavar="DIR",
                    help="keep the SSA references (mapk, schlogl3x3) in DIR and reuse them")
    ap.add_argument("--species", nargs="+", default=None, metavar="NAME",
                    help="species whose marginals the SSA comparisons report (mapk: the monitored "
                         "KKKp KKpp Kpp; schlogl3x3: all nine sites)")
    ap.add_argument("--rare-samples", type=int, default=1000)
    ap.add_argument("--rare-eps", type=float, default=0.5)
    ap.add_argument("--rare-courant", type=float, default=0.2)
    ap.add_argument("--rare-order", type=int, default=2)
    ap.add_argument("--rare-sampling", default="tempered",
                    help="'enumerate' fits on all 85 states with equal weights (no Monte-Carlo "
                         "noise: isolates the time-stepping error)")
    args = ap.parse_args(argv)
    parts = {"rare": rare, "toggle": toggle, "schlogl2": schlogl2, "mapk": mapk,
             "schlogl3x3": schlogl3x3}
    for part in args.part:
        parts[part](args)


if __name__ == "__main__":
    main()
