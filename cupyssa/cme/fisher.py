"""The damped Fisher solve of TDVP and natural-gradient steps, by the smaller of two sides.

With per-sample gradients ``G [N, P]`` (``G_s = d log P(n_s) / d theta``), weights ``w``, and
``O = diag(sqrt(w)) (G - 1 mu^T)`` (``mu = G^T w``, the centring that removes the normalizer),
a least-squares fit of values ``f`` by a parameter change is

    (O^T O + lambda I) delta = O^T eps,    eps = diag(sqrt(w)) (f - w.f),

i.e. the change of ``log P`` along ``delta``, ``(G - 1 mu^T) delta``, is the Fisher-metric
projection of ``f - w.f`` onto what the model can do. It serves the VAN's steps
(:mod:`cupyssa.cme.van`) and the moment projection (:mod:`cupyssa.cme.moments`), which fits
several right-hand sides at once.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .autoregressive import DenseJacobian, Jacobian

__all__ = ["natural_direction"]


def natural_direction(G, f, w, damping):
    """Solve ``(O^T O + lambda I) delta = O^T eps`` (module docstring).

    Parameters
    ----------
    G : [N, P] per-sample gradients, or a :class:`~cupyssa.cme.autoregressive.Jacobian`
    f : [N] values, or [N, Q] for Q right-hand sides sharing one factorization
    w : [N] normalized weights
    damping : relative damping; ``lambda = damping * trace(O^T O) / min(N, P)``

    Returns
    -------
    delta : [P] (or [P, Q]); grad : [P] (or [P, Q]) the plain gradient ``O^T eps``

    Notes
    -----
    For ``N < P`` only the Gram matrix ``K = G G^T`` and products ``G^T v`` are needed:
    ``O O^T = D (K - k 1^T - 1 k^T + (w^T k) 1 1^T) D`` with ``D = diag(sqrt(w))`` and
    ``k = K w``, and ``O^T a = G^T (b - w sum(b))`` with ``b = D a``. Both sides give the same
    ``delta`` (``(O^T O + lambda I)^-1 O^T = O^T (O O^T + lambda I)^-1``), so the side is chosen
    by cost: ``N^2 c + N^3 / 3`` (``c`` = :attr:`~cupyssa.cme.autoregressive.Jacobian.gram_entry_cost`,
    ``P`` for assembled rows, far less for NADE's factors) against ``N P^2 + P^3 / 3``.
    """
    J = G if isinstance(G, Jacobian) else DenseJacobian(np.asarray(G))
    N, P = J.shape
    f = np.asarray(f, dtype=float)
    sw = np.sqrt(w)
    col = sw if f.ndim == 1 else sw[:, None]  # the weights broadcast over the right-hand sides
    e = col * (f - w @ f)

    def o_transpose(a):
        b = col * a
        return J.rmatmat(b - np.multiply.outer(w, b.sum(axis=0)))

    def damped_factor(A):
        """Cholesky factor of ``A + lambda I`` (``A`` is ``O O^T`` or ``O^T O``: same trace)."""
        tr, rank = float(np.trace(A)), min(N, P)
        A[np.diag_indices(A.shape[0])] += damping * tr / rank + 1e-12 * (tr / rank + 1.0)
        return cho_factor(A, lower=True)

    grad = o_transpose(e)
    if N * N * J.gram_entry_cost + N ** 3 / 3 <= N * P * P + P ** 3 / 3:
        K = J.gram()
        k = K @ w
        T = sw[:, None] * (K - k[:, None] - k[None, :] + w @ k) * sw[None, :]
        return o_transpose(cho_solve(damped_factor(T), e)), grad
    Gd = J.dense()
    Om = sw[:, None] * (Gd - w @ Gd)
    return cho_solve(damped_factor(Om.T @ Om), grad), grad
