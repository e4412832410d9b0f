"""Exact SSA: statistics against analytic laws and exact distributions, backend agreement,
reproducibility, and clear errors.

Statistical tolerances. With fixed seeds every test is deterministic; the thresholds are chosen
so that a correct simulator fails with negligible probability over the seeds one might pick:
ensemble means are z-tested, ``z = (mean - mu) / (sigma / sqrt(n))``, ``|z| < 4`` at each of ~10
times (two-sided P(|z| > 4) = 6.3e-5 per time); sample variances are tested through
``Y = sqrt(n/2) (S^2 / sigma^2 - 1)``, ``|Y| < 5`` (DSMTS criterion; for a Poisson law the exact
standard error of S^2 is used instead); histograms by chi-square with p > 1e-4.
"""

import itertools

import numba
import numpy as np
import pytest
from scipy import linalg, stats

import cupyssa as cs
from conftest import chisquare_pvalue, mass_action_orders_network
from cupyssa.errors import InitialStateError, MaxStepsExceeded, ParameterError, SimulationError

N = 20_000


def test_immigration_death_mean_and_variance_are_poisson():
    k, g = 10.0, 0.1
    t = np.linspace(1.0, 30.0, 10)
    res = cs.simulate(cs.models.immigration_death(k, g), t_eval=t, n_trajectories=N, seed=11)
    X = res["X"].astype(float)
    lam = k / g * (1 - np.exp(-g * t))  # X(t) ~ Poisson(lam(t)) from X(0) = 0
    z = (X.mean(0) - lam) / np.sqrt(lam / N)
    assert np.all(np.abs(z) < 4), z
    # Var(S^2) = (mu4 - sigma^4 (n-3)/(n-1)) / n with mu4 = lam (1 + 3 lam) for a Poisson law
    se = np.sqrt((lam * (1 + 3 * lam) - lam ** 2 * (N - 3) / (N - 1)) / N)
    zv = (X.var(0, ddof=1) - lam) / se
    assert np.all(np.abs(zv) < 4), zv


def test_birth_death_mean_and_variance():
    b, d, x0 = 0.1, 0.12, 100
    t = np.linspace(1.0, 10.0, 10)
    res = cs.simulate(cs.models.birth_death(b, d, x0), t_eval=t, n_trajectories=N, seed=5)
    X = res["X"].astype(float)
    r = b - d
    mu = x0 * np.exp(r * t)
    var = x0 * (b + d) / r * np.exp(r * t) * (np.exp(r * t) - 1)  # linear birth-death
    z = np.sqrt(N) * (X.mean(0) - mu) / np.sqrt(var)
    Y = np.sqrt(N / 2) * (X.var(0, ddof=1) / var - 1)
    assert np.all(np.abs(z) < 4), z
    assert np.all(np.abs(Y) < 5), Y


def test_immigration_death_stationary_law_is_poisson():
    # start every trajectory from a Poisson(k/g) draw: the stationary law, so X(t) is exactly
    # Poisson(k/g) at every t and one sample per trajectory gives an i.i.d. sample
    k, g = 10.0, 0.1
    x0 = np.random.default_rng(3).poisson(k / g, size=N)
    res = cs.simulate(cs.models.immigration_death(k, g), x0={"X": x0}, t_eval=[5.0],
                      n_trajectories=N, seed=2)
    x = res["X"][:, 0]
    counts = np.bincount(x, minlength=300)[:300]
    assert counts.sum() == N
    assert chisquare_pvalue(counts, stats.poisson.pmf(np.arange(300), k / g)) > 1e-4


def dense_dimerization_law(A0, k1, k2, times):
    """Exact distribution of B(t) for 2A -> B, B -> 2A from (A0, 0): expm of the generator on the
    reachable states B = 0..A0//2 (A = A0 - 2B)."""
    nB = A0 // 2 + 1
    Q = np.zeros((nB, nB))
    for B in range(nB):
        A = A0 - 2 * B
        fwd, back = k1 * A * (A - 1) / 2, k2 * B
        if B + 1 < nB:
            Q[B + 1, B] += fwd
        Q[B, B] -= fwd
        if B > 0:
            Q[B - 1, B] += back
        Q[B, B] -= back
    p0 = np.zeros(nB)
    p0[0] = 1
    return np.array([linalg.expm(Q * t) @ p0 for t in times])


