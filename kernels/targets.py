"""Compile the shared kernel source for one target.

Kernel functions are plain Python that call each other through module globals. To compile a
family of them for a target (``numba.njit`` or ``numba.cuda.jit(device=True)``), each function is
rebuilt with the same code object but with globals in which its callees are the already-compiled
versions, then decorated. The NumPy backend calls the plain functions directly.
"""

import types


def retarget(functions, decorate, provided=None, tag="", decorate_inline=None, inline=(),
             replace=None):
    """Compile ``functions`` (callees before callers) with ``decorate``.

    Parameters
    ----------
    functions : sequence of plain Python functions
        In dependency order; a function may call any earlier one by its ``__name__``.
    decorate : callable
        Maps a Python function to its compiled version (e.g. ``numba.njit(cache=True)``).
    provided : mapping name -> compiled function, optional
        Already compiled functions the family calls (e.g. code-generated rate laws, or a
        previously retargeted family), used in place of the module globals of those names.
    decorate_inline, inline : callable, collection of names
        Functions named in ``inline`` are compiled with ``decorate_inline`` instead (e.g.
        ``numba.njit(inline="always")`` for the per-step helpers, so that no call passes the
        network tables or pays reference counting on them in the inner loop).
    replace : mapping name -> plain Python function, optional
        Compiled in the family in place of the function of that name (e.g. a code-generated,
        network-specific version with the same contract); it may call the family's functions.
    tag : str
        Appended to each clone's ``__qualname__``. Numba's on-disk cache is keyed by the function's
        file and qualified name, not by compile options or by which callees were linked in, so
        each distinct build configuration needs its own tag or it may load another's machine code.

    Returns
    -------
    types.SimpleNamespace
        The compiled functions by name.
    """
    compiled = dict(provided or {})
    for f in functions:
        if f.__name__ in compiled:
            continue  # a provided (e.g. code-generated) function replaces the module default
        f = (replace or {}).get(f.__name__, f)
        g = dict(f.__globals__)
        g.update(compiled)
        clone = types.FunctionType(f.__code__, g, f.__name__, f.__defaults__, f.__closure__)
        clone.__module__ = f.__module__
        clone.__qualname__ = f"{f.__qualname__}__{tag}" if tag else f.__qualname__
        clone.__doc__ = f.__doc__
        chosen = decorate_inline if f.__name__ in inline and decorate_inline else decorate
        compiled[f.__name__] = chosen(clone)
    return types.SimpleNamespace(**compiled)
