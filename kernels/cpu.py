"""CPU kernels: the shared source compiled with ``numba.njit`` and a ``prange`` over trajectories.

Each trajectory's random numbers depend only on its global index, so the results are identical for
any thread count and any chunking of the batch.
"""

import numba
import numpy as np

from . import philox, propensity, trajectory
from .targets import retarget

_device = retarget(
    [philox.philox4x32, philox.words_to_uniform, philox.uniform_pair, propensity.propensity,
     trajectory.select_reaction, trajectory.simulate_trajectory],
    numba.njit(cache=True, nogil=True),
)
simulate_trajectory = _device.simulate_trajectory
propensity_cpu = _device.propensity


@numba.njit(parallel=True, cache=True, nogil=True)
def simulate_batch(x0, theta, first, t0, t_eval, seed_lo, seed_hi, max_steps, count_limit, tab,
                   states, status, n_events, t_final, fail_reaction):
    """Simulate ``states.shape[0]`` trajectories with global indices ``first, first+1, ...``.

    ``x0`` is ``[1 or N, S]`` int64 and ``theta`` ``[1 or N, P]`` (one row broadcast to all, or one
    per trajectory). Writes ``states [N, T, S]``, ``status``, ``n_events``, ``t_final`` and
    ``fail_reaction`` ``[N]``.
    """
    N = states.shape[0]
    M = tab.law_kind.shape[0]
    for n in numba.prange(N):
        # one row broadcast to every trajectory, or one row each; x0 and theta stride like this
        ix = n * (x0.shape[0] > 1)
        it = n * (theta.shape[0] > 1)
        x = x0[ix].copy()
        a = np.empty(M)
        st, k, t, r = simulate_trajectory(first + n, x, theta[it], t0,
                                          t_eval, states[n], a, seed_lo, seed_hi, max_steps,
                                          count_limit, tab)
        status[n] = st
        n_events[n] = k
        t_final[n] = t
        fail_reaction[n] = r