@pytest.mark.parametrize("backend, n", [("cpu", N), ("numpy", 4000)])
def test_dimerization_matches_exact_distribution(backend, n):
    A0, k1, k2 = 20, 0.1, 0.5
    times = np.array([0.05, 0.2, 1.0, 3.0])
    res = cs.simulate(cs.models.dimerization(k1, k2, A0), t_eval=times, n_trajectories=n,
                      seed=17, backend=backend)
    assert (res["A"] + 2 * res["B"] == A0).all()
    p = dense_dimerization_law(A0, k1, k2, times)
    for m in range(len(times)):
        counts = np.bincount(res["B"][:, m], minlength=p.shape[1])
        assert chisquare_pvalue(counts, p[m]) > 1e-4, m


def test_vilar_oscillator_oscillates():
    t = np.arange(0.0, 400.01, 0.5)
    res = cs.simulate(cs.models.vilar_oscillator(), t_eval=t, n_trajectories=8, seed=1)
    R = res["R"][:, t >= 50].astype(float)
    R -= R.mean(axis=1, keepdims=True)
    lags = np.arange(80)
    ac = np.array([np.mean([x[:x.size - L] @ x[L:] / (x @ x) for x in R]) for L in lags])
    # a non-oscillating (e.g. Ornstein-Uhlenbeck-like) signal has ac(L) = exp(-L/tau) >= 0, and the
    # sample autocorrelation of 8 x 350 h of signal has a standard error of a few 0.01; the
    # circadian oscillator (period ~ 24 h) must show a trough near half a period and a peak
    # near one period
    trough = lags[(lags * 0.5 >= 6) & (lags * 0.5 <= 18)]
    peak = lags[(lags * 0.5 >= 18) & (lags * 0.5 <= 32)]
    assert ac[trough].min() < -0.3
    assert ac[peak].max() > 0.3


@pytest.mark.parametrize("model", [cs.models.dimerization(A0=60, k1=0.01), cs.models.telegraph(),
                                   cs.models.schlogl_lattice((3,), x0=20)])
def test_cpu_and_numpy_backends_give_identical_trajectories(model):
    t = np.linspace(0, 0.5, 6)
    a = cs.simulate(model, t_eval=t, n_trajectories=300, seed=123, backend="cpu")
    b = cs.simulate(model, t_eval=t, n_trajectories=300, seed=123, backend="numpy")
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.n_events, b.n_events)


def test_hill_mm_neural_laws_agree_across_backends():
    net = cs.ReactionNetwork.from_string("""
        G -> G + P ; hill(P, vmax, K, n)
        G -> G + Q ; hillr(P, vmax, K, n)
        P -> 0 ; mm(P, vm, Km)
        Q -> 0 ; g
        0 -> Y ; neural(sigmoid, kk, b, w1*P, w2*Q)
        Y -> 0 ; g
    """)
    params = dict(vmax=20.0, K=10.0, n=2.5, vm=8.0, Km=5.0, g=0.5, kk=10.0, b=-1.0, w1=0.1, w2=-0.05)
    x0 = dict(G=1, P=0, Q=0, Y=0)
    t = np.linspace(0, 5, 6)
    a = cs.simulate(net, x0, t, params, n_trajectories=200, seed=4, backend="cpu")
    b = cs.simulate(net, x0, t, params, n_trajectories=200, seed=4, backend="numpy")
    np.testing.assert_array_equal(a.states, b.states)
    assert a["Q"][:, -1].mean() > 1 and a["Y"][:, -1].mean() > 1  # the laws produced events


def test_reproducible_across_threads_chunks_and_slices():
    model = cs.models.dimerization(A0=200, k1=0.005)
    t = np.linspace(0, 2, 5)
    ref = cs.simulate(model, t_eval=t, n_trajectories=1000, seed=99)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = cs.simulate(model, t_eval=t, n_trajectories=1000, seed=99)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(ref.states, one.states)
    chunked = cs.simulate(model, t_eval=t, n_trajectories=1000, seed=99, chunk_size=37)
    np.testing.assert_array_equal(ref.states, chunked.states)
    tail = cs.simulate(model, t_eval=t, n_trajectories=400, seed=99, first_trajectory=600)
    np.testing.assert_array_equal(ref.states[600:], tail.states)
    other = cs.simulate(model, t_eval=t, n_trajectories=1000, seed=100)
    assert (other.states != ref.states).any()
    assert ref.seed == 99 and cs.simulate(model, t_eval=t).seed is not None


