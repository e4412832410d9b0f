"""cupyssa.cme.solve against exact references (FSP, analytic), checkpoint/resume, models."""

import numpy as np
import pytest

import cupyssa.models as models
from cupyssa.cme import fsp, solve
from cupyssa.cme.van import VANError

# Accuracy thresholds are the requirement (Hellinger <= 0.02 against FSP for the toggle
# switch), not tuned; the FSP truncation error (reported `lost`) is checked to be far below it.


def hellinger(p, q):
    n = max(len(p), len(q))
    p, q = np.pad(p, (0, n - len(p))), np.pad(q, (0, n - len(q)))
    return float(np.sqrt(0.5 * np.sum((np.sqrt(np.maximum(p, 0)) - np.sqrt(np.maximum(q, 0))) ** 2)))


def small_toggle():
    return models.toggle_switch(rho=3.0, sb=0.1, su=0.2), {"Gx": 2, "Gy": 2, "Px": 12, "Py": 12}


@pytest.mark.parametrize("sampling, species_order, network", [
    ("enumerate", None, {}), ("tempered", None, {}),
    # the interleaved factorization order: the solution's columns follow it
    ("tempered", ("Gx", "Px", "Gy", "Py"), {}),
    # the Fisher solves in centred output coordinates (measured: 0.0016-0.0171 on seeds 1, 2;
    # the defaults 0.0019-0.0171)
    ("tempered", None, dict(center_outputs=True))])
def test_toggle_switch_tdvp_matches_fsp(sampling, species_order, network):
    model, caps = small_toggle()
    t = np.array([0.0, 0.5, 1.0])
    ref = fsp(model, t_eval=t, bounds={s: c - 1 for s, c in caps.items()})
    assert ref.lost[-1] < 1e-4
    sol = solve(model, t_eval=t, method="tdvp", caps=caps, sampling=sampling, n_samples=400,
                hidden=16, dt=0.02, seed=1, species_order=species_order, **network)
    assert sol.species == (species_order or model.network.species)
    if sampling == "tempered":  # the proposal's effective sample size is reported
        assert 0 < sol.stats["min_ess"] <= 400
    assert sol.caps.tolist() == [caps[s] for s in sol.species]
    for k in (1, 2):
        for s in ("Px", "Py", "Gx", "Gy"):
            assert hellinger(sol.marginal(s, k), ref.marginal(s, k)) <= 0.02, (s, k)


def _immigration_death():
    # 0 -> X (k = 5), X -> 0 (g = 1), X(0) = 0: X_t ~ Poisson(5 (1 - e^{-t})) exactly
    return models.immigration_death(k=5.0, g=1.0, x0=0), {"X": 25}


@pytest.mark.parametrize("method", ["tdvp", "natgrad"])
def test_immigration_death_poisson(method):
    from scipy.stats import poisson

    model, caps = _immigration_death()
    t = np.array([0.0, 1.0])
    sol = solve(model, t_eval=t, method=method, caps=caps, n_samples=300, hidden=4, dt=0.02,
                seed=0, n_iter=2 if method == "natgrad" else None)
    lam = 5.0 * (1 - np.exp(-1.0))
    exact = poisson.pmf(np.arange(25), lam)
    assert hellinger(sol.marginal("X", 1), exact) <= 0.02
    assert sol.mean(1)[0] == pytest.approx(exact @ np.arange(25), abs=0.1)


def test_adam_reduces_the_error_of_a_step():
    # Adam (REINFORCE KL gradient with a baseline) on the same problem: after the evolution its
    # marginal must be closer to the truth than the initial point mass is (it learns something).
    from scipy.stats import poisson

    model, caps = _immigration_death()
    t = np.array([0.0, 0.3])
    sol = solve(model, t_eval=t, method="adam", caps=caps, n_samples=200, hidden=4, dt=0.05,
                n_iter=10, lr=0.05, seed=0)
    exact = poisson.pmf(np.arange(25), 5.0 * (1 - np.exp(-0.3)))
    assert hellinger(sol.marginal("X", 1), exact) < 0.5 * hellinger(sol.marginal("X", 0), exact)


