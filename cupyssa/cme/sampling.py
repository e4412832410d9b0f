"""Importance sampling for autoregressive models: Pareto-smoothed weights, effective sample size
and estimators of the probability of a region (rare events).

Proposals are those of :meth:`AutoregressiveModel.sample`: per conditional
``q_i = (1 - eps) softmax(alpha * logits_i) + eps * uniform`` (``alpha < 1`` flattens, ``eps > 0``
guarantees every state has ``q > 0``), optionally restricted to a box.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

__all__ = ["psis", "effective_sample_size", "RegionEstimate", "region_probability"]


def effective_sample_size(weights) -> float:
    """Kish's ``ESS = (sum w)^2 / sum w^2`` of non-negative weights ``[N]``."""
    w = np.asarray(weights, dtype=float)
    s = w.sum()
    return float(s * s / np.sum(w * w)) if s > 0 else 0.0


def _gpd_fit(x):
    """Zhang & Stephens (2009) posterior-mean fit of a generalized Pareto distribution to the
    sorted positive exceedances ``x``, with the weakly informative prior on the shape used by
    Vehtari et al. (PSIS). Returns ``(k, sigma)``."""
    n = x.size
    m = 30 + int(np.sqrt(n))
    b = 1.0 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    b = b / (3.0 * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    k = np.log1p(-b[:, None] * x).mean(axis=1)
    # a grid point with k_j = 0 exactly (b_j = 0, or a coincidence of the grid with tied
    # exceedances) has no profile likelihood: it gets no weight
    with np.errstate(divide="ignore", invalid="ignore"):
        L = n * (np.log(-b / k) - k - 1.0)
    L[~np.isfinite(L)] = -np.inf
    # posterior weights of the grid points, w_j = exp(L_j) / sum_i exp(L_i), as a softmax: the
    # profile log-likelihoods L (n times a per-exceedance term) of a long tail differ by far
    # more than 709, where the ratios exp(L_i - L_j) overflow
    w = np.exp(L - L.max())
    w /= w.sum()
    keep = w >= 10 * np.finfo(float).eps
    w, b = w[keep] / w[keep].sum(), b[keep]
    b_post = np.sum(b * w)
    k_post = np.log1p(-b_post * x).mean()
    sigma = -k_post / b_post
    k_post = (n * k_post + 10 * 0.5) / (n + 10)
    return k_post, sigma


def _gpd_quantile(p, k, sigma):
    if abs(k) < 1e-12:
        return -sigma * np.log1p(-p)
    return sigma * np.expm1(-k * np.log1p(-p)) / k


def psis(log_weights):
    """Pareto-smoothed importance sampling (Vehtari, Simpson, Gelman, Yao & Gabry, 2015/2024).

    The ``M = min(N/5, 3 sqrt(N))`` largest raw weights are replaced by the expected order
    statistics of a generalized Pareto distribution fitted to them, and truncated at the largest
    raw weight.

    Parameters
    ----------
    log_weights : [N] array (unnormalized ``log p - log q``; ``-inf`` allowed)

    Returns
    -------
    log_w : [N] smoothed log-weights normalized to ``logsumexp = 0``
    khat : float
        Estimated Pareto shape: ``< 0.5`` reliable, ``0.5 .. 0.7`` usable, ``> 0.7`` unreliable;
        ``inf`` when there are too few finite weights to fit a tail, ``-inf`` when the largest
        weights are all equal (a bounded tail, left as it is).
    """
    lw = np.array(log_weights, dtype=float)
    N = lw.size
    finite = np.isfinite(lw)
    lw = lw - lw[finite].max()
    lw[~finite] = -np.inf
    tail_len = int(np.ceil(min(0.2 * N, 3 * np.sqrt(N))))
    order = np.argsort(lw)
    khat = np.inf
    if tail_len >= 5 and finite.sum() > tail_len + 1:
        cutoff = max(lw[order[-tail_len - 1]], np.log(np.finfo(float).tiny))
        tail = order[-tail_len:]
        tail = tail[lw[tail] > cutoff]
        if lw[order[-1]] <= (lw[tail[0]] if tail.size else cutoff):
            # the largest weights tie (one state drawn many times, as right after a point-mass
            # start): the tail is bounded, not heavy, and already what smoothing would make it
            khat = -np.inf
        elif tail.size >= 5:
            x = np.exp(lw[tail]) - np.exp(cutoff)
            khat, sigma = _gpd_fit(x)
            if np.isfinite(khat):
                p = (np.arange(tail.size) + 0.5) / tail.size
                lw[tail] = np.log(_gpd_quantile(p, khat, sigma) + np.exp(cutoff))
                lw = np.minimum(lw, 0.0)
    m = lw[np.isfinite(lw)].max()
    lw = lw - (m + np.log(np.exp(lw - m).sum()))
    return lw, float(khat)


@dataclass
class RegionEstimate:
    """Estimate of ``P(n in region)``.

    Attributes
    ----------
    probability : float
    stderr : float
        Monte-Carlo standard error (delta method for self-normalized estimators).
    ess : float
        Effective sample size of the weights.
    khat : float
        PSIS Pareto shape (``nan`` when not applicable).
    n_hits : int
        Samples that fell in the region.
    n_samples : int
    method : str
    """

    probability: float
    stderr: float
    ess: float
    khat: float
    n_hits: int
    n_samples: int
    method: str

    def __float__(self) -> float:
        return self.probability


def region_probability(model, region, n_samples: int, rng: np.random.Generator,
                       method: str = "auto", alpha: float = 0.5, eps: float = 0.05,
                       species: tuple | None = None) -> RegionEstimate:
    """``P_theta(n in region)`` for an autoregressive model.

    Parameters
    ----------
    model : AutoregressiveModel
    region : mapping species -> (lo, hi), or callable ``states [N, S] -> bool [N]``
        A box (inclusive bounds; unnamed species are unconstrained) or a predicate.
    method : {"auto", "box", "tempered", "plain"}
        ``box`` (boxes only; the default for them): sample each ``n_i`` from the model's own
        conditional restricted to ``[lo_i, hi_i]``; the weight ``prod_i P(lo_i <= n_i <= hi_i |
        n_<i)`` is an unbiased estimator of the box probability (exact for one species).
        ``tempered`` (the default for predicates): proposal with ``alpha``/``eps``, PSIS-smoothed
        self-normalized weights. ``plain``: the fraction of exact samples in the region.
    species : names of the model's species (needed for a mapping region)
    """
    if isinstance(region, Mapping):
        lo = np.zeros(model.S, np.int64)
        hi = model.caps - 1
        names = list(species) if species is not None else [str(i) for i in range(model.S)]
        for name, (a, b) in region.items():
            i = names.index(name) if not isinstance(name, (int, np.integer)) else int(name)
            lo[i], hi[i] = max(int(a), 0), min(int(b), int(model.caps[i]) - 1)

        def predicate(n):
            return np.all((n >= lo) & (n <= hi), axis=1)
        is_box = True
    elif callable(region):
        predicate, is_box = region, False
    else:
        raise TypeError("region must be a mapping species -> (lo, hi) or a callable on states")
    if method == "auto":
        method = "box" if is_box else "tempered"
    N = int(n_samples)
    if method == "box":
        if not is_box:
            raise ValueError("method='box' needs a box region (mapping species -> (lo, hi))")
        if np.any(lo > hi):
            return RegionEstimate(0.0, 0.0, float(N), float("nan"), 0, N, "box")
        n, log_p, log_q = model.sample(N, rng, lo=lo, hi=hi)
        w = np.exp(log_p - log_q)  # prod_i P(n_i in [lo_i, hi_i] | n_<i)
        return RegionEstimate(float(w.mean()), float(w.std(ddof=1) / np.sqrt(N)) if N > 1 else 0.0,
                              effective_sample_size(w), float("nan"), N, N, "box")
    if method == "plain":
        n, _, _ = model.sample(N, rng)
        hit = predicate(n)
        p = hit.mean()
        return RegionEstimate(float(p), float(np.sqrt(p * (1 - p) / N)), float(N), float("nan"),
                              int(hit.sum()), N, "plain")
    if method == "tempered":
        n, log_p, log_q = model.sample(N, rng, alpha=alpha, eps=eps)
        log_w, khat = psis(log_p - log_q)
        w = np.exp(log_w)
        hit = predicate(n).astype(float)
        p = float(np.sum(w * hit))
        # delta-method standard error of the self-normalized estimator
        se = float(np.sqrt(np.sum(w ** 2 * (hit - p) ** 2)))
        return RegionEstimate(p, se, effective_sample_size(w), khat, int(hit.sum()), N, "tempered")
    raise ValueError(f"unknown method {method!r}; choose 'auto', 'box', 'tempered' or 'plain'")


Predicate = Callable[[np.ndarray], np.ndarray]
