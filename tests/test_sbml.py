"""SBML import/export and events.

Statistical validation follows the DSMTS acceptance test (Evans, Gillespie & Wilkinson, "The
SBML discrete stochastic models test suite", Bioinformatics 24:285, 2008): with n = 10^4
independent runs, at every output time t where the exact variance sigma^2(t) > 0,

    Z_t = sqrt(n) (mean_t - mu_t) / sigma_t               must lie in [-3, 3], and
    Y_t = sqrt(n / 2) (S_t^2 / sigma_t^2 - 1)             must lie in [-5, 5]

(S^2 the unbiased sample variance). Where sigma^2(t) = 0 the sample must equal mu_t exactly. The
bounds are those of the DSMTS, not tuned: Z is asymptotically N(0, 1) and Y has variance
1 + kurtosis excess / 2, so a correct simulator fails a given time point with probability
~0.3% (Z); over 51 correlated time points a model fails with a few per cent probability. Every
run uses the fixed seed 0 (chosen before looking at the results), so the test is deterministic.
The exact moments are analytic (derived in the helpers below) or, for dimerisation, come from
the exact finite-state-projection solution of the package's built-in dimerisation model (an
oracle independent of the SBML reader).
"""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cupyssa as cs
from cupyssa import ParameterError, ReactionNetwork, SimulationError
from cupyssa.events import Event, EventModel
from cupyssa.expressions import Expression

libsbml = pytest.importorskip("libsbml")
from cupyssa.sbml import SBMLError, model_to_sbml, network_to_sbml, read_sbml  # noqa: E402

DATA = Path(__file__).parent / "data"
N = 10_000
SEED = 0
T = np.linspace(0.0, 50.0, 51)


def assert_dsmts(states: np.ndarray, mu: np.ndarray, var: np.ndarray, label: str) -> None:
    """The DSMTS criterion (module docstring) for one species: ``states [n, T]``."""
    n = states.shape[0]
    assert n == N
    mean = states.mean(axis=0)
    s2 = states.var(axis=0, ddof=1)
    zero = var == 0
    np.testing.assert_array_equal(states[:, zero], np.broadcast_to(mu[zero], (n, zero.sum())),
                                  err_msg=f"{label}: deterministic time points")
    Z = np.sqrt(n) * (mean[~zero] - mu[~zero]) / np.sqrt(var[~zero])
    Y = np.sqrt(n / 2) * (s2[~zero] / var[~zero] - 1)
    t = T[~zero]
    assert np.all(np.abs(Z) <= 3), f"{label}: |Z| max {np.abs(Z).max():.2f} at t={t[np.abs(Z).argmax()]}"
    assert np.all(np.abs(Y) <= 5), f"{label}: |Y| max {np.abs(Y).max():.2f} at t={t[np.abs(Y).argmax()]}"


def immigration_death_moments(t, alpha, mu, x0=0):
    """0 -> X (alpha), X -> 0 (mu X): survivors of x0 are Binomial(x0, e^{-mu t}), immigrants
    Poisson(alpha/mu (1 - e^{-mu t})), independent."""
    p = np.exp(-mu * t)
    lam = alpha / mu * (1 - p)
    return x0 * p + lam, x0 * p * (1 - p) + lam


# -- DSMTS-style models ---------------------------------------------------------------------
def test_birth_death():
    model = read_sbml(DATA / "birth_death.xml")
    assert model.metadata["ids"] == {"lambda": "lambda_"}  # a Python keyword, renamed
    assert model.params == {"lambda_": 0.1, "mu": 0.11} and model.x0 == {"X": 100}
    np.testing.assert_array_equal(model.network.stoichiometry, [[1], [-1]])
    res = cs.simulate(model, t_eval=T, n_trajectories=N, seed=SEED)
    # linear birth-death: mean x0 e^{rt}, variance x0 (b+d)/(b-d) e^{rt} (e^{rt} - 1), r = b - d
    b, d, x0 = 0.1, 0.11, 100
    e = np.exp((b - d) * T)
    assert_dsmts(res["X"], x0 * e, x0 * (b + d) / (b - d) * e * (e - 1), "birth-death")


