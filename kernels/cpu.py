"""CPU kernels: the shared source compiled with ``numba.njit`` and a ``prange`` over trajectories.

Each trajectory's random numbers depend only on its global index, so the results are identical for
any thread count and any chunking of the batch.
"""

import numba
import numpy as np

from . import philox, propensity, trajectory
from .targets import retarget
from .trajectory import simulate_trajectory

#: the shared device-level source, callees first
DEVICE_FUNCTIONS = [
    philox.philox4x32, philox.words_to_uniform, philox.uniform_pair,
    propensity.expression_propensity, propensity.propensity, trajectory.event_trigger,
    trajectory.select_reaction, trajectory.all_propensities, trajectory.simulate_trajectory,
]


def simulate_batch(x, theta, first, t, k, obs, t_stop, t_eval, seed_lo, seed_hi, max_steps,
                   count_limit, tab, states, tape, t_checkpoints, checkpoint_every, status,
                   fail_reaction):
    """Advance ``N = x.shape[0]`` trajectories (global indices ``first + n``) by one segment.

    In/out ``[N]``-arrays: ``x [N, S]`` states, ``t`` times, ``k`` step counters, ``obs`` next grid
    index; out: ``states [N, T, S]``, ``tape [N, L]``, ``t_checkpoints [N, L // C + 1]``, ``status``,
    ``fail_reaction``. ``theta`` is ``[1 or N, P]`` (broadcast row or one row per trajectory).
    """
    N = x.shape[0]
    M = tab.law_kind.shape[0]
    for n in numba.prange(N):
        a = np.empty(M)
        # row n of theta, or the single broadcast row
        it = n * (theta.shape[0] > 1)
        st, kn, tn, r, ob = simulate_trajectory(first + n, x[n], theta[it], t[n], k[n], obs[n],
                                                t_stop, t_eval, states[n], a, seed_lo, seed_hi,
                                                max_steps, count_limit, tape[n], t_checkpoints[n],
                                                checkpoint_every, tab)
        status[n] = st
        k[n] = kn
        t[n] = tn
        fail_reaction[n] = r
        obs[n] = ob


def build(provided=None, cache=True):
    """Compile the CPU family, with code-generated ``expression_propensity`` / ``event_trigger``
    taken from ``provided`` (name -> ``numba.njit`` function) when a network needs them.

    Returns a namespace with ``simulate_batch``, ``propensity``, ``simulate_trajectory``... A
    family built with ``provided`` is not cached on disk (its callees differ from the defaults').
    """
    # error_model="numpy": IEEE division (0/0 -> NaN), which the propensity checks turn into a
    # clear error, instead of a ZeroDivisionError escaping from a parallel region
    options = dict(cache=cache, nogil=True, error_model="numpy")
    tag = "cpu_" + "_".join(f"{k}{v}" for k, v in sorted(options.items()) if k != "cache")
    device = retarget(DEVICE_FUNCTIONS, numba.njit(**options), provided, tag)
    batch = retarget([simulate_batch], numba.njit(parallel=True, **options), vars(device), tag)
    device.simulate_batch = batch.simulate_batch
    return device


#: the family for networks made of the built-in laws (compiled once, cached on disk)
default = build()
