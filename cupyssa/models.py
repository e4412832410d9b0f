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


def _model(text: str, t_end: float, species: tuple = (), **meta) -> Model:
    """The model of ``text``; ``species`` fixes the order of those species (the others follow
    in order of appearance). The order is the autoregressive order of the CME solvers."""
    from .parser import parse_network

    net = ReactionNetwork()
    for name in species:
        net.add_species(name)
    net = parse_network(text, net)
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


# -- models of the CME solvers (issue 4) ------------------------------------------------------
# ``metadata["caps"]`` (species -> M_i) is the box 0 <= n_i < M_i that the VAN solver
# (cupyssa.cme.solve) uses by default; it is chosen so that the chain essentially never reaches it.

def toggle_switch(rho: float = 30.0, k: float = 1.0, sb: float = 1e-3, su: float = 0.1,
                  Gx0: int = 1, Gy0: int = 1, Px0: int = 0, Py0: int = 0) -> Model:
    """Genetic toggle switch with explicit gene states (species ``Gx, Gy, Px, Py``, caps 2, 2,
    80, 80).

    The species order puts the slow binary gene states first: it is the factorization order of
    the VAN (:func:`cupyssa.cme.solve`), whose conditionals of ``Px`` and ``Py`` then see both
    gene states. With the interleaved order ``Gx, Px, Gy, Py`` the fitted weights of the two
    switched states drifted apart systematically (``P(Gy = 0)`` high, ``P(Gx = 0)`` low in
    every run; see ``benchmarks/RESULTS.md``).

    ``Gx = 1`` when gene x is free (active), ``0`` when a ``Py`` dimer is bound to it (so the
    bound state is ``1 - Gx``). Reactions (combinatorial mass action):

    * ``Gx -> Gx + Px`` (``rho Gx``), ``Px -> 0`` (``k Px``); the same for y;
    * binding ``Gx + 2 Py -> 0`` (``sb Gx Py (Py-1)/2``): the free gene and two ``Py`` form the
      (untracked) bound complex;
    * unbinding ``0 -> Gx + 2 Py`` with propensity ``su [Gx = 0]``. The indicator is written with
      the Hill-repression law ``su Kg^ng / (Kg^ng + Gx^ng)``, ``Kg = 0.01``, ``ng = 10``: exactly
      ``su`` at ``Gx = 0`` and ``su * 1e-20`` at ``Gx = 1`` (a leak of rate 1e-21 to ``Gx = 2``;
      the VAN box has cap 2 and switches it off), so the model stays in the package's rate-law
      set and the SSA and FSP run it unchanged.
    """
    return _model(f"""
        rho = {rho}
        k = {k}
        sb = {sb}
        su = {su}
        Kg = 0.01
        ng = 10
        init Gx = {Gx0}
        init Gy = {Gy0}
        init Px = {Px0}
        init Py = {Py0}
        Gx -> Gx + Px ; rho
        Gy -> Gy + Py ; rho
        Px -> 0 ; k
        Py -> 0 ; k
        Gx + 2 Py -> 0 ; sb
        Gy + 2 Px -> 0 ; sb
        0 -> Gx + 2 Py ; hillr(Gx, su, Kg, ng)
        0 -> Gy + 2 Px ; hillr(Gy, su, Kg, ng)
    """, 20.0, species=("Gx", "Gy", "Px", "Py"), caps={"Gx": 2, "Gy": 2, "Px": 80, "Py": 80})


def autoregulatory_loop(rho_u: float = 60.0, rho_b: float = 25.0, sigma_b: float = 0.2,
                        sigma_u: float = 1.0, k: float = 1.0, P_cap: int = 120) -> Model:
    """Auto-regulatory (self-repressing / self-activating) gene: free gene ``G``, bound gene
    ``Gb`` (``G + Gb = 1``), protein ``P``:

    ``G -> G + P`` (``rho_u``), ``Gb -> Gb + P`` (``rho_b``), ``G + P -> Gb`` (``sigma_b G P``),
    ``Gb -> G + P`` (``sigma_u``), ``P -> 0`` (``k P``). Caps 2, 2, ``P_cap``.
    """
    return _model(f"""
        rho_u = {rho_u}
        rho_b = {rho_b}
        sigma_b = {sigma_b}
        sigma_u = {sigma_u}
        k = {k}
        init G = 1
        init Gb = 0
        init P = 0
        G -> G + P ; rho_u
        Gb -> Gb + P ; rho_b
        G + P -> Gb ; sigma_b
        Gb -> G + P ; sigma_u
        P -> 0 ; k
    """, 10.0, caps={"G": 2, "Gb": 2, "P": int(P_cap)})