@pytest.mark.parametrize("projection", [{}, dict(project_moments=2, projection_draws=500)])
def test_checkpoint_resume_is_bitwise(tmp_path, projection):
    model, caps = _immigration_death()
    t = np.array([0.0, 0.2, 0.4])
    kw = dict(method="tdvp", caps=caps, n_samples=100, hidden=4, dt=0.02, seed=3, **projection)
    full = solve(model, t_eval=t, **kw)
    path = str(tmp_path / "ck.npz")

    class Stop(Exception):
        pass

    def interrupt(step, t_now, m):
        if step == 13:
            raise Stop

    with pytest.raises(Stop):
        solve(model, t_eval=t, checkpoint=path, checkpoint_every=5, callback=interrupt, **kw)
    # the callback that stopped the run did so after step 13, a step checkpoint_every=5 would
    # not save: the file holds it all the same. Resumed with another interval, the run saves
    # at step 14 and, finishing, at step 20
    resumed = solve(model, t_eval=t, checkpoint=path, checkpoint_every=7, **kw)
    assert resumed.stats["resumed_from_step"] == 13
    np.testing.assert_array_equal(resumed.thetas, full.thetas)
    # the finished run left its last step in the file: a rerun takes no step and returns the
    # same parameters
    again = solve(model, t_eval=t, checkpoint=path, checkpoint_every=7, **kw)
    assert again.stats["resumed_from_step"] == again.stats["steps"] == full.stats["steps"]
    np.testing.assert_array_equal(again.thetas, full.thetas)
    with pytest.raises(VANError):
        solve(model, t_eval=np.array([0.0, 0.5]), checkpoint=path, **kw)


def test_checkpoint_of_another_network_with_as_many_parameters_is_refused(tmp_path):
    # caps 2, 2, 12, 12: 3 hidden units with output_degree=2 have 3 x (4 + 1 + 6) + 28 = 61
    # parameters, 1 unit of free V 1 x (4 + 1 + 28) + 28 = 61; the checkpoint records the width
    # and the degree, so the parameter count is not what tells the networks apart
    model, caps = small_toggle()
    t = np.array([0.0, 0.04])
    path = str(tmp_path / "ck.npz")
    kw = dict(method="tdvp", caps=caps, n_samples=50, dt=0.02, seed=0, checkpoint=path)
    solve(model, t_eval=t, hidden=3, output_degree=2, **kw)
    with np.load(path) as z:
        assert int(z["hidden"]) == 3 and int(z["output_degree"]) == 2
        assert z["theta"].size == 61
    with pytest.raises(VANError, match="another output degree"):
        solve(model, t_eval=t, hidden=1, **kw)


def test_time_dependent_rates_are_used():
    # SIR with beta(t): with amplitude 0 it equals the constant-rate run; with a large amplitude
    # over the first half period (beta above beta0) the mean of I must differ by far more than
    # the Monte-Carlo noise of the enumerated (noise-free) solver, which is zero.
    t = np.array([0.0, 1.0])
    kw = dict(method="tdvp", sampling="enumerate", hidden=4, dt=0.05, seed=0)
    m0 = models.sir_periodic(S0=5, I0=2, amplitude=0.0, period=4.0, beta0=0.3)
    m1 = models.sir_periodic(S0=5, I0=2, amplitude=0.9, period=4.0, beta0=0.3)
    const = solve(m0.network, m0.x0, t, m0.params, caps=m0.metadata["caps"], **kw)
    same = solve(m0, t_eval=t, **kw)
    forced = solve(m1, t_eval=t, **kw)
    np.testing.assert_allclose(same.thetas, const.thetas, rtol=0, atol=1e-12)
    X = same.distribution(1).enumerate_states()
    mean_I = [np.exp(s.log_prob(X, 1)) @ X[:, 1] for s in (same, forced)]
    assert mean_I[1] > mean_I[0] + 0.1


def test_bad_input():
    model, caps = _immigration_death()
    with pytest.raises(VANError, match="method"):
        solve(model, t_eval=[0, 1], method="sgd", caps=caps)
    with pytest.raises(VANError, match="caps"):
        solve(model.network, model.x0, [0, 1], model.params)
    with pytest.raises(VANError, match="outside"):
        solve(model, x0={"X": 30}, t_eval=[0, 1], caps=caps)
    with pytest.raises(VANError, match="increasing"):
        solve(model, t_eval=[0, 1, 1], caps=caps)
    with pytest.raises(VANError, match="sampling"):
        solve(model, t_eval=[0, 1], caps=caps, sampling="mcmc")
    # centred output coordinates are NADE's, and a Fisher solve's
    with pytest.raises(VANError, match="center_outputs=True needs a NADE"):
        solve(model, t_eval=[0, 1], caps=caps, model="made", center_outputs=True)
    with pytest.raises(VANError, match="adam"):
        solve(model, t_eval=[0, 1], caps=caps, method="adam", center_outputs=True)
    # NADE's options are not silently dropped for a MADE
    for nade_only in (dict(output_degree=2), dict(activation="tanh")):
        with pytest.raises(VANError, match="NADE option"):
            solve(model, t_eval=[0, 1], caps=caps, model="made", **nade_only)


