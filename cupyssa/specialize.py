"""Network-specific kernel code: a generated ``fire(r, x, theta, a, tab)`` and its reverse-sweep
counterparts.

The shared kernels apply a reaction and refresh the dependent propensities by walking the CSR
tables (:func:`cupyssa.kernels.trajectory.fire`). For long runs a network can instead get a
generated version: literal population updates and, for mass-action laws, literal propensity
expressions written in exactly the kernels' operation order (so the trajectories are bit-identical
to the table-driven kernels and to the ``numpy`` backend); other laws call the shared
``propensity``. Small networks get a version without a branch on the reaction (lookup tables for
the population changes, then every propensity any reaction can change); larger ones one branch per
reaction.

The reverse sweep of the gradients (:mod:`cupyssa.kernels.backward`) gets the same treatment:
``unfire`` (the step back, ``x -= nu_r``), ``stoich_adjoint`` (``s = nu xbar``) and, for networks
of elementary and trimolecular mass-action laws, ``rates_adjoint`` (the propensities' reverse-mode
step), each in the doubles of the table-driven version, so gradients are bit-identical too; and
``reaction_count`` returns ``M`` as a literal, so every loop over the reactions has a constant trip
count. On the dimerization (AMD EPYC, 2 threads) the sweep runs 1.5x (straight-through, kernel
observations) and 1.7x (score) faster and the forward 2.1x: table walks with run-time trip counts,
per step and per reaction, are what the literal forms remove.

Used by ``simulate(..., specialize=True)``. The source is kept in a file
(:mod:`cupyssa.codegen`), so Numba caches the compiled family on disk like the shared one: the
first use of a network compiles for 10-30 s (networks of up to ``MAX_SPECIALIZED_REACTIONS``
reactions), later processes load it in about a second.
"""

from __future__ import annotations

from .codegen import load_function
from .errors import NetworkError
from .network import recompute_all_dependents
from .kernels import codes

__all__ = ["fire_source", "fire_function", "unfire_source", "stoich_adjoint_source",
           "rates_adjoint_source", "specialized_functions", "MAX_SPECIALIZED_REACTIONS",
           "AUTO_SPECIALIZE_SECONDS", "AUTO_SPECIALIZE_CACHED_SECONDS"]

#: beyond this many reactions the generated branch table, inlined into the trajectory loop, takes
#: LLVM minutes to compile (measured: 16 reactions ~15-50 s, 94 reactions > 7 min)
MAX_SPECIALIZED_REACTIONS = 32
#: ``simulate(specialize=None)`` compiles the update when the generic kernel's time for the rest
#: of the ensemble, projected from a timed first chunk, exceeds this many seconds (a first
#: compilation takes 10-30 s, later ones load from the disk cache; the update is 1.7-2.7x faster)
AUTO_SPECIALIZE_SECONDS = 30.0
#: the same, when an earlier process left the compiled update in Numba's disk cache: loading it
#: takes well under a second, so it pays for any ensemble that is not tiny
AUTO_SPECIALIZE_CACHED_SECONDS = 1.0


def _mass_action_expression(law) -> str:
    """``theta[k] * prod_i ((x_i (x_i - 1) ...) * (1/o!))`` in the kernels' operation order:
    ``ce = 1.0; ce *= (n - q)`` then ``c = 1.0; c *= ce * inv_factorial`` (multiplications by
    1.0 and subtractions of 0 are exact, so they are left out)."""
    terms = []
    for s, order in law.reactants:
        n = f"(x[{s}] * 1.0)"
        chain = n
        for q in range(1, order):
            chain = f"({chain} * ({n} - {float(q)!r}))"
        terms.append(f"({chain} * {codes.INV_FACTORIAL[order]!r})")
    return f"theta[{law.k}] * ({' * '.join(terms) if terms else '1.0'})"


