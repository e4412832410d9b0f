"""CPU kernels: the shared source compiled with ``numba.njit`` and a ``prange`` over trajectories.

Each trajectory's random numbers depend only on its global index, so the results are identical for
any thread count and any chunking of the batch.
"""

import hashlib
import pathlib

import numba
import numpy as np

from . import backward, philox, propensity, trajectory
from .targets import retarget
from .backward import (FILL, LINEAR, STRAIGHT_THROUGH, replay_trajectory, squaring_exponent,
                       sweep_variant)
from .trajectory import simulate_trajectory

#: the shared device-level source, callees first
DEVICE_FUNCTIONS = [
    philox.philox4x32, philox.words_to_uniform, philox.uniform_pair, philox.uniform_block,
    propensity.expression_propensity, propensity.neural_activation,
    propensity.combinatorial_factor, propensity.small_binomial,
    propensity.small_binomial_derivative, propensity.propensity,
    trajectory.event_trigger, trajectory.reaction_count, trajectory.cumulate,
    trajectory.select_reaction, trajectory.fire, trajectory.first_invalid,
    trajectory.all_propensities, trajectory.window_cdf, trajectory.window_density,
    trajectory.simulate_trajectory,
    propensity.falling_ratio, propensity.falling_ratio_derivative, propensity.expression_adjoint,
    propensity.propensity_adjoint, backward.ratio_power, backward.conditional_softmax,
    backward.unfire, backward.stoich_adjoint, backward.rates_adjoint,
    backward.add_kernel_terms, backward.add_fill_terms, backward.last_checkpoint,
    backward.close_windows, backward.step_adjoint,
    backward.exponential, backward.load_draws, backward.linear_obs_terms, backward.replay_trajectory,
]


#: steps whose forward draws are generated together (:func:`~cupyssa.kernels.philox.uniform_block`;
#: 8 was fastest of 4-32 on AVX-512, the same numbers whatever the size)
RNG_BLOCK = 8
#: steps whose draws the reverse sweep regenerates together (:func:`~cupyssa.kernels.backward.
#: load_draws`): its rows of exponentials are vectorized loops, which need more than 8 elements to
#: pay for their set-up (the dimerization's sweep 1.08-1.14x faster with 32 than with 8: benchmarks/
#: RESULTS.md, "Gradient throughput, session 16"; the same numbers whatever the size)
SWEEP_BLOCK = 32

#: trajectories that a network's generated lanes sweep (:mod:`cupyssa.lanes`) walks in lockstep.
#: The lane loops must be long enough for LLVM to vectorize them behind its run-time alias checks
#: (a hand-written draft of 8 lanes left the Philox rounds scalar and ran 0.65-0.70x the scalar
#: sweep; 16 lanes ran 1.35x, 32 lanes 1.25x: benchmarks/RESULTS.md, "Gradient throughput,
#: session 19"); the same numbers whatever the count
SWEEP_LANES = 16

#: helpers whose arguments are all scalars (a call costs no reference counting) and that are off
#: the hot path of ``simulate`` (the general mass-action adjoint; the smoothing window, once or
#: twice per event of a kernel-observed gradient): compiled once and called instead of having their
#: IR copied into every caller. Measured: the first value_and_grad compiles in 153 s instead of
#: 208 s, the gradient's run time 1.01x. (``small_binomial`` stays inlined: called, it cost the
#: Vilar oscillator's forward 0.86x.)
CALLED_HELPERS = {"falling_ratio", "falling_ratio_derivative", "window_cdf", "window_density"}
#: every other device function is called once or more per event, and is inlined at the Numba IR
#: level: a call that passes the network tables costs a reference-count update per table array
#: (atomic, on objects shared by all threads) — measured 3x slower per event than the inlined
#: kernel
PER_STEP = {f.__name__ for f in DEVICE_FUNCTIONS} - CALLED_HELPERS


