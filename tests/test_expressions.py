"""Expression rate laws: parsing, evaluation, symbolic derivatives and code generation.

Tolerances: derivatives are checked against central finite differences with step h = 1e-6
relative; the truncation error is O(h^2 f''') ~ 1e-12 and the rounding error O(eps f / h) ~
1e-10 relative, so rtol = 1e-6 leaves four orders of magnitude of margin. Trajectory checks are
exact: the compiled kernel and the NumPy reference perform the same floating-point operations.
"""

import numpy as np
import pytest
from conftest import assert_kernel_adjoints_match, central_difference

import cupyssa as cs
from cupyssa import NetworkError, ParseError, ReactionNetwork, SimulationError
from cupyssa.expressions import (Call, Expression, Name, Num, Param, Species, Time,
                                 adjoint_source, differentiate, evaluate_scalar,
                                 parse_expression, propensity_source, to_infix)

TEXT = """
    b = 2.0
    vmax = 30.0
    K = 20.0
    n = 2.5
    g = 0.1
    c = 0.002
    Kd = 5.0
    init P = 0
    init Q = 3
    P -> Q ; expr(c * P * sqrt(Q + 1) / (Kd + Q))
    0 -> P ; expr(b + vmax * P^n / (K^n + P^n))
    P -> 0 ; expr(g * P * exp(-Q / 50) + piecewise(0.5 * P, P > 40, 0))
    Q -> 0 ; expr(max(g * Q, 0) * (1 + 0.1 * (P >= 10 && Q < 5)))
"""  # names in expr(...) are species if already used as species, so P -> Q comes first


@pytest.fixture(scope="module")
def net():
    return ReactionNetwork.from_string(TEXT)


# -- parsing and printing ---------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "a + b * c", "(a + b) * c", "a - (b - c)", "a / (b * c)", "-a^2", "a^b^c", "(-a)^2",
    "exp(-x / 2) + ln(y) + log10(z)", "piecewise(1, x > 2, y <= 3, 0)", "min(a, b) + max(c, 1e-3)",
    "(x > 1 && y < 2) || !(z == 3)", "k * time", "2.5e-3 * x * (x - 1) / 2",
])
def test_parse_print_roundtrip(text):
    tree = parse_expression(text)
    assert parse_expression(to_infix(tree)) == tree


def test_parse_precedence_and_errors():
    assert parse_expression("-a^2") == Call("neg", (Call("pow", (Name("a"), Num(2))),))
    assert parse_expression("a^b^c") == Call("pow", (Name("a"), Call("pow", (Name("b"), Name("c")))))
    assert parse_expression("a - b - c") == Call("sub", (Call("sub", (Name("a"), Name("b"))), Name("c")))
    assert parse_expression("time") == Time()
    assert parse_expression("max(a, b, c)") == Call("max", (Call("max", (Name("a"), Name("b"))), Name("c")))
    for bad, what in [("a +", "unexpected end"), ("a b", "unexpected 'b'"), ("foo(1)", "unknown function"),
                      ("exp(1, 2)", "exp takes 1"), ("a $ b", "cannot read")]:
        with pytest.raises(NetworkError, match=what):
            parse_expression(bad)


def test_evaluate_scalar_and_names():
    tree = parse_expression("piecewise(k * x, x > 2, 0) + time")
    assert evaluate_scalar(tree, {"k": 3.0, "x": 4.0}, t=1.5) == 13.5
    with pytest.raises(KeyError):
        evaluate_scalar(tree, {"k": 3.0}, t=0.0)


# -- the law in a network ---------------------------------------------------------------------
def test_resolution_and_reads(net):
    laws = [r.law for r in net.reactions]
    assert all(isinstance(law, Expression) for law in laws)
    assert net.species == ("P", "Q")
    assert net.parameters == ("c", "Kd", "b", "vmax", "n", "K", "g")  # order of first use
    assert laws[1].reads() == (0,) and laws[2].reads() == (0, 1)
    # every law reads P; Q -> 0 changes only Q, which R1 (the Hill birth) does not read
    assert [d.tolist() for d in net.dependency_graph()] == [[0, 1, 2, 3], [0, 1, 2, 3],
                                                             [0, 1, 2, 3], [0, 2, 3]]
    with pytest.raises(NetworkError, match="unknown species or parameter 'nope'"):
        ReactionNetwork().add_species("X").add_reaction({}, {"X": 1}, Expression("nope * X"))
    with pytest.raises(NetworkError, match="depends on time"):
        ReactionNetwork().add_species("X").add_parameter("k", 1.0).add_reaction(
            {}, {"X": 1}, Expression("k * time"))
    with pytest.raises(ParseError, match="line 1"):
        ReactionNetwork.from_string("0 -> X ; expr(k * (X + )")


def test_evaluate_matches_formula(net):
    x = np.array([[0, 3], [15, 0], [50, 7]])
    theta = net.parameter_vector()
    a = net.propensities(x, theta)
    P, Q = x[:, 0].astype(float), x[:, 1].astype(float)
    c, Kd, b, vmax, n, K, g = theta
    expected = np.stack([
        c * P * np.sqrt(Q + 1) / (Kd + Q),
        b + vmax * P ** n / (K ** n + P ** n),
        g * P * np.exp(-Q / 50) + np.where(P > 40, 0.5 * P, 0.0),
        np.maximum(g * Q, 0) * (1 + 0.1 * ((P >= 10) & (Q < 5))),
    ], axis=1)
    np.testing.assert_array_equal(a, expected)


