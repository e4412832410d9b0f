"""Plots of the reversible dimerization 2A <-> B: sample trajectories, mean ± sd, the marginal
of A against the exact FSP law, and the history of a small fit.

    python examples/plot_dimerization.py [--trajectories 4000] [--A0 300] [--out-dir .]

Writes ``dimerization_trajectories.png``, ``dimerization_mean_sd.png``,
``dimerization_marginal.png`` and ``dimerization_fit_history.png``. The fit recovers
``(k1, k2)`` from the SSA ensemble mean of ``A`` by Adam on the log rates, with exact
gradients of the FSP mean (``fsp(..., sensitivities=True).d_mean()``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import cupyssa as cs  # noqa: E402
from cupyssa import plot  # noqa: E402


def fit_rates(model, t_eval, target_mean_A, start, iterations=40, lr=0.1, beta1=0.5):
    """Adam on log(k1, k2) minimising the mean squared error of the FSP mean of A."""
    logk = np.log(np.asarray(start, dtype=float))
    m = np.zeros(2)
    v = np.zeros(2)
    history = []
    for it in range(iterations):
        k = np.exp(logk)
        res = cs.cme.fsp(model, t_eval=t_eval, params={"k1": k[0], "k2": k[1]}, sensitivities=True)
        resid = res.mean()[:, 0] - target_mean_A
        loss = float(np.mean(resid ** 2))
        grad_k = 2 * np.mean(resid[:, None] * res.d_mean()[:, 0, :], axis=0)
        grad = grad_k * k  # chain rule to log k
        history.append({"iteration": it, "loss": loss, "k1": k[0], "k2": k[1]})
        m = beta1 * m + (1 - beta1) * grad
        v = 0.999 * v + 0.001 * grad ** 2
        logk -= lr * (m / (1 - beta1 ** (it + 1))) / (np.sqrt(v / (1 - 0.999 ** (it + 1))) + 1e-12)
    return history


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=4000)
    parser.add_argument("--A0", type=int, default=300, help="initial A (FSP cost grows with it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=".")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    model = cs.models.dimerization(A0=args.A0)      # k1 = 1e-3, k2 = 0.1, B0 = 0
    t_eval = np.linspace(0.0, 20.0, 41)
    res = cs.simulate(model, t_eval=t_eval, n_trajectories=args.trajectories, seed=args.seed)
    exact = cs.cme.fsp(model, t_eval=t_eval)        # A0/2 + 1 reachable states (A + 2B = A0)

    fig, ax = plt.subplots(figsize=(6, 4))
    plot.plot_trajectories(res, n=8, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "dimerization_trajectories.png", dpi=120)

    fig, ax = plt.subplots(figsize=(6, 4))
    plot.plot_mean_sd(res, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "dimerization_mean_sd.png", dpi=120)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    plot.plot_marginal(res, "B", 4, reference=exact, ax=axes[0])      # t = 2, transient
    plot.plot_marginal(res, "A", -1, reference=exact, ax=axes[1])     # t = 20 (A stays even)
    fig.tight_layout()
    fig.savefig(out / "dimerization_marginal.png", dpi=120)

    history = fit_rates(model, t_eval, res.mean()[:, 0], start=(2e-3, 0.05))
    loss_ax, par_ax = plot.plot_fit_history(history)
    par_ax.set_yscale("log")
    par_ax.figure.tight_layout()
    par_ax.figure.savefig(out / "dimerization_fit_history.png", dpi=120)
    last = history[-1]
    print(f"fit: k1 = {last['k1']:.3g} (true 1e-3), k2 = {last['k2']:.3g} (true 0.1), "
          f"loss {history[0]['loss']:.3g} -> {last['loss']:.3g}")
    print(f"wrote 4 PNG files to {out.resolve()}")


if __name__ == "__main__":
    main()