def test_models():
    expect = {"toggle_switch": (4, 8), "autoregulatory_loop": (3, 5), "sir_periodic": (3, 2),
              "linear_cascade": (15, 30), "mapk_cascade": (16, 35)}
    for name, (S, M) in expect.items():
        m = getattr(models, name)()
        assert (m.network.n_species, m.network.n_reactions) == (S, M), name
        assert set(m.metadata["caps"]) == set(m.network.species)
    tog = models.toggle_switch()
    assert [tog.metadata["caps"][s] for s in ("Gx", "Gy", "Px", "Py")] == [2, 2, 80, 80]
    # Schlögl in the paper's convention: a1 = c1 x (x-1), a2 = c2 x (x-1)(x-2) with the
    # literature constants, via combinatorial constants 2! c1 and 3! c2
    s = models.schlogl_paper((1,))
    net = s.network
    a = net.propensities(np.array([[50]]), net.parameter_vector(s.params))[0]
    assert sorted(a.tolist()) == pytest.approx(sorted([2.676 * 50 * 49, 0.040 * 50 * 49 * 48,
                                                       108.102, 37.881 * 50]))
    assert net.species == ("X0",)


def test_local_energy_orders_match_the_generator():
    # E = (W P) / P and E2 = (W^2 P) / P on every state of a small box, W the reflecting-box
    # generator built here directly from the propensities and stoichiometry
    from cupyssa.cme import NADE
    from cupyssa.cme.van import local_energy

    m = models.schlogl_paper((2,), cap=7)
    net, theta = m.network, m.network.parameter_vector(m.params)
    ar = NADE([7, 7], hidden=5, rng=np.random.default_rng(2), init_scale=1.0)
    X = ar.enumerate_states()
    p = np.exp(ar.log_prob(X))
    index = {tuple(x): j for j, x in enumerate(X)}
    W = np.zeros((len(X), len(X)))
    a = net.propensities(X, theta)
    for j, x in enumerate(X):
        for k, s in enumerate(net.stoichiometry):
            y = tuple(x + s)
            if y in index:
                W[index[y], j] += a[j, k]
                W[j, j] -= a[j, k]
    E, E2 = local_energy(ar, net, theta, X, order=2)
    np.testing.assert_allclose(E, W @ p / p, rtol=1e-9, atol=1e-9 * np.abs(E).max())
    np.testing.assert_allclose(E2, W @ (W @ p) / p, rtol=1e-9, atol=1e-9 * np.abs(E2).max())
    np.testing.assert_allclose(local_energy(ar, net, theta, X), E, rtol=0, atol=0)


def test_local_energy_in_another_species_order():
    # E(n) of a distribution is a property of the chain, not of how its states are written:
    # with the columns permuted (a 3-cycle of the 4 toggle species, whose reactions are not
    # symmetric under it) E must be the same numbers state by state.
    from cupyssa.cme import NADE
    from cupyssa.cme.autoregressive import AutoregressiveModel
    from cupyssa.cme.van import ReorderedNetwork, local_energy

    m = models.toggle_switch(rho=3.0, sb=0.1, su=0.2)
    net, theta = m.network, m.network.parameter_vector(m.params)
    caps = np.array([2, 2, 5, 5])
    ar = NADE(caps, hidden=4, rng=np.random.default_rng(3), init_scale=1.0)
    columns = np.array([2, 0, 3, 1])

    class Permuted(AutoregressiveModel):
        """``ar`` with its columns written in the order ``columns``."""

        def log_prob(self, n):
            return ar.log_prob(np.asarray(n)[:, np.argsort(columns)])

    X = ar.enumerate_states()
    E = local_energy(ar, net, theta, X)
    E_perm = local_energy(Permuted(caps[columns]), ReorderedNetwork(net, columns), theta,
                          X[:, columns])
    np.testing.assert_allclose(E_perm, E, rtol=1e-12, atol=1e-12 * np.abs(E).max())


