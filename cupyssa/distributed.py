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

import numpy as np

from .errors import ParameterError, SimulationError
from .result import SimulationResult

__all__ = ["simulate_distributed", "value_and_grad_distributed", "shard_ranges", "gradient_shards"]

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
    # a model with events (cupyssa.events.EventModel) travels whole, so they are applied
    target = model_obj if getattr(model_obj, "events", ()) else network
    return network, target, x0_arr, t, theta, n, int(seed)


class _ShardFailure:
    """A :class:`SimulationError` carried back from a worker (its constructor takes more than a
    message, so it does not survive pickling as an exception)."""

    def __init__(self, exc: SimulationError):
        self.cls, self.message = type(exc), str(exc)
        self.trajectory, self.time, self.reaction = exc.trajectory, exc.time, exc.reaction

    def reraise(self):
        raise self.cls(self.message, self.trajectory, self.time, self.reaction)


def _simulate_shard(model, x0, t_eval, theta, n, seed, backend, max_steps, t0, dtype, first):
    from .simulate import simulate

    try:
        with _KERNEL_LOCK:
            res = simulate(model, x0, t_eval, theta, n_trajectories=n, seed=seed,
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
    network, target, x0_arr, t, theta, n, seed = _resolve(model, x0, t_eval, params,
                                                          n_trajectories, seed, t0)
    dtype = np.dtype(dtype)
    shard_size = _default_shard_size(client, n) if shard_size is None else int(shard_size)
    ranges = shard_ranges(n, shard_size)
    net = client.scatter(target, broadcast=True, hash=False)
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
# Ensemble losses (cupyssa.losses) need every trajectory's observation before any reverse sweep
# (e.g. a mismatch of ensemble variances). So gradients run in two phases:
#   1. each shard returns its observations Y[a:b] (the forward pass);
#   2. the client evaluates the loss on the whole Y: the value, dL/dY (straight-through) or
#      dL/dw (score function), and each shard runs its reverse sweeps with its rows of those,
#      returning the sum (and sum of squares) of its per-trajectory gradient contributions;
#   the client adds the shard sums up. Phase 2 goes through cupyssa.value_and_grad with a loss
#   whose gradient is the fixed slice, so the per-trajectory contributions are exactly those of
#   the one-machine computation.


class _ZeroLoss:
    """A loss of no gradient (phase 1 only wants the observations)."""

    def value(self, Y):
        return 0.0

    def grad(self, Y):
        return np.zeros(Y.shape)

    def weight_grad(self, Y):
        return np.zeros(Y.shape[0])


class _FixedLoss:
    """A loss whose ``dL/dY`` (or ``dL/dw``) is a given slice of the global one."""

    def __init__(self, G=None, c=None):
        self.G, self.c = G, c

    def value(self, Y):
        return 0.0

    def grad(self, Y):
        return self.G

    def weight_grad(self, Y):
        return self.c


def _observe_shard(network, x0, t_eval, params, n, seed, first, kwargs):
    """Phase 1: observations ``Y [n, T, S]`` of trajectories ``first .. first + n - 1``."""
    import cupyssa
    from .simulate import simulate

    try:
        with _KERNEL_LOCK:
            if kwargs.get("observation", "kernel") == "fill":  # the exact states: no tape needed
                res = simulate(network, x0, t_eval, params, n_trajectories=n, seed=seed,
                               max_steps=kwargs.get("max_steps"), t0=kwargs.get("t0", 0.0),
                               dtype=np.int64, first_trajectory=first)
                return res.states.astype(float)
            keep = {k: v for k, v in kwargs.items() if k not in ("estimator", "temperature",
                                                                 "per_trajectory")}
            _, _, Y = cupyssa.value_and_grad(_ZeroLoss(), network, x0, t_eval, params,
                                             n_trajectories=n, seed=seed, first_trajectory=first,
                                             return_observations=True, **keep)
            return Y
    except SimulationError as exc:
        return _ShardFailure(exc)


def _backward_shard(network, x0, t_eval, params, n, seed, first, G, c, kwargs):
    """Phase 2: ``(sum, sum of squares, per-trajectory or None, bytes per step)`` of the
    shard's gradient contributions for the fixed ``dL/dY`` rows ``G`` (or ``dL/dw`` rows ``c``)."""
    import cupyssa

    try:
        with _KERNEL_LOCK:
            _, g = cupyssa.value_and_grad(_FixedLoss(G, c), network, x0, t_eval, params,
                                          n_trajectories=n, seed=seed, first_trajectory=first,
                                          **kwargs)
    except SimulationError as exc:
        return _ShardFailure(exc)
    total = np.asarray(g.vector, dtype=float)
    # recover the sum of squares from the shard's standard error: stderr^2 = n var,
    # var = (sumsq - total^2 / n) / (n - 1)
    sumsq = np.asarray(g.stderr_vector, dtype=float) ** 2 / n * (n - 1) + total * total / n
    return total, sumsq, g.per_trajectory, g.tape_bytes_per_step


def gradient_shards(n: int, shard_size: int) -> list[tuple[int, int]]:
    """Like :func:`shard_ranges`, but every shard has at least 2 trajectories (what
    ``cupyssa.value_and_grad`` needs): a last shard of one joins the previous one."""
    if shard_size < 2:
        raise ParameterError(f"shard_size must be at least 2 for gradients, got {shard_size!r}")
    ranges = shard_ranges(n, shard_size)
    if len(ranges) > 1 and ranges[-1][1] - ranges[-1][0] < 2:
        ranges[-2:] = [(ranges[-2][0], n)]
    return ranges


def value_and_grad_distributed(client, loss, network, x0=None, t_eval=None, params=None,
                               n_trajectories: int = 1000, seed: int | None = None, *,
                               shard_size: int | None = None, bitwise: bool = False,
                               return_observations: bool = False, **kwargs):
    """:func:`cupyssa.value_and_grad` over a Dask cluster, sharded by trajectory-index ranges.

    Two phases (each one task per shard): the shards' observations are gathered and the loss
    is evaluated on the whole ensemble (so every ensemble loss works, e.g.
    :class:`~cupyssa.losses.MomentMismatch`); then each shard runs its reverse sweeps with its
    rows of ``dL/dY`` and returns the sum of its trajectories' gradient contributions, and the
    sums are added up.

    Parameters
    ----------
    client : dask.distributed.Client
    loss, network, x0, t_eval, params, n_trajectories, seed
        As for ``cupyssa.value_and_grad`` (the loss object must be picklable; per-trajectory
        ``x0`` rows are sliced with the shards). The seed is drawn here when omitted.
    shard_size : int, optional
        Trajectories per task, at least 2 (default: about four tasks per worker).
    bitwise : bool
        Gather every trajectory's contribution ``[N, P]`` and add them in trajectory order on the
        client: the gradient and its standard errors are then bit-identical to
        ``cupyssa.value_and_grad`` on one machine. Otherwise (default) the per-shard sums are
        added, which moves only ``P`` numbers per shard and equals the one-machine result up to
        floating-point summation order.
    return_observations : bool
        Also return the observations ``Y [N, T, S]`` (third element).
    **kwargs
        Passed to ``cupyssa.value_and_grad`` on the workers: ``estimator``, ``temperature``,
        ``observation``, ``width``, ``per_trajectory``, ``checkpoint_every``, ``memory_budget``,
        ``max_steps``, ``t0``.

    Returns
    -------
    value : float
        ``loss.value(Y)`` of the whole ensemble.
    grad : cupyssa.gradients.Gradient
        Summed over shards, with standard errors over all trajectories.

    Notes
    -----
    With ``estimator="score"`` the leave-one-out baseline is formed within each shard (the
    estimate stays unbiased, and equals the one-machine estimate when there is one shard);
    with ``"st"`` every trajectory's contribution is exactly the one-machine one.
    """
    from .gradients import ESTIMATORS, Gradient
    from .simulate import _time_grid, _unpack

    network, x0, params, model_obj = _unpack(network, x0, params)
    estimator = kwargs.get("estimator", "st")
    if estimator not in ESTIMATORS:
        raise ParameterError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    if estimator == "score" and not hasattr(loss, "weight_grad"):
        raise ParameterError("the score estimator needs loss.weight_grad(Y) -> [N] (dL/dw_i); see "
                             "cupyssa.losses")
    t_eval = _time_grid(t_eval, float(kwargs.get("t0", 0.0)), model_obj)
    n = int(n_trajectories)
    if n < 2 or n != n_trajectories:
        raise ParameterError(f"n_trajectories must be an integer >= 2, got {n_trajectories!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % (2 ** 64)
    seed = int(seed)
    x0_arr = network.initial_vector(x0)
    if x0_arr.ndim == 2 and x0_arr.shape[0] != n:
        raise ParameterError(f"per-trajectory x0 has {x0_arr.shape[0]} rows, n_trajectories={n}")
    theta = network.parameter_vector(params)
    shard_size = max(2, _default_shard_size(client, n)) if shard_size is None else int(shard_size)
    ranges = gradient_shards(n, shard_size)
    net = client.scatter(network, broadcast=True, hash=False)
    tag = uuid.uuid4().hex[:8]
    observe_kw = {k: v for k, v in kwargs.items()}

    # phase 1: observations
    futures = [client.submit(_observe_shard, net, _rows(x0_arr, a, b), t_eval, theta, b - a, seed,
                             a, observe_kw, key=f"cupyssa-observe-{tag}-{a}", pure=False)
               for a, b in ranges]
    parts = _gather(client, futures)
    Y = np.concatenate(parts, axis=0)

    # the loss, on the whole ensemble
    value = float(loss.value(Y))
    if estimator == "st":
        G = np.ascontiguousarray(np.asarray(loss.grad(Y), dtype=float))
        if G.shape != Y.shape:
            raise ParameterError(f"loss.grad returned shape {G.shape}, expected {Y.shape}")
        c = None
    else:
        c = np.asarray(loss.weight_grad(Y), dtype=float)
        if c.shape != (n,):
            raise ParameterError(f"loss.weight_grad returned shape {c.shape}, expected ({n},)")
        G = None

    # phase 2: reverse sweeps with the fixed dL/dY rows
    back_kw = dict(kwargs, per_trajectory=bool(bitwise or kwargs.get("per_trajectory", False)))
    futures = [client.submit(_backward_shard, net, _rows(x0_arr, a, b), t_eval, theta, b - a,
                             seed, a, None if G is None else G[a:b],
                             None if c is None else c[a:b], back_kw,
                             key=f"cupyssa-backward-{tag}-{a}", pure=False)
               for a, b in ranges]
    shards = _gather(client, futures)
    P = network.n_parameters
    per = (np.concatenate([s[2] for s in shards], axis=0) if back_kw["per_trajectory"] else None)
    if bitwise:  # the one-machine order of additions
        total, total_sq = np.zeros(P), np.zeros(P)
        for row in per:
            total += row
            total_sq += row * row
    else:
        total, total_sq = np.zeros(P), np.zeros(P)
        for s in shards:
            total += s[0]
            total_sq += s[1]
    var = np.maximum(total_sq - total * total / n, 0.0) / (n - 1)
    stderr = np.sqrt(n * var)
    weights = np.array([b - a for a, b in ranges], dtype=float)
    bytes_per_step = float(np.average([s[3] for s in shards], weights=weights))
    grad = Gradient(network.parameters, total, stderr,
                    per if kwargs.get("per_trajectory", False) else None, estimator,
                    kwargs.get("observation", "kernel"), n, bytes_per_step)
    if return_observations:
        return value, grad, Y
    return value, grad


def _gather(client, futures) -> list:
    """Results in submission order; a worker's SimulationError is re-raised here."""
    try:
        results = client.gather(futures)
    except BaseException:
        client.cancel(futures)
        raise
    for r in results:
        if isinstance(r, _ShardFailure):
            r.reraise()
    return results
