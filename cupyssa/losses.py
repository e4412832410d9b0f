"""Losses on an ensemble of observed trajectories.

A loss is any object with

* ``value(Y) -> float`` — the loss of the observations ``Y [N, T, S]`` (floats: exact counts for
  ``fill`` observations, interpolated or smoothed counts otherwise);
* ``grad(Y) -> array [N, T, S]`` — ``dL/dY`` (what the straight-through estimator backpropagates);
* ``weight_grad(Y) -> array [N]`` (needed by the score-function estimator) — the derivative of the
  loss with respect to per-trajectory weights ``w_i`` at ``w = 1``, where every ensemble average
  is taken as ``(1/N) sum_i w_i phi(Y_i)``. The score-function gradient is then
  ``sum_i (dL/dw_i - b_i) d log p(path_i) / d theta`` with a leave-one-out baseline ``b_i``.

Written with the array module of ``Y`` (NumPy or CuPy). The built-ins below cover linear
functionals of the means, second moments and the squared mismatch of means and variances
against data.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Loss", "Mean", "SecondMoment", "MomentMismatch"]


def _xp(a):
    from .ratelaws import _xp as get

    return get(a)


def _weights(weights, Y):
    """Broadcast user weights to ``[T, S]``."""
    return np.broadcast_to(np.asarray(weights, dtype=float), Y.shape[1:])


class Loss:
    """Base class of the built-in losses (the protocol is duck-typed; subclassing is optional)."""

    def value(self, Y) -> float:
        raise NotImplementedError

    def grad(self, Y):
        raise NotImplementedError

    def weight_grad(self, Y):
        raise NotImplementedError


class Mean(Loss):
    """``L = sum_{m,s} W[m, s] E[Y_{m,s}]`` (a linear functional of the ensemble means).

    Parameters
    ----------
    weights : array_like, broadcastable to [T, S]
        ``W``; e.g. ``np.eye(S)[s]`` for species ``s`` at every time.
    """

    def __init__(self, weights):
        self.weights = weights

    def value(self, Y):
        return float((_weights(self.weights, Y) * Y.mean(axis=0)).sum())

    def grad(self, Y):
        xp = _xp(Y)
        return xp.broadcast_to(xp.asarray(_weights(self.weights, Y)) / Y.shape[0], Y.shape)

    def weight_grad(self, Y):
        return (Y * _weights(self.weights, Y)).sum(axis=(1, 2)) / Y.shape[0]


class SecondMoment(Loss):
    """``L = sum_{m,s} W[m, s] E[Y_{m,s}^2]``."""

    def __init__(self, weights):
        self.weights = weights

    def value(self, Y):
        return float((_weights(self.weights, Y) * (Y * Y).mean(axis=0)).sum())

    def grad(self, Y):
        return 2.0 * Y * _weights(self.weights, Y) / Y.shape[0]

    def weight_grad(self, Y):
        return (Y * Y * _weights(self.weights, Y)).sum(axis=(1, 2)) / Y.shape[0]


class MomentMismatch(Loss):
    """Squared mismatch of ensemble means and variances against data.

    ``L = sum_{m,s} [ wm (E[Y] - mean_data)^2 + wv (Var[Y] - var_data)^2 ]`` with the ensemble
    (biased, ``1/N``) variance. Entries of the data that are NaN are ignored.

    Parameters
    ----------
    mean_data : array_like [T, S]
    var_data : array_like [T, S], optional
    mean_weight, var_weight : float or array_like [T, S]
    """

    def __init__(self, mean_data, var_data=None, mean_weight=1.0, var_weight=1.0):
        self.mean_data = np.asarray(mean_data, dtype=float)
        self.var_data = None if var_data is None else np.asarray(var_data, dtype=float)
        self.mean_weight = mean_weight
        self.var_weight = var_weight

    def _terms(self, Y):
        xp = _xp(Y)
        mean = Y.mean(axis=0)
        var = (Y * Y).mean(axis=0) - mean * mean
        wm = xp.asarray(_weights(self.mean_weight, Y) * ~np.isnan(self.mean_data))
        dm = mean - xp.asarray(np.nan_to_num(self.mean_data))
        if self.var_data is None:
            wv = xp.zeros_like(wm)
            dv = xp.zeros_like(dm)
        else:
            wv = xp.asarray(_weights(self.var_weight, Y) * ~np.isnan(self.var_data))
            dv = var - xp.asarray(np.nan_to_num(self.var_data))
        return mean, wm, dm, wv, dv

    def value(self, Y):
        _, wm, dm, wv, dv = self._terms(Y)
        return float((wm * dm * dm + wv * dv * dv).sum())

    def grad(self, Y):
        # dE[Y]/dY_i = 1/N; dVar/dY_i = 2 (Y_i - E[Y]) / N
        mean, wm, dm, wv, dv = self._terms(Y)
        N = Y.shape[0]
        return (2.0 * wm * dm + 2.0 * wv * dv * 2.0 * (Y - mean)) / N

    def weight_grad(self, Y):
        # weighted moments: E_w[Y] = sum w Y / N, Var_w = sum w Y^2 / N - E_w[Y]^2, so at w = 1
        # dE/dw_i = Y_i / N and dVar/dw_i = (Y_i^2 - 2 E[Y] Y_i) / N
        mean, wm, dm, wv, dv = self._terms(Y)
        N = Y.shape[0]
        per = 2.0 * wm * dm * Y + 2.0 * wv * dv * (Y * Y - 2.0 * mean * Y)
        return per.sum(axis=(1, 2)) / N
