"""Shared statistical helpers for the tests."""

import numpy as np
from scipy import stats


def mass_action_orders_network(with_hill=True):
    """A network of mass-action laws of orders 0-3 in one and two reactant species, with (or
    without) a Hill-activated birth-death pair; returns ``(network, params, x0)``."""
    import cupyssa as cs

    net = cs.ReactionNetwork.from_string("""
        0 -> A ; k0
        2 A -> B ; k1
        3 B -> C ; k2
        A + B -> D ; k3
        D -> A ; k4
    """ + ("0 -> E ; hill(A, vmax, K, n)\nE -> 0 ; k4\n" if with_hill else ""))
    params = dict(k0=5.0, k1=0.05, k2=0.001, k3=0.02, k4=0.3)
    if with_hill:
        params.update(vmax=3.0, K=5.0, n=2.0)
    return net, params, dict.fromkeys(net.species, 0) | {"A": 10, "B": 5}


def chisquare_pvalue(counts, probs, min_expected=5.0):
    """Chi-square goodness-of-fit p-value of ``counts`` (over states 0..K-1) against ``probs``.

    Adjacent states are pooled left to right until each pooled bin expects at least
    ``min_expected`` counts (the usual validity condition of the chi-square approximation); a
    short remainder joins the last bin, and any probability mass outside the listed states forms
    a bin of its own when it expects enough counts.
    """
    counts = np.asarray(counts, dtype=float)
    probs = np.asarray(probs, dtype=float)
    n = counts.sum()
    obs, exp = [], []
    co = ce = 0.0
    for c, p in zip(counts, probs * n):
        co += c
        ce += p
        if ce >= min_expected:
            obs.append(co)
            exp.append(ce)
            co = ce = 0.0
    if obs:
        obs[-1] += co
        exp[-1] += ce
    outside = n - sum(exp)
    if outside >= min_expected:
        obs.append(0.0)
        exp.append(outside)
    else:
        exp[-1] += outside
    return stats.chisquare(obs, exp).pvalue


def central_difference(f, v, i, h):
    """``(f(v + h e_i) - f(v - h e_i)) / 2h``, ``e_i`` the unit vector of coordinate ``i`` along
    the last axis of ``v``: truncation error ``O(h^2)`` (third derivative), rounding ``~ eps f / h``."""
    up = np.array(v, dtype=float)
    dn = np.array(v, dtype=float)
    up[..., i] += h
    dn[..., i] -= h
    return (f(up) - f(dn)) / (2 * h)


def assert_kernel_adjoints_match(family, network, x, theta, abar=2.0):
    """The compiled ``propensity_adjoint`` of every reaction of ``network`` at the state ``x``
    (int64 ``[S]``) against the reference laws' ``grad_x`` / ``grad_theta`` (the vectorized
    derivatives), to 1e-13 relative: the kernels and the references are written separately, so
    they agree to rounding, not bit for bit."""
    for j, r in enumerate(network.reactions):
        xbar, gbar = np.zeros(network.n_species), np.zeros(network.n_parameters)
        family.propensity_adjoint(j, x, theta, abar, xbar, gbar, True, network.tables)
        want_x, want_t = np.zeros_like(xbar), np.zeros_like(gbar)
        for s, d in r.law.grad_x(x, theta):
            want_x[s] += abar * d
        for p, d in r.law.grad_theta(x, theta):
            want_t[p] += abar * d
        np.testing.assert_allclose(xbar, want_x, rtol=1e-13, atol=0, err_msg=f"R{j} {x}")
        np.testing.assert_allclose(gbar, want_t, rtol=1e-13, atol=0, err_msg=f"R{j} {x}")
