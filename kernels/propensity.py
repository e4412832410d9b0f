"""Propensity of one reaction from the flat network tables (scalar; shared CPU/CUDA source).

``tab`` is a :class:`cupyssa.network.NetworkTables`; ``x`` the int64 state ``[S]``; ``theta`` the
parameter row ``[P]``. The operation order matches the vectorized reference in
:mod:`cupyssa.ratelaws`, so both give the same doubles.
"""

import math

from .codes import (EXP, EXPRESSION, HILL, HILL_REPRESSION, INV_FACTORIAL, MASS_ACTION,
                    MICHAELIS_MENTEN, SIGMOID, SOFTPLUS)


def expression_propensity(j, x, theta):
    """Propensity of a reaction with a code-generated law (``EXPRESSION``). This default has
    none; a network with expression laws compiles its own (see ``cupyssa.kernels.cpu.build``)."""
    return math.nan


def expression_adjoint(j, x, theta, abar, xbar, gbar, with_x):
    """Reverse-mode step through a code-generated law (see :func:`expression_propensity`);
    this default has none."""
    gbar[0] += math.nan


def neural_activation(j, x, theta, tab):
    """``(f(z), f'(z))`` of the neural law of reaction ``j``, ``z = b + sum_i w_i x_i``, in the
    formulas of :func:`cupyssa.ratelaws._nonlinearity` (softplus without overflow)."""
    z = theta[tab.law_param[j, 1]]
    for e in range(tab.reg_ptr[j], tab.reg_ptr[j + 1]):
        z = z + theta[tab.reg_param[e]] * (x[tab.reg_species[e]] * 1.0)
    option = tab.law_option[j]
    if option == SIGMOID:
        f = 1.0 / (1.0 + math.exp(-z))
        return f, f * (1.0 - f)
    if option == SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z))), 1.0 / (1.0 + math.exp(-z))
    if option == EXP:
        f = math.exp(z)
        return f, f
    return math.nan, math.nan


def combinatorial_factor(j, x, tab):
    """``prod_i C(x_i, nu_i)`` over the reactants of reaction ``j``, with
    ``C(n, o) = (n (n-1) ... (n-o+1)) * (1/o!)`` (no division in the inner loop)."""
    c = 1.0
    for e in range(tab.reac_ptr[j], tab.reac_ptr[j + 1]):
        n = x[tab.reac_species[e]] * 1.0
        order = tab.reac_order[e]
        ce = 1.0
        for q in range(order):
            ce = ce * (n - q)
        c = c * (ce * INV_FACTORIAL[order])
    return c


def small_binomial(n, order):
    """``C(n, order)`` for ``order <= 3``: the doubles of :func:`combinatorial_factor`'s loop
    (``((1.0 n)(n - 1)) * 0.5`` is ``(n (n - 1)) * 0.5``: multiplying by 1.0 is exact)."""
    if order == 1:
        return n
    if order == 2:
        return (n * (n - 1.0)) * 0.5
    if order == 3:
        return ((n * (n - 1.0)) * (n - 2.0)) * INV_FACTORIAL[3]
    return 1.0


def small_binomial_derivative(n, order):
    """``d/dn C(n, order)`` for ``order <= 3``: the doubles of :func:`falling_ratio_derivative`'s
    loop (its sum over ``q`` of ``prod_{r != q} (n - r)``, in the same order, over ``order!``)."""
    if order == 1:
        return 1.0
    if order == 2:
        return ((n - 1.0) + n) / 2.0
    if order == 3:
        return (((n - 1.0) * (n - 2.0) + n * (n - 2.0)) + n * (n - 1.0)) / 6.0
    return 0.0


def propensity(j, x, theta, tab):
    """``a_j(x; theta)`` (float64)."""
    k = tab.pair_law[j, 0]
    if k >= 0:
        # mass action in <= 2 species: k C(x_s0, o0) C(x_s1, o1), the product in the reactant order of
        # combinatorial_factor (((1.0 c0) c1) = c0 c1), so the same doubles without the table walk
        return theta[k] * (small_binomial(x[tab.pair_law[j, 1]] * 1.0, tab.pair_law[j, 2])
                           * small_binomial(x[tab.pair_law[j, 3]] * 1.0, tab.pair_law[j, 4]))
    kind = tab.law_kind[j]
    if kind == MASS_ACTION:
        return theta[tab.law_param[j, 0]] * combinatorial_factor(j, x, tab)
    if kind == HILL or kind == HILL_REPRESSION:
        P = x[tab.law_species[j, 0]] * 1.0
        vmax = theta[tab.law_param[j, 0]]
        n = theta[tab.law_param[j, 2]]
        Pn = P ** n
        Kn = theta[tab.law_param[j, 1]] ** n
        if kind == HILL:
            return vmax * Pn / (Kn + Pn)
        return vmax * Kn / (Kn + Pn)
    if kind == EXPRESSION:
        return expression_propensity(j, x, theta)
    if kind == MICHAELIS_MENTEN:
        S = x[tab.law_species[j, 0]] * 1.0
        return theta[tab.law_param[j, 0]] * S / (theta[tab.law_param[j, 1]] + S)
    # neural: k * f(b + sum_i w_i x_i)
    f, _ = neural_activation(j, x, theta, tab)
    return theta[tab.law_param[j, 0]] * f


