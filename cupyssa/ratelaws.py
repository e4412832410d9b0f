"""Rate laws: the propensity ``a_j(x; theta)`` of one reaction and its derivatives.

A law is written with species and parameter *names*; :meth:`RateLaw.resolve` turns it into the
same law holding integer indices, which is what the network stores. A resolved law evaluates
on a batch of states at once (``x`` of shape ``[..., n_species]``, ``theta`` broadcastable to
``[..., n_parameters]``), with NumPy or CuPy alike (the array module is taken from ``x``). This
vectorized form is the readable reference: the numpy backend, FSP and the VAN solver use it,
and the compiled kernels must agree with it bit for bit (tests check).

Every law provides

* ``evaluate(x, theta) -> a`` of shape ``[...]``;
* ``grad_x(x, theta) -> [(species_index, da/dx_i), ...]`` (only the species it reads);
* ``grad_theta(x, theta) -> [(parameter_index, da/dtheta_p), ...]``;
* ``encode()`` -> its row of the kernel tables (see :mod:`cupyssa.kernels.codes`).

Derivatives with respect to populations are those of the law's natural continuous extension
(for mass action the falling-factorial polynomial), which is what the relaxed surrogate of the
straight-through estimator differentiates.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar, Mapping, Sequence

import numpy as np

from .errors import NetworkError
from .kernels import codes

__all__ = [
    "RateLaw",
    "MassAction",
    "Hill",
    "HillRepression",
    "MichaelisMenten",
    "Neural",
    "NONLINEARITIES",
]

#: names of the nonlinearities of the :class:`Neural` law and their kernel codes
NONLINEARITIES = {"sigmoid": codes.SIGMOID, "softplus": codes.SOFTPLUS, "exp": codes.EXP}


def _xp(a):
    """The array module (numpy or cupy) of ``a``."""
    try:
        import cupy

        return cupy.get_array_module(a)
    except ImportError:
        return np


def _lookup(index: Mapping[str, int], name, what: str) -> int:
    if isinstance(name, (int, np.integer)):
        return int(name)
    try:
        return index[name]
    except KeyError:
        raise NetworkError(f"unknown {what} {name!r}") from None


@dataclass(frozen=True)
class RateLaw:
    """Base class. Subclasses are frozen dataclasses whose fields name species and parameters.

    ``reactants`` is filled by the network: ``((species_index, order), ...)`` of the reaction
    that owns the law (used by mass action, and by the negativity checks of the others).
    """

    reactants: tuple = field(default=(), kw_only=True)

    #: kernel code of the law (``cupyssa.kernels.codes``)
    code = -1
    #: names of the fields that hold species, and of those that hold parameters
    species_fields: ClassVar[tuple] = ()
    parameter_fields: ClassVar[tuple] = ()

    def species_names(self) -> tuple:
        """Species the law reads (beyond mass-action reactants)."""
        return tuple(getattr(self, f) for f in self.species_fields)

    def parameter_names(self) -> tuple:
        """Parameters the law reads, in slot order."""
        return tuple(getattr(self, f) for f in self.parameter_fields)

    def resolve(self, species_index: Mapping[str, int], parameter_index: Mapping[str, int],
                reactants: Sequence[tuple[int, int]]) -> "RateLaw":
        """The same law with names replaced by indices and the reaction's reactants attached."""
        changes = {f: _lookup(species_index, getattr(self, f), "species")
                   for f in self.species_fields}
        changes.update({f: _lookup(parameter_index, getattr(self, f), "parameter")
                        for f in self.parameter_fields})
        return replace(self, reactants=tuple(reactants), **changes)

    def signed_parameters(self) -> tuple:
        """Parameters (names or indices) this law allows to be negative; every other parameter it
        reads is a rate, amplitude or constant that must be non-negative."""
        return ()

    def reads(self) -> tuple:
        """Indices of the species whose change can alter this propensity (resolved law)."""
        return tuple(sorted(set(self.species_names()) | {s for s, _ in self.reactants}))

    def encode(self):
        """``(kind, option, species_slots, parameter_slots, regulators)``: the law's row of the
        kernel tables (``regulators`` are ``(weight parameter, species)`` pairs)."""
        return self.code, 0, self.species_names(), self.parameter_names(), ()

    # -- evaluation; x: [..., S], theta: [..., P] -------------------------------------------
    def evaluate(self, x, theta):
        raise NotImplementedError

    def grad_x(self, x, theta):
        raise NotImplementedError

    def grad_theta(self, x, theta):
        raise NotImplementedError