def simulate_batch(x, theta, first, t, k, obs, t_stop, horizon, t_eval, seed_lo, seed_hi,
                   max_steps, count_limit, tab, states, tape, t_checkpoints, checkpoint_every,
                   obs_step, obs_frac, obs_next, width, smooth, status, fail_reaction):
    """Advance ``N = x.shape[0]`` trajectories (global indices ``first + n``) by one segment.

    In/out ``[N]``-arrays: ``x [N, S]`` states, ``t`` times, ``k`` step counters, ``obs`` next grid
    index; out: ``states [N, T, S]``, ``status``, ``fail_reaction``, and the records of
    :func:`~cupyssa.kernels.trajectory.simulate_trajectory` with a leading ``[N]`` axis (``tape``,
    ``t_checkpoints``, ``obs_step``, ``obs_frac``, ``obs_next``, ``smooth``). ``theta`` is
    ``[1 or N, P]`` (broadcast row or one row per trajectory).
    """
    N = x.shape[0]
    M = tab.law_kind.shape[0]
    for n in numba.prange(N):
        a = np.empty(M)
        cum = np.empty(M)
        block = np.empty((2, RNG_BLOCK))
        # row n of theta, or the single broadcast row
        it = n * (theta.shape[0] > 1)
        rec = (tape[n], t_checkpoints[n], checkpoint_every, obs_step[n], obs_frac[n], obs_next[n],
               width, smooth[n])
        st, kn, tn, r, ob = simulate_trajectory(first + n, x[n], theta[it], t[n], k[n], obs[n],
                                                t_stop, horizon, t_eval, states[n], a, cum, block,
                                                seed_lo, seed_hi, max_steps, count_limit, rec, tab)
        status[n] = st
        k[n] = kn
        t[n] = tn
        fail_reaction[n] = r
        obs[n] = ob


#: the observation mode and the estimator of a compiled reverse sweep (:func:`sweep_batch`):
#: each sweep the family compiles binds its own pair (``build(...).sweep``); these values only
#: serve the plain Python function
SWEEP_MODE = FILL
SWEEP_ESTIMATOR = STRAIGHT_THROUGH


def sweep_batch(x_final, theta, first, t_final, K, tape, t_checkpoints, checkpoint_every,
                obs_step, obs_frac, t_eval, G, width, horizon, inv_temp, weights, seed_lo,
                seed_hi, tab, grads, x_start, t_start):
    """Reverse sweeps of ``N`` recorded trajectories (see
    :func:`~cupyssa.kernels.backward.replay_trajectory`) for the observation mode ``SWEEP_MODE``
    and the estimator ``SWEEP_ESTIMATOR``, constants of the compiled code; trajectory ``n`` writes
    its gradient contribution to ``grads[n]`` and its recovered initial state and time to
    ``x_start[n]``, ``t_start[n]``. ``G`` is ``[N, T, S]`` (straight-through) or ``[N, 0, S]``
    (score)."""
    N = x_final.shape[0]
    M = tab.law_kind.shape[0]
    S = x_final.shape[1]
    for n in numba.prange(N):
        a = np.empty(M)
        y = np.empty(M)
        c = np.empty(M)
        s = np.empty(M)
        xbar = np.empty(S)
        forward = np.empty((2, SWEEP_BLOCK))
        n_gumbel = (M + 1) // 2 if SWEEP_ESTIMATOR == STRAIGHT_THROUGH else 0
        gumbel = np.empty((n_gumbel, 2, SWEEP_BLOCK))
        g = grads[n]
        g[:] = 0.0
        x = x_final[n].copy()
        it = n * (theta.shape[0] > 1)
        t_start[n] = replay_trajectory(first + n, x, theta[it], t_final[n], K[n], tape[n],
                                       t_checkpoints[n], checkpoint_every, obs_step[n],
                                       obs_frac[n], t_eval, G[n], SWEEP_MODE, width, horizon,
                                       SWEEP_ESTIMATOR, inv_temp, weights[n], seed_lo, seed_hi, a,
                                       y, c, s, xbar, forward, gumbel, g, tab)
        for i in range(S):
            x_start[n, i] = x[i]


def replay_arguments(x_final, theta, first, t_final, K, tape, t_checkpoints, checkpoint_every,
                     obs_step, obs_frac, t_eval, G, mode, width, horizon, estimator, inv_temp,
                     weights, seed_lo, seed_hi, tab, grads, x_start, t_start) -> dict:
    """The family's ``replay_batch(*args)`` arguments by name, in order (``replay_arguments(*args)``):
    those of :func:`sweep_batch` with the observation ``mode`` and the ``estimator`` among them."""
    return dict(locals())


def split_replay_args(args):
    """``replay_batch``'s arguments -> ``(mode, estimator, the arguments of sweep(mode,
    estimator))``."""
    named = replay_arguments(*args)
    return named.pop("mode"), named.pop("estimator"), tuple(named.values())


def source_digest(exclude=()) -> str:
    """A digest (12 hex digits) of the kernel sources, the files of this folder in name order,
    less the file names in ``exclude`` (e.g. ``("backward.py",)`` for what ``simulate`` runs)."""
    return hashlib.sha1(b"".join(
        p.read_bytes() for p in sorted(pathlib.Path(__file__).parent.glob("*.py"))
        if p.name not in exclude)).hexdigest()[:12]