def _refresh_lines(network, j, indent, checked=True):
    """Source lines recomputing propensity ``j`` into ``a[j]``. Mass-action propensities are
    non-negative by construction (``theta >= 0``, falling factorials of counts ``>= 0``); other laws
    are checked for sign when ``checked`` (NaN and infinity are caught by the trajectory loop's
    test of ``a0``); the reverse sweep recomputes the forward's values and checks nothing."""
    law = network.reactions[j].law
    pad = " " * indent
    if law.code == codes.MASS_ACTION:
        return [f"{pad}a[{j}] = {_mass_action_expression(law)}"]
    if not checked:
        return [f"{pad}a[{j}] = propensity({j}, x, theta, tab)"]
    return [f"{pad}aj = propensity({j}, x, theta, tab)",
            f"{pad}if aj < 0.0:",
            f"{pad}    return BAD_PROPENSITY, {j}",
            f"{pad}a[{j}] = aj"]


def _check_size(network):
    M = network.n_reactions
    if M > MAX_SPECIALIZED_REACTIONS:
        raise NetworkError(f"specialize=True supports up to {MAX_SPECIALIZED_REACTIONS} reactions "
                           f"(compile time grows steeply beyond); this network has {M}: use the "
                           "generic kernel (specialize=False)")


def _update_source(network, forward: bool) -> str:
    """Source of ``fire`` (``forward``: ``x += nu_r``, checked, returns ``(status, reaction)``) or of
    ``unfire`` (the reverse sweep's ``x -= nu_r``, unchecked, returns nothing), both followed by
    the dependent propensities (see the module docstring)."""
    _check_size(network)
    nu = network.stoichiometry.astype(int)
    if not forward:
        nu = -nu
    deps = [list(d) for d in network.dependency_graph()]
    ok = "    return OK, -1" if forward else "    return"
    lines = ["def fire(r, x, theta, a, tab):" if forward else "def unfire(r, x, theta, a, tab):"]
    if recompute_all_dependents(deps):
        # x += nu[r] through per-species lookup tables, then every propensity that any reaction
        # can change; those r did not touch are recomputed to the same doubles
        for s in range(network.n_species):
            column = nu[:, s]
            if column.any():
                lines.append(f"    x[{s}] += {tuple(int(d) for d in column)!r}[r]")
        if forward:
            for s in range(network.n_species):
                if (nu[:, s] < 0).any():
                    lines.append(f"    if x[{s}] < 0:")
                    lines.append("        return NEGATIVE_POPULATION, r")
        for j in sorted(set().union(*deps)):
            lines += _refresh_lines(network, j, 4, forward)
        lines.append(ok)
        return "\n".join(lines) + "\n"
    for r in range(network.n_reactions):
        lines.append(f"    {'if' if r == 0 else 'elif'} r == {r}:")
        for s in range(network.n_species):
            d = int(nu[r, s])
            if d:
                lines.append(f"        x[{s}] += {d}")
                if d < 0 and forward:
                    lines.append(f"        if x[{s}] < 0:")
                    lines.append(f"            return NEGATIVE_POPULATION, {r}")
        for j in deps[r]:
            lines += _refresh_lines(network, j, 8, forward)
        lines.append("    " + ok)
    lines.append(ok)
    return "\n".join(lines) + "\n"


def fire_source(network) -> str:
    """Python source of the network's ``fire`` (see module docstring)."""
    return _update_source(network, True)


def unfire_source(network) -> str:
    """Python source of the network's ``unfire``, the reverse sweep's step back
    (:func:`cupyssa.kernels.backward.unfire`): literal ``x -= nu_r`` and dependent propensities,
    the same doubles as ``fire``'s."""
    return _update_source(network, False)


