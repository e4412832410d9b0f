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

Why a step may stall: it reads the velocity off its batch through the local energy ``E(n)``,
whose ratios ``P(n - s_k) / P(n)`` are large at the few states where the law is too thin for the
flow into them (``Cov_P(x_i, E)`` is the exact velocity, see :func:`ratio_velocities`). When
``E`` is heavy-tailed, a batch of a step's size mostly misses those states and sees a fraction
of the velocity. ``--subset N`` prints ``E``'s quantiles and the spread of ``Cov(x, E)`` over
batches of ``N`` states beside the drift formula, which has no ratios. ``--widen H`` takes the
steps in a wider network holding the same law (does the width matter?)::

    python benchmarks/van_moment_velocity.py --model mapk --checkpoint ck.npz --at 1 \
        --horizon 1 --subset 2700 --widen 16 '{"n_samples": 5000, "dt": 0.25, "alpha": 1}'

Where a batch's view falls short: ``--inflow N`` estimates ``Cov_P(x_i, E)`` on ``N`` states
drawn where the chain's jumps land (:func:`jump_successors`, :func:`inflow_velocities`), which
has no heavy tail, and splits it by how far each state's inflow exceeds its outflow: the part
near balance is what steps see, the rest lies in states the law holds below the flow into them.
``--pushed`` carries the law's states forward by the package's SSA over ``--horizon``
(:func:`pushed_velocities`): the CME's own motion of the law, without ratios and without
linearization in time, to tell a persistent velocity from a fast transient of the tails::

    python benchmarks/van_moment_velocity.py --model mapk --checkpoint ck.npz --at 1 \
        --horizon 1 --n-moments 100000 --inflow 100000 --pushed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

import cupyssa.models as models
from cupyssa import simulate
from cupyssa.cme import solve
from cupyssa.cme.moments import box_propensities
from cupyssa.cme.van import local_energy

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
    a = box_propensities(network, theta, caps, x)
    drift = a @ nu  # [N, S]: E[.] of it is d mu / dt
    dmu = drift.mean(axis=0)
    mu = x.mean(axis=0)

    def second(i, j):  # d E[x_i x_j] / dt
        return np.mean(x[:, i] * drift[:, j] + x[:, j] * drift[:, i] + a @ (nu[:, i] * nu[:, j]))

    S = x.shape[1]
    dvar = [second(i, i) - 2 * mu[i] * dmu[i] for i in range(S)]
    dcov = [second(i, j) - mu[i] * dmu[j] - mu[j] * dmu[i] for i, j in pairs]
    return np.concatenate([dmu, dvar, dcov]), drift.std(axis=0) / np.sqrt(len(x))


#: states per call of local_energy in ratio_velocities
_ENERGY_BLOCK = 20_000


def ratio_velocities(law, network, theta, x, w=None):
    """The means' velocities as a TDVP step sees them, ``Cov_w(x_i, E)`` [S], on the states
    ``x`` [N, S] with weights ``w`` (default uniform), ``E`` the local energy
    (:func:`cupyssa.cme.van.local_energy`).

    Under the law itself (``w = P`` over the whole box) this is the exact velocity: summing
    ``E(n) P(n) = (W P)(n)`` by parts gives ``sum_n x_i (W P)(n) = E_P[sum_k a_k(x) s_ki]``, the
    drift of :func:`exact_velocities`. A step's fit reads the velocity off its batch this way,
    through the ratios ``P(n - s_k) / P(n)`` in ``E``, where the drift formula has none."""
    w = np.full(len(x), 1.0 / len(x)) if w is None else np.asarray(w, dtype=float)
    E = _energies(law, network, theta, x)
    return _covariance_with(x, E, w), E


def _energies(law, network, theta, x):
    """:func:`~cupyssa.cme.van.local_energy` of the states ``x`` [N, S], taken by blocks: the
    predecessors of 2 * 10^5 MAPK states and their hidden units filled 22 GB at once."""
    return np.concatenate([local_energy(law, network, theta, x[lo:lo + _ENERGY_BLOCK])
                           for lo in range(0, len(x), _ENERGY_BLOCK)])


def _covariance_terms(x, E, w):
    """``[N, S]``: each state's term of ``Cov_w(x_i, E)`` (states ``x`` [N, S], energies ``E``
    [N], weights ``w``); they sum to it."""
    return (w * (E - w @ E))[:, None] * (x - w @ x)


