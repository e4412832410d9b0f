"""Plots of ensembles, marginal distributions and fit histories (matplotlib).

Install with ``pip install "cupyssa[plot]"``; matplotlib is imported only when a function is
called. Every function draws on the ``ax`` it is given (or a new figure's axes) and returns the
axes, so plots compose::

    import matplotlib.pyplot as plt
    from cupyssa import plot
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    plot.plot_trajectories(res, n=10, ax=axes[0])
    plot.plot_mean_sd(res, ax=axes[1])
    plot.plot_marginal(res, "A", -1, reference=cs.cme.fsp(...), ax=axes[2])
    fig.savefig("ensemble.png")

Fit histories (:func:`plot_fit_history`) are given in either of two shapes:

* a sequence of mappings, one per iteration: ``[{"loss": 3.2, "k1": 0.1, "k2": 1.0}, ...]``;
* a mapping of columns: ``{"loss": [3.2, 2.9, ...], "k1": [0.1, 0.12, ...], ...}``;

or any object with a ``history`` attribute holding one of them (a fit result). The key
``loss`` is required; an optional ``iteration`` (or ``step``) key gives the x axis (default
``0, 1, ...``); every other numeric key is a parameter. Array-valued parameters (e.g. a weight
vector) are drawn as their Euclidean norm ``|name|``; non-numeric keys are ignored.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["plot_trajectories", "plot_mean_sd", "plot_marginal", "plot_fit_history",
           "history_columns"]

#: at most this many parameter curves in a fit history (the first ones, in key order)
MAX_PARAMETER_CURVES = 12


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('cupyssa.plot needs matplotlib: pip install "cupyssa[plot]"') from None
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _species_columns(result, species) -> list[tuple[str, int]]:
    names = tuple(result.species)
    if species is None:
        chosen = list(names)
    elif isinstance(species, (str, int, np.integer)):
        chosen = [species]
    else:
        chosen = list(species)
    out = []
    for s in chosen:
        if isinstance(s, (int, np.integer)):
            if not -len(names) <= int(s) < len(names):
                raise KeyError(f"species index {s} out of range for {len(names)} species")
            out.append((names[int(s)], int(s) % len(names)))
        elif s in names:
            out.append((s, names.index(s)))
        else:
            raise KeyError(f"unknown species {s!r}; species are {names}")
    return out


def plot_trajectories(result, species: str | Sequence[str] | None = None, n: int = 10, ax=None):
    """Sample trajectories as step functions of time.

    Parameters
    ----------
    result : SimulationResult
    species : str or sequence of str, optional
        Species to draw (default all); one color per species.
    n : int
        Number of trajectories drawn (the first ``n``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    plt_colors = [f"C{i}" for i in range(10)]
    k = max(1, min(int(n), result.states.shape[0]))
    for c, (name, s) in enumerate(_species_columns(result, species)):
        for i in range(k):
            ax.step(result.t, result.states[i, :, s], where="post", color=plt_colors[c % 10],
                    alpha=0.6, lw=0.9, label=name if i == 0 else None)
    ax.set_xlabel("time")
    ax.set_ylabel("count")
    ax.set_title(f"{k} sample trajectories")
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_mean_sd(result, species: str | Sequence[str] | None = None, ax=None):
    """Ensemble mean with a ± one standard deviation band.

    Parameters
    ----------
    result : SimulationResult
    species : str or sequence of str, optional
        Species to draw (default all).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    mean = result.states.mean(axis=0)
    sd = result.states.std(axis=0, ddof=1) if result.states.shape[0] > 1 else np.zeros_like(mean)
    for c, (name, s) in enumerate(_species_columns(result, species)):
        color = f"C{c % 10}"
        ax.plot(result.t, mean[:, s], color=color, lw=1.5, label=f"{name} mean")
        ax.fill_between(result.t, mean[:, s] - sd[:, s], mean[:, s] + sd[:, s], color=color,
                        alpha=0.25, lw=0, label=f"{name} ± sd")
    ax.set_xlabel("time")
    ax.set_ylabel("count")
    ax.set_title(f"mean ± sd over {result.states.shape[0]} trajectories")
    ax.legend(loc="best", fontsize="small")
    return ax


def _reference_probs(reference, species: str, t_index: int) -> tuple[np.ndarray, str]:
    if hasattr(reference, "marginal"):
        probs = np.asarray(reference.marginal(species, t_index), dtype=float)
        kind = type(reference).__name__
        label = {"FSPResult": "FSP", "VANSolution": "VAN"}.get(kind, kind)
        return probs, label
    return np.asarray(reference, dtype=float), "reference"


def plot_marginal(result, species: str, t_index: int, reference: Any = None, ax=None):
    """Histogram of one species' counts at ``result.t[t_index]`` against an exact law.

    Parameters
    ----------
    result : SimulationResult
    species : str
    t_index : int
        Index into ``result.t`` (negative counts from the end).
    reference : FSPResult, VANSolution, array_like or None
        Something with ``.marginal(species, t_index)`` (``cupyssa.cme.fsp`` or
        ``cupyssa.cme.solve`` results, on the same time grid) or a probability vector over
        counts ``0, 1, ...``; drawn as markers over the histogram.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax)
    (name, s), = _species_columns(result, species)
    counts = np.asarray(result.states[:, t_index, s], dtype=np.int64)
    freq = np.bincount(counts) / counts.size
    ax.bar(np.arange(freq.size), freq, width=1.0, color="C0", alpha=0.5,
           label=f"SSA ({counts.size} trajectories)")
    lo, hi = int(counts.min()), int(counts.max())
    if reference is not None:
        probs, label = _reference_probs(reference, name, t_index)
        support = np.flatnonzero(probs > 0)  # e.g. a parity constraint leaves gaps: skip them
        ax.plot(support, probs[support], "o-", color="C3", ms=3, lw=1, label=label)
        visible = np.flatnonzero(probs > 1e-4 * probs.max()) if probs.size and probs.max() > 0 else []
        if len(visible):
            lo, hi = min(lo, int(visible[0])), max(hi, int(visible[-1]))
    pad = max(1, (hi - lo) // 20)
    ax.set_xlim(lo - pad - 0.5, hi + pad + 0.5)
    ax.set_xlabel(f"{name} count")
    ax.set_ylabel("probability")
    ax.set_title(f"{name} at t = {result.t[t_index]:g}")
    ax.legend(loc="best", fontsize="small")
    return ax


def history_columns(history) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(iterations, loss, {parameter: values})`` from a fit history (formats: module
    docstring)."""
    if hasattr(history, "history") and not isinstance(history, Mapping):
        history = history.history
    if isinstance(history, Mapping):
        columns = {k: list(v) for k, v in history.items()}
    else:
        rows = list(history)
        if not rows:
            raise ValueError("the fit history is empty")
        if not all(isinstance(r, Mapping) for r in rows):
            raise TypeError("a fit history is a sequence of mappings, a mapping of columns, or "
                            "an object with a .history attribute holding one")
        keys = list(dict.fromkeys(k for r in rows for k in r))
        columns = {k: [r.get(k, np.nan) for r in rows] for k in keys}
    if "loss" not in columns:
        raise KeyError(f"the fit history has no 'loss' entry; keys are {list(columns)}")
    loss = np.asarray(columns.pop("loss"), dtype=float)
    it_key = next((k for k in ("iteration", "step") if k in columns), None)
    iterations = (np.asarray(columns.pop(it_key), dtype=float) if it_key
                  else np.arange(loss.size, dtype=float))
    params = {}
    for k, values in columns.items():
        try:
            arrs = [np.asarray(v, dtype=float) for v in values]
        except (TypeError, ValueError):
            continue
        if all(a.ndim == 0 for a in arrs):
            params[k] = np.array([float(a) for a in arrs])
        else:
            params[f"|{k}|"] = np.array([np.linalg.norm(a) for a in arrs])
    return iterations, loss, params


def plot_fit_history(history, ax=None):
    """Loss and parameters against iteration.

    Parameters
    ----------
    history : sequence of mappings, mapping of sequences, or object with ``.history``
        See the module docstring; ``loss`` is required.
    ax : None, a pair of Axes, or one Axes
        ``None``: a new figure with the loss above the parameters. A pair: (loss, parameters).
        One Axes: the loss on it and the parameters on a twin y axis.

    Returns
    -------
    tuple of matplotlib Axes
        ``(loss_ax, parameter_ax)``.
    """
    iterations, loss, params = history_columns(history)
    if ax is None:
        _, (ax_loss, ax_par) = _pyplot().subplots(2, 1, sharex=True, figsize=(6.4, 6.0))
    elif isinstance(ax, (list, tuple, np.ndarray)):
        ax_loss, ax_par = ax
    else:
        ax_loss, ax_par = ax, ax.twinx()
    ax_loss.plot(iterations, loss, color="k", lw=1.5, label="loss")
    finite = loss[np.isfinite(loss)]
    if finite.size and np.all(finite > 0) and finite.max() / finite.min() > 100:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("fit history")
    for i, (name, values) in enumerate(list(params.items())[:MAX_PARAMETER_CURVES]):
        ax_par.plot(iterations, values, color=f"C{i % 10}", lw=1.2, label=name)
    if len(params) > MAX_PARAMETER_CURVES:
        ax_par.set_title(f"first {MAX_PARAMETER_CURVES} of {len(params)} parameters",
                         fontsize="small")
    ax_par.set_xlabel("iteration")
    ax_par.set_ylabel("parameter value")
    if params:
        ax_par.legend(loc="best", fontsize="small")
    return ax_loss, ax_par