#: Numba's cache does not notice a changed callee in another file, so every build is tagged with
#: the digest of all the kernel sources (see ``retarget``)
_SOURCE_HASH = source_digest()


def build(cache=True, replace=None):
    """Compile the CPU family, with the plain Python functions in ``replace`` (name -> function,
    e.g. a network's generated ``expression_propensity``, ``event_trigger`` or specialized ``fire``,
    see :mod:`cupyssa.codegen`) compiled in place of the defaults of those names.

    Returns a namespace with ``simulate_batch``, ``sweep``, ``replay_batch``, ``propensity``...
    ``sweep(mode, estimator, inv_temp=None)`` is the reverse sweep compiled with that observation
    mode and estimator as constants (at the first request; :func:`~cupyssa.kernels.backward.sweep_variant`
    says which pairs share one): as run-time arguments, their branches cost the dimerization's
    score sweep 30 % or more, and its straight-through sweep 10-15 % before the exponentials were
    taken in blocks, within the noise after (benchmarks/RESULTS.md, "Gradient throughput, session
    14"; there, too, the first ``value_and_grad``, which compiles one of them, from an empty cache:
    67.7 s, against 96.0 s for the sweep with run-time branches). A network's generated lanes
    sweep (``replace["sweep_lanes"]``, :mod:`cupyssa.lanes`) takes the place of the shared one for
    the straight-through estimator with fill or kernel observations when the temperature
    ``1 / inv_temp`` is one it serves (``squaring_exponent``). ``replay_batch(*args)`` runs the
    sweep the arguments ask for (``sweep_of(args)`` returns it, with the arguments it takes). With
    ``cache``, the build is tagged with a digest of the qualified names of the ``replace``
    functions (which carry a hash of their generated source), so each network's family has its
    own cache entries; they must then be defined in files (Numba caches nothing else).
    """
    # error_model="numpy": IEEE division (0/0 -> NaN), which the propensity checks turn into a
    # clear error, instead of a ZeroDivisionError escaping from a parallel region
    options = dict(cache=cache, nogil=True, error_model="numpy")
    # the replacements' names (each carries a hash of its source) enter as one digest: Numba's
    # cache file names repeat the tag, and a network with several generated functions made them
    # longer than the file system allows
    generated = "|".join(sorted(f.__qualname__ for f in (replace or {}).values()))
    tag = "_".join(["cpu"] + [f"{k}{v}" for k, v in sorted(options.items()) if k != "cache"] +
                   [_SOURCE_HASH] + ([hashlib.sha1(generated.encode()).hexdigest()[:16]]
                                     if generated else []))
    device = retarget(DEVICE_FUNCTIONS, numba.njit(**options), None, tag,
                      numba.njit(inline="always", **options), PER_STEP, replace)
    device_functions = dict(vars(device))
    batch = numba.njit(parallel=True, **options)
    device.simulate_batch = retarget([simulate_batch], batch, device_functions, tag).simulate_batch
    sweeps = {}
    lanes_sweep = (replace or {}).get("sweep_lanes")

    def sweep(mode, estimator, inv_temp=None):
        variant = sweep_variant(mode, estimator)
        lanes = (lanes_sweep is not None and variant[1] == STRAIGHT_THROUGH and variant[0] != LINEAR
                 and inv_temp is not None and squaring_exponent(inv_temp))
        if variant + (lanes,) not in sweeps:
            constants = {"SWEEP_MODE": variant[0], "SWEEP_ESTIMATOR": variant[1],
                         "SWEEP_LANES": SWEEP_LANES}
            fn = lanes_sweep if lanes else sweep_batch
            # the tag names the pair: Numba's cache key does not include the global constants
            compiled = retarget([fn], batch, {**device_functions, **constants},
                                f"{tag}_sweep{variant[0]}{variant[1]}")
            sweeps[variant + (lanes,)] = getattr(compiled, fn.__name__)
        return sweeps[variant + (lanes,)]

    def sweep_of(args):
        """``(the compiled sweep that replay_batch(*args) runs, its arguments)``."""
        mode, estimator, sweep_args = split_replay_args(args)
        return sweep(mode, estimator, replay_arguments(*args)["inv_temp"]), sweep_args

    def replay_batch(*args):
        compiled, sweep_args = sweep_of(args)
        compiled(*sweep_args)

    device.sweep = sweep
    device.sweep_of = sweep_of
    device.replay_batch = replay_batch
    return device


#: the family for networks made of the built-in laws (compiled once, cached on disk)
default = build()