def _covariance_with(x, E, w):
    """``Cov_w(x_i, E)`` [S] of the states ``x`` [N, S] with energies ``E`` [N], weights ``w``."""
    return _covariance_terms(x, E, w).sum(axis=0)


def jump_successors(network, theta, caps, x, rng):
    """``N`` draws of the law ``Q`` of where the chain's jumps land, from states ``x`` [N, S] of
    ``P``: each a parent ``m`` drawn from ``x`` with probability ``∝ a_0(m)``, then reaction ``k``
    with probability ``a_k(m) / a_0(m)`` (reactions leaving the box switched off), so that

        Q(n) = sum_k a_k(n - s_k) P(n - s_k) / Z,   Z = E_P[a_0].

    Returns the successors ``m + s_k`` [N, S] and the sample estimate of ``Z``."""
    nu = np.asarray(network.stoichiometry)
    a = box_propensities(network, theta, caps, x)
    a0 = a.sum(axis=1)
    parent = rng.choice(len(x), size=len(x), p=a0 / a0.sum())
    c = np.cumsum(a[parent], axis=1)
    k = np.minimum(np.sum(c < (rng.random(len(x)) * c[:, -1])[:, None], axis=1), len(nu) - 1)
    return x[parent] + nu[k], a0.mean()


#: the imbalances ``I / a_0`` at which :func:`inflow_velocities` splits the velocity
IMBALANCE_EDGES = (1.5, 5, 100)


def inflow_velocities(law, network, theta, caps, n, Z, q=None, edges=IMBALANCE_EDGES):
    """``Cov_P(x_i, E)`` [S] estimated on draws ``n`` [N, S] of ``Q`` (:func:`jump_successors`;
    or on any states ``n`` with their ``Q``-weights ``q``), and its parts [len(edges) + 1, S]
    from the states whose imbalance ``I / a_0`` falls between consecutive ``edges``, with the
    share of ``P``'s mass each part holds [len(edges) + 1].

    ``I(n) = E(n) + a_0(n) = sum_k a_k(n - s_k) P(n - s_k) / P(n)`` is the inflow ratio, so
    ``Q(n) / P(n) = I(n) / Z`` and ``E_Q[(Z / I) f] = E_P[f]``: the weights ``Z / I`` take ``Q``
    back to ``P``. Where the law is too thin for the flow into it, ``E`` is large and ``P``
    rarely draws those states, but ``Q`` draws them in proportion to that flow and the weights
    are small there (``Z E / I <= Z``): the estimate has no heavy tail. ``I / a_0`` is the flow
    into a state over the flow out of it, 1 where the law is in local balance, so the parts tell
    how much of the velocity lies in states the law holds below the balance of their inflow
    (those a batch of ``P`` misses)."""
    E = _energies(law, network, theta, n)
    a0 = box_propensities(network, theta, caps, n).sum(axis=1)
    inflow = E + a0
    w = (np.full(len(n), 1.0 / len(n)) if q is None else np.asarray(q, dtype=float)) * Z / inflow
    w /= w.sum()
    terms = _covariance_terms(n, E, w)
    with np.errstate(divide="ignore"):  # no outflow: the last part
        part = np.digitize(inflow / a0, edges)
    parts = np.stack([terms[part == b].sum(axis=0) for b in range(len(edges) + 1)])
    mass = np.array([w[part == b].sum() for b in range(len(edges) + 1)])
    return terms.sum(axis=0), parts, mass


def pushed_velocities(model, x, horizon, pairs, seed=13):
    """The CME's own motion of the law over ``horizon``: its states ``x`` [N, S] carried
    forward by the package's SSA (the chain itself: no box), ``(moments(x(horizon)) -
    moments(x)) / horizon`` (:func:`moments`), and the standard errors of the means' part.

    A reference without ratios and without linearization in time: it tells whether the exact
    velocities of a law persist over a step's horizon or are a fast transient of its tails
    (e.g. a tail far from the balance of the flow into it, which the chain would fill in a
    time ``1 / E``)."""
    later = simulate(model, x0=x, t_eval=[0.0, horizon], seed=seed).states[:, -1]
    v = (moments(later.astype(float), pairs) - moments(x.astype(float), pairs)) / horizon
    return v, (later - x).std(axis=0) / np.sqrt(len(x)) / horizon


