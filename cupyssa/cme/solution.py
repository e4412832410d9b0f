"""The result of a VAN solve: the distribution at each requested time, as an autoregressive
model that can be sampled and evaluated exactly."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .autoregressive import AutoregressiveModel
from .sampling import RegionEstimate, region_probability

__all__ = ["VANSolution"]


class VANSolution:
    """Distributions ``P_t`` at each time of ``t`` (like an ``OdeResult``).

    Attributes
    ----------
    t : [T] times
    species : tuple of names (the columns of states)
    caps : [S] the box ``0 <= n_i < caps[i]``
    thetas : [T, n_params] network parameters at each time
    stats : dict of solver statistics (steps, wall time, clamped targets, ESS, ...)
    method : str
    """

    def __init__(self, t, species, model: AutoregressiveModel, thetas, stats, method: str,
                 n_output_samples: int = 10_000, seed: int = 0):
        self.t = np.asarray(t, dtype=float)
        self.species = tuple(species)
        self.caps = model.caps.copy()
        self.thetas = np.asarray(thetas)
        self.stats = dict(stats)
        self.method = method
        self._template = model.copy()
        self._n_out = int(n_output_samples)
        self._seed = int(seed)
        self._samples: dict[int, np.ndarray] = {}
        self._conditionals: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return (f"<VANSolution method={self.method!r}: {len(self.t)} times, species "
                f"{self.species}, {self.thetas.shape[1]} network parameters>")

    def _index(self, t_index: int) -> int:
        T = len(self.t)
        if not -T <= int(t_index) < T:
            raise IndexError(f"t_index {t_index} out of range for {T} times")
        return int(t_index) % T

    def _column(self, species) -> int:
        if isinstance(species, (int, np.integer)):
            if not 0 <= int(species) < len(self.species):
                raise IndexError(f"species index {species} out of range")
            return int(species)
        try:
            return self.species.index(species)
        except ValueError:
            raise KeyError(f"unknown species {species!r}; the species are {self.species}") from None

    def distribution(self, t_index: int) -> AutoregressiveModel:
        """The autoregressive model holding ``P_{t[t_index]}`` (a copy)."""
        m = self._template.copy()
        m.set_params(self.thetas[self._index(t_index)])
        return m

    def samples(self, t_index: int, n: int | None = None, seed: int | None = None) -> np.ndarray:
        """``[n, S]`` exact samples of ``P_t`` (cached for the default ``n`` and seed)."""
        k = self._index(t_index)
        if n is None and seed is None:
            if k not in self._samples:
                rng = np.random.default_rng([self._seed, k])
                self._samples[k] = self.distribution(k).sample(self._n_out, rng)[0]
            return self._samples[k]
        rng = np.random.default_rng([self._seed if seed is None else seed, k])
        return self.distribution(k).sample(self._n_out if n is None else n, rng)[0]

    def log_prob(self, n, t_index: int) -> np.ndarray:
        """Exact ``log P_t(n)`` of states ``[N, S]`` (``-inf`` outside the box)."""
        return self.distribution(t_index).log_prob(np.atleast_2d(n))

    def _conds(self, k):
        if k not in self._conditionals:
            self._conditionals[k] = self.distribution(k).conditionals(self.samples(k))
        return self._conditionals[k]

    def marginal(self, species, t_index: int) -> np.ndarray:
        """``[M_i]`` probability of ``n_i = 0..M_i-1``.

        Rao-Blackwellized: ``P(n_i = m) = E_{n_<i}[P(n_i = m | n_<i)]``, averaged over the cached
        samples (exact for the first species of the ordering).
        """
        i = self._column(species)
        k = self._index(t_index)
        p = self._conds(k)[:, i, :self.caps[i]].mean(axis=0)
        return p / p.sum()

    def mean(self, t_index: int | None = None) -> np.ndarray:
        """``[S]`` means at one time, or ``[T, S]`` at all times (from the marginals)."""
        if t_index is None:
            return np.stack([self.mean(k) for k in range(len(self.t))])
        return np.array([np.arange(self.caps[i]) @ self.marginal(i, t_index)
                         for i in range(len(self.species))])

    def covariance(self, t_index: int) -> np.ndarray:
        """``[S, S]`` covariance matrix (sample estimate from the cached samples)."""
        return np.atleast_2d(np.cov(self.samples(t_index).T.astype(float)))

    def region_probability(self, region: Mapping | Callable, t_index: int,
                           n_samples: int = 10_000, method: str = "auto", alpha: float = 0.5,
                           eps: float = 0.05, seed: int | None = None) -> RegionEstimate:
        """``P_t(n in region)``; see :func:`cupyssa.cme.sampling.region_probability`.

        ``region``: mapping species name -> (lo, hi) inclusive (a box; estimated by sequential
        restriction, exact for one species), or a predicate ``states [N, S] -> bool [N]``
        (tempered proposal with PSIS weights).
        """
        k = self._index(t_index)
        rng = np.random.default_rng([self._seed if seed is None else seed, k, 1])
        return region_probability(self.distribution(k), region, n_samples, rng, method=method,
                                  alpha=alpha, eps=eps, species=self.species)
