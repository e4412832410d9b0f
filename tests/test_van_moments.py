"""The CME's moment equations (cupyssa.cme.moments) and a step's law projected onto them."""

import numpy as np
import pytest
from scipy.stats import poisson

import cupyssa.models as models
from cupyssa.cme import MADE, NADE, solve
from cupyssa.cme.box import reflecting_generator
from cupyssa.cme.moments import generator_of_powers, power_moments, project_moments
from cupyssa.cme.van import ReorderedNetwork, VANError


def _dimerization_box(reverse=False):
    # 2A <-> B on a small box: a bimolecular law, so the moment equations are not closed;
    # ``reverse``: factorized in the order (B, A)
    m = models.dimerization(k1=0.5, k2=1.0, A0=6, B0=1)
    net, caps = m.network, np.array([12, 7])
    if reverse:
        net, caps = ReorderedNetwork(net, [1, 0]), caps[::-1].copy()
    return net, m.network.parameter_vector(m.params), caps


def _exact_moments(model, degree):
    """``E[x_i^p]`` of ``model`` over its whole box (no sampling) and the box's states."""
    states = model.enumerate_states()
    p = np.exp(model.log_prob(states))
    return p @ power_moments(states, degree), states, p


@pytest.mark.parametrize("make", [
    lambda caps: NADE(caps, hidden=3, rng=np.random.default_rng(1), init_scale=0.5),
    lambda caps: NADE(caps, hidden=3, rng=np.random.default_rng(1), init_scale=0.5,
                      output_degree=2),
    lambda caps: MADE(caps, width=6, depth=2, rng=np.random.default_rng(1), init_scale=0.5)])
def test_tilt_multiplies_every_conditional(make):
    caps = np.array([4, 6, 3])
    model = make(caps)
    n = model.sample(50, np.random.default_rng(0))[0]
    before = model.conditionals(n)
    f = np.random.default_rng(2).normal(size=(3, model.M_max))
    model.tilt_conditionals(f)
    after = model.conditionals(n)
    # log P'(m | ctx) - log P(m | ctx) = f[i, m] - log Z(ctx): the same shift for every m
    for i, cap in enumerate(caps):
        d = np.log(after[:, i, :cap] / before[:, i, :cap]) - f[i, :cap]
        np.testing.assert_allclose(d - d[:, :1], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="tilt must have shape"):
        model.tilt_conditionals(f[:2])


def test_generator_of_powers_is_the_box_generator():
    # (L f)(x) = sum_y f(y) W[y, x], W the reflecting box chain's generator (cupyssa.cme.box),
    # for f = x_i and x_i^2 at every state of the box
    net, rates, caps = _dimerization_box()
    states = NADE(caps, hidden=1).enumerate_states()
    W = reflecting_generator(net, states, rates, caps)
    got = generator_of_powers(net, rates, caps, states, degree=2)
    want = (W.T @ power_moments(states, 2))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("degree", [1, 2])
@pytest.mark.parametrize("stepped, reverse", [(False, False), (True, False), (True, True)])
def test_projection_moves_the_moments_by_the_trapezoid_rule(degree, stepped, reverse):
    """The tilted law's exact moments against the trapezoid rule's exact target.

    ``stepped=False``: the "step" did not move the law at all, so the projection alone must
    make the whole change ``h E_P[L f]``; ``stepped=True``: a step that moved the law the wrong
    way (random parameter change), target ``h/2 (E_P[L f] + E_P'[L f])``. Both targets and the
    moments are exact sums over the box (84 states), ``L f`` from the box chain's generator.
    ``reverse``: the species factorized in the other order (the response's zeros follow it).

    Tolerance: the target is estimated from ``n`` draws of each law, with standard error at
    most ``h/2 (sd_P(L f) + sd_P'(L f)) / sqrt(n)`` (exact sds; the two means are correlated
    through the common uniforms, and ``sd(A + B) <= sd A + sd B``); 4 of those. The moments'
    change is measured on the same draws with common random numbers, so it adds the noise of
    the draws where the two laws' inverse CDFs differ; its own standard error, estimated from
    the draws, is added in quadrature (as 4 SE too). The response to the tilts is estimated
    from the same n draws: its relative error ~ 1/sqrt(n) times the spread of the products it
    averages (< 3 here) is < 1 % at n = 10^5, times the change the tilts make: 4 % of it. The
    Newton iterations leave a linearization error far below that.
    """
    net, rates, caps = _dimerization_box(reverse)
    h, n = 0.05, 100_000
    frozen = NADE(caps, hidden=3, rng=np.random.default_rng(1), init_scale=0.5)
    model = frozen.copy()
    if stepped:
        model.theta += 0.05 * np.random.default_rng(3).normal(size=model.n_params)
    m0, states, p0 = _exact_moments(frozen, degree)
    m1, _, p1 = _exact_moments(model, degree)
    Lf = reflecting_generator(net, states, rates, caps).T @ power_moments(states, degree)
    sd = lambda p: np.sqrt(p @ Lf ** 2 - (p @ Lf) ** 2)  # noqa: E731
    se_target = 0.5 * h * (sd(p0) + sd(p1)) / np.sqrt(n)

    rng = np.random.default_rng(7)
    seed = int(np.random.default_rng(7).integers(2 ** 63))  # the draws project_moments makes
    x0 = frozen.sample(n, np.random.default_rng(seed))[0]
    x1 = model.sample(n, np.random.default_rng(seed))[0]
    se_moved = (power_moments(x1, degree) - power_moments(x0, degree)).std(axis=0) / np.sqrt(n)

    info = project_moments(model, frozen, net, rates, h, degree, n, rng)
    m2, _, p2 = _exact_moments(model, degree)
    change = m2 - m0
    target = 0.5 * h * (p0 @ Lf + p2 @ Lf)  # the implicit trapezoid: at the tilted law
    tol = 4 * np.hypot(se_target, se_moved) + 0.04 * np.abs(change - (m1 - m0))
    assert np.all(np.abs(change - target) <= tol), (change, target, tol)
    # the projection did the work: the step alone was off by far more than the tolerance
    assert np.all(np.abs((m1 - m0) - target) > 5 * tol)
    assert info["tilt"].shape == (degree, 2)


