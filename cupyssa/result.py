"""The result of :func:`cupyssa.simulate`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SimulationResult:
    """Trajectories observed on a time grid.

    Attributes
    ----------
    t : ndarray, shape (n_times,)
        The observation times ``t_eval``.
    states : ndarray, shape (n_trajectories, n_times, n_species), integer
        ``states[i, m, s]``: population of species ``s`` on trajectory ``i`` at ``t[m]``
        (right-continuous: after every event with time ``<= t[m]``).
    species : tuple of str
        Names of the species (last axis of ``states``).
    n_events : ndarray, shape (n_trajectories,), int64
        Events that happened on each trajectory up to ``t[-1]``.
    seed : int
        The seed used (drawn from the OS when none was given), so any run can be repeated.
    backend : str
        The backend that produced it.
    first_trajectory : int
        Global index of the first trajectory (non-zero for a slice of a larger ensemble).
    """

    t: np.ndarray
    states: np.ndarray
    species: tuple
    n_events: np.ndarray
    seed: int
    backend: str
    first_trajectory: int = 0

    @property
    def n_trajectories(self) -> int:
        return self.states.shape[0]

    def __getitem__(self, species: str) -> np.ndarray:
        """Populations of one species: ``[n_trajectories, n_times]``."""
        try:
            return self.states[..., self.species.index(species)]
        except ValueError:
            raise KeyError(f"unknown species {species!r}; species are {self.species}") from None

    def mean(self) -> np.ndarray:
        """Ensemble mean ``[n_times, n_species]``."""
        return self.states.mean(axis=0)

    def std(self, ddof: int = 1) -> np.ndarray:
        """Ensemble standard deviation ``[n_times, n_species]``."""
        return self.states.std(axis=0, ddof=ddof)

    def __repr__(self) -> str:
        return (f"<SimulationResult: {self.n_trajectories} trajectories x {len(self.t)} times x "
                f"{len(self.species)} species, {int(self.n_events.sum())} events, seed={self.seed}, "
                f"backend={self.backend!r}>")
