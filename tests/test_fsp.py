"""Finite state projection: analytic laws, exact sensitivities, truncation error, inputs.

Where tolerances come from: ``expm_multiply`` works to double precision (its error is a few
ulps times the 1-norm of the propagated vector per step), so an FSP solution of a well-contained
truncation agrees with an analytic law to ~1e-14; the tolerances below leave orders of
magnitude of margin and are stated per test.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, poisson

from cupyssa import (
    InitialStateError,
    NetworkError,
    ParameterError,
    ReactionNetwork,
    models,
)
from cupyssa.cme import FSPResult, enumerate_states, fsp

K_IMM, G_IMM = 10.0, 0.1


def poisson_mean(t, k=K_IMM, g=G_IMM, lam0=0.0):
    """Mean of immigration-death from Poisson(lam0): lam0 e^{-gt} + (k/g)(1 - e^{-gt})."""
    return lam0 * np.exp(-g * t) + k / g * (1 - np.exp(-g * t))


@pytest.fixture(scope="module")
def immigration():
    """Immigration-death from 0 in a box so large (X <= 250, mean <= 100) that the truncation
    error, the Poisson tail P(X > 250) < 1e-35, is far below double precision."""
    t = np.array([0.0, 0.5, 2.0, 10.0, 30.0])
    return t, fsp(models.immigration_death(k=K_IMM, g=G_IMM), t_eval=t, bounds={"X": 250},
                  sensitivities=True)


@pytest.fixture(scope="module")
def dimer():
    model = models.dimerization(k1=0.01, k2=0.1, A0=20)
    t = np.array([0.0, 0.5, 2.0, 10.0, 100.0])
    return model, t, fsp(model, t_eval=t, sensitivities=True)


HILL_TEXT = """
    0 -> P ; b
    0 -> P ; hill(P, vmax, K, n)
    P -> 0 ; g
    P -> 0 ; mm(P, vm, Km)