def test_immigration_death_level2_with_function_definition():
    model = read_sbml(DATA / "immigration_death.xml")
    assert model.metadata["level"] == 2
    assert str(model.network.reactions[1].law) == "theta[1] * x[0]"  # first_order(mu, X) inlined
    res = cs.simulate(model, t_eval=T, n_trajectories=N, seed=SEED)
    assert_dsmts(res["X"], *immigration_death_moments(T, 1.0, 0.1), "immigration-death")


def test_batch_immigration_death():
    model = read_sbml(DATA / "batch_immigration_death.xml")
    np.testing.assert_array_equal(model.network.stoichiometry, [[5], [-1]])
    assert model.x0 == {"X": 0}  # from the initial assignment
    res = cs.simulate(model, t_eval=T, n_trajectories=N, seed=SEED)
    # batches of B = 5 arrive at rate alpha; each molecule survives to t independently with
    # p(s) = e^{-mu (t - s)}, so a batch from time s leaves Y ~ Binomial(B, p(s)) and
    # X(t) is compound Poisson: E X = alpha int E[Y] ds, Var X = alpha int E[Y^2] ds with
    # E[Y^2] = B p + B (B-1) p^2:
    alpha, mu, B = 1.0, 0.1, 5
    mean = alpha * B * (1 - np.exp(-mu * T)) / mu
    var = mean + alpha * B * (B - 1) * (1 - np.exp(-2 * mu * T)) / (2 * mu)
    assert_dsmts(res["X"], mean, var, "batch immigration-death")


def test_dimerisation_in_concentrations():
    model = read_sbml(DATA / "dimerisation.xml")
    # initialConcentration 50 in a compartment of size 2 = 100 molecules; locals renamed
    assert model.x0 == {"P": 100, "P2": 0}
    assert model.params == {"Dimerisation_k1": 0.001, "Dissociation_k2": 0.01, "Cell": 2.0}
    np.testing.assert_array_equal(model.network.stoichiometry, [[-2, 1], [2, -1]])
    # the law in concentrations is k1 n (n - 1) / 2 in counts
    x = np.array([[100, 0], [37, 31]])
    np.testing.assert_allclose(model.network.propensities(x, model.network.parameter_vector(model.params)),
                               [[0.001 * 100 * 99 / 2, 0.0], [0.001 * 37 * 36 / 2, 0.01 * 31]], rtol=1e-15)
    res = cs.simulate(model, t_eval=T, n_trajectories=N, seed=SEED)
    exact = cs.cme.fsp(cs.models.dimerization(k1=0.001, k2=0.01, A0=100, B0=0), t_eval=T)
    assert exact.lost.max() < 1e-12  # closed system: the whole state space
    for s, species in enumerate(("P", "P2")):
        assert_dsmts(res[species], exact.mean()[:, s], exact.variance()[:, s], f"dimerisation {species}")


def test_immigration_death_with_time_event():
    model = read_sbml(DATA / "immigration_death_event.xml")
    (event,) = model.events
    assert event.id == "reset"
    res = cs.simulate(model, t_eval=T, n_trajectories=N, seed=SEED)
    # before t_e = 25: immigration-death from 0 (alpha = 1, mu = 0.1). At t_e: X := 50 (so the
    # state observed at t = 25 is exactly 50: observation is right-continuous) and alpha := 2.
    # After: 50 molecules dying independently plus immigration at rate 2 from t_e.
    mean, var = immigration_death_moments(T, 1.0, 0.1)
    after = T >= 25
    m2, v2 = immigration_death_moments(T[after] - 25, 2.0, 0.1, x0=50)
    mean[after], var[after] = m2, v2
    assert_dsmts(res["X"], mean, var, "immigration-death with event")
    # stops consume no reaction events: n_events counts reactions only
    assert res.n_events.min() > 0
    # the numpy backend handles time events identically (same random numbers)
    small = cs.simulate(model, t_eval=T, n_trajectories=50, seed=SEED, backend="numpy")
    np.testing.assert_array_equal(small.states, res.states[:50])
    np.testing.assert_array_equal(small.n_events, res.n_events[:50])


