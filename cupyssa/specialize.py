"""Network-specific kernel code: a generated ``fire(r, x, theta, a, tab)``.

The shared kernels apply a reaction and refresh the dependent propensities by walking the CSR
tables (:func:`cupyssa.kernels.trajectory.fire`). For long runs a network can instead get a
generated version with one branch per reaction: literal population updates and, for mass-action
laws, literal propensity expressions written in exactly the kernels' operation order (so the
trajectories are bit-identical to the table-driven kernels and to the ``numpy`` backend). Other
laws call the shared ``propensity``. Used by ``simulate(..., specialize=True)``; it costs one
compilation per network (10-50 s; networks of up to ``MAX_SPECIALIZED_REACTIONS`` reactions),
which pays off on large ensembles.
"""

from __future__ import annotations

import hashlib
import math

from .errors import NetworkError
from .kernels import codes

__all__ = ["fire_source", "fire_function", "MAX_SPECIALIZED_REACTIONS"]

#: beyond this many reactions the generated branch table, inlined into the trajectory loop, takes
#: LLVM minutes to compile (measured: 16 reactions ~15-50 s, 94 reactions > 7 min)
MAX_SPECIALIZED_REACTIONS = 32

_CACHE: dict = {}


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


def fire_source(network) -> str:
    """Python source of the network's ``fire`` (see module docstring)."""
    M = network.n_reactions
    if M > MAX_SPECIALIZED_REACTIONS:
        raise NetworkError(f"specialize=True supports up to {MAX_SPECIALIZED_REACTIONS} reactions "
                           f"(compile time grows steeply beyond); this network has {M}: use the "
                           "generic kernel (specialize=False)")
    nu = network.stoichiometry
    deps = network.dependency_graph()
    lines = ["def fire(r, x, theta, a, tab):"]
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
            law = network.reactions[j].law
            if law.code == codes.MASS_ACTION:
                expr = _mass_action_expression(law)
            else:
                expr = f"propensity({j}, x, theta, tab)"
            lines.append(f"        aj = {expr}")
            lines.append("        if not (aj >= 0.0 and aj < INF):")
            lines.append(f"            return BAD_PROPENSITY, {j}")
            lines.append(f"        a[{j}] = aj")
        lines.append("        return OK, -1")
    lines.append("    return OK, -1")
    return "\n".join(lines) + "\n"


def fire_function(network):
    """The generated ``fire`` as a plain Python function (memoized by source)."""
    source = fire_source(network)
    key = hashlib.sha1(source.encode()).hexdigest()
    if key not in _CACHE:
        namespace = {"OK": codes.OK, "NEGATIVE_POPULATION": codes.NEGATIVE_POPULATION,
                     "BAD_PROPENSITY": codes.BAD_PROPENSITY, "INF": math.inf}
        exec(compile(source, f"<cupyssa fire {key[:12]}>", "exec"), namespace)
        fn = namespace["fire"]
        fn.__qualname__ = f"fire_{key[:12]}"
        _CACHE[key] = fn
    return _CACHE[key]
