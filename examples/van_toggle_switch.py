"""Genetic toggle switch by a variational autoregressive network (cupyssa.cme.solve), checked
against finite state projection.

    OPENBLAS_NUM_THREADS=1 python examples/van_toggle_switch.py            # reduced (~10 s)
    OPENBLAS_NUM_THREADS=1 python examples/van_toggle_switch.py --full     # 25,600 states, t=20

``--full`` uses the settings measured to meet Hellinger 0.02 on four seeds (about 10 minutes on
one core; ``benchmarks/RESULTS.md``): the exact short-time law at t = 0.1 as the start, Heun
steps fitted on 1,600 samples, each step checked out of sample.
"""

import argparse

import numpy as np

import cupyssa.models as models
from cupyssa.cme import fsp, solve


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--method", default="tdvp", choices=["tdvp", "natgrad", "adam"])
    args = ap.parse_args()
    if args.full:
        model, times = models.toggle_switch(), [0.0, 1.0, 5.0, 20.0]
        caps, kw = model.metadata["caps"], dict(hidden=16, n_samples=1600, dt=0.05,
                                                integrator="heun", init_time=0.1, step_check=5)
    else:
        model, times = models.toggle_switch(rho=3.0, sb=0.1, su=0.2), [0.0, 0.5, 1.0]
        caps, kw = {"Gx": 2, "Gy": 2, "Px": 12, "Py": 12}, dict(hidden=16, n_samples=400, dt=0.02)
    sol = solve(model, t_eval=times, method=args.method, caps=caps, progress=True, seed=0, **kw)
    ref = fsp(model, t_eval=times, bounds={s: c - 1 for s, c in caps.items()})
    for k, t in enumerate(times):
        for s in ("Px", "Py"):
            p, q = sol.marginal(s, k), ref.marginal(s, k)
            q = np.pad(q, (0, len(p) - len(q)))
            h = np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))
            print(f"t={t:5.2f} {s}: mean VAN {p @ np.arange(len(p)):7.3f}  FSP "
                  f"{q @ np.arange(len(q)):7.3f}  Hellinger {h:.4f}")
    px, py = sol.species.index("Px"), sol.species.index("Py")  # the solution's columns
    both_high = sol.region_probability(lambda n: (n[:, px] > 5) & (n[:, py] > 5), len(times) - 1)
    print(f"P(Px > 5 and Py > 5) at t = {times[-1]}: {both_high.probability:.4f} "
          f"(ESS {both_high.ess:.0f}, khat {both_high.khat:.2f})")


if __name__ == "__main__":
    main()
