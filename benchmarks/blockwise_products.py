"""NADE's per-species output products: ``kernels/blockwise.py`` against one BLAS call per species.

The products are ``h_i V_i^T + b_i`` (logits, ``[N, S, M]`` from ``[N, S, H]``) and ``g_i V_i``
(hidden adjoints, ``[N, S, H]`` from ``[N, S, M]``). The baseline is what NADE did before the
kernel: ``np.matmul`` on the operands transposed to ``[S, N, .]``, the result copied back to C
order, and the bias added in another pass. The third pair is the forward ``log P``:
``kernels/softmax.py::log_prob_of_hidden`` (each logits row made where the softmax reads it)
against the logits kernel followed by ``log_prob_rows``. All run in this process on the same
arrays, at four shapes (MAPK's implicit step with hidden 2 and, on a step check's 10^5
predecessors, hidden 4; the 3x3 Schlögl lattice; a wider network); the script prints
milliseconds per call (best of ``--repeats``, warm: the first call's page faults, which a fresh
logits array pays on every call of a solve, are not counted) and the ratios.

Usage::

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/blockwise_products.py
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

from cupyssa.kernels.blockwise import per_species_matmul
from cupyssa.kernels.softmax import log_prob_of_hidden, log_prob_rows

#: (rows N, species S, values M, hidden H)
SHAPES = [(20_000, 16, 48, 2), (100_000, 16, 48, 4), (5_000, 9, 85, 8), (2_000, 4, 80, 16)]


def blas_per_species(x, weights, bias=None):
    """The baseline: one BLAS product per species, copied back to ``[N, S, B]``."""
    out = np.ascontiguousarray(np.matmul(x.transpose(1, 0, 2), weights).transpose(1, 0, 2))
    return out if bias is None else out + bias


def two_pass_log_prob(h, Vt, b, n, caps):
    """``log P(n)`` from the logits array (what ``NADE.log_prob`` did before the fused kernel)."""
    return log_prob_rows(per_species_matmul(h, Vt, b), n, caps)


def best_ms(f, repeats):
    f()  # compilation, first-touch
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{'N x S x M x H':>22s} {'logits BLAS':>12s} {'kernel':>8s} {'ratio':>6s} "
          f"{'g V BLAS':>9s} {'kernel':>8s} {'ratio':>6s} {'log P 2-pass':>12s} {'fused':>8s} "
          f"{'ratio':>6s}")
    for N, S, M, H in SHAPES:
        h, V = rng.random((N, S, H)), rng.normal(size=(S, M, H))
        b, g = rng.normal(size=(S, M)), rng.normal(size=(N, S, M))
        Vt = V.transpose(0, 2, 1)
        np.testing.assert_allclose(per_species_matmul(h, Vt, b), blas_per_species(h, Vt, b),
                                   rtol=1e-12, atol=1e-12)
        row = []
        for operands in [(h, Vt, b), (g, V, None)]:  # logits, then hidden adjoints
            tb = best_ms(functools.partial(blas_per_species, *operands), args.repeats)
            tk = best_ms(functools.partial(per_species_matmul, *operands), args.repeats)
            row.append(f"{tb:12.1f} {tk:8.1f} {tb / tk:6.2f}")
        caps = np.full(S, M, dtype=np.int64)
        n = rng.integers(0, M, size=(N, S))
        two = best_ms(functools.partial(two_pass_log_prob, h, Vt, b, n, caps), args.repeats)
        fused = best_ms(functools.partial(log_prob_of_hidden, h, V, b, n, caps), args.repeats)
        row.append(f"{two:12.1f} {fused:8.1f} {two / fused:6.2f}")
        print(f"{f'{N} x {S} x {M} x {H}':>22s} " + " ".join(row), flush=True)


if __name__ == "__main__":
    main()
