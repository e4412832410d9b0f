"""The exact CME of the chain restricted to a box with the VAN solver's reflecting rule.

:func:`cupyssa.cme.fsp` truncates with an absorbing sink (probability that leaves the bounds is
lost). :func:`cupyssa.cme.solve` instead switches off every reaction whose product would leave the
box ``0 <= n_i < M_i`` (see :mod:`cupyssa.cme.van`), which conserves probability. For chains that
press against the box (the Schlögl model with cap 85, whose flux through ``x = 84`` is large)
the two differ, and the VAN's own truncated chain is the right reference for its accuracy:
:func:`box_cme` solves it exactly (sparse generator, ``expm_multiply``). Where the box is large
enough the two references agree to the reported lost mass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply

from ..models import Model
from .fsp import _lookup

__all__ = ["BoxCMEResult", "box_cme", "reflecting_generator"]


def reflecting_generator(network, states, theta, caps) -> sp.csc_matrix:
    """The CME generator ``Q`` ``[K, K]`` (column convention, ``dp/dt = Q p``) on ``states``
    ``[K, S]`` under the reflecting box ``0 <= n_i < caps[i]``.

    A reaction whose product leaves the box is switched off (no outflow, no inflow). One whose
    product is in the box but not among ``states`` drains its state (the FSP sink), so ``Q``
    conserves probability exactly when ``states`` is closed under the reactions, e.g. the whole
    box. ``network`` needs ``stoichiometry [R, S]`` and ``propensities(states, theta) [K, R]``.
    """
    states = np.asarray(states, dtype=np.int64)
    caps = np.asarray(caps, dtype=np.int64)
    K = len(states)
    a = network.propensities(states, theta)  # [K, R]
    nu = np.asarray(network.stoichiometry, dtype=np.int64)
    src = np.arange(K)
    rows, cols, vals = [], [], []
    for r in range(nu.shape[0]):
        dst = states + nu[r]
        on = np.all((dst >= 0) & (dst < caps), axis=1) & (a[:, r] > 0)
        j = _lookup(states, dst[on])
        inside = j >= 0
        rows += [j[inside], src[on]]
        cols += [src[on][inside], src[on]]
        vals += [a[on, r][inside], -a[on, r]]
    return sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(K, K))


@dataclass
class BoxCMEResult:
    """``p[k]`` is the distribution over ``states`` at ``t[k]`` (sums to 1)."""

    t: np.ndarray
    states: np.ndarray
    p: np.ndarray
    species: tuple
    caps: np.ndarray

    def marginal(self, species, t_index: int) -> np.ndarray:
        i = self.species.index(species) if isinstance(species, str) else int(species)
        return np.bincount(self.states[:, i], weights=self.p[t_index], minlength=int(self.caps[i]))


def box_cme(model, t_eval, caps=None, x0=None, params=None, max_states: int = 2_000_000):
    """Exact distribution of the reflecting-box chain at ``t_eval`` (``t_eval[0]`` the start).

    Parameters
    ----------
    model : Model (defaults for ``x0``, ``params``, ``caps``) or ReactionNetwork
    t_eval : [T] increasing times
    caps : mapping species -> M_i or [S]; the box is ``0 <= n_i < M_i``
    """
    if isinstance(model, Model):
        net = model.network
        x0 = model.x0 if x0 is None else x0
        params = model.params if params is None else params
        caps = model.metadata.get("caps") if caps is None else caps
    else:
        net = model
    if isinstance(caps, dict):
        caps = [caps[s] for s in net.species]
    caps = np.asarray(caps, dtype=np.int64)
    total = int(np.prod(caps.astype(float)))
    if total > max_states:
        raise ValueError(f"the box holds {total} states, more than max_states={max_states}")
    theta = net.parameter_vector(params)
    x = np.asarray(net.initial_vector(x0), dtype=np.int64)
    grids = np.meshgrid(*[np.arange(c) for c in caps], indexing="ij")
    states = np.stack([g.reshape(-1) for g in grids], axis=1)
    Q = reflecting_generator(net, states, theta, caps)
    t_eval = np.asarray(t_eval, dtype=float)
    p = np.zeros((len(t_eval), total))
    p[0, _lookup(states, x[None, :])[0]] = 1.0
    for k in range(1, len(t_eval)):
        p[k] = np.maximum(expm_multiply(Q * (t_eval[k] - t_eval[k - 1]), p[k - 1]), 0.0)
        p[k] /= p[k].sum()
    return BoxCMEResult(t_eval, states, p, tuple(net.species), caps)
