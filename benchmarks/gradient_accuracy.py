"""Gradient accuracy (issue 3): bias and variance of ``cupyssa.value_and_grad`` against exact
gradients, for every estimator x observation mode x temperature (x kernel width), on three models.

Targets (loss ``L = E[Y_s(t)]``, ``cs.losses.Mean`` with weight 1 on one species at one time):

* ``immigration_death``: ``0 -> X`` (k=10), ``X -> 0`` (g=0.1), X0=0, observe X at t=10; exact
  ``dE[X(t)]/d(k, g)`` from ``E[X(t)] = (k/g)(1 - e^{-gt})``.
* ``dimerization``: ``2A -> B`` (k1=0.01), ``B -> 2A`` (k2=0.1), A0=100, B0=0, observe B at
  t=0.5 (a transient); exact by FSP sensitivities (closed system: the whole reachable set).
* ``telegraph``: ``cs.models.telegraph()`` (binary promoter G0 <-> G1, mRNA M, dimer D), observe M
  and D at t=2 (two targets); exact by FSP sensitivities in the box G<=1, M<=60, D<=40.

Configurations: ``score`` (score function with the censored-interval term and a leave-one-out
baseline; ``fill`` observations: it is unbiased and needs no smoothing), and straight-through
``st`` with ``fill``, ``linear`` and ``kernel`` observations at temperatures ``--temperatures``;
``kernel`` at two window half-widths ``--widths`` (fractions of t; 0.05 t is the package default
for a single observation time). All configurations of one target use the same seed (common random
numbers: the same trajectories), so differences between rows are not sampling noise of the paths.

Columns (per parameter theta_p, estimate ``g`` = ``grad.vector`` with standard error ``se`` =
``grad.stderr_vector`` from the spread of the per-trajectory contributions, exact ``e``):

* relative bias ``(g - e) / |e|`` in %, with its standard error ``se / |e|``;
* relative SE per 10^4 trajectories ``se sqrt(N / 10^4) / |e|`` in % (the noise of one estimate
  from 10^4 trajectories);
* ``Σθ∂``: the estimate of ``sum_p theta_p dL/dtheta_p`` (the derivative along a common scaling of
  every rate constant, i.e. a rescaling of time, ``= t dE[Y(t)]/dt``) divided by its exact value:
  ``fill`` under ``st`` sees only the embedded jump chain, which is invariant to that scaling, so
  its per-trajectory contributions to this direction are exactly 0;
* ``top 0.1 %``: the share of the centred sum of squares ``sum_i (c_i - mean c)^2`` of the
  per-trajectory contributions ``c_i`` (``per_trajectory=True``) carried by the largest 0.1 % of
  them, the largest over the parameters (a Gaussian gives about 1.3 %: heavy tails show as tens of
  %, and then the SE itself is unreliable);
* ``s``: wall seconds of the ``value_and_grad`` call.

A parameter whose exact derivative is 0 (e.g. ``dE[M]/d gd``: D's degradation cannot affect M) is
reported in absolute units as ``(0) g ± se``.

For ``kernel`` rows the loss reads the state averaged against a biweight window of half-width w
around t, whose exact mean differs from ``E[Y(t)]`` by O(w^2); that part of the bias ("window
bias", exact, computed by Gauss-Legendre quadrature of the exact ``dE[Y(s)]/dtheta`` over the
window) is tabulated separately.

Usage::

    python benchmarks/gradient_accuracy.py                      # 10^5 trajectories/row, ~2-4 min
    python benchmarks/gradient_accuracy.py --quick              # smoke run, < 1 min
    python benchmarks/gradient_accuracy.py --trajectories 100000 --models dimerization
    python benchmarks/gradient_accuracy.py --write benchmarks/GRADIENTS.md   # update the tables
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

import cupyssa as cs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _report import cpu_model, git_revision  # noqa: E402

TABLES_BEGIN = "<!-- gradient_accuracy tables: begin (generated) -->"
TABLES_END = "<!-- gradient_accuracy tables: end -->"
TELEGRAPH_BOUNDS = {"G0": 1, "G1": 1, "M": 60, "D": 40}


# -- exact references -----------------------------------------------------------------------------

def _id_dmean(k, g, s):
    """d E[X(s)] / d(k, g) for immigration-death from X(0) = 0, s array -> [len(s), 2]."""
    s = np.atleast_1d(np.asarray(s, dtype=float))
    e = np.exp(-g * s)
    return np.stack([(1 - e) / g, -(k / g ** 2) * (1 - e) + (k / g) * s * e], axis=1)


def _window_nodes(t, w, n=12):
    """Gauss-Legendre nodes on [t - w, t + w] and weights times the biweight density (sum 1)."""
    u, wq = np.polynomial.legendre.leggauss(n)
    dens = 0.9375 * (1 - u * u) ** 2
    return t + w * u, wq * dens


@dataclass
class Target:
    name: str
    model: object
    t: float
    species: str
    kind: str  # "analytic_id" or "fsp"

    def exact(self, widths=()):
        """(exact d E[Y(t)]/dtheta [P], {w: exact d E[window-averaged Y]/dtheta [P]})."""
        net = self.model.network
        times = [self.t]
        nodes = {}
        for w in widths:
            s, q = _window_nodes(self.t, w)
            nodes[w] = (s, q)
            times.extend(s.tolist())
        times = np.array(sorted(set(times)))
        if self.kind == "analytic_id":
            p = self.model.params
            d = _id_dmean(p["k"], p["g"], times)
            lost = 0.0
        else:
            kw = {"bounds": TELEGRAPH_BOUNDS} if self.name.startswith("telegraph") else {}
            res = cs.cme.fsp(self.model, t_eval=times, sensitivities=True, **kw)
            d = res.d_mean()[:, net.species.index(self.species)]
            lost = float(res.lost.max())
        at = {float(tt): d[i] for i, tt in enumerate(times)}
        point = at[float(self.t)]
        smoothed = {w: sum(qi * at[float(si)] for si, qi in zip(*nodes[w])) for w in widths}
        return point, smoothed, lost


def targets(selected):
    out = []
    if "immigration_death" in selected:
        out.append(Target("immigration_death", cs.models.immigration_death(k=10, g=0.1), 10.0, "X",
                          "analytic_id"))
    if "dimerization" in selected:
        out.append(Target("dimerization", cs.models.dimerization(k1=0.01, k2=0.1, A0=100, B0=0),
                          0.5, "B", "fsp"))
    if "telegraph" in selected:
        for s in ("M", "D"):
            out.append(Target(f"telegraph_{s}", cs.models.telegraph(), 2.0, s, "fsp"))
    return out


# -- the runs -------------------------------------------------------------------------------------

@dataclass
class Row:
    estimator: str
    observation: str
    temperature: float | None
    width: float | None
    vector: np.ndarray
    stderr: np.ndarray
    n: int
    seconds: float
    tail_share: float
    tail_param: str
    rescale_est: float  # sum_p theta_p g_p
    rescale_max_sample: float  # max_i |sum_p theta_p c_ip| / max_i max_p |theta_p c_ip|


def configurations(temperatures, width_fracs, t):
    yield "score", "fill", None, None
    for obs in ("fill", "linear", "kernel"):
        for wf in (width_fracs if obs == "kernel" else [None]):
            for T in temperatures:
                yield "st", obs, T, (None if wf is None else wf * t)


def tail_share(per, frac=1e-3):
    """Largest share over columns of the centred sum of squares carried by the top ``frac``."""
    c = per - per.mean(axis=0)
    sq = c * c
    k = max(1, int(round(frac * per.shape[0])))
    top = -np.sort(-sq, axis=0)[:k].sum(axis=0)
    tot = sq.sum(axis=0)
    share = np.where(tot > 0, top / np.where(tot > 0, tot, 1.0), 0.0)
    p = int(np.argmax(share))
    return float(share[p]), p


def run_target(target, N, seed, temperatures, width_fracs, verbose=True):
    net = target.model.network
    W = np.zeros((1, net.n_species))
    W[0, net.species.index(target.species)] = 1.0
    loss = cs.losses.Mean(W)
    theta = net.parameter_vector(target.model.params)
    rows = []
    for est, obs, T, w in configurations(temperatures, width_fracs, target.t):
        kw = dict(estimator=est, observation=obs, per_trajectory=True)
        if T is not None:
            kw["temperature"] = T
        if w is not None:
            kw["width"] = w
        t0 = time.perf_counter()
        _, g = cs.value_and_grad(loss, target.model, t_eval=[target.t], n_trajectories=N, seed=seed,
                                 **kw)
        dt = time.perf_counter() - t0
        per = g.per_trajectory
        share, p = tail_share(per)
        scaled = per * theta
        s_i = scaled.sum(axis=1)
        denom = np.abs(scaled).max()
        rows.append(Row(est, obs, T, w, g.vector.copy(), g.stderr_vector.copy(), N, dt, share,
                        net.parameters[p], float(theta @ g.vector),
                        float(np.abs(s_i).max() / denom) if denom > 0 else 0.0))
        if verbose:
            print(f"  {target.name:18s} {est:5s} {obs:6s} T={T!s:5s} w={w!s:6s} {dt:6.2f} s",
                  file=sys.stderr, flush=True)
    return rows


# -- formatting -----------------------------------------------------------------------------------

def _pct(x):
    return f"{100 * x:+.1f}"


def cell(g, se, e, N, scale):
    """``bias ± SE [SE per 10^4]`` in % of |exact|, or absolute for a zero exact value."""
    if abs(e) <= 1e-9 * scale:
        return f"(0) {g:+.3g} ± {se:.2g}"
    a = abs(e)
    return f"{_pct((g - e) / a)} ± {100 * se / a:.1f} [{100 * se * np.sqrt(N / 1e4) / a:.1f}]"


def config_label(r):
    T = "" if r.temperature is None else f"{r.temperature:g}"
    w = "" if r.width is None else f"{r.width:g}"
    return f"| {r.estimator} | {r.observation} | {T} | {w} "


def table(target, rows, exact, smoothed, lost, theta):
    net = target.model.network
    names = net.parameters
    scale = np.abs(exact).max()
    rescale_exact = float(theta @ exact)
    lines = [f"**{target.name}**: d E[{target.species}(t={target.t:g})] / dθ, N = {rows[0].n} "
             f"trajectories per row; exact: "
             + ", ".join(f"{n} = {e:.5g}" for n, e in zip(names, exact))
             + f"; Σθ∂ exact = {rescale_exact:.5g}"
             + ("" if target.kind == "analytic_id" else f" (FSP, lost mass {lost:.1e})"), ""]
    head = "| est. | obs. | T | w | " + " | ".join(f"{n}: bias % ± SE [SE/10⁴]" for n in names) \
        + " | Σθ∂ est/exact | top 0.1 % | s |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = " | ".join(cell(g, se, e, r.n, scale) for g, se, e in zip(r.vector, r.stderr, exact))
        ratio = r.rescale_est / rescale_exact if rescale_exact != 0 else float("nan")
        lines.append(f"{config_label(r)}| {cells} | {ratio:.3f} | {100 * r.tail_share:.1f} % "
                     f"({r.tail_param}) | {r.seconds:.1f} |")
    if smoothed:
        lines += ["", "Window bias of the kernel target (exact, % of |exact|): "
                  + "; ".join(f"w = {w:g}: " + ", ".join(
                      f"{n} {100 * (sm - e) / abs(e):+.2g}" if abs(e) > 1e-9 * scale else f"{n} (0)"
                      for n, sm, e in zip(names, s, exact)) for w, s in smoothed.items())]
    fill = [r for r in rows if r.estimator == "st" and r.observation == "fill"]
    if fill:
        worst = max(r.rescale_max_sample for r in fill)
        lines += ["", f"st/fill: max over trajectories of |Σ_p θ_p c_ip| / max |θ_p c_ip| = "
                  f"{worst:.1e} (per-trajectory contributions along the time-rescaling direction "
                  f"are zero to rounding)"]
    return "\n".join(lines)


def environment(args_line):
    cpu, rev = cpu_model(), git_revision()
    import numba
    return (f"Date {datetime.date.today().isoformat()}; machine: `nproc` = {os.cpu_count()}, CPU "
            f"`{cpu}`; Python {platform.python_version()}, NumPy {np.__version__}, Numba "
            f"{numba.__version__} with {numba.get_num_threads()} threads; cupyssa "
            f"{cs.__version__} at git {rev or '?'}. Command: `{args_line}`.")


def write_tables(path, text):
    old = open(path).read()
    a, b = old.find(TABLES_BEGIN), old.find(TABLES_END)
    if a < 0 or b < a:
        new = old.rstrip("\n") + "\n\n" + TABLES_BEGIN + "\n" + text + "\n" + TABLES_END + "\n"
    else:
        new = old[:a + len(TABLES_BEGIN)] + "\n" + text + "\n" + old[b:]
    with open(path, "w") as fh:
        fh.write(new)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="immigration_death,dimerization,telegraph")
    ap.add_argument("--trajectories", type=int, default=100_000, help="per row (default 10^5)")
    ap.add_argument("--temperatures", default="0.05,0.1,0.2,0.5,1.0")
    ap.add_argument("--widths", default="0.05,0.02",
                    help="kernel half-widths as fractions of t (default 0.05 = the package "
                         "default, and 0.02)")
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2000 trajectories, temperatures 0.1 and 1")
    ap.add_argument("--write", metavar="GRADIENTS.md",
                    help="replace the generated tables in this file (between its markers)")
    args = ap.parse_args(argv)
    if args.quick:
        args.trajectories = min(args.trajectories, 2000)
        args.temperatures = "0.1,1.0"
    temps = [float(x) for x in args.temperatures.split(",")]
    wfracs = [float(x) for x in args.widths.split(",")]
    selected = set(args.models.split(","))
    line = "python benchmarks/gradient_accuracy.py" + ("" if argv is None and len(sys.argv) < 2 else
                                                       " " + " ".join(sys.argv[1:] if argv is None
                                                                      else argv))
    t_start = time.perf_counter()
    # compile every kernel variant once before timing anything
    warm = cs.models.immigration_death()
    Wm = cs.losses.Mean(np.ones((1, 1)))
    for est, obs in (("score", "fill"), ("st", "fill"), ("st", "linear"), ("st", "kernel")):
        cs.value_and_grad(Wm, warm, t_eval=[1.0], n_trajectories=8, seed=0, estimator=est,
                          observation=obs)
    out = [environment(line), ""]
    for target in targets(selected):
        widths = [wf * target.t for wf in wfracs]
        exact, smoothed, lost = target.exact(widths)
        rows = run_target(target, args.trajectories, args.seed, temps, wfracs)
        theta = target.model.network.parameter_vector(target.model.params)
        text = table(target, rows, exact, smoothed, lost, theta)
        print(text + "\n", flush=True)
        out += [text, ""]
    total = time.perf_counter() - t_start
    out.append(f"Total wall time {total:.0f} s.")
    print(f"Total wall time {total:.0f} s.")
    if args.write:
        write_tables(args.write, "\n".join(out).rstrip("\n"))
        print(f"tables written to {args.write}")


if __name__ == "__main__":
    main()