def test_species_order_errors():
    model, caps = small_toggle()
    kw = dict(t_eval=[0.0, 0.1], caps=caps, n_samples=50, hidden=2, dt=0.05)
    with pytest.raises(VANError, match="unknown species"):
        solve(model, species_order=("Gx", "Gy", "Px", "Q"), **kw)
    with pytest.raises(VANError, match="exactly once"):
        solve(model, species_order=("Gx", "Gy", "Px"), **kw)


def test_step_check_measures_the_step_out_of_sample():
    # Enumerated states and one species: the fit sees every state, so the step is right out of
    # sample up to the curvature of log-softmax in theta: eta = O(h) << 1, nothing rejected.
    # A step that does not move scores exactly 1 (d = 0 leaves r = -tau); the good step taken
    # backwards scores 2 up to O(h) (d = -tau + O(h^2) leaves r = -2 tau).
    from cupyssa.cme.van import CMEProblem, ReorderedNetwork, VANOptions, _batch, _fit, step_error

    model, caps = _immigration_death()
    t = [0.0, 0.2]
    sol = solve(model, t_eval=t, caps=caps, sampling="enumerate", hidden=4, dt=0.02, seed=0,
                step_check=0.5)
    assert sol.stats["n_rejected"] == 0 and sol.stats["n_unresolved"] == 0
    assert len(sol.stats["step_errors"]) == sol.stats["steps"]
    assert sol.stats["step_error_max"] < 0.05
    ar = sol.distribution(1)
    opts = VANOptions(sampling="tempered", n_samples=200)
    net = model.network
    prob = CMEProblem(ReorderedNetwork(net, [0]), np.array([0]),
                      net.parameter_vector(model.params), ar.caps)
    rng = np.random.default_rng(0)
    batch = _batch(ar, ar, prob, opts, prob.theta, rng, None)
    assert step_error(ar, ar, batch, 0.01, opts) == 1.0
    moved = ar.copy()
    _fit(moved, ar, batch, 1e-3, opts, rng, prob, prob.theta, None, None, {"n_clamped": 0})
    fresh = _batch(ar, ar, prob, opts, prob.theta, rng, None)
    assert step_error(moved, ar, fresh, 1e-3, opts) < 0.05
    backwards = ar.copy()
    backwards.theta = 2 * ar.theta - moved.theta
    assert step_error(backwards, ar, fresh, 1e-3, opts) == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("hidden, h0, h_kept, n_rejected, n_futile", [
    (4, 1.0, 1.0 / 64, 6, 0),  # every halving lowers eta: the maximum number, 6, is made
    (2, 1.0 / 16, 1.0 / 128, 4, 1),  # the halving to 1/256 does not: the step of 1/128 is kept
])
def test_step_check_halves_while_halving_helps(hidden, h0, h_kept, n_rejected, n_futile):
    # A tolerance no step can meet, on every state of one species (no sampling noise, so each
    # attempt's error is a deterministic function of h). The errors of single steps of
    # h0, h0/2, ..., h0/64, taken apart below, decide which attempt _step must keep: the last
    # of the run over which they fall (at most six halvings). The parameters pick laws where
    # that is the cap (NADE 4: the errors fall all the way) and where a halving raises the
    # error (NADE 2, at 1/256). Each step is accepted and counted as unresolved; the discarded
    # attempts are counted as rejected.
    from cupyssa.cme.van import (CMEProblem, ReorderedNetwork, VANOptions, _batch, _fit, _step,
                                 step_error)

    model, caps = _immigration_death()
    sol = solve(model, t_eval=[0.0, 0.3], caps=caps, sampling="enumerate", hidden=hidden,
                dt=0.02, seed=0)
    ar = sol.distribution(1)
    net = model.network
    prob = CMEProblem(ReorderedNetwork(net, [0]), np.array([0]),
                      net.parameter_vector(model.params), ar.caps)
    opts = VANOptions(sampling="enumerate", integrator="implicit", step_check=1e-9)
    stats = {"n_clamped": 0, "n_rejected": 0, "n_unresolved": 0, "n_futile_halvings": 0,
             "step_errors": []}
    states = ar.enumerate_states()
    batch = _batch(ar, ar, prob, opts, prob.theta, None, states)
    errors = []
    for k in range(7):
        attempt = ar.copy()
        _fit(attempt, ar, batch, h0 / 2 ** k, opts, None, prob, prob.theta, states, None, {})
        errors.append(step_error(attempt, ar, batch, h0 / 2 ** k, opts))
    falls = next((k for k in range(1, 7) if errors[k] >= errors[k - 1]), 7)
    assert h0 / 2 ** (falls - 1) == h_kept  # the case the parameters name
    before = ar.theta.copy()
    h = _step(ar, prob, opts, 0.0, h0, np.random.default_rng(0), states, None, stats)
    assert h == h_kept
    assert stats["n_rejected"] == n_rejected and stats["n_unresolved"] == 1
    assert stats["n_futile_halvings"] == n_futile
    assert stats["step_errors"] == [errors[falls - 1]]
    # the model holds the kept step: redoing that step alone gives the same parameters
    redo = ar.copy()
    redo.theta = before.copy()
    _step(redo, prob, VANOptions(sampling="enumerate", integrator="implicit"), 0.0, h_kept,
          np.random.default_rng(0), states, None, dict(stats))
    np.testing.assert_array_equal(redo.theta, ar.theta)
    with pytest.raises(VANError, match="step_check"):
        solve(model, t_eval=[0.0, 0.05], caps=caps, step_check=0.0)


