"""Backends: one dispatch point each between the API and the kernels.

A backend module provides ``simulate_chunk(network, x0, theta, first, t0, t_eval, seed,
max_steps, states)`` which fills ``states [N, T, S]`` for the trajectories with global indices
``first .. first+N-1`` and returns ``(status, n_events, t_final, fail_reaction)`` arrays ``[N]``
(status codes of :mod:`cupyssa.kernels.codes`).
"""

from __future__ import annotations

import importlib

_MODULES = {"cpu": "cupyssa.backends.cpu", "numpy": "cupyssa.backends.numpy_backend"}


def get_backend(name: str):
    """The backend module called ``name``."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(_MODULES)}")
    return importlib.import_module(_MODULES[name])


def available_backends() -> tuple:
    return tuple(_MODULES)
