"""``cupyssa.simulate``: exact SSA ensembles on a time grid."""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from . import specialize as _specialize_module
from .backends import Segment, get_backend
from .errors import MaxStepsExceeded, ParameterError, SimulationError
from .kernels import codes
from .models import Model
from .network import ReactionNetwork
from .result import SimulationResult

__all__ = ["simulate", "DEFAULT_MAX_STEPS"]

#: default cap on events per trajectory; the Philox step counter is 32-bit, so at most 2^32 - 1
DEFAULT_MAX_STEPS = 10 ** 8
#: target number of (trajectory x time x species) output cells per chunk
_CHUNK_CELLS = 1 << 22
#: ``specialize=None``: the generic pilot chunk that the projection is timed on holds
#: ``max(_PILOT_MIN, n / _PILOT_FRACTION)`` trajectories
_PILOT_MIN, _PILOT_FRACTION = 16, 64


def _unpack(model, x0, params):
    if isinstance(model, Model):
        return (model.network, model.x0 if x0 is None else x0,
                model.params if params is None else params, model)
    if isinstance(model, ReactionNetwork):
        return model, x0, params, None
    raise TypeError(f"expected a ReactionNetwork or a Model, got {type(model).__name__}")


def _time_grid(t_eval, t0: float, model) -> np.ndarray:
    if t_eval is None:
        if model is None:
            raise ParameterError("t_eval is required")
        t_eval = np.linspace(t0, model.t_end, 101)
    # a private copy: a read-only input (e.g. deserialized by Dask) would be another argument
    # type to Numba, and compile the kernels again
    t = np.atleast_1d(np.array(t_eval, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise ParameterError(f"t_eval must be a non-empty 1-D array, got shape {np.shape(t_eval)}")
    if not np.all(np.isfinite(t)):
        raise ParameterError("t_eval contains NaN or infinite times")
    if np.any(np.diff(t) < 0):
        raise ParameterError("t_eval must be sorted in non-decreasing order")
    if t[0] < t0:
        raise ParameterError(f"t_eval starts at {t[0]}, before the initial time t0={t0}")
    return t


def _resolve_count(n_trajectories, *arrays) -> int:
    rows = {a.shape[0] for a in arrays if a.ndim == 2}
    if len(rows) > 1:
        raise ParameterError("per-trajectory x0 and params disagree on the number of trajectories: "
                             f"{sorted(rows)}")
    if n_trajectories is None:
        return rows.pop() if rows else 1
    n = int(n_trajectories)
    if n < 1 or n != n_trajectories:
        raise ParameterError(f"n_trajectories must be a positive integer, got {n_trajectories!r}")
    if rows and rows != {n}:
        raise ParameterError(f"per-trajectory inputs have {rows.pop()} rows but n_trajectories={n}")
    return n


def raise_failure(network, status, seg, max_steps, fail_reaction=None, allowed=(codes.OK,)):
    """Raise the :class:`SimulationError` of the first trajectory whose status is not allowed."""
    bad = np.flatnonzero(~np.isin(status, allowed))
    if not bad.size:
        return
    i = bad[0]
    traj, t, code = seg.first + int(i), float(seg.t[i]), int(status[i])
    r = int(fail_reaction[i]) if fail_reaction is not None else -1
    rname = network.reaction_names[r] if r >= 0 else None
    also = f" ({bad.size - 1} other trajectories in this chunk also failed)" if bad.size > 1 else ""
    if code == codes.MAX_STEPS:
        raise MaxStepsExceeded(f"trajectory {traj} reached max_steps={max_steps} events at t={t:g} "
                               f"before the end of t_eval; raise max_steps or shorten t_eval{also}",
                               traj, t, None)
    if code == codes.BAD_PROPENSITY:
        msg = (f"trajectory {traj}: the propensity of reaction {rname!r} is negative, NaN or infinite "
               f"at t={t:g}; check the rate law and its parameters{also}")
    elif code == codes.NEGATIVE_POPULATION:
        msg = (f"trajectory {traj}: firing reaction {rname!r} at t={t:g} would make a population "
               f"negative (its rate law does not vanish when a reactant is exhausted){also}")
    else:
        msg = (f"trajectory {traj}: a population exceeded the output integer type at t={t:g}; "
               f"pass dtype=np.int64{also}")
    raise SimulationError(msg, traj, t, rname)


def _specialization(specialize, backend, network, driver, n, chunk):
    """``(specialize now, pilot size, budget)`` for ``simulate``: a nonzero pilot size means that
    ``specialize=None`` has yet to decide, on generic pilot chunks of that many trajectories,
    whether the rest of the ensemble is projected to take more than ``budget`` seconds."""
    if specialize is not None:
        return bool(specialize), 0, 0.0
    if (backend != "cpu" or driver is not None
            or network.n_reactions > _specialize_module.MAX_SPECIALIZED_REACTIONS):
        return False, 0, 0.0
    from .backends.cpu import is_compiled, is_disk_cached

    if is_compiled(network, specialize=True):
        return True, 0, 0.0
    pilot = min(chunk, max(_PILOT_MIN, -(-n // _PILOT_FRACTION)))
    if pilot >= n:
        return False, 0, 0.0  # a pilot of the whole ensemble decides nothing
    # a compilation pays for long runs only; a load from the disk cache for all but short ones
    budget = (_specialize_module.AUTO_SPECIALIZE_CACHED_SECONDS
              if is_disk_cached(network, specialize=True)
              else _specialize_module.AUTO_SPECIALIZE_SECONDS)
    return False, pilot, budget


def simulate(model: ReactionNetwork | Model, x0=None, t_eval=None, params=None,
             n_trajectories: int | None = None, seed: int | None = None, backend: str = "cpu",
             max_steps: int | None = None, progress: bool = False, *, t0: float = 0.0,
             dtype=np.int32, first_trajectory: int = 0, chunk_size: int | None = None,
             specialize: bool | None = None) -> SimulationResult:
    """Simulate an ensemble of exact SSA trajectories (Gillespie's direct method).

    Parameters
    ----------
    model : ReactionNetwork or Model
        The network; a :class:`~cupyssa.models.Model` also supplies defaults for ``x0`` and
        ``params`` (and ``t_eval``: 101 points up to its ``t_end``). A model with ``events``
        (:class:`cupyssa.events.EventModel`, e.g. from :func:`cupyssa.read_sbml`) has them applied
        exactly (state-triggered events need the ``cpu`` backend).
    x0 : mapping or array_like, shape (S,) or (n_trajectories, S)
        Initial counts: a mapping species -> count (scalar or one per trajectory) or an array.
        Species missing from a mapping take the network's declared defaults.
    t_eval : array_like, shape (T,)
        Sorted observation times ``>= t0`` (same units as the inverse rate constants).
    params : mapping or array_like, shape (P,) or (n_trajectories, P)
        Parameter values (a mapping may hold per-trajectory arrays: a sweep is one call).
    n_trajectories : int, optional
        Ensemble size (default: the rows of per-trajectory inputs, else 1).
    seed : int, optional
        Seed in ``[0, 2^64)``; drawn from the OS if omitted and returned in the result.
        Trajectory ``i`` depends only on ``(seed, first_trajectory + i)``.
    backend : {"cpu", "numpy"}
        ``cpu``: compiled, parallel over trajectories. ``numpy``: vectorized reference (slow).
    max_steps : int, optional
        Maximum events per trajectory (default ``DEFAULT_MAX_STEPS``); exceeding it raises
        :class:`~cupyssa.errors.MaxStepsExceeded`.
    progress : bool
        Show a progress bar over trajectory chunks.
    t0 : float
        Initial time.
    dtype : integer dtype
        Output dtype of ``states`` (``int32`` by default; overflow raises).
    first_trajectory : int
        Global index of the first trajectory: simulating ``[0, n)`` in pieces with matching
        ``first_trajectory`` gives exactly the trajectories of one call.
    chunk_size : int, optional
        Trajectories per kernel call (memory/progress granularity; results do not depend on it).
    specialize : bool or None
        ``cpu`` backend: compile a network-specific event update (:mod:`cupyssa.specialize`) —
        about 1.7-2.7x more events/s on small networks, for one compilation (10-30 s) the first
        time a network is used (cached on disk afterwards). Results are identical either way.
        ``None`` (default) decides per call: the update is used if it is already compiled in this
        process, or else when the generic kernel's time for the rest of the ensemble, projected
        from a first chunk, exceeds ``cupyssa.specialize.AUTO_SPECIALIZE_SECONDS`` (30 s), or
        ``AUTO_SPECIALIZE_CACHED_SECONDS`` (1 s) when an earlier process left it compiled in
        the disk cache (networks of up to 32 reactions without events). ``False`` never
        compiles it; ``True`` always does.

    Returns
    -------
    SimulationResult
        ``.t``, ``.states [n_trajectories, T, S]``, ``.species``, ``.n_events``, ``.seed``.

    Raises
    ------
    ParameterError, InitialStateError, NetworkError
        Invalid inputs (unknown names, negative/NaN rates, wrong shapes, non-integer counts).
    SimulationError, MaxStepsExceeded
        A trajectory failed; the message names the trajectory, the time and the reaction.
    """
    network, x0, params, model_obj = _unpack(model, x0, params)
    t_eval = _time_grid(t_eval, float(t0), model_obj)
    x0_arr = network.initial_vector(x0)
    theta = network.parameter_vector(params)
    n = _resolve_count(n_trajectories, x0_arr, theta)
    x0_arr = x0_arr.reshape(-1, network.n_species)
    theta = theta.reshape(-1, network.n_parameters)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % (2 ** 64)
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 64:
        raise ParameterError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    max_steps = DEFAULT_MAX_STEPS if max_steps is None else int(max_steps)
    if not 0 <= max_steps < 2 ** 32:
        raise ParameterError(f"max_steps must be in [0, 2^32), got {max_steps}")
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ParameterError(f"dtype must be an integer type, got {dtype}")
    impl = get_backend(backend)
    driver = None
    if getattr(model_obj, "events", ()):
        from .events import EventDriver

        driver = EventDriver(network, model_obj.events, theta, backend, float(t0))

    T, S = len(t_eval), network.n_species
    states = np.empty((n, T, S), dtype=dtype)
    n_events = np.empty(n, dtype=np.int64)
    chunk = chunk_size or max(1, min(n, _CHUNK_CELLS // max(1, T * S)))
    if progress and chunk_size is None:
        chunk = min(chunk, max(256, -(-n // 50)))  # about 50 updates of the bar
    special, pilot, budget = _specialization(specialize, backend, network, driver, n, chunk)
    if pilot:
        from .backends.cpu import compiled_signatures
    bar = tqdm(total=n, unit="traj", disable=not progress, desc=f"simulate [{backend}]")
    with bar:
        start = 0
        while start < n:
            rows = slice(start, min(n, start + (pilot or chunk)))
            if pilot:
                signatures, clock = compiled_signatures(network), time.perf_counter()
            seg = Segment.start(first_trajectory + start,
                                x0_arr[rows] if x0_arr.shape[0] > 1 else x0_arr,
                                theta[rows] if theta.shape[0] > 1 else theta, t0, states[rows])
            if driver is not None:  # a model with events (cupyssa.events)
                n_events[rows] = driver.run(impl, seg, t_eval, int(seed), max_steps)
            else:
                status, fail_reaction = impl.simulate_segment(network, seg, np.inf, t_eval,
                                                              int(seed), max_steps, special)
                raise_failure(network, status, seg, max_steps, fail_reaction)
                n_events[rows] = seg.k
            bar.update(rows.stop - rows.start)
            # a pilot chunk that compiled (or loaded) the generic kernel is not timed: the next is
            if pilot and compiled_signatures(network) == signatures:
                per_trajectory = (time.perf_counter() - clock) / (rows.stop - rows.start)
                special = per_trajectory * (n - rows.stop) > budget
                pilot = 0
            start = rows.stop
    return SimulationResult(t_eval, states, network.species, n_events, int(seed), backend,
                            first_trajectory)