def _small_toggle_at(t):
    """The small toggle switch evolved to ``t`` (NADE 8, every state enumerated): its network,
    the CME problem in the network's order, and the box states."""
    from cupyssa.cme.van import CMEProblem, ReorderedNetwork

    model, caps = small_toggle()
    ar = solve(model, t_eval=[0.0, t], caps=caps, sampling="enumerate", hidden=8, dt=0.02,
               seed=0).distribution(1)
    net = model.network
    prob = CMEProblem(ReorderedNetwork(net, np.arange(4)), net.initial_vector(model.x0),
                      net.parameter_vector(model.params), ar.caps)
    return ar, prob, ar.enumerate_states()


def test_tdvp_iterations_are_gauss_newton_on_one_fit():
    # tdvp with n_iter > 1 refits the same target log TP on the same samples at the new
    # parameters. The first solve is the fit linearized at theta_t; each further solve removes
    # the residual left by the curvature of log P in theta, down to what the network can
    # represent. Small toggle switch, every box state enumerated (576 states > 292 parameters: a
    # least-squares fit with a floor, no sampling noise), one step of h = 0.1: the centred
    # in-sample residual falls with each iteration (measured 0.131, 0.034, 0.0074; asserted:
    # at least halved by the second solve, and smaller again after the third).
    from cupyssa.cme.van import VANOptions, _batch, _fit, _log_target_change

    start, prob, enumerated = _small_toggle_at(0.3)

    def residual_after(n_iter, h=0.1):
        opts = VANOptions(sampling="enumerate", n_iter=n_iter, damping=1e-4)
        ar, rng = start.copy(), np.random.default_rng(0)
        batch = _batch(ar, start, prob, opts, prob.theta, rng, enumerated)
        _fit(ar, start, batch, h, opts, rng, prob, prob.theta, enumerated, None, {"n_clamped": 0})
        n, w, _, lp_start, EE = batch
        r = ar.log_prob(n) - (lp_start + _log_target_change(EE, h, opts))
        r -= w @ r
        return float(np.sqrt(w @ (r * r)))

    r1, r2, r3 = residual_after(1), residual_after(2), residual_after(3)
    assert r2 < 0.5 * r1 and r3 < r2
    # the iterations do not draw: the random stream is untouched after a sampled tdvp fit
    opts = VANOptions(sampling="tempered", n_samples=100, n_iter=3)
    rng = np.random.default_rng(1)
    batch = _batch(start, start, prob, opts, prob.theta, rng, None)
    before = rng.bit_generator.state
    _fit(start.copy(), start, batch, 0.05, opts, rng, prob, prob.theta, None, None,
         {"n_clamped": 0})
    assert rng.bit_generator.state == before