def _falling_factorial_ratio(n, order):
    """C(n, order) = (n (n-1) ... (n-order+1)) * (1/order!), in the kernels' operation order."""
    c = 1.0
    for q in range(order):
        c = c * (n - q)
    return c * codes.INV_FACTORIAL[order]


def _falling_factorial_ratio_derivative(n, order):
    """d/dn of C(n, order) as a polynomial in n: sum_q prod_{r != q} (n - r) / order!."""
    xp = _xp(n)
    total = xp.zeros_like(n, dtype=float)
    for q in range(order):
        term = 1.0
        for r in range(order):
            if r != q:
                term = term * (n - r)
        total = total + term
    return total / float(np.prod(np.arange(1, order + 1)))


@dataclass(frozen=True)
class MassAction(RateLaw):
    """``a = k * prod_i C(x_i, nu_i)`` (Gillespie's combinatorial convention).

    ``2 A -> B`` with constant ``k`` has propensity ``k A (A-1) / 2``.
    """

    k: object
    code = codes.MASS_ACTION
    parameter_fields = ("k",)

    def _combinatorial(self, x):
        c = 1.0
        for s, order in self.reactants:
            c = c * _falling_factorial_ratio(x[..., s].astype(float), order)
        return c

    def resolve(self, species_index, parameter_index, reactants):
        for _, order in reactants:
            if order > codes.MAX_ORDER:
                raise NetworkError(f"reactant order {order} exceeds the supported {codes.MAX_ORDER}")
        return super().resolve(species_index, parameter_index, reactants)

    def evaluate(self, x, theta):
        return theta[..., self.k] * self._combinatorial(x)

    def grad_x(self, x, theta):
        k = theta[..., self.k]
        out = []
        for s, order in self.reactants:
            others = 1.0
            for s2, o2 in self.reactants:
                if s2 != s:
                    others = others * _falling_factorial_ratio(x[..., s2].astype(float), o2)
            d = _falling_factorial_ratio_derivative(x[..., s].astype(float), order)
            out.append((s, k * others * d))
        return out

    def grad_theta(self, x, theta):
        xp = _xp(x)
        c = self._combinatorial(x)
        shape = np.broadcast_shapes(x.shape[:-1], theta.shape[:-1])
        return [(self.k, xp.broadcast_to(xp.asarray(c, dtype=float), shape))]


@dataclass(frozen=True)
class Hill(RateLaw):
    """Hill activation ``a = vmax * P^n / (K^n + P^n)``."""

    P: object
    vmax: object
    K: object
    n: object
    code = codes.HILL
    species_fields = ("P",)
    parameter_fields = ("vmax", "K", "n")

    def _parts(self, x, theta):
        P = x[..., self.P].astype(float)
        vmax, K, n = theta[..., self.vmax], theta[..., self.K], theta[..., self.n]
        return P, vmax, K, n, P ** n, K ** n

    def evaluate(self, x, theta):
        _, vmax, _, _, Pn, Kn = self._parts(x, theta)
        return vmax * Pn / (Kn + Pn)

    def grad_x(self, x, theta):
        xp = _xp(x)
        P, vmax, K, n, Pn, Kn = self._parts(x, theta)
        # d/dP [P^n/(K^n+P^n)] = n P^(n-1) K^n / (K^n+P^n)^2; P^(n-1) at P=0 is 0 for n>1,
        # 1 for n=1 and +inf for n<1 (the continuous extension's one-sided limit).
        with np.errstate(divide="ignore", invalid="ignore"):
            Pnm1 = xp.where(P > 0, P ** (n - 1), xp.where(n > 1, 0.0, xp.where(n == 1, 1.0, xp.inf)))
        return [(self.P, self._sign * vmax * n * Pnm1 * Kn / (Kn + Pn) ** 2)]

    _sign = 1.0

    def grad_theta(self, x, theta):
        xp = _xp(x)
        P, vmax, K, n, Pn, Kn = self._parts(x, theta)
        denom = (Kn + Pn) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            # d/dn [P^n/(K^n+P^n)] = P^n K^n (ln P - ln K) / (K^n+P^n)^2, -> 0 as P -> 0.
            dn = xp.where(P > 0, Pn * Kn * (xp.log(xp.where(P > 0, P, 1.0)) - xp.log(K)) / denom, 0.0)
            dK = -n * Kn / K * Pn / denom
        sign = self._sign
        return [(self.vmax, self._fraction(Pn, Kn)), (self.K, sign * vmax * dK),
                (self.n, sign * vmax * dn)]

    def _fraction(self, Pn, Kn):
        return Pn / (Kn + Pn)