# -- state-triggered events ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def reset_model():
    return read_sbml(DATA / "immigration_reset.xml")


def test_species_triggered_event_is_exact(reset_model):
    model = reset_model
    assert "Xmax" not in model.network.parameters  # assignment rule substituted into the trigger
    res = cs.simulate(model, t_eval=T, n_trajectories=N, seed=SEED)
    # Exact property: with immigration only, the event leaves the propensity unchanged and stops
    # consume no random numbers, so trajectory i with the event is exactly N_i(t) mod 30, where
    # N_i is the same trajectory simulated without the event (same seed; the numpy backend gives
    # the cpu backend's trajectories and needs no compilation).
    plain = cs.simulate(model.network, model.x0, T, model.params, n_trajectories=N, seed=SEED,
                        backend="numpy")
    np.testing.assert_array_equal(res.states, plain.states % 30)
    np.testing.assert_array_equal(res.n_events, plain.n_events)
    assert res.states.max() == 29  # X = 30 is never observed: the reset is immediate
    # results do not depend on how the batch is chunked
    chunked = cs.simulate(model, t_eval=T, n_trajectories=300, seed=SEED, chunk_size=37)
    np.testing.assert_array_equal(chunked.states, res.states[:300])


def test_trigger_initial_value(reset_model):
    ev = reset_model.events[0]
    # trigger X >= 30 already true at t0 = 0: initialValue=true -> it has not "become" true, no
    # firing (X only grows, so never); initialValue=false -> fires at t0.
    res = cs.simulate(reset_model, x0={"X": 40}, t_eval=[0.0, 1.0], n_trajectories=20, seed=SEED)
    assert np.all(res.states[:, 0, 0] == 40) and np.all(res.states[:, 1, 0] > 40)
    fire = dataclasses.replace(reset_model, events=(dataclasses.replace(ev, initial_value=False),))
    res = cs.simulate(fire, x0={"X": 40}, t_eval=[0.0, 1.0], n_trajectories=20, seed=SEED)
    assert np.all(res.states[:, 0, 0] == 0) and np.all(res.states[:, 1, 0] < 30)


def test_state_events_rearm_like_piecewise_law():
    # Two state events switch the immigration rate: X >= 10 -> k := k_high, X < 10 -> k := k_low.
    # That is exactly the law piecewise(k_high, X >= 10, k_low): same propensities after every
    # reaction, same step counters, so identical trajectories for the same seed. This exercises
    # re-arming (each trigger rises and falls many times) and parameter changes per trajectory.
    text = "k = 1\nk_low = 1\nk_high = 5\ng = 0.4\ninit X = 0\n"
    switched = ReactionNetwork.from_string(text + "0 -> X ; k\nX -> 0 ; g")
    events = [Event("X >= 10", {"k": "k_high"}, id="up"), Event("X < 10", {"k": "k_low"}, id="down")]
    model = EventModel(switched, switched.initial_defaults, switched.parameter_defaults, events=events)
    law = ReactionNetwork.from_string(text + "0 -> X ; expr(piecewise(k_high, X >= 10, k_low))\nX -> 0 ; g")
    t = np.linspace(0, 30, 31)
    a = cs.simulate(model, t_eval=t, n_trajectories=2000, seed=SEED)
    b = cs.simulate(law, t_eval=t, n_trajectories=2000, seed=SEED, backend="numpy")  # = cpu
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.n_events, b.n_events)
    assert (a.states >= 10).any() and (a.states[:, 5:] < 10).any()
    with pytest.raises(ParameterError, match="does not support state-triggered events"):
        cs.simulate(model, t_eval=t, n_trajectories=2, seed=SEED, backend="numpy")


def test_event_assignment_must_give_counts():
    model = read_sbml(DATA / "immigration_death_event.xml")
    halve = Event("time >= 25", {"X": "X / 2 + 0.25"}, id="halve")
    bad = dataclasses.replace(model, events=(halve,))
    with pytest.raises(SimulationError, match="event 'halve' at t=25 assigns 'X' = .*non-negative integers"):
        cs.simulate(bad, t_eval=T, n_trajectories=100, seed=SEED)