def test_heun_step_averages_the_steps_from_both_ends():
    # integrator="heun": theta_1 is the Euler (one-fit) step from theta_t; theta_2 is the same fit
    # made from theta_1, with log P and E of P_theta_1 on the first stage's samples and weights;
    # the step is the mean of the two stages' steps, theta_t + ((theta_1 - theta_t) + (theta_2 -
    # theta_1)) / 2 = (theta_t + theta_2) / 2 (explicit trapezoid). Rebuilt from two Euler steps.
    from cupyssa.cme.van import VANOptions, _batch, _fit, local_energy

    start, prob, enumerated = _small_toggle_at(0.3)
    h = 0.05
    euler = VANOptions(sampling="enumerate")
    heun = VANOptions(sampling="enumerate", integrator="heun")
    batch = _batch(start, start, prob, euler, prob.theta, None, enumerated)

    def fit(ar, frozen, batch, opts):
        _fit(ar, frozen, batch, h, opts, None, prob, prob.theta, enumerated, None,
             {"n_clamped": 0})
        return ar

    one = fit(start.copy(), start, batch, euler)
    n, w, info = batch[:3]
    lp_one = one.log_prob(n)
    E_one = local_energy(one, prob.network, prob.theta, n, lp_one)
    two = fit(one.copy(), one, (n, w, info, lp_one, E_one), euler)
    both = fit(start.copy(), start, batch, heun)
    np.testing.assert_allclose(both.theta, 0.5 * (start.theta + two.theta), rtol=0, atol=1e-12)
    assert np.abs(both.theta - one.theta).max() > 1e-6  # the second stage moved it
    model, caps = small_toggle()
    with pytest.raises(VANError, match="integrator"):
        solve(model, t_eval=[0.0, 0.1], caps=caps, integrator="rk4")
    with pytest.raises(VANError, match="heun"):
        solve(model, t_eval=[0.0, 0.1], caps=caps, method="natgrad", integrator="heun")


def test_backward_euler_jacobian_matches_finite_differences(monkeypatch):
    # The Jacobian of the implicit step's residual has the row G(n) - sum_k b_k G(n - s_k) at a
    # sample n: the network's gradients at the predecessors enter. Checked against central
    # differences of the residual itself along random directions v: with step 1e-5 the
    # truncation error is O(1e-10) (third derivatives O(1)) and the rounding error
    # ~1e-16 / 1e-5 = 1e-11 per unit of f, so 1e-7 relative to |J v| separates a wrong term
    # (O(1) relative) from noise. Small toggle switch, a perturbed network as the new law, a
    # stiff step (h = 1: h a_0(n) up to ~35 at the sampled states); the Jacobian is assembled
    # in blocks of 7 samples to exercise the blockwise path.
    import cupyssa.cme.van as van
    from cupyssa.cme.van import Flows, backward_euler_residual

    start, prob, _ = _small_toggle_at(0.3)
    rng = np.random.default_rng(3)
    new = start.copy()
    new.theta = start.theta + 0.05 * rng.standard_normal(start.n_params)
    n = start.sample(40, rng, alpha=0.5, eps=0.1)[0]
    flows = Flows.at(start, prob.network, prob.theta, n)
    lp_t = start.log_prob(n)
    h = 1.0
    assert (h * flows.outflow).max() > 10
    K = len(prob.network.stoichiometry)
    monkeypatch.setattr(van, "_JACOBIAN_BLOCK_ENTRIES", 7 * (K + 1) * new.n_params)
    f, J = backward_euler_residual(new, flows, lp_t, h, jacobian=True)
    # the same residual with or without the Jacobian (up to rounding: other blocks of states)
    np.testing.assert_allclose(f, backward_euler_residual(new, flows, lp_t, h), rtol=0,
                               atol=1e-12)
    for _ in range(4):
        v = rng.standard_normal(new.n_params)
        plus, minus = new.copy(), new.copy()
        plus.theta = new.theta + 1e-5 * v
        minus.theta = new.theta - 1e-5 * v
        fd = (backward_euler_residual(plus, flows, lp_t, h)
              - backward_euler_residual(minus, flows, lp_t, h)) / 2e-5
        np.testing.assert_allclose(J @ v, fd, rtol=1e-7, atol=1e-7 * np.abs(J @ v).max())