def test_kernel_functions_memoized(net):
    fns = net.kernel_functions()
    assert set(fns) == {"expression_propensity", "expression_adjoint"}
    assert net.kernel_functions() is fns
    assert ReactionNetwork.from_string("0 -> X ; k").kernel_functions() == {}
    src = propensity_source(net)
    assert "def expression_propensity(j, x, theta):" in src and "math.exp" in src
    assert "gbar[" in adjoint_source(net) and "xbar[" in adjoint_source(net)


def test_cpu_and_numpy_trajectories_identical(net):
    t = np.linspace(0, 20, 21)
    kw = dict(t_eval=t, n_trajectories=64, seed=11)
    cpu = cs.simulate(net, backend="cpu", **kw)
    ref = cs.simulate(net, backend="numpy", **kw)
    np.testing.assert_array_equal(cpu.states, ref.states)
    np.testing.assert_array_equal(cpu.n_events, ref.n_events)
    assert cpu.n_events.min() > 10


def test_bad_propensity_is_reported(net):
    # Kd = 0 and Q = 0: the first law divides 0 by 0 (NaN); the kernel reports it, no crash
    with pytest.raises(SimulationError, match="propensity of reaction 'R0'"):
        cs.simulate(net, x0={"P": 5, "Q": 0}, t_eval=[0.0, 1.0], params={"Kd": 0.0}, seed=0)


# -- derivatives ------------------------------------------------------------------------------
def _fd_check(law_text, species, params, x, theta):
    net = ReactionNetwork()
    for s in species:
        net.add_species(s)
    for p in params:
        net.add_parameter(p)
    net.add_reaction({}, {species[0]: 1}, Expression(law_text))
    law = net.reactions[0].law
    x = np.asarray(x, dtype=float)
    theta = np.asarray(theta, dtype=float)
    gx = dict(law.grad_x(x, theta))
    gt = dict(law.grad_theta(x, theta))
    for i in range(len(species)):
        fd = central_difference(lambda v: law.evaluate(v, theta), x, i, 1e-6 * max(1.0, abs(x[i])))
        np.testing.assert_allclose(gx.get(i, 0.0), fd, rtol=1e-6, atol=1e-9, err_msg=f"d/d{species[i]}")
    for p in range(len(params)):
        fd = central_difference(lambda v: law.evaluate(x, v), theta, p, 1e-6 * max(1.0, abs(theta[p])))
        np.testing.assert_allclose(gt.get(p, 0.0), fd, rtol=1e-6, atol=1e-9, err_msg=f"d/d{params[p]}")


@pytest.mark.parametrize("law", [
    "vmax * P^n / (K^n + P^n)",
    "vmax * K^n / (K^n + P^n)",
    "k * P * (P - 1) / 2 * Q",
    "k * exp(-Q / K) * ln(1 + P) + sqrt(P * Q)",
    "k / (1 + exp(-(K - P * Q / 10)))",
    "piecewise(k * P, P > Q, K * Q) + max(P - Q, n) + abs(Q - P)",
    "k * log10(P + 1) * sin(Q / 7) + cos(K) * tanh(P / 9)",
    "(k * P)^(n / 2) / (1 + (P / K)^n)",
    "min(k * P, K) + atan(Q) + pow(P, 0.5)",
])
def test_derivatives_match_finite_differences(law):
    species, params = ("P", "Q"), ("k", "K", "n", "vmax")
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.integers(3, 40, size=2)
        theta = rng.uniform(0.5, 3.0, size=4)
        _fd_check(law, species, params, x, theta)


def test_derivative_rules():
    P, k = Species(0), Param(0)
    assert differentiate(Call("mul", (k, P)), P) == k
    assert differentiate(Call("mul", (k, P)), k) == P
    assert differentiate(Num(3.0), P) == Num(0.0)
    # d/dn P^n at P = 0 is the continuous extension 0, not NaN
    net = ReactionNetwork().add_species("P").add_parameter("n", 2.0)
    net.add_reaction({}, {"P": 1}, Expression("P^n"))
    (p, d), = net.reactions[0].law.grad_theta(np.array([[0], [3]]), net.parameter_vector())
    np.testing.assert_allclose(d, [0.0, 9.0 * np.log(3.0)])


def test_batched_shapes(net):
    x = np.random.default_rng(1).integers(0, 30, size=(5, 4, 2))
    theta = np.broadcast_to(net.parameter_vector(), (4, 7))
    assert net.propensities(x, theta).shape == (5, 4, 4)
    assert net.propensity_grad_x(x, theta).shape == (5, 4, 4, 2)
    assert net.propensity_grad_theta(x, theta).shape == (5, 4, 4, 7)


def test_kernel_adjoint_matches_vectorized_gradients(net):
    # the generated expression_adjoint (used by value_and_grad's reverse sweep) evaluates the
    # same derivative trees as grad_x / grad_theta
    from cupyssa.backends.cpu import kernels_for

    family = kernels_for(net)
    theta = net.parameter_vector()
    for state in ([0, 3], [15, 0], [50, 7]):
        assert_kernel_adjoints_match(family, net, np.array(state, dtype=np.int64), theta)


def test_expression_parameters_may_be_negative():
    net = ReactionNetwork.from_string("c = -0.05\ninit X = 10\n0 -> X ; expr(3 * exp(c * X))")
    assert net.parameter_vector()[0] == -0.05
    np.testing.assert_allclose(net.propensities(np.array([10]), net.parameter_vector()),
                               [3 * np.exp(-0.5)])