def sir_periodic(beta0: float = 0.05, amplitude: float = 0.5, period: float = 10.0,
                 gamma: float = 0.5, S0: int = 40, I0: int = 5, N_cap: int | None = None) -> Model:
    """SIR epidemic with a time-periodic infection rate.

    ``S + I -> 2 I`` (``beta(t) S I``), ``I -> R`` (``gamma I``), with
    ``beta(t) = beta0 (1 + amplitude sin(2 pi t / period))``.

    The network API has no time-dependent parameters: ``params`` holds ``beta = beta0`` and
    ``metadata["params_at"]`` is the callable ``t -> params`` with ``beta(t)``, which
    :func:`cupyssa.cme.solve` honours (rates held constant over each step at its left end).
    ``cupyssa.simulate`` and ``cupyssa.cme.fsp`` do not support it: they use the constant
    ``beta0``. Caps ``S0 + I0 + 1`` for every species (the population is conserved).
    """
    cap = int(N_cap if N_cap is not None else S0 + I0 + 1)
    m = _model(f"""
        beta = {beta0}
        gamma = {gamma}
        init S = {S0}
        init I = {I0}
        init R = 0
        S + I -> 2 I ; beta
        I -> R ; gamma
    """, 2 * period, caps={"S": cap, "I": cap, "R": cap})

    def params_at(t: float) -> dict:
        return {"beta": beta0 * (1.0 + amplitude * np.sin(2.0 * np.pi * t / period)),
                "gamma": gamma}

    m.metadata["params_at"] = params_at
    m.metadata["beta"] = lambda t: params_at(t)["beta"]
    return m


def linear_cascade(n: int = 15, beta: float = 10.0, k: float = 1.0, gamma: float = 1.0,
                   cap: int = 40) -> Model:
    """Linear signalling cascade of ``n`` species: ``0 -> S1`` (``beta``), ``S_i -> S_i + S_{i+1}``
    (``k S_i``), ``S_i -> 0`` (``gamma S_i``). Every mean tends to ``beta (k/gamma)^(i-1) /
    gamma``; caps ``cap`` for every species."""
    lines = [f"beta = {beta}", f"k = {k}", f"gamma = {gamma}"]
    lines += [f"init S{i} = 0" for i in range(1, n + 1)]
    lines.append("0 -> S1 ; beta")
    for i in range(1, n):
        lines.append(f"S{i} -> S{i} + S{i + 1} ; k")
    lines += [f"S{i} -> 0 ; gamma" for i in range(1, n + 1)]
    return _model("\n".join(lines), 10.0, caps={f"S{i}": int(cap) for i in range(1, n + 1)})


