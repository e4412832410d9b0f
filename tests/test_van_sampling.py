"""Importance sampling: PSIS, ESS, and the region-probability estimators."""

import warnings

import numpy as np
import pytest

from cupyssa.cme import NADE, psis
from cupyssa.cme.sampling import _gpd_fit, effective_sample_size, region_probability


def _model():
    rng = np.random.default_rng(5)
    m = NADE([6, 5, 7], hidden=6, rng=rng, init_scale=1.0)
    m.theta = m.theta + rng.normal(0, 0.8, m.n_params)
    return m


def test_ess_bounds():
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.r_[1.0, np.zeros(9)]) == pytest.approx(1)


def test_psis_normalizes_and_keeps_order():
    rng = np.random.default_rng(0)
    lw_raw = rng.standard_normal(2000) * 2.0
    lw, khat = psis(lw_raw)
    assert np.exp(lw).sum() == pytest.approx(1.0, abs=1e-12)
    # smoothing replaces the tail by increasing quantiles and truncates at the raw maximum
    order = np.argsort(lw_raw)
    assert np.all(np.diff(lw[order]) >= -1e-12)


def test_psis_khat_recovers_pareto_shape():
    # Weights w = U^(-k) are Pareto with tail shape k; PSIS fits a GPD to the M = 3 sqrt(N)
    # largest. With N = 40000, M = 600: the shape estimate has sd ~ (1 + k)/sqrt(M) = 0.06 for
    # k = 0.5 (asymptotic MLE variance (1+k)^2/M); allow 5 sd = 0.3.
    rng = np.random.default_rng(1)
    for k in (0.3, 0.7):
        lw = -k * np.log(rng.random(40_000))
        _, khat = psis(lw)
        assert abs(khat - k) < 0.3


def test_psis_long_heavy_tail_without_overflow():
    # N = 10^5 Pareto weights of shape 0.9: the tail has M = 3 sqrt(N) = 949 exceedances, whose
    # profile log-likelihoods over the fit's grid differ by more than 709 (the earlier ratio form
    # overflowed here). The shape estimate has sd ~ (1 + k)/sqrt(M) = 0.062; allow ~5 sd = 0.3.
    rng = np.random.default_rng(1)
    lw = -0.9 * np.log(rng.random(100_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, khat = psis(lw)
    assert abs(khat - 0.9) < 0.3
    assert np.exp(out).sum() == pytest.approx(1.0, abs=1e-12)


def test_psis_tied_tail_is_left_as_is_without_warnings():
    # Right after a point-mass start one state is drawn many times, so the largest weights tie
    # (this gave NaN and RuntimeWarnings). N = 1600: the tail holds M = 3 sqrt(N) = 120 weights;
    # 118 tied above the cutoff (the measured case), then more ties than the tail holds. A tied
    # tail is bounded: it is left as it is and reported with khat = -inf.
    for n_top in (118, 400):
        lw_raw = np.r_[np.zeros(n_top), np.full(1600 - n_top, -3.0)]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lw, khat = psis(lw_raw)
        assert khat == -np.inf
        # nothing smoothed: the normalized raw weights
        expected = lw_raw - np.log(np.exp(lw_raw).sum())
        np.testing.assert_allclose(lw, expected, rtol=0, atol=1e-12)


def test_gpd_fit_ignores_grid_points_without_a_profile_likelihood():
    # The tied exceedances of the measured case: 118 equal values, grid m = 40. At j = 3,
    # sqrt(m / (j - 1/2)) = 4 and the grid point is b_j x = (1 - 4)/3 + 1 = 0: for this x it
    # rounds to exactly 0, so k_j = 0 and L_j = n (log(-b_j / k_j) - ...) is 0/0 (it was NaN,
    # with warnings).
    x = np.full(118, 0.43655313640335613)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k, sigma = _gpd_fit(x)
    assert np.isfinite(k) and np.isfinite(sigma)


def test_box_region_single_species_is_exact():
    m = NADE([40], hidden=3, rng=np.random.default_rng(0), init_scale=1.0)
    m.theta[-40:] = -0.5 * (np.arange(40) - 25.0) ** 2 / 9.0  # mass far from [0, 5]
    X = m.enumerate_states()
    p = np.exp(m.log_prob(X))
    exact = p[:6].sum()
    assert exact < 1e-5
    est = region_probability(m, {"X": (0, 5)}, 100, np.random.default_rng(0), species=("X",))
    assert est.probability == pytest.approx(exact, rel=1e-10)
    plain = region_probability(m, {"X": (0, 5)}, 100, np.random.default_rng(0), method="plain",
                               species=("X",))
    assert plain.n_hits == 0


@pytest.mark.parametrize("method", ["box", "tempered", "plain"])
def test_region_estimators_unbiased(method):
    m = _model()
    X = m.enumerate_states()
    p = np.exp(m.log_prob(X))
    lo, hi = np.array([0, 1, 2]), np.array([2, 3, 4])
    exact = p[np.all((X >= lo) & (X <= hi), axis=1)].sum()
    region = {"A": (0, 2), "B": (1, 3), "C": (2, 4)}
    if method == "tempered":
        def region(n):  # the same box, as a predicate
            return np.all((n >= lo) & (n <= hi), axis=1)
    est = region_probability(m, region, 20_000, np.random.default_rng(7), method=method,
                             species=("A", "B", "C"))
    # each estimator is (asymptotically) normal around the exact value with its reported
    # standard error: |z| < 5 has false-alarm probability < 1e-6
    assert est.stderr > 0
    assert abs(est.probability - exact) < 5 * est.stderr
