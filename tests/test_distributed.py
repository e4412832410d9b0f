"""cupyssa.distributed on a LocalCluster of 2 worker processes."""

import numpy as np
import pytest

pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")

import cupyssa as cs  # noqa: E402
from cupyssa.distributed import (shard_ranges, simulate_distributed,  # noqa: E402
                                 value_and_grad_distributed)
from cupyssa.errors import ParameterError, SimulationError  # noqa: E402

T = np.linspace(0.0, 10.0, 11)


@pytest.fixture(scope="module")
def client():
    # worker processes (as on a real cluster): each loads the kernels from Numba's disk cache
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_shard_ranges():
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(3, 5) == [(0, 3)]
    with pytest.raises(ParameterError):
        shard_ranges(3, 0)


@pytest.mark.parametrize("shard_size", [None, 1, 37, 1000])
def test_identical_to_single_machine(client, shard_size):
    model = cs.models.immigration_death()
    ref = cs.simulate(model, t_eval=T, n_trajectories=120, seed=42)
    res = simulate_distributed(client, model, t_eval=T, n_trajectories=120, seed=42,
                               shard_size=shard_size)
    np.testing.assert_array_equal(res.states, ref.states)
    np.testing.assert_array_equal(res.n_events, ref.n_events)
    assert res.seed == 42 and res.species == ref.species
    np.testing.assert_array_equal(res.t, ref.t)


def test_per_trajectory_inputs_offsets_and_backends(client):
    model = cs.models.dimerization(A0=100)
    k2 = np.linspace(0.05, 0.5, 40)
    ref = cs.simulate(model, t_eval=T, params={"k2": k2}, n_trajectories=40, seed=3,
                      first_trajectory=1000, backend="numpy")
    res = simulate_distributed(client, model, t_eval=T, params={"k2": k2}, n_trajectories=40,
                               seed=3, shard_size=7, first_trajectory=1000, backend="numpy")
    np.testing.assert_array_equal(res.states, ref.states)
    assert res.first_trajectory == 1000


def test_seed_is_drawn_once_and_returned(client):
    model = cs.models.immigration_death()
    res = simulate_distributed(client, model, t_eval=T, n_trajectories=20, shard_size=5)
    ref = cs.simulate(model, t_eval=T, n_trajectories=20, seed=res.seed)
    np.testing.assert_array_equal(res.states, ref.states)


def test_worker_failures_are_reraised_with_the_global_index(client):
    model = cs.models.immigration_death()
    with pytest.raises(SimulationError, match=r"trajectory 1[0-9] reached max_steps=0") as info:
        simulate_distributed(client, model, t_eval=T, n_trajectories=10, seed=0, shard_size=5,
                             max_steps=0, first_trajectory=10)
    assert 10 <= info.value.trajectory < 20


# -- gradients ---------------------------------------------------------------------------------

def _grad_setup():
    from cupyssa import losses

    model = cs.models.immigration_death()
    T5 = np.linspace(0.0, 5.0, 6)
    data = np.full((len(T5), 1), 30.0)
    return model, T5, losses.Mean(np.ones((len(T5), 1))), losses.MomentMismatch(data, data)


@pytest.mark.parametrize("which", ["mean", "mismatch"])
def test_gradient_is_bitwise_the_single_machine_one(client, which):
    model, T5, mean_loss, mismatch = _grad_setup()
    loss = mean_loss if which == "mean" else mismatch
    v1, g1 = cs.value_and_grad(loss, model.network, model.x0, T5, model.params,
                               n_trajectories=61, seed=5)
    v2, g2 = value_and_grad_distributed(client, loss, model.network, model.x0, T5, model.params,
                                        61, seed=5, shard_size=16, bitwise=True)
    assert v2 == v1
    np.testing.assert_array_equal(g2.vector, g1.vector)
    np.testing.assert_array_equal(g2.stderr_vector, g1.stderr_vector)
    assert dict(g2) == dict(g1) and g2.n_trajectories == 61
    # default: per-shard sums, equal up to summation order
    v3, g3 = value_and_grad_distributed(client, loss, model.network, model.x0, T5, model.params,
                                        61, seed=5, shard_size=16)
    assert v3 == v1
    np.testing.assert_allclose(g3.vector, g1.vector, rtol=1e-12, atol=1e-12 * np.abs(g1.vector).max())
    np.testing.assert_allclose(g3.stderr_vector, g1.stderr_vector, rtol=1e-9)


def test_gradient_fill_observations_and_per_trajectory(client):
    model, T5, loss, _ = _grad_setup()
    kw = dict(observation="fill", per_trajectory=True)
    v1, g1, Y1 = cs.value_and_grad(loss, model.network, model.x0, T5, model.params,
                                   n_trajectories=20, seed=2, return_observations=True, **kw)
    v2, g2, Y2 = value_and_grad_distributed(client, loss, model.network, model.x0, T5,
                                            model.params, 20, seed=2, shard_size=7,
                                            return_observations=True, bitwise=True, **kw)
    np.testing.assert_array_equal(Y2, Y1)
    np.testing.assert_array_equal(g2.per_trajectory, g1.per_trajectory)
    np.testing.assert_array_equal(g2.vector, g1.vector)
    assert v2 == v1


def test_gradient_score_estimator(client):
    model, T5, loss, _ = _grad_setup()
    v1, g1 = cs.value_and_grad(loss, model.network, model.x0, T5, model.params,
                               n_trajectories=30, seed=4, estimator="score")
    one = value_and_grad_distributed(client, loss, model.network, model.x0, T5, model.params, 30,
                                     seed=4, estimator="score", shard_size=30, bitwise=True)
    np.testing.assert_array_equal(one[1].vector, g1.vector)  # one shard: the same baseline
    v2, g2 = value_and_grad_distributed(client, loss, model.network, model.x0, T5, model.params,
                                        30, seed=4, estimator="score", shard_size=10)
    assert v2 == v1 and np.all(np.isfinite(g2.vector))


def test_gradient_shards_have_at_least_two_trajectories():
    from cupyssa.distributed import gradient_shards

    assert gradient_shards(9, 4) == [(0, 4), (4, 9)]
    assert gradient_shards(8, 4) == [(0, 4), (4, 8)]
    with pytest.raises(ParameterError):
        gradient_shards(8, 1)
