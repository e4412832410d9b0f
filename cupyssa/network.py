"""Reaction networks: species, named parameters and reactions with rate laws.

A :class:`ReactionNetwork` is only a definition (like a Catalyst ``ReactionSystem``); how it is
simulated or solved is decided elsewhere. It provides the stoichiometry matrices, the reaction
dependency graph, conservation laws, vectorized propensities and their derivatives, and the
flat tables the compiled kernels read (:meth:`ReactionNetwork.tables`).
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from .errors import InitialStateError, NetworkError, ParameterError
from .ratelaws import MassAction, RateLaw

__all__ = ["Reaction", "ReactionNetwork", "NetworkTables"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise NetworkError(f"invalid {what} name {name!r}: use letters, digits and '_', "
                           "not starting with a digit")
    return name


def _check_stoichiometry(terms: Mapping[str, object], reaction: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for species, coeff in terms.items():
        try:
            value = float(coeff)
        except (TypeError, ValueError):
            raise NetworkError(f"reaction {reaction!r}: stoichiometry of {species!r} is "
                               f"{coeff!r}, not a number") from None
        if not value.is_integer() or value < 0:
            raise NetworkError(f"reaction {reaction!r}: stoichiometry of {species!r} must be a "
                               f"non-negative integer, got {coeff!r}")
        if value > 0:
            out[species] = out.get(species, 0) + int(value)
    return out


@dataclass(frozen=True)
class Reaction:
    """One reaction: reactant and product multisets (species name -> count) and a resolved law."""

    name: str
    reactants: dict
    products: dict
    law: RateLaw

    def __str__(self) -> str:
        def side(terms):
            if not terms:
                return "0"
            return " + ".join(name if n == 1 else f"{n} {name}" for name, n in terms.items())
        return f"{side(self.reactants)} -> {side(self.products)}"


class NetworkTables(NamedTuple):
    """Flat arrays describing a network to the kernels (all ``int64`` unless noted).

    CSR layouts: the entries of reaction ``j`` are ``ptr[j]:ptr[j+1]``.
    """

    reac_ptr: np.ndarray  #: [M+1] reactant multisets
    reac_species: np.ndarray
    reac_order: np.ndarray
    net_ptr: np.ndarray  #: [M+1] net change (nonzero entries)
    net_species: np.ndarray
    net_delta: np.ndarray
    dep_ptr: np.ndarray  #: [M+1] reactions whose propensity changes when j fires
    dep_reaction: np.ndarray
    law_kind: np.ndarray  #: [M] cupyssa.kernels.codes law code
    law_option: np.ndarray  #: [M] e.g. the neural law's nonlinearity
    law_species: np.ndarray  #: [M, 1] species slot (-1 if unused)
    law_param: np.ndarray  #: [M, 3] parameter slots (-1 if unused)
    reg_ptr: np.ndarray  #: [M+1] neural-law regulators
    reg_param: np.ndarray
    reg_species: np.ndarray
    #: [M, 5] ``(k slot, species, order, species, order)`` of each mass-action law with at most
    #: two reactant species of order <= 3 (order 0: slot unused), evaluated without the table
    #: walk; ``k slot = -1`` for every other law
    pair_law: np.ndarray
    #: [M, S] net changes as dense rows when events update every species and recompute every
    #: propensity in ``any_dep`` instead of walking reaction ``r``'s entries (small networks, see
    #: :func:`recompute_all_dependents`); ``[0, S]`` otherwise
    dense_delta: np.ndarray
    #: [K] the reactions whose propensity some event can change (sorted union of the dependency
    #: sets), read with ``dense_delta``
    any_dep: np.ndarray


#: networks of up to this many reactions may recompute every dependent propensity per event
#: (:func:`recompute_all_dependents`)
DENSE_UPDATE_MAX_REACTIONS = 8


def recompute_all_dependents(deps) -> bool:
    """Whether an event should recompute every propensity that any reaction can change rather
    than the dependency set of the reaction that fired (``deps``: the sets, one per reaction):
    for networks of at most ``DENSE_UPDATE_MAX_REACTIONS`` reactions whose union of the sets costs
    at most twice the average set. The redundant propensities come out as the same doubles.

    What it saves: in generated code (:mod:`cupyssa.specialize`) a branch on the random reaction
    index, mispredicted about as often as reactions alternate (~15 cycles each; 1.2x on the
    dimerization); in the table-driven kernels, the chain of loads that hangs off that index
    (its row pointers, then the entries, then the states they name) between one event's choice
    and the next one's propensities (the dimerization's generic kernel ÷ a hand-written loop:
    0.40 -> 0.49, benchmarks/RESULTS.md)."""
    union = set().union(*map(set, deps))
    return len(deps) <= DENSE_UPDATE_MAX_REACTIONS and len(union) * len(deps) <= 2 * sum(map(len, deps))


def _pair_laws(reactions) -> np.ndarray:
    """``NetworkTables.pair_law``: the rate slot and the (species, order) of up to two reactants
    for the mass-action laws of at most two reactant species of order <= 3 (the elementary and
    trimolecular reactions). :func:`cupyssa.kernels.propensity.propensity` evaluates these in
    straight-line code instead of walking the reactant table: 1.2-1.4x more events/s for the
    generic kernel (benchmarks/RESULTS.md)."""
    table = np.zeros((len(reactions), 5), dtype=np.int64)
    table[:, 0] = -1
    for j, r in enumerate(reactions):
        law = r.law
        if (isinstance(law, MassAction) and len(law.reactants) <= 2
                and all(order <= 3 for _, order in law.reactants)):
            table[j, 0] = law.k
            for i, (s, order) in enumerate(law.reactants):
                table[j, 1 + 2 * i:3 + 2 * i] = s, order
    return table


def _csr(rows: Sequence[Sequence[tuple]], width: int):
    ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(r) for r in rows])
    cols = [np.array([e[i] for r in rows for e in r], dtype=np.int64) for i in range(width)]
    return (ptr, *cols)


class ReactionNetwork:
    """A chemical reaction network.

    Build it with :meth:`add_species`, :meth:`add_parameter` and :meth:`add_reaction`, or read
    the text format with :meth:`from_string`. Species and parameters are kept in the order they
    were declared; that order defines the columns of states and of the parameter vector
    ``theta``.

    Examples
    --------
    >>> net = ReactionNetwork.from_string('''
    ...     2 A -> B ; k1
    ...     B -> 2 A ; k2
    ... ''')
    >>> net.species, net.parameters
    (('A', 'B'), ('k1', 'k2'))
    """

    def __init__(self):
        self._species: list[str] = []
        self._parameters: dict[str, float | None] = {}
        self._reactions: list[Reaction] = []
        self._initial: dict[str, int] = {}

    # -- construction ---------------------------------------------------------------------
    def _invalidate(self):
        for attr in ("tables", "_species_index", "_parameter_index", "reactant_matrix",
                     "product_matrix", "stoichiometry", "_nonnegative"):
            self.__dict__.pop(attr, None)

    def add_species(self, name: str, initial: int | None = None) -> "ReactionNetwork":
        """Declare a species, optionally with a default initial count. Returns ``self``."""
        _check_name(name, "species")
        if name in self._species:
            raise NetworkError(f"duplicate species {name!r}")
        if name in self._parameters:
            raise NetworkError(f"{name!r} is already a parameter; species and parameter names "
                               "must differ")
        self._species.append(name)
        if initial is not None:
            self._initial[name] = _check_count(initial, name)
        self._invalidate()
        return self

    def add_parameter(self, name: str, value: float | None = None) -> "ReactionNetwork":
        """Declare a named parameter, optionally with a default value. Returns ``self``."""
        _check_name(name, "parameter")
        if name in self._parameters:
            raise NetworkError(f"duplicate parameter {name!r}")
        if name in self._species:
            raise NetworkError(f"{name!r} is already a species; species and parameter names "
                               "must differ")
        self._parameters[name] = None if value is None else _check_finite(value, name)
        self._invalidate()
        return self

    def set_default(self, name: str, value) -> "ReactionNetwork":
        """Set the default value of an existing parameter, or initial count of a species."""
        if name in self._parameters:
            self._parameters[name] = _check_finite(value, name)
        elif name in self._species:
            self._initial[name] = _check_count(value, name)
        else:
            raise NetworkError(f"unknown species or parameter {name!r}")
        return self

    def add_reaction(self, reactants: Mapping[str, int] | Sequence[str],
                     products: Mapping[str, int] | Sequence[str],
                     law: RateLaw | str | float, name: str | None = None) -> "ReactionNetwork":
        """Add a reaction.

        Parameters
        ----------
        reactants, products : mapping species -> count, or sequence of species (repeats count)
            The multisets; species must have been declared.
        law : RateLaw, str or float
            A rate law; a parameter name means mass action with that rate constant; a number
            means mass action with a constant stored as a parameter ``<reaction>_k``.
        name : str, optional
            Defaults to ``R<index>``.
        """
        name = _check_name(name if name is not None else f"R{len(self._reactions)}", "reaction")
        if any(r.name == name for r in self._reactions):
            raise NetworkError(f"duplicate reaction name {name!r}")
        terms = []
        for side in (reactants, products):
            if not isinstance(side, Mapping):
                counted: dict[str, int] = {}
                for s in side:
                    counted[s] = counted.get(s, 0) + 1
                side = counted
            side = _check_stoichiometry(side, name)
            for s in side:
                if s not in self._species:
                    raise NetworkError(f"reaction {name!r}: unknown species {s!r}")
            terms.append(side)
        if isinstance(law, (int, float, np.number)) and not isinstance(law, bool):
            self.add_parameter(f"{name}_k", float(law))
            law = MassAction(f"{name}_k")
        elif isinstance(law, str):
            law = MassAction(law)
        if not isinstance(law, RateLaw):
            raise NetworkError(f"reaction {name!r}: law must be a RateLaw, a parameter name or "
                               f"a number, got {law!r}")
        reactant_idx = [(self._species.index(s), n) for s, n in terms[0].items()]
        resolved = law.resolve(self._species_index, self._parameter_index, reactant_idx)
        self._reactions.append(Reaction(name, terms[0], terms[1], resolved))
        self._invalidate()
        return self

    @classmethod
    def from_string(cls, text: str) -> "ReactionNetwork":
        """Read the text format; see :func:`cupyssa.parser.parse_network`."""
        from .parser import parse_network

        return parse_network(text, cls())

    # -- names ----------------------------------------------------------------------------
    @property
    def species(self) -> tuple:
        return tuple(self._species)

    @property
    def parameters(self) -> tuple:
        return tuple(self._parameters)

    @property
    def reactions(self) -> tuple:
        return tuple(self._reactions)

    @property
    def reaction_names(self) -> tuple:
        return tuple(r.name for r in self._reactions)

    @property
    def n_species(self) -> int:
        return len(self._species)

    @property
    def n_reactions(self) -> int:
        return len(self._reactions)

    @property
    def n_parameters(self) -> int:
        return len(self._parameters)

    @property
    def parameter_defaults(self) -> dict:
        """Declared default parameter values (``None`` where there is none)."""
        return dict(self._parameters)

    @property
    def initial_defaults(self) -> dict:
        """Declared default initial counts."""
        return dict(self._initial)

    @cached_property
    def _species_index(self) -> dict:
        return {s: i for i, s in enumerate(self._species)}

    @cached_property
    def _parameter_index(self) -> dict:
        return {p: i for i, p in enumerate(self._parameters)}

    def species_index(self, name: str) -> int:
        try:
            return self._species_index[name]
        except KeyError:
            raise NetworkError(f"unknown species {name!r}") from None

    def parameter_index(self, name: str) -> int:
        try:
            return self._parameter_index[name]
        except KeyError:
            raise ParameterError(f"unknown parameter {name!r}") from None

    # -- stoichiometry --------------------------------------------------------------------
    def _matrix(self, side: str) -> np.ndarray:
        m = np.zeros((self.n_reactions, self.n_species), dtype=np.int64)
        for j, r in enumerate(self._reactions):
            for s, n in getattr(r, side).items():
                m[j, self._species_index[s]] = n
        return m

    @cached_property
    def reactant_matrix(self) -> np.ndarray:
        """``[M, S]`` reactant counts."""
        return self._matrix("reactants")

    @cached_property
    def product_matrix(self) -> np.ndarray:
        """``[M, S]`` product counts."""
        return self._matrix("products")

    @cached_property
    def stoichiometry(self) -> np.ndarray:
        """``[M, S]`` net change ``nu_j`` of each reaction (products minus reactants)."""
        return self.product_matrix - self.reactant_matrix

    def dependency_graph(self) -> list[np.ndarray]:
        """For each reaction ``j`` the sorted reactions whose propensity can change when ``j``
        fires (those whose law reads a species that ``j`` changes)."""
        t = self.tables
        return [t.dep_reaction[t.dep_ptr[j]:t.dep_ptr[j + 1]] for j in range(self.n_reactions)]

    def conservation_laws(self) -> np.ndarray:
        """Integer basis ``C`` of shape ``[n_laws, S]`` of the left null space: ``nu @ C.T == 0``,
        so ``x(t) @ C.T`` is constant on every trajectory. Exact rational elimination."""
        return _integer_null_space(self.stoichiometry)

    # -- values ---------------------------------------------------------------------------
    def parameter_vector(self, params=None, n_trajectories: int | None = None) -> np.ndarray:
        """Validated ``theta``: ``[P]``, or ``[n_trajectories, P]`` when any value is per trajectory.

        ``params`` is a mapping name -> value (scalar or length-``n_trajectories`` array; missing
        names take the declared defaults) or an array ``[P]`` / ``[n_trajectories, P]``.
        """
        P = self.n_parameters
        if params is None:
            params = {}
        if isinstance(params, Mapping):
            for name in params:
                if name not in self._parameters:
                    raise ParameterError(f"unknown parameter {name!r}; the network's parameters "
                                         f"are {list(self._parameters)}")
            columns = []
            for name, default in self._parameters.items():
                value = params.get(name, default)
                if value is None:
                    raise ParameterError(f"no value for parameter {name!r}")
                columns.append((f"parameter {name!r}", value))
            try:
                theta = _stack_columns(columns, ParameterError).astype(float)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, ParameterError):
                    raise
                raise ParameterError(f"parameter values must be numbers: {exc}") from None
        else:
            try:
                theta = np.array(params, dtype=float)
            except (TypeError, ValueError):
                raise ParameterError("parameters must be a mapping or a float array") from None
            if theta.ndim not in (1, 2) or theta.shape[-1] != P:
                raise ParameterError(f"parameter array has shape {theta.shape}; expected ({P},) or "
                                     f"(n_trajectories, {P})")
        if theta.ndim == 2 and n_trajectories is not None and theta.shape[0] != n_trajectories:
            raise ParameterError(f"per-trajectory parameters have {theta.shape[0]} rows but "
                                 f"n_trajectories={n_trajectories}")
        bad = ~np.isfinite(theta) | ((theta < 0) & self._nonnegative)
        if bad.any():
            col = int(np.argwhere(bad)[0][-1])
            value = theta[..., col][bad[..., col]].flat[0]
            kind = "finite" if self._nonnegative[col] == 0 else "finite and non-negative"
            raise ParameterError(f"parameter {self.parameters[col]!r} is {value}; it must be {kind}")
        return theta

    @cached_property
    def _nonnegative(self) -> np.ndarray:
        """``[P]`` bool: parameters that some law uses as a rate/amplitude/constant (must be
        >= 0); the others are only weights or biases of neural laws (any sign)."""
        mask = np.ones(self.n_parameters, dtype=bool)
        signed = {p for r in self._reactions for p in r.law.signed_parameters()}
        rates = {p for r in self._reactions for p in r.law.parameter_names() if p not in signed}
        for p in signed - rates:
            mask[p] = False
        return mask

    def initial_vector(self, x0=None, n_trajectories: int | None = None) -> np.ndarray:
        """Validated initial state: ``[S]`` or ``[n_trajectories, S]`` int64."""
        S = self.n_species
        if x0 is None:
            x0 = {}
        if isinstance(x0, Mapping):
            for name in x0:
                if name not in self._species_index:
                    raise InitialStateError(f"unknown species {name!r} in x0; the network's species "
                                            f"are {self.species}")
            cols = []
            for name in self._species:
                value = x0.get(name, self._initial.get(name))
                if value is None:
                    raise InitialStateError(f"no initial count for species {name!r}")
                cols.append((f"x0[{name!r}]", value))
            x = _stack_columns(cols, InitialStateError)
        else:
            x = np.asarray(x0)
            if x.ndim not in (1, 2) or x.shape[-1] != S:
                raise InitialStateError(f"x0 has shape {x.shape}; expected ({S},) or "
                                        f"(n_trajectories, {S})")
        if x.ndim == 2 and n_trajectories is not None and x.shape[0] != n_trajectories:
            raise InitialStateError(f"per-trajectory x0 has {x.shape[0]} rows but "
                                    f"n_trajectories={n_trajectories}")
        try:
            xf = x.astype(float)
        except (TypeError, ValueError):
            raise InitialStateError("initial counts must be numbers") from None
        bad = ~np.isfinite(xf) | (xf < 0) | (xf != np.round(xf))
        if bad.any():
            col = int(np.argwhere(bad)[0][-1])
            raise InitialStateError(f"initial count of {self._species[col]!r} is "
                                    f"{xf[..., col][bad[..., col]].flat[0]}; counts must be "
                                    "non-negative integers")
        return xf.astype(np.int64)

    def propensities(self, x, theta):
        """Propensities ``a(x; theta)``: ``x [..., S]``, ``theta`` broadcastable to ``[..., P]``
        -> ``[..., M]`` float64 (NumPy or CuPy, following ``x``)."""
        from .ratelaws import _xp

        xp = _xp(x)
        if not self._reactions:
            raise NetworkError("the network has no reactions")
        theta = xp.asarray(theta, dtype=float)
        cols = [xp.broadcast_to(r.law.evaluate(x, theta), np.broadcast_shapes(x.shape[:-1], theta.shape[:-1]))
                for r in self._reactions]
        return xp.stack(cols, axis=-1)

    def propensity_grad_theta(self, x, theta):
        """Dense ``da_j/dtheta_p``: ``[..., M, P]`` (for small parameter counts, e.g. FSP)."""
        from .ratelaws import _xp

        xp = _xp(x)
        theta = xp.asarray(theta, dtype=float)
        batch = np.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        out = xp.zeros(batch + (self.n_reactions, self.n_parameters))
        for j, r in enumerate(self._reactions):
            for p, d in r.law.grad_theta(x, theta):
                out[..., j, p] += d
        return out

    def propensity_grad_x(self, x, theta):
        """Dense ``da_j/dx_i`` of the continuous extension: ``[..., M, S]``."""
        from .ratelaws import _xp

        xp = _xp(x)
        theta = xp.asarray(theta, dtype=float)
        batch = np.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        out = xp.zeros(batch + (self.n_reactions, self.n_species))
        for j, r in enumerate(self._reactions):
            for s, d in r.law.grad_x(x, theta):
                out[..., j, s] += d
        return out

    def kernel_functions(self) -> dict:
        """Code-generated functions the compiled kernels need for this network, by the kernel
        function they replace (e.g. ``{"expression_propensity": <function>}``: plain Python,
        kept in files by :mod:`cupyssa.codegen` and compiled into the network's kernel family,
        which Numba then caches on disk); empty for networks made of the built-in laws, which
        share one compiled family. The same dictionary is returned while the reactions are
        unchanged."""
        from .expressions import kernel_functions_for

        return kernel_functions_for(self)

    def to_sbml(self, x0=None, params=None) -> str:
        """This network as an SBML Level 3 Version 2 document (a string); see
        :func:`cupyssa.sbml.network_to_sbml`. Needs ``python-libsbml``."""
        from .sbml import network_to_sbml

        return network_to_sbml(self, x0=x0, params=params)

    # -- kernel tables --------------------------------------------------------------------
    @cached_property
    def tables(self) -> NetworkTables:
        """The flat tables the kernels read (cached; rebuilt after the network changes)."""
        M = self.n_reactions
        if M == 0:
            raise NetworkError("the network has no reactions")
        nu = self.stoichiometry
        reac = _csr([r.law.reactants for r in self._reactions], 2)
        net = _csr([[(s, int(nu[j, s])) for s in np.flatnonzero(nu[j])] for j in range(M)], 2)
        reads = [set(r.law.reads()) for r in self._reactions]
        deps = [[(i,) for i in range(M) if reads[i] & set(np.flatnonzero(nu[j]).tolist())]
                for j in range(M)]
        dep = _csr(deps, 1)
        kind = np.zeros(M, dtype=np.int64)
        option = np.zeros(M, dtype=np.int64)
        lspec = np.full((M, 1), -1, dtype=np.int64)
        lpar = np.full((M, 3), -1, dtype=np.int64)
        regs = []
        for j, r in enumerate(self._reactions):
            kind[j], option[j], spec, par, reg = r.law.encode()
            lspec[j, :len(spec)] = spec
            lpar[j, :len(par)] = par
            regs.append(reg)
        reg = _csr(regs, 2)
        dep_sets = [[i for (i,) in d] for d in deps]
        # dense rows of the net changes cost S per event against the walk's entries of r
        dense = (recompute_all_dependents(dep_sets)
                 and nu.size <= 2 * np.count_nonzero(nu))
        dense_delta = (nu if dense else nu[:0]).astype(np.int64)
        any_dep = np.array(sorted(set().union(*map(set, dep_sets))) if dense else [],
                           dtype=np.int64)
        return NetworkTables(*reac, *net, *dep, kind, option, lspec, lpar, *reg,
                             _pair_laws(self._reactions), dense_delta, any_dep)

    # -- presentation ---------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"<ReactionNetwork: {self.n_species} species, {self.n_reactions} reactions, "
                f"{self.n_parameters} parameters>")

    def __str__(self) -> str:
        return "\n".join(f"{r.name}: {r}  ({type(r.law).__name__})" for r in self._reactions)


def _stack_columns(labelled_values, error):
    """Stack named scalars or per-trajectory vectors into ``[n]`` or ``[n_trajectories, n]``.

    ``labelled_values`` is a sequence of ``(label, value)``; every vector must have the length of
    the first one, else ``error`` (an exception class) names the offending label.
    """
    cols = [(label, np.asarray(value)) for label, value in labelled_values]
    per_traj = [c for _, c in cols if c.ndim > 0]
    if not per_traj:
        return np.array([c[()] for _, c in cols])
    n = per_traj[0].shape[0]
    for label, c in cols:
        if c.ndim > 1 or (c.ndim == 1 and c.shape[0] != n):
            raise error(f"{label} has shape {c.shape}; expected a scalar or shape ({n},)")
    return np.stack([np.broadcast_to(c, (n,)) for _, c in cols], axis=1)


def _check_finite(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter {name!r} is {value!r}, not a number") from None
    if not math.isfinite(v):
        raise ParameterError(f"parameter {name!r} is {v}; it must be finite")
    return v


def _check_count(value, name: str) -> int:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InitialStateError(f"initial count of {name!r} is {value!r}, not a number") from None
    if not math.isfinite(v) or v < 0 or not v.is_integer():
        raise InitialStateError(f"initial count of {name!r} is {value!r}; counts must be "
                                "non-negative integers")
    return int(v)


def _integer_null_space(nu: np.ndarray) -> np.ndarray:
    """Integer basis of ``{c : nu @ c = 0}`` by exact Gauss–Jordan elimination over Fractions."""
    M, S = nu.shape
    rows = [[Fraction(int(v)) for v in row] for row in nu]
    pivots = []
    r = 0
    for col in range(S):
        pivot = next((i for i in range(r, M) if rows[i][col] != 0), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        inv = 1 / rows[r][col]
        rows[r] = [v * inv for v in rows[r]]
        for i in range(M):
            if i != r and rows[i][col] != 0:
                f = rows[i][col]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        pivots.append(col)
        r += 1
        if r == M:
            break
    free = [c for c in range(S) if c not in pivots]
    basis = []
    for fcol in free:
        vec = [Fraction(0)] * S
        vec[fcol] = Fraction(1)
        for i, pcol in enumerate(pivots):
            vec[pcol] = -rows[i][fcol]
        lcm = math.lcm(*[v.denominator for v in vec])
        ints = [int(v * lcm) for v in vec]
        g = math.gcd(*ints)
        basis.append([v // g for v in ints])
    return np.array(basis, dtype=np.int64).reshape(len(basis), S)