def test_per_trajectory_parameters_and_initial_states():
    model = cs.models.immigration_death()
    ks = np.array([0.0, 5.0, 50.0])
    res = cs.simulate(model, t_eval=[0.0, 100.0], params={"k": np.repeat(ks, 2000)}, seed=1)
    assert res.n_trajectories == 6000
    means = res["X"][:, 1].reshape(3, 2000).mean(1)
    lam = ks / 0.1 * (1 - np.exp(-10.0))
    assert means[0] == 0
    assert np.all(np.abs(means[1:] - lam[1:]) / np.sqrt(lam[1:] / 2000) < 4)
    x0 = cs.simulate(model, x0={"X": [3, 7]}, t_eval=[0.0], seed=1).states[:, 0, 0]
    np.testing.assert_array_equal(x0, [3, 7])
    with pytest.raises(ParameterError, match="disagree"):
        cs.simulate(model, x0={"X": [3, 7]}, params={"k": [1.0, 2.0, 3.0]}, t_eval=[1.0])


def test_right_continuous_observation_and_absorbing_state():
    # X -> 0 from X = 1: the single event time is Exp(g); the state at t is 1 iff t < event
    model = cs.models.immigration_death(k=0.0, g=1.0, x0=1)
    res = cs.simulate(model, t_eval=[0.0, 0.5, 1.0, 50.0], n_trajectories=N, seed=8)
    survive = res["X"].mean(0)
    z = (survive - np.exp(-res.t)) / np.sqrt(np.exp(-res.t) * (1 - np.exp(-res.t)) / N + 1e-300)
    assert survive[0] == 1 and survive[-1] == 0
    assert np.all(np.abs(z[1:3]) < 4)
    assert (res.n_events <= 1).all()


def test_errors_are_clear():
    model = cs.models.dimerization()
    t = np.linspace(0, 50, 11)
    with pytest.raises(MaxStepsExceeded, match="trajectory 0 reached max_steps=50"):
        cs.simulate(model, t_eval=t, n_trajectories=4, seed=0, max_steps=50)
    # the same faulty reaction alone (the kernels' dense-row update of small networks) and
    # beside nine idle ones (the walk of the reaction's table entries)
    alone = cs.ReactionNetwork.from_string("A -> B ; mm(C, v, K)")
    padded = cs.ReactionNetwork.from_string(
        "A -> B ; mm(C, v, K)\n" + "\n".join(f"D{i} -> 0 ; k" for i in range(9)))
    assert alone.tables.dense_delta.shape[0] == 1 and padded.tables.dense_delta.shape[0] == 0
    for backend, net in itertools.product(("cpu", "numpy"), (alone, padded)):
        x0 = {s: 0 for s in net.species} | {"A": 1, "C": 5}
        params = {p: 1.0 for p in net.parameters}
        with pytest.raises(SimulationError, match="reaction 'R0' .* negative"):
            cs.simulate(net, x0, [0.0, 100.0], params, n_trajectories=3, seed=1, backend=backend)
    for backend in ("cpu", "numpy"):
        bad = cs.ReactionNetwork.from_string("0 -> A ; hill(A, v, K, n)")
        with pytest.raises(SimulationError, match="propensity of reaction 'R0' is negative, NaN"):
            # A^n / (K^n + A^n) = 0 / 0 at A = 0, K = 0, n = 1
            cs.simulate(bad, {"A": 0}, [1.0], {"v": 1.0, "K": 0.0, "n": 1.0}, seed=1, backend=backend)
    with pytest.raises(ParameterError, match="sorted"):
        cs.simulate(model, t_eval=[1.0, 0.5])
    with pytest.raises(ParameterError, match="NaN"):
        cs.simulate(model, t_eval=[0.0, np.nan])
    with pytest.raises(ParameterError, match="non-negative"):
        cs.simulate(model, t_eval=t, params={"k1": -1.0})
    with pytest.raises(InitialStateError, match="unknown species 'C'"):
        cs.simulate(model, x0={"C": 1}, t_eval=t)
    with pytest.raises(ParameterError, match="seed"):
        cs.simulate(model, t_eval=t, seed=-3)
    with pytest.raises(ValueError, match="unknown backend"):
        cs.simulate(model, t_eval=t, backend="gpu9000")
    with pytest.raises(SimulationError, match="int64"):
        cs.simulate(cs.models.immigration_death(g=0.0, x0=2 ** 31 - 1), t_eval=[0.0, 1.0], seed=1)


