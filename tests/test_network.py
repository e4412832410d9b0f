"""Reaction networks: text format, stoichiometry, dependency graph, conservation laws, validation."""

import numpy as np
import pytest
from conftest import assert_kernel_adjoints_match, central_difference

import cupyssa as cs
from cupyssa.errors import InitialStateError, NetworkError, ParameterError, ParseError


def test_parse_dimerization_and_matrices():
    net = cs.ReactionNetwork.from_string("""
        # reversible dimerization
        2 A -> B ; k1
        B -> 2 A ; k2   # back
    """)
    assert net.species == ("A", "B") and net.parameters == ("k1", "k2")
    np.testing.assert_array_equal(net.reactant_matrix, [[2, 0], [0, 1]])
    np.testing.assert_array_equal(net.product_matrix, [[0, 1], [2, 0]])
    np.testing.assert_array_equal(net.stoichiometry, [[-2, 1], [2, -1]])
    # a(x) = k1 A (A-1) / 2 and k2 B
    a = net.propensities(np.array([10, 3]), np.array([0.5, 2.0]))
    np.testing.assert_allclose(a, [0.5 * 10 * 9 / 2, 2.0 * 3])


def test_text_format_features():
    net = cs.ReactionNetwork.from_string("""
        kf = 2.5
        init A = 7
        degP: P -> 0 ; g
        0 -> X ; 5.0
        A <-> C ; kf, kb
        G -> G + P ; hill(P, vmax, K, 2)
        G -> G + Q ; hillr(P, vmax, K, n)
        S -> 0 ; mm(S, vm, Km)
        0 -> Y ; neural(softplus, k, b, w1*P, 0.5*A)
    """)
    assert "degP" in net.reaction_names
    assert net.parameter_defaults["kf"] == 2.5 and net.initial_defaults == {"A": 7}
    assert net.parameter_defaults["R1_k"] == 5.0  # literal constants become named parameters
    assert [r.name for r in net.reactions][2:4] == ["R2_f", "R2_b"]
    assert isinstance(net.reactions[4].law, cs.Hill)
    assert isinstance(net.reactions[5].law, cs.HillRepression)
    assert isinstance(net.reactions[6].law, cs.MichaelisMenten)
    assert isinstance(net.reactions[7].law, cs.Neural)


@pytest.mark.parametrize("text, message", [
    ("A -> B", "expected 'reactants -> products ; law'"),
    ("1.5 A -> B ; k", "not a non-negative integer"),
    ("A -> B -> C ; k", "exactly one"),
    ("A -> B ; foo(A, k)", "unknown rate law 'foo'"),
    ("A -> B ; hill(A, k)", "hill takes 4 arguments"),
    ("A <-> B ; k", "needs two laws"),
    ("A -> B ; neural(tanh, k, b, w*A)", "unknown nonlinearity"),
    ("A -> B ; A", "is a species"),
])
def test_parse_errors_name_the_line(text, message):
    with pytest.raises(ParseError, match=message) as info:
        cs.ReactionNetwork.from_string("k = 1\n" + text)
    assert info.value.line_number == 2
    assert "line 2" in str(info.value)


def test_builder_validation():
    net = cs.ReactionNetwork().add_species("A").add_species("B").add_parameter("k", 1.0)
    with pytest.raises(NetworkError, match="duplicate species"):
        net.add_species("A")
    with pytest.raises(NetworkError, match="already a species"):
        net.add_parameter("A")
    with pytest.raises(NetworkError, match="unknown species 'Z'"):
        net.add_reaction({"Z": 1}, {}, "k")
    with pytest.raises(NetworkError, match="unknown parameter 'q'"):
        net.add_reaction({"A": 1}, {}, "q")
    with pytest.raises(NetworkError, match="non-negative integer"):
        net.add_reaction({"A": 0.5}, {}, "k")
    with pytest.raises(NetworkError, match="invalid species name"):
        net.add_species("2x")
    with pytest.raises(ParameterError, match="must be finite"):
        net.add_parameter("bad", np.nan)
    net.add_reaction(["A", "A"], ["B"], "k", name="dimer")
    with pytest.raises(NetworkError, match="duplicate reaction name"):
        net.add_reaction(["B"], ["A"], "k", name="dimer")
    np.testing.assert_array_equal(net.reactant_matrix, [[2, 0]])


def test_parameter_and_initial_validation():
    net = cs.models.dimerization().network
    for bad, message in [({"k1": -1.0}, "non-negative"), ({"k1": np.nan}, "finite"),
                         ({"k1": np.inf}, "finite"), ({"kx": 1.0}, "unknown parameter 'kx'"),
                         (np.ones(3), "expected \\(2,\\)")]:
        with pytest.raises(ParameterError, match=message):
            net.parameter_vector(bad)
    with pytest.raises(ParameterError, match="must be numbers"):
        net.parameter_vector({"k1": "fast"})
    with pytest.raises(ParameterError,
                       match="parameter 'k2' has shape \\(2,\\); expected a scalar or shape \\(3,\\)"):
        net.parameter_vector({"k1": [1.0, 2.0, 3.0], "k2": [1.0, 2.0]})
    with pytest.raises(InitialStateError, match="x0\\['B'\\] has shape \\(2,\\)"):
        net.initial_vector({"A": [1, 2, 3], "B": [1, 2]})
    with pytest.raises(ParameterError, match="no value for parameter 'k2'"):
        cs.ReactionNetwork.from_string("A -> B ; k2").parameter_vector({})
    for bad, message in [({"A": -1}, "non-negative integers"), ({"A": 1.5}, "non-negative integers"),
                         ({"C": 1}, "unknown species 'C'"), (np.ones((2, 3)), "expected \\(2,\\)")]:
        with pytest.raises(InitialStateError, match=message):
            net.initial_vector(bad)
    # neural weights and biases may be negative, their amplitude may not
    neural = cs.ReactionNetwork.from_string("0 -> Y ; neural(sigmoid, k, b, w*Y)")
    assert neural.parameter_vector({"k": 1.0, "b": -2.0, "w": -0.5})[1] == -2.0
    with pytest.raises(ParameterError, match="'k' is -1.0; it must be finite and non-negative"):
        neural.parameter_vector({"k": -1.0, "b": -2.0, "w": -0.5})
    theta = net.parameter_vector({"k1": [1.0, 2.0, 3.0]})  # per-trajectory sweep
    assert theta.shape == (3, 2) and (theta[:, 1] == 0.1).all()


