"""Ready-made reaction networks used by the tests, benchmarks and examples.

Each function returns a :class:`Model`: the network with default parameters and initial state
declared. Mass action follows the package's single convention (Gillespie's combinatorial one:
``2 X -> 3 X`` with constant ``c`` has propensity ``c X (X-1) / 2``), including for models whose
literature constants were stated in another convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .network import ReactionNetwork

__all__ = ["Model", "immigration_death", "birth_death", "dimerization", "vilar_oscillator",
           "schlogl_lattice", "telegraph"]


@dataclass
class Model:
    """A network with an initial state and parameter values (what ``simulate`` accepts).

    Attributes
    ----------
    network : ReactionNetwork
    x0 : dict
        Initial counts by species.
    params : dict
        Parameter values by name.
    t_end : float
        A natural horizon for this model (used by demos and benchmarks).
    """

    network: ReactionNetwork
    x0: dict
    params: dict
    t_end: float = 1.0
    metadata: dict = field(default_factory=dict)


def _model(text: str, t_end: float, **meta) -> Model:
    net = ReactionNetwork.from_string(text)
    return Model(net, net.initial_defaults, net.parameter_defaults, t_end, dict(meta))


def immigration_death(k: float = 10.0, g: float = 0.1, x0: int = 0) -> Model:
    """``0 -> X`` at rate ``k``, ``X -> 0`` at rate ``g X``; Poisson with mean
    ``x0 e^{-gt} + (k/g)(1 - e^{-gt})`` when ``x0 = 0``."""
    return _model(f"k = {k}\ng = {g}\ninit X = {x0}\n0 -> X ; k\nX -> 0 ; g", 10.0)


def birth_death(b: float = 0.1, d: float = 0.12, x0: int = 100) -> Model:
    """Linear birth–death ``X -> 2X`` (``b X``), ``X -> 0`` (``d X``)."""
    return _model(f"b = {b}\nd = {d}\ninit X = {x0}\nX -> 2 X ; b\nX -> 0 ; d", 10.0)


def dimerization(k1: float = 1e-3, k2: float = 0.1, A0: int = 1000, B0: int = 0) -> Model:
    """Reversible dimerization ``2A -> B`` (``k1 A(A-1)/2``), ``B -> 2A`` (``k2 B``)."""
    return _model(f"k1 = {k1}\nk2 = {k2}\ninit A = {A0}\ninit B = {B0}\n"
                  "2 A -> B ; k1\nB -> 2 A ; k2", 50.0)


def vilar_oscillator() -> Model:
    """Vilar–Kueh–Barkai–Leibler circadian oscillator (PNAS 99, 5988, 2002): 9 species,
    16 reactions, the paper's standard rates; one copy of each gene."""
    return _model("""
        alphaA = 50      
        alphapA = 500
        alphaR = 0.01
        alphapR = 50
        betaA = 50
        betaR = 5
        deltaMA = 10
        deltaMR = 0.5
        deltaA = 1
        deltaR = 0.2
        gammaA = 1
        gammaR = 1
        gammaC = 2
        thetaA = 50
        thetaR = 100
        init DA = 1
        init DR = 1
        init DpA = 0
        init DpR = 0
        init MA = 0
        init MR = 0
        init A = 0
        init R = 0
        init C = 0
        A + DA -> DpA ; gammaA
        DpA -> A + DA ; thetaA
        A + DR -> DpR ; gammaR
        DpR -> A + DR ; thetaR
        DA -> DA + MA ; alphaA
        DpA -> DpA + MA ; alphapA
        DR -> DR + MR ; alphaR
        DpR -> DpR + MR ; alphapR
        MA -> MA + A ; betaA
        MR -> MR + R ; betaR
        A + R -> C ; gammaC
        C -> R ; deltaA
        A -> 0 ; deltaA
        R -> 0 ; deltaR
        MA -> 0 ; deltaMA
        MR -> 0 ; deltaMR
    """, 200.0)


def schlogl_lattice(shape=(16,), c1: float = 2.676, c2: float = 0.040, c3: float = 108.102,
                    c4: float = 37.881, d: float = 8.2207, x0: int = 50) -> Model:
    """Schlögl model on a 1-D or 2-D lattice with nearest-neighbour diffusion (open boundaries).

    Per site ``X``: ``2X -> 3X`` (``c1``), ``3X -> 2X`` (``c2``), ``0 -> X`` (``c3``),
    ``X -> 0`` (``c4``); between neighbours ``X_i -> X_j`` (``d X_i``), both directions.
    """
    shape = tuple(shape)
    sites = list(np.ndindex(*shape))
    name = {s: "X" + "_".join(map(str, s)) for s in sites}
    lines = [f"c1 = {c1}", f"c2 = {c2}", f"c3 = {c3}", f"c4 = {c4}", f"d = {d}"]
    lines += [f"init {name[s]} = {x0}" for s in sites]
    for s in sites:
        X = name[s]
        lines += [f"2 {X} -> 3 {X} ; c1", f"3 {X} -> 2 {X} ; c2", f"0 -> {X} ; c3", f"{X} -> 0 ; c4"]
    for s in sites:
        for axis in range(len(shape)):
            t = list(s)
            t[axis] += 1
            t = tuple(t)
            if t[axis] < shape[axis]:
                lines += [f"{name[s]} -> {name[t]} ; d", f"{name[t]} -> {name[s]} ; d"]
    return _model("\n".join(lines), 1.0, shape=shape)


def telegraph(kon: float = 0.5, koff: float = 1.0, km: float = 20.0, gm: float = 1.0,
              kd: float = 0.05, gd: float = 0.2) -> Model:
    """Telegraph gene with dimerization: promoter ``G0 <-> G1``, ``G1 -> G1 + M`` (``km``),
    ``M -> 0`` (``gm``), and the second-order step ``2M -> D`` (``kd M(M-1)/2``), ``D -> 0``."""
    return _model(f"""
        kon = {kon}
        koff = {koff}
        km = {km}
        gm = {gm}
        kd = {kd}
        gd = {gd}
        init G0 = 1
        init G1 = 0
        init M = 0
        init D = 0
        G0 -> G1 ; kon
        G1 -> G0 ; koff
        G1 -> G1 + M ; km
        M -> 0 ; gm
        2 M -> D ; kd
        D -> 0 ; gd
    """, 2.0)