"""
HILL_PARAMS = {"b": 2.0, "vmax": 10.0, "K": 15.0, "n": 2.5, "g": 0.2, "vm": 2.0, "Km": 5.0}


# -- analytic laws -------------------------------------------------------------------------------
def test_immigration_death_is_poisson(immigration):
    t, res = immigration
    assert isinstance(res, FSPResult)
    n = res.states[:, 0]
    np.testing.assert_array_equal(n, np.arange(251))
    exact = poisson.pmf(n[None, :], poisson_mean(t)[:, None])
    # pmf to 1e-8 absolute (expected error ~1e-14, see module docstring)
    np.testing.assert_allclose(res.p, exact, rtol=0, atol=1e-8)
    assert np.all(np.abs(res.lost) < 1e-12)
    np.testing.assert_allclose(res.mean()[:, 0], poisson_mean(t), rtol=1e-10, atol=1e-12)
    # Poisson: variance = mean
    np.testing.assert_allclose(res.variance()[:, 0], poisson_mean(t), rtol=1e-9, atol=1e-12)


def test_immigration_death_sensitivities(immigration):
    t, res = immigration
    assert res.parameters == ("k", "g")
    e = np.exp(-G_IMM * t)
    dk = (1 - e) / G_IMM
    dg = -K_IMM / G_IMM ** 2 * (1 - e) + K_IMM / G_IMM * t * e
    d_mean = res.d_mean()[:, 0, :]
    # 1e-7 relative as asked; the expected error is ~1e-12 relative (sensitivities reach ~1e3)
    np.testing.assert_allclose(d_mean[:, 0], dk, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(d_mean[:, 1], dg, rtol=1e-7, atol=1e-12)
    # whole vectors: dp_n/dtheta = pmf(n) (n/lam - 1) dlam/dtheta, and dlam/dtheta = d mean
    lam = poisson_mean(t[1:])
    n = res.states[:, 0]
    dpmf = poisson.pmf(n[None, :], lam[:, None]) * (n[None, :] / lam[:, None] - 1)
    for p, dlam in enumerate((dk, dg)):
        expected = dpmf * dlam[1:, None]
        np.testing.assert_allclose(res.sensitivities[1:, :, p], expected, rtol=0,
                                   atol=1e-8 * np.abs(expected).max())
    np.testing.assert_array_equal(res.sensitivities[0], 0.0)  # s(0) = 0


def test_poisson_initial_distribution_stays_poisson():
    """From Poisson(lam0), immigration-death stays Poisson with mean lam0 e^{-gt} + k/g(1-e^{-gt});
    repeated states in the initial distribution are merged."""
    lam0, n = 30.0, np.arange(200)
    states = np.concatenate([n, n])[:, None]
    probs = np.concatenate([poisson.pmf(n, lam0), poisson.pmf(n, lam0)]) / 2
    t = np.array([0.0, 1.0, 7.0])
    res = fsp(models.immigration_death(k=K_IMM, g=G_IMM), (states, probs), t,
              bounds=[250])
    exact = poisson.pmf(res.states[:, 0][None, :], poisson_mean(t, lam0=lam0)[:, None])
    # the initial law is cut at 199 (tail ~1e-90), the box at 250: errors ~1e-14
    np.testing.assert_allclose(res.p, exact, rtol=0, atol=1e-10)


@settings(max_examples=20, deadline=None)
@given(kf=st.floats(0.05, 5.0), kb=st.floats(0.05, 5.0), n=st.integers(1, 40),
       t=st.floats(0.0, 3.0))
def test_isomerization_is_binomial(kf, kb, n, t):
    """A <-> B from A = n: molecules switch independently, so A(t) ~ Binomial(n, q(t)) with
    q = r + (1 - r) e^{-(kf + kb) t}, r = kb / (kf + kb). Closed system: no mass lost."""
    net = ReactionNetwork.from_string("A <-> B ; kf, kb")
    res = fsp(net, {"A": n, "B": 0}, [t], {"kf": kf, "kb": kb})
    r = kb / (kf + kb)
    q = r + (1 - r) * np.exp(-(kf + kb) * t)
    np.testing.assert_allclose(res.marginal("A", 0), binom.pmf(np.arange(n + 1), n, q),
                               rtol=0, atol=1e-10)
    assert abs(res.lost[0]) < 1e-12


# -- sensitivities vs finite differences ----------------------------------------------------------
def central_differences(net, x0, t, theta, states, rel=1e-5):
    """Central differences of the FSP solution on the fixed truncation ``states``: [T, K, P].

    Error: truncation (h^2/6) p''' ~ 1e-10 relative for h = 1e-5 theta; rounding ~ eps_expm / h
    ~ 1e-15 / (2e-5 theta) ~ 1e-10 / theta absolute. Both are far below the 1e-6 tolerance.
    """
    out = []
    for p in range(len(theta)):
        h = rel * theta[p]
        up, down = theta.copy(), theta.copy()
        up[p] += h
        down[p] -= h
        diff = (fsp(net, x0, t, up, states=states).p - fsp(net, x0, t, down, states=states).p)
        out.append(diff / (2 * h))
    return np.stack(out, axis=-1)


def test_dimerization_sensitivities_match_finite_differences(dimer):
    model, t, res = dimer
    theta = model.network.parameter_vector(model.params)
    fd = central_differences(model.network, model.x0, t, theta, res.states)
    # ~1e-6 relative to the largest sensitivity (expected ~1e-9, see central_differences)
    np.testing.assert_allclose(res.sensitivities, fd, rtol=0,
                               atol=1e-6 * np.abs(res.sensitivities).max())


def test_hill_mm_sensitivities_match_finite_differences():
    """Hill activation (with a non-integer Hill coefficient n) and Michaelis-Menten degradation,
    in a box P <= 50 that loses ~1e-3 of the mass: the sink's sensitivity is checked too."""
    net = ReactionNetwork.from_string(HILL_TEXT)
    t = np.array([1.0, 5.0, 10.0])
    res = fsp(net, {"P": 0}, t, HILL_PARAMS, bounds={"P": 50}, sensitivities=True)
    assert res.lost[-1] > 1e-6
    theta = net.parameter_vector(HILL_PARAMS)
    fd = central_differences(net, {"P": 0}, t, theta, res.states)
    for p in range(len(theta)):  # ~1e-6 relative to each parameter's largest sensitivity
        s = res.sensitivities[..., p]
        np.testing.assert_allclose(s, fd[..., p], rtol=0, atol=1e-6 * np.abs(s).max())
    # derivatives of expectations are sums of the sensitivities: d E[X^2] / dtheta
    d_second = res.d_expectation(lambda x: x[:, 0] ** 2)
    np.testing.assert_allclose(d_second, np.einsum("tkp,k->tp", fd, res.states[:, 0] ** 2.0),
                               rtol=1e-6, atol=1e-6 * np.abs(d_second).max())


def test_zero_rate_still_has_sensitivity():
    """With k = 0 only X = 0 carries probability, yet dE[X]/dk = (1 - e^{-gt})/g: the
    truncation follows reactions with non-zero parameter gradient when sensitivities are on."""
    model = models.immigration_death(k=0.0, g=G_IMM)
    assert len(enumerate_states(model, bounds={"X": 30})) == 1
    assert len(enumerate_states(model, bounds={"X": 30}, sensitivities=True)) == 31
    t = np.array([0.0, 2.0, 10.0])
    res = fsp(model, t_eval=t, bounds={"X": 30}, sensitivities=True)
    np.testing.assert_allclose(res.d_mean()[:, 0, 0], (1 - np.exp(-G_IMM * t)) / G_IMM,
                               rtol=1e-10, atol=1e-14)


# -- probability conservation and the truncation error -------------------------------------------
def test_closed_dimerization_conserves_probability(dimer):
    _, _, res = dimer
    # reachable set A + 2B = 20: 11 states, closed; lost is rounding only (~1e-15)
    assert len(res.states) == 11
    np.testing.assert_array_equal(res.states @ [1, 2], 20)
    assert np.all(np.abs(res.lost) < 1e-12)
    # total mass is 1 for every theta, so the sensitivities sum to zero
    assert np.abs(res.sensitivities.sum(axis=1)).max() < 1e-12 * np.abs(res.sensitivities).max()


def test_small_box_loses_mass_monotonically():
    """Immigration-death in X <= 80 (stationary mean 100): mass leaves through X = 80 -> 81.
    Munsky-Khammash: p_fsp <= p_true on the box, and the 1-norm gap is lost - P(X > 80) <= lost."""
    t = np.linspace(0.0, 30.0, 7)
    res = fsp(models.immigration_death(k=K_IMM, g=G_IMM), t_eval=t, bounds={"X": 80})
    assert res.lost[0] == 0.0
    assert np.all(np.diff(res.lost) > 0)
    assert res.lost[-1] > 1e-2
    lam = poisson_mean(t)
    exact = poisson.pmf(res.states[:, 0][None, :], lam[:, None])
    assert np.all(res.p <= exact + 1e-14)  # 1e-14: expm rounding
    gap = (exact - res.p).sum(axis=1)
    np.testing.assert_allclose(gap, res.lost - poisson.sf(80, lam), rtol=0, atol=1e-12)


# -- methods --------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["immigration_box", "dimerization"])
def test_expm_and_ode_agree(case):
    if case == "immigration_box":
        model, kw = models.immigration_death(k=K_IMM, g=G_IMM), {"bounds": {"X": 120}}
    else:
        model, kw = models.dimerization(k1=0.01, k2=0.1, A0=20), {}
    t = np.linspace(0.0, 40.0, 9)
    a = fsp(model, t_eval=t, sensitivities=True, **kw)
    b = fsp(model, t_eval=t, sensitivities=True, method="ode", **kw)
    # BDF with rtol=1e-10, atol=1e-12: the global error of this dissipative linear system stays
    # within ~100 local tolerances (measured ~5e-11 on p, ~2e-9 relative on s)
    np.testing.assert_allclose(b.p, a.p, rtol=0, atol=1e-8)
    np.testing.assert_allclose(b.sensitivities, a.sensitivities, rtol=0,
                               atol=1e-7 * np.abs(a.sensitivities).max())
    np.testing.assert_allclose(b.lost, a.lost, rtol=0, atol=1e-8)


# -- summaries ------------------------------------------------------------------------------------
def test_marginal_mean_variance_consistency(dimer):
    _, t, res = dimer
    mean, var = res.mean(), res.variance()
    for name, column in (("A", 0), ("B", 1)):
        table = res.marginal(name)
        assert table.shape == (len(t), res.states[:, column].max() + 1)
        counts = np.arange(table.shape[1])
        for i in range(len(t)):
            np.testing.assert_allclose(table[i], res.marginal(column, i), rtol=0, atol=0)
        # identities of sums (rounding only: 1e-12)
        np.testing.assert_allclose(table.sum(axis=1), 1 - res.lost, rtol=0, atol=1e-12)
        np.testing.assert_allclose(table @ counts, mean[:, column], rtol=1e-12)
        central = ((counts[None, :] - mean[:, [column]]) ** 2 * table).sum(axis=1)
        np.testing.assert_allclose(central, var[:, column], rtol=1e-10, atol=1e-12)
    # conservation A + 2B = 20: mean_A + 2 mean_B = 20 and var_A = 4 var_B
    np.testing.assert_allclose(mean @ [1, 2], 20, rtol=1e-12)
    np.testing.assert_allclose(var[:, 0], 4 * var[:, 1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.d_mean(), res.d_expectation(lambda x: x), rtol=0, atol=0)
    assert res.d_expectation(lambda x: x[:, 0]).shape == (len(t), 2)
    assert res.expectation(lambda x: np.ones((len(x), 3, 4))).shape == (len(t), 3, 4)


def test_inputs_and_shapes():
    model = models.dimerization(k1=0.01, k2=0.1, A0=20)
    net = model.network
    t = [0.0, 1.0, 1.0, 3.0]  # repeated times are allowed
    res = fsp(model, t_eval=t)
    same = fsp(net, np.array([20, 0]), np.array(t), np.array([0.01, 0.1]))
    np.testing.assert_array_equal(res.p, same.p)
    np.testing.assert_array_equal(res.p[1], res.p[2])
    assert res.sensitivities is None and res.generator.shape == (11, 11)
    assert res.species == ("A", "B") and res.parameters == ("k1", "k2")
    # dp/dt = Q p: columns of Q sum to zero in a closed system
    np.testing.assert_allclose(np.asarray(res.generator.sum(axis=0)).ravel(), 0, atol=1e-15)
    # a model's x0 / params are updated by mappings; t_eval may start after 0
    later = fsp(model, {"A": 10}, [2.0], {"k2": 0.5})
    assert later.states[:, 0].max() == 10 and later.theta.tolist() == [0.01, 0.5]
    # an explicit truncation keeps the given order
    order = res.states[::-1]
    flipped = fsp(model, t_eval=t, states=order)
    np.testing.assert_allclose(flipped.p, res.p[:, ::-1], rtol=0, atol=1e-15)


# -- errors ---------------------------------------------------------------------------------------
def test_max_states():
    # open system without bounds: the reachable set is infinite
    with pytest.raises(InitialStateError, match="bounds"):
        fsp(models.immigration_death(), t_eval=[1.0], max_states=5000)
    with pytest.raises(InitialStateError, match="max_states"):
        enumerate_states(models.immigration_death(), bounds={"X": 100}, max_states=50)


def test_bad_inputs():
    model = models.dimerization(k1=0.01, k2=0.1, A0=20)
    with pytest.raises(ParameterError, match="sorted"):
        fsp(model, t_eval=[0.0, 2.0, 1.0])
    with pytest.raises(ParameterError, match=">= 0"):
        fsp(model, t_eval=[-1.0, 2.0])
    with pytest.raises(ParameterError, match="NaN"):
        fsp(model, t_eval=[np.nan])
    with pytest.raises(ParameterError, match="required"):
        fsp(model)
    with pytest.raises(ParameterError, match="method"):
        fsp(model, t_eval=[1.0], method="rk4")
    with pytest.raises(ParameterError, match="per-trajectory"):
        fsp(model, t_eval=[1.0], params=np.ones((3, 2)))
    with pytest.raises(InitialStateError, match="not in the truncation"):
        fsp(model, t_eval=[1.0], states=[[18, 1], [16, 2]])
    with pytest.raises(InitialStateError, match="outside bounds"):
        fsp(model, t_eval=[1.0], bounds={"A": 10})
    with pytest.raises(InitialStateError, match="bounds must be"):
        fsp(model, t_eval=[1.0], bounds=[20])
    with pytest.raises(InitialStateError, match="shape"):
        fsp(model, t_eval=[1.0], states=[20, 0])
    with pytest.raises(InitialStateError, match="repeated"):
        fsp(model, t_eval=[1.0], states=[[20, 0], [20, 0]])
    with pytest.raises(InitialStateError, match="not both"):
        fsp(model, t_eval=[1.0], states=[[20, 0]], bounds=[20, 10])
    with pytest.raises(InitialStateError, match="probabilities of shape"):
        fsp(model, ([[20, 0], [18, 1]], [1.0]), [1.0])
    with pytest.raises(InitialStateError, match="sum to"):
        fsp(model, ([[20, 0], [18, 1]], [0.7, 0.7]), [1.0])
    with pytest.raises(InitialStateError, match="one state"):
        fsp(model, np.zeros((2, 2), dtype=int), [1.0])
    with pytest.raises(NetworkError):
        fsp(object(), {"A": 1}, [1.0])
    with pytest.raises(ValueError, match="sensitivities=True"):
        fsp(model, t_eval=[1.0]).d_mean()


def test_rate_law_that_would_make_a_count_negative():
    # X is removed at a rate that depends on Y only: positive at X = 0, so X would go negative
    net = ReactionNetwork.from_string("0 -> Y ; k\nX -> 0 ; mm(Y, v, Km)\nk = 1\nv = 1\nKm = 1")
    with pytest.raises(NetworkError, match="negative"):
        fsp(net, {"X": 1, "Y": 1}, [1.0], bounds={"Y": 5})
