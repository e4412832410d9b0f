"""The CME's moment equations (cupyssa.cme.moments) and a step's law projected onto them."""

import numpy as np
import pytest
from scipy.stats import poisson

import cupyssa.models as models
from cupyssa.cme import MADE, NADE, solve
from cupyssa.cme.box import reflecting_generator
from cupyssa.cme.moments import (generator_of_powers, moment_functions, power_moments,
                                  project_moments, reacting_pairs)
from cupyssa.cme.van import ReorderedNetwork, VANError
from cupyssa.models import Model
from cupyssa.network import ReactionNetwork


def _dimerization_box(reverse=False):
    # 2A <-> B on a small box: a bimolecular law, so the moment equations are not closed;
    # ``reverse``: factorized in the order (B, A)
    m = models.dimerization(k1=0.5, k2=1.0, A0=6, B0=1)
    net, caps = m.network, np.array([12, 7])
    if reverse:
        net, caps = ReorderedNetwork(net, [1, 0]), caps[::-1].copy()
    return net, m.network.parameter_vector(m.params), caps


def _exact_moments(model, degree, pairs=None):
    """``E[x_i^p]`` (and ``E[x_i x_j]`` of the ``pairs``) of ``model`` over its whole box (no
    sampling), the box's states and their probabilities."""
    states = model.enumerate_states()
    p = np.exp(model.log_prob(states))
    return p @ moment_functions(states, degree, pairs), states, p


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
    # and f = x_A x_B, the pairs' column after the powers'
    pairs = (np.array([0]), np.array([1]))
    got = generator_of_powers(net, rates, caps, states, degree=2, pairs=pairs)
    want = W.T @ moment_functions(states, 2, pairs)
    assert got.shape == (len(states), 5)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("degree, covariances", [(1, False), (2, False), (2, True)])