def stoich_adjoint_source(network) -> str:
    """Python source of the network's ``stoich_adjoint``: ``s_j = nu_j . xbar`` as literal sums in
    the table order of :func:`cupyssa.kernels.backward.stoich_adjoint` (``0.0 + d_1 xbar_1 + ...``:
    the same doubles)."""
    _check_size(network)
    tab = network.tables
    lines = ["def stoich_adjoint(xbar, s, tab):"]
    for j in range(network.n_reactions):
        terms = "".join(f" + {float(tab.net_delta[e])!r} * xbar[{tab.net_species[e]}]"
                        for e in range(tab.net_ptr[j], tab.net_ptr[j + 1]))
        lines.append(f"    s[{j}] = 0.0{terms}")
    return "\n".join(lines) + "\n"


def _binomial(n: str, order: int, derivative: bool) -> str:
    """``small_binomial(n, order)`` (or its derivative) with a literal order, or the literal 1.0
    (0.0) of an unused slot (order 0)."""
    if order == 0:
        return "0.0" if derivative else "1.0"
    return f"small_binomial{'_derivative' if derivative else ''}({n}, {order})"


def rates_adjoint_source(network) -> str | None:
    """Python source of the network's ``rates_adjoint`` (the propensities' reverse-mode step,
    :func:`cupyssa.kernels.backward.rates_adjoint`) when every law is mass action in at most two
    species of order <= 3 (the laws of ``NetworkTables.pair_law``): straight-line code per reaction,
    in the doubles and the accumulation order of the table-driven
    :func:`~cupyssa.kernels.propensity.propensity_adjoint`, without its test for ``abar_j = 0``:
    adding ``0 * (a finite derivative)`` changes at most the sign of a zero, and the test cost the
    dimerization's st/fill sweep 1.12x (benchmarks/RESULTS.md, "Gradient throughput, session 17").
    ``None`` for other networks: a literal call per reaction to the general adjoint would inline a
    copy of every rate law each."""
    _check_size(network)
    pair = network.tables.pair_law
    if (pair[:, 0] < 0).any():
        return None
    lines = ["def rates_adjoint(x, theta, abar, xbar, gbar, with_x, tab):"]
    for j in range(network.n_reactions):
        k, s0, o0, s1, o1 = (int(v) for v in pair[j])
        c0 = _binomial(f"(x[{s0}] * 1.0)", o0, False)
        c1 = _binomial(f"(x[{s1}] * 1.0)", o1, False)
        lines += [f"    ab = abar[{j}]",
                  f"    c0 = {c0}",
                  f"    c1 = {c1}",
                  f"    gbar[{k}] += ab * (c0 * c1)"]
        if o0 or o1:
            lines.append("    if with_x:")
        # da/dx_s0 = k c1 dc0/dx_s0, multiplied in propensity_adjoint's order
        for s, order, other in ((s0, o0, "c1"), (s1, o1, "c0")):
            if order:
                d = _binomial(f"(x[{s}] * 1.0)", order, True)
                lines.append(f"        xbar[{s}] += ab * (theta[{k}] * {other} * {d})")
    return "\n".join(lines) + "\n"


def fire_function(network, load: bool = True):
    """The generated ``fire`` as a plain Python function kept in a file (:mod:`cupyssa.codegen`;
    memoized by source). With ``load=False`` nothing is written or imported: ``None`` unless it is
    already loaded."""
    return load_function(fire_source(network), "fire", load)


def specialized_functions(network, load: bool = True) -> dict:
    """The network's generated kernel functions by the name they replace in the compiled family:
    ``fire`` for the forward, ``unfire``, ``stoich_adjoint`` and (mass-action networks)
    ``rates_adjoint`` for the reverse sweep. With ``load=False`` nothing is written or imported:
    each is ``None`` unless already loaded."""
    sources = {"reaction_count": f"def reaction_count(a):\n    return {network.n_reactions}\n",
               "fire": fire_source(network), "unfire": unfire_source(network),
               "stoich_adjoint": stoich_adjoint_source(network),
               "rates_adjoint": rates_adjoint_source(network)}
    return {name: load_function(src, name, load) for name, src in sources.items() if src}