def test_event_errors():
    net = ReactionNetwork.from_string("k = 1\ninit X = 0\n0 -> X ; k")
    for event, match in [
        (Event("time >= 2 && X > 3", {"X": "0"}, id="mixed"), "'mixed'.*depends on time in a form"),
        (Event("X > 3", {"Y": "0"}, id="e"), "assigns 'Y', which is neither"),
        (Event("X + 1", {"X": "0"}, id="e"), "not a condition"),
    ]:
        model = EventModel(net, {"X": 0}, {"k": 1.0}, events=[event])
        with pytest.raises(cs.NetworkError, match=match):
            cs.simulate(model, t_eval=[0.0, 1.0], seed=0)


# -- unsupported elements and invalid input -------------------------------------------------
BASE = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version1/core" level="3" version="1"{ns}>
  <model id="m">
    <listOfCompartments><compartment id="c" size="1" constant="true"/></listOfCompartments>
    <listOfSpecies>
      <species id="X" compartment="c" initialAmount="{x0}" hasOnlySubstanceUnits="true"
               boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfParameters><parameter id="k" value="1" constant="false"/></listOfParameters>
    {rules}
    {constraints}
    <listOfReactions>
      <reaction id="R1" reversible="false" fast="{fast}">
        <listOfProducts><speciesReference species="X" stoichiometry="1" constant="true"/></listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML">{law}</math></kineticLaw>
      </reaction>
    </listOfReactions>
    {events}
  </model>
</sbml>"""
MATH = '<math xmlns="http://www.w3.org/1998/Math/MathML">{}</math>'
TIME = '<csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/time"> t </csymbol>'
TRIGGER = ('<trigger initialValue="true" persistent="true">'
           f'{MATH.format(f"<apply><geq/>{TIME}<cn>1</cn></apply>")}</trigger>')
ASSIGN = ('<listOfEventAssignments><eventAssignment variable="X">'
          f'{MATH.format("<cn>0</cn>")}</eventAssignment></listOfEventAssignments>')


def sbml_text(**parts):
    values = dict(ns="", x0="0", rules="", constraints="", fast="false", law="<ci> k </ci>", events="")
    values.update(parts)
    return BASE.format(**values)


def test_base_document_reads():
    model = read_sbml(sbml_text())
    assert model.network.species == ("X",) and model.params == {"k": 1.0}


@pytest.mark.parametrize("parts, match", [
    (dict(events=f'<listOfEvents><event id="late" useValuesFromTriggerTime="true">{TRIGGER}'
                 f'<delay>{MATH.format("<cn>1</cn>")}</delay>{ASSIGN}</event></listOfEvents>'),
     "event 'late' has a delay"),
    (dict(events=f'<listOfEvents><event id="first" useValuesFromTriggerTime="true">{TRIGGER}'
                 f'<priority>{MATH.format("<cn>1</cn>")}</priority>{ASSIGN}</event></listOfEvents>'),
     "event 'first' has a priority"),
    (dict(rules=f'<listOfRules><rateRule variable="k">{MATH.format("<cn>1</cn>")}</rateRule></listOfRules>'),
     "rate rule for 'k'"),
    (dict(rules=f'<listOfRules><algebraicRule>{MATH.format("<apply><minus/><ci>k</ci><cn>1</cn></apply>")}'
                '</algebraicRule></listOfRules>'),
     "algebraic rule 'k - 1'"),
    (dict(fast="true"), "reaction 'R1' is fast"),
    (dict(constraints=f'<listOfConstraints><constraint>{MATH.format("<apply><gt/><ci>X</ci><cn>0</cn></apply>")}'
                      '</constraint></listOfConstraints>'),
     "constraint 'X > 0'"),
    (dict(law=f"<apply><times/><ci> k </ci>{TIME}</apply>"), "kinetic law of reaction 'R1' depends on time"),
    (dict(law="<apply><ci> undefined_function </ci><ci> k </ci></apply>"), "not valid SBML|unknown function"),
    (dict(law="<apply><csymbol encoding='text' definitionURL='http://www.sbml.org/sbml/symbols/delay'>"
              "delay</csymbol><ci> X </ci><cn> 1 </cn></apply>"),
     "kinetic law of reaction 'R1': delay"),
    (dict(x0="2.5"), "species 'X': initial amount 2.5 is not a non-negative integer"),
    (dict(ns=' xmlns:distrib="http://www.sbml.org/sbml/level3/version1/distrib/version1"'
             ' distrib:required="true"'),
     "distrib"),
])
def test_unsupported_elements_raise_naming_them(parts, match):
    with pytest.raises(SBMLError, match=match):
        read_sbml(sbml_text(**parts))


def test_invalid_input():
    with pytest.raises(FileNotFoundError):
        read_sbml(DATA / "no_such_model.xml")
    with pytest.raises(SBMLError, match="not valid SBML"):
        read_sbml("<sbml><model></sbml>")
    law = '<kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><ci> k </ci></math></kineticLaw>'
    no_law = sbml_text().replace(law, "")
    with pytest.raises(SBMLError, match="reaction 'R1' has no kinetic law"):
        read_sbml(no_law)


def test_boundary_species_rules_and_concentration_events():
    # S is a boundary species (a reactant that reactions do not consume), in concentration
    # units in a compartment of size 4; the law reads the assignment-rule parameter "rate" and S
    # as a concentration; an event assigns S a concentration.
    text = """<?xml version="1.0" encoding="UTF-8"?>
