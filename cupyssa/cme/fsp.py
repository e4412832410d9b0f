"""Finite state projection (FSP) of the chemical master equation, with exact sensitivities.

The chemical master equation of a network with propensities ``a_j(x; theta)`` and net changes
``nu_j`` is the linear ODE ``dp/dt = Q p`` over the (usually infinite) set of states. FSP keeps a
finite set ``X = {x_0, ..., x_{K-1}}`` and the truncated generator (column convention)::

    Q[i', i] += a_j(x_i)      for each reaction j whose successor x_{i'} = x_i + nu_j is in X
    Q[i, i]  -= a_j(x_i)      for every reaction j

so probability that flows out of ``X`` is lost (the FSP sink). Munsky & Khammash (J. Chem. Phys.
124, 044104, 2006): the truncated solution is a lower bound of the true one on ``X``, and the
1-norm of the difference is at most the lost mass ``1 - sum_i p_i(t)``.

Sensitivities ``s_p = dp/dtheta_p`` of the truncated system are exact (for the fixed set ``X``):
differentiating ``dp/dt = Q(theta) p`` gives ``ds_p/dt = Q s_p + (dQ/dtheta_p) p`` with
``s_p(0) = 0``, i.e. one block lower-triangular linear system::

    d/dt [p; s_1; ...; s_P] = [[Q, 0, ..., 0], [dQ_1, Q, 0, ...], ..., [dQ_P, 0, ..., Q]] [p; s]

whose matrix exponential is applied with ``scipy.sparse.linalg.expm_multiply`` (or integrated by
BDF). ``dQ_p`` is assembled from ``da_j/dtheta_p`` exactly as ``Q`` is from ``a_j``; assembly is
linear in the propensities, so ``dQ_p`` is the exact derivative of ``Q``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp
from scipy.sparse.csgraph import breadth_first_order
from scipy.sparse.linalg import expm_multiply

from ..errors import InitialStateError, NetworkError, ParameterError
from ..models import Model
from ..network import ReactionNetwork

__all__ = ["FSPResult", "enumerate_states", "fsp"]

#: Candidate states examined per iteration of the reachability search (memory ~ 8 S times this).
_BATCH = 1 << 16
#: Slack allowed above 1 for the total of an initial distribution given as probabilities.
_MASS_SLACK = 1e-9


# -- rows of integer states as sortable keys ---------------------------------------------------
def _row_keys(*arrays: np.ndarray) -> list[np.ndarray]:
    """Keys of the rows of the ``[n, S]`` int arrays, comparable across arrays and sorting in the
    lexicographic order of the rows: one int64 (mixed radix) per row when the value ranges
    allow it, otherwise a structured scalar of ``S`` int64 fields."""
    both = np.concatenate(arrays)
    S = both.shape[1]
    lo = both.min(axis=0) if len(both) else np.zeros(S, dtype=np.int64)
    span = (both.max(axis=0) - lo + 1) if len(both) else np.ones(S, dtype=np.int64)
    if math.prod(int(v) for v in span) < 2 ** 62:
        # stride of column s is prod(span[s+1:]): the first species is the most significant
        strides = np.ones(S, dtype=np.int64)
        strides[:-1] = np.cumprod(span[::-1])[::-1][1:]
        return [(a - lo) @ strides for a in arrays]
    fields = np.dtype([(f"s{i}", np.int64) for i in range(S)])
    return [np.ascontiguousarray(a, dtype=np.int64).view(fields).ravel() for a in arrays]


def _unique_rows(a: np.ndarray) -> np.ndarray:
    """The distinct rows of ``a`` ``[n, S]``, in lexicographic order."""
    (keys,) = _row_keys(a)
    _, first = np.unique(keys, return_index=True)
    return a[first]


def _lookup(table: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index in ``table`` ``[K, S]`` (distinct rows) of each row of ``queries`` ``[n, S]``;
    ``-1`` where a query is not in the table."""
    if len(table) == 0 or len(queries) == 0:
        return np.full(len(queries), -1, dtype=np.int64)
    tkeys, qkeys = _row_keys(table, queries)
    order = np.argsort(tkeys, kind="stable")
    sorted_keys = tkeys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, qkeys), len(table) - 1)
    return np.where(sorted_keys[pos] == qkeys, order[pos], -1)