@pytest.mark.parametrize("stepped, reverse", [(False, False), (True, False), (True, True)])
def test_projection_moves_the_moments_by_the_trapezoid_rule(degree, covariances, stepped,
                                                            reverse):
    """The tilted law's exact moments against the trapezoid rule's exact target.

    ``stepped=False``: the "step" did not move the law at all, so the projection alone must
    make the whole change ``h E_P[L f]``; ``stepped=True``: a step that moved the law the wrong
    way (random parameter change), target ``h/2 (E_P[L f] + E_P'[L f])``. Both targets and the
    moments are exact sums over the box (84 states), ``L f`` from the box chain's generator.
    ``reverse``: the species factorized in the other order (the response's zeros follow it).
    ``covariances``: also ``E[x_A x_B]``, moved through the network's parameters (a random
    NADE on the whole box: not on the conservation law's line, so the product is a moment of
    its own). The pairs' directions are not an exponential family: a large move leaves the
    Newton iterations a nonlinear error (at ``h`` = 0.05 the random law must move ``E[x_A^2]``
    by 40 % of its spread in one projection, and the product's residual does not shrink), so
    this variant asks for a tenth of that (``h`` = 0.005), with three iterations (two leave
    ~5 % of the product's move: a VAN step asks the projection for ~1 % of a spread, MAPK).

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
    h, n = (0.005 if covariances else 0.05), 100_000
    frozen = NADE(caps, hidden=3, rng=np.random.default_rng(1), init_scale=0.5)
    model = frozen.copy()
    if stepped:
        model.theta += h * np.random.default_rng(3).normal(size=model.n_params)  # ~ the target
    pairs = (np.array([0]), np.array([1])) if covariances else None
    m0, states, p0 = _exact_moments(frozen, degree, pairs)
    m1, _, p1 = _exact_moments(model, degree, pairs)
    Lf = reflecting_generator(net, states, rates, caps).T @ moment_functions(states, degree, pairs)
    sd = lambda p: np.sqrt(p @ Lf ** 2 - (p @ Lf) ** 2)  # noqa: E731
    se_target = 0.5 * h * (sd(p0) + sd(p1)) / np.sqrt(n)

    rng = np.random.default_rng(7)
    seed = int(np.random.default_rng(7).integers(2 ** 63))  # the draws project_moments makes
    x0 = frozen.sample(n, np.random.default_rng(seed))[0]
    x1 = model.sample(n, np.random.default_rng(seed))[0]
    se_moved = ((moment_functions(x1, degree, pairs) - moment_functions(x0, degree, pairs))
                .std(axis=0) / np.sqrt(n))

    info = project_moments(model, frozen, net, rates, h, degree, n, rng, pairs=pairs,
                           iterations=3 if covariances else 2)
    m2, _, p2 = _exact_moments(model, degree, pairs)
    change = m2 - m0
    target = 0.5 * h * (p0 @ Lf + p2 @ Lf)  # the implicit trapezoid: at the tilted law
    tol = 4 * np.hypot(se_target, se_moved) + 0.04 * np.abs(change - (m1 - m0))
    assert np.all(np.abs(change - target) <= tol), (change, target, tol)
    # the projection did the work: the step alone was off by far more than the tolerance
    assert np.all(np.abs((m1 - m0) - target) > 5 * tol)
    assert info["tilt"].shape == (degree, 2)
    assert info["pair_tilt"].shape == ((1,) if covariances else (0,))


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


def _joint_birth(k=4.0, g1=1.0, g2=2.0):
    """``0 -> A + B`` at ``k``, ``A -> 0`` at ``g1 A``, ``B -> 0`` at ``g2 B``: the births make
    the two species covary. A linear network, so the moments up to degree 2 are closed."""
    net = (ReactionNetwork().add_species("A").add_species("B")
           .add_parameter("k", k).add_parameter("g1", g1).add_parameter("g2", g2)
           .add_reaction({}, {"A": 1, "B": 1}, "k").add_reaction({"A": 1}, {}, "g1")
           .add_reaction({"B": 1}, {}, "g2"))
    return Model(net, {"A": 1, "B": 1}, {"k": k, "g1": g1, "g2": g2}, 1.0)


@pytest.mark.parametrize("covariances, order", [(False, None), (True, None), (True, ["B", "A"])])
def test_projection_builds_the_covariance_that_steps_do_not(covariances, order):
    """Joint births from independent Poisson(1) laws, steps held still by a damping of 10^8: the
    projection alone moves the law. The exact law at ``t`` is bivariate Poisson, ``A = U + Z``,
    ``B = V + Z`` with independent Poisson ``U``, ``V``, ``Z``, ``E[Z] = C(t)``:

        m_A = k/g1 + (1 - k/g1) e^{-g1 t},   m_B = k/g2 + (1 - k/g2) e^{-g2 t},
        C   = Cov(A, B) = k / (g1 + g2) (1 - e^{-(g1 + g2) t})

    (``dC/dt = E[L(AB)] - d(m_A m_B)/dt = k - (g1 + g2) C``). Tilts of each species' own
    conditional keep a product law a product law: without ``project_covariances`` the
    covariance stays 0 (C(1) = 1.27); with it, it follows ``C(t)``. ``order``: the network
    factorized as (B, A), the pair still named ("A", "B").

    Tolerances. Each step adds two random errors: its targets' standard error
    ``h sd(L f) / sqrt(n)`` (``sd`` the largest over the exact laws at t = 0, 0.05, ..., 1), and
    the noise of the change it measures on ``n`` pairs of draws with common uniforms: for ``A``,
    ``x_1 != x_0`` in at most ``E|x_1 - x_0| <= h max|m_A'| = 0.05 * 3`` of the draws (unit
    differences, inverse-CDF coupling), so ``sd <= sqrt(0.15 / n)``; for ``B``, ``sqrt(0.1 / n)``;
    for the product, ``AB - A_0 B_0 = B dA + A_0 dB`` gives ``E[(d AB)^2] <= 2 sqrt(E[B^4] 0.15) +
    2 sqrt(E[A^4] 0.1) <= 25`` (Poisson fourth moments at means <= 2 and <= 4). The moment
    equations are linear and closed, so an error made at step ``j`` decays as ``e^{-lambda (1 -
    t_j)}`` (``lambda`` = g1, g2, g1 + g2 for ``m_A``, ``m_B``, ``E[AB]``): the errors add up
    to ``sd / sqrt(1 - e^{-2 lambda h})``; 4 of those. Plus the trapezoid rule's global error
    ``h^2 / 12 * t * max |y'''|`` of the closed system, with ``|m_A'''| <= 3``, ``|m_B'''| <= 8``
    and ``|E[AB]'''| <= |C'''| + |(m_A m_B)'''| <= 36 + 43`` (all largest at t = 0): 0.0006,
    0.0017 and 0.0165. The covariance's error is that of ``E[AB]`` plus ``m_B`` and ``m_A``
    times the means'. (These bounds are loose, the covariance's ~0.2 of C(1): the trapezoid test
    above checks the projection's exactness, this one that a solve builds the covariance.)
    """
    k, g1, g2, cap, h = 4.0, 1.0, 2.0, 20, 0.05
    n = 50_000 if covariances else 20_000
    model = _joint_birth(k, g1, g2)
    start = NADE([cap, cap], hidden=3, rng=np.random.default_rng(0))
    start.set_product_law([poisson.logpmf(np.arange(cap), 1.0)] * 2)
    sol = solve(model, t_eval=[0.0, 1.0], model=start, caps={"A": cap, "B": cap}, dt=h,
                n_samples=300, damping=1e8, sampling="exact", project_moments=2,
                project_covariances=[("A", "B")] if covariances else False,
                projection_draws=n, seed=0, species_order=order)
    law = start.copy()
    law.theta = sol.thetas[-1]
    states = law.enumerate_states()
    p = np.exp(law.log_prob(states))
    if order is not None:
        states = states[:, ::-1]  # the law's columns are (B, A)
    mA, mB = p @ states[:, 0], p @ states[:, 1]
    cov = p @ (states[:, 0] * states[:, 1]) - mA * mB

    def exact(t):
        return (k / g1 + (1 - k / g1) * np.exp(-g1 * t), k / g2 + (1 - k / g2) * np.exp(-g2 * t),
                k / (g1 + g2) * (1 - np.exp(-(g1 + g2) * t)))

    def sd_generator(t):  # sd of L x_A, L x_B and L(x_A x_B) under the exact law at t
        a, b, c = exact(t)
        m = np.arange(cap)
        pu, pv, pz = (poisson.pmf(m, lam) for lam in (a - c, b - c, c))
        joint = np.einsum("u,v,z->uvz", pu, pv, pz)  # A = u + z, B = v + z
        A = m[:, None, None] + m[None, None, :]
        B = m[None, :, None] + m[None, None, :]
        fs = (k - g1 * A, k - g2 * B, k * (A + B + 1) - (g1 + g2) * A * B)
        return [np.sqrt(np.sum(joint * f ** 2) - np.sum(joint * f) ** 2) for f in fs]

    sds = np.max([sd_generator(t) for t in np.linspace(0.0, 1.0, 21)], axis=0)
    moved = np.sqrt(np.array([0.15, 0.1, 25.0]) / n)
    decay = 1.0 / np.sqrt(1.0 - np.exp(-2.0 * np.array([g1, g2, g1 + g2]) * h))
    tol = 4 * decay * np.hypot(h * sds / np.sqrt(n), moved) + np.array([0.0006, 0.0017, 0.0165])
    a, b, c = exact(1.0)
    assert abs(mA - a) < tol[0] and abs(mB - b) < tol[1], (mA, a, mB, b, tol)
    if not covariances:
        assert abs(cov) < 0.02, cov  # the tilts kept the product law
        return
    assert abs(cov - c) < tol[2] + b * tol[0] + a * tol[1], (cov, c, tol)


def test_projection_options_are_checked():
    model = models.immigration_death(k=5.0, g=1.0, x0=1)
    for bad, match in ((dict(project_moments=3), "project_moments must be"),
                       (dict(project_moments=1, projection_draws=0), "projection_draws"),
                       (dict(project_moments=1, project_covariances=True), "needs project_moments=2"),
                       (dict(project_moments=2, project_covariances=[("X", "Y")]), "species names"),
                       (dict(project_moments=2, project_covariances=[("X", "X")]), "distinct")):
        with pytest.raises(VANError, match=match):
            solve(model, t_eval=[0.0, 0.1], caps={"X": 20}, **bad)
    law = _poisson_start(1.0, 20)
    with pytest.raises(ValueError, match="iterations >= 1"):
        project_moments(law, law.copy(), model.network, np.array([5.0, 1.0]), 0.1, 1, 100,
                        np.random.default_rng(0), iterations=0)
    for degree, pairs in ((1, ([0], [1])), (2, ([0], [0])), (2, ([0], [2]))):
        with pytest.raises(ValueError, match="pairs need degree 2"):
            two = NADE([5, 5], hidden=1)
            project_moments(two, two.copy(), None, None, 0.1, degree, 100,
                            np.random.default_rng(0), pairs=pairs)


def test_reacting_pairs_of_the_mapk_cascade():
    # the bimolecular reactions of models.mapk_cascade (enzyme + substrate -> complex), read
    # off its reaction list, in the network's species order
    net = models.mapk_cascade().network
    want = {("S", "KKK"), ("KKKp", "KK"), ("KKKp", "KKp"), ("KKp", "P2"), ("KKpp", "P2"),
            ("KKpp", "K"), ("KKpp", "Kp"), ("Kp", "P3"), ("Kpp", "P3")}
    first, second = reacting_pairs(net)
    assert {(net.species[i], net.species[j]) for i, j in zip(first, second)} == want
    assert np.all(first < second)
    # through a reordering, the same pairs in the new columns
    order = np.arange(net.n_species)[::-1]
    re = ReorderedNetwork(net, order)
    f2, s2 = reacting_pairs(re)
    assert {frozenset((re.species[i], re.species[j])) for i, j in zip(f2, s2)} == {
        frozenset(p) for p in want}
