"""Propensity of one reaction from the flat network tables (scalar; shared CPU/CUDA source).

``tab`` is a :class:`cupyssa.network.NetworkTables`; ``x`` the int64 state ``[S]``; ``theta`` the
parameter row ``[P]``. The operation order matches the vectorized reference in
:mod:`cupyssa.ratelaws`, so both give the same doubles.
"""

import math

from .codes import EXP, EXPRESSION, HILL, HILL_REPRESSION, MASS_ACTION, MICHAELIS_MENTEN, SIGMOID, SOFTPLUS


def expression_propensity(j, x, theta):
    """Propensity of a reaction with a code-generated law (``EXPRESSION``). This default has
    none; a network with expression laws compiles its own (see ``cupyssa.kernels.cpu.build``)."""
    return math.nan


def propensity(j, x, theta, tab):
    """``a_j(x; theta)`` (float64)."""
    kind = tab.law_kind[j]
    par = tab.law_param[j]
    if kind == MASS_ACTION:
        # k * prod_i C(x_i, nu_i); C(n, o) = n (n-1) ... (n-o+1) / o!
        c = 1.0
        for e in range(tab.reac_ptr[j], tab.reac_ptr[j + 1]):
            n = x[tab.reac_species[e]] * 1.0
            ce = 1.0
            for q in range(tab.reac_order[e]):
                ce = ce * (n - q) / (q + 1)
            c = c * ce
        return theta[par[0]] * c
    if kind == HILL or kind == HILL_REPRESSION:
        P = x[tab.law_species[j, 0]] * 1.0
        vmax = theta[par[0]]
        n = theta[par[2]]
        Pn = P ** n
        Kn = theta[par[1]] ** n
        if kind == HILL:
            return vmax * Pn / (Kn + Pn)
        return vmax * Kn / (Kn + Pn)
    if kind == EXPRESSION:
        return expression_propensity(j, x, theta)
    if kind == MICHAELIS_MENTEN:
        S = x[tab.law_species[j, 0]] * 1.0
        return theta[par[0]] * S / (theta[par[1]] + S)
    # neural: k * f(b + sum_i w_i x_i)
    z = theta[par[1]]
    for e in range(tab.reg_ptr[j], tab.reg_ptr[j + 1]):
        z = z + theta[tab.reg_param[e]] * (x[tab.reg_species[e]] * 1.0)
    option = tab.law_option[j]
    if option == SIGMOID:
        f = 1.0 / (1.0 + math.exp(-z))
    elif option == SOFTPLUS:
        f = max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    elif option == EXP:
        f = math.exp(z)
    else:
        f = math.nan
    return theta[par[0]] * f
