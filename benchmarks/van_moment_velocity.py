"""Does a VAN step move the law as the CME does? Moment velocities of a few steps against exact ones.

A solve can stall or drift although every step fits its samples: the fitted change of
``log P`` is right at the samples and wrong in the directions that matter between them. This
script measures that directly, without a reference solution. From a law ``P`` held by a network
(a checkpoint of a solve, ``solve(checkpoint=...)``), the exact CME gives the velocity of every
moment. For the means and second moments under the reflecting box,

    d E[x_i] / dt     = E[ sum_k a_k(x) s_ki ],
    d E[x_i x_j] / dt = E[ sum_k a_k(x) (x_i s_kj + x_j s_ki + s_ki s_kj) ],

(``a_k`` switched off where ``x + s_k`` leaves the box), from which those of the variances and
covariances follow, ``d cov_ij/dt = d E[x_i x_j]/dt - mu_i d mu_j/dt - mu_j d mu_i/dt``. They are
averages over ``--n-moments`` states drawn from ``P``. The VAN's velocities are the changes of the
same moments over ``--horizon`` time units of ``solve`` from ``P``, divided by the horizon, with
the moments of the law before and after taken on the same uniforms (common random numbers), so
their difference carries little sampling noise. A step that reproduces the dynamics gives the
exact velocities up to its Monte-Carlo error; one that stalls gives values near 0.

Reported: the mean over species of the velocities of the means and of the variances, and the
velocity of the covariance of each pair that a reaction converts into one another
(``s_k = -e_i + e_j``: lattice neighbours by diffusion, phosphorylation states by a
phosphatase); ``--per-species`` adds each species' mean velocity. Over one step the moments
change little, so with a small step (MAPK, ``dt`` 0.025) run several (``--horizon``) before
reading the variances.

Usage (the checkpoint of a 3x3 Schlögl solve; each JSON overrides ``solve`` keywords)::

    OPENBLAS_NUM_THREADS=1 python benchmarks/van_moment_velocity.py --model schlogl3x3 \
        --checkpoint ck.npz '{}' '{"damping": 1e-7}' '{"alpha": 1, "eps": 0}'

With no JSON, only the law's moments; ``--ssa DIR`` adds those of the SSA states that
``cme_accuracy.py --ssa-cache DIR`` keeps, at the law's time (``--at K``: ``t_eval[K]``)::

    python benchmarks/van_moment_velocity.py --checkpoint ck.npz --at 3 --output-degree 2 \
        --per-species --ssa DIR
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cme_accuracy import checkpoint_law, ssa_states  # noqa: E402

#: model, and the solve keywords of its accuracy runs (benchmarks/RESULTS.md) that the JSON
#: arguments override
CASES = {
    "schlogl3x3": (lambda: models.schlogl_paper((3, 3)),
                   dict(n_samples=2000, dt=5e-4, eps=0.02, alpha=0.5,
                        integrator="implicit")),
    "mapk": (models.mapk_cascade,
             dict(n_samples=2000, dt=0.05, eps=0.0, alpha=0.5, integrator="implicit")),
}


def converted_pairs(network):
    """``(i, j)`` pairs, ``i < j``, that some reaction converts into one another
    (``s_k = -e_i + e_j`` or its reverse)."""
    out = set()
    for row in np.asarray(network.stoichiometry):
        nz = np.flatnonzero(row)
        if len(nz) == 2 and sorted(row[nz]) == [-1, 1]:
            out.add((int(nz[0]), int(nz[1])))
    return sorted(out)


def moments(x, pairs):
    """``[mu (S), var (S), cov (pairs)]`` of the states ``x`` [N, S]."""
    c = x - x.mean(axis=0)
    return np.concatenate([x.mean(axis=0), x.var(axis=0),
                           [np.mean(c[:, i] * c[:, j]) for i, j in pairs]])


def exact_velocities(network, theta, caps, x, pairs):
    """The CME's ``d/dt`` of :func:`moments` at the law whose samples are ``x`` [N, S], and
    the standard errors of the means' velocities."""
    nu = np.asarray(network.stoichiometry, dtype=float)  # [K, S]
    a = network.propensities(x, theta)
    after = x[:, None, :] + nu[None]
    a = np.where(np.all((after >= 0) & (after < caps), axis=-1), a, 0.0)  # reflecting box
    drift = a @ nu  # [N, S]: E[.] of it is d mu / dt
    dmu = drift.mean(axis=0)
    mu = x.mean(axis=0)

    def second(i, j):  # d E[x_i x_j] / dt
        return np.mean(x[:, i] * drift[:, j] + x[:, j] * drift[:, i] + a @ (nu[:, i] * nu[:, j]))

    S = x.shape[1]
    dvar = [second(i, i) - 2 * mu[i] * dmu[i] for i in range(S)]
    dcov = [second(i, j) - mu[i] * dmu[j] - mu[j] * dmu[i] for i, j in pairs]
    return np.concatenate([dmu, dvar, dcov]), drift.std(axis=0) / np.sqrt(len(x))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="*", help="JSON: solve() keywords, one run each")
    ap.add_argument("--model", choices=sorted(CASES), default="schlogl3x3")
    ap.add_argument("--checkpoint", required=True,
                    help=".npz written by solve(checkpoint=...): the start law (its 'theta')")
    ap.add_argument("--horizon", type=float, default=None,
                    help="time the VAN runs (default: one step, the config's dt)")
    ap.add_argument("--output-degree", type=int, default=None,
                    help="NADE output_degree of the checkpoint's network (default: free V)")
    ap.add_argument("--at", type=int, default=None, metavar="K",
                    help="start from the law the checkpoint holds at t_eval[K] (default: the "
                         "last saved, its 'theta')")
    ap.add_argument("--per-species", action="store_true",
                    help="also print each species' mean and variance (velocities)")
    ap.add_argument("--ssa", metavar="DIR", default=None,
                    help="also the moments of the SSA states that cme_accuracy.py cached in DIR "
                         "(--ssa-cache) at the law's time, one of the checkpoint's t_eval[1:]")
    ap.add_argument("--ssa-trajectories", type=int, default=100_000,
                    help="how many trajectories that cache holds (cme_accuracy --full: 10^5)")
    ap.add_argument("--n-moments", type=int, default=200_000,
                    help="states drawn from each law for its moments")
    args = ap.parse_args(argv)

    build, defaults = CASES[args.model]
    m = build()
    net = m.network
    caps = np.array([m.metadata["caps"][s] for s in net.species])
    theta = net.parameter_vector(m.params)
    pairs = converted_pairs(net)
    S = len(caps)
    # the network as the solve defined it (its width from the parameter count)
    start, t0 = checkpoint_law(args.checkpoint, caps, at=args.at,
                               output_degree=args.output_degree)
    x = start.sample(args.n_moments, np.random.default_rng(11))[0]
    before = moments(x, pairs)
    exact, se = exact_velocities(net, theta, caps, x, pairs)
    names = [f"cov {net.species[i]}-{net.species[j]}" for i, j in pairs]
    print(f"{args.model}, the law of {args.checkpoint} at t = {t0:.4g}; {args.n_moments} states "
          f"per law; d/dt of the species-averaged mean and variance, then of the covariances")
    print(f"{'':44s} {'mean':>8s} {'var':>9s} " + " ".join(f"{n:>10s}" for n in names[:12]))

    def row(label, v, what="d mean/dt"):
        print(f"{label:44s} {v[:S].mean():8.3g} {v[S:2 * S].mean():9.3g} "
              + " ".join(f"{c:10.3g}" for c in v[2 * S:2 * S + 12]), flush=True)
        if args.per_species:
            print(f"{'':6s}{what}: " + " ".join(f"{n} {c:.4g}" for n, c in zip(net.species, v[:S])))
            print(f"{'':6s}{what.replace('mean', 'var')}: "
                  + " ".join(f"{n} {c:.4g}" for n, c in zip(net.species, v[S:2 * S])))

    row(f"exact CME (mean's SE {se.mean() / np.sqrt(S):.2f})", exact)
    row("law now (the moments themselves)", before, what="mean")
    if args.ssa:
        with np.load(args.checkpoint) as z:  # the benchmark's SSA times: the solve's t_eval[1:]
            ssa_times = [float(t) for t in z["t_eval"][1:]]
        if t0 not in ssa_times:
            raise SystemExit(f"--ssa: the law's time {t0} is not one of the SSA times {ssa_times}")
        states = ssa_states(m, ssa_times, args.ssa_trajectories, args.ssa)
        row(f"SSA, {args.ssa_trajectories} trajectories",
            moments(states[:, ssa_times.index(t0)], pairs), what="mean")
    for cfg in args.configs:
        kw = {**defaults, **json.loads(cfg)}
        horizon = args.horizon or kw["dt"]
        clock = time.perf_counter()
        sol = solve(m, t_eval=[t0, t0 + horizon], model=start, **kw)
        after = start.copy()
        after.theta = sol.thetas[-1]
        v = (moments(after.sample(args.n_moments, np.random.default_rng(11))[0], pairs)
             - before) / horizon
        row(f"VAN {cfg} ({sol.stats['steps']} steps, {time.perf_counter() - clock:.0f} s)", v)


if __name__ == "__main__":
    main()
