"""Gradients through exact trajectories.

* The reverse sweep is checked against central finite differences of the relaxed
  straight-through surrogate with the same noise (an independent NumPy implementation below),
  to 1e-8 relative: this checks the code, not the estimator.
* The estimators are checked against exact gradients (analytic, or FSP sensitivities): the score
  estimator is unbiased, so ``|estimate - exact| < 4 SE`` (two-sided P = 6e-5 per component under
  a normal approximation of the mean of 10^4 i.i.d. contributions); the default straight-through
  configuration must be within 5 % (the issue's accuracy goal; its bias is measured in
  benchmarks/GRADIENTS.md), and its own sampling error is kept well below that.
"""

import numba
import numpy as np
import pytest

import cupyssa as cs
from conftest import mass_action_orders_network
from cupyssa.gradients import _forward, _tape_dtype
from cupyssa.kernels import backward
from cupyssa.kernels.cpu import default as kernels
from cupyssa.kernels.philox import STREAM_FORWARD, STREAM_GUMBEL, split_seed, uniform_pair
from cupyssa.kernels.trajectory import window_cdf


class LinearLoss:
    """L = sum_i sum_{m,s} C[i,m,s] Y[i,m,s] with fixed coefficients: dL/dY = C."""

    def __init__(self, C):
        self.C = C

    def value(self, Y):
        return float((self.C * Y).sum())

    def grad(self, Y):
        return self.C

    def weight_grad(self, Y):
        return (self.C * Y).sum(axis=(1, 2))


def record(net, x0, theta, t_eval, seed, mode, width, n):
    """Forward records with tapes long enough for every trajectory."""
    horizon = t_eval[-1] + width if mode == backward.KERNEL else -np.inf
    probe = _forward(kernels, net, x0[None], theta[None], 0, n, 0.0, t_eval, seed, 10 ** 7, mode,
                     width, horizon, 0, np.uint8, 8)
    return _forward(kernels, net, x0[None], theta[None], 0, n, 0.0, t_eval, seed, 10 ** 7, mode,
                    width, horizon, int(probe.k.max()) + 1, _tape_dtype(net.n_reactions), 8)