def subset_spread(x, E, size, rng, n_subsets=200):
    """``[3, S]``: the 10 %, 50 % and 90 % quantiles of ``Cov(x_i, E)`` over ``n_subsets``
    subsets of ``size`` of the states ``x`` [N, S] (their energies ``E`` [N]), drawn without
    replacement: the velocities that batches of a step's size see."""
    uniform = np.full(size, 1.0 / size)
    out = np.empty((n_subsets, x.shape[1]))
    for r in range(n_subsets):
        i = rng.choice(len(x), size, replace=False)
        out[r] = _covariance_with(x[i], E[i], uniform)
    return np.quantile(out, [0.1, 0.5, 0.9], axis=0)


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
    ap.add_argument("--widen", type=int, default=None, metavar="H",
                    help="take the steps in a NADE of H units holding the same law "
                         "(NADE.widened): does a wider network move it as the CME does?")
    ap.add_argument("--subset", type=int, default=None, metavar="N",
                    help="also the means' velocities as batches of N states see them through "
                         "the local energy, Cov(x, E) (ratio_velocities), against the drift")
    ap.add_argument("--inflow", type=int, default=None, metavar="N",
                    help="also the means' velocities Cov_P(x, E) estimated on N states drawn "
                         "where the chain's jumps land (inflow_velocities), split by how far "
                         "below the balance of their inflow the law holds them")
    ap.add_argument("--pushed", action="store_true",
                    help="also the CME's motion of the law over --horizon: its states carried "
                         "forward by the package's SSA (pushed_velocities)")
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
    if args.pushed and args.horizon is None:
        raise SystemExit("--pushed needs --horizon: the time the SSA carries the law's states")

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
    if args.widen is not None:
        start = start.widened(args.widen, rng=np.random.default_rng(0))
    x = start.sample(args.n_moments, np.random.default_rng(11))[0]
    before = moments(x, pairs)
    exact, se = exact_velocities(net, theta, caps, x, pairs)
    names = [f"cov {net.species[i]}-{net.species[j]}" for i, j in pairs]
    print(f"{args.model}, the law of {args.checkpoint} at t = {t0:.4g} (NADE hidden {start.H}, "
          f"{start.n_params} parameters); {args.n_moments} states "
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
    if args.subset:
        by_ratios, E = ratio_velocities(start, net, theta, x)
        q = subset_spread(x, E, args.subset, np.random.default_rng(12))
        print(f"{'':6s}E(n) on the {len(x)} states: quantiles 50 / 90 / 99 / 99.9 % "
              + " / ".join(f"{e:.3g}" for e in np.quantile(E, [0.5, 0.9, 0.99, 0.999]))
              + f", max {E.max():.4g}")
        print(f"{'':6s}d mean/dt as Cov(x, E): species: drift, all states, subsets of "
              f"{args.subset}: 10 / 50 / 90 %")
        for i, name in enumerate(net.species):
            print(f"{'':8s}{name}: {exact[i]:.4g}, {by_ratios[i]:.4g}, "
                  + " / ".join(f"{v:.4g}" for v in q[:, i]))
    if args.inflow:
        successors, Z = jump_successors(net, theta, caps, x[:args.inflow],
                                        np.random.default_rng(14))
        total, parts, mass = inflow_velocities(start, net, theta, caps, successors, Z)
        print(f"{'':6s}d mean/dt as Cov(x, E) on {len(successors)} states where the jumps land "
              f"(weights Z / I, Z = {Z:.4g}), and its parts by the imbalance I / a_0 (P's mass "
              "in each):")
        e = IMBALANCE_EDGES
        bins = [f"< {e[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(e, e[1:])] + [f">= {e[-1]:g}"]
        print(f"{'':8s}{'species':8s} {'drift':>9s} {'total':>9s} "
              + " ".join(f"{b + f' ({m:.1e})':>18s}" for b, m in zip(bins, mass)))
        for i, name in enumerate(net.species):
            print(f"{'':8s}{name:8s} {exact[i]:9.4g} {total[i]:9.4g} "
                  + " ".join(f"{v:18.4g}" for v in parts[:, i]))
    if args.pushed:
        v, se_push = pushed_velocities(m, x, args.horizon, pairs)
        row(f"SSA from the law's states over {args.horizon} (SE {se_push.mean():.2g})", v)
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
