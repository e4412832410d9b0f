"""Error of a VAN solution along time, against the exact box CME (2-site Schlögl, toggle switch).

Every ``--every`` time units the model's exact marginals (its probabilities over all box states,
no sampling: 7,225 for the 2-site Schlögl model, 25,600 for the toggle switch) are compared with
:func:`cupyssa.cme.box.box_cme`: Hellinger distances of the two monitored marginals and of the
joint law, and the mass of the states the fits tend to miss (Schlögl: the low state
``X0 <= 20``; toggle switch: each gene bound, ``Gx = 0`` and ``Gy = 0``, and ``Px = 0``).
Keyword arguments of ``cupyssa.cme.solve`` are given as JSON and override the model's defaults
below.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/van_error_trace.py '{"eps": 0.05}' --horizon 1
    OPENBLAS_NUM_THREADS=1 python benchmarks/van_error_trace.py --model toggle '{"alpha": 0.2}' \
        --horizon 20 --every 0.5
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

# model, the two monitored species, the watched regions {label: mask of the box states}, and
# the solve defaults (those of the accuracy runs in RESULTS.md)
CASES = {
    "schlogl2": dict(
        model=lambda: models.schlogl_paper((2,)), monitored=("X0", "X1"),
        # x <= 20: below the unstable point near 14.5 and its neighbourhood; its mass grows from
        # ~2 % at t = 0.1 to ~7 % at t = 1
        regions=lambda x: {"P(X0 <= 20)": x["X0"] <= 20},
        defaults=dict(method="tdvp", hidden=8, n_samples=500, dt=1e-3, eps=0.2, init_width=0.2,
                      seed=0)),
    "toggle": dict(
        model=models.toggle_switch, monitored=("Px", "Py"),
        regions=lambda x: {"P(Gx = 0)": x["Gx"] == 0, "P(Gy = 0)": x["Gy"] == 0,
                           "P(Px = 0)": x["Px"] == 0},
        defaults=dict(method="tdvp", hidden=16, n_samples=400, dt=0.05, eps=0.1, init_width=0.1,
                      seed=0)),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("overrides", nargs="?", default="{}", help="JSON: solve() keyword arguments")
    ap.add_argument("--model", choices=sorted(CASES), default="schlogl2")
    ap.add_argument("--horizon", type=float, default=0.5)
    ap.add_argument("--every", type=float, default=0.025)
    args = ap.parse_args(argv)
    case = CASES[args.model]
    kw = {**case["defaults"], **json.loads(args.overrides)}
    m = case["model"]()
    grid = np.round(np.arange(0.0, args.horizon + 1e-9, args.every), 9)
    ref = box_cme(m, grid)
    states = ref.states
    species = list(m.network.species)
    monitored = [species.index(s) for s in case["monitored"]]
    regions = case["regions"](dict(zip(species, states.T)))  # species order: the network's
    state = {"k": 1, "start": time.perf_counter()}

    def report(step, t, model):
        while state["k"] < len(grid) and t >= grid[state["k"]] - 1e-12:
            k = state["k"]
            q = np.exp(model.log_prob(states))
            q /= q.sum()
            marginals = {species[i]: np.bincount(states[:, i], weights=q,
                                                 minlength=int(model.caps[i])) for i in monitored}
            marg = "  ".join(f"{s} {hellinger(p, ref.marginal(s, k)):.4f}"
                             for s, p in marginals.items())
            mass = "  ".join(f"{label} {q[mask].sum():.4f} (exact {ref.p[k][mask].sum():.4f})"
                             for label, mask in regions.items())
            print(f"t = {grid[k]:.4g}  step {step}  {time.perf_counter() - state['start']:.0f} s  "
                  f"Hellinger {marg}  joint {hellinger(q, ref.p[k]):.4f}  {mass}", flush=True)
            state["k"] += 1

    print(f"{args.model}: solve({kw})", flush=True)
    sol = solve(m, t_eval=[0.0, args.horizon], callback=report, **kw)
    print("stats", {k: v for k, v in sol.stats.items() if np.ndim(v) == 0})


if __name__ == "__main__":
    main()
