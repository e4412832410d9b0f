"""Where a long solve stands: the latest law of its checkpoints against SSA at the law's own time.

``cme_accuracy.py`` compares a solve with SSA only at its check times (MAPK: t = 10, 25, 50,
100), hours apart on a CPU. This script reads the law a checkpoint (``solve(checkpoint=...)``)
holds now, at whatever time its run has reached, and compares it with ``--trajectories`` SSA
trajectories of the package's simulator at that time: each monitored species' mean (relative
error) and marginal (Hellinger distance; the law's marginal Rao-Blackwellized over 10^4 of its
draws, as ``cme_accuracy.py`` reports it), and the covariance of every pair of species that
react with one another (:func:`cupyssa.cme.moments.reacting_pairs`), the products that the
means' equations read. Several checkpoints (e.g. copies taken along one run) share one SSA run.

The last column is the Hellinger distance between the two halves of the SSA states. Two
histograms of n/2 draws of one law over K values differ by sampling noise alone, with
``2 n H^2 ~ chi^2_{K-1}``, where one histogram of n against the exact law has
``8 n H^2 ~ chi^2_{K-1}``: half of the last column is about the noise in the one before it. It
tells sampling noise from error; it is not a test.

Usage (the MAPK run of ``benchmarks/checkpoints/README.md``; copies of its checkpoint)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/checkpoint_vs_ssa.py ck_t43.npz ck_t60.npz \
        --model mapk --species S KKK C1 KKKp KKpp Kpp
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import cupyssa.models as models
from cupyssa import simulate
from cupyssa.cme.moments import reacting_pairs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import hellinger  # noqa: E402
from cme_accuracy import checkpoint_law, empirical_marginal, model_marginal  # noqa: E402

#: the models of cme_accuracy.py's SSA comparisons
MODELS = {"mapk": models.mapk_cascade, "schlogl3x3": lambda: models.schlogl_paper((3, 3))}


def compare(law, ssa, species, monitored, pairs, draws, seed=0):
    """Rows ``(name, mean VAN, mean SSA, Hellinger, SSA halves' Hellinger)`` for ``monitored``
    and ``(name, cov VAN, cov SSA)`` for ``pairs``, from ``draws`` states of ``law`` and the SSA
    states ``ssa`` [n, S]."""
    x = law.sample(draws, np.random.default_rng(seed))[0].astype(float)
    caps = law.caps
    half = len(ssa) // 2
    rows = []
    for name in monitored:
        i = species.index(name)
        rows.append((name, x[:, i].mean(), ssa[:, i].mean(),
                     hellinger(model_marginal(law, i, seed=seed),
                               empirical_marginal(ssa[:, i], caps[i])),
                     hellinger(empirical_marginal(ssa[:half, i], caps[i]),
                               empirical_marginal(ssa[half:2 * half, i], caps[i]))))
    covs = [(f"{species[i]}-{species[j]}", np.cov(x[:, i], x[:, j])[0, 1],
             np.cov(ssa[:, i], ssa[:, j])[0, 1]) for i, j in zip(*pairs)]
    return rows, covs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help=".npz files written by solve(checkpoint=...)")
    ap.add_argument("--model", choices=sorted(MODELS), default="mapk")
    ap.add_argument("--species", nargs="+", default=None,
                    help="species compared (default: the model's monitored ones, else all)")
    ap.add_argument("--trajectories", type=int, default=100_000)
    ap.add_argument("--draws", type=int, default=100_000, help="states drawn from each law")
    ap.add_argument("--seed", type=int, default=7, help="seed of the SSA trajectories")
    args = ap.parse_args(argv)

    m = MODELS[args.model]()
    species = list(m.network.species)
    caps = np.array([m.metadata["caps"][s] for s in species])
    monitored = args.species or m.metadata.get("monitored") or species
    unknown = sorted(set(monitored) - set(species))
    if unknown:
        raise SystemExit(f"--species: {unknown} are not species of {args.model} ({species})")
    pairs = reacting_pairs(m.network)
    laws = [checkpoint_law(path, caps) for path in args.checkpoints]
    times = sorted({t for _, t in laws})
    ssa = simulate(m, t_eval=[0.0, *times], n_trajectories=args.trajectories,
                   seed=args.seed).states[:, 1:]
    for path, (law, t) in zip(args.checkpoints, laws):
        rows, covs = compare(law, ssa[:, times.index(t)], species, monitored, pairs, args.draws)
        print(f"{path}: t = {t:.4g}, {args.draws} draws of the law (NADE hidden {law.H}) vs "
              f"{args.trajectories} SSA trajectories")
        print(f"  {'species':8s} {'VAN':>8s} {'SSA':>8s} {'rel':>7s} {'Hellinger':>9s} "
              f"{'SSA halves':>10s}")
        for name, mv, ms, h, floor in rows:
            rel = f"{mv / ms - 1:+7.3f}" if ms > 0 else "      -"
            print(f"  {name:8s} {mv:8.3f} {ms:8.3f} {rel} {h:9.4f} {floor:10.4f}")
        print("  covariances VAN / SSA: "
              + "; ".join(f"{name} {cv:.2f} / {cs:.2f}" for name, cv, cs in covs))


if __name__ == "__main__":
    main()
