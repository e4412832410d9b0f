"""Log-probabilities of autoregressive models from their logits, fused in one pass (CPU).

An autoregressive model of the CME (:mod:`cupyssa.cme.autoregressive`) gives each species ``s``
of a state ``n`` a softmax over its values ``0..caps[s]-1``, from logits ``z [N, S, M]``
(``M = max(caps)``; entries ``m >= caps[s]`` are padding). Its log-probability and the adjoint
of the logits are

    log P(n) = sum_s ( z[s, n_s] - logsumexp(z[s, :caps[s]]) ),
    g[s, m]  = d log P(n) / d z[s, m] = [m == n_s] - softmax(z[s, :caps[s]])[m]   (0 for padding).

In NumPy these are six or more passes over ``[N, S, M]`` temporaries (masking, max, exp, sum,
gather, scatter); on the implicit CME step's batches (tens of thousands of distinct states,
MAPK: 16 species of up to 48 values) they were half of a step's time, bound by memory traffic.
Here each ``(state, species)`` row is read once for its maximum and once for its exponentials,
and the result written once. Rows are independent, so the ``prange`` over states gives the
same bits for any thread count.
"""

import math

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def log_prob_rows(z, n, caps):
    """``log P(n)`` ``[N]`` from the logits ``z [N, S, M]`` of the states ``n [N, S]``
    (``0 <= n[:, s] < caps[s]``)."""
    N, S, _ = z.shape
    out = np.empty(N)
    for a in numba.prange(N):
        acc = 0.0
        for s in range(S):
            c = caps[s]
            top = z[a, s, 0]
            for m in range(1, c):
                top = max(top, z[a, s, m])
            total = 0.0
            for m in range(c):
                total += math.exp(z[a, s, m] - top)
            acc += z[a, s, n[a, s]] - top - math.log(total)
        out[a] = acc
    return out


@numba.njit(parallel=True, cache=True)
def log_prob_and_logit_adjoint(z, n, caps):
    """``(log P(n) [N], g [N, S, M])``: :func:`log_prob_rows` and the adjoint of the logits,
    ``g[a, s, m] = [m == n[a, s]] - softmax(z[a, s, :caps[s]])[m]`` (0 for ``m >= caps[s]``)."""
    N, S, M = z.shape
    out = np.empty(N)
    g = np.zeros((N, S, M))
    for a in numba.prange(N):
        acc = 0.0
        for s in range(S):
            c = caps[s]
            top = z[a, s, 0]
            for m in range(1, c):
                top = max(top, z[a, s, m])
            total = 0.0
            for m in range(c):
                e = math.exp(z[a, s, m] - top)
                g[a, s, m] = e
                total += e
            inv = 1.0 / total
            for m in range(c):
                g[a, s, m] *= -inv
            k = n[a, s]
            g[a, s, k] += 1.0
            acc += z[a, s, k] - top - math.log(total)
        out[a] = acc
    return out, g