def gumbel_logits(net, seed, traj, k, r, x, theta):
    """The conditional Gumbel-perturbed log-propensities z (DESIGN.md top-down construction),
    written independently of the kernel: the maximum z_r = log a0 - log(-log u_r), the others
    Gumbel(log a_j) = log a_j - log(-log u_j) truncated below z_r, with u_j reaction j's uniform
    of the step's Gumbel stream."""
    lo, hi = split_seed(seed)
    a = net.propensities(x.astype(float), theta)
    M = a.size
    u = [uniform_pair(lo, hi, np.uint64(traj), np.uint64(k), np.uint64(STREAM_GUMBEL + q // 2))[q % 2]
         for q in range(M)]
    z_max = np.log(a.sum()) - np.log(-np.log(u[r]))
    z = np.full(M, -np.inf)
    for j in range(M):
        if j == r:
            z[j] = z_max
        elif a[j] > 0:
            g = np.log(a[j]) - np.log(-np.log(u[j]))
            z[j] = -np.logaddexp(-z_max, -g)  # Gumbel(log a_j) truncated below z_max
    return z, a


def surrogate_loss(net, theta, theta0, x0, t_eval, seg, i, C, mode, width, temperature, seed):
    """The straight-through surrogate of one trajectory as a smooth function of theta:
    x~_{k+1} = x~_k + nu^T (h_k + y_k(theta, x~_k) - y_k(theta0, x_k)),
    t~_{k+1} = t~_k + E_k / a0(x~_k; theta), with the noise (E_k, g_k) and the discrete structure
    (events, observation steps) of the recorded path held fixed."""
    lo, hi = split_seed(seed)
    nu = net.stoichiometry.astype(float)
    K = int(seg.k[i])
    tape = list(seg.tape[i, :K])
    x_hard = x0.astype(float).copy()
    # hard path, and the first event after the grid for linear observations
    xs_hard = [x_hard.copy()]
    for r in tape:
        x_hard = x_hard + nu[r]
        xs_hard.append(x_hard.copy())
    a_last = net.propensities(xs_hard[-1], theta0)
    extra = mode == backward.LINEAR and a_last.sum() > 0
    if extra:
        u_tau, u_sel = uniform_pair(lo, hi, np.uint64(i), np.uint64(K), np.uint64(STREAM_FORWARD))
        cum = np.cumsum(a_last)
        tape.append(int(np.argmax((cum > u_sel * cum[-1]) & (a_last > 0))))
    xt = x0.astype(float).copy()
    tt = 0.0
    xs, ts = [xt.copy()], [tt]
    for k, r in enumerate(tape):
        z0, a0vec = gumbel_logits(net, seed, i, k, r, xs_hard[k], theta0)
        g = z0 - np.log(np.where(a0vec > 0, a0vec, 1.0))
        a = net.propensities(xt, theta)
        with np.errstate(divide="ignore"):
            z = np.where(np.isfinite(z0), np.log(np.where(a > 0, a, 1e-300)) + g, -np.inf)
        y = np.exp((z - z.max()) / temperature)
        y /= y.sum()
        y0 = np.exp((z0 - z0.max()) / temperature)
        y0 /= y0.sum()
        h = np.zeros_like(y)
        h[r] = 1.0
        u_tau = uniform_pair(lo, hi, np.uint64(i), np.uint64(k), np.uint64(STREAM_FORWARD))[0]
        tt = tt - np.log(u_tau) / a.sum()
        xt = xt + (h + y - y0) @ nu
        xs.append(xt.copy())
        ts.append(tt)
    L = 0.0
    for m, tm in enumerate(t_eval):
        if mode == backward.FILL:
            Y = xs[seg.obs_step[i, m]]
        elif mode == backward.LINEAR:
            k = seg.obs_step[i, m]
            if k + 1 < len(xs):
                lam = (tm - ts[k]) / (ts[k + 1] - ts[k])
                Y = xs[k] + lam * (xs[k + 1] - xs[k])
            else:
                Y = xs[k]
        else:
            Y = 0.0
            for k in range(len(xs)):
                f_hi = 1.0 if k + 1 >= len(xs) else window_cdf((ts[k + 1] - tm) / width)
                f_lo = 0.0 if k == 0 else window_cdf((ts[k] - tm) / width)
                Y = Y + xs[k] * (f_hi - f_lo)
        L += C[i, m] @ Y
    return L


NETWORKS = {
    "dimerization": (cs.models.dimerization(k1=0.02, k2=0.3, A0=30).network,
                     {"A": 30, "B": 0}, {"k1": 0.02, "k2": 0.3}),
    "laws": (cs.ReactionNetwork.from_string("""
        G -> G + P ; hill(P, vmax, K, n)
        G -> G + Q ; hillr(P, vmax2, K2, n2)
        P -> 0 ; mm(P, vm, Km)
        Q -> 0 ; g
        0 -> Y ; neural(sigmoid, kk, b, w1*P, w2*Q)
        Y -> 0 ; g
        P + Q -> C ; kc
    """), {"G": 1, "P": 3, "Q": 2, "Y": 0, "C": 0},
        dict(vmax=6.0, K=4.0, n=2.3, vmax2=5.0, K2=3.0, n2=1.7, vm=3.0, Km=5.0, g=0.5, kk=4.0,
             b=-0.5, w1=0.2, w2=-0.1, kc=0.05)),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("mode", [backward.FILL, backward.LINEAR, backward.KERNEL])
def test_reverse_sweep_equals_finite_differences_of_the_surrogate(name, mode):
    net, x0d, params = NETWORKS[name]
    theta0 = net.parameter_vector(params)
    x0 = net.initial_vector(x0d)
    t_eval = np.array([0.3, 0.7, 1.0])
    width, temperature, seed, n = 0.15, 0.5, 7, 3
    seg = record(net, x0, theta0, t_eval, seed, mode, width, n)
    C = np.random.default_rng(1).normal(size=(n, len(t_eval), net.n_species))
    grads = np.empty((n, net.n_parameters))
    xs, ts = np.empty((n, net.n_species), dtype=np.int64), np.empty(n)
    lo, hi = split_seed(seed)
    path_end = t_eval[-1] + width if mode == backward.KERNEL else t_eval[-1]
    kernels.replay_batch(seg.x, theta0[None], 0, seg.t, seg.k, seg.tape, seg.t_checkpoints,
                         seg.checkpoint_every, seg.obs_step, seg.obs_frac, t_eval, C, mode, width,
                         path_end, backward.STRAIGHT_THROUGH, 1.0 / temperature, np.zeros(n), lo,
                         hi, net.tables, grads, xs, ts)
    assert (seg.k > 3).all()
    for i in range(n):
        for p in range(net.n_parameters):
            # central differences, step 1e-5 relative: truncation ~ h^2 L''' ~ 1e-10 relative,
            # rounding ~ 1e-16 / 1e-5; the surrogate is smooth because the structure is fixed
            h = 1e-5 * max(abs(theta0[p]), 1e-2)
            tp, tm = theta0.copy(), theta0.copy()
            tp[p] += h
            tm[p] -= h
            fd = (surrogate_loss(net, tp, theta0, x0, t_eval, seg, i, C, mode, width, temperature, seed)
                  - surrogate_loss(net, tm, theta0, x0, t_eval, seg, i, C, mode, width, temperature,
                                   seed)) / (2 * h)
            scale = max(np.abs(grads[i]).max(), 1e-12)
            assert abs(grads[i, p] - fd) <= 1e-8 * scale + 1e-7 * abs(fd), (i, p, grads[i, p], fd)


@pytest.mark.parametrize("temperature", [2.0, 1.0, 0.1])
def test_conditional_softmax_has_the_law_of_the_unconditional_gumbel_softmax(temperature):
    """The top-down construction (the event r drawn from a / a0, then the Gumbels given
    argmax = r from exponentials) against the definition, y = softmax((log a + g) / T) with
    g_j iid Gumbel(0, 1): the two samples of each y_j have one law. Two-sample Kolmogorov-Smirnov
    at n = 20,000 per side, fixed seeds; under the null p < 1e-4 has probability 1e-4 per check,
    while a wrong scale of the maximum (e.g. e_r taken as a uniform instead of -log u) moves the
    laws by far more than the KS resolution ~ 1.36 sqrt(2 / n) = 0.014. The coefficients the sweep
    multiplies by are c_j = y_j / (T a_j), 0 for the reaction with a_j = 0 (T = 2 takes the power
    w^(p - 1) through pow with a negative exponent, T = 1 and 0.1 by repeated squaring)."""
    from scipy.stats import ks_2samp

    a = np.array([1.0, 0.0, 2.0, 3.5, 0.5])  # a zero propensity takes no part
    a0, M, n = a.sum(), a.size, 20_000
    rng = np.random.default_rng(11)
    r = rng.choice(M, size=n, p=a / a0)
    e = rng.exponential(size=(n, M + 1))  # the sweep's Gumbel stream as exponentials -log u
    y_top = np.empty((n, M))
    c_top = np.empty((n, M))
    y, c = np.empty(M), np.empty(M)
    for i in range(n):
        gumbel = np.ascontiguousarray(e[i].reshape(-1, 2)[:, :, None])  # [(M + 1) // 2, 2, 1]
        kernels.conditional_softmax(gumbel, 0, r[i], a, a0, 1.0 / temperature, y, c)
        y_top[i], c_top[i] = y, c
    np.testing.assert_allclose(y_top.sum(axis=1), 1.0, rtol=1e-14)
    live = a > 0
    np.testing.assert_allclose(c_top[:, live], y_top[:, live] / (temperature * a[live]),
                               rtol=1e-13, atol=1e-300)
    np.testing.assert_array_equal(c_top[:, ~live], 0.0)
    with np.errstate(divide="ignore"):
        z = (np.log(a) + rng.gumbel(size=(n, M))) / temperature
    z -= z.max(axis=1, keepdims=True)
    y_def = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(y_top[:, 1], 0.0)
    for j in (0, 2, 3, 4):
        assert ks_2samp(y_top[:, j], y_def[:, j]).pvalue > 1e-4, j


def test_exponential_is_minus_log_u_within_two_ulp():
    """``backward.exponential``, the sweep's ``-log u`` without libm, against ``np.log``: in every
    binade the uniforms reach (``u = (2v + 1) 2^-53``, so ``2^-53 <= u <= 1 - 2^-53``), at the
    binades' edges and around the reduction's switch at ``1/sqrt 2``. Its error: ``m - 1`` exact
    (Sterbenz), ``m + 1`` and the division one rounding each, so ``s`` and ``log m ~ 2 s`` within
    1 ulp; the series' truncation < 1e-18 and its own roundings ~ 1e-18 relative (``z p < 0.01``);
    ``e ln2_hi`` exact; the final addition 0.5 ulp: < 1.5 ulp, < 2 with libm's own 0.5. Compiled
    and plain Python, the same doubles."""
    rng = np.random.default_rng(5)
    binade = rng.integers(1, 54, size=200_000)
    u = (1.0 + rng.random(binade.size)) * 2.0 ** -binade.astype(float)
    edges = 2.0 ** -np.arange(1.0, 54.0)
    switch = np.sqrt(0.5) * (1.0 + np.arange(-8, 9) * 2.0 ** -52)
    u = np.concatenate([u[u < 1.0], edges, np.nextafter(edges, 1.0), switch,
                        [2.0 ** -53, 1.0 - 2.0 ** -53, 3.0 * 2.0 ** -53]])
    compiled = numba.njit(backward.exponential)
    got = np.array([compiled(v) for v in u])
    want = -np.log(u)
    assert np.all(np.abs(got - want) <= 2.0 * np.spacing(want))
    assert all(backward.exponential(v) == g for v, g in zip(u[::1000], got[::1000]))


def test_tape_round_trip_recovers_the_forward_states_and_times():
    net = cs.models.vilar_oscillator().network
    theta = net.parameter_vector(cs.models.vilar_oscillator().params)
    x0 = net.initial_vector(cs.models.vilar_oscillator().x0)
    t_eval = np.linspace(0, 20, 5)
    seg = record(net, x0, theta, t_eval, 3, backward.FILL, 0.0, 4)
    C = np.zeros((4, 5, net.n_species))
    grads = np.empty((4, net.n_parameters))
    xs, ts = np.empty((4, net.n_species), dtype=np.int64), np.empty(4)
    lo, hi = split_seed(3)
    kernels.replay_batch(seg.x, theta[None], 0, seg.t, seg.k, seg.tape, seg.t_checkpoints,
                         seg.checkpoint_every, seg.obs_step, seg.obs_frac, t_eval, C,
                         backward.FILL, 0.0, 20.0, backward.STRAIGHT_THROUGH, 1.0, np.zeros(4), lo,
                         hi, net.tables, grads, xs, ts)
    assert (seg.k > 10_000).all()
    np.testing.assert_array_equal(xs, np.broadcast_to(x0, xs.shape))  # states exactly
    np.testing.assert_array_equal(ts, 0.0)  # step 0 is a checkpoint: the exact initial time
    # the states on the grid, recovered backwards from the final state through the tape, equal
    # the forward's observations exactly
    nu = net.stoichiometry
    for i in range(4):
        path = np.cumsum(np.vstack([x0, nu[seg.tape[i, :seg.k[i]]]]), axis=0)
        np.testing.assert_array_equal(path[seg.obs_step[i]], seg.states[i])
        np.testing.assert_array_equal(path[-1], seg.x[i])


def immigration_death_exact(k, g, T):
    """d E[X(T)] / d(k, g) for X(0) = 0: E[X(T)] = (k/g)(1 - e^{-gT})."""
    e = np.exp(-g * T)
    return np.array([(1 - e) / g, -(k / g ** 2) * (1 - e) + (k / g) * T * e])


def fsp_exact_gradient(model, t, species):
    """Exact d E[species(t)] / d theta by FSP sensitivities."""
    res = cs.cme.fsp(model, t_eval=[t], sensitivities=True)
    s = model.network.species.index(species)
    return res.d_mean()[0, s]


def mean_loss(net, T, species):
    W = np.zeros((T, net.n_species))
    W[-1, net.species.index(species)] = 1.0
    return cs.losses.Mean(W)


@pytest.mark.parametrize("case", ["immigration_death", "dimerization", "telegraph"])
def test_score_estimator_matches_exact_gradients(case):
    if case == "immigration_death":
        model, t, species = cs.models.immigration_death(k=10, g=0.1), 10.0, "X"
        exact = immigration_death_exact(10, 0.1, 10.0)
    elif case == "dimerization":
        model, t, species = cs.models.dimerization(k1=0.01, k2=0.1, A0=100), 0.5, "B"
        exact = fsp_exact_gradient(model, t, species)
    else:
        model, t, species = cs.models.telegraph(), 2.0, "D"
        res = cs.cme.fsp(model, t_eval=[t], sensitivities=True,
                         bounds={"G0": 1, "G1": 1, "M": 60, "D": 40})
        assert res.lost[-1] < 1e-10
        exact = res.d_mean()[0, model.network.species.index(species)]
    net = model.network
    _, grad = cs.value_and_grad(mean_loss(net, 1, species), model, t_eval=[t], n_trajectories=10_000,
                                seed=2024, estimator="score", observation="fill")
    z = (grad.vector - exact) / grad.stderr_vector
    assert np.all(np.abs(z) < 4), (grad.vector, exact, z)


@pytest.mark.parametrize("case", ["immigration_death", "dimerization"])
def test_default_straight_through_within_five_percent(case):
    if case == "immigration_death":
        model, t, species = cs.models.immigration_death(k=10, g=0.1), 10.0, "X"
        exact = immigration_death_exact(10, 0.1, 10.0)
    else:
        model, t, species = cs.models.dimerization(k1=0.01, k2=0.1, A0=100), 0.5, "B"
        exact = fsp_exact_gradient(model, t, species)
    _, grad = cs.value_and_grad(mean_loss(model.network, 1, species), model, t_eval=[t],
                                n_trajectories=100_000, seed=99)
    # H0: |bias| <= 5 % of the exact gradient; reject only on 4-sigma evidence against it
    # (|estimate - exact| > 0.05 |exact| + 4 SE). The sampling error must be small enough for the
    # test to have power: SE < 2.5 % means a 15 % bias (fill observations are off by ~50 %) fails.
    rel_se = grad.stderr_vector / np.abs(exact)
    assert np.all(rel_se < 0.025), rel_se
    assert np.all(np.abs(grad.vector - exact) < 0.05 * np.abs(exact) + 4 * grad.stderr_vector), \
        (grad.vector, exact, grad.stderr_vector)


@pytest.mark.parametrize("specialize", [None, True])
def test_gradient_is_reproducible_across_threads_and_memory_budget(specialize):
    """The same gradient with 1 thread and with the default, and with the ensemble in chunks;
    ``specialize=True`` runs the lanes sweep (``cupyssa.lanes``), whose groups of trajectories
    the chunks cut differently."""
    model = cs.models.dimerization(k1=0.01, k2=0.1, A0=100)
    loss = mean_loss(model.network, 3, "B")
    kw = dict(t_eval=[0.1, 0.3, 0.5], n_trajectories=500, seed=5, specialize=specialize)
    _, ref = cs.value_and_grad(loss, model, **kw)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        _, one = cs.value_and_grad(loss, model, **kw)
    finally:
        numba.set_num_threads(threads)
    _, small = cs.value_and_grad(loss, model, memory_budget=20_000, **kw)
    np.testing.assert_array_equal(ref.vector, one.vector)
    np.testing.assert_array_equal(ref.vector, small.vector)


def test_tape_costs_at_most_two_bytes_per_step():
    # the benchmark model: dimerization A0 = 1000, ~4 000 events per trajectory by t = 50
    model = cs.models.dimerization()
    _, grad = cs.value_and_grad(mean_loss(model.network, 1, "B"), model, t_eval=[50.0],
                                n_trajectories=200, seed=3)
    assert grad.tape_bytes_per_step <= 2.0


def test_per_trajectory_contributions_sum_to_the_gradient():
    model = cs.models.immigration_death()
    _, grad = cs.value_and_grad(mean_loss(model.network, 1, "X"), model, t_eval=[5.0],
                                n_trajectories=200, seed=1, per_trajectory=True)
    np.testing.assert_allclose(grad.per_trajectory.sum(0), grad.vector, rtol=1e-12)
    assert set(grad) == {"k", "g"} and set(grad.stderr) == {"k", "g"}


def test_gradient_errors():
    model = cs.models.immigration_death()
    loss = mean_loss(model.network, 1, "X")
    with pytest.raises(cs.ParameterError, match="unknown estimator"):
        cs.value_and_grad(loss, model, t_eval=[1.0], estimator="reinforce")
    with pytest.raises(cs.ParameterError, match="unknown observation"):
        cs.value_and_grad(loss, model, t_eval=[1.0], observation="spline")
    with pytest.raises(cs.ParameterError, match="temperature"):
        cs.value_and_grad(loss, model, t_eval=[1.0], temperature=0.0)

    class NoWeights:
        def value(self, Y):
            return 0.0

        def grad(self, Y):
            return Y * 0

    with pytest.raises(cs.ParameterError, match="weight_grad"):
        cs.value_and_grad(NoWeights(), model, t_eval=[1.0], estimator="score")
    with pytest.raises(cs.ParameterError, match="one parameter vector"):
        cs.value_and_grad(loss, model, t_eval=[1.0], params={"k": [1.0, 2.0]})


def test_time_recovery_by_reverse_subtraction_matches_checkpoints():
    # checkpoint_every=1: every t_k is the forward's exact double; a checkpoint interval longer
    # than any path: pure reverse subtraction t_k = t_{k+1} - tau_k, whose rounding error is a
    # random walk of ~sqrt(K) ulps of t (K ~ 4e3 here: ~1e-14 relative), far below 1e-9
    model = cs.models.dimerization(k1=0.002, k2=0.1, A0=400)
    loss = mean_loss(model.network, 4, "B")
    kw = dict(t_eval=[1.0, 2.0, 4.0, 8.0], n_trajectories=50, seed=8)
    for observation in ("kernel", "linear"):
        _, exact_times = cs.value_and_grad(loss, model, checkpoint_every=1, observation=observation, **kw)
        _, reversed_times = cs.value_and_grad(loss, model, checkpoint_every=10 ** 9,
                                              observation=observation, **kw)
        np.testing.assert_allclose(reversed_times.vector, exact_times.vector, rtol=1e-9)


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_falling_factorial_derivative(order):
    """d/dn C(n, order) of the kernels (closed forms up to order 3) against the derivative of the
    polynomial n (n-1) ... (n-order+1) / order!, computed by numpy.polynomial."""
    from math import factorial

    from cupyssa.kernels.propensity import falling_ratio_derivative

    poly = np.polynomial.Polynomial.fromroots(np.arange(order)) / factorial(order)
    for n in (0.0, 1.0, 2.0, 7.0, 1234.0):
        want = poly.deriv()(n)
        assert falling_ratio_derivative(n, order) == pytest.approx(want, rel=1e-14, abs=1e-14)
        assert kernels.falling_ratio_derivative(n, order) == pytest.approx(want, rel=1e-14, abs=1e-14)


def test_specialized_recording_gives_the_same_gradient(monkeypatch, tmp_path):
    """``specialize=True`` records the same trajectories and sweeps them back with the generated
    step functions, so value and gradient are identical; ``specialize=None`` (the default) uses
    each of the two kernels exactly when that compiles nothing."""
    import cupyssa.backends.cpu as cpu_backend
    import cupyssa.gradients as gradients

    model = cs.models.dimerization(A0=60, k1=0.01)
    loss = cs.losses.Mean(np.array([[0.0, 1.0], [1.0, 0.0]]))
    t = np.array([0.5, 1.0])
    used = []  # the family of each kernels_for call: the recording's, then the sweep's
    kernels_for = gradients.kernels_for
    monkeypatch.setattr(gradients, "kernels_for", lambda network, specialize=False:
                        used.append(specialize) or kernels_for(network, specialize))

    def run(specialize):
        used.clear()
        return cs.value_and_grad(loss, model, t_eval=t, n_trajectories=40, seed=5,
                                 specialize=specialize)

    # no family built in this process and an empty cache directory: the generic kernels
    with monkeypatch.context() as m:
        m.setattr(numba.config, "CACHE_DIR", str(tmp_path))
        m.setattr(cpu_backend, "_FAMILIES", {})
        m.setattr(cpu_backend, "_PROBED", {})
        run(None)
        assert used == [False, False]
    out = [run(s) for s in (False, True)]
    assert used == [True, True]
    assert out[0][0] == out[1][0]
    assert all(out[0][1][k] == out[1][1][k] for k in ("k1", "k2"))
    # the score sweep calls the generated propensity adjoints without the state adjoints; the
    # other observation modes call the same generated functions as the default (each mode is one
    # more compiled sweep, about 20 s)
    a, b = (cs.value_and_grad(loss, model, t_eval=t, n_trajectories=40, seed=5, specialize=s,
                              estimator="score") for s in (False, True))
    assert a[0] == b[0] and all(a[1][k] == b[1][k] for k in ("k1", "k2"))
    # compiled for the recording and the sweep now: the default takes both, same result
    auto = run(None)
    assert used == [True, True]
    assert auto[0] == out[0][0] and all(auto[1][k] == out[0][1][k] for k in ("k1", "k2"))
    # a later process (no family built) finds them in the disk cache
    monkeypatch.setattr(cpu_backend, "_FAMILIES", {})
    run(None)
    assert used == [True, True]


def _generated(source, name):
    """A generated kernel function as plain Python, its callees the shared kernels' (run
    elementwise on NumPy scalars: the same IEEE operations as compiled)."""
    from cupyssa.kernels import propensity as shared

    namespace = dict(vars(shared))
    exec(source, namespace)
    return namespace[name]


@pytest.mark.parametrize("network", ["orders", "hill", "vilar"])
def test_generated_reverse_functions_give_the_table_driven_doubles(network):
    """``unfire``, ``stoich_adjoint`` and ``rates_adjoint`` of ``cupyssa.specialize`` against the
    table-driven defaults of ``cupyssa.kernels.backward``, run as plain Python on random states,
    bit for bit: mass action of orders 0-3 in one and two species (literal adjoints, branch-free
    step back), a Hill law (the step back branches on the reaction and calls the shared
    propensity; the adjoints stay table-driven), and the Vilar oscillator (16 reactions)."""
    from cupyssa import specialize
    from cupyssa.kernels import backward
    from cupyssa.kernels.propensity import propensity

    if network == "vilar":
        net = cs.models.vilar_oscillator().network
    else:
        net = mass_action_orders_network(with_hill=network == "hill")[0]
    assert (specialize.rates_adjoint_source(net) is None) == (network == "hill")
    assert ("if r == 0" in specialize.unfire_source(net)) == (network != "orders")  # branches
    unfire = _generated(specialize.unfire_source(net), "unfire")
    stoich_adjoint = _generated(specialize.stoich_adjoint_source(net), "stoich_adjoint")
    rates = specialize.rates_adjoint_source(net)
    rates_adjoint = _generated(rates, "rates_adjoint") if rates else backward.rates_adjoint
    tab, M, S, P = net.tables, net.n_reactions, net.n_species, net.n_parameters
    rng = np.random.default_rng(11)
    for _ in range(40):
        theta = rng.uniform(0.1, 3.0, P)
        x = rng.integers(3, 40, S).astype(np.int64)
        r = int(rng.integers(M))
        want_x, got_x = x.copy(), x.copy()
        want_a, got_a = np.full(M, np.nan), np.full(M, np.nan)
        backward.unfire(r, want_x, theta, want_a, tab)
        unfire(r, got_x, theta, got_a, tab)
        np.testing.assert_array_equal(got_x, want_x)
        # the dependents of r, in the same doubles; the branch-free step back refreshes every
        # propensity some reaction changes, each to its value at the new state
        refreshed = ~np.isnan(want_a)
        np.testing.assert_array_equal(got_a[refreshed], want_a[refreshed])
        exact = [propensity(j, got_x, theta, tab) for j in range(M)]
        np.testing.assert_array_equal(got_a[~np.isnan(got_a)], np.array(exact)[~np.isnan(got_a)])
        xbar = rng.normal(size=S)
        want_s, got_s = np.empty(M), np.empty(M)
        backward.stoich_adjoint(xbar, want_s, tab)
        stoich_adjoint(xbar, got_s, tab)
        np.testing.assert_array_equal(got_s, want_s)
        abar = rng.normal(size=M) * (rng.random(M) < 0.8)  # some reactions skipped
        for with_x in (True, False):
            want = (xbar.copy(), rng.normal(size=P))
            got = (want[0].copy(), want[1].copy())
            backward.rates_adjoint(x, theta, abar, *want, with_x, tab)
            rates_adjoint(x, theta, abar, *got, with_x, tab)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])


def test_replay_arguments_are_the_sweeps_with_mode_and_estimator():
    """``replay_batch`` names its arguments through ``replay_arguments``; the compiled sweep
    receives them less the observation mode and the estimator, in the same order."""
    import inspect

    from cupyssa.kernels import cpu

    replay = list(inspect.signature(cpu.replay_arguments).parameters)
    sweep = list(inspect.signature(cpu.sweep_batch).parameters)
    assert [p for p in replay if p not in ("mode", "estimator")] == sweep
    args = tuple(range(len(replay)))
    mode, estimator, rest = cpu.split_replay_args(args)
    assert (mode, estimator) == (replay.index("mode"), replay.index("estimator"))
    assert rest == tuple(i for i, p in enumerate(replay) if p not in ("mode", "estimator"))
