"""Per-species products of an autoregressive model's output layer, in one pass (CPU).

NADE (:mod:`cupyssa.cme.autoregressive`) maps each conditional's hidden units ``h [N, S, H]``
to its logits with its own output weights, and the logits' adjoint ``g [N, S, M]`` back:

    z[n, s, :] = bias[s] + h[n, s] @ V[s]^T,        dh[n, s, :] = g[n, s] @ V[s],

block-diagonal products over the species. As one BLAS call per species each needs its operands
transposed to ``[S, N, .]`` and the result copied back to ``[N, S, .]`` (the reductions over the
last axis that follow want it contiguous), and the bias is another pass; with the small inner
dimensions they have (``H`` 2-8, ``M`` up to ~100) the copies cost as much as the products (MAPK
implicit step: a quarter of it; ``benchmarks/blockwise_products.py`` times both, which win
where the hidden layer is narrow). Here each output row is written once, in place, from contiguous
inputs. Each row is one thread's fixed sequence of multiply-adds, so the bits do not depend on
the thread count.
"""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def _blockwise(x, weights, bias, by_dot, out):
    """``out[n, s] = bias[s] + x[n, s] @ W[s]``; ``x [N, S, A]``, ``bias [S, B]`` (or ``[0, 0]``:
    none), ``out [N, S, B]``, and ``weights`` holding ``W [S, A, B]`` or, with ``by_dot``, its
    transpose ``[S, B, A]``.

    Two loop orders, so that the inner loop runs along contiguous memory and is long: axpy along
    a row of ``W[s]`` and of ``out`` (the logits: ``B = M`` values), or, ``by_dot``, one dot
    product along ``x[n, s]`` per output (hidden adjoints with ``H`` <= 2, where the axpy
    order's inner loop would be 1-2 long)."""
    N, S, A = x.shape
    B = out.shape[2]
    biased = bias.shape[0] > 0
    for n in numba.prange(N):
        for s in range(S):
            if by_dot:
                for b in range(B):
                    acc = bias[s, b] if biased else 0.0
                    for a in range(A):
                        acc += x[n, s, a] * weights[s, b, a]
                    out[n, s, b] = acc
            else:
                for b in range(B):
                    out[n, s, b] = bias[s, b] if biased else 0.0
                for a in range(A):
                    xa = x[n, s, a]
                    for b in range(B):
                        out[n, s, b] += xa * weights[s, a, b]
    return out


_NO_BIAS = np.zeros((0, 0))


def per_species_matmul(x, weights, bias=None):
    """``[N, S, B]`` with row ``(n, s)`` equal to ``x[n, s] @ weights[s]`` (+ ``bias[s]``).

    Parameters
    ----------
    x : [N, S, A] float64
    weights : [S, A, B] float64 (any strides; copied to the order the kernel reads, it is small)
    bias : [S, B] float64 or None
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    bias = _NO_BIAS if bias is None else np.ascontiguousarray(bias, dtype=np.float64)
    out = np.empty((x.shape[0], x.shape[1], weights.shape[2]))
    # one core, 2 * 10^4 rows of 16 species of 48 values: g V with H = 2 took 24 ms by dot
    # products, 37 by axpy (BLAS per species 50); with H = 4: 47 / 35 / 52
    by_dot = weights.shape[2] <= 2
    weights = weights.transpose(0, 2, 1) if by_dot else weights
    return _blockwise(x, np.ascontiguousarray(weights, dtype=np.float64), bias, by_dot, out)