def _poisson_start(lam, cap):
    model = NADE([cap], hidden=2, rng=np.random.default_rng(0))
    model.set_product_law([poisson.logpmf(np.arange(cap), lam)])
    return model


@pytest.mark.parametrize("project", [0, 1, 2])
def test_projection_carries_a_law_that_steps_do_not_move(project):
    """Immigration-death (0 -> X at 5, X -> 0 at X) from Poisson(1): the law stays Poisson with
    mean ``mu(t) = 5 + (1 - 5) e^{-t}``. A damping of 10^8 keeps the steps from moving the
    network (the mean stays at 1); the projection alone must carry the law. A tilt of a
    Poisson law by ``m`` is a Poisson law, so with ``project_moments=1`` the law stays in the
    family; the equations of the first two moments are closed here, so the trapezoid rule
    carries both.

    Tolerances (exact moments over the box, no output sampling): each step's target has
    standard error ``h sd(L f) / sqrt(n)``, and the errors of 20 steps add at most like 20
    independent ones (the moment equations relax them, which only helps): 4 sqrt(20) of that,
    with ``sd(L f)`` the largest over Poisson laws of mean 1 to 5 (``L x = 5 - x``,
    ``L x^2 = 5 (2x + 1) + x (1 - 2x)``), plus the trapezoid rule's global error
    ``h^2 / 12 * max |d^3 mu / dt^3| * t <= 0.05^2 / 12 * 4 < 1e-3``. With
    ``project_moments=1`` the variance of the Poisson law is its mean and has the mean's
    tolerance.
    """
    model, cap, h, n = models.immigration_death(k=5.0, g=1.0, x0=1), 30, 0.05, 100_000
    start = _poisson_start(1.0, cap)
    sol = solve(model, t_eval=[0.0, 1.0], model=start, caps={"X": cap}, dt=h, n_samples=200,
                damping=1e8, sampling="exact", project_moments=project, projection_draws=n,
                seed=0)
    law = start.copy()
    law.theta = sol.thetas[-1]
    m = np.arange(cap)
    p = np.exp(law.log_prob(m[:, None]))
    mean, var = p @ m, p @ m ** 2 - (p @ m) ** 2
    mu = 5.0 - 4.0 * np.exp(-1.0)
    if project == 0:
        assert abs(mean - 1.0) < 0.01 and abs(mean - mu) > 2.0  # the steps alone do not move
        return

    def sd_max(Lf):
        return max(np.sqrt(poisson.pmf(m, lam) @ Lf ** 2 - (poisson.pmf(m, lam) @ Lf) ** 2)
                   for lam in np.linspace(1, 5, 41))

    tol = [4 * np.sqrt(20) * h * sd_max(Lf) / np.sqrt(n) + 1e-3
           for Lf in (5.0 - m, 5.0 * (2 * m + 1) + m * (1 - 2 * m))]
    assert abs(mean - mu) < tol[0], (mean, mu, tol)
    assert abs(var - mu) < tol[0 if project == 1 else 1], (var, mu, tol)
    assert sol.stats["max_tilt"] > 0


def test_projection_options_are_checked():
    model = models.immigration_death(k=5.0, g=1.0, x0=1)
    for bad, match in ((dict(project_moments=3), "project_moments must be"),
                       (dict(project_moments=1, projection_draws=0), "projection_draws")):
        with pytest.raises(VANError, match=match):
            solve(model, t_eval=[0.0, 0.1], caps={"X": 20}, **bad)
    law = _poisson_start(1.0, 20)
    with pytest.raises(ValueError, match="iterations >= 1"):
        project_moments(law, law.copy(), model.network, np.array([5.0, 1.0]), 0.1, 1, 100,
                        np.random.default_rng(0), iterations=0)
