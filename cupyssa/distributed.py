"""Ensembles and gradients sharded by trajectory-index ranges over a Dask cluster.

Trajectory ``i`` depends only on ``(seed, i)`` (counter-based random numbers), so the range
``[0, n)`` can be cut into shards ``[a, b)`` simulated anywhere with ``first_trajectory=a``:
:func:`simulate_distributed` returns exactly what :func:`cupyssa.simulate` returns on one
machine, bit for bit, whatever the shard size and the number of workers.

Works with any ``dask.distributed.Client``: a ``LocalCluster``, or a batch-system cluster from
``dask-jobqueue`` (``SLURMCluster``, ``PBSCluster``). Install with ``pip install
"cupyssa[dist]"``. Recommended worker layout: one worker process per node or socket with one
Dask thread (``processes=True``, ``threads_per_worker=1`` / ``cores=N, processes=1``) and let the
compiled kernel use the node's cores (``NUMBA_NUM_THREADS``); shards running in threads of one
process take turns on the kernel (a process-wide lock), because not every Numba threading layer
allows concurrent parallel regions.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Callable, Mapping

import numpy as np

from .errors import ParameterError, SimulationError
from .result import SimulationResult

__all__ = ["simulate_distributed", "value_and_grad_distributed", "shard_ranges"]

#: one compiled parallel kernel at a time per worker process
_KERNEL_LOCK = threading.Lock()


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """``[(a, b), ...]`` cutting ``[0, n)`` into consecutive ranges of ``shard_size`` (the
    last may be shorter)."""
    if shard_size < 1:
        raise ParameterError(f"shard_size must be a positive integer, got {shard_size!r}")
    return [(a, min(n, a + shard_size)) for a in range(0, n, shard_size)]


def _n_workers(client) -> int:
    try:
        return max(1, len(client.scheduler_info()["workers"]))
    except Exception:  # noqa: BLE001 - an adaptive cluster may have none yet
        return 1


def _default_shard_size(client, n: int) -> int:
    return max(1, -(-n // (4 * _n_workers(client))))


def _rows(arr: np.ndarray, a: int, b: int) -> np.ndarray:
    """Per-trajectory inputs (2-D) sliced to a shard; shared inputs (1-D) unchanged."""
    return arr[a:b] if arr.ndim == 2 else arr


def _resolve(model, x0, t_eval, params, n_trajectories, seed, t0):
    from .simulate import _resolve_count, _time_grid, _unpack

    network, x0, params, model_obj = _unpack(model, x0, params)
    t = _time_grid(t_eval, float(t0), model_obj)
    x0_arr = network.initial_vector(x0)
    theta = network.parameter_vector(params)
    n = _resolve_count(n_trajectories, x0_arr, theta)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % (2 ** 64)
    if not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 64:
        raise ParameterError(f"seed must be an integer in [0, 2^64), got {seed!r}")
    return network, x0_arr, t, theta, n, int(seed)


class _ShardFailure:
    """A :class:`SimulationError` carried back from a worker (its constructor takes more than a
    message, so it does not survive pickling as an exception)."""

    def __init__(self, exc: SimulationError):
        self.cls, self.message = type(exc), str(exc)
        self.trajectory, self.time, self.reaction = exc.trajectory, exc.time, exc.reaction

    def reraise(self):
        raise self.cls(self.message, self.trajectory, self.time, self.reaction)


def _simulate_shard(network, x0, t_eval, theta, n, seed, backend, max_steps, t0, dtype, first):
    from .simulate import simulate

    try:
        with _KERNEL_LOCK:
            res = simulate(network, x0, t_eval, theta, n_trajectories=n, seed=seed,
                           backend=backend, max_steps=max_steps, t0=t0, dtype=dtype,
                           first_trajectory=first)
    except SimulationError as exc:
        return _ShardFailure(exc)
    return res.states, res.n_events


def simulate_distributed(client, model, x0=None, t_eval=None, params=None,
                         n_trajectories: int | None = None, seed: int | None = None, *,
                         shard_size: int | None = None, backend: str = "cpu",
                         max_steps: int | None = None, t0: float = 0.0, dtype=np.int32,
                         first_trajectory: int = 0) -> SimulationResult:
    """:func:`cupyssa.simulate` over a Dask cluster, sharded by trajectory-index ranges.

    Parameters
    ----------
    client : dask.distributed.Client
        Connected to any cluster (``LocalCluster``, ``dask_jobqueue.SLURMCluster``, ...).
    model, x0, t_eval, params, n_trajectories, seed, backend, max_steps, t0, dtype, first_trajectory
        As for :func:`cupyssa.simulate`; per-trajectory ``x0`` / ``params`` rows are sliced
        with the shards. The seed is drawn here when omitted, so all shards share it.
    shard_size : int, optional
        Trajectories per task (default: about four tasks per worker). The result does not
        depend on it.

    Returns
    -------
    SimulationResult
        Identical (``states``, ``n_events``, ``seed``) to ``cupyssa.simulate`` with the same
        arguments on one machine; shards are gathered in trajectory order.

    Raises
    ------
    SimulationError
        A trajectory failed on a worker (re-raised here, naming the global trajectory index).
    """
    network, x0_arr, t, theta, n, seed = _resolve(model, x0, t_eval, params, n_trajectories,
                                                  seed, t0)
    dtype = np.dtype(dtype)
    shard_size = _default_shard_size(client, n) if shard_size is None else int(shard_size)
    ranges = shard_ranges(n, shard_size)
    net = client.scatter(network, broadcast=True, hash=False)
    tag = uuid.uuid4().hex[:8]
    futures = [client.submit(_simulate_shard, net, _rows(x0_arr, a, b), t, _rows(theta, a, b),
                             b - a, seed, backend, max_steps, float(t0), dtype,
                             first_trajectory + a, key=f"cupyssa-simulate-{tag}-{a}", pure=False)
               for a, b in ranges]
    states = np.empty((n, len(t), network.n_species), dtype=dtype)
    n_events = np.empty(n, dtype=np.int64)
    where = {f.key: (a, b) for f, (a, b) in zip(futures, ranges)}
    try:
        from distributed import as_completed

        for future, shard in as_completed(futures, with_results=True):
            if isinstance(shard, _ShardFailure):
                shard.reraise()
            a, b = where[future.key]
            states[a:b], n_events[a:b] = shard
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        del futures
    return SimulationResult(t, states, network.species, n_events, seed, backend, first_trajectory)


# -- gradients -------------------------------------------------------------------------------

def _value_and_grad_shard(loss, network, x0, t_eval, params, n_trajectories, seed,
                          first_trajectory, **kwargs):
    """The shard protocol: ``(value_sum, grad_sum, count)`` of trajectories
    ``[first_trajectory, first_trajectory + n_trajectories)``.

    Calls ``cupyssa.value_and_grad(loss, network, x0, t_eval, params, n_trajectories=...,
    seed=..., first_trajectory=..., reduction="sum", **kwargs)``, which returns the
    un-normalised sums over the shard's trajectories.
    """
    import cupyssa

    value_sum, grad_sum = cupyssa.value_and_grad(
        loss, network, x0, t_eval, params, n_trajectories=n_trajectories, seed=seed,
        first_trajectory=first_trajectory, reduction="sum", **kwargs)
    return value_sum, grad_sum, n_trajectories


def _locked(shard_fn, args, kwargs):
    try:
        with _KERNEL_LOCK:
            return shard_fn(*args, **kwargs)
    except SimulationError as exc:
        return _ShardFailure(exc)


def _shard_rows(v, n: int, a: int, b: int):
    """Per-trajectory inputs cut to ``[a, b)``: arrays ``[n, ...]`` of 2 or more dims, and the
    1-D length-``n`` values of a mapping (``{"k": per-trajectory values}``); others unchanged."""
    if isinstance(v, Mapping):
        return {k: (np.asarray(x)[a:b] if np.ndim(x) == 1 and len(x) == n else x)
                for k, x in v.items()}
    if isinstance(v, np.ndarray) and v.ndim >= 2 and v.shape[0] == n:
        return v[a:b]
    return v


def _tree_add(a, b):
    """``a + b`` for scalars, arrays, and dicts / lists / tuples of them (same structure)."""
    if isinstance(a, dict):
        if set(a) != set(b):
            raise ValueError("shards returned gradients with different keys")
        return {k: _tree_add(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        return type(a)(_tree_add(x, y) for x, y in zip(a, b, strict=True))
    return np.add(a, b)


def _tree_scale(a, s: float):
    if isinstance(a, dict):
        return {k: _tree_scale(v, s) for k, v in a.items()}
    if isinstance(a, (list, tuple)):
        return type(a)(_tree_scale(v, s) for v in a)
    return np.multiply(a, s)


def value_and_grad_distributed(client, loss: Callable, network, x0, t_eval, params,
                               n_trajectories: int, seed: int, *, shard_size: int | None = None,
                               reduction: str = "mean",
                               shard_fn: Callable[..., tuple[Any, Any, int]] | None = None,
                               **kwargs) -> tuple[Any, Any]:
    """:func:`cupyssa.value_and_grad` over a Dask cluster: trajectory ranges are shards, and
    the per-shard *sums* of loss and gradient are added up.

    Parameters
    ----------
    client : dask.distributed.Client
    loss, network, x0, t_eval, params, n_trajectories, seed
        As for ``cupyssa.value_and_grad``; the loss must be a per-trajectory loss (the total
        is a sum or mean over trajectories), and picklable (cloudpickle: lambdas are fine).
        Per-trajectory ``x0`` / ``params`` arrays (first axis ``n_trajectories``) are sliced.
    shard_size : int, optional
        Trajectories per task (default: about four tasks per worker).
    reduction : {"mean", "sum"}
        ``mean``: total sums divided by the total count (what ``value_and_grad`` returns on
        one machine); ``sum``: the un-normalised sums.
    shard_fn : callable, optional
        The per-shard protocol ``shard_fn(loss, network, x0, t_eval, params, n_trajectories,
        seed, first_trajectory, **kwargs) -> (value_sum, grad_sum, count)``; by default it calls
        ``cupyssa.value_and_grad(..., first_trajectory=..., reduction="sum")``.
    **kwargs
        Passed to every shard (``estimator``, ``temperature``, ...).

    Returns
    -------
    (value, grad)
        ``grad`` has the structure the shards return (array, or dict / tuple of arrays).
        Sums are taken in shard order, so a given ``shard_size`` gives reproducible floats;
        they equal the one-machine result up to floating-point summation order.
    """
    if reduction not in ("mean", "sum"):
        raise ParameterError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    from .simulate import _unpack

    network, x0, params, _ = _unpack(network, x0, params)
    n = int(n_trajectories)
    if n < 1 or n != n_trajectories:
        raise ParameterError(f"n_trajectories must be a positive integer, got {n_trajectories!r}")
    if seed is None:
        raise ParameterError("value_and_grad_distributed needs an explicit seed (shared by all shards)")
    shard_fn = _value_and_grad_shard if shard_fn is None else shard_fn
    shard_size = _default_shard_size(client, n) if shard_size is None else int(shard_size)
    ranges = shard_ranges(n, shard_size)
    net = client.scatter(network, broadcast=True, hash=False)
    tag = uuid.uuid4().hex[:8]

    futures = [client.submit(_locked, shard_fn,
                             (loss, net, _shard_rows(x0, n, a, b), t_eval,
                              _shard_rows(params, n, a, b), b - a, int(seed), a), kwargs,
                             key=f"cupyssa-grad-{tag}-{a}", pure=False)
               for a, b in ranges]
    try:
        results = client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
    for r in results:
        if isinstance(r, _ShardFailure):
            r.reraise()
    value, grad, count = results[0]
    for v, g, c in results[1:]:
        value, grad, count = _tree_add(value, v), _tree_add(grad, g), count + c
    if count != n:
        raise RuntimeError(f"shards covered {count} trajectories, expected {n}")
    if reduction == "mean":
        value, grad = _tree_scale(value, 1.0 / count), _tree_scale(grad, 1.0 / count)
    return value, grad