<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3" version="2">
  <model id="boundary">
    <listOfCompartments><compartment id="V" size="4" constant="true"/></listOfCompartments>
    <listOfSpecies>
      <species id="S" compartment="V" initialConcentration="2.5" hasOnlySubstanceUnits="false"
               boundaryCondition="true" constant="false"/>
      <species id="X" compartment="V" initialAmount="0" hasOnlySubstanceUnits="true"
               boundaryCondition="false" constant="false"/>
    </listOfSpecies>
    <listOfParameters>
      <parameter id="k" value="0.5" constant="true"/>
      <parameter id="rate" constant="false"/>
    </listOfParameters>
    <listOfRules>
      <assignmentRule variable="rate"><math xmlns="http://www.w3.org/1998/Math/MathML">
        <apply><times/><ci>k</ci><ci>S</ci></apply></math></assignmentRule>
    </listOfRules>
    <listOfReactions>
      <reaction id="make" reversible="false">
        <listOfReactants><speciesReference species="S" stoichiometry="1" constant="true"/></listOfReactants>
        <listOfProducts><speciesReference species="X" stoichiometry="1" constant="true"/></listOfProducts>
        <kineticLaw><math xmlns="http://www.w3.org/1998/Math/MathML"><ci>rate</ci></math></kineticLaw>
      </reaction>
    </listOfReactions>
    <listOfEvents>
      <event id="dilute" useValuesFromTriggerTime="true">
        <trigger initialValue="true" persistent="true"><math xmlns="http://www.w3.org/1998/Math/MathML">
          <apply><geq/><ci>X</ci><cn>5</cn></apply></math></trigger>
        <listOfEventAssignments>
          <eventAssignment variable="S"><math xmlns="http://www.w3.org/1998/Math/MathML"><cn>0.5</cn></math></eventAssignment>
        </listOfEventAssignments>
      </event>
    </listOfEvents>
  </model>
