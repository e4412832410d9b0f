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
def _log_prob(z, n, caps, g):
    """``log P(n)`` ``[N]``, and the adjoint written into ``g`` unless ``g`` is empty."""
    N, S, _ = z.shape
    adjoint = g.shape[0] > 0
    out = np.empty(N)
    for a in numba.prange(N):
        acc = 0.0
        for s in range(S):
            c = caps[s]
            top = z[a, s, 0]  # the shift that keeps exp finite (logits span hundreds)
            for m in range(1, c):
                top = max(top, z[a, s, m])
            total = 0.0
            for m in range(c):
                e = math.exp(z[a, s, m] - top)
                total += e
                if adjoint:
                    g[a, s, m] = e
            k = n[a, s]
            if adjoint:
                inv = 1.0 / total
                for m in range(c):
                    g[a, s, m] *= -inv
                g[a, s, k] += 1.0
            acc += z[a, s, k] - top - math.log(total)
        out[a] = acc
    return out


_NO_ADJOINT = np.zeros((0, 0, 0))


def log_prob_rows(z, n, caps):
    """``log P(n)`` ``[N]`` from the logits ``z [N, S, M]`` of the states ``n [N, S]`` (int64,
    ``0 <= n[:, s] < caps[s]``; ``caps`` [S] int64)."""
    return _log_prob(z, n, caps, _NO_ADJOINT)


def log_prob_and_logit_adjoint(z, n, caps):
    """``(log P(n) [N], g [N, S, M])``: :func:`log_prob_rows` and the adjoint of the logits,
    ``g[a, s, m] = [m == n[a, s]] - softmax(z[a, s, :caps[s]])[m]`` (0 for ``m >= caps[s]``)."""
    g = np.zeros(z.shape)
    return _log_prob(z, n, caps, g), g
