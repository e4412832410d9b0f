"""Property-based tests over random networks from ``cupyssa.testing.strategies``."""

import numba
import numpy as np
from scipy.optimize import linprog
from hypothesis import given, settings
from hypothesis import strategies as st

import cupyssa as cs
from cupyssa.network import ReactionNetwork
from cupyssa.ratelaws import HillRepression, Neural
from cupyssa.testing import strategies as cst

SETTINGS = settings(max_examples=25, deadline=None)
MAX_STEPS = 10 ** 6


def run(model, t, n=12, seed=0, **kw):
    net, x0, params = model
    return cs.simulate(net, x0, t, params, n_trajectories=n, seed=seed, max_steps=MAX_STEPS, **kw)


# -- the strategies themselves ---------------------------------------------------------------

@SETTINGS
@given(cst.networks(max_species=4, max_reactions=6, laws=cst.LAWS))
def test_networks_are_valid(net):
    assert 1 <= net.n_species <= 4
    assert net.reactant_matrix.sum(axis=1).max() <= 3
    assert not np.any(np.all(net.stoichiometry == 0, axis=1))  # no no-op reactions
    for r in net.reactions:
        if r.reactants:
            # open networks never add molecules through a reaction that has reactants
            assert sum(r.products.values()) <= sum(r.reactants.values())
        if isinstance(r.law, (HillRepression, Neural)):  # laws that do not vanish at zero
            assert not r.reactants
    # every species decays (degradation=True by default)
    assert all(f"deg{i}" in net.reaction_names for i in range(net.n_species))
    # defaults are declared and within the documented ranges
    ranges = cst.parameter_ranges(net)
    for name, value in net.parameter_defaults.items():
        lo, hi = ranges[name]
        assert lo <= value <= hi, (name, value, lo, hi)


@SETTINGS
@given(cst.networks(max_species=4, conservative=True, laws=cst.LAWS))
def test_conservative_networks_have_a_positive_law(net):
    C = net.conservation_laws()
    assert C.shape[0] >= 1 and net.n_species >= 2
    assert all(r.reactants for r in net.reactions)  # no sources
    # a conserved total with every weight >= 1 exists: nu @ c = 0, c >= 1 is feasible
    lp = linprog(np.zeros(net.n_species), A_eq=net.stoichiometry, b_eq=np.zeros(net.n_reactions),
                 bounds=[(1, None)] * net.n_species)
    assert lp.status == 0


@SETTINGS
@given(st.data())
def test_parameter_sets_for_a_user_network(data):
    net = ReactionNetwork.from_string("""
        0 -> A ; kb
        2 A -> B ; kd
        B -> 0 ; hill(A, vmax, K, n)
    """)
    params = data.draw(cst.parameter_sets(net, ranges={"kb": (1.0, 2.0)}))
    assert set(params) == set(net.parameters)
    assert 1.0 <= params["kb"] <= 2.0
    assert cst.MASS_ACTION_RANGES[2][0] <= params["kd"] <= cst.MASS_ACTION_RANGES[2][1]
    net.parameter_vector(params)  # valid


# -- properties of the simulator -------------------------------------------------------------

@SETTINGS
@given(cst.models(laws=cst.LAWS), cst.time_grids())
def test_populations_never_negative(model, t):
    res = run(model, t)
    assert res.states.min() >= 0
    assert (res.n_events >= 0).all()
    net, x0, _ = model
    np.testing.assert_array_equal(res.states[:, 0], np.broadcast_to(net.initial_vector(x0),
                                                                      res.states[:, 0].shape))


@SETTINGS
@given(st.one_of(cst.models(conservative=True, laws=cst.LAWS), cst.models(laws=cst.LAWS)),
       cst.time_grids())
def test_conservation_laws_hold_on_every_trajectory(model, t):
    net = model[0]
    C = net.conservation_laws()
    assert (net.stoichiometry @ C.T == 0).all()
    res = run(model, t)
    totals = res.states.astype(np.int64) @ C.T          # [n, T, n_laws]
    assert (totals == totals[:, :1]).all()


@SETTINGS
@given(cst.models(laws=cst.LAWS), cst.time_grids(), st.integers(0, 2 ** 64 - 1))
def test_cpu_and_numpy_backends_agree_exactly(model, t, seed):
    cpu = run(model, t, n=8, seed=seed, backend="cpu")
    ref = run(model, t, n=8, seed=seed, backend="numpy")
    np.testing.assert_array_equal(cpu.states, ref.states)
    np.testing.assert_array_equal(cpu.n_events, ref.n_events)


@SETTINGS
@given(cst.models(laws=cst.LAWS), cst.time_grids(), st.integers(1, 7))
def test_results_do_not_depend_on_chunking(model, t, chunk):
    whole = run(model, t, n=15)
    chunked = run(model, t, n=15, chunk_size=chunk)
    np.testing.assert_array_equal(whole.states, chunked.states)
    np.testing.assert_array_equal(whole.n_events, chunked.n_events)


@settings(max_examples=20, deadline=None)
@given(cst.models(laws=cst.LAWS), cst.time_grids())
def test_results_do_not_depend_on_thread_count(model, t):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run(model, t, n=24)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = run(model, t, n=24)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one.states, two.states)
    np.testing.assert_array_equal(one.n_events, two.n_events)


@SETTINGS
@given(cst.models(laws=cst.LAWS), cst.time_grids(), st.integers(1, 11))
def test_first_trajectory_slices_compose(model, t, cut):
    net, x0, params = model
    whole = run(model, t, n=12, seed=7)
    head = cs.simulate(net, x0, t, params, n_trajectories=cut, seed=7, max_steps=MAX_STEPS)
    tail = cs.simulate(net, x0, t, params, n_trajectories=12 - cut, seed=7, max_steps=MAX_STEPS,
                       first_trajectory=cut)
    np.testing.assert_array_equal(whole.states, np.concatenate([head.states, tail.states]))
    np.testing.assert_array_equal(whole.n_events, np.concatenate([head.n_events, tail.n_events]))
    assert tail.first_trajectory == cut
