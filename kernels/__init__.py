"""Compute kernels of cupyssa (installed as ``cupyssa.kernels``).

The kernels know nothing of the Python API: they see a network only as the flat integer and
float tables of :mod:`cupyssa.kernels.codes` and write results into arrays they are given.
Functions in :mod:`~cupyssa.kernels.philox`, :mod:`~cupyssa.kernels.propensity` and
:mod:`~cupyssa.kernels.trajectory` are plain Python written so that one source compiles with
``numba.njit`` for the CPU and ``numba.cuda.jit(device=True)`` for the GPU.
"""