def mapk_cascade() -> Model:
    """Three-tier MAPK cascade with turnover: 16 species, 35 reactions (mass action).

    Tier 1: signal ``S`` phosphorylates ``KKK`` through the complex ``C1``
    (``S + KKK <-> C1 -> S + KKKp``); ``KKKp -> KKK`` (constitutive phosphatase).
    Tier 2: ``KKKp`` phosphorylates ``KK -> KKp -> KKpp`` through ``C2``, ``C3``; phosphatase
    ``P2`` reverses both steps (``KKpp + P2 -> KKp + P2``, ``KKp + P2 -> KK + P2``).
    Tier 3: ``KKpp`` phosphorylates ``K -> Kp -> Kpp`` through ``C4``, ``C5``; phosphatase ``P3``.
    Turnover: synthesis of ``S``, ``KKK``, ``KK``, ``K``, ``P2``; first-order degradation of
    ``S``, ``P2`` and of every free kinase form. ``P3`` is conserved. Monitored species
    (``metadata["monitored"]``): ``KKKp``, ``KKpp``, ``Kpp``.

    Source: the topology is the three-tier cascade of Huang & Ferrell, PNAS 93, 10078 (1996)
    (MAPKKK -> MAPKK -> MAPK, double phosphorylation of the lower two tiers by distributive
    enzyme-substrate complexes), simplified for the CME: the phosphatase steps are single
    mass-action reactions (no phosphatase complexes), MAPKKK deactivation is constitutive, and
    synthesis / degradation make every count fluctuate (the model has no steady conservation
    laws except ``P3``). The rate constants are not from the literature: they are chosen so that
    every tier is partly active at ``t = 100`` (SSA, 20,000 runs: means ± sd of KKKp 9.0 ± 3.4,
    KKpp 9.3 ± 3.8, Kpp 9.4 ± 3.6; the largest counts stay below 70 % of the caps). With ``kon = 0.02``,
    ``kdp = 0.05`` (an earlier choice) the signal died out along the cascade (mean Kpp 0.002).
    """
    text = """
        ks = 1.0
        ds = 0.1
        kon = 0.1
        koff = 1.0
        kcat = 1.0
        kp1 = 0.5
        kdp = 0.03
        syn = 2.0
        deg = 0.1
        ksp = 0.5
        dsp = 0.1
        init S = 0
        init KKK = 0
        init C1 = 0
        init KKKp = 0
        init KK = 0
        init C2 = 0
        init KKp = 0
        init C3 = 0
        init KKpp = 0
        init K = 0
        init C4 = 0
        init Kp = 0
        init C5 = 0
        init Kpp = 0
        init P2 = 0
        init P3 = 5
        S + KKK -> C1 ; kon
        C1 -> S + KKK ; koff
        C1 -> S + KKKp ; kcat
        KKKp -> KKK ; kp1
        KKKp + KK -> C2 ; kon
        C2 -> KKKp + KK ; koff
        C2 -> KKKp + KKp ; kcat
        KKKp + KKp -> C3 ; kon
        C3 -> KKKp + KKp ; koff
        C3 -> KKKp + KKpp ; kcat
        KKpp + P2 -> KKp + P2 ; kdp
        KKp + P2 -> KK + P2 ; kdp
        KKpp + K -> C4 ; kon
        C4 -> KKpp + K ; koff
        C4 -> KKpp + Kp ; kcat
        KKpp + Kp -> C5 ; kon
        C5 -> KKpp + Kp ; koff
        C5 -> KKpp + Kpp ; kcat
        Kpp + P3 -> Kp + P3 ; kdp
        Kp + P3 -> K + P3 ; kdp
        0 -> KKK ; syn
        KKK -> 0 ; deg
        KKKp -> 0 ; deg
        0 -> KK ; syn
        KK -> 0 ; deg
        KKp -> 0 ; deg
        KKpp -> 0 ; deg
        0 -> K ; syn
        K -> 0 ; deg
        Kp -> 0 ; deg
        Kpp -> 0 ; deg
        0 -> S ; ks
        S -> 0 ; ds
        0 -> P2 ; ksp
        P2 -> 0 ; dsp
    """
    m = _model(text, 100.0, monitored=("KKKp", "KKpp", "Kpp"))
    caps = {s: 48 for s in m.network.species}
    caps.update({"C1": 24, "C2": 24, "C3": 24, "C4": 24, "C5": 24, "P3": 6, "S": 40, "P2": 24})
    m.metadata["caps"] = caps
    return m


def schlogl_paper(shape=(2,), x0: int = 50, cap: int = 85) -> Model:
    """The Schlögl lattice of arXiv:2512.10309 (c1=2.676, c2=0.040, c3=108.102, c4=37.881,
    d=8.2207) in the package's combinatorial convention.

    The paper's propensities are ``c1 x(x-1)`` and ``c2 x(x-1)(x-2)`` (stable states near 4 and
    48, unstable near 14.5; its 2-site state space is 85^2 = 7,225 states); in the combinatorial
    convention the same chain has ``c1' = 2! c1 = 5.352`` and ``c2' = 3! c2 = 0.240``. (Feeding
    2.676 and 0.040 to :func:`schlogl_lattice` gives a different chain, with the upper state near
    170.) ``metadata["caps"]`` is ``cap`` per site.

    The chain presses on a cap of 85 (the flux through ``x = 84`` is large): the absorbing FSP
    with bound 84 loses 15 % of the mass by ``t = 1`` on one site and 29 % on two sites, while the
    VAN's reflecting box chain (:func:`cupyssa.cme.box.box_cme`, the same 85^S states) stays
    within Hellinger 0.008 of the untruncated chain on one site (t <= 1); compare the VAN with
    the latter.
    """
    m = schlogl_lattice(shape, c1=2 * 2.676, c2=6 * 0.040, c3=108.102, c4=37.881, d=8.2207, x0=x0)
    m.metadata["caps"] = {s: int(cap) for s in m.network.species}
    return m


__all__ += ["toggle_switch", "autoregulatory_loop", "sir_periodic", "linear_cascade",
            "mapk_cascade", "schlogl_paper"]
