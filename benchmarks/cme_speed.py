"""Wall time of the VAN solvers to reach the accuracy target, side by side in one run.

For each problem, FSP gives the exact marginals; every method (tdvp, natgrad, adam) evolves the
same NADE from the same start with the same samples per step (a problem may add options of one
method, e.g. tdvp's integrator), and the script reports the wall
time and the worst Hellinger distance of the monitored marginals at the check times. Adam is
given growing iteration budgets per step (``--adam-iters``) until it reaches the target or the
time budget runs out; the ratio ``adam time / method time`` is printed (goal >= 5x).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/cme_speed.py            # reduced sizes (minutes)
    OPENBLAS_NUM_THREADS=1 python benchmarks/cme_speed.py --full     # issue sizes (long)

(With a loaded 2-core machine OpenBLAS's threads can make the N x N Cholesky ~100x slower;
one BLAS thread is recommended.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import cupyssa.models as models
from cupyssa.cme import solve
from cupyssa.cme.box import box_cme

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import hellinger  # noqa: E402


def problems(full: bool):
    if full:
        tog = models.toggle_switch()
        # the accuracy benchmark's settings (RESULTS.md, session 10); Heun and the step check
        # are tdvp's own (the check would cost the other methods ~40 % per step)
        yield ("toggle switch (25,600 states)", tog, tog.metadata["caps"], [1.0, 5.0, 20.0],
               ("Px", "Py"), 0.02,
               dict(hidden=16, n_samples=1600, dt=0.05, eps=0.02, alpha=0.5, init_width=0.1,
                    init_time=0.1, tdvp=dict(integrator="heun", step_check=5)))
        sch = models.schlogl_paper((2,))
        # the accuracy benchmark's settings (RESULTS.md): the start is the exact law at
        # t = 0.002 for every method; tdvp takes backward-Euler steps of dt, natgrad and adam
        # the explicit target, whose steps the Courant rule keeps near 3e-5
        yield ("Schlögl 2 sites (7,225 states)", sch, sch.metadata["caps"], [0.1, 0.5, 1.0],
               ("X0", "X1"), 0.015,
               dict(hidden=8, n_samples=2000, dt=1e-3, eps=0.05, alpha=0.2, init_time=0.002,
                    tdvp=dict(integrator="implicit")))
    else:
        tog = models.toggle_switch(rho=3.0, sb=0.1, su=0.2)
        yield ("toggle switch, reduced (rho=3, caps 2,2,12,12: 576 states)", tog,
               {"Gx": 2, "Gy": 2, "Px": 12, "Py": 12}, [0.5, 1.0], ("Px", "Py"), 0.02,
               dict(hidden=16, n_samples=400, dt=0.02))
        sch = models.schlogl_paper((2,), cap=85)
        yield ("Schlögl 2 sites (7,225 states), t <= 0.01", sch, sch.metadata["caps"], [0.005, 0.01],
               ("X0", "X1"), 0.015, dict(hidden=8, n_samples=500, dt=1e-3, eps=0.2))


#: keys of a problem's options that hold one method's own options
runs_by_method = ("tdvp", "natgrad", "adam")


def run(model, caps, t_eval, species, ref, method, budget, **kw):
    start = time.perf_counter()
    deadline = start + budget

    class OutOfTime(Exception):
        pass

    reached = [0.0, 0]

    def cb(step, t, m):
        reached[:] = [t, step]
        if time.perf_counter() > deadline:
            raise OutOfTime
    try:
        sol = solve(model, t_eval=t_eval, method=method, caps=caps, seed=0, callback=cb, **kw)
    except OutOfTime:
        print(f"  ({method}: stopped at the budget at t = {reached[0]:.4g}, step {reached[1]})")
        return budget, float("inf")
    wall = time.perf_counter() - start
    worst = max(hellinger(sol.marginal(s, k), ref.marginal(s, k))
                for k in range(1, len(t_eval)) for s in species)
    return wall, worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="issue sizes")
    ap.add_argument("--budget", type=float, default=150.0, help="seconds per solver run")
    ap.add_argument("--adam-iters", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--only", nargs="+", default=None, help="problems whose name has a word")
    ap.add_argument("--methods", nargs="+", default=["tdvp", "natgrad", "adam"])
    args = ap.parse_args(argv)
    for name, model, caps, times, species, target, kw in problems(args.full):
        if args.only and not any(w.lower() in name.lower() for w in args.only):
            continue
        t_eval = np.r_[0.0, times]
        # the exact CME of the VAN's reflecting box (for Schlögl with cap 85 the absorbing FSP
        # loses up to 29 % of the mass by t = 1; see benchmarks/cme_accuracy.py)
        ref = box_cme(model, t_eval, caps=caps)
        print(f"\n## {name}: target Hellinger <= {target} at t = {times}; solve options {kw}")
        print("| method | iters/step | wall s | worst Hellinger | reached |")
        print("|---|---|---|---|---|")
        rows = {}
        runs = [("tdvp", 1), ("natgrad", 2)] + [("adam", i) for i in args.adam_iters]
        common = {k: v for k, v in kw.items() if k not in runs_by_method}
        for method, iters in [r for r in runs if r[0] in args.methods]:
            wall, worst = run(model, caps, t_eval, species, ref, method, args.budget,
                              n_iter=iters, **common, **kw.get(method, {}))
            ok = worst <= target
            rows[(method, iters)] = (wall, ok)
            print(f"| {method} | {iters} | {wall:.1f}{'+' if not np.isfinite(worst) else ''} | "
                  f"{worst:.4f} | {'yes' if ok else 'no'} |", flush=True)
        adam = {i: r for (m, i), r in rows.items() if m == "adam"}
        adam_ok = [w for w, ok in adam.values() if ok]
        for m in ("tdvp", "natgrad"):
            if (m, 1 if m == "tdvp" else 2) not in rows:
                continue
            w, ok = rows[(m, 1 if m == "tdvp" else 2)]
            if not ok:
                print(f"{m}: target not reached")
            elif not adam:
                print(f"{m}: {w:.1f} s; adam not run")
            elif adam_ok:
                print(f"{m}: adam/{m} wall-time ratio = {min(adam_ok) / w:.1f}x")
            else:
                # every run stopped at the budget or ended short of the target. Its time bounds
                # adam's time to the target with that many iterations per step from below; the
                # shortest run bounds them all. If more iterations per step cost more time and
                # never lose accuracy, the target needs more than the most tried, hence longer
                # than that run took.
                most = max(adam)
                print(f"{m}: no adam run reached the target (" +
                      ", ".join(f"{i} iters/step: {aw:.0f} s" for i, (aw, _) in adam.items()) +
                      f"): ratio > {min(aw for aw, _ in adam.values()) / w:.1f}x; > "
                      f"{adam[most][0] / w:.1f}x if accuracy grows with iterations per step")


if __name__ == "__main__":
    main()