def test_implicit_step_solves_backward_euler():
    # integrator="implicit" fits P' = (I - h W)^{-1} P_t. On one species with every box state
    # enumerated and equal weights (alpha = 0), NADE's output biases represent any law, so the
    # Gauss-Newton iterations (damping ~0) must reach the backward-Euler law itself, computed
    # here by a sparse solve with the same reflecting generator. Two steps from a Poisson(3)
    # law, each with h a_0 up to 0.5 (10 + 29) ~ 20, where an explicit step is unstable
    # (h |lambda| >> 2). Measured largest error of log P' after the first step with 1, 2, 3, 4, 6
    # iterations: 5.0, 0.47, 0.0086, 4e-6, 3e-14 (quadratic convergence); asserted with 6:
    # 1e-10.
    import scipy.sparse as sp
    from scipy.sparse.linalg import spsolve
    from scipy.stats import poisson

    from cupyssa.cme.box import reflecting_generator

    model = models.immigration_death(k=10.0, g=1.0, x0=5)
    h = 0.5
    sol = solve(model, t_eval=[0.0, h, 2 * h], caps={"X": 30}, integrator="implicit",
                initial=lambda n: poisson.logpmf(n[:, 0], 3.0), sampling="enumerate", alpha=0.0,
                n_iter=6, dt=h, damping=1e-12, hidden=1, seed=0)
    assert sol.stats["steps"] == 2
    states = np.arange(30)[:, None]
    theta = model.network.parameter_vector(model.params)
    A = (sp.identity(30) - h * reflecting_generator(model.network, states, theta, [30])).tocsc()
    # the start: the user's law, fitted by natural gradient on every state (measured 7e-15)
    np.testing.assert_allclose(sol.log_prob(states, 0), poisson.logpmf(states[:, 0], 3.0),
                               rtol=0, atol=1e-10)
    p = np.exp(sol.log_prob(states, 0))
    for k in (1, 2):
        p = spsolve(A, p)
        np.testing.assert_allclose(sol.log_prob(states, k), np.log(p), rtol=0, atol=1e-10)


def test_implicit_step_with_sampling_and_step_check():
    # The implicit step on sampled batches, checked out of sample (step_check), started as
    # recommended from the exact short-time law (init_time): immigration-death from 0 to t = 1
    # against its Poisson law with the tolerance of the explicit steps' test above (measured
    # 0.0105 / 0.0121 / 0.0115 on seeds 0-2). From the smoothed point mass itself one
    # Gauss-Newton iteration per step does not follow the first steps' log-changes of tens:
    # 0.024-0.035 without the check. The step errors are those of the backward-Euler residual
    # (1 = not moving; measured median 0.038).
    from scipy.stats import poisson

    import warnings

    model, caps = _immigration_death()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 300 samples, 133 parameters: no warning
        sol = solve(model, t_eval=[0.0, 1.0], caps=caps, integrator="implicit", n_samples=300,
                    hidden=4, dt=0.02, seed=0, step_check=5.0, init_time=0.05)
    exact = poisson.pmf(np.arange(25), 5.0 * (1 - np.exp(-1.0)))
    assert hellinger(sol.marginal("X", 1), exact) <= 0.02
    errors = sol.stats["step_errors"]
    assert len(errors) == sol.stats["steps"] and np.median(errors) < 0.5
    # fewer samples than parameters: the regime in which implicit steps drift is named
    with pytest.warns(RuntimeWarning, match="below the network's 133 parameters.*n_iter > 1"):
        solve(model, t_eval=[0.0, 0.02], caps=caps, integrator="implicit", n_samples=100,
              hidden=4, dt=0.02, n_iter=2)
    with pytest.raises(VANError, match="first order"):
        solve(model, t_eval=[0.0, 0.1], caps=caps, integrator="implicit", order=2)
    with pytest.raises(VANError, match="implicit"):
        solve(model, t_eval=[0.0, 0.1], caps=caps, method="adam", integrator="implicit")


def test_blas_threads_option():
    model, caps = _immigration_death()
    kw = dict(t_eval=[0.0, 0.1], caps=caps, n_samples=50, hidden=2, dt=0.05, seed=0)
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        with pytest.warns(RuntimeWarning, match="threadpoolctl"):
            a = solve(model, blas_threads=1, **kw)
    else:
        a = solve(model, blas_threads=1, **kw)
    np.testing.assert_array_equal(a.thetas, solve(model, **kw).thetas)
    with pytest.raises(VANError, match="order"):
        solve(model, order=3, **kw)