def test_specialized_kernel_gives_identical_trajectories_and_errors():
    # mass action of orders 0-3 with several reactant species, and a Hill law (shared code path)
    net, params, x0 = mass_action_orders_network()
    t = np.linspace(0, 5, 6)
    a = cs.simulate(net, x0, t, params, 200, seed=6)
    b = cs.simulate(net, x0, t, params, 200, seed=6,
                    specialize=True)
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.n_events, b.n_events)
    # small networks get the branch-free update (lookup tables, every dependent propensity)
    from cupyssa.network import recompute_all_dependents

    for model in (cs.models.dimerization(A0=80, k1=0.01), cs.models.birth_death()):
        assert recompute_all_dependents([list(d) for d in model.network.dependency_graph()])
        a = cs.simulate(model, t_eval=np.linspace(0, 5, 6), n_trajectories=50, seed=3)
        b = cs.simulate(model, t_eval=np.linspace(0, 5, 6), n_trajectories=50, seed=3,
                        specialize=True)
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.n_events, b.n_events)
    bad = cs.ReactionNetwork.from_string("A -> B ; mm(C, v, K)")
    with pytest.raises(SimulationError, match="reaction 'R0' .* negative"):
        cs.simulate(bad, {"A": 1, "B": 0, "C": 5}, [0.0, 100.0], {"v": 1.0, "K": 1.0},
                    n_trajectories=3, seed=1, specialize=True)


def test_specialize_refuses_large_networks_with_a_clear_error():
    model = cs.models.schlogl_lattice((16,))  # 94 reactions
    with pytest.raises(cs.NetworkError, match="specialize=True supports up to 32 reactions"):
        cs.simulate(model, t_eval=[0.1], seed=0, specialize=True)


def test_generated_source_is_written_once_for_the_disk_cache(tmp_path, monkeypatch):
    from cupyssa import codegen, specialize

    monkeypatch.setenv("CUPYSSA_CACHE_DIR", str(tmp_path / "gen"))
    monkeypatch.setattr(codegen, "_LOADED", {})
    net = cs.models.birth_death().network
    assert specialize.fire_function(net, load=False) is None  # nothing written to find out
    assert not (tmp_path / "gen").exists()
    fire = specialize.fire_function(net)
    files = list((tmp_path / "gen").glob("fire_*.py"))
    assert codegen.is_on_disk(fire) and len(files) == 1
    assert specialize.fire_source(net) in files[0].read_text()
    assert fire.__qualname__ == files[0].stem  # the tag that keeps each network's cache apart
    assert specialize.fire_function(net) is fire and specialize.fire_function(net, False) is fire
    # expression laws go the same way
    expr = cs.ReactionNetwork.from_string("0 -> X ; expr(k * exp(-X / 10))")
    assert set(expr.kernel_functions()) == {"expression_propensity", "expression_adjoint"}
    assert all(codegen.is_on_disk(f) for f in expr.kernel_functions().values())
    assert len(list((tmp_path / "gen").glob("expression_*.py"))) == 2
    # an unwritable location falls back to an in-memory module (compiled, not cached)
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("CUPYSSA_CACHE_DIR", str(blocker / "sub"))
    monkeypatch.setattr(codegen, "_LOADED", {})
    fire2 = specialize.fire_function(net)
    assert not codegen.is_on_disk(fire2) and fire2.__code__.co_code == fire.__code__.co_code


def two_level_running_sums(a, block=8):
    """The kernels' running sums, by their definition: reaction ``j`` of block ``b = j // block``
    has ``R_j = P_b + (a_{b block} + ... + a_j)``, where ``P_b`` adds the block totals ``s_0, ...,
    s_{b-1}`` one after the other and each block total adds its own reactions one after the other
    (Python floats, left to right)."""
    running, prefix = [], 0.0
    for lo in range(0, len(a), block):
        within = 0.0
        for j in range(lo, min(lo + block, len(a))):
            within = float(a[j]) if j == lo else within + float(a[j])
            running.append(within if lo == 0 else prefix + within)
        prefix += within
    return np.array(running)


@pytest.mark.parametrize("M", [1, 2, 5, 8, 9, 16, 17, 20, 94])  # one block (M <= 8) and several
def test_event_selection_is_the_inverse_cdf(M):
    """The kernels' selection against its definition: the first j whose running sum exceeds the
    target, the last positive propensity when rounding leaves the target at the total. Targets
    include every slice boundary exactly, and zero propensities at the ends and in between. The
    NumPy backend's vectorized running sums are the same doubles."""
    from cupyssa.backends.numpy_backend import running_sums
    from cupyssa.kernels.cpu import default

    rng = np.random.default_rng(M)
    for _ in range(200):
        a = rng.exponential(size=M) * (rng.random(M) < 0.7)
        if not a.any():
            a[rng.integers(M)] = 0.5
        running = two_level_running_sums(a)
        np.testing.assert_array_equal(running_sums(a[None, :])[0], running)
        cum = np.full(M, np.nan)
        total = default.cumulate(a, cum)
        assert total == running[-1]
        for target in np.concatenate([[0.0, total, total * (1 - 1e-16)], running,
                                      rng.random(5) * total]):
            r = default.select_reaction(a, cum, target)
            above = np.flatnonzero(running > target)
            want = above[0] if above.size else np.flatnonzero(a > 0)[-1]
            assert r == want and a[r] > 0


