"""The hand-written benchmark loops (benchmarks/handwritten.py) agree with cupyssa.

Two independent ensembles of n = 2000 trajectories each; for every observed quantity the
two-sample statistic ``z = (m_h - m_c) / sqrt(s^2 (1/n + 1/n))`` (sample means ``m``, ``s^2`` the
sample variance of both ensembles pooled) is approximately standard normal when both simulate the
same chain.
With ``|z| < 5`` per quantity (two-sided P = 5.7e-7) and 2 x 11 + 1 quantities, a correct loop fails
with probability < 1.5e-5 over seeds; a loop off by a factor 2 in a propensity gives |z| in the
hundreds.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

import cupyssa as cs
from cupyssa.cme.moments import box_propensities

ROOT = pathlib.Path(__file__).resolve().parents[1]
N = 2000


def _load(name):
    path = ROOT / "benchmarks" / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{path} not found")
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _z(a, b):
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    den = np.sqrt(np.concatenate([a, b]).var(0, ddof=1) * (1 / len(a) + 1 / len(b)))
    num = a.mean(0) - b.mean(0)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(num == 0, 0.0, np.inf))


def test_handwritten_dimerization_matches_cupyssa():
    hw = _load("handwritten")
    m = cs.models.dimerization(k1=1e-3, k2=0.1, A0=1000, B0=0)
    t = np.linspace(0.0, 50.0, 11)
    res = cs.simulate(m, t_eval=t, n_trajectories=N, seed=7, backend="cpu")
    x0 = np.array([m.x0[s] for s in hw.SPECIES["dimerization"]], dtype=np.int64)
    params = np.array([m.params[p] for p in hw.PARAMS["dimerization"]])
    out = np.empty((N, len(t), 2), dtype=np.int32)
    n_events = np.empty(N, dtype=np.int64)
    hw.dimerization(N, t, 7, params, x0, out, n_events)
    assert np.all(out[:, 0] == x0)
    assert np.all(out[..., 0] + 2 * out[..., 1] == 1000)  # conservation A + 2B
    cols = [res.species.index(s) for s in hw.SPECIES["dimerization"]]
    z = _z(out.reshape(N, -1), res.states[..., cols].reshape(N, -1))
    assert np.nanmax(np.abs(z)) < 5, z
    assert abs(_z(n_events[:, None], res.n_events[:, None])[0]) < 5



def test_handwritten_gradient_sweep_reproduces_cupyssa_exactly(monkeypatch):
    """The written-out straight-through sweep of the dimerization (the gradient benchmark's speed
    limit), one trajectory at a time and in SIMD lanes, gets the arguments cupyssa's reverse sweep
    gets and returns the same per-trajectory gradients, the same doubles (forward-fill
    observation at the end of the path, T = 1/10; a zero may differ in sign, which
    ``assert_array_equal`` ignores)."""
    import cupyssa.gradients as gradients
    from cupyssa.kernels.cpu import replay_arguments

    hw = _load("handwritten")
    m = cs.models.dimerization(k1=1e-3, k2=0.1, A0=300, B0=0)
    loss = cs.losses.Mean(np.array([[0.0, 1.0]]))
    captured = []
    kernels_for = gradients.kernels_for

    class Capture:
        def __init__(self, family):
            self.family = family

        def __getattr__(self, name):
            return getattr(self.family, name)

        def replay_batch(self, *args):
            captured.append(args)
            self.family.replay_batch(*args)

    monkeypatch.setattr(gradients, "kernels_for", lambda net, sp=False: Capture(kernels_for(net, sp)))
    _, grad = cs.value_and_grad(loss, m, t_eval=[10.0], n_trajectories=64, seed=9,
                                observation="fill", temperature=0.1, per_trajectory=True)
    a = replay_arguments(*captured[0])
    want = a["grads"]
    # what the written-out sweep assumes
    assert a["first"] == 0 and np.all(a["obs_step"][:, 0] == a["K"])
    got = np.empty_like(want)
    hw.dimerization_sweep_from_replay(a, got)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, grad.per_trajectory)
    # the lanes sweep, on all 64 trajectories and on the first 37, whose last group of lanes is
    # partly empty (hw.SWEEP_LANES = 16)
    lanes = np.empty_like(want)
    hw.dimerization_sweep_from_replay(a, lanes, lanes=True)
    np.testing.assert_array_equal(lanes, want)
    first = {**a, **{name: a[name][:37] for name in ("x_final", "K", "tape", "t_checkpoints", "G")}}
    lanes = np.empty_like(want[:37])
    hw.dimerization_sweep_from_replay(first, lanes, lanes=True)
    np.testing.assert_array_equal(lanes, want[:37])


def test_moment_velocities_match_the_closed_moment_equations_of_a_linear_network():
    """``van_moment_velocity.exact_velocities`` against the moment equations of a linear network,
    which close: for ``0 -> A`` (k), ``A -> 0`` (g A), ``A -> B`` (c A), ``B -> 0`` (h B),

        d mu_A/dt = k - (g + c) mu_A,          d mu_B/dt = c mu_A - h mu_B,
        d var_A/dt = k + (g + c) mu_A - 2 (g + c) var_A,
        d cov_AB/dt = c var_A - (g + c + h) cov_AB - c mu_A

    (``d Sigma/dt = J Sigma + Sigma J^T + sum_k a_k s_k s_k^T``). Evaluated on any set of states
    with their sample moments (variance with 1/N), both sides agree to rounding: the estimator
    is linear in the sample averages. The states are correlated and lie far below the caps, so
    the reflecting box switches nothing off."""
    mod = _load("van_moment_velocity")
    m = cs.models._model("k = 7\ng = 0.3\nc = 0.5\nh = 0.2\ninit A = 0\ninit B = 0\n"
                         "0 -> A ; k\nA -> 0 ; g\nA -> B ; c\nB -> 0 ; h", 1.0)
    net = m.network
    theta = net.parameter_vector(m.params)
    rng = np.random.default_rng(3)
    a = rng.poisson(9.0, 5000)
    x = np.stack([a, rng.binomial(a, 0.6) + rng.poisson(4.0, 5000)], axis=1)
    caps = np.array([200, 200])
    pairs = mod.converted_pairs(net)
    assert pairs == [(0, 1)]
    v, se = mod.exact_velocities(net, theta, caps, x, pairs)
    k, g, c, h = 7.0, 0.3, 0.5, 0.2
    mu = x.mean(0)
    var = x.var(0)
    cov = np.mean((x[:, 0] - mu[0]) * (x[:, 1] - mu[1]))
    expected = [k - (g + c) * mu[0], c * mu[0] - h * mu[1],
                k + (g + c) * mu[0] - 2 * (g + c) * var[0],
                c * mu[0] + h * mu[1] + 2 * c * cov - 2 * h * var[1],
                c * var[0] - (g + c + h) * cov - c * mu[0]]
    np.testing.assert_allclose(v, expected, rtol=1e-10, atol=1e-9)
    assert se.shape == (2,) and np.all(se > 0)


def _two_species_law():
    """A birth, death and conversion network on a small box (``A`` fed at rate 7, capped at
    9, so the box edge switches reactions off), a NADE with random weights, its box states
    and their probabilities."""
    m = cs.models._model("k = 7\ng = 0.3\nc = 0.5\nh = 0.2\ninit A = 0\ninit B = 0\n"
                         "0 -> A ; k\nA -> 0 ; g\nA -> B ; c\nB -> 0 ; h", 1.0)
    caps = np.array([10, 12])
    law = cs.cme.NADE(caps, hidden=3, rng=np.random.default_rng(5), init_scale=0.5)
    states = np.stack(np.meshgrid(np.arange(10), np.arange(12), indexing="ij"), -1).reshape(-1, 2)
    return m, caps, law, states, np.exp(law.log_prob(states))


def test_ratio_velocities_under_the_whole_law_are_the_drift(monkeypatch):
    """``van_moment_velocity.ratio_velocities``: with every box state weighted by its
    probability, ``sum_n x_i E(n) P(n) = sum_n x_i (W P)(n)``, which summation by parts turns
    into ``sum_m P(m) sum_k a_k(m) s_ki`` over the reactions whose product stays in the box (the
    reflecting rule of both ``W`` and the drift), and ``sum_n E(n) P(n) = 0``: the two agree to
    rounding, for any law. A NADE with random weights on small caps, so that the box edge
    switches reactions off (``A`` is fed at rate 7 and capped at 9). Over batches as large as the
    whole set, ``subset_spread`` gives that set's covariance at every quantile. The local
    energies are taken in blocks of 50 states here (three blocks), as in larger runs."""
    mod = _load("van_moment_velocity")
    monkeypatch.setattr(mod, "_ENERGY_BLOCK", 50)
    m, caps, law, states, p = _two_species_law()
    net = m.network
    theta = net.parameter_vector(m.params)
    by_ratios, E = mod.ratio_velocities(law, net, theta, states, p)
    nu = np.asarray(net.stoichiometry)
    after = states[:, None, :] + nu[None]
    a = np.where(np.all((after >= 0) & (after < caps), axis=-1), net.propensities(states, theta), 0)
    np.testing.assert_allclose(by_ratios, p @ (a @ nu), rtol=1e-9, atol=1e-12)
    assert abs(p @ E) < 1e-10
    q = mod.subset_spread(states, E, len(states), np.random.default_rng(0), n_subsets=3)
    uniform, _ = mod.ratio_velocities(law, net, theta, states)
    np.testing.assert_allclose(q, np.broadcast_to(uniform, q.shape), rtol=1e-12, atol=1e-14)


def test_inflow_weights_take_the_law_of_the_jumps_back_to_the_law():
    """``van_moment_velocity.inflow_velocities`` on every box state with its probability under
    ``Q`` (where the chain's jumps land, ``Q(n) = sum_k a_k(n - s_k) P(n - s_k) / Z``, built here
    by scattering each state's outflow to its successors, not through the local energy): its
    weights ``Z / I`` must turn ``Q`` into ``P``, so the estimate is the drift
    ``E_P[sum_k a_k s_k]`` to rounding, the parts add up to it and their masses to 1. A wrong
    inflow ratio ``I`` (e.g. without the outflow ``a_0``) misses the drift by O(1)."""
    mod = _load("van_moment_velocity")
    m, caps, law, states, p = _two_species_law()
    net = m.network
    theta = net.parameter_vector(m.params)
    nu = np.asarray(net.stoichiometry)
    a = box_propensities(net, theta, caps, states)
    Z = p @ a.sum(axis=1)
    q = np.zeros(len(states))
    index = {tuple(s): i for i, s in enumerate(states)}
    for i, j in zip(*np.nonzero(a)):
        q[index[tuple(states[i] + nu[j])]] += p[i] * a[i, j] / Z
    # the weights reach only Q's support: here every box state is some state's successor
    assert np.all(q > 0)
    drift = p @ (a @ nu)
    total, parts, mass = mod.inflow_velocities(law, net, theta, caps, states, Z, q=q)
    np.testing.assert_allclose(total, drift, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(parts.sum(axis=0), total, rtol=1e-12, atol=1e-14)
    assert mass.sum() == pytest.approx(1.0, abs=1e-12) and np.all(mass >= 0)


def test_jump_successors_land_as_the_chain_jumps():
    """``van_moment_velocity.jump_successors`` from two parent states held by 3,000 and 1,000
    rows: a successor ``m_j + s_k`` has probability ``N_j a_k(m_j) / sum_j N_j a_0(m_j)`` (parent
    in proportion to its rows times its total rate, then the reaction by its rate), and the
    eight cells are told apart (the parents are far apart). Pearson's X^2 over the cells has 7
    degrees of freedom under that law; it exceeds 24.3 with probability 1e-3 (chi-square
    quantile). A sampler that draws the parent uniformly instead of ``∝ a_0`` shifts X^2's mean
    by ``4,000 sum (q - p)^2 / p`` = 153, one that draws the reaction uniformly by ~4,600: both
    fail. ``Z`` is the rows' mean ``a_0``."""
    mod = _load("van_moment_velocity")
    m, caps, law, states, p = _two_species_law()
    net = m.network
    theta = net.parameter_vector(m.params)
    nu = np.asarray(net.stoichiometry)
    parents = np.array([[2, 3], [7, 9]])
    x = np.repeat(parents, [3000, 1000], axis=0)
    succ, Z = mod.jump_successors(net, theta, caps, x, np.random.default_rng(3))
    a = box_propensities(net, theta, caps, parents)  # [2, K]
    expected = (np.array([3000, 1000])[:, None] * a).ravel() / (np.array([3000, 1000]) @ a.sum(1))
    cells = (parents[:, None, :] + nu[None]).reshape(-1, 2)
    counts = np.array([np.sum(np.all(succ == c, axis=1)) for c in cells])
    assert counts.sum() == len(x)
    chi2 = np.sum((counts - len(x) * expected) ** 2 / (len(x) * expected))
    assert chi2 < 24.3
    assert Z == pytest.approx((np.array([3000, 1000]) @ a.sum(1)) / 4000, rel=1e-12)


def test_pushed_velocities_follow_immigration_death():
    """``van_moment_velocity.pushed_velocities`` on ``0 -> A (k), A -> 0 (g)`` from 20,000
    Poisson(3) states: given ``A(0) = a``, ``A(h)`` is ``a`` thinned by survival ``e^{-gh}`` plus
    Poisson(``(k/g)(1 - e^{-gh})``) immigrants, so ``E[A(h)] = k/g + (a - k/g) e^{-gh}`` and
    ``Var[A(h) | a] = a e^{-gh}(1 - e^{-gh}) + (k/g)(1 - e^{-gh})``. The mean's velocity over
    ``h`` given the drawn states is then exact up to the SSA's noise, whose standard error is
    ``sqrt(mean Var / N) / h``: the test allows 4 of them (z-score; a velocity with ``h`` or the
    sign wrong is off by hundreds). The returned error is that of the changes ``A(h) - a``, whose
    spread also holds that of their means ``(k/g - a)(1 - e^{-gh})`` over the drawn ``a``: 1.7 %
    of the variance here, inside the 10 % allowed."""
    mod = _load("van_moment_velocity")
    k, g, h = 12.0, 0.4, 0.5
    m = cs.models._model(f"k = {k}\ng = {g}\ninit A = 0\n0 -> A ; k\nA -> 0 ; g", 1.0)
    x = np.random.default_rng(4).poisson(3.0, size=(20_000, 1))
    v, se = mod.pushed_velocities(m, x, h, pairs=[], seed=5)
    s = np.exp(-g * h)
    mean_after = k / g + (x.mean() - k / g) * s
    sd = np.sqrt(np.mean(x[:, 0] * s * (1 - s) + k / g * (1 - s)) / len(x)) / h
    assert abs(v[0] - (mean_after - x.mean()) / h) < 4 * sd
    assert se[0] == pytest.approx(sd, rel=0.1)


def test_widened_start_resumes_a_checkpoints_law_in_a_wider_network(tmp_path):
    """``cme_accuracy --widen-from CK --widen-at K``: the solve starts at ``t_eval[K]`` from the
    law CK holds there (its width read off the parameter count), in a NADE of ``--hidden``
    units holding the same law, without the options of a start from ``x0``; a time the
    checkpoint has not reached is refused."""
    import types

    mod = _load("cme_accuracy")
    m = cs.models.mapk_cascade()
    caps = np.array([m.metadata["caps"][s] for s in m.network.species])
    narrow = cs.cme.NADE(caps, hidden=2, rng=np.random.default_rng(1), init_scale=0.5)
    t_eval = np.array([0.0, 10.0, 25.0])
    thetas = np.zeros((3, narrow.n_params))
    thetas[1] = narrow.theta
    path = tmp_path / "ck.npz"
    # a checkpoint as written before session 32: no width or output degree recorded
    np.savez(path, t_eval=t_eval, thetas=thetas, theta=thetas[1], t=np.array(12.5),
             activation=np.array("sigmoid"), input_center=narrow.input_center,
             input_scale=narrow.input_scale)
    args = types.SimpleNamespace(widen_from=str(path), widen_at=1, output_degree=None, seed=0)
    kw = dict(hidden=4, n_samples=10, init_time=0.2, init_law="product", inputs="caps",
              activation="sigmoid", output_degree=None)
    first, started = mod._widened_start(m, t_eval, args, kw)
    assert first == 1 and started["n_samples"] == 10
    assert not {"init_time", "init_law", "inputs", "hidden"} & set(started)
    wide = started["model"]
    assert wide.H == 4
    n = narrow.sample(200, np.random.default_rng(2))[0]
    np.testing.assert_allclose(wide.log_prob(n), narrow.log_prob(n), rtol=0, atol=1e-10)
    with pytest.raises(SystemExit, match="no law at t = 25"):
        mod._widened_start(m, t_eval, types.SimpleNamespace(**{**vars(args), "widen_at": 2}), kw)


def test_checkpoint_law_rebuilds_the_solves_network(tmp_path):
    """``cme_accuracy.checkpoint_law``: the law of a solve's checkpoint at a time of its
    ``t_eval`` (by index or by value) and at its end, in the network the solve defined (width,
    output degree, activation and inputs as recorded): the same ``log P`` as the solution's."""
    mod = _load("cme_accuracy")
    m = cs.models.toggle_switch(rho=3.0, sb=0.1, su=0.2)
    caps = {"Gx": 2, "Gy": 2, "Px": 12, "Py": 12}
    path = tmp_path / "ck.npz"
    t_eval = [0.0, 0.04, 0.08]
    sol = cs.cme.solve(m, t_eval=t_eval, method="tdvp", caps=caps, n_samples=50, hidden=3,
                       output_degree=2, activation="tanh", inputs="start", init_law="product",
                       init_time=0.02, dt=0.02, seed=0, checkpoint=str(path))
    capv = np.array([caps[s] for s in m.network.species])
    n = sol.samples(2, n=100, seed=0)
    by_index, t = mod.checkpoint_law(path, capv, at=1)
    by_value, _ = mod.checkpoint_law(path, capv, at_time=0.04)
    last, t_last = mod.checkpoint_law(path, capv)
    assert (t, t_last) == (0.04, 0.08)
    assert (by_index.H, by_index.output_degree, by_index.activation) == (3, 2, "tanh")
    assert not np.allclose(by_index.input_scale, capv)  # the start's law, not n / M
    np.testing.assert_array_equal(by_index.log_prob(n), sol.log_prob(n, 1))
    np.testing.assert_array_equal(by_value.theta, by_index.theta)
    np.testing.assert_array_equal(last.log_prob(n), sol.log_prob(n, 2))
    with pytest.raises(SystemExit, match="not one of its times"):
        mod.checkpoint_law(path, capv, at_time=0.05)


def test_checkpoint_vs_ssa_tells_a_law_from_another():
    """``checkpoint_vs_ssa.compare`` on a product law of three binomial marginals against
    n = 20,000 independent draws of the same marginals, and of one marginal moved.

    Tolerances: a mean of 20,000 draws against another has standard error
    ``sd sqrt(2 / n)``; 5 of them. The Hellinger distance of an exact law to the histogram of n
    of its draws over K values has ``8 n H^2 ~ chi^2_{K-1}`` (K <= 12), so ``H < 0.02`` fails
    with P(chi^2_11 > 64) < 1e-8; the two halves' histograms (n/2 each) have
    ``8 H^2 / (4 / n) ~ chi^2_{K-1}`` and ``H < 0.035`` fails with P(chi^2_11 > 49) < 1e-6.
    The covariances of independent species are 0 with standard error ``sd_i sd_j / sqrt(n)``.
    The moved marginal (binomial(9, 0.5) against 0.3) is about 0.4 away in Hellinger."""
    from scipy.stats import binom

    mod = _load("checkpoint_vs_ssa")
    caps = np.array([10, 12, 8])
    laws = [binom(9, 0.3), binom(11, 0.5), binom(7, 0.6)]
    n = 20_000
    rng = np.random.default_rng(5)
    ssa = np.stack([d.rvs(n, random_state=rng) for d in laws], axis=1)
    sd = np.array([d.std() for d in laws])
    species, pairs = ["A", "B", "C"], (np.array([0, 1]), np.array([1, 2]))

    def product(dists):
        law = cs.cme.NADE(caps, hidden=2)
        law.set_product_law([d.logpmf(np.arange(c)) for d, c in zip(dists, caps)])
        return law

    rows, covs = mod.compare(product(laws), ssa, species, ["C", "A", "B"], pairs, n)
    assert [r[0] for r in rows] == ["C", "A", "B"] and [c[0] for c in covs] == ["A-B", "B-C"]
    for (name, mean_law, mean_ssa, h, halves), i in zip(rows, [2, 0, 1]):
        assert abs(mean_law - mean_ssa) < 5 * sd[i] * np.sqrt(2 / n), name
        assert abs(mean_law - laws[i].mean()) < 5 * sd[i] / np.sqrt(n), name
        assert h < 0.02 and halves < 0.035, (name, h, halves)
    for (name, cov_law, cov_ssa), (i, j) in zip(covs, zip(*pairs)):
        assert max(abs(cov_law), abs(cov_ssa)) < 5 * sd[i] * sd[j] / np.sqrt(n), name

    moved = product([binom(9, 0.5), *laws[1:]])
    rows, _ = mod.compare(moved, ssa, species, ["A", "B"], pairs, n)
    assert rows[0][3] > 0.3 and abs(rows[0][1] / rows[0][2] - 4.5 / 2.7) < 0.05
    assert rows[1][3] < 0.02
