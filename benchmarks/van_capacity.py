"""Can the network hold the law? Fit autoregressive networks to SSA states by maximum likelihood.

A VAN solve can be off for two reasons: the network cannot represent the law at all, or the time
evolution does not reach the law it could represent. This script separates them for a model
whose law is known only through SSA: ``--n-fit`` trajectories (seed 1) give an empirical law at
``--time``, each network width is fitted to it (minimum cross-entropy
``-sum_n p(n) log P_theta(n)``, L-BFGS, :func:`cupyssa.cme.start.fit_to_law`), and the fitted
network's marginals are compared with ``--n-ref`` independent trajectories (seed 0, the
reference of ``cme_accuracy.py``) as ``cme_accuracy.py`` compares a solve's. A width whose fit is
within the sampling floor can hold the law; a solve with that width that is further off has an
evolution error.

The floor printed first is the Hellinger distance between the two SSA histograms themselves.
The fitted network is smooth, so its own floor against the reference is lower, about
``sqrt((B - 1) / (8 n_ref))`` for ``B`` occupied values.

Marginals are not the whole law. With ``--covariances`` each fit also prints the covariance of
every pair of species that a reaction converts into one another (``s_k = -e_i + e_j``: the
phosphorylation states of the MAPK cascade, lattice neighbours), from ``--n-moments`` states
drawn from the fit, beside the reference trajectories'; and the mean log-likelihood of the
reference states under the fit, which compares widths on the whole law (higher is better; its
standard error is printed with it). A bimolecular reaction's mean rate is
``k E[x_i x_j] = k (mu_i mu_j + cov_ij)``: a network that holds the marginals and not these
covariances moves the means at the wrong rates. ``--start CK`` starts the fits from the law a
solve's checkpoint holds at ``--time`` instead of a new network (a fit from scratch can stop at a
product law): how far the solve's law is from the best its network can do.

Usage::

    OPENBLAS_NUM_THREADS=1 python benchmarks/van_capacity.py --model mapk --time 5 --hidden 2 4 8
    OPENBLAS_NUM_THREADS=1 python benchmarks/van_capacity.py --model mapk --time 25 --hidden 2 8 \
        --covariances --ssa-cache DIR [--start CK]
    OPENBLAS_NUM_THREADS=1 python benchmarks/van_capacity.py --model schlogl3x3 --time 0.25 \
        --hidden 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

import cupyssa.models as models
from cupyssa.cme.start import fit_to_law
from cupyssa.cme.van import make_model

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import hellinger  # noqa: E402
from cme_accuracy import checkpoint_law, empirical_marginal, model_marginal, ssa_states  # noqa: E402
from van_moment_velocity import converted_pairs, moments  # noqa: E402

#: model and the species reported (those of the cme_accuracy comparisons)
CASES = {
    "mapk": (models.mapk_cascade, ("S", "KKK", "C1", "KKKp", "KKpp", "Kpp")),
    "schlogl3x3": (lambda: models.schlogl_paper((3, 3)), None),  # None: every species
}


def covariance_line(species, pairs, x, other=None) -> str:
    """``"A-B c (c')"`` for each pair ``(i, j)``: the covariance of columns ``i, j`` of the
    states ``x`` [N, S] (and of ``other``)."""
    def covs(y):
        return moments(y, pairs)[2 * len(species):]

    alt = None if other is None else covs(other)
    return ", ".join(f"{species[i]}-{species[j]} {c:.3f}" + ("" if alt is None else f" ({alt[k]:.3f})")
                     for k, ((i, j), c) in enumerate(zip(pairs, covs(x))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(CASES), default="mapk")
    ap.add_argument("--time", type=float, required=True)
    ap.add_argument("--hidden", type=int, nargs="+", default=[8], help="NADE widths to fit")
    ap.add_argument("--output-degree", type=int, default=None,
                    help="NADE output_degree of the fitted networks (default: free V)")
    ap.add_argument("--start", default=None, metavar="CK",
                    help="start each fit from the law a solve's checkpoint holds at --time (one "
                         "of its t_eval; the network as it defined it, widened to each --hidden "
                         "by NADE.widened: the same law), not from a new network: does the fit "
                         "improve on the solve's law?")
    ap.add_argument("--n-fit", type=int, default=20_000, help="SSA trajectories fitted (seed 1)")
    ap.add_argument("--n-ref", type=int, default=10_000,
                    help="SSA trajectories compared with (seed 0)")
    ap.add_argument("--iters", type=int, default=300, help="L-BFGS iterations")
    ap.add_argument("--ssa-cache", default=None, metavar="DIR",
                    help="keep the SSA states in DIR and reuse them (as cme_accuracy.py does)")
    ap.add_argument("--covariances", action="store_true",
                    help="also the covariances of the converted pairs and the reference states' "
                         "mean log-likelihood under each fit")
    ap.add_argument("--n-moments", type=int, default=100_000,
                    help="states drawn from a fit for its covariances")
    args = ap.parse_args(argv)

    build, shown = CASES[args.model]
    m = build()
    species = list(m.network.species)
    shown = shown or species
    caps = np.array([m.metadata["caps"][s] for s in species])
    start = time.perf_counter()
    fit_x = ssa_states(m, [args.time], args.n_fit, args.ssa_cache, seed=1)[:, 0]
    ref_x = ssa_states(m, [args.time], args.n_ref, args.ssa_cache, seed=0)[:, 0]
    inside = np.all(fit_x < caps, axis=1)  # the network lives in the box; the SSA chain does not
    states, counts = np.unique(fit_x[inside], axis=0, return_counts=True)
    print(f"{args.model} at t = {args.time}: SSA {args.n_fit} + {args.n_ref} trajectories in "
          f"{time.perf_counter() - start:.1f} s; {len(states)} distinct states fitted, "
          f"{np.sum(~inside)} outside the box left out")
    columns = {s: species.index(s) for s in shown}
    refs = {s: empirical_marginal(ref_x[:, i], caps[i]) for s, i in columns.items()}
    floor = {s: round(hellinger(empirical_marginal(fit_x[:, i], caps[i]), refs[s]), 4)
             for s, i in columns.items()}
    print(f"  SSA histogram vs SSA histogram (Hellinger): {floor}", flush=True)
    pairs = converted_pairs(m.network) if args.covariances else []
    if pairs:
        print("  covariances of the reference (fitted) trajectories: "
              + covariance_line(species, pairs, ref_x, fit_x), flush=True)
    for H in args.hidden:
        if args.start:
            law, _ = checkpoint_law(args.start, caps, at_time=args.time,
                                    output_degree=args.output_degree)
            net = law.widened(H, rng=np.random.default_rng(0))
        else:
            net = make_model("nade", caps, np.random.default_rng(0), hidden=H,
                             output_degree=args.output_degree)
        start = time.perf_counter()
        kl = fit_to_law(net, states, counts.astype(float), max_iter=args.iters)
        parts = []
        for s, i in columns.items():
            p = model_marginal(net, i)
            parts.append(f"{s} {np.arange(len(p)) @ p:.3f} vs {ref_x[:, i].mean():.3f} "
                         f"({hellinger(p, refs[s]):.4f})")
        print(f"  hidden {H} ({net.n_params} parameters), KL(empirical || fit) {kl:.3f} nats, "
              f"{time.perf_counter() - start:.0f} s; mean fit vs SSA (Hellinger): "
              + "; ".join(parts), flush=True)
        if pairs:
            drawn = net.sample(args.n_moments, np.random.default_rng(11))[0]
            lp = net.log_prob(ref_x[np.all(ref_x < caps, axis=1)])
            print(f"    covariances of the fit: {covariance_line(species, pairs, drawn)}; "
                  f"reference states' mean log P {lp.mean():.3f} +- "
                  f"{lp.std() / np.sqrt(len(lp)):.3f}", flush=True)


if __name__ == "__main__":
    main()
