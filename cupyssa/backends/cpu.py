"""The ``cpu`` backend: Numba ``njit(parallel=True)`` over trajectories."""

import numpy as np

from ..kernels.cpu import simulate_batch
from ..kernels.philox import split_seed


def simulate_chunk(network, x0, theta, first, t0, t_eval, seed, max_steps, states):
    N = states.shape[0]
    status = np.zeros(N, dtype=np.int8)
    n_events = np.zeros(N, dtype=np.int64)
    t_final = np.zeros(N)
    fail_reaction = np.zeros(N, dtype=np.int64)
    lo, hi = split_seed(seed)
    count_limit = np.iinfo(states.dtype).max
    simulate_batch(np.ascontiguousarray(x0, dtype=np.int64), np.ascontiguousarray(theta, dtype=float),
                   first, float(t0), np.ascontiguousarray(t_eval, dtype=float), lo, hi, int(max_steps),
                   count_limit, network.tables, states, status, n_events, t_final, fail_reaction)
    return status, n_events, t_final, fail_reaction
