"""The short-time start of cupyssa.cme.solve (``init_time``): the exact law on the states a few
events away from x0, and the solve that continues from it."""

import numpy as np
import pytest
from scipy.stats import poisson

import cupyssa.models as models
from cupyssa.cme import box_cme, fsp, solve
from cupyssa.cme.fsp import _lookup
from cupyssa.cme.start import short_time_law
from cupyssa.cme.van import VANError

from test_van_solve import hellinger, small_toggle


def _law(model, tau, caps, tol=1e-10, **kw):
    net = model.network
    return short_time_law(net, net.initial_vector(model.x0), net.parameter_vector(model.params),
                          np.asarray(caps), tau, tol, **kw)


@pytest.mark.parametrize("tau", [0.05, 0.5, 2.0])
def test_immigration_death_law_is_poisson_within_the_lost_mass(tau):
    # 0 -> X (k = 10), X -> 0 (g = 0.1), X(0) = 0: X_tau ~ Poisson(100 (1 - e^{-0.1 tau})). The
    # FSP solution is below the true law on its set and loses exactly the mass that took more
    # events than the set covers, so sum |p - exact| over the set <= lost (Munsky & Khammash);
    # 1e-12 is the rounding of expm_multiply on a few dozen states. The cap 200 is never reached.
    law = _law(models.immigration_death(k=10.0, g=0.1), tau, [200])
    exact = poisson.pmf(law.states[:, 0], 100 * (1 - np.exp(-0.1 * tau)))
    assert law.lost <= 1e-10
    assert np.abs(law.p - exact).sum() <= law.lost + 1e-12
    assert law.depth == law.states[:, 0].max()  # one birth per level


@pytest.mark.parametrize("caps", [[11, 6], [11, 3]])
def test_closed_set_loses_nothing_and_reflects_at_the_caps(caps):
    # Dimerization with A + 2B = 10 conserved: six states, all reachable within five events, so
    # the set closes and nothing is lost. With caps [11, 3] the dimerization that would make
    # B = 3 is switched off (the VAN's reflecting box), which box_cme solves on the whole box.
    model = models.dimerization(k1=0.3, k2=0.5, A0=10, B0=0)
    law = _law(model, 0.7, caps, tol=1e-300)
    assert law.lost < 1e-14
    ref = box_cme(model, [0.0, 0.7], caps=caps)
    where = _lookup(ref.states, law.states)
    np.testing.assert_allclose(law.p, ref.p[1][where], rtol=0, atol=1e-13)
    assert ref.p[1][np.setdiff1d(np.arange(len(ref.states)), where)].sum() < 1e-14


def test_solve_from_the_short_time_law():
    # Small toggle switch: with init_time the solution at t_eval[1] = init_time is the fit to
    # the exact law (KL < 2e-4 nats, measured 2e-5, so every marginal is within Hellinger
    # sqrt(KL / 2) <= 0.01: -2 log BC <= KL by Jensen, H^2 = 1 - BC), the solution at
    # t_eval[0] stays the point mass, the later output meets the accuracy of the point-mass
    # start (0.02, the threshold, as in test_toggle_switch_tdvp_matches_fsp), and the
    # stiff steps after the point mass are skipped (measured: 57 steps instead of 236).
    model, caps = small_toggle()
    t = np.array([0.0, 0.2, 1.0])
    ref = fsp(model, t_eval=t, bounds={s: c - 1 for s, c in caps.items()})
    assert ref.lost[-1] < 1e-4
    kw = dict(method="tdvp", caps=caps, n_samples=400, hidden=16, dt=0.02, seed=1)
    sol = solve(model, t_eval=t, init_time=0.2, **kw)
    assert sol.stats["init_lost"] <= 1e-8 and sol.stats["init_kl"] < 2e-4
    assert sol.stats["init_states"] > 1 and sol.stats["init_depth"] >= 1
    assert sol.marginal("Px", 0)[0] > 0.9  # x0 has Px = 0
    assert sol.stats["steps"] < 0.5 * solve(model, t_eval=t, **kw).stats["steps"]
    for s in ("Px", "Py", "Gx", "Gy"):
        assert hellinger(sol.marginal(s, 1), ref.marginal(s, 1)) <= 0.01, s
        assert hellinger(sol.marginal(s, 2), ref.marginal(s, 2)) <= 0.02, s


def test_bad_init_time():
    model, caps = small_toggle()
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(VANError, match="init_time must be a positive"):
            solve(model, t_eval=[0, 1], caps=caps, init_time=bad)
    with pytest.raises(VANError, match="first output time"):
        solve(model, t_eval=[0, 0.1, 1], caps=caps, init_time=0.2)
    with pytest.raises(VANError, match="first output time"):
        solve(model, t_eval=[0], caps=caps, init_time=0.2)
    with pytest.raises(VANError, match="either initial"):
        solve(model, t_eval=[0, 1], caps=caps, init_time=0.2,
              initial=lambda n: np.zeros(len(n)))
    with pytest.raises(VANError, match="init_tol"):
        solve(model, t_eval=[0, 1], caps=caps, init_time=0.2, init_tol=0.0)
    with pytest.raises(VANError, match="shorter init_time"):
        _law(model, 5.0, [caps[s] for s in model.network.species], max_states=50)
