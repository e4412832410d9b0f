"""Fit the two rate constants of immigration-death to mean/variance data by gradient descent.

``0 -> X`` at rate k, ``X -> 0`` at rate g X, X(0) = 0. Synthetic data: the mean and variance of
X at t = 2, 4, ..., 30, estimated from ``--data-trajectories`` exact SSA trajectories simulated
with the true parameters (k=10, g=0.1). The fit starts far away (k=3, g=0.3: a stationary mean
k/g of 10 instead of 100 and a relaxation three times too fast) and minimises the standardised
moment mismatch (``cs.losses.MomentMismatch``)

    L(k, g) = sum_t (E[X_t] - m_t)^2 / v_t + (Var[X_t] - v_t)^2 / (2 v_t^2)

(``m_t``, ``v_t``: the data's mean and variance) by Adam on (log k, log g), with a fresh ensemble
of ``--trajectories`` exact trajectories and its gradient from ``cs.value_and_grad`` (the package
defaults: straight-through estimator, kernel observations, temperature 0.1) at every iteration.
The step size decays geometrically from ``--lr`` to ``--lr-final``; the estimate is the geometric
mean of the last 20 iterates. The loss has a long shallow valley along k/g = const (only the
early times inform g), hence the many small steps and Adam's short second-moment memory.

Usage::

    python examples/fit_immigration_death.py            # ~10 s on 2 cores: within ~1-2 % of k, g
    python examples/fit_immigration_death.py --iterations 300 --trajectories 2000 --lr-final 0.01
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cupyssa as cs

TRUE = {"k": 10.0, "g": 0.1}


def adam(lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """A plain Adam optimizer: ``step(x, grad, lr_scale) -> x``."""
    state = {"m": 0.0, "v": 0.0, "t": 0}

    def step(x, grad, lr_scale=1.0):
        state["t"] += 1
        state["m"] = beta1 * state["m"] + (1 - beta1) * grad
        state["v"] = beta2 * state["v"] + (1 - beta2) * grad * grad
        m_hat = state["m"] / (1 - beta1 ** state["t"])
        v_hat = state["v"] / (1 - beta2 ** state["t"])
        return x - lr * lr_scale * m_hat / (np.sqrt(v_hat) + eps)

    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=120)
    ap.add_argument("--trajectories", type=int, default=400, help="per gradient (default 400)")
    ap.add_argument("--data-trajectories", type=int, default=20_000)
    ap.add_argument("--lr", type=float, default=0.1, help="Adam step size in log-parameter space")
    ap.add_argument("--beta2", type=float, default=0.9,
                    help="Adam's second-moment decay (0.9: forgets the large early gradients "
                         "within ~20 iterations; the usual 0.999 keeps the late steps tiny)")
    ap.add_argument("--lr-final", type=float, default=0.03, help="step size at the last iteration")
    ap.add_argument("--start", type=float, nargs=2, default=(3.0, 0.3), metavar=("K", "G"))
    ap.add_argument("--width", type=float, default=None,
                    help="half-width of the kernel observation window (default: the package's, "
                         "a quarter of the grid spacing = 0.5)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    model = cs.models.immigration_death(**TRUE)
    t_eval = np.linspace(2.0, 30.0, 15)
    t0 = time.perf_counter()

    # synthetic data: moments of exact trajectories with the true parameters
    data = cs.simulate(model, t_eval=t_eval, n_trajectories=args.data_trajectories,
                       seed=10_000 + args.seed)
    X = data.states[:, :, 0].astype(float)
    mean_data, var_data = X.mean(0)[:, None], X.var(0)[:, None]
    print(f"data: {args.data_trajectories} trajectories, k={TRUE['k']}, g={TRUE['g']}; "
          f"mean(t=30) = {mean_data[-1, 0]:.2f}, var(t=30) = {var_data[-1, 0]:.2f}")
    # standardised residuals: a sample mean has variance sigma^2 / n, a sample variance about
    # 2 sigma^4 / n, so weight the squared mismatches by 1 / sigma^2 and 1 / (2 sigma^4); without
    # it the plateau (large counts) dominates and the relaxation rate (early times) is barely seen
    loss = cs.losses.MomentMismatch(mean_data, var_data, mean_weight=1.0 / var_data,
                                    var_weight=0.5 / var_data ** 2)

    names = ["k", "g"]
    log_theta = np.log(np.array(args.start, dtype=float))
    step = adam(args.lr, beta2=args.beta2)
    history = []
    print(f"{'it':>4} {'loss':>12} {'k':>9} {'g':>9}")
    for it in range(args.iterations):
        params = dict(zip(names, np.exp(log_theta)))
        value, grad = cs.value_and_grad(loss, model, t_eval=t_eval, params=params,
                                        n_trajectories=args.trajectories,
                                        seed=args.seed * 100_003 + it, width=args.width)
        g_log = np.array([grad.log_grad(params)[n] for n in names])  # dL/dlog theta
        history.append(np.exp(log_theta))
        print(f"{it:4d} {value:12.4g} {params['k']:9.4f} {params['g']:9.5f}", flush=True)
        # step size decays geometrically to --lr-final by the last iteration
        decay = (args.lr_final / args.lr) ** (it / max(1, args.iterations - 1))
        log_theta = step(log_theta, g_log, decay)

    tail = np.array(history[-max(1, min(20, len(history) // 4)):])
    est = np.exp(np.log(tail).mean(0))
    err = est / np.array([TRUE[n] for n in names]) - 1
    print(f"estimate (geometric mean of the last {len(tail)} iterates): k = {est[0]:.3f} "
          f"({100 * err[0]:+.1f} %), g = {est[1]:.4f} ({100 * err[1]:+.1f} %); "
          f"true k = {TRUE['k']}, g = {TRUE['g']}; {time.perf_counter() - t0:.1f} s")
    return est


if __name__ == "__main__":
    main()