# -- inputs ------------------------------------------------------------------------------------
def _resolve(network_or_model, x0, params):
    """``(network, initial states [K0, S] int64, initial probabilities [K0], theta [P])``."""
    if isinstance(network_or_model, Model):
        model = network_or_model
        if getattr(model, "events", ()):
            raise NetworkError("fsp does not support models with events; solve between event "
                               "times and apply the events to the distribution yourself")
        net = model.network
        if x0 is None or isinstance(x0, Mapping):
            x0 = {**model.x0, **(x0 or {})}
        if params is None or isinstance(params, Mapping):
            params = {**model.params, **(params or {})}
    elif isinstance(network_or_model, ReactionNetwork):
        net = network_or_model
    else:
        raise NetworkError(f"expected a ReactionNetwork or a cupyssa.models.Model, got "
                           f"{type(network_or_model).__name__}")
    if net.n_reactions == 0:
        raise NetworkError("the network has no reactions")
    theta = net.parameter_vector(params)
    if theta.ndim != 1:
        raise ParameterError(f"fsp needs one parameter vector of shape ({net.n_parameters},), "
                             f"got per-trajectory parameters of shape {theta.shape}")
    states0, probs0 = _initial_distribution(net, x0)
    return net, states0, probs0, theta


def _initial_distribution(net: ReactionNetwork, x0) -> tuple[np.ndarray, np.ndarray]:
    """The initial law as distinct states ``[K0, S]`` with positive probabilities ``[K0]``."""
    is_distribution = (isinstance(x0, (tuple, list)) and len(x0) == 2
                       and np.ndim(x0[0]) == 2)
    if not is_distribution:
        x = net.initial_vector(x0)
        if x.ndim != 1:
            raise InitialStateError(f"x0 has shape {x.shape}; fsp takes one state of shape "
                                    f"({net.n_species},) or a distribution (states [K, S], "
                                    "probs [K])")
        return x[None, :], np.ones(1)
    states = net.initial_vector(np.asarray(x0[0]))
    probs = np.asarray(x0[1], dtype=float)
    if probs.shape != (states.shape[0],):
        raise InitialStateError(f"initial distribution: {states.shape[0]} states but "
                                f"probabilities of shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise InitialStateError("initial probabilities must be finite and non-negative")
    if probs.sum() > 1 + _MASS_SLACK:
        raise InitialStateError(f"initial probabilities sum to {probs.sum()!r} > 1")
    keep = probs > 0
    if not keep.any():
        raise InitialStateError("the initial distribution has no positive probability")
    states, probs = states[keep], probs[keep]
    # merge repeated states (e.g. an empirical distribution) by adding their probabilities
    distinct = _unique_rows(states)
    merged = np.zeros(len(distinct))
    np.add.at(merged, _lookup(distinct, states), probs)
    return distinct, merged


def _bounds_vector(net: ReactionNetwork, bounds) -> np.ndarray | None:
    """Inclusive maximum count per species ``[S]`` (int64; no limit is int64 max), or None."""
    if bounds is None:
        return None
    if isinstance(bounds, Mapping):
        out = np.full(net.n_species, np.iinfo(np.int64).max, dtype=np.int64)
        for name, value in bounds.items():
            out[net.species_index(name)] = _bound(value, name)
        return out
    values = np.asarray(bounds, dtype=object)
    if values.shape != (net.n_species,):
        raise InitialStateError(f"bounds must be a mapping species -> max count or a sequence of "
                                f"{net.n_species} counts, got {bounds!r}")
    return np.array([_bound(v, s) for v, s in zip(values, net.species)], dtype=np.int64)


def _bound(value, name: str) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not math.isfinite(v) or v < 0 or not v.is_integer():
        raise InitialStateError(f"bound of {name!r} is {value!r}; bounds are non-negative integer "
                                "counts")
    return int(v)


def _check_times(t_eval) -> np.ndarray:
    t = np.atleast_1d(np.asarray(t_eval, dtype=float))
    if t.ndim != 1 or t.size == 0:
        raise ParameterError(f"t_eval must be a non-empty 1-D array of times, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ParameterError("t_eval contains NaN or infinite times")
    if t[0] < 0:
        raise ParameterError(f"t_eval starts at {t[0]}; the initial time is 0 and times must be "
                             ">= 0")
    if np.any(np.diff(t) < 0):
        i = int(np.argmax(np.diff(t) < 0))
        raise ParameterError(f"t_eval must be sorted non-decreasing; t_eval[{i}] = {t[i]} > "
                             f"t_eval[{i + 1}] = {t[i + 1]}")
    return t


def _edges(net: ReactionNetwork, states: np.ndarray, theta: np.ndarray,
           sensitivities: bool) -> np.ndarray:
    """``[K, M]`` bool: reaction ``j`` carries probability (or, with ``sensitivities``, its
    derivative) out of state ``i``: ``a_j(x_i) > 0`` or ``da_j/dtheta(x_i) != 0``."""
    edge = net.propensities(states, theta) > 0
    if sensitivities:
        edge |= np.any(net.propensity_grad_theta(states, theta) != 0, axis=-1)
    return edge


def _negative_count_error(net: ReactionNetwork, states: np.ndarray, bad: np.ndarray):
    i, j = np.argwhere(bad)[0]
    return NetworkError(f"reaction {net.reaction_names[j]!r} has a non-zero propensity in state "
                        f"{dict(zip(net.species, states[i].tolist()))} but firing it would make a "
                        "count negative; its rate law must vanish there")


# -- truncation --------------------------------------------------------------------------------
def enumerate_states(network_or_model, x0=None, params=None, *, bounds=None,
                     max_states: int = 1_000_000, sensitivities: bool = False) -> np.ndarray:
    """States reachable from the support of ``x0``, within ``bounds``.

    A state ``y = x + nu_j`` is reachable from ``x`` when ``a_j(x; theta) > 0`` (with
    ``sensitivities``, also when ``da_j/dtheta(x) != 0``, since then ``y`` carries probability
    for nearby parameters and its sensitivity is non-zero).

    The search is breadth first in spirit but batched: each round proposes candidate states
    along rays ``x + n nu_j`` (``n = 1..D``, with ``D`` large when the frontier is small, so that
    long one-dimensional chains take few rounds), evaluates all propensities at once, and keeps
    the candidates reachable through positive-propensity edges
    (``scipy.sparse.csgraph.breadth_first_order``).

    Parameters
    ----------
    network_or_model : ReactionNetwork or Model
    x0 : mapping, array [S], or (states [K0, S], probs [K0]), optional
        Initial state or distribution (a Model's by default); states of zero probability are
        ignored.
    params : mapping or array [P], optional
    bounds : mapping species -> int, or sequence [S] of int, optional
        Inclusive maximum counts (a mapping may leave species unbounded). The reachable states
        outside the bounds are left out.
    max_states : int
        Raise when more states than this are reachable.
    sensitivities : bool
        Also follow reactions of zero propensity but non-zero parameter gradient.

    Returns
    -------
    states : ndarray [K, S] int64
        Distinct states, sorted lexicographically (first species most significant).

    Raises
    ------
    InitialStateError
        ``x0`` is invalid or outside ``bounds``; ``bounds`` is malformed; more than
        ``max_states`` states are reachable.
    NetworkError
        A reachable state has a positive propensity for a reaction that would make a count
        negative (a non-mass-action law not vanishing at zero).
    """
    net, states0, _, theta = _resolve(network_or_model, x0, params)
    return _reachable(net, states0, theta, _bounds_vector(net, bounds), int(max_states),
                      sensitivities)


def _reachable(net: ReactionNetwork, seeds: np.ndarray, theta: np.ndarray,
               upper: np.ndarray | None, max_states: int, sensitivities: bool) -> np.ndarray:
    """Implementation of :func:`enumerate_states` on resolved inputs."""
    nu = net.stoichiometry
    M, S = nu.shape
    if upper is not None and np.any(seeds > upper):
        i = int(np.argmax(np.any(seeds > upper, axis=1)))
        raise InitialStateError(f"initial state {dict(zip(net.species, seeds[i].tolist()))} lies "
                                "outside bounds")
    known = [seeds]  # chunks of reached states (distinct across chunks)
    n_known = len(seeds)
    frontier = seeds  # reached states whose successors may not all be known
    width = max(1, _BATCH // M)  # frontier states expanded per round
    while len(frontier):
        chunk, frontier = frontier[:width], frontier[width:]
        known_all = np.concatenate(known)
        # candidates: rays chunk + n nu_j, n = 1..depth, that are valid and not yet reached
        depth = max(1, _BATCH // (len(chunk) * M))
        steps = np.arange(1, depth + 1)[None, None, :, None] * nu[None, :, None, :]
        rays = (chunk[:, None, None, :] + steps).reshape(-1, S)
        valid = np.all(rays >= 0, axis=1)
        if upper is not None:
            valid &= np.all(rays <= upper, axis=1)
        cand = _unique_rows(rays[valid])
        cand = cand[_lookup(known_all, cand) < 0]
        nodes = np.concatenate([chunk, cand])
        N = len(nodes)
        # edges of the candidate graph; successors elsewhere are known or escape the batch
        edge = _edges(net, nodes, theta, sensitivities)
        succ = nodes[:, None, :] + nu[None, :, :]
        negative = np.any(succ < 0, axis=2)
        inside = ~negative if upper is None else ~negative & np.all(succ <= upper, axis=2)
        src, rj = np.nonzero(edge & inside)
        target = _lookup(nodes, succ[src, rj])
        local = target >= 0
        escapes = np.zeros(N, dtype=bool)
        outside = ~local
        escapes[src[outside][_lookup(known_all, succ[src, rj][outside]) < 0]] = True
        # BFS from a virtual root (node N) linked to every chunk state
        rows = np.concatenate([np.full(len(chunk), N), src[local]])
        cols = np.concatenate([np.arange(len(chunk)), target[local]])
        graph = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(N + 1, N + 1))
        reached = np.zeros(N + 1, dtype=bool)
        reached[breadth_first_order(graph, N, directed=True, return_predecessors=False)] = True
        reached = reached[:N]
        bad = edge & negative & reached[:, None]
        if bad.any():
            raise _negative_count_error(net, nodes, bad)
        new = cand[reached[len(chunk):]]
        known.append(new)
        n_known += len(new)
        if n_known > max_states:
            hint = ("tighten bounds" if upper is not None else
                    "the reachable set may be infinite (an open system): give bounds={species: "
                    "max count} or states=")
            raise InitialStateError(f"more than max_states={max_states} states are reachable from "
                                    f"x0; {hint}, or raise max_states")
        frontier = np.concatenate([frontier, nodes[escapes & reached]])
    return _unique_rows(np.concatenate(known))


def _check_states(net: ReactionNetwork, states) -> np.ndarray:
    """A user-given truncation: distinct non-negative integer states ``[K, S]``."""
    x = np.asarray(states)
    if x.ndim != 2 or x.shape[1] != net.n_species or x.shape[0] == 0:
        raise InitialStateError(f"states must have shape (K, {net.n_species}) with K >= 1, got "
                                f"{x.shape}")
    x = net.initial_vector(x)
    if len(_unique_rows(x)) != len(x):
        raise InitialStateError("states contains repeated rows")
    return x


# -- generator ---------------------------------------------------------------------------------
def _generators(net: ReactionNetwork, states: np.ndarray, theta: np.ndarray,
                sensitivities: bool) -> tuple[sp.csc_matrix, list[sp.csc_matrix]]:
    """``Q`` ``[K, K]`` and, with ``sensitivities``, ``[dQ/dtheta_p for p in range(P)]``."""
    K = len(states)
    nu = net.stoichiometry
    a = net.propensities(states, theta)  # [K, M]
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        i, j = np.argwhere(~np.isfinite(a) | (a < 0))[0]
        raise NetworkError(f"propensity of reaction {net.reaction_names[j]!r} is {a[i, j]} in "
                           f"state {dict(zip(net.species, states[i].tolist()))}")
    succ = states[:, None, :] + nu[None, :, :]  # [K, M, S]
    negative = np.any(succ < 0, axis=2)
    if np.any(negative & (a > 0)):
        raise _negative_count_error(net, states, negative & (a > 0))
    target = _lookup(states, succ.reshape(-1, net.n_species)).reshape(succ.shape[:2])
    src, rj = np.nonzero(target >= 0)
    rows = np.concatenate([target[src, rj], np.arange(K)])
    cols = np.concatenate([src, np.arange(K)])

    def assemble(w: np.ndarray) -> sp.csc_matrix:
        # w [K, M]: Q[target, i] += w[i, j] (successor inside), Q[i, i] -= sum_j w[i, j]
        vals = np.concatenate([w[src, rj], -w.sum(axis=1)])
        q = sp.csc_matrix((vals, (rows, cols)), shape=(K, K))  # repeated entries are summed
        q.eliminate_zeros()
        return q

    Q = assemble(a)
    if not sensitivities:
        return Q, []
    da = net.propensity_grad_theta(states, theta)  # [K, M, P]
    return Q, [assemble(da[:, :, p]) for p in range(net.n_parameters)]


# -- time integration --------------------------------------------------------------------------
def _propagate(A: sp.csc_matrix, y0: np.ndarray, times: np.ndarray, method: str, rtol: float,
               atol: float) -> np.ndarray:
    """``y(t) = exp(A t) y0`` at the distinct sorted ``times`` ``[T]`` -> ``[T, len(y0)]``."""
    out = np.empty((len(times), len(y0)))
    if method == "expm":
        # exp(A t_k) y0 = exp(A (t_k - t_{k-1})) y(t_{k-1}), t_{-1} = 0
        y, t_prev = y0, 0.0
        for k, t in enumerate(times):
            if t > t_prev:
                y = expm_multiply(A * (t - t_prev), y)
            out[k], t_prev = y, t
        return out
    if times[-1] == 0:
        out[:] = y0
        return out
    sol = solve_ivp(lambda _, y: A @ y, (0.0, float(times[-1])), y0, method="BDF",
                    t_eval=times, jac=A, rtol=rtol, atol=atol)
    if sol.status != 0:
        raise RuntimeError(f"the FSP ODE integration failed: {sol.message}")
    return sol.y.T


# -- result ------------------------------------------------------------------------------------
@dataclass(repr=False)
class FSPResult:
    """Solution of the truncated chemical master equation.

    Attributes
    ----------
    t : ndarray [T]
        Observation times (the given ``t_eval``).
    states : ndarray [K, S] int64
        The truncation: state ``k`` has counts ``states[k]``.
    species : tuple of str [S]
        Column names of ``states``.
    p : ndarray [T, K]
        ``p[t, k] = P(X_t = states[k])`` of the truncated system, a lower bound of the true
        probability.
    lost : ndarray [T]
        ``1 - p.sum(1)``: probability that has left the truncation (plus any initial mass outside
        it); an upper bound of the 1-norm error of ``p`` (Munsky & Khammash 2006). It can be
        ~1e-16 below zero by rounding.
    sensitivities : ndarray [T, K, P] or None
        ``dp[t, k] / dtheta_p`` of the truncated system (``None`` unless requested).
    parameters : tuple of str [P]
        Names of ``theta``.
    theta : ndarray [P]
        The parameter values used.
    generator : scipy.sparse.csc_matrix [K, K]
        The truncated generator ``Q`` (``dp/dt = Q p``; columns are source states), per unit
        time.
    """

    t: np.ndarray
    states: np.ndarray
    species: tuple
    p: np.ndarray
    lost: np.ndarray
    sensitivities: np.ndarray | None
    parameters: tuple
    theta: np.ndarray
    generator: sp.csc_matrix

    def __repr__(self) -> str:
        sens = "with" if self.sensitivities is not None else "without"
        return (f"<FSPResult: {len(self.t)} times, {len(self.states)} states, species "
                f"{self.species}, max lost mass {self.lost.max():.3g}, {sens} sensitivities>")

    def _species_column(self, species: str | int) -> int:
        if isinstance(species, (int, np.integer)):
            if not 0 <= species < len(self.species):
                raise NetworkError(f"species index {species} out of range 0..{len(self.species) - 1}")
            return int(species)
        if species not in self.species:
            raise NetworkError(f"unknown species {species!r}; the species are {self.species}")
        return self.species.index(species)

    def _values(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        values = np.asarray(f(self.states), dtype=float)
        if values.ndim == 0 or values.shape[0] != len(self.states):
            raise ValueError(f"f(states) must have leading dimension K={len(self.states)}, got "
                             f"shape {values.shape}")
        return values

    def marginal(self, species: str | int, t_index: int | None = None) -> np.ndarray:
        """Marginal law of one species: ``[n + 1]`` probabilities of counts ``0..n`` at time
        ``t[t_index]`` (``[T, n + 1]`` over all times when ``t_index`` is None), where ``n`` is
        the largest count of that species in the truncation. Sums to ``1 - lost``."""
        column = self.states[:, self._species_column(species)]
        n = int(column.max()) + 1
        if t_index is not None:
            return np.bincount(column, weights=self.p[t_index], minlength=n)
        out = np.zeros((len(self.t), n))
        np.add.at(out, (slice(None), column), self.p)
        return out

    def expectation(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``E[f(X_t)] = sum_k p[t, k] f(states[k])`` over the truncation: ``f`` maps states
        ``[K, S]`` to values ``[K, ...]``; returns ``[T, ...]``. (Not renormalized by the lost
        mass: for ``f >= 0`` a lower bound of the true expectation.)"""
        return np.tensordot(self.p, self._values(f), axes=(1, 0))

    def mean(self) -> np.ndarray:
        """``[T, S]`` mean counts ``sum_k p[t, k] states[k]``."""
        return self.expectation(lambda x: x)

    def variance(self) -> np.ndarray:
        """``[T, S]`` variances ``sum_k p[t, k] (states[k] - mean[t])^2`` (centered form; the
        exact variance when no mass is lost)."""
        mean = self.mean()
        x = self.states.astype(float)
        return np.stack([p @ (x - m) ** 2 for p, m in zip(self.p, mean)])

    def d_expectation(self, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Exact ``d E[f(X_t)] / dtheta_p = sum_k s_p[t, k] f(states[k])``: ``[T, ..., P]``.

        Raises
        ------
        ValueError
            The result was computed without ``sensitivities=True``.
        """
        if self.sensitivities is None:
            raise ValueError("no sensitivities: call fsp(..., sensitivities=True)")
        return np.moveaxis(np.tensordot(self.sensitivities, self._values(f), axes=(1, 0)), 1, -1)

    def d_mean(self) -> np.ndarray:
        """``[T, S, P]`` derivatives of the mean counts with respect to each parameter."""
        return self.d_expectation(lambda x: x)


# -- entry point -------------------------------------------------------------------------------
def fsp(network_or_model, x0=None, t_eval=None, params=None, *,
        bounds: Mapping[str, int] | Sequence[int] | None = None, states=None,
        sensitivities: bool = False, method: str = "expm", rtol: float = 1e-10,
        atol: float = 1e-12, max_states: int = 1_000_000) -> FSPResult:
    """Solve the chemical master equation by finite state projection.

    Parameters
    ----------
    network_or_model : ReactionNetwork or Model
        For a Model, ``x0`` and ``params`` default to (and mappings update) the model's.
    x0 : mapping species -> count, array [S], or (states [K0, S], probs [K0])
        Initial state, or an initial distribution (repeated states are merged; the
        probabilities may sum to less than 1, the rest counting as lost).
    t_eval : array [T]
        Observation times, sorted non-decreasing, ``>= 0``; the initial time is 0.
    params : mapping or array [P]
        Parameter values (network defaults fill the missing names).
    bounds : mapping species -> int, or sequence [S] of int, optional
        Inclusive maximum counts. The truncation is the set of states reachable from the
        support of ``x0`` (through reactions of positive propensity) within the bounds; without
        bounds the whole reachable set, which must be finite (closed or conserved systems).
    states : array [K, S] of int, optional
        An explicit truncation (instead of ``bounds``); kept in the given order. It must hold
        the support of ``x0``.
    sensitivities : bool
        Also compute ``dp/dtheta`` exactly (``res.sensitivities``, ``res.d_expectation``).
    method : {"expm", "ode"}
        ``"expm"``: ``scipy.sparse.linalg.expm_multiply`` between consecutive times (double
        precision; ``rtol``/``atol`` unused). ``"ode"``: BDF (``scipy.integrate.solve_ivp``)
        with the sparse Jacobian, to tolerances ``rtol``/``atol``.
    rtol, atol : float
        Relative and absolute tolerances of the ``"ode"`` method (probabilities are O(1)).
    max_states : int
        Largest truncation allowed when it is found by reachability.

    Returns
    -------
    FSPResult
        ``p`` ``[T, K]``, ``lost`` ``[T]``, ``sensitivities`` ``[T, K, P]`` or None, ...

    Raises
    ------
    ParameterError
        Bad parameters (per-trajectory ``[n, P]`` included), ``t_eval`` (unsorted, negative,
        non-finite, empty), ``method`` or tolerances.
    InitialStateError
        Bad ``x0``, ``bounds`` or ``states``; ``x0`` outside the truncation; more than
        ``max_states`` reachable states.
    NetworkError
        A propensity is negative or not finite on the truncation, or is positive where its
        reaction would make a count negative.

    Examples
    --------
    >>> from cupyssa import models
    >>> res = fsp(models.immigration_death(k=10, g=0.1), t_eval=[0, 5, 10], bounds={"X": 200},
    ...           sensitivities=True)
    >>> res.mean()[:, 0].round(3), res.d_mean()[-1, 0].round(3)   # k/g (1 - e^{-gt}), d/d(k, g)
    (array([ 0.   , 39.347, 63.212]), array([   6.321, -264.241]))
    """
    if t_eval is None:
        raise ParameterError("t_eval is required")
    t = _check_times(t_eval)
    if method not in ("expm", "ode"):
        raise ParameterError(f"unknown method {method!r}; choose 'expm' or 'ode'")
    if not (rtol > 0 and atol > 0):
        raise ParameterError(f"rtol and atol must be positive, got {rtol!r}, {atol!r}")
    net, states0, probs0, theta = _resolve(network_or_model, x0, params)
    if states is not None:
        if bounds is not None:
            raise InitialStateError("give either bounds or states, not both")
        truncation = _check_states(net, states)
    else:
        truncation = _reachable(net, states0, theta, _bounds_vector(net, bounds),
                                int(max_states), sensitivities)
    where = _lookup(truncation, states0)
    if np.any(where < 0):
        outside = states0[int(np.argmax(where < 0))]
        raise InitialStateError(f"initial state {dict(zip(net.species, outside.tolist()))} is "
                                "not in the truncation")
    K, P = len(truncation), net.n_parameters
    Q, dQ = _generators(net, truncation, theta, sensitivities)
    p0 = np.zeros(K)
    p0[where] = probs0
    if sensitivities:
        # block lower-triangular [[Q, 0], [dQ_p, Q]] acting on [p; s_1; ...; s_P], s_p(0) = 0
        blocks = [[None] * (P + 1) for _ in range(P + 1)]
        for b in range(P + 1):
            blocks[b][b] = Q
        for p in range(P):
            blocks[p + 1][0] = dQ[p]
        A = sp.bmat(blocks, format="csc")
        y0 = np.concatenate([p0, np.zeros(K * P)])
    else:
        A, y0 = Q, p0
    # integrate over the distinct times only, then expand repeated ones
    distinct, inverse = np.unique(t, return_inverse=True)
    y = _propagate(A, y0, distinct, method, rtol, atol)[inverse]  # [T, K (P + 1)]
    prob = y[:, :K]
    sens = (np.ascontiguousarray(y[:, K:].reshape(len(t), P, K).transpose(0, 2, 1))
            if sensitivities else None)
    return FSPResult(t=t, states=truncation, species=net.species, p=prob,
                     lost=1.0 - prob.sum(axis=1), sensitivities=sens, parameters=net.parameters,
                     theta=theta, generator=Q)
