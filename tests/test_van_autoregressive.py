"""NADE / MADE: normalization, exact sampling, per-sample gradients vs finite differences."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cupyssa.cme import MADE, NADE
from cupyssa.cme.autoregressive import ModelSpecError

CAPS = [2, 3, 4]
#: the tanh NADE and the MADE are fed standardized inputs (centre and scale off the defaults);
#: the last NADE has polynomial output weights of degree 2 (1 on the species of cap 2)
IDS = ["nade", "nade-tanh-standardized", "made-standardized", "nade-output-degree-2"]
#: the gradient tests also take a NADE with equal caps, whose gradient blocks are written
#: without masking
GRADIENT_IDS = IDS + ["nade-equal-caps"]


def _models(equal_caps=False):
    rng = np.random.default_rng(3)
    out = []
    models = [NADE(CAPS, hidden=5, rng=rng, init_scale=0.7),
              NADE(CAPS, hidden=5, rng=rng, init_scale=0.7, activation="tanh"),
              MADE(CAPS, width=6, depth=2, rng=rng, init_scale=0.7),
              NADE(CAPS, hidden=5, rng=rng, init_scale=0.7, activation="tanh", output_degree=2)]
    for m in models[1:]:
        m.standardize_inputs([0.5, 1.0, 2.5], [0.4, 1.0, 1.3])
    if equal_caps:
        models.append(NADE([3, 3, 3], hidden=4, rng=rng, init_scale=0.7))
    for m in models:
        m.theta = m.theta + rng.normal(0, 0.4, m.n_params)  # a generic (non-initial) point
        out.append(m)
    return out


@pytest.mark.parametrize("model", _models(), ids=IDS)
def test_normalized_and_autoregressive(model):
    X = model.enumerate_states()
    assert X.shape == (24, 3)
    assert np.exp(model.log_prob(X)).sum() == pytest.approx(1.0, abs=1e-12)
    # conditional of species i must not depend on n_j, j >= i: perturb later species only
    c1 = model.conditionals(np.array([[1, 2, 3]]))
    c2 = model.conditionals(np.array([[1, 0, 0]]))
    np.testing.assert_allclose(c1[0, :2], c2[0, :2], rtol=0, atol=1e-15)
    assert model.log_prob(np.array([[0, 3, 0], [-1, 0, 0]])).tolist() == [-np.inf, -np.inf]


@pytest.mark.parametrize("model", _models(equal_caps=True), ids=GRADIENT_IDS)
def test_per_sample_gradient_matches_finite_differences(model):
    n = model.enumerate_states()[[0, 5, 11, 17, 23]]
    lp, G = model.log_prob_and_grad(n)
    np.testing.assert_allclose(lp, model.log_prob(n), rtol=0, atol=1e-13)
    theta = model.theta.copy()
    h = 1e-6
    fd = np.zeros_like(G)
    for p in range(model.n_params):
        model.theta = theta.copy()
        model.theta[p] += h
        up = model.log_prob(n)
        model.theta[p] -= 2 * h
        fd[:, p] = (up - model.log_prob(n)) / (2 * h)
    model.theta = theta
    # central differences: truncation O(h^2 f''') ~ 1e-12, round-off ~ 1e-16/h ~ 1e-10
    np.testing.assert_allclose(G, fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("model", _models(equal_caps=True), ids=GRADIENT_IDS)
def test_jacobian_products_equal_the_assembled_gradients(model):
    """What the Fisher solves use, ``G G^T`` and ``G^T v`` (NADE: from its factors, without
    forming ``G``; MADE: the dense matrix), equals the products of the assembled per-sample
    gradients (ragged caps: padding must add nothing), and so does the damped natural direction
    for N < P (both solved on the N x N side), N = P + 5 (NADE's factored Gram matrix is cheap
    enough to stay on the N side, the assembled G goes to the P x P side: this compares the two
    sides) and N = 3P (both on the P side)."""
    from cupyssa.cme.fisher import natural_direction

    rng = np.random.default_rng(5)
    model.theta = model.theta + rng.normal(0, 0.3, model.n_params)
    for n_samples in (7, model.n_params + 5, 3 * model.n_params):
        n = model.sample(n_samples, rng, alpha=0.5, eps=0.3)[0]
        lp, G = model.log_prob_and_grad(n)
        lp_j, J = model.log_prob_and_jacobian(n)
        np.testing.assert_array_equal(lp_j, lp)
        assert J.shape == G.shape
        np.testing.assert_array_equal(J.dense(), G)
        # sparse combinations of rows, with rows of C that have no, one or several nonzeros
        C = sp.random(5, n_samples, density=0.4, random_state=1, format="lil")
        C[0] = 0.0
        C = C.tocsr()
        np.testing.assert_allclose(J.left_multiply(C), C @ G, rtol=0,
                                   atol=1e-13 * np.abs(G).max() * max(np.abs(C).sum(axis=1).max(), 1))
        v = rng.normal(size=n_samples)
        # summation orders differ: agreement to a few ulps of the largest entry
        K = G @ G.T
        np.testing.assert_allclose(J.gram(), K, rtol=0, atol=1e-13 * np.abs(K).max())
        np.testing.assert_allclose(J.rmatvec(v), G.T @ v, rtol=0, atol=1e-13 * np.abs(G).sum())
        w = rng.random(n_samples)
        w /= w.sum()
        f = rng.normal(size=n_samples)
        d_dense, g_dense = natural_direction(G, f, w, 1e-3)
        d_jac, g_jac = natural_direction(J, f, w, 1e-3)
        # the damped matrix's eigenvalues lie in [lambda, trace + lambda], lambda = 1e-3 trace /
        # min(N, P): condition number <= 1 + 1e3 min(N, P) (<= 7e3 or ~1e5 here), so a ~1e-16
        # relative difference in the inputs moves delta by < 1e-10 of its size
        np.testing.assert_allclose(d_jac, d_dense, rtol=0, atol=1e-9 * np.abs(d_dense).max())
        np.testing.assert_allclose(g_jac, g_dense, rtol=0, atol=1e-12 * np.abs(g_dense).max())
        # several right-hand sides at once (the moment projection's directions): each column
        # is the single solve's result, from one factorization
        F = np.column_stack([f, rng.normal(size=(n_samples, 2))])
        np.testing.assert_allclose(J.rmatmat(F), G.T @ F, rtol=0, atol=1e-13 * np.abs(G).sum() * 3)
        D, _ = natural_direction(J, F, w, 1e-3)
        for q in range(3):
            one, _ = natural_direction(J, F[:, q], w, 1e-3)
            np.testing.assert_allclose(D[:, q], one, rtol=0, atol=1e-12 * np.abs(one).max())


@pytest.mark.parametrize("model", _models(), ids=IDS)
def test_ancestral_sampling_is_exact(model):
    rng = np.random.default_rng(0)
    N = 100_000
    n, log_p, log_q = model.sample(N, rng)
    np.testing.assert_allclose(log_p, model.log_prob(n), atol=1e-12)
    np.testing.assert_allclose(log_q, log_p, atol=1e-12)
    X = model.enumerate_states()
    p = np.exp(model.log_prob(X))
    counts = np.bincount(np.ravel_multi_index(n.T, CAPS), minlength=24)
    expected = N * p[np.argsort(np.ravel_multi_index(X.T, CAPS))]
    chi2 = np.sum((counts - expected) ** 2 / expected)
    # Pearson statistic ~ chi2(23) under exact sampling; reject at significance 1e-6
    assert chi2 < stats.chi2.ppf(1 - 1e-6, df=23)


def test_tempered_proposal_log_q_is_its_own_probability():
    model = _models()[0]
    rng = np.random.default_rng(1)
    n, log_p, log_q = model.sample(50, rng, alpha=0.3, eps=0.1, lo=[0, 1, 0], hi=[1, 2, 2])
    assert np.all((n >= [0, 1, 0]) & (n <= [1, 2, 2]))
    # log q by hand from the conditionals: q_i = (1-eps) softmax(alpha z) + eps/M_i, restricted
    logits, _ = model._logits(n)
    q_hand = np.zeros(len(n))
    for i, (lo, hi) in enumerate([(0, 1), (1, 2), (0, 2)]):
        z = 0.3 * logits[:, i, :CAPS[i]]
        sm = np.exp(z - z.max(1, keepdims=True))
        sm /= sm.sum(1, keepdims=True)
        q = 0.9 * sm + 0.1 / CAPS[i]
        q[:, :lo] = 0
        q[:, hi + 1:] = 0
        q /= q.sum(1, keepdims=True)
        q_hand += np.log(q[np.arange(len(n)), n[:, i]])
    np.testing.assert_allclose(log_q, q_hand, atol=1e-12)


def test_bad_input():
    with pytest.raises(ModelSpecError):
        NADE([0, 3])
    with pytest.raises(ModelSpecError):
        MADE([2, 3], width=0)
    m = NADE([2, 3])
    with pytest.raises(ModelSpecError):
        m.log_prob(np.zeros((2, 3), int))
    with pytest.raises(ModelSpecError):
        m.log_prob_and_grad(np.array([[2, 0]]))
    with pytest.raises(ModelSpecError):
        m.set_params(np.zeros(3))
    with pytest.raises(ModelSpecError, match="activation"):
        NADE([2, 3], activation="relu")
    with pytest.raises(ModelSpecError, match="shape"):
        m.standardize_inputs([0.0, 1.0, 2.0], [1.0, 1.0, 1.0])
    for scale in ([1.0, 0.0], [1.0, np.nan]):
        with pytest.raises(ModelSpecError, match="scale"):
            m.standardize_inputs([0.0, 1.0], scale)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_standardized_inputs_feed_the_hidden_units(activation):
    """NADE's pre-activations with standardized inputs are ``c + sum_{j<i} W_j (n_j - mu_j) /
    sigma_j`` (written out here), so the conditionals differ from those of ``n_j / M_j``; a
    product law (zero weights into the outputs) does not see the inputs at all."""
    caps = [4, 5, 3]
    m = NADE(caps, hidden=3, rng=np.random.default_rng(0), init_scale=1.0, activation=activation)
    n = np.array([[0, 4, 2], [3, 1, 0], [2, 2, 1]])
    mu, sigma = np.array([1.0, 2.0, 0.5]), np.array([0.5, 2.0, 1.0])
    standardized = m.copy()
    standardized.standardize_inputs(mu, sigma)
    W, c, V, b = m._unpack()
    f = np.tanh if activation == "tanh" else (lambda a: 1 / (1 + np.exp(-a)))
    u = (n - mu) / sigma
    for s in range(len(n)):
        for i in range(3):
            logits = b[i, :caps[i]] + V[i, :caps[i]] @ f(c + W[:, :i] @ u[s, :i])
            expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert np.allclose(standardized.conditionals(n[s:s + 1])[0, i, :caps[i]], expected)
    assert not np.allclose(standardized.log_prob(n), m.log_prob(n))
    for model in (m, standardized):
        model.set_product_law([np.log(np.arange(1, k + 1)) for k in caps])
    assert np.allclose(standardized.log_prob(n), m.log_prob(n))


@pytest.mark.parametrize("caps", [(85, 85), (2, 2, 80, 80)])
@pytest.mark.parametrize("keyed", [True, False])
def test_log_prob_of_distinct_rows_equals_log_prob(caps, keyed, monkeypatch):
    """The local energy evaluates ``log P`` once per distinct predecessor state (rows keyed by
    their mixed-radix index; boxes too large for an int64 key fall back to every row): the values
    equal a direct evaluation, duplicates included."""
    from cupyssa.cme import van
    from cupyssa.cme.van import _log_prob_of_distinct

    if not keyed:
        monkeypatch.setattr(van, "_MAX_KEYED_STATES", 2.0)
    rng = np.random.default_rng(3)
    ar = NADE(np.array(caps), hidden=4, rng=rng)
    ar.theta += rng.normal(0, 0.3, ar.n_params)
    base = rng.integers(0, np.minimum(caps, 6), size=(40, len(caps)))
    states = base[rng.integers(0, 40, size=300)]  # many repeated rows
    np.testing.assert_allclose(_log_prob_of_distinct(ar, states), ar.log_prob(states),
                               rtol=1e-13, atol=1e-13)


@settings(max_examples=40, deadline=None)
@given(caps=st.lists(st.integers(1, 9), min_size=1, max_size=5), seed=st.integers(0, 2**32 - 1))
def test_fused_softmax_kernels_match_numpy(caps, seed):
    # kernels/softmax.py against the plain NumPy definition: per species, the log-softmax of the
    # first caps[s] logits (padding ignored, however large); g = onehot(n_s) - softmax, 0 on padding
    from cupyssa.kernels.softmax import log_prob_and_logit_adjoint, log_prob_rows

    rng = np.random.default_rng(seed)
    caps = np.array(caps, dtype=np.int64)
    N, S, M = 7, caps.size, int(caps.max())
    z = rng.normal(0, 30, (N, S, M))  # wide logits: the max shift is needed
    z[:, np.arange(M)[None, :] >= caps[:, None]] = 1e300  # padding must not enter
    n = (rng.random((N, S)) * caps).astype(np.int64)
    lp_ref, g_ref = np.zeros(N), np.zeros((N, S, M))
    for s, c in enumerate(caps):
        ls = z[:, s, :c] - np.logaddexp.reduce(z[:, s, :c], axis=1)[:, None]
        lp_ref += ls[np.arange(N), n[:, s]]
        g_ref[:, s, :c] = np.eye(c)[n[:, s]] - np.exp(ls)
    lp, g = log_prob_and_logit_adjoint(z, n, caps)
    np.testing.assert_allclose(lp, lp_ref, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(log_prob_rows(z, n, caps), lp)


@settings(max_examples=40, deadline=None)
@given(N=st.integers(0, 9), S=st.integers(1, 5), A=st.integers(1, 9), B=st.integers(1, 9),
       biased=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_per_species_matmul_matches_einsum(N, S, A, B, biased, seed):
    # kernels/blockwise.py against its definition out[n, s] = bias[s] + x[n, s] @ W[s], in both
    # loop orders (B <= 2 and B > 2), with transposed (non-contiguous) weights as NADE passes
    # them, and the same bits for one thread or several (each row is one thread's sum)
    import numba

    from cupyssa.kernels.blockwise import per_species_matmul

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, S, A))
    W = rng.normal(size=(S, B, A)).transpose(0, 2, 1)
    bias = rng.normal(size=(S, B)) if biased else None
    want = np.einsum("nsa,sab->nsb", x, W) + (0.0 if bias is None else bias)
    got = per_species_matmul(x, W, bias)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    assert got.flags.c_contiguous and got.shape == (N, S, B)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(per_species_matmul(x, W, bias), got)
    finally:
        numba.set_num_threads(threads)


@settings(max_examples=40, deadline=None)
@given(caps=st.lists(st.integers(1, 9), min_size=1, max_size=5), H=st.integers(1, 6),
       seed=st.integers(0, 2**32 - 1))
def test_log_prob_of_hidden_is_the_two_pass_result(caps, H, seed):
    # kernels/softmax.log_prob_of_hidden makes each logits row where it is read: the same bits
    # as the logits array of kernels/blockwise followed by log_prob_rows (what NADE.log_prob
    # gave before it, and what its gradient path still computes), for any thread count
    import numba

    from cupyssa.kernels.blockwise import per_species_matmul
    from cupyssa.kernels.softmax import log_prob_of_hidden, log_prob_rows

    rng = np.random.default_rng(seed)
    caps = np.array(caps, dtype=np.int64)
    N, S, M = 9, caps.size, int(caps.max())
    h = rng.random((N, S, H))
    V = rng.normal(0, 20, (S, M, H))
    b = rng.normal(0, 20, (S, M))
    b[np.arange(M)[None, :] >= caps[:, None]] = 1e300  # padding must not enter
    n = (rng.random((N, S)) * caps).astype(np.int64)
    want = log_prob_rows(per_species_matmul(h, V.transpose(0, 2, 1), b), n, caps)
    np.testing.assert_array_equal(log_prob_of_hidden(h, V, b, n, caps), want)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(log_prob_of_hidden(h, V, b, n, caps), want)
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("i", range(len(IDS)), ids=IDS)
def test_log_prob_equals_the_gradient_paths(i):
    # log_prob (NADE: the fused forward pass) and log_prob_and_jacobian (the logits array and
    # its adjoint) are two code paths to one number; they agree to the bit
    model = _models()[i]
    n = model.sample(200, np.random.default_rng(5))[0]
    np.testing.assert_array_equal(model.log_prob(n), model.log_prob_and_jacobian(n)[0])


@pytest.mark.parametrize("cap, degree", [(85, 2), (7, 3), (3, 4), (2, 2), (1, 2)])
def test_legendre_output_basis(cap, degree):
    """``Phi [M, k]``, ``k = min(degree, M - 1)``: orthonormal over ``m = 0..M-1``, orthogonal
    to the constant, and spanning every polynomial of degree <= k up to a constant (here
    ``(m / M)^d``, projected: the residual is round-off)."""
    from cupyssa.cme.autoregressive import _legendre_basis
    B = _legendre_basis(cap, degree)
    k = min(degree, cap - 1)
    assert B.shape == (cap, k)
    np.testing.assert_allclose(B.T @ B, np.eye(k), atol=1e-12)
    np.testing.assert_allclose(B.sum(axis=0), 0.0, atol=1e-12)
    x = np.arange(cap) / cap
    for d in range(1, k + 1):
        p = x ** d - (x ** d).mean()
        np.testing.assert_allclose(B @ (B.T @ p), p, atol=1e-12)


@pytest.mark.parametrize("degree", [1, 2])
def test_output_degree_tilts_the_conditionals_by_polynomials(degree):
    """With ``output_degree = r`` the history ``n_<i`` changes a conditional's logits only by a
    polynomial of degree <= r in ``m`` (up to a constant): the (r + 1)-th differences over ``m``
    of ``log P(m | n_<i) - log P(m | n'_<i)`` vanish, while those of a free ``V`` do not."""
    caps = [4, 3, 9]
    rng = np.random.default_rng(5)
    tilted = NADE(caps, hidden=3, rng=rng, init_scale=1.0, output_degree=degree)
    free = NADE(caps, hidden=3, rng=rng, init_scale=1.0)
    assert tilted.n_params == free.n_params - 3 * (sum(caps) - sum(min(degree, c - 1) for c in caps))
    for m in (tilted, free):
        m.theta = m.theta + rng.normal(0, 0.5, m.n_params)
    n, other = np.array([[0, 0, 0]]), np.array([[3, 2, 0]])
    i = 2
    change = {id(m): np.log(m.conditionals(other)[0, i] / m.conditionals(n)[0, i])
              for m in (tilted, free)}
    high = np.diff(change[id(tilted)], n=degree + 1)
    np.testing.assert_allclose(high, 0.0, atol=1e-11)
    assert np.abs(np.diff(change[id(free)], n=degree + 1)).max() > 1e-2
    with pytest.raises(ModelSpecError, match="output_degree"):
        NADE(caps, hidden=3, output_degree=0)


@pytest.mark.parametrize("degree", [None, 2])
def test_centred_outputs_are_a_change_of_coordinates(degree):
    """Inside ``centred_outputs(n, w)`` the Jacobian ``J'`` is that of the coordinates
    ``b'_i = b_i + V_i hbar_i``: ``J' d = J to_theta(d)`` for every step ``d`` (the law moves the
    same way), every product of ``J'`` agrees with its assembled rows, and the output weights'
    columns lose exactly the ``w``-mean of the hidden units. Outside, the Jacobian is as before."""
    rng = np.random.default_rng(11)
    m = NADE(CAPS, hidden=4, rng=rng, init_scale=0.7, activation="tanh", output_degree=degree)
    m.theta = m.theta + rng.normal(0, 0.4, m.n_params)
    n = m.sample(40, rng)[0]
    w = rng.random(40)
    w /= w.sum()
    plain = m.log_prob_and_jacobian(n)[1].dense()
    with m.centred_outputs(n, w) as to_theta:
        J = m.log_prob_and_jacobian(n)[1]
        centred = J.dense()
        v = rng.normal(size=40)
        np.testing.assert_allclose(J.gram(), centred @ centred.T, atol=1e-12)
        np.testing.assert_allclose(J.rmatvec(v), centred.T @ v, atol=1e-12)
        C = sp.random(7, 40, density=0.2, random_state=1, format="csr")
        np.testing.assert_allclose(J.left_multiply(C), C @ centred, atol=1e-12)
        np.testing.assert_allclose(m.log_prob_and_grad(n)[1], centred, atol=1e-13)
    for _ in range(3):
        d = rng.normal(size=m.n_params)
        np.testing.assert_allclose(centred @ d, plain @ to_theta(d), atol=1e-11)
    # the hidden layers' and the biases' columns are unchanged; the output weights' are not
    h = m._logits(n)[1][1]
    hbar = np.einsum("n,nsh->sh", w, h)
    o = m._offsets
    np.testing.assert_array_equal(centred[:, :o[2]], plain[:, :o[2]])
    np.testing.assert_array_equal(centred[:, o[3]:], plain[:, o[3]:])
    for i, _, v_block, b_block in m._output_blocks():
        g = plain[:, b_block]  # d log P / d b_i = g_i
        gv = g if degree is None else g @ m._basis[i]
        np.testing.assert_allclose(centred[:, v_block].reshape(40, -1, 4),
                                   gv[:, :, None] * (h[:, i] - hbar[i])[:, None, :], atol=1e-13)
    np.testing.assert_array_equal(m.log_prob_and_jacobian(n)[1].dense(), plain)


@pytest.mark.parametrize("degree, activation", [(None, "sigmoid"), (2, "tanh")])
def test_widened_network_holds_the_same_law(degree, activation):
    """``NADE.widened(H')``: zero output weights on the new units leave every ``log P`` as it
    was (a law with correlations: random weights, standardized inputs), the new units get
    distinct input weights, and the Jacobian reaches their output weights (a fit can use
    them). Narrowing is refused."""
    caps = [5, 7, 4, 6]
    rng = np.random.default_rng(8)
    narrow = NADE(caps, hidden=2, rng=rng, init_scale=1.0, output_degree=degree,
                  activation=activation)
    narrow.standardize_inputs(np.array([2.0, 3.0, 1.0, 2.5]), np.array([1.5, 2.0, 1.0, 1.2]))
    narrow.theta = narrow.theta + rng.normal(0, 0.7, narrow.n_params)
    wide = narrow.widened(6, rng=np.random.default_rng(9))
    assert wide.H == 6 and wide.n_params > narrow.n_params
    n = np.stack([rng.integers(0, c, 300) for c in caps], axis=1)
    np.testing.assert_allclose(wide.log_prob(n), narrow.log_prob(n), rtol=0, atol=1e-12)
    W = wide._unpack()[0]
    assert np.all(np.abs(np.diff(W[2:], axis=0)).max(axis=1) > 0)  # the new units differ
    G = wide.log_prob_and_jacobian(n)[1].dense()
    V_new = wide._unpack(np.abs(G).max(axis=0))[2][:, :, 2:]
    assert V_new.max() > 0  # the new output weights have nonzero gradients
    with pytest.raises(ModelSpecError, match="fewer"):
        wide.widened(3)
