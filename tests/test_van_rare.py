"""Rare events with the VAN solver: 1-site Schlögl, P(x <= 15) from x0 = 50 at early times."""

import numpy as np

import cupyssa.models as models
from cupyssa.cme import solve
from cupyssa.cme.box import box_cme


def test_schlogl_low_state_probability_1e_minus_6():
    # P(x <= 15 | x0 = 50) at t = 0.012 is 7.0e-7 (exact CME of the same box). The issue's
    # requirement is a relative error <= 10 % where plain sampling of the same budget sees
    # nothing. The second-order step target (order=2) removes the Euler error of the far tail
    # (order 1 is 9-13 % low at 1e-7..1e-6: a 35-step-deep tail accumulates the per-step O(h)
    # error); the uniform mixture (eps=0.5) puts samples on every tail state each step. The box
    # estimator is exact for one species, so the only errors are those of the evolution.
    m = models.schlogl_paper((1,))
    t = np.array([0.0, 0.012])
    exact = box_cme(m, t)
    p_exact = exact.p[1][exact.states[:, 0] <= 15].sum()
    assert 1e-7 < p_exact < 1e-5
    sol = solve(m, t_eval=t, method="tdvp", hidden=1, n_samples=600, eps=0.5, order=2, dt=1e-3,
                seed=0)
    est = sol.region_probability({"X0": (0, 15)}, 1, n_samples=10_000)
    assert abs(est.probability / p_exact - 1) <= 0.10
    plain = sol.region_probability({"X0": (0, 15)}, 1, n_samples=10_000, method="plain")
    assert plain.n_hits == 0  # expected hits 10^4 * 7e-7 = 0.007
