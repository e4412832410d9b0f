"""Short-time start of a CME solve: the exact law a moment after the initial point mass.

From a point mass the first VAN steps are the stiffest of the whole solve. The local energy at a
neighbour ``x0 + s_k`` of the initial state is ``a_k(x0) P(x0) / P(x0 + s_k)``, huge for a
smoothed point mass, and the step ``courant / q99(|E|)`` shrinks accordingly: on the toggle switch
8,000 of the 11,000 steps to t = 20 came before t = 1, while from the exact law at t = 0.1 the
same solve needs 250 steps to reach t = 1 (``benchmarks/RESULTS.md``).

After a short time ``tau`` few events have happened, so the law lives on the states reachable from
``x0`` in at most ``D`` events. This module solves the CME exactly on that set, with the VAN's
reflecting box (:mod:`cupyssa.cme.box`) and an absorbing frontier: the probability that has taken
more than ``D`` events by ``tau`` is lost, and ``D`` grows until that loss is below a tolerance
(the FSP bound of Munsky & Khammash: the 1-norm error of the law on the set is the lost mass).
The autoregressive network is then fitted to that law by minimum cross-entropy
``-sum_n p(n) log P_theta(n)`` (L-BFGS), and the solve continues from ``t0 + tau``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.sparse.linalg import expm_multiply

from .autoregressive import AutoregressiveModel
from .box import reflecting_generator
from .fsp import _lookup, _unique_rows
from .van import VANError

__all__ = ["ShortTimeLaw", "short_time_law", "product_short_time_law", "fit_to_law"]

#: largest set of states the short-time law may need before ``short_time_law`` gives up
MAX_STATES = 200_000


@dataclass
class ShortTimeLaw:
    """The law at ``tau`` on the states reachable in at most ``depth`` events.

    Attributes
    ----------
    states : [K, S] int64, the set, ``x0`` first, then level by level (columns as the network's)
    p : [K] probabilities at ``tau`` (they sum to ``1 - lost``)
    lost : probability of having taken more than ``depth`` events by ``tau`` (an upper bound of
        the 1-norm error of ``p``)
    depth : events from ``x0`` covered by the set
    """

    states: np.ndarray
    p: np.ndarray
    lost: float
    depth: int


def _levels(network, x0, theta, caps):
    """Yield the states first reached after 1, 2, ... events from ``x0`` (breadth first: each
    level holds the in-box successors, through reactions of positive propensity, of the previous
    one that no earlier level holds)."""
    nu = np.asarray(network.stoichiometry, dtype=np.int64)
    known = x0[None, :]
    frontier = known
    while len(frontier):
        succ = frontier[:, None, :] + nu[None, :, :]
        ok = ((network.propensities(frontier, theta) > 0)
              & np.all((succ >= 0) & (succ < caps), axis=2))
        new = _unique_rows(succ[ok])
        new = new[_lookup(known, new) < 0]
        known = np.concatenate([known, new])
        frontier = new
        yield new


def short_time_law(network, x0, theta, caps, tau: float, tol: float = 1e-8,
                   max_states: int = MAX_STATES) -> ShortTimeLaw:
    """The exact law at time ``tau`` after the point mass ``x0``, on the fewest breadth-first
    levels of reachable states whose lost mass is at most ``tol``.

    Parameters
    ----------
    network : object with ``stoichiometry [R, S]`` and ``propensities(states [K, S], theta)``
    x0 : [S] int initial state; theta : [P] rate parameters (held constant over ``tau``)
    caps : [S] box ``0 <= n_i < caps[i]`` (reflecting, as in :mod:`cupyssa.cme.van`)
    tau : positive time
    tol : largest lost mass accepted
    max_states : raise :class:`~cupyssa.cme.van.VANError` beyond this many states

    The depth grows level by level (the set and its solve are small next to the solve they
    start); a set that stops growing is closed under the box and loses nothing.
    """
    x0 = np.asarray(x0, dtype=np.int64)
    caps = np.asarray(caps, dtype=np.int64)
    chunks = [x0[None, :]]
    n_states, depth, next_solve = 1, 0, 1
    levels = _levels(network, x0, theta, caps)
    while True:
        new = next(levels, None)
        closed = new is None or len(new) == 0
        if not closed:
            chunks.append(new)
            n_states += len(new)
            depth += 1
            if n_states > max_states:
                raise VANError(
                    f"the law at init_time={tau:g} needs more than {max_states} states (depth "
                    f"{depth} events, lost mass still above {tol:g}); choose a shorter init_time")
        # solve every few levels: each solve costs a sparse exponential of the whole set
        if closed or depth >= next_solve:
            states = np.concatenate(chunks)
            Q = reflecting_generator(network, states, theta, caps)
            p0 = np.zeros(len(states))
            p0[0] = 1.0
            p = np.maximum(expm_multiply(Q * tau, p0), 0.0)
            lost = max(0.0, 1.0 - p.sum())
            if lost <= tol or closed:
                return ShortTimeLaw(states, p, lost, depth)
            next_solve = depth + max(2, depth // 4)


def _reads(network) -> list[np.ndarray]:
    """Per reaction, the columns its propensity reads (every column where the network does not
    say): a :class:`~cupyssa.network.ReactionNetwork`'s laws, or through the column order of a
    :class:`~cupyssa.cme.van.ReorderedNetwork`."""
    inner = getattr(network, "network", network)
    reactions = getattr(inner, "reactions", None)
    n_reactions, n_species = np.asarray(network.stoichiometry).shape
    if reactions is None:
        return [np.arange(n_species)] * n_reactions
    position = np.argsort(network.columns) if inner is not network else np.arange(n_species)
    return [np.sort(position[list(r.law.reads())]) for r in reactions]


#: :func:`product_short_time_law` evaluates a reaction's mean rate on at most this many states
#: (a species' values times the joint support of the other species the law reads)
_MAX_MEAN_RATE_STATES = 2 ** 22


def product_short_time_law(network, x0, theta, caps, tau: float,
                           n_sub: int = 20) -> list[np.ndarray]:
    """Per-species laws at ``tau`` after the point mass ``x0``, the species taken independent.

    The marginal ``p_i`` of the CME obeys ``dp_i(m)/dt = sum_k [abar_ik(m - nu_ki) p_i(m - nu_ki)
    - abar_ik(m) p_i(m)]`` over the reactions that change species ``i``, with the mean rate
    ``abar_ik(m) = E[a_k(x) | x_i = m]``. Here that mean is taken over the product of the
    other species' current laws (the closure), which makes each species a one-dimensional chain
    on ``0 <= m < caps[i]`` whose rates follow the others' laws in time; a jump that would leave
    the box is switched off (as in :mod:`cupyssa.cme.van`), its indicator averaged like the
    rate. The chains are advanced together in ``n_sub`` steps, each by the exact exponential of
    its generator with the mean rates at the step's midpoint (from a half step with the rates at
    its start): second order in ``tau / n_sub`` in the coupling.

    So a species that only another species' events produce gets the law those events give it.
    Holding the other species at ``x0`` instead, as this function did before, leaves it a point
    mass wherever ``x0`` switches its production off: in the MAPK cascade, which starts with no
    kinase, every complex and active form then had probability 0 (floored to 1e-300) at
    ``init_time``, and the solve never recovered them (``benchmarks/RESULTS.md``). Where the other
    species do not move by ``tau`` the two coincide.

    The product misses the correlations built by ``tau`` (2-site Schlögl lattice,
    ``tau = 0.002``: marginals within Hellinger 2e-4 of the exact ones, joint law 0.015; the
    exact set has 6,267 states there, and on the 3x3 lattice it is out of reach). For networks of
    first-order reactions started from a point mass at 0 the law is a product of Poisson laws
    (Jahnke & Huisinga 2007) and the closure is exact: only the time stepping errs.

    Parameters
    ----------
    network : object with ``stoichiometry [R, S]`` and ``propensities(states [K, S], theta)``
        (a reaction network, or one seen in another column order, whose rate laws say which
        species they read; otherwise every species is taken to be read)
    x0 : [S] int initial state; theta : [P] rate parameters (held constant over ``tau``)
    caps : [S] box ``0 <= n_i < caps[i]``
    tau : positive time
    n_sub : steps of the coupling over ``tau``

    Returns
    -------
    list of S arrays [M_i], each summing to 1
    """
    x0 = np.asarray(x0, dtype=np.int64)
    caps = np.asarray(caps, dtype=np.int64)
    nu = np.asarray(network.stoichiometry, dtype=np.int64)
    reads = _reads(network)
    laws = [np.eye(int(c))[x0[i]] for i, c in enumerate(caps)]

    def in_box(j, k):
        """[M_j] whether reaction k's jump keeps species j in the box, at each of its values"""
        m = np.arange(caps[j]) + nu[k, j]
        return (m >= 0) & (m < caps[j])

    def mean_rates(laws, i):
        """[(k, abar_ik [M_i])] for the reactions that change species i"""
        out = []
        for k in np.flatnonzero(nu[:, i]):
            others = [j for j in reads[k] if j != i]
            support = [np.flatnonzero(laws[j] > 0.0) for j in others]
            n_states = int(caps[i]) * int(np.prod([len(v) for v in support]))
            if n_states > _MAX_MEAN_RATE_STATES:
                raise VANError(
                    f"init_law='product': the mean rate of reaction {k} over the species it "
                    f"reads needs {n_states} states; use init_law='exact' or smaller caps")
            grid = np.meshgrid(np.arange(caps[i]), *support, indexing="ij")
            x = np.repeat(x0[None, :], grid[0].size, axis=0)
            x[:, i] = grid[0].reshape(-1)
            weight = np.ones(grid[0].size)
            for j, g in zip(others, grid[1:]):
                x[:, j] = g.reshape(-1)
                weight *= laws[j][x[:, j]] * in_box(j, k)[x[:, j]]
            a = network.propensities(x, theta)[:, k] * weight * in_box(i, k)[x[:, i]]
            abar = a.reshape(int(caps[i]), -1).sum(axis=1)  # the grid's first axis is m
            # species changed but not read: their box indicators average to a constant
            for j in np.flatnonzero(nu[k]):
                if j != i and j not in others:
                    abar *= laws[j] @ in_box(j, k)
            out.append((k, abar))
        return out

    def advance(laws, rates, h):
        new = []
        for i, p in enumerate(laws):
            m = np.arange(caps[i])
            Q = np.zeros((caps[i], caps[i]))
            for k, abar in rates[i]:
                on = abar > 0.0
                Q[m[on] + nu[k, i], m[on]] += abar[on]
                Q[m[on], m[on]] -= abar[on]
            p = np.maximum(expm_multiply(Q * h, p), 0.0)
            new.append(p / p.sum())
        return new

    h = tau / n_sub
    for _ in range(n_sub):
        half = advance(laws, [mean_rates(laws, i) for i in range(len(caps))], 0.5 * h)
        laws = advance(laws, [mean_rates(half, i) for i in range(len(caps))], h)
    return laws


def fit_to_law(model: AutoregressiveModel, states, p, max_iter: int = 200) -> float:
    """Fit ``model`` (in place, from its current parameters) to the law ``p`` on ``states``
    (columns in the model's order) by minimum cross-entropy ``-sum_n p(n) log P_theta(n)``,
    L-BFGS (at most ``max_iter`` iterations) with the exact gradient ``-J^T p``. ``p`` is
    normalized first. Returns the Kullback-Leibler divergence ``KL(p || P_theta)`` of the fit,
    in nats."""
    keep = p > 0
    x = np.asarray(states)[keep]
    w = p[keep] / p[keep].sum()

    def cross_entropy(theta):
        model.theta = theta
        lp, J = model.log_prob_and_jacobian(x)
        return -(w @ lp), -J.rmatvec(w)

    res = minimize(cross_entropy, model.theta.copy(), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=max_iter, maxcor=30))
    model.theta = res.x
    return float(res.fun + w @ np.log(w))
