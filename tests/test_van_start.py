"""The short-time start of cupyssa.cme.solve (``init_time``): the exact law on the states a few
events away from x0, and the solve that continues from it."""

import numpy as np
import pytest
from scipy.stats import poisson

import cupyssa.models as models
from cupyssa import ReactionNetwork
from cupyssa.cme import box_cme, fsp, solve
from cupyssa.cme.fsp import _lookup
from cupyssa.cme.start import short_time_law
from cupyssa.cme.van import ReorderedNetwork, VANError

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


def _two_independent_species():
    # X and Y each immigration-death, no reaction couples them: the law is a product at all times
    net = ReactionNetwork.from_string("""
        0 -> X ; kx
        X -> 0 ; gx
        0 -> Y ; ky
        Y -> 0 ; gy
    """)
    return net, dict(kx=6.0, gx=1.0, ky=2.0, gy=0.5), np.array([3, 1]), np.array([30, 20])


@pytest.mark.parametrize("kind", ["nade", "made"])
def test_product_law_of_independent_species_is_the_law(kind):
    # With no coupling the per-species chains are the marginals of the exact law, which is
    # their product: against the exact short-time law on its set (lost mass 1e-12, so the sets'
    # probabilities agree to ~1e-12), and set_product_law makes the network exactly that product
    # (log-probabilities to rounding), which solve(init_law="product") starts from.
    from cupyssa.cme.start import product_short_time_law
    from cupyssa.cme.van import make_model

    net, params, x0, caps = _two_independent_species()
    theta = net.parameter_vector(params)
    laws = product_short_time_law(net, x0, theta, caps, 0.3)
    exact = short_time_law(net, x0, theta, caps, 0.3, tol=1e-12)
    np.testing.assert_allclose(laws[0][exact.states[:, 0]] * laws[1][exact.states[:, 1]],
                               exact.p, rtol=0, atol=1e-11)
    ar = make_model(kind, caps, np.random.default_rng(0), hidden=5, width=6, depth=2)
    ar.set_product_law([np.log(p) for p in laws])
    states = ar.enumerate_states()
    np.testing.assert_allclose(ar.log_prob(states),
                               np.log(laws[0][states[:, 0]]) + np.log(laws[1][states[:, 1]]),
                               rtol=0, atol=1e-12)
    sol = solve(net, x0=x0, t_eval=[0.0, 0.3], params=params, caps=caps, init_time=0.3,
                init_law="product", model=kind, hidden=5, width=6, n_samples=50)
    assert sol.stats["init_law"] == "product" and sol.stats["steps"] == 0
    np.testing.assert_allclose(sol.log_prob(states, 1), ar.log_prob(states), rtol=0, atol=1e-12)
    # the box rule holds for the whole product state: X -> Y with Y at its cap is switched off
    conversion = ReactionNetwork.from_string("X -> Y ; k")
    laws = product_short_time_law(conversion, np.array([5, 3]), np.array([1.0]),
                                  np.array([10, 4]), 1.0)
    np.testing.assert_array_equal(laws[0], np.eye(10)[5])
    np.testing.assert_array_equal(laws[1], np.eye(4)[3])
    with pytest.raises(VANError, match="init_law"):
        solve(net, x0=x0, t_eval=[0.0, 0.3], params=params, caps=caps, init_time=0.3,
              init_law="mean-field")


def test_product_law_follows_the_species_that_produce_it():
    # 0 -> A (k1), A -> B (k2) from the empty state: A and B are independent Poisson variables
    # at every time (Jahnke & Huisinga 2007), with means m_A = (k1/k2)(1 - e^{-k2 t}) and
    # m_B = k1 t - m_A, so the product closure is exact and only the time stepping errs. A's
    # chain reads no other species and is solved exactly. B is a pure birth process whose rate
    # k2 E[A](t) is held at its value at each step's midpoint (A's exact law there), so B's law
    # is exactly Poisson with the midpoint-rule sum in place of m_B, and that rule errs by at most
    # tau^3 max|d^2/dt^2 k2 m_A| / (24 n^2) = tau^3 k1 k2^2 / (24 n^2). A pmf moves by at most
    # |d m_B| (d/dm Poisson(j; m) = Poisson(j - 1; m) - Poisson(j; m)), which bounds the error of
    # B's law. Holding A at x0 instead (the earlier product law) left B a point mass at 0.
    from cupyssa.cme.start import product_short_time_law

    net = ReactionNetwork.from_string("""
        0 -> A ; k1
        A -> B ; k2
    """)
    k1, k2, tau, n = 5.0, 2.0, 1.0, 10
    theta = net.parameter_vector(dict(k1=k1, k2=k2))
    caps = np.array([40, 40])  # Poisson(<= 4) beyond 39: below 1e-20
    laws = product_short_time_law(net, np.array([0, 0]), theta, caps, tau, n_sub=n)
    m_a = k1 / k2 * (1.0 - np.exp(-k2 * tau))
    m_b = k1 * tau - m_a
    np.testing.assert_allclose(laws[0], poisson.pmf(np.arange(40), m_a), rtol=0, atol=1e-12)
    bound = tau ** 3 * k1 * k2 ** 2 / (24 * n ** 2)
    err = np.abs(laws[1] - poisson.pmf(np.arange(40), m_b)).max()
    assert 0 < err <= bound
    # second order: twice the steps, a quarter of the error (the bound's ratio, up to its
    # next-order term)
    err2 = np.abs(product_short_time_law(net, np.array([0, 0]), theta, caps, tau, n_sub=2 * n)[1]
                  - poisson.pmf(np.arange(40), m_b)).max()
    assert 0.2 < err2 / err < 0.3
    # the solver sees the species in its factorization order: the laws follow the columns
    swapped = product_short_time_law(ReorderedNetwork(net, [1, 0]), np.array([0, 0]), theta,
                                     caps, tau, n_sub=n)
    np.testing.assert_array_equal(swapped[0], laws[1])
    np.testing.assert_array_equal(swapped[1], laws[0])


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