def falling_ratio(n, order):
    """``C(n, order)`` as the polynomial ``n (n-1) ... (n-order+1) * (1/order!)``."""
    c = 1.0
    for q in range(order):
        c = c * (n - q)
    return c * INV_FACTORIAL[order]


def falling_ratio_derivative(n, order):
    """``d/dn C(n, order) = sum_q prod_{r != q} (n - r) / order!``."""
    total = 0.0
    factorial = 1.0
    for q in range(order):
        factorial *= q + 1
        term = 1.0
        for r in range(order):
            if r != q:
                term *= n - r
        total += term
    return total / factorial


def propensity_adjoint(j, x, theta, abar, xbar, gbar, with_x, tab):
    """Reverse-mode step through ``a_j(x; theta)``: add ``abar * da_j/dtheta`` to ``gbar [P]`` and,
    when ``with_x``, ``abar * da_j/dx`` (continuous extension) to ``xbar [S]``."""
    k = tab.pair_law[j, 0]
    if k >= 0:
        # a = k c0 c1 in two species (see propensity), in the doubles of the general branch below:
        # da/dk = c0 c1, da/dx_s0 = k c1 dc0/dx_s0 (the other factor is 1.0 when unused); abar
        # multiplies the finished partial, so the reverse sweep's chain through abar is one
        # multiplication deep
        s0, o0, s1, o1 = tab.pair_law[j, 1], tab.pair_law[j, 2], tab.pair_law[j, 3], tab.pair_law[j, 4]
        n0 = x[s0] * 1.0
        n1 = x[s1] * 1.0
        c0 = small_binomial(n0, o0)
        c1 = small_binomial(n1, o1)
        gbar[k] += abar * (c0 * c1)
        if with_x:
            if o0 > 0:
                xbar[s0] += abar * (theta[k] * c1 * small_binomial_derivative(n0, o0))
            if o1 > 0:
                xbar[s1] += abar * (theta[k] * c0 * small_binomial_derivative(n1, o1))
        return
    kind = tab.law_kind[j]
    if kind == MASS_ACTION:
        k = theta[tab.law_param[j, 0]]
        gbar[tab.law_param[j, 0]] += abar * combinatorial_factor(j, x, tab)
        if with_x:
            for e in range(tab.reac_ptr[j], tab.reac_ptr[j + 1]):
                others = 1.0
                for e2 in range(tab.reac_ptr[j], tab.reac_ptr[j + 1]):
                    if e2 != e:
                        others *= falling_ratio(x[tab.reac_species[e2]] * 1.0, tab.reac_order[e2])
                s = tab.reac_species[e]
                d = falling_ratio_derivative(x[s] * 1.0, tab.reac_order[e])
                xbar[s] += abar * (k * others * d)
        return
    if kind == HILL or kind == HILL_REPRESSION:
        P = x[tab.law_species[j, 0]] * 1.0
        vmax = theta[tab.law_param[j, 0]]
        K = theta[tab.law_param[j, 1]]
        n = theta[tab.law_param[j, 2]]
        Pn = P ** n
        Kn = K ** n
        denom = (Kn + Pn) * (Kn + Pn)
        sign = 1.0 if kind == HILL else -1.0
        gbar[tab.law_param[j, 0]] += abar * (Pn if kind == HILL else Kn) / (Kn + Pn)
        # d/dK [P^n/(K^n+P^n)] = -n K^(n-1) P^n / (K^n+P^n)^2
        gbar[tab.law_param[j, 1]] += abar * sign * vmax * (-n * Kn / K * Pn / denom)
        # d/dn [P^n/(K^n+P^n)] = P^n K^n (ln P - ln K) / (K^n+P^n)^2, -> 0 as P -> 0
        if P > 0.0:
            gbar[tab.law_param[j, 2]] += abar * sign * vmax * (Pn * Kn * (math.log(P) - math.log(K)) / denom)
        if with_x:
            if P > 0.0:
                Pnm1 = P ** (n - 1.0)
            elif n > 1.0:
                Pnm1 = 0.0
            elif n == 1.0:
                Pnm1 = 1.0
            else:
                Pnm1 = math.inf
            xbar[tab.law_species[j, 0]] += abar * sign * vmax * n * Pnm1 * Kn / denom
        return
    if kind == MICHAELIS_MENTEN:
        S = x[tab.law_species[j, 0]] * 1.0
        vmax = theta[tab.law_param[j, 0]]
        Km = theta[tab.law_param[j, 1]]
        gbar[tab.law_param[j, 0]] += abar * S / (Km + S)
        gbar[tab.law_param[j, 1]] += abar * (-vmax * S / ((Km + S) * (Km + S)))
        if with_x:
            xbar[tab.law_species[j, 0]] += abar * vmax * Km / ((Km + S) * (Km + S))
        return
    if kind == EXPRESSION:
        expression_adjoint(j, x, theta, abar, xbar, gbar, with_x)
        return
    # neural: a = k f(z), z = b + sum_i w_i x_i
    f, df = neural_activation(j, x, theta, tab)
    k = theta[tab.law_param[j, 0]]
    gbar[tab.law_param[j, 0]] += abar * f
    gbar[tab.law_param[j, 1]] += abar * k * df
    for e in range(tab.reg_ptr[j], tab.reg_ptr[j + 1]):
        gbar[tab.reg_param[e]] += abar * k * df * (x[tab.reg_species[e]] * 1.0)
        if with_x:
            xbar[tab.reg_species[e]] += abar * k * df * theta[tab.reg_param[e]]