</sbml>"""
    model = read_sbml(text)
    net = model.network
    assert model.x0 == {"S": 10, "X": 0}  # 2.5 * 4
    assert net.parameters == ("k", "V")  # "rate" is substituted; V is read through S / V
    np.testing.assert_array_equal(net.stoichiometry, [[0, 1]])  # S is not consumed
    theta = net.parameter_vector(model.params)
    np.testing.assert_allclose(net.propensities(np.array([10, 0]), theta), [0.5 * 10 / 4])
    (ev,) = model.events
    assert ev.assignments[0][0] == "S"
    assert str(ev.assignments[0][1]) == "0.5 * V"  # a concentration times the volume


def test_import_does_not_need_libsbml():
    code = "import sys, cupyssa; assert 'libsbml' not in sys.modules; assert callable(cupyssa.read_sbml)"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- export and round trips --------------------------------------------------------------------
ROUND_TRIP = """
    k1 = 0.002
    k2 = 0.1
    vmax = 8
    K = 30
    n = 2.5
    Km = 12
    kn = 3
    bn = 1
    w = 0.05
    init A = 60
    init B = 5
    init C = 2
    2 A -> B ; k1
    B -> 2 A ; k2
    B + C -> C ; k1
    0 -> C ; hill(B, vmax, K, n)
    0 -> C ; hillr(A, vmax, K, n)
    C -> 0 ; mm(C, vmax, Km)
    0 -> A ; neural(sigmoid, kn, bn, w*C)
"""


def test_network_round_trip_identical_trajectories():
    net = ReactionNetwork.from_string(ROUND_TRIP)
    xml = net.to_sbml()
    doc = libsbml.readSBMLFromString(xml)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False)
    doc.checkConsistency()
    assert [doc.getError(i).getMessage() for i in range(doc.getNumErrors())
            if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR] == []
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)
    back = read_sbml(xml)
    assert back.network.species == net.species
    assert back.network.parameters == net.parameters
    assert back.network.reaction_names == net.reaction_names
    np.testing.assert_array_equal(back.network.reactant_matrix, net.reactant_matrix)
    np.testing.assert_array_equal(back.network.product_matrix, net.product_matrix)
    assert back.params == net.parameter_defaults and back.x0 == net.initial_defaults
    # modifiers are declared for species a law reads without being a reactant
    rxn = doc.getModel().getReaction("R3")
    assert [rxn.getModifier(i).getSpecies() for i in range(rxn.getNumModifiers())] == ["B"]
    t = np.linspace(0, 5, 11)
    a = cs.simulate(net, t_eval=t, n_trajectories=500, seed=SEED)
    # the numpy backend evaluates the read-back expressions with the same operations as the
    # compiled kernels (tests/test_expressions.py), and needs no compilation
    b = cs.simulate(back, t_eval=t, n_trajectories=500, seed=SEED, backend="numpy")
    np.testing.assert_array_equal(a.states, b.states)  # same doubles in every propensity
    assert a.n_events.min() > 20


def test_model_with_events_round_trip():
    model = read_sbml(DATA / "immigration_death_event.xml")
    xml = model_to_sbml(model)
    back = read_sbml(xml)
    assert back.events == model.events
    assert back.params == model.params and back.x0 == model.x0
    a = cs.simulate(model, t_eval=T, n_trajectories=300, seed=SEED)
    b = cs.simulate(back, t_eval=T, n_trajectories=300, seed=SEED)
    np.testing.assert_array_equal(a.states, b.states)
    # and the network alone through ReactionNetwork.to_sbml with explicit values
    xml = model.network.to_sbml(x0={"X": 7}, params={"alpha": 3.0})
    again = read_sbml(xml)
    assert again.x0 == {"X": 7} and again.params["alpha"] == 3.0 and again.events == ()


def test_export_errors():
    net = ReactionNetwork.from_string("k = 1\ninit X = 0\n0 -> X ; k")
    with pytest.raises(SBMLError, match="per trajectory"):
        network_to_sbml(net, params={"k": [1.0, 2.0]})
    with pytest.raises(SBMLError, match="unknown name"):
        network_to_sbml(net, x0={"Y": 1})
    assert isinstance(read_sbml(network_to_sbml(net)).network.reactions[0].law, Expression)


def test_fsp_and_gradients_refuse_models_with_events():
    model = cs.read_sbml(DATA / "immigration_death_event.xml")
    with pytest.raises(cs.NetworkError, match="events"):
        cs.cme.fsp(model, t_eval=[1.0], bounds={"X": 50})
    loss = cs.losses.Mean(np.ones((1, model.network.n_species)))
    with pytest.raises(cs.ParameterError, match="events"):
        cs.value_and_grad(loss, model, t_eval=[1.0], n_trajectories=10, seed=0)