@pytest.mark.parametrize("frontier", [False, True])
def test_frontier_rows_let_the_support_grow(frontier):
    # A law with a cliff: Poisson(3) on 0..8 and 23 + (m - 8) nats lower above, the edge that
    # MAPK's solved laws had (K at t = 5.3: p(12) = 0.04, p(13) = 1e-11). No tempered sample
    # reaches 9, so a fit on the samples alone cannot give it the mass immigration sends there:
    # P'(9) stays at its start (~1e-13), 10^-9 of backward Euler's value. With frontier=True the
    # fit also has the one-jump successors of the samples, 9 among them; 10 is two jumps out and
    # keeps its start value. Every visited value has its own output bias, so the converged
    # Gauss-Newton iterations (n_iter 6, damping ~0) solve the backward-Euler equations on
    # V = {0..9} exactly, with the normalizer free: the residual is centred, so the equations
    # hold up to a common factor C,
    #     (1 + h a_0(n)) P'(n) = C (P_t(n) + h sum_k a_k(n - s_k) P'(n - s_k)),  n in V,
    # with P' ~ 0 above 9 and C fixed by sum_V P' = 1 (the mass that leaves V through 9 -> 10).
    # Measured: log P' within 9e-11 of that solution (asserted 1e-8).
    import scipy.sparse as sp
    from scipy.optimize import brentq
    from scipy.stats import poisson

    from cupyssa.cme.box import reflecting_generator
    from cupyssa.cme.van import make_model

    model = models.immigration_death(k=10.0, g=1.0, x0=5)
    M, edge, h = 30, 8, 0.05
    m = np.arange(M)
    log_p0 = poisson.logpmf(m, 3.0)
    log_p0[edge + 1:] = log_p0[edge] - 23.0 - (m[edge + 1:] - edge)
    start = make_model("nade", np.array([M]), np.random.default_rng(0), hidden=1)
    start.set_product_law([log_p0])
    sol = solve(model, t_eval=[0.0, h], caps={"X": M}, model=start, integrator="implicit",
                n_samples=500, dt=h, eps=0.0, alpha=0.5, n_iter=6, damping=1e-10, seed=0,
                frontier=frontier)
    log_p1 = sol.log_prob(m[:, None], 1)

    theta = model.network.parameter_vector(model.params)
    A = (sp.identity(M) - h * reflecting_generator(model.network, m[:, None], theta, [M]))
    V = edge + 2
    B = A.toarray()[:V, :V]  # 1 + h a_0 on the diagonal, -h a_k(n - s_k) off it
    D, F = np.diag(np.diag(B)), np.diag(np.diag(B)) - B
    p0 = np.exp(log_p0[:V] - np.logaddexp.reduce(log_p0))

    def law(C):
        return C * np.linalg.solve(D - C * F, p0)

    ref = law(brentq(lambda C: law(C).sum() - 1.0, 0.5, 2.0))
    if frontier:
        np.testing.assert_allclose(log_p1[:V], np.log(ref), rtol=0, atol=1e-8)
    else:
        assert np.exp(log_p1[edge + 1]) < 1e-9 * ref[edge + 1]
    with pytest.raises(VANError, match="implicit"):
        solve(model, t_eval=[0.0, h], caps={"X": M}, frontier=True)
    with pytest.raises(VANError, match="enumerate"):
        solve(model, t_eval=[0.0, h], caps={"X": M}, frontier=True, integrator="implicit",
              sampling="enumerate")


def test_output_degree_of_full_rank_makes_the_same_steps():
    """With ``output_degree >= M_i - 1`` the basis ``Phi_i`` spans every non-constant column,
    and the constant one has no gradient (``g_i`` sums to 0 over the values): the map ``C_i ->
    Phi_i C_i`` is an isometry onto what the free ``V_i`` can move, so from the same product
    start the damped least-squares steps, and the laws, are the free network's (to round-off;
    the damping ``trace / min(N, P)`` is the same with fewer samples than either network's
    parameters, 226 and 202). A restricted degree is another law."""
    model, caps = small_toggle()
    kw = dict(t_eval=[0.0, 0.3], caps=caps, n_samples=150, hidden=6, dt=0.02, seed=3,
              integrator="implicit", init_time=0.02, init_law="product", center_outputs=True)
    with pytest.warns(RuntimeWarning, match="implicit steps drift"):
        free = solve(model, **kw)
        full = solve(model, output_degree=11, **kw)
        low = solve(model, output_degree=1, **kw)
    states = np.array(np.meshgrid(*[np.arange(c) for c in caps.values()],
                                  indexing="ij")).reshape(4, -1).T
    np.testing.assert_allclose(full.log_prob(states, 1), free.log_prob(states, 1), atol=1e-8)
    assert np.abs(low.log_prob(states, 1) - free.log_prob(states, 1)).max() > 1e-3
    assert full.thetas.shape[1] == free.thetas.shape[1] - 6 * len(caps)
