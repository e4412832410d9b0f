"""Chunked, resumable ensemble output (cupyssa.output)."""

import json

import numpy as np
import pytest

import cupyssa as cs
from cupyssa import output
from cupyssa.output import OutputError

FORMATS = ["npz", "zarr", "h5"]
T = np.linspace(0.0, 5.0, 6)


def _need(fmt):
    if fmt == "zarr":
        pytest.importorskip("zarr")
    if fmt == "h5":
        pytest.importorskip("h5py")


class Crash(Exception):
    pass


def crash_after(index):
    def hook(i):
        if i == index:
            raise Crash(f"injected failure after chunk {i}")
    return hook


@pytest.fixture
def model():
    return cs.models.immigration_death()


@pytest.mark.parametrize("fmt", FORMATS)
def test_written_file_equals_simulate(tmp_path, model, fmt):
    _need(fmt)
    path = tmp_path / f"run.{fmt}"
    info = output.simulate_to_file(path, model, t_eval=T, n_trajectories=230, seed=11, chunk=100)
    assert (info["n_chunks"], info["chunks_computed"], info["chunks_resumed"]) == (3, 3, 0)
    ref = cs.simulate(model, t_eval=T, n_trajectories=230, seed=11)
    d = output.load(path)
    np.testing.assert_array_equal(d["states"], ref.states)
    np.testing.assert_array_equal(d["n_events"], ref.n_events)
    np.testing.assert_array_equal(d["time"], T)
    np.testing.assert_array_equal(d["trajectory"], np.arange(230))
    assert d["species"] == ("X",)
    assert d["states"].dtype == np.int32
    assert d["attrs"]["seed"] == 11
    assert d["attrs"]["cupyssa_version"] == cs.__version__
    assert len(d["attrs"]["model_hash"]) == 64
    assert json.loads(d["attrs"]["cupyssa_run"])["n_trajectories"] == 230


