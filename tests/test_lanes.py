"""The generated reverse sweep with trajectories in SIMD lanes (:mod:`cupyssa.lanes`): the same
doubles as the sweep one trajectory at a time, and chosen exactly where it serves."""

import numpy as np
import pytest

import cupyssa as cs
from conftest import mass_action_orders_network
from cupyssa.backends.cpu import kernels_for
from cupyssa.kernels import cpu
from cupyssa.kernels.backward import FILL, KERNEL, LINEAR, SCORE, STRAIGHT_THROUGH
from cupyssa.lanes import lanes_sweep_source


def _model(name):
    """``(model or network, x0, params)``: ``value_and_grad``'s arguments."""
    if name == "dimerization":
        return cs.models.dimerization(A0=60, k1=0.01), None, None
    net, params, x0 = mass_action_orders_network(with_hill=False)
    return net, x0, params


def _replay_args(monkeypatch, name, observation, temperature):
    """The arguments of the generic family's reverse sweep in one ``value_and_grad`` call of 37
    trajectories (groups of 16 lanes: the last one partly empty), observed at 4 times, with a
    time checkpoint every 4 steps."""
    model, x0, params = _model(name)
    net = getattr(model, "network", model)
    captured = []
    generic = kernels_for(net, False)
    replay = generic.replay_batch
    monkeypatch.setattr(generic, "replay_batch", lambda *a: captured.append(a) or replay(*a))
    t_eval = [0.5, 1.0, 1.2, 2.0]
    weights = np.linspace(0.5, 1.5, len(t_eval) * net.n_species).reshape(len(t_eval), -1)
    cs.value_and_grad(cs.losses.Mean(weights), model, x0=x0, params=params, t_eval=t_eval,
                      n_trajectories=37, seed=7, observation=observation,
                      temperature=temperature, checkpoint_every=4, specialize=False)
    return net, captured[0]


def _run(sweep, named):
    """Run ``sweep`` on the reverse-sweep arguments ``named`` with fresh outputs; return them."""
    out = {"grads": np.full_like(named["grads"], np.nan),
           "x_start": np.full_like(named["x_start"], -1),
           "t_start": np.full_like(named["t_start"], np.nan)}
    sweep(*{**named, **out}.values())
    return out


@pytest.mark.parametrize("name", ["dimerization", "orders"])
@pytest.mark.parametrize("observation", ["fill", "kernel"])
def test_lanes_sweep_gives_the_scalar_sweeps_doubles(monkeypatch, name, observation):
    """Per-trajectory gradients, recovered initial states and times equal the generic sweep's bit
    for bit: two networks (2 reactions; 5 reactions of orders 0-3 in one and two species, an odd
    count of Gumbel exponentials), fill and kernel observations at 4 times, temperatures 0.1 and
    0.5 (``w^q`` with ``q = 9`` and 1), a trajectory with no events left, one whose tape
    outgrew its array (nothing to replay: a NaN time) and a partly empty lane group."""
    for temperature in (0.1, 0.5):
        net, args = _replay_args(monkeypatch, name, observation, temperature)
        named = cpu.replay_arguments(*args)
        K = named["K"].copy()
        assert K.min() > 0 and np.ptp(K) > 0  # paths of different lengths share a group
        K[3] = 0
        K[20] = named["tape"].shape[1] + 1
        named["K"] = K
        mode, estimator = named.pop("mode"), named.pop("estimator")
        want = _run(cpu.default.sweep(mode, estimator), named)
        lanes = kernels_for(net, True).sweep(mode, estimator, named["inv_temp"])
        assert lanes.py_func.__name__ == "sweep_lanes"
        got = _run(lanes, named)
        for key in ("grads", "x_start", "t_start"):
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} at T={temperature}")
        assert np.isnan(got["t_start"][20]) and not got["grads"][20].any()
        assert np.array_equal(got["x_start"][3], named["x_final"][3])


def test_lanes_sweep_serves_what_it_can_and_nothing_else():
    """The lanes sweep takes the straight-through estimator with fill or kernel observations at
    the temperatures ``1/(q + 1)``, ``q = 0..64``; the score estimator, linear observations and
    other temperatures keep the sweep one trajectory at a time, and networks with other laws or
    more than 8 reactions have no lanes sweep."""
    net = _model("orders")[0]
    family = kernels_for(net, True)
    name = lambda *variant: family.sweep(*variant).py_func.__name__  # noqa: E731 (compiles nothing)
    for mode in (FILL, KERNEL):
        for inv_temp in (1.0, 2.0, 10.0, 65.0):
            assert name(mode, STRAIGHT_THROUGH, inv_temp) == "sweep_lanes"
        for inv_temp in (1.0 / 0.3, 0.5, 66.0, 1.0 / 0.7):
            assert name(mode, STRAIGHT_THROUGH, inv_temp) == "sweep_batch"
        assert name(mode, SCORE, 10.0) == "sweep_batch"
        assert name(mode, STRAIGHT_THROUGH) == "sweep_batch"
    assert name(LINEAR, STRAIGHT_THROUGH, 10.0) == "sweep_batch"
    assert lanes_sweep_source(mass_action_orders_network(with_hill=True)[0]) is None
    assert lanes_sweep_source(cs.models.vilar_oscillator().network) is None  # 16 reactions
    assert kernels_for(net, False).sweep(FILL, STRAIGHT_THROUGH, 10.0).py_func.__name__ \
        == "sweep_batch"  # the generic family has none
