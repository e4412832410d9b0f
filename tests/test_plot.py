"""cupyssa.plot, rendered with the Agg backend."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import cupyssa as cs  # noqa: E402
from cupyssa import plot  # noqa: E402

T = np.linspace(0.0, 10.0, 21)


@pytest.fixture(scope="module")
def result():
    return cs.simulate(cs.models.dimerization(A0=60), t_eval=T, n_trajectories=300, seed=1)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def saved(fig, tmp_path, name):
    path = tmp_path / f"{name}.png"
    fig.savefig(path)
    assert path.exists() and path.stat().st_size > 1000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    return path


def has_data(ax, lines=0, patches=0, collections=0):
    assert len(ax.lines) >= lines and len(ax.patches) >= patches
    assert len(ax.collections) >= collections
    lim = ax.dataLim
    assert np.all(np.isfinite([lim.x0, lim.x1, lim.y0, lim.y1])) and lim.width > 0


def test_plot_trajectories(result, tmp_path):
    ax = plot.plot_trajectories(result, n=5)
    has_data(ax, lines=10)  # 5 trajectories x 2 species
    assert ax.dataLim.y1 == result.states[:5].max()
    saved(ax.figure, tmp_path, "traj")
    ax = plot.plot_trajectories(result, species="B", n=3)
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), result["B"][0])


def test_plot_mean_sd(result, tmp_path):
    fig, ax = plt.subplots()
    assert plot.plot_mean_sd(result, ax=ax) is ax
    has_data(ax, lines=2, collections=2)  # a mean line and a band per species
    np.testing.assert_allclose(ax.lines[0].get_ydata(), result.mean()[:, 0])
    saved(fig, tmp_path, "mean_sd")


def test_plot_marginal_against_fsp_and_vectors(result, tmp_path):
    model = cs.models.dimerization(A0=60)
    exact = cs.cme.fsp(model, t_eval=T)
    ax = plot.plot_marginal(result, "B", -1, reference=exact)
    has_data(ax, lines=1, patches=1)
    assert ax.lines[0].get_label() == "FSP"
    freq = np.bincount(result["B"][:, -1]) / result.n_trajectories
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, freq)
    saved(ax.figure, tmp_path, "marginal")

    probs = exact.marginal("B", 5)
    ax = plot.plot_marginal(result, "B", 5, reference=probs)
    assert ax.lines[0].get_label() == "reference"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), probs[probs > 0])


def test_plot_marginal_against_a_van_like_solution(result):
    class Solution:  # anything with .marginal(species, t_index), like cme.solve's VANSolution
        def marginal(self, species, t_index):
            return np.full(31, 1 / 31)

    ax = plot.plot_marginal(result, "B", 3, reference=Solution())
    assert ax.lines[0].get_label() == "Solution" and len(ax.lines[0].get_xdata()) == 31


HISTORY_ROWS = [{"iteration": i, "loss": 10.0 / (i + 1), "k1": 1e-3 * (1 + i), "k2": 0.1,
                 "w": np.ones(3) * i, "note": "x"} for i in range(20)]


@pytest.mark.parametrize("history", [
    HISTORY_ROWS,
    {"loss": [r["loss"] for r in HISTORY_ROWS], "k1": [r["k1"] for r in HISTORY_ROWS]},
    type("FitResult", (), {"history": HISTORY_ROWS})(),
])
def test_plot_fit_history(history, tmp_path):
    ax_loss, ax_par = plot.plot_fit_history(history)
    has_data(ax_loss, lines=1)
    has_data(ax_par, lines=1)
    np.testing.assert_allclose(ax_loss.lines[0].get_ydata(), [r["loss"] for r in HISTORY_ROWS])
    assert ax_loss.get_yscale() == "linear"  # loss spans a factor 20 < 100
    saved(ax_loss.figure, tmp_path, "history")


def test_fit_history_columns():
    it, loss, params = plot.history_columns(HISTORY_ROWS)
    np.testing.assert_array_equal(it, np.arange(20))
    assert set(params) == {"k1", "k2", "|w|"}  # arrays as norms, strings ignored
    np.testing.assert_allclose(params["|w|"], np.sqrt(3) * np.arange(20))
    with pytest.raises(KeyError, match="loss"):
        plot.history_columns([{"k": 1.0}])
    fig, ax = plt.subplots()
    ax_loss, ax_par = plot.plot_fit_history(HISTORY_ROWS, ax=ax)  # one Axes: twin y axis
    assert ax_loss is ax and ax_par is not ax


def test_unknown_species(result):
    with pytest.raises(KeyError, match="unknown species"):
        plot.plot_mean_sd(result, species="Z")


def test_missing_matplotlib_is_explained(result, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "cupyssa\[plot\]"'):
        plot.plot_mean_sd(result)
