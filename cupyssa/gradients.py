"""``cupyssa.value_and_grad``: gradients of ensemble losses through exact SSA trajectories.

Pipeline (DESIGN.md, "The tape" and "The backward pass"):

1. **Forward**, exact, recording per trajectory the event tape (``uint8/16/32`` by the number of
   reactions), time checkpoints every ``checkpoint_every`` steps, and per observation what the
   chosen observation mode needs. Tapes are sized from a pilot run; a trajectory that outgrows its
   tape is re-simulated with an exact-size tape (same seed, same trajectory). When all tapes do not
   fit in ``memory_budget``, the tapes are dropped after the observations are taken and each chunk
   is re-simulated before its reverse sweep (counter-based RNG: identical trajectories).
2. **Loss** on the observations of the whole ensemble: value, ``dL/dY`` and, for the score
   estimator, ``dL/dw_i``.
3. **Reverse sweep** per trajectory (:mod:`cupyssa.kernels.backward`), summed in trajectory order
   (so the result does not depend on threads or chunking), with standard errors from the spread of
   the per-trajectory contributions.
"""

from __future__ import annotations

import numpy as np

from .backends import Segment
from .backends.cpu import has_machine_code, kernels_for
from .errors import ParameterError
from .kernels import backward
from .kernels.philox import split_seed
from .specialize import MAX_SPECIALIZED_REACTIONS
from .simulate import DEFAULT_MAX_STEPS, _time_grid, _unpack, raise_failure

__all__ = ["value_and_grad", "Gradient", "ESTIMATORS", "OBSERVATIONS"]

ESTIMATORS = {"st": backward.STRAIGHT_THROUGH, "score": backward.SCORE}
OBSERVATIONS = {"fill": backward.FILL, "linear": backward.LINEAR, "kernel": backward.KERNEL}
_PILOT = 64


class Gradient(dict):
    """``dL/dtheta`` by parameter name (raw parameters, not their logarithms).

    Attributes
    ----------
    vector : ndarray [P]
        The same values in ``network.parameters`` order.
    stderr : dict; stderr_vector : ndarray [P]
        Standard errors from the spread of the per-trajectory contributions.
    per_trajectory : ndarray [N, P] or None
        Contribution of each trajectory (they sum to ``vector``), when requested.
    estimator, observation : str
    n_trajectories : int
    tape_bytes_per_step : float
        Bytes of tape and checkpoints allocated per recorded event.
    """

    def __init__(self, names, vector, stderr, per_trajectory, estimator, observation, n,
                 tape_bytes_per_step):
        super().__init__(zip(names, vector.tolist()))
        self.vector = vector
        self.stderr_vector = stderr
        self.stderr = dict(zip(names, stderr.tolist()))
        self.per_trajectory = per_trajectory
        self.estimator = estimator
        self.observation = observation
        self.n_trajectories = n
        self.tape_bytes_per_step = tape_bytes_per_step

    def log_grad(self, params) -> dict:
        """``dL/dlog theta = theta dL/dtheta`` for the parameter values ``params`` (mapping)."""
        return {name: float(params[name]) * g for name, g in self.items()}


def _tape_dtype(n_reactions: int):
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_reactions <= np.iinfo(dtype).max + 1:
            return dtype
    raise ParameterError("too many reactions for a tape")


def _recording(network, x0, theta, first, n, t0, t_eval, seed, max_steps, mode, width, horizon,
               tape_length, tape_dtype, checkpoint_every):
    """A fresh segment of trajectories ``first .. first+n-1`` with tapes of ``tape_length``, and
    the batch kernel's arguments that record it: ``(seg, args)`` (``args[-2:]`` are the status
    and failing-reaction outputs)."""
    T, S = len(t_eval), network.n_species
    states = np.empty((n, T, S), dtype=np.int64)
    seg = Segment.start(first, x0, theta, t0, states, tape_length=tape_length,
                        tape_dtype=tape_dtype, checkpoint_every=checkpoint_every,
                        record_observations=True, width=width if mode == backward.KERNEL else 0.0)
    seg.horizon = horizon
    lo, hi = split_seed(seed)
    args = (seg.x, seg.theta, seg.first, seg.t, seg.k, seg.obs, np.inf, horizon, t_eval, lo, hi,
            max_steps, np.iinfo(np.int64).max, network.tables, seg.states, seg.tape,
            seg.t_checkpoints, seg.checkpoint_every, seg.obs_step, seg.obs_frac, seg.obs_next,
            seg.width, seg.smooth, np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int64))
    return seg, args


