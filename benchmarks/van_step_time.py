"""Wall time per VAN time step (cupyssa.cme.solve) on the 2-site Schlögl model.

The cost of one ``tdvp`` step: ancestral sampling, the local energy (``log P`` of every
predecessor state), the per-sample gradients and the damped N x N solve. The step sequence is
fixed by the seed, so two revisions of the package run the same steps: compare them by running
this script at each (the figures in ``RESULTS.md`` say which revisions).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/van_step_time.py [--horizon 5e-4] [--samples 500]
"""

from __future__ import annotations

import argparse
import time

import cupyssa.models as models
from cupyssa.cme import solve


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horizon", type=float, default=5e-4)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--hidden", type=int, default=8)
    ap.add_argument("--method", default="tdvp")
    args = ap.parse_args(argv)
    m = models.schlogl_paper((2,))
    kw = dict(method=args.method, hidden=args.hidden, n_samples=args.samples, dt=1e-3, eps=0.2,
              init_width=0.2, seed=0)
    solve(m, t_eval=[0.0, 1e-5], **kw)  # warm-up (imports, first BLAS calls)
    start = time.perf_counter()
    sol = solve(m, t_eval=[0.0, args.horizon], **kw)
    wall = time.perf_counter() - start
    steps = sol.stats["steps"]
    print(f"2-site Schlögl, {kw}, t in [0, {args.horizon}]: {steps} steps, {wall:.1f} s, "
          f"{1e3 * wall / steps:.1f} ms/step")


if __name__ == "__main__":
    main()
