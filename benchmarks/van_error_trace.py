"""Error of a VAN solution along time, against the exact box CME (2-site Schlögl, toggle switch).

Every ``--every`` time units the model's exact marginals (its probabilities over all box states,
no sampling: 7,225 for the 2-site Schlögl model, 25,600 for the toggle switch) are compared with
:func:`cupyssa.cme.box.box_cme`: Hellinger distances of the two monitored marginals and of the
joint law, and the mass of the states the fits tend to miss (Schlögl: the low state
``X0 <= 20``; toggle switch: each gene bound, ``Gx = 0`` and ``Gy = 0``, and ``Px = 0``).
Keyword arguments of ``cupyssa.cme.solve`` are given as JSON and override the model's defaults
below.

``--start-exact T0`` separates the long-time evolution from the start: the network is first fitted
to the exact law at ``T0`` (cross-entropy over all box states, L-BFGS; the fit's own error is
printed as the line at ``T0``) and evolved from there, which skips the stiff spreading of the
point mass (toggle switch: 8,000 of the 11,000 steps to t = 20 come before t = 1; from T0 = 1 a
run to t = 6 takes ~40 s instead of ~7 min).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/van_error_trace.py '{"eps": 0.05}' --horizon 1
    OPENBLAS_NUM_THREADS=1 python benchmarks/van_error_trace.py --model toggle '{"alpha": 0.2}' \
        --horizon 20 --every 0.5
    OPENBLAS_NUM_THREADS=1 python benchmarks/van_error_trace.py --model toggle \
        '{"alpha": 0.5, "eps": 0.02}' --start-exact 1 --horizon 20 --every 0.5
    OPENBLAS_NUM_THREADS=1 python benchmarks/van_error_trace.py --model toggle \
        '{"alpha": 0.5, "eps": 0.02, "integrator": "heun", "n_samples": 1600, "init_time": 0.1}' \
        --horizon 20 --every 0.5

(the last one is the solver's own short-time start, ``solve(init_time=...)``, from the point
mass at t = 0: see ``benchmarks/RESULTS.md``).
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
from cupyssa.cme.start import fit_to_law
from cupyssa.cme.van import make_model
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
    ap.add_argument("--start-exact", type=float, default=None, metavar="T0",
                    help="start from a fit to the exact law at T0 instead of the point mass")
    args = ap.parse_args(argv)
    case = CASES[args.model]
    kw = {**case["defaults"], **json.loads(args.overrides)}
    m = case["model"]()
    t0 = 0.0 if args.start_exact is None else args.start_exact
    grid = np.round(np.arange(t0, args.horizon + 1e-9, args.every), 9)
    ref = box_cme(m, np.r_[0.0, grid] if t0 > 0 else grid)
    if t0 > 0:  # drop the extra t = 0 so that grid[k] is ref.p[k]
        ref.p, ref.t = ref.p[1:], ref.t[1:]
    states = ref.states
    species = list(m.network.species)
    monitored = [species.index(s) for s in case["monitored"]]
    regions = case["regions"](dict(zip(species, states.T)))  # species order: the network's
    # the solution's columns follow species_order when one is given
    columns = [species.index(s) for s in kw.get("species_order") or species]
    state = {"k": 1, "start": time.perf_counter()}

    def report(step, t, model):
        while state["k"] < len(grid) and t >= grid[state["k"]] - 1e-12:
            k = state["k"]
            q = np.exp(model.log_prob(states[:, columns]))
            q /= q.sum()
            marginals = {species[i]: np.bincount(states[:, i], weights=q,
                                                 minlength=int(ref.caps[i])) for i in monitored}
            marg = "  ".join(f"{s} {hellinger(p, ref.marginal(s, k)):.4f}"
                             for s, p in marginals.items())
            mass = "  ".join(f"{label} {q[mask].sum():.4f} (exact {ref.p[k][mask].sum():.4f})"
                             for label, mask in regions.items())
            print(f"t = {grid[k]:.4g}  step {step}  {time.perf_counter() - state['start']:.0f} s  "
                  f"Hellinger {marg}  joint {hellinger(q, ref.p[k]):.4f}  {mass}", flush=True)
            state["k"] += 1

    if t0 > 0:
        kw["model"] = fit_exact(m, ref.states, ref.p[0], kw)
        state["k"], state["start"] = 0, time.perf_counter()
        report(0, t0, kw["model"])
    print(f"{args.model}: solve({ {k: v for k, v in kw.items() if k != 'model'} })", flush=True)
    sol = solve(m, t_eval=[t0, args.horizon], callback=report, **kw)
    print("stats", {k: v for k, v in sol.stats.items() if np.ndim(v) == 0})


def fit_exact(m, states, p, kw):
    """The network of ``kw`` fitted to the exact law ``p`` over the box ``states``: minimum
    cross-entropy ``-sum_n p(n) log P_theta(n)`` (L-BFGS, at most 3,000 iterations). Removes
    the network-shape keywords from ``kw``."""
    species = list(m.network.species)
    order = kw.get("species_order") or species
    columns = [species.index(s) for s in order]
    caps = np.array([m.metadata["caps"][s] for s in order])
    shape = {k: kw.pop(k) for k in ("hidden", "width", "depth") if k in kw}
    kw.pop("init_width", None)
    net = make_model(kw.pop("model", "nade"), caps, np.random.default_rng(kw.get("seed", 0)), **shape)
    keep = p > 1e-14
    fit_to_law(net, states[:, columns], np.where(keep, p, 0.0), max_iter=3000)
    return net


if __name__ == "__main__":
    main()
