"""Hypothesis strategies for reaction networks, initial states and parameter sets.

Use them in property-based tests of the package and of your own models::

    from hypothesis import given, settings
    from cupyssa.testing import strategies as cst

    @settings(max_examples=25, deadline=None)
    @given(cst.models(max_species=3, conservative=True))
    def test_total_is_conserved(model):
        net, x0, params = model
        res = cs.simulate(net, x0, np.linspace(0, 2, 5), params, n_trajectories=8, seed=0)
        C = net.conservation_laws()
        assert (res.states @ C.T == res.states[:, :1] @ C.T).all()

    @given(cst.parameter_sets(my_network))          # random rates for a fixed user network
    def test_my_model(params): ...

Requires ``hypothesis`` (``pip install "cupyssa[test]"``).

What the generated networks are, and why their simulations stay small
--------------------------------------------------------------------
Species are ``S0, S1, ...``; each reaction has its own parameters (``k3``, ``vmax2``, ...), with
declared defaults, so a network simulates as it is. Every network is *valid*: reactant orders
``<= 3``, no reaction that leaves the state unchanged, and every propensity vanishes when a
reactant is missing (so no population can go negative).

*Open* networks (``conservative=False``) are kept bounded by construction:

* a reaction with reactants never increases the number of molecules
  (``|products| <= |reactants|``): conversions such as ``A + B -> C``, ``2A -> B``, ``A -> 0``;
  there is no autocatalysis (``A -> 2A``), which could explode;
* molecules enter only through zeroth-order sources ``0 -> X`` whose rate is bounded: a mass-
  action constant, or a regulated law bounded by its amplitude (``hill``, ``hillr``, ``mm`` of a
  regulator, ``neural`` with the sigmoid);
* with ``degradation=True`` (the default) every species also has a first-order decay
  ``Si -> 0``, so the populations have a stationary law instead of growing linearly.

So molecule counts grow at most linearly (a Poisson stream of bounded rate), and with the rate
ranges of :func:`parameter_ranges` (sources <= 5, decay >= 0.2, second order <= 0.1, third
order <= 0.005) and time horizons of a few units (:func:`time_grids`, ``t_end <= 5``) a
trajectory has at most a few thousand events.

*Conservative* networks (``conservative=True``) give every species a positive integer weight
``w_i`` in 1..3 (``w_0 = w_1 = 1``) and only reactions with ``w . reactants == w . products``:
the weighted total ``x . w`` is constant on every trajectory, so the state space is finite and
:meth:`~cupyssa.network.ReactionNetwork.conservation_laws` is never empty (tests of conservation
laws are meaningful). They have no sources nor decay, and at least two species.

Rate laws (``laws``): ``"mass_action"`` (always used), ``"hill"``, ``"hillr"``, ``"mm"``,
``"neural"``. ``hillr`` and ``neural`` do not vanish at zero, so they only drive sources
``0 -> X``; ``hill`` and ``mm`` also drive first-order conversions ``X -> Y`` reading ``X``
(they vanish at ``X = 0``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from hypothesis import strategies as st

from ..network import ReactionNetwork
from ..ratelaws import Hill, HillRepression, MassAction, MichaelisMenten, Neural, RateLaw

__all__ = ["LAWS", "networks", "initial_states", "parameter_sets", "parameter_ranges",
           "time_grids", "models"]

#: the rate-law names :func:`networks` understands
LAWS = ("mass_action", "hill", "hillr", "mm", "neural")

#: (low, high) of mass-action constants by reaction order (0..3); log-uniform draws
MASS_ACTION_RANGES = {0: (0.5, 5.0), 1: (0.2, 2.0), 2: (0.002, 0.1), 3: (1e-4, 0.005)}
#: (low, high) of the other laws' parameters, by field name
LAW_RANGES = {"vmax": (0.5, 5.0), "K": (1.0, 30.0), "Km": (1.0, 30.0), "n": (1.0, 4.0),
              "k": (0.5, 5.0)}
#: neural bias and weights: any sign when the network allows it, else non-negative
SIGNED_RANGE = (-1.0, 1.0)
_SIGNED_OK = "signed_parameters" in RateLaw.__dict__


def _log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(np.log(low), np.log(high)).map(lambda e: float(np.clip(np.exp(e), low, high)))


def _multiset(draw, n_species: int, size: int, weights=None) -> dict:
    """A multiset of ``size`` species drawn with replacement (``{"S1": 2, ...}``)."""
    out: dict[str, int] = {}
    for _ in range(size):
        s = draw(st.integers(0, n_species - 1))
        out[f"S{s}"] = out.get(f"S{s}", 0) + 1
    return out


def _decompose(draw, total: int, w: list[int], avoid: dict) -> dict:
    """A multiset of species with weighted sum ``total`` (weights ``w``), different from
    ``avoid``."""
    out: dict[str, int] = {}
    remaining = total
    while remaining > 0:
        choices = [i for i, wi in enumerate(w) if wi <= remaining]
        i = choices[draw(st.integers(0, len(choices) - 1))]
        out[f"S{i}"] = out.get(f"S{i}", 0) + 1
        remaining -= w[i]
    if out == avoid:  # S0 and S1 both weigh 1: all-S0 or all-S1 differs from any other multiset
        out = {"S1": total} if avoid != {"S1": total} else {"S0": total}
    return out


def _regulated_law(draw, kind: str, j: int, regulator: str, net: ReactionNetwork):
    """A law of kind ``kind`` for reaction ``j`` reading ``regulator``; declares its parameters."""
    def param(name, rng):
        net.add_parameter(f"{name}{j}", draw(_log_uniform(*rng)))
        return f"{name}{j}"

    if kind == "hill":
        return Hill(regulator, param("vmax", LAW_RANGES["vmax"]), param("K", LAW_RANGES["K"]),
                    param("n", LAW_RANGES["n"]))
    if kind == "hillr":
        return HillRepression(regulator, param("vmax", LAW_RANGES["vmax"]),
                              param("K", LAW_RANGES["K"]), param("n", LAW_RANGES["n"]))
    if kind == "mm":
        return MichaelisMenten(regulator, param("vmax", LAW_RANGES["vmax"]),
                               param("Km", LAW_RANGES["Km"]))
    lo, hi = SIGNED_RANGE if _SIGNED_OK else (0.0, SIGNED_RANGE[1])
    k = param("k", LAW_RANGES["k"])
    net.add_parameter(f"b{j}", draw(st.floats(lo, hi)))
    net.add_parameter(f"w{j}", draw(st.floats(lo, hi)))
    return Neural(k, f"b{j}", [(f"w{j}", regulator)], f="sigmoid")


@st.composite
def networks(draw, max_species: int = 4, max_reactions: int = 6,
             laws: Sequence[str] = ("mass_action",), conservative: bool = False,
             degradation: bool = True, min_species: int = 1) -> ReactionNetwork:
    """Valid random reaction networks whose simulations stay small (see the module docstring).

    Parameters
    ----------
    max_species : int
        At most this many species ``S0, S1, ...`` (at least ``min_species``; at least 2 when
        ``conservative``).
    max_reactions : int
        At most this many random reactions (at least 1); ``degradation`` adds one decay per
        species on top.
    laws : sequence of str
        Rate laws to draw from, among :data:`LAWS`; mass action is always among them.
    conservative : bool
        Only reactions preserving a positive weighted total of molecules.
    degradation : bool
        Open networks: add ``Si -> 0`` for every species (ignored when ``conservative``).
    min_species : int

    Returns
    -------
    SearchStrategy[ReactionNetwork]
        Networks with default parameter values declared (no default initial counts).
    """
    unknown = set(laws) - set(LAWS)
    if unknown:
        raise ValueError(f"unknown laws {sorted(unknown)}; choose among {LAWS}")
    low = max(min_species, 2 if conservative else 1)
    if max_species < low:
        raise ValueError(f"max_species must be at least {low}")
    S = draw(st.integers(low, max_species))
    n_random = draw(st.integers(1, max(1, max_reactions)))
    net = ReactionNetwork()
    for i in range(S):
        net.add_species(f"S{i}")
    w = [1, 1] + [draw(st.integers(1, 3)) for _ in range(S - 2)] if conservative else None
    extra = [k for k in laws if k != "mass_action"]
    for j in range(n_random):
        if conservative:
            order = draw(st.integers(1, 3))
            reactants = _multiset(draw, S, order)
            products = _decompose(draw, sum(w[int(s[1:])] * c for s, c in reactants.items()), w,
                                  reactants)
            source = False
        else:
            source = draw(st.integers(0, 3)) == 0
            if source:
                reactants = {}
                products = _multiset(draw, S, draw(st.integers(1, 2)))
            else:
                order = draw(st.integers(1, 3))
                reactants = _multiset(draw, S, order)
                size = draw(st.integers(0, order))
                products = _multiset(draw, S, size)
                if products == reactants:
                    products = {}  # a pure (higher-order) degradation instead of a no-op
        first_order = len(reactants) == 1 and sum(reactants.values()) == 1
        candidates = ["mass_action"]
        if source:
            candidates += extra
        elif first_order:
            candidates += [k for k in extra if k in ("hill", "mm")]
        kind = candidates[draw(st.integers(0, len(candidates) - 1))]
        if kind == "mass_action":
            order = sum(reactants.values())
            net.add_parameter(f"k{j}", draw(_log_uniform(*MASS_ACTION_RANGES[order])))
            law = MassAction(f"k{j}")
        else:
            regulator = (next(iter(reactants)) if reactants
                         else f"S{draw(st.integers(0, S - 1))}")
            law = _regulated_law(draw, kind, j, regulator, net)
        net.add_reaction(reactants, products, law, name=f"R{j}")
    if degradation and not conservative:
        for i in range(S):
            net.add_parameter(f"d{i}", draw(_log_uniform(*MASS_ACTION_RANGES[1])))
            net.add_reaction({f"S{i}": 1}, {}, MassAction(f"d{i}"), name=f"deg{i}")
    return net


def parameter_ranges(network: ReactionNetwork) -> dict:
    """``{parameter: (low, high)}`` bounding each parameter by its role in the rate laws:
    mass-action constants by reaction order (:data:`MASS_ACTION_RANGES`), Hill / Michaelis–
    Menten / neural amplitudes and constants (:data:`LAW_RANGES`), neural biases and weights
    (:data:`SIGNED_RANGE`). A parameter with several roles gets the intersection (or the first
    role's range if they do not overlap)."""
    names = network.parameters
    ranges: dict[str, tuple[float, float]] = {}

    def add(index, rng):
        name = names[index] if isinstance(index, (int, np.integer)) else index
        if name in ranges:
            lo, hi = max(ranges[name][0], rng[0]), min(ranges[name][1], rng[1])
            if lo <= hi:
                ranges[name] = (lo, hi)
        else:
            ranges[name] = tuple(rng)

    for r in network.reactions:
        law = r.law
        if isinstance(law, MassAction):
            order = min(3, sum(o for _, o in law.reactants))
            add(law.k, MASS_ACTION_RANGES[order])
        elif isinstance(law, Neural):
            add(law.k, LAW_RANGES["k"])
            signed = SIGNED_RANGE if _SIGNED_OK else (0.0, SIGNED_RANGE[1])
            add(law.b, signed)
            for wp, _ in law.weights:
                add(wp, signed)
        else:
            for f in type(law).parameter_fields:
                add(getattr(law, f), LAW_RANGES.get(f, (0.1, 10.0)))
    for name in names:  # parameters no law reads
        ranges.setdefault(name, (0.1, 10.0))
    return ranges


@st.composite
def parameter_sets(draw, network: ReactionNetwork,
                   ranges: Mapping[str, tuple[float, float]] | None = None) -> dict:
    """Random parameter values ``{name: value}`` for ``network``.

    Positive ranges are drawn log-uniformly, ranges reaching zero or below uniformly.

    Parameters
    ----------
    network : ReactionNetwork
        Any network (generated or yours).
    ranges : mapping name -> (low, high), optional
        Overrides of :func:`parameter_ranges` for some or all parameters.
    """
    bounds = parameter_ranges(network)
    bounds.update(ranges or {})
    out = {}
    for name in network.parameters:
        lo, hi = bounds[name]
        out[name] = draw(_log_uniform(lo, hi) if lo > 0 else st.floats(lo, hi))
    return out


@st.composite
def initial_states(draw, network: ReactionNetwork, max_count: int = 20,
                   min_count: int = 0) -> dict:
    """Random initial counts ``{species: count}`` with ``min_count <= count <= max_count``."""
    return {s: draw(st.integers(min_count, max_count)) for s in network.species}


def time_grids(max_t_end: float = 5.0, max_points: int = 6) -> st.SearchStrategy[np.ndarray]:
    """Observation grids ``linspace(0, t_end, points)`` with ``0.1 <= t_end <= max_t_end`` and
    ``2 <= points <= max_points``."""
    return st.builds(lambda t, n: np.linspace(0.0, t, n), st.floats(0.1, max_t_end),
                     st.integers(2, max(2, max_points)))


@st.composite
def models(draw, max_species: int = 4, max_reactions: int = 6,
           laws: Sequence[str] = ("mass_action",), conservative: bool = False,
           degradation: bool = True, max_count: int = 20):
    """``(network, x0, params)`` from :func:`networks`, :func:`initial_states` and
    :func:`parameter_sets` (same arguments)."""
    net = draw(networks(max_species=max_species, max_reactions=max_reactions, laws=laws,
                        conservative=conservative, degradation=degradation))
    return net, draw(initial_states(net, max_count=max_count)), draw(parameter_sets(net))
