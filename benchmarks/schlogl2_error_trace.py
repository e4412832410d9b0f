"""Error of the VAN solution of the 2-site Schlögl model along time, against the exact box CME.

Every ``--every`` time units the model's exact marginals (its probabilities over all 7,225 box
states, no sampling) are compared with :func:`cupyssa.cme.box.box_cme` (Hellinger distances of
the X0 and X1 marginals and of the joint law). Keyword arguments of ``cupyssa.cme.solve`` are
given as JSON and override the defaults below.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/schlogl2_error_trace.py '{"eps": 0.05}' --horizon 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import cupyssa.models as models
from cupyssa.cme import solve
from cupyssa.cme.box import box_cme

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import hellinger  # noqa: E402

DEFAULTS = dict(method="tdvp", hidden=8, n_samples=500, dt=1e-3, eps=0.2, init_width=0.2, seed=0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="?", default="{}", help="JSON: solve() keyword arguments")
    ap.add_argument("--horizon", type=float, default=0.5)
    ap.add_argument("--every", type=float, default=0.025)
    args = ap.parse_args(argv)
    kw = {**DEFAULTS, **json.loads(args.overrides)}
    m = models.schlogl_paper((2,))
    grid = np.round(np.arange(0.0, args.horizon + 1e-9, args.every), 9)
    ref = box_cme(m, grid)
    states = ref.states
    species = m.network.species
    state = {"k": 1, "start": time.perf_counter()}

    def report(step, t, model):
        while state["k"] < len(grid) and t >= grid[state["k"]] - 1e-12:
            k = state["k"]
            q = np.exp(model.log_prob(states))
            q /= q.sum()
            marg = [hellinger(np.bincount(states[:, i], weights=q, minlength=int(model.caps[i])),
                              ref.marginal(s, k)) for i, s in enumerate(species)]
            # the mass of the low state (x <= 20: below the unstable point near 14.5 and its
            # neighbourhood), which grows from ~2 % at t = 0.1 to ~7 % at t = 1
            low = states[:, 0] <= 20
            print(f"t = {grid[k]:.4g}  step {step}  {time.perf_counter() - state['start']:.0f} s  "
                  f"Hellinger X0 {marg[0]:.4f}  X1 {marg[1]:.4f}  joint {hellinger(q, ref.p[k]):.4f}"
                  f"  P(X0 <= 20) {q[low].sum():.4f} (exact {ref.p[k][low].sum():.4f})", flush=True)
            state["k"] += 1

    print(f"solve({kw})", flush=True)
    sol = solve(m, t_eval=[0.0, args.horizon], callback=report, **kw)
    print("stats", {k: v for k, v in sol.stats.items() if np.ndim(v) == 0})


if __name__ == "__main__":
    main()