@dataclass(frozen=True)
class HillRepression(Hill):
    """Hill repression ``a = vmax * K^n / (K^n + P^n)``."""

    code = codes.HILL_REPRESSION
    _sign = -1.0

    def evaluate(self, x, theta):
        _, vmax, _, _, Pn, Kn = self._parts(x, theta)
        return vmax * Kn / (Kn + Pn)

    def _fraction(self, Pn, Kn):
        return Kn / (Kn + Pn)


@dataclass(frozen=True)
class MichaelisMenten(RateLaw):
    """Michaelis–Menten ``a = vmax * S / (Km + S)``."""

    S: object
    vmax: object
    Km: object
    code = codes.MICHAELIS_MENTEN
    species_fields = ("S",)
    parameter_fields = ("vmax", "Km")

    def evaluate(self, x, theta):
        S = x[..., self.S].astype(float)
        return theta[..., self.vmax] * S / (theta[..., self.Km] + S)

    def grad_x(self, x, theta):
        S = x[..., self.S].astype(float)
        vmax, Km = theta[..., self.vmax], theta[..., self.Km]
        return [(self.S, vmax * Km / (Km + S) ** 2)]

    def grad_theta(self, x, theta):
        S = x[..., self.S].astype(float)
        vmax, Km = theta[..., self.vmax], theta[..., self.Km]
        return [(self.vmax, S / (Km + S)), (self.Km, -vmax * S / (Km + S) ** 2)]


def _nonlinearity(code, z):
    """f(z) and f'(z) of the neural law, in the kernels' formulas."""
    xp = _xp(z)
    if code == codes.SIGMOID:
        f = 1.0 / (1.0 + xp.exp(-z))
        return f, f * (1.0 - f)
    if code == codes.SOFTPLUS:
        # log(1 + e^z) = max(z, 0) + log1p(e^-|z|), finite for every z
        return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z))), 1.0 / (1.0 + xp.exp(-z))
    f = xp.exp(z)
    return f, f


@dataclass(frozen=True)
class Neural(RateLaw):
    """Linear–nonlinear law ``a = k * f(b + sum_i w_i x_i)``.

    Parameters
    ----------
    k, b : str
        Parameter names of the amplitude and the bias.
    weights : sequence of (weight parameter, species) pairs
        The regulators and their learnable weights.
    f : {"sigmoid", "softplus", "exp"}
        Nonlinearity.
    """

    k: object
    b: object
    weights: tuple
    f: str = "sigmoid"
    parameter_fields = ("k", "b")
    code = codes.NEURAL

    def __post_init__(self):
        if self.f not in NONLINEARITIES:
            raise NetworkError(f"unknown nonlinearity {self.f!r}; choose one of {sorted(NONLINEARITIES)}")
        object.__setattr__(self, "weights", tuple((w, s) for w, s in self.weights))

    def species_names(self) -> tuple:
        return tuple(s for _, s in self.weights)

    def parameter_names(self) -> tuple:
        return (self.k, self.b) + tuple(w for w, _ in self.weights)

    def resolve(self, species_index, parameter_index, reactants):
        weights = tuple((_lookup(parameter_index, w, "parameter"), _lookup(species_index, s, "species"))
                        for w, s in self.weights)
        return replace(self, reactants=tuple(reactants), k=_lookup(parameter_index, self.k, "parameter"),
                       b=_lookup(parameter_index, self.b, "parameter"), weights=weights)

    def encode(self):
        return self.code, NONLINEARITIES[self.f], (), (self.k, self.b), self.weights

    def signed_parameters(self) -> tuple:
        return (self.b,) + tuple(w for w, _ in self.weights)

    def _activation(self, x, theta):
        z = theta[..., self.b]
        for w, s in self.weights:
            z = z + theta[..., w] * x[..., s].astype(float)
        return _nonlinearity(NONLINEARITIES[self.f], z)

    def evaluate(self, x, theta):
        f, _ = self._activation(x, theta)
        return theta[..., self.k] * f

    def grad_x(self, x, theta):
        _, df = self._activation(x, theta)
        k = theta[..., self.k]
        grads = {}
        for w, s in self.weights:
            grads[s] = grads.get(s, 0.0) + k * df * theta[..., w]
        return list(grads.items())

    def grad_theta(self, x, theta):
        f, df = self._activation(x, theta)
        k = theta[..., self.k]
        out = [(self.k, f), (self.b, k * df)]
        out += [(w, k * df * x[..., s].astype(float)) for w, s in self.weights]
        return out