def test_state_arrays_reach_the_kernel_c_contiguous():
    """One compiled signature serves every batch size: the per-trajectory state array is C-ordered
    (a broadcast initial state copied with order "K" came out Fortran-ordered for N > 1, which
    cost a second compilation and a strided state row in the kernel)."""
    from cupyssa.kernels.cpu import default

    model = cs.models.birth_death()
    for n in (1, 7):
        cs.simulate(model, t_eval=[0.0, 1.0], n_trajectories=n, seed=1)
    assert all(sig[0].layout == "C" for sig in default.simulate_batch.signatures)


def test_automatic_specialization_decides_on_a_timed_pilot_with_identical_results(monkeypatch,
                                                                                tmp_path):
    """``specialize=None``: generic pilot chunks until one ran without compiling, then the
    specialized update if the projected rest exceeds ``AUTO_SPECIALIZE_SECONDS`` (or
    ``AUTO_SPECIALIZE_CACHED_SECONDS`` when an earlier process left it in Numba's disk cache), or
    from the start once it is compiled in the process; the trajectories are those of either
    kernel."""
    import numba
    from cupyssa import specialize
    from cupyssa.backends import cpu as cpu_backend

    # a network no other test specializes, so that its specialized family starts uncompiled
    net = cs.ReactionNetwork.from_string("""
        A -> B ; k1
        B -> A ; k2
        0 -> C ; k3
        C -> 0 ; k2
    """)
    args = dict(x0={"A": 30, "B": 0, "C": 0}, t_eval=np.linspace(0.0, 4.0, 5),
                params={"k1": 1.0, "k2": 0.5, "k3": 4.0}, n_trajectories=2000, seed=8)
    used = []
    kernels_for = cpu_backend.kernels_for
    monkeypatch.setattr(cpu_backend, "kernels_for",
                        lambda network, specialize=False: used.append(specialize)
                        or kernels_for(network, specialize))
    generic = cs.simulate(net, specialize=False, **args)
    assert set(used) == {False}
    used.clear()
    # never worth it: generic throughout, pilot chunks first (whatever the disk cache holds)
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_SECONDS", np.inf)
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_CACHED_SECONDS", np.inf)
    cs.simulate(net, **args)
    assert set(used) == {False} and not cpu_backend.is_compiled(net, specialize=True)
    # a family built over an empty cache directory finds nothing to load, and stays unbuilt
    with monkeypatch.context() as m:
        m.setattr(numba.config, "CACHE_DIR", str(tmp_path))
        m.setattr(cpu_backend, "_PROBED", {})  # the probe's family reads tmp_path: drop it after
        assert not cpu_backend.is_disk_cached(net, specialize=True)
    assert not cpu_backend.is_compiled(net, specialize=True)
    used.clear()
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_SECONDS", 0.0)
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_CACHED_SECONDS", 0.0)
    auto = cs.simulate(net, **args)  # always worth it: one timed generic pilot, then specialized
    assert used[0] is False and used[-1] is True
    np.testing.assert_array_equal(auto.states, generic.states)
    np.testing.assert_array_equal(auto.n_events, generic.n_events)
    used.clear()
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_SECONDS", np.inf)
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_CACHED_SECONDS", np.inf)
    again = cs.simulate(net, **args)  # compiled now: used from the first trajectory
    assert used and set(used) == {True}
    np.testing.assert_array_equal(again.states, generic.states)
    # a later process (no family built yet) finds the update in the disk cache: a pilot decides
    # against AUTO_SPECIALIZE_CACHED_SECONDS, since using it costs a load, not a compilation
    monkeypatch.setattr(cpu_backend, "_FAMILIES", {})
    assert not cpu_backend.is_compiled(net, specialize=True)
    used.clear()
    monkeypatch.setattr(specialize, "AUTO_SPECIALIZE_CACHED_SECONDS", 0.0)
    loaded = cs.simulate(net, **args)
    assert used[0] is False and used[-1] is True
    assert cpu_backend.is_compiled(net, specialize=True)
    np.testing.assert_array_equal(loaded.states, generic.states)