def test_dependency_graph():
    net = cs.ReactionNetwork.from_string("""
        0 -> A ; k
        A -> B ; k
        B -> 0 ; mm(B, v, K)
        0 -> C ; hill(A, v, K, n)
    """)
    deps = [set(d.tolist()) for d in net.dependency_graph()]
    # firing j changes species; reaction i depends on j iff its law reads a changed species
    assert deps[0] == {1, 3}          # A changes: A -> B and the Hill law read A
    assert deps[1] == {1, 2, 3}       # A and B change
    assert deps[2] == {2}             # B changes
    assert deps[3] == set()           # C is read by nobody


def test_conservation_laws():
    C = cs.models.dimerization().network.conservation_laws()
    np.testing.assert_array_equal(np.abs(C), [[1, 2]])  # A + 2B is conserved
    vilar = cs.models.vilar_oscillator().network
    C = vilar.conservation_laws()
    assert (vilar.stoichiometry @ C.T == 0).all()
    assert C.shape[0] == 2  # gene copies DA + DpA and DR + DpR
    assert cs.models.immigration_death().network.conservation_laws().shape == (0, 1)


def test_propensity_derivatives_match_finite_differences():
    net = cs.ReactionNetwork.from_string("""
        2 A + B -> C ; k
        G -> G + P ; hill(P, vmax, K, n)
        G -> G + Q ; hillr(P, vmax, K, n)
        S -> 0 ; mm(S, vm, Km)
        0 -> Y ; neural(sigmoid, kk, b, w1*P, w2*A)
        0 -> Z ; neural(softplus, kk, b, w1*S)
        0 -> W ; neural(exp, kk, b, w2*A)
    """)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 9, size=(5, net.n_species)).astype(float)
    theta = rng.uniform(0.3, 2.0, size=net.n_parameters)
    a = net.propensities(x, theta)
    gx, gt = net.propensity_grad_x(x, theta), net.propensity_grad_theta(x, theta)
    h = 1e-6  # central differences: truncation O(h^2 a''') ~ 1e-12, rounding ~ eps a / h ~ 1e-10
    for p in range(net.n_parameters):
        fd = central_difference(lambda v: net.propensities(x, v), theta, p, h)
        np.testing.assert_allclose(gt[..., p], fd, rtol=1e-6, atol=1e-8)
    for s in range(net.n_species):
        fd = central_difference(lambda v: net.propensities(v, theta), x, s, h)
        np.testing.assert_allclose(gx[..., s], fd, rtol=1e-6, atol=1e-8)
    assert a.shape == (5, net.n_reactions)


def test_kernel_mass_action_rows_match_the_reference_laws():
    # The kernels evaluate mass action in at most two reactant species of order <= 3 from one
    # dense row (NetworkTables.pair_law) and every other law by walking the reactant table; both
    # must give the doubles of the vectorized reference (ratelaws), which the numpy backend uses
    # and which the cpu/numpy identity of trajectories rests on. The adjoints (reverse sweep) are
    # checked against the reference gradients, as for the expression laws.
    from cupyssa.kernels import cpu

    net = cs.ReactionNetwork.from_string("""
        0 -> A ; k0
        A -> B ; k1
        2 A -> C ; k2
        A + B -> C ; k3
        3 A -> B ; k4
        A + 2 B -> C ; k5
        2 A + 3 B -> C ; k6
        A + B + C -> A ; k7
        4 A -> B ; k8
        B -> A ; hill(A, v, K, n)
    """)
    theta = np.array([0.5, 1.5, 0.01, 0.02, 1e-3, 2e-3, 1e-4, 3e-3, 1e-5, 4.0, 5.0, 2.0])
    pair = net.tables.pair_law
    # rows: the rate slot, then (species, order) pairs; -1 = the general table walk
    assert pair[:8, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, -1]
    assert pair[4].tolist() == [4, 0, 3, 0, 0] and pair[6].tolist() == [6, 0, 2, 1, 3]
    assert pair[8, 0] == -1 and pair[9, 0] == -1  # order 4; not mass action
    family = cpu.default
    for state in ([0, 0, 0], [1, 0, 2], [2, 1, 1], [3, 2, 0], [17, 40, 5], [1000, 999, 3]):
        x = np.array(state, dtype=np.int64)
        for j, r in enumerate(net.reactions):
            want = r.law.evaluate(x.reshape(1, -1), theta.reshape(1, -1))[0]
            assert family.propensity(j, x, theta, net.tables) == want, (j, state)
        assert_kernel_adjoints_match(family, net, x, theta)