def _forward(kernels, network, x0, theta, first, n, t0, t_eval, seed, max_steps, mode, width,
             horizon, tape_length, tape_dtype, checkpoint_every):
    """Simulate trajectories ``first .. first+n-1`` recording tapes of ``tape_length``."""
    seg, args = _recording(network, x0, theta, first, n, t0, t_eval, seed, max_steps, mode, width,
                           horizon, tape_length, tape_dtype, checkpoint_every)
    kernels.simulate_batch(*args)
    raise_failure(network, args[-2], seg, max_steps, args[-1])
    return seg


def _observations(seg, network, mode):
    """What the loss sees, ``[n, T, S]`` float."""
    if mode == backward.KERNEL:
        return seg.smooth
    Y = seg.states.astype(float)
    if mode == backward.LINEAR:
        nu = np.vstack([network.stoichiometry, np.zeros((1, network.n_species), dtype=np.int64)])
        Y += seg.obs_frac[..., None] * nu[seg.obs_next]  # obs_next = -1 picks the zero row
    return Y


def value_and_grad(loss, network, x0=None, t_eval=None, params=None, n_trajectories: int = 1000,
                   seed: int | None = None, *, estimator: str = "st", temperature: float = 0.1,
                   observation: str = "kernel", width: float | None = None,
                   per_trajectory: bool = False, checkpoint_every: int = 64,
                   memory_budget: int = 1 << 30, max_steps: int | None = None,
                   first_trajectory: int = 0, t0: float = 0.0, return_observations: bool = False,
                   specialize: bool | None = None):
    """Loss of an ensemble of exact trajectories and its gradient with respect to the parameters.

    Parameters
    ----------
    loss : object with ``value``, ``grad`` (and ``weight_grad`` for ``estimator="score"``)
        See :mod:`cupyssa.losses`; evaluated on the observations ``Y [N, T, S]``.
    network, x0, t_eval, params :
        As for :func:`cupyssa.simulate` (``params`` one vector for the whole ensemble).
    n_trajectories : int
    seed : int, optional
    estimator : {"st", "score"}
        ``st``: straight-through Gumbel-Softmax (biased, low variance); ``score``: score function
        with the censored-interval survival term and a leave-one-out baseline (unbiased).
    temperature : float
        Softmax temperature of ``st``. The default 0.1 with ``kernel`` observations was chosen from
        the bias/variance table in benchmarks/GRADIENTS.md (bias grows with temperature; below
        ~0.1 the variance grows).
    observation : {"kernel", "linear", "fill"}
        How trajectories are observed at ``t_eval`` (what the loss sees and what carries
        gradient): ``linear`` interpolates the state between the events around ``t``
        (gradient through event times; its variance is heavy-tailed when an interval is short);
        ``kernel`` averages the state against a biweight window of half-width ``width`` around
        ``t`` (bounded time derivatives; bias O(width^2) on smooth means, O(width) on variances
        and other nonlinear statistics); ``fill`` is the exact
        state at ``t`` (blind to event timing: ``st`` then misses every gradient that acts through
        the timing of events, e.g. the sum over all rate constants).
    width : float, optional
        Window half-width for ``kernel`` (default: a quarter of the smallest grid spacing, or
        5 % of the last time for a single time).
    per_trajectory : bool
        Also return each trajectory's contribution (``Gradient.per_trajectory``, ``[N, P]``).
    checkpoint_every : int
        Steps between exact time checkpoints on the tape.
    memory_budget : int
        Bytes for tapes and per-trajectory gradients; beyond it trajectories are processed in
        chunks and re-simulated for the reverse sweep.
    max_steps, first_trajectory, t0 :
        As for :func:`cupyssa.simulate`.
    return_observations : bool
        Also return ``Y`` (third element).
    specialize : bool or None
        Record the forward pass with the network-specific event update of
        ``simulate(..., specialize=True)``, and run the reverse sweep with the network-specific
        step back and propensity adjoints (:mod:`cupyssa.specialize`): the same trajectories and
        the same gradient, bit for bit; on the dimerization the recording runs ~2x and the
        sweep 1.5x (straight-through) to 1.7x (score) faster, after a one-time compilation
        (under a minute each, cached on disk). ``None`` (default): use each of the two when that needs no
        compilation, i.e. when its machine code for these argument types is loaded in this
        process or in Numba's disk cache (an earlier ``specialize=True`` call wrote it);
        otherwise the generic kernel.

    Returns
    -------
    value : float
    grad : Gradient
        ``dL/dtheta`` by name with ``.stderr``. The standard errors hold ``dL/dY`` fixed: for a
        loss that is nonlinear in ensemble averages (e.g. ``MomentMismatch``) they miss the
        fluctuation of the averages themselves and can understate the spread across seeds.

    Notes
    -----
    The straight-through estimator is biased; its bias and variance per configuration are
    measured in ``benchmarks/GRADIENTS.md``. Binary or low-copy species (a promoter switching on
    and off) defeat it in every observation mode; use ``estimator="score"`` there.
    """
    network, x0, params, model_obj = _unpack(network, x0, params)
    if getattr(model_obj, "events", ()):
        raise ParameterError("value_and_grad does not support models with events (the reverse "
                             "sweep has no adjoint for event assignments)")
    if estimator not in ESTIMATORS:
        raise ParameterError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    if observation not in OBSERVATIONS:
        raise ParameterError(f"unknown observation {observation!r}; choose one of {sorted(OBSERVATIONS)}")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ParameterError(f"temperature must be positive, got {temperature}")
    est, mode = ESTIMATORS[estimator], OBSERVATIONS[observation]
    if est == backward.SCORE and not hasattr(loss, "weight_grad"):
        raise ParameterError("the score estimator needs loss.weight_grad(Y) -> [N] (dL/dw_i); see "
                             "cupyssa.losses")
    t_eval = _time_grid(t_eval, float(t0), model_obj)
    theta = network.parameter_vector(params)
    if theta.ndim != 1:
        raise ParameterError("value_and_grad takes one parameter vector for the whole ensemble")
    x0_arr = network.initial_vector(x0)
    N = int(n_trajectories)
    if N < 2:
        raise ParameterError("n_trajectories must be at least 2 (standard errors, baselines)")
    if x0_arr.ndim == 2 and x0_arr.shape[0] != N:
        raise ParameterError(f"per-trajectory x0 has {x0_arr.shape[0]} rows, n_trajectories={N}")
    x0_arr = x0_arr.reshape(-1, network.n_species)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % (2 ** 64)
    max_steps = DEFAULT_MAX_STEPS if max_steps is None else int(max_steps)
    if mode == backward.KERNEL:
        if width is None:
            gaps = np.diff(t_eval)
            gaps = gaps[gaps > 0]
            width = 0.25 * gaps.min() if gaps.size else 0.05 * max(t_eval[-1] - t0, 1e-12)
        if not np.isfinite(width) or width <= 0:
            raise ParameterError(f"width must be positive, got {width}")
        horizon = float(t_eval[-1] + width)
    else:
        width = 0.0
        horizon = -np.inf
    # end of the path the observations read: the score's censored interval ends there
    path_end = horizon if mode == backward.KERNEL else float(t_eval[-1])
    P, T, S = network.n_parameters, len(t_eval), network.n_species
    tape_dtype = _tape_dtype(network.n_reactions)
    theta2 = theta.reshape(1, -1)

    def x0_rows(a, b):
        return x0_arr[a:b] if x0_arr.shape[0] > 1 else x0_arr

    def specialized(kernel, args):
        """``specialize``, or for ``None`` whether the network-specific ``kernel`` runs ``args``
        without compiling (loaded in this process, or in the disk cache for their types)."""
        if specialize is not None:
            return specialize
        return (network.n_reactions <= MAX_SPECIALIZED_REACTIONS
                and has_machine_code(network, True, args, kernel))

    kernels = kernels_for(network, specialized("simulate_batch", _recording(
        network, x0_rows(0, 1), theta2, first_trajectory, 1, t0, t_eval, seed, max_steps, mode,
        width, horizon, 0, tape_dtype, checkpoint_every)[1]))
    replay_kernels = []  # chosen at the first sweep, from its argument types

    def replay_batch(*args):
        if not replay_kernels:
            replay_kernels.append(kernels_for(network, specialized("replay_batch", args)))
        replay_kernels[0].replay_batch(*args)

    # pilot: events per trajectory, to size the tapes
    n_pilot = min(N, _PILOT)
    pilot = _forward(kernels, network, x0_rows(0, n_pilot), theta2, first_trajectory, n_pilot,
                     t0, t_eval, seed, max_steps, mode, width, horizon, 0, tape_dtype,
                     checkpoint_every)
    # a little above the pilot's longest path; longer trajectories are re-recorded exactly
    tape_length = int(1.05 * pilot.k.max()) + 16
    item = np.dtype(tape_dtype).itemsize
    per_traj_bytes = tape_length * item + (tape_length // checkpoint_every + 1) * 8 + 8 * P \
        + T * S * 40
    chunk = max(1, min(N, int(memory_budget // per_traj_bytes)))
    keep_tapes = chunk >= N

    def record(a, b):
        seg = _forward(kernels, network, x0_rows(a, b), theta2, first_trajectory + a, b - a, t0,
                       t_eval, seed, max_steps, mode, width, horizon, tape_length, tape_dtype,
                       checkpoint_every)
        long = np.flatnonzero(seg.k > tape_length)
        for i in long:  # outgrown tapes: re-record those trajectories with exact-size tapes
            one = _forward(kernels, network, x0_rows(a + i, a + i + 1), theta2,
                           first_trajectory + a + i, 1, t0, t_eval, seed, max_steps, mode, width,
                           horizon, int(seg.k[i]) + 1, tape_dtype, checkpoint_every)
            seg_long.append((a + i, one))
        return seg

    # 1. forward over the ensemble; the loss needs every observation before any reverse sweep
    seg_long: list = []
    Y = np.empty((N, T, S))
    chunks = []
    for a in range(0, N, chunk):
        b = min(N, a + chunk)
        seg = record(a, b)
        Y[a:b] = _observations(seg, network, mode)
        chunks.append((a, b, seg if keep_tapes else None))
    long_segments = dict(seg_long)

    # 2. the loss
    value = float(loss.value(Y))
    if est == backward.STRAIGHT_THROUGH:
        # C-contiguous and writable: a read-only dL/dY (e.g. deserialized by Dask on a worker)
        # is another argument type to Numba, which would compile the reverse sweep again
        G = np.require(loss.grad(Y), dtype=float, requirements=["C", "W"])
        if G.shape != Y.shape:
            raise ParameterError(f"loss.grad returned shape {G.shape}, expected {Y.shape}")
        weights = np.zeros(N)
    else:
        c = np.asarray(loss.weight_grad(Y), dtype=float)
        if c.shape != (N,):
            raise ParameterError(f"loss.weight_grad returned shape {c.shape}, expected ({N},)")
        weights = c - (c.sum() - c) / (N - 1)  # leave-one-out baseline keeps it unbiased
        G = np.zeros((N, 0, S))

    # 3. reverse sweeps, summed in trajectory order
    lo, hi = split_seed(seed)
    total = np.zeros(P)
    total_sq = np.zeros(P)
    per = np.empty((N, P)) if per_trajectory else None
    recorded_steps = 0
    for a, b, seg in chunks:
        if seg is None:
            seg = record(a, b)
        n = b - a
        grads = np.empty((n, P))
        x_start = np.empty((n, S), dtype=np.int64)
        t_start = np.empty(n)
        replay_batch(seg.x, theta2, seg.first, seg.t, seg.k, seg.tape, seg.t_checkpoints,
                     seg.checkpoint_every, seg.obs_step, seg.obs_frac, t_eval,
                     G[a:b] if G.shape[1] else G[:n], mode, width, path_end, est,
                     1.0 / temperature, weights[a:b], lo, hi, network.tables, grads,
                     x_start, t_start)
        for i in range(n):
            if a + i in long_segments:  # redo the outgrown trajectories from their long tapes
                one = long_segments[a + i]
                g1 = np.empty((1, P))
                replay_batch(one.x, theta2, one.first, one.t, one.k, one.tape,
                             one.t_checkpoints, one.checkpoint_every, one.obs_step,
                             one.obs_frac, t_eval, G[a + i:a + i + 1] if G.shape[1] else G[:1],
                             mode, width, path_end, est, 1.0 / temperature,
                             weights[a + i:a + i + 1], lo, hi, network.tables, g1,
                             x_start[i:i + 1], t_start[i:i + 1])
                grads[i] = g1[0]
            total += grads[i]
            total_sq += grads[i] * grads[i]
        if per is not None:
            per[a:b] = grads
        recorded_steps += int(seg.k.sum())
    var = np.maximum(total_sq - total * total / N, 0.0) / (N - 1)
    stderr = np.sqrt(N * var)
    allocated = N * (item * tape_length + 8 * (tape_length // checkpoint_every + 1))
    bytes_per_step = allocated / max(1, recorded_steps)
    grad = Gradient(network.parameters, total, stderr, per, estimator, observation, N,
                    bytes_per_step)
    if return_observations:
        return value, grad, Y
    return value, grad
