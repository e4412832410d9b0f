"""Wall time per VAN time step (cupyssa.cme.solve) on the 2-site Schlögl model or MAPK.

The cost of one ``tdvp`` step: ancestral sampling, the local energy (``log P`` of every
predecessor state), the per-sample gradients and the damped N x N solve. The step sequence is
fixed by the seed, so two revisions of the package run the same steps: compare them by running
this script at each (the figures in ``RESULTS.md`` say which revisions).

``--model mapk`` times the MAPK cascade's implicit step instead, with the settings of its
accuracy runs (NADE hidden 2, 1,000 samples and their frontier rows, exact sampling, ``dt``
0.05, from the product law at t = 0.2): there the backward-Euler Jacobian needs ``log P`` and
its gradient at every distinct predecessor, tens of thousands of states per step.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/van_step_time.py [--horizon 5e-4] [--samples 500]
    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/van_step_time.py --model mapk
"""

from __future__ import annotations

import argparse
import time

import cupyssa.models as models
from cupyssa.cme import solve


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("schlogl2", "mapk"), default="schlogl2")
    ap.add_argument("--horizon", type=float, default=None,
                    help="time solved (default 5e-4; MAPK: 0.5, 10 steps after its start)")
    ap.add_argument("--samples", type=int, default=None, help="default 500 (MAPK: 1,000)")
    ap.add_argument("--hidden", type=int, default=None, help="default 8 (MAPK: 2)")
    ap.add_argument("--method", default="tdvp")
    ap.add_argument("--step-check", type=float, default=None,
                    help="solve's step_check (MAPK's accuracy runs: 1; it judges each step on a "
                         "fresh batch, two forward passes over its predecessors)")
    args = ap.parse_args(argv)
    if args.model == "mapk":
        m, name, horizon = models.mapk_cascade(), "MAPK cascade", args.horizon or 0.5
        kw = dict(hidden=args.hidden or 2, n_samples=args.samples or 1000, dt=0.05, eps=0.0,
                  alpha=1.0, integrator="implicit", frontier=True, init_time=0.2,
                  init_law="product")
    else:
        m, name, horizon = models.schlogl_paper((2,)), "2-site Schlögl", args.horizon or 5e-4
        kw = dict(hidden=args.hidden or 8, n_samples=args.samples or 500, dt=1e-3, eps=0.2,
                  init_width=0.2)
    kw.update(method=args.method, seed=0, step_check=args.step_check)
    t0 = kw.get("init_time", 0.0)  # the steps start there
    solve(m, t_eval=[0.0, t0 + horizon / 4], **kw)  # warm-up (imports, compilation, BLAS)
    start = time.perf_counter()
    sol = solve(m, t_eval=[0.0, t0 + horizon], **kw)
    wall = time.perf_counter() - start
    steps = sol.stats["steps"]
    print(f"{name}, {kw}, t in [{t0}, {t0 + horizon}]: {steps} steps, {wall:.1f} s, "
          f"{1e3 * wall / steps:.1f} ms/step")


if __name__ == "__main__":
    main()
