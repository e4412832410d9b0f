"""Accuracy of the VAN solver (cupyssa.cme.solve) against exact and SSA references.

* rare event: 1-site Schlögl, P(x <= 15) starting from 50, VAN (box estimator) vs FSP, and the
  hits of plain sampling with the same budget;
* toggle switch and 2-site Schlögl marginals vs FSP (Hellinger);
* MAPK cascade (means, marginals at t = 100) and 2-D Schlögl 3x3 (single-site marginals at t = 1)
  vs ``cupyssa.simulate`` (SSA).

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/cme_accuracy.py [--part rare toggle ...] [--full]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cupyssa
import cupyssa.models as models
from cupyssa.cme import fsp, solve


def hellinger(p, q):
    n = max(len(p), len(q))
    p, q = np.pad(p, (0, n - len(p))), np.pad(q, (0, n - len(q)))
    return float(np.sqrt(0.5 * np.sum((np.sqrt(np.maximum(p, 0)) - np.sqrt(np.maximum(q, 0))) ** 2)))


def rare(full):
    m = models.schlogl_paper((1,))
    caps = m.metadata["caps"]
    times = np.array([0.0, 0.02, 0.05, 0.1, 0.2, 0.5]) if full else np.array([0.0, 0.02, 0.05, 0.1])
    ref = fsp(m, t_eval=times, bounds={"X0": caps["X0"] - 1})
    start = time.perf_counter()
    sol = solve(m, t_eval=times, method="tdvp", hidden=8, n_samples=500, dt=1e-3, seed=0)
    wall = time.perf_counter() - start
    print(f"\n## rare event: 1-site Schlögl, P(x <= 15) from x0 = 50 (tdvp, {wall:.1f} s, "
          f"{sol.stats['steps']} steps)")
    print("| t | FSP | VAN | rel. error | plain sampling hits / 10^4 |")
    print("|---|---|---|---|---|")
    for k in range(1, len(times)):
        exact = ref.p[k][ref.states[:, 0] <= 15].sum()
        est = sol.region_probability({"X0": (0, 15)}, k, n_samples=10_000)
        plain = sol.region_probability({"X0": (0, 15)}, k, n_samples=10_000, method="plain")
        print(f"| {times[k]} | {exact:.3e} | {est.probability:.3e} | "
              f"{abs(est.probability / exact - 1):.3f} | {plain.n_hits} |", flush=True)


def vs_fsp(full):
    cases = [("toggle switch", models.toggle_switch(), [1.0, 5.0, 20.0] if full else [1.0],
              ("Px", "Py"), dict(hidden=32, n_samples=1000, dt=0.02)),
             ("2-site Schlögl", models.schlogl_paper((2,)), [0.1, 0.5, 1.0] if full else [0.1],
              ("X0", "X1"), dict(hidden=32, n_samples=800, dt=1e-3))]
    for name, m, times, species, kw in cases:
        caps = m.metadata["caps"]
        t_eval = np.r_[0.0, times]
        ref = fsp(m, t_eval=t_eval, bounds={s: c - 1 for s, c in caps.items()})
        start = time.perf_counter()
        sol = solve(m, t_eval=t_eval, method="tdvp", seed=0, **kw)
        wall = time.perf_counter() - start
        print(f"\n## {name} vs FSP ({len(ref.states)} states; tdvp {wall:.1f} s, "
              f"{sol.stats['steps']} steps)")
        for k in range(1, len(t_eval)):
            d = {s: round(hellinger(sol.marginal(s, k), ref.marginal(s, k)), 4) for s in species}
            print(f"t = {t_eval[k]}: Hellinger {d}", flush=True)


def vs_ssa(full):
    n_traj = 100_000 if full else 10_000
    cases = [("MAPK cascade", models.mapk_cascade(), 100.0 if full else 10.0,
              models.mapk_cascade().metadata["monitored"], dict(hidden=32, n_samples=800, dt=0.05)),
             ("2-D Schlögl 3x3", models.schlogl_paper((3, 3)), 1.0 if full else 0.05,
              ("X1_1", "X0_0"), dict(hidden=32, n_samples=800, dt=1e-3))]
    for name, m, T, species, kw in cases:
        t_eval = np.array([0.0, T])
        ssa = cupyssa.simulate(m, t_eval=t_eval, n_trajectories=n_traj, seed=0)
        start = time.perf_counter()
        sol = solve(m, t_eval=t_eval, method="tdvp", seed=0, **kw)
        wall = time.perf_counter() - start
        print(f"\n## {name} vs SSA ({n_traj} trajectories) at t = {T} (tdvp {wall:.1f} s)")
        van_mean = sol.mean(1)
        for s in species:
            i = m.network.species.index(s)
            x = ssa.states[:, -1, i]
            emp = np.bincount(x, minlength=int(m.metadata["caps"][s])) / len(x)
            print(f"{s}: mean SSA {x.mean():.3f} VAN {van_mean[i]:.3f} "
                  f"(rel {abs(van_mean[i] / x.mean() - 1):.3f}); Hellinger "
                  f"{hellinger(sol.marginal(s, 1), emp):.4f}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--part", nargs="+", default=["rare", "fsp", "ssa"])
    args = ap.parse_args(argv)
    for part in args.part:
        {"rare": rare, "fsp": vs_fsp, "ssa": vs_ssa}[part](args.full)


if __name__ == "__main__":
    main()