@pytest.mark.parametrize("fmt", FORMATS)
def test_interrupted_run_resumes_to_the_identical_result(tmp_path, model, fmt, monkeypatch):
    _need(fmt)
    kw = dict(t_eval=T, n_trajectories=450, seed=5, chunk=100)
    whole = tmp_path / f"whole.{fmt}"
    output.simulate_to_file(whole, model, **kw)

    path = tmp_path / f"resumed.{fmt}"
    monkeypatch.setattr(output, "_after_chunk", crash_after(1))  # dies after 2 of 5 chunks
    with pytest.raises(Crash):
        output.simulate_to_file(path, model, **kw)
    state, _ = output.existing_run(path)
    assert state == "partial"
    with pytest.raises(OutputError, match="unfinished"):
        output.load(path)
    if fmt == "npz":
        assert not path.exists()
        assert len(list((tmp_path / "resumed.npz.partial").glob("chunk_*.npz"))) == 2

    monkeypatch.setattr(output, "_after_chunk", None)
    info = output.simulate_to_file(path, model, **kw)
    assert (info["chunks_resumed"], info["chunks_computed"]) == (2, 3)
    a, b = output.load(whole), output.load(path)
    for name in ("states", "n_events", "time", "trajectory"):
        np.testing.assert_array_equal(a[name], b[name])
    assert a["attrs"]["model_hash"] == b["attrs"]["model_hash"]
    if fmt == "npz":
        assert whole.read_bytes() == path.read_bytes()  # the identical final file
        assert not (tmp_path / "resumed.npz.partial").exists()

    again = output.simulate_to_file(path, model, **kw)  # complete: nothing to do
    assert again["chunks_computed"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_partial_run_with_other_arguments_is_refused(tmp_path, model, fmt, monkeypatch):
    _need(fmt)
    path = tmp_path / f"run.{fmt}"
    monkeypatch.setattr(output, "_after_chunk", crash_after(0))
    with pytest.raises(Crash):
        output.simulate_to_file(path, model, t_eval=T, n_trajectories=300, seed=1, chunk=100)
    monkeypatch.setattr(output, "_after_chunk", None)
    with pytest.raises(OutputError, match=r"seed \(1 there, 2 now\)"):
        output.simulate_to_file(path, model, t_eval=T, n_trajectories=300, seed=2, chunk=100)
    with pytest.raises(OutputError, match="chunk"):
        output.simulate_to_file(path, model, t_eval=T, n_trajectories=300, seed=1, chunk=50)
    info = output.simulate_to_file(path, model, t_eval=T, n_trajectories=300, seed=2, chunk=100,
                                   overwrite=True)
    assert info["chunks_computed"] == 3
    ref = cs.simulate(model, t_eval=T, n_trajectories=300, seed=2)
    np.testing.assert_array_equal(output.load(path)["states"], ref.states)


def test_complete_file_with_other_arguments_is_refused(tmp_path, model):
    path = tmp_path / "run.npz"
    output.simulate_to_file(path, model, t_eval=T, n_trajectories=10, seed=1)
    with pytest.raises(OutputError, match="different arguments"):
        output.simulate_to_file(path, model, t_eval=T, n_trajectories=10, seed=3)
    foreign = tmp_path / "other.npz"
    np.savez(foreign, a=np.arange(3))
    with pytest.raises(OutputError, match="not a cupyssa output"):
        output.simulate_to_file(foreign, model, t_eval=T, n_trajectories=10, seed=1)


def test_per_trajectory_inputs_are_sliced_by_chunk(tmp_path, model):
    k = np.linspace(1.0, 20.0, 50)
    path = tmp_path / "sweep.npz"
    output.simulate_to_file(path, model, t_eval=T, params={"k": k}, n_trajectories=50, seed=4,
                            chunk=16)
    ref = cs.simulate(model, t_eval=T, params={"k": k}, n_trajectories=50, seed=4)
    np.testing.assert_array_equal(output.load(path)["states"], ref.states)


def test_unknown_suffix_and_missing_directory(tmp_path, model):
    with pytest.raises(OutputError, match="unknown output format"):
        output.simulate_to_file(tmp_path / "run.csv", model, t_eval=T, n_trajectories=2, seed=0)
    with pytest.raises(OutputError, match="does not exist"):
        output.simulate_to_file(tmp_path / "no" / "run.npz", model, t_eval=T, n_trajectories=2,
                                seed=0)


@pytest.mark.parametrize("fmt", ["zarr", "h5"])
def test_xarray_reads_the_layout(tmp_path, model, fmt):
    _need(fmt)
    xr = pytest.importorskip("xarray")
    path = tmp_path / f"run.{fmt}"
    output.simulate_to_file(path, model, t_eval=T, n_trajectories=20, seed=2, chunk=8)
    if fmt == "zarr":
        ds = xr.open_zarr(path)
    else:
        pytest.importorskip("h5netcdf")
        ds = xr.open_dataset(path, engine="h5netcdf")
    assert ds["states"].dims == ("trajectory", "time", "species")
    assert ds["states"].dtype == np.int32
    ref = cs.simulate(model, t_eval=T, n_trajectories=20, seed=2)
    np.testing.assert_array_equal(ds["states"].values, ref.states)
    np.testing.assert_array_equal(ds["time"].values, T)
    assert list(ds["species"].values) == ["X"]
    assert int(ds.attrs["seed"]) == 2
    ds.close()


def test_to_xarray(tmp_path, model):
    pytest.importorskip("xarray")
    path = tmp_path / "run.npz"
    output.simulate_to_file(path, model, t_eval=T, n_trajectories=5, seed=2)
    ds = output.to_xarray(path)
    assert ds["states"].shape == (5, len(T), 1)
    assert ds.attrs["seed"] == 2


def test_storage_chunks_never_straddle_run_chunks():
    from cupyssa.output import _store_rows

    assert _store_rows(10_000, 10 ** 6, 404) == 10_000          # 4 MB chunks: as they are
    rows = _store_rows(10_000, 10 ** 6, 404_000)                  # 4 GB: split
    assert 10_000 % rows == 0 and rows * 404_000 <= 1 << 24
    assert _store_rows(9_973, 10 ** 6, 1 << 20) == 1              # a prime: one row each
    assert _store_rows(10_000, 500, 1 << 20) == 16                # one run chunk: any split
