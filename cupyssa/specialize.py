"""Network-specific kernel code: a generated ``fire(r, x, theta, a, tab)``.

The shared kernels apply a reaction and refresh the dependent propensities by walking the CSR
tables (:func:`cupyssa.kernels.trajectory.fire`). For long runs a network can instead get a
generated version: literal population updates and, for mass-action laws, literal propensity
expressions written in exactly the kernels' operation order (so the trajectories are bit-identical
to the table-driven kernels and to the ``numpy`` backend); other laws call the shared
``propensity``. Small networks get a version without a branch on the reaction (lookup tables for
the population changes, then every propensity any reaction can change); larger ones one branch per
reaction.

Used by ``simulate(..., specialize=True)``. The source is kept in a file
(:mod:`cupyssa.codegen`), so Numba caches the compiled family on disk like the shared one: the
first use of a network compiles for 10-30 s (networks of up to ``MAX_SPECIALIZED_REACTIONS``
reactions), later processes load it in about a second.
"""

from __future__ import annotations

from .codegen import load_function
from .errors import NetworkError
from .kernels import codes

__all__ = ["fire_source", "fire_function", "MAX_SPECIALIZED_REACTIONS", "AUTO_SPECIALIZE_SECONDS",
           "AUTO_SPECIALIZE_CACHED_SECONDS"]

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
#: networks up to this size may get a ``fire`` without a branch on the reaction (see
#: :func:`_is_branchless`)
BRANCHLESS_MAX_REACTIONS = 8


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


def _refresh_lines(network, j, indent):
    """Source lines recomputing propensity ``j`` into ``a[j]``. Mass-action propensities are
    non-negative by construction (``theta >= 0``, falling factorials of counts ``>= 0``); other laws
    are checked for sign (NaN and infinity are caught by the trajectory loop's test of ``a0``)."""
    law = network.reactions[j].law
    pad = " " * indent
    if law.code == codes.MASS_ACTION:
        return [f"{pad}a[{j}] = {_mass_action_expression(law)}"]
    return [f"{pad}aj = propensity({j}, x, theta, tab)",
            f"{pad}if aj < 0.0:",
            f"{pad}    return BAD_PROPENSITY, {j}",
            f"{pad}a[{j}] = aj"]


def _is_branchless(deps) -> bool:
    """Whether ``fire`` should skip the branch on ``r``: when recomputing the union of all
    dependency sets costs at most twice the average set. The branch on a random ``r`` is
    mispredicted about as often as reactions alternate (~15 cycles each), which for small
    networks costs more than a few redundant propensities (measured on the dimerization: 1.2x)."""
    union = set().union(*deps)
    return len(deps) <= BRANCHLESS_MAX_REACTIONS and len(union) * len(deps) <= 2 * sum(map(len, deps))


def fire_source(network) -> str:
    """Python source of the network's ``fire`` (see module docstring)."""
    M = network.n_reactions
    if M > MAX_SPECIALIZED_REACTIONS:
        raise NetworkError(f"specialize=True supports up to {MAX_SPECIALIZED_REACTIONS} reactions "
                           f"(compile time grows steeply beyond); this network has {M}: use the "
                           "generic kernel (specialize=False)")
    nu = network.stoichiometry.astype(int)
    deps = [list(d) for d in network.dependency_graph()]
    lines = ["def fire(r, x, theta, a, tab):"]
    if _is_branchless(deps):
        # x += nu[r] through per-species lookup tables, then every propensity that any reaction
        # can change; those r did not touch are recomputed to the same doubles
        for s in range(network.n_species):
            column = nu[:, s]
            if column.any():
                lines.append(f"    x[{s}] += {tuple(int(d) for d in column)!r}[r]")
        for s in range(network.n_species):
            if (nu[:, s] < 0).any():
                lines.append(f"    if x[{s}] < 0:")
                lines.append("        return NEGATIVE_POPULATION, r")
        for j in sorted(set().union(*deps)):
            lines += _refresh_lines(network, j, 4)
        lines.append("    return OK, -1")
        return "\n".join(lines) + "\n"
    for r in range(M):
        lines.append(f"    {'if' if r == 0 else 'elif'} r == {r}:")
        for s in range(network.n_species):
            d = int(nu[r, s])
            if d:
                lines.append(f"        x[{s}] += {d}")
                if d < 0:
                    lines.append(f"        if x[{s}] < 0:")
                    lines.append(f"            return NEGATIVE_POPULATION, {r}")
        for j in deps[r]:
            lines += _refresh_lines(network, j, 8)
        lines.append("        return OK, -1")
    lines.append("    return OK, -1")
    return "\n".join(lines) + "\n"


def fire_function(network, load: bool = True):
    """The generated ``fire`` as a plain Python function kept in a file (:mod:`cupyssa.codegen`;
    memoized by source). With ``load=False`` nothing is written or imported: ``None`` unless it is
    already loaded."""
    return load_function(fire_source(network), "fire", load)