def test_inputs_standardized_by_the_start_law():
    # inputs="start" feeds the network (n - mu) / max(sd, 1) with mu and sd the start law's:
    # the product law's marginals (computed here from product_short_time_law), the exact law's
    # weighted moments, or the point mass x0 (sd 0, so scale 1). The product start has zero
    # weights into the outputs, so the standardization leaves its law exactly as it is.
    from cupyssa.cme.start import product_short_time_law

    net, params, x0, caps = _two_independent_species()
    theta = net.parameter_vector(params)
    laws = product_short_time_law(net, x0, theta, caps, 0.3)
    mean = np.array([p @ np.arange(len(p)) for p in laws])
    sd = np.sqrt([p @ (np.arange(len(p)) - m) ** 2 for p, m in zip(laws, mean)])
    kw = dict(x0=x0, t_eval=[0.0, 0.3], params=params, caps=caps, init_time=0.3,
              hidden=5, n_samples=50)
    sol = solve(net, init_law="product", inputs="start", activation="tanh", **kw)
    ar = sol.distribution(1)
    assert ar.activation == "tanh"
    np.testing.assert_allclose(ar.input_center, mean, rtol=1e-12)
    np.testing.assert_allclose(ar.input_scale, np.maximum(sd, 1.0), rtol=1e-12)
    assert sd[0] > 1 > sd[1]  # one scale is the law's, the other the floor
    states = ar.enumerate_states()
    np.testing.assert_allclose(ar.log_prob(states),
                               np.log(laws[0][states[:, 0]]) + np.log(laws[1][states[:, 1]]),
                               rtol=0, atol=1e-12)

    exact = short_time_law(net, x0, theta, caps, 0.3)
    mu = exact.p @ exact.states / exact.p.sum()
    sol = solve(net, init_law="exact", inputs="start", **kw)
    np.testing.assert_allclose(sol.distribution(1).input_center, mu, rtol=1e-12)

    point = solve(net, x0=x0, t_eval=[0.0, 0.1], params=params, caps=caps, hidden=5,
                  n_samples=50, dt=0.05, inputs="start").distribution(0)
    np.testing.assert_array_equal(point.input_center, x0)
    np.testing.assert_array_equal(point.input_scale, [1.0, 1.0])

    with pytest.raises(VANError, match="inputs"):
        solve(net, inputs="counts", **kw)
    with pytest.raises(VANError, match="inputs='start'"):
        solve(net, x0=x0, t_eval=[0.0, 0.1], params=params, caps=caps, inputs="start",
              model=ar)
    with pytest.raises(VANError, match="inputs='start'"):
        solve(net, x0=x0, t_eval=[0.0, 0.1], params=params, caps=caps, inputs="start",
              initial=lambda n: np.zeros(len(n)))


@pytest.mark.parametrize("changed", [dict(inputs="start"), dict(activation="tanh")])
def test_checkpoint_of_other_inputs_is_refused(tmp_path, changed):
    # the network's inputs and activation define its law as much as theta does: a checkpoint
    # written with other ones must not be resumed (same parameter count, another law)
    net, params, x0, caps = _two_independent_species()
    path = str(tmp_path / "ck.npz")
    kw = dict(x0=x0, t_eval=[0.0, 0.2], params=params, caps=caps, init_time=0.1,
              init_law="product", hidden=4, n_samples=50, dt=0.05, checkpoint=path,
              checkpoint_every=1)
    first = solve(net, **kw)
    with pytest.raises(VANError, match="other inputs, another activation"):
        solve(net, **kw, **changed)
    assert solve(net, **kw).stats["resumed_from_step"] == first.stats["steps"]
    # a checkpoint written before the definition was recorded holds a network as built: it
    # resumes with the defaults and is refused with anything else
    with np.load(path) as z:
        older = {k: z[k] for k in z.files
                 if k not in ("input_center", "input_scale", "activation", "hidden",
                              "output_degree")}
    np.savez(path, **older)
    assert solve(net, **kw).stats["resumed_from_step"] == first.stats["steps"]
    np.savez(path, **older)
    with pytest.raises(VANError, match="other inputs, another activation"):
        solve(net, **kw, **changed)
