"""Backends: one dispatch point each between the API and the kernels.

A backend module provides ``simulate_segment(network, seg, t_stop, t_eval, seed, max_steps)``
advancing a :class:`Segment` (a chunk of trajectories, its state arrays updated in place) until the
end of ``t_eval`` or ``t_stop``, and returning ``status`` and ``fail_reaction`` arrays ``[N]``
(status codes of :mod:`cupyssa.kernels.codes`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

_MODULES = {"cpu": "cupyssa.backends.cpu", "numpy": "cupyssa.backends.numpy_backend"}


def get_backend(name: str):
    """The backend module called ``name``."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(_MODULES)}")
    return importlib.import_module(_MODULES[name])


def available_backends() -> tuple:
    return tuple(_MODULES)


@dataclass
class Segment:
    """Per-trajectory state of a chunk of ``N`` trajectories between kernel calls.

    Attributes
    ----------
    first : int
        Global index of the chunk's first trajectory.
    x : int64 [N, S]; theta : float64 [1 or N, P]
    t : float64 [N]; k : int64 [N]; obs : int64 [N]
        Current time, step counter and next unfilled ``t_eval`` index.
    states : integer [N, T, S]
        Observations (filled as the trajectories pass the grid times).
    horizon : float
        Simulate until the first event after ``horizon`` (``-inf``: until the grid is filled).
    tape : unsigned [N, L]; t_checkpoints : float64 [N, L // C + 1]; checkpoint_every : int
        Event record for the backward pass (``L = 0``: none).
    obs_step : int64 [N, T or 0]; obs_frac : float64 [N, T or 0]; obs_next : int64 [N, T or 0]
        Per observation: events before it, its fraction of the straddling interval, next event.
    width : float; smooth : float64 [N, T or 0, S]
        Half-width of the biweight observation window and the smoothed states (``0``: off).
    """

    first: int
    x: np.ndarray
    theta: np.ndarray
    t: np.ndarray
    k: np.ndarray
    obs: np.ndarray
    states: np.ndarray
    horizon: float = -np.inf
    tape: np.ndarray = None
    t_checkpoints: np.ndarray = None
    checkpoint_every: int = 1
    obs_step: np.ndarray = None
    obs_frac: np.ndarray = None
    obs_next: np.ndarray = None
    width: float = 0.0
    smooth: np.ndarray = None

    @classmethod
    def start(cls, first, x0, theta, t0, states, *, tape_length=0, tape_dtype=np.uint8,
              checkpoint_every=1, record_observations=False, width=0.0):
        """Fresh trajectories ``first .. first+N-1`` at ``(x0, t0)``; ``x0`` is ``[1 or N, S]``."""
        N, T, S = states.shape
        x = np.array(np.broadcast_to(x0, (N, S)), dtype=np.int64, order="C")  # "K" would give F
        n_check = tape_length // checkpoint_every + 1 if tape_length else 0
        n_obs = T if record_observations else 0
        return cls(first, x, np.ascontiguousarray(theta, dtype=float), np.full(N, float(t0)),
                   np.zeros(N, dtype=np.int64), np.zeros(N, dtype=np.int64), states,
                   -np.inf,
                   np.zeros((N, tape_length), dtype=tape_dtype), np.zeros((N, n_check)),
                   int(checkpoint_every), np.zeros((N, n_obs), dtype=np.int64),
                   np.zeros((N, n_obs)), np.zeros((N, n_obs), dtype=np.int64), float(width),
                   np.zeros((N, T if width > 0 else 0, S)))
