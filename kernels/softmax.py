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


@numba.njit(inline="always")
def _log_softmax_at(z, c, k, g, adjoint):
    """``log softmax(z[:c])[k]``; with ``adjoint``, ``g[:c] = onehot(k) - softmax(z[:c])``
    (``g`` is not touched otherwise)."""
    top = z[0]  # the shift that keeps exp finite (logits span hundreds)
    for m in range(1, c):
        top = max(top, z[m])
    total = 0.0
    for m in range(c):
        e = math.exp(z[m] - top)
        total += e
        if adjoint:
            g[m] = e
    if adjoint:
        inv = 1.0 / total
        for m in range(c):
            g[m] *= -inv
        g[k] += 1.0
    return z[k] - top - math.log(total)


@numba.njit(parallel=True, cache=True)
def _log_prob(z, n, caps, g):
    """``log P(n)`` ``[N]``, and the adjoint written into ``g`` unless ``g`` is empty."""
    N, S, _ = z.shape
    adjoint = g.shape[0] > 0
    out = np.empty(N)
    for a in numba.prange(N):
        acc = 0.0
        for s in range(S):
            if adjoint:
                acc += _log_softmax_at(z[a, s], caps[s], n[a, s], g[a, s], True)
            else:  # g unused: any array of the type
                acc += _log_softmax_at(z[a, s], caps[s], n[a, s], z[a, s], False)
        out[a] = acc
    return out


@numba.njit(parallel=True, cache=True)
def _log_prob_of_hidden(h, Vt, b, n, caps):
    """``log P(n)`` ``[N]`` of the logits ``z[a, s] = b[s] + h[a, s] @ Vt[s]`` (``Vt [S, H, M]``),
    each row made where it is used, by the multiply-adds of ``kernels/blockwise.py`` in its
    order (axpy along the row: the inner loop runs over contiguous values and vectorizes)."""
    N, S, H = h.shape
    M = Vt.shape[2]
    out = np.empty(N)
    for a in numba.prange(N):
        z = np.empty(M)
        acc = 0.0
        for s in range(S):
            c = caps[s]
            for m in range(c):
                z[m] = b[s, m]
            for j in range(H):
                hj = h[a, s, j]
                for m in range(c):
                    z[m] += hj * Vt[s, j, m]
            acc += _log_softmax_at(z, c, n[a, s], z, False)
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


def log_prob_of_hidden(h, V, b, n, caps):
    """:func:`log_prob_rows` of the logits ``z[a, s] = b[s] + V[s] @ h[a, s]`` without
    ``z``: ``h [N, S, H]``, ``V [S, M, H]``, ``b [S, M]`` (float64). Bit for bit the same as
    ``log_prob_rows(per_species_matmul(h, V.transpose(0, 2, 1), b), n, caps)``, with no
    ``[N, S, M]`` array written and read back: a NADE's forward pass on the tens of thousands
    of predecessor states of a CME step is bound by that memory traffic."""
    return _log_prob_of_hidden(np.ascontiguousarray(h, dtype=np.float64),
                               np.ascontiguousarray(V.transpose(0, 2, 1), dtype=np.float64),
                               np.ascontiguousarray(b, dtype=np.float64), n, caps)
