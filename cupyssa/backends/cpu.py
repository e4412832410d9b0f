"""The ``cpu`` backend: Numba ``njit(parallel=True)`` over trajectories."""

import numba
import numpy as np

from ..codegen import is_on_disk
from ..kernels import cpu
from ..kernels.philox import split_seed


def _family_parts(network, specialize, load=True):
    """What the family for ``network`` is built from: ``(generated, cacheable, key)``, the
    network's generated kernel functions by the name they replace (expression laws, event
    triggers, and the specialized ``fire`` and reverse-sweep functions with, where the network
    qualifies, the lanes sweep of :mod:`cupyssa.lanes`; each None if ``load`` is false and it is
    not loaded yet)."""
    generated = dict(network.kernel_functions())
    if specialize:
        from ..lanes import lanes_functions
        from ..specialize import specialized_functions

        generated.update(specialized_functions(network, load))
        generated.update(lanes_functions(network, load))
    cacheable = all(fn is not None and is_on_disk(fn) for fn in generated.values())
    # generated functions are memoized by their source, so networks with the same generated code
    # share one compiled family
    key = tuple(sorted((name, id(fn)) for name, fn in generated.items()))
    return generated, cacheable, key


def kernels_for(network, specialize=False):
    """The compiled CPU family for ``network``: the shared cached one, or one built around the
    network's code-generated kernel functions."""
    generated, cacheable, key = _family_parts(network, specialize)
    if not generated:
        return cpu.default
    if key not in _FAMILIES:
        _FAMILIES[key] = _PROBED.pop(key, None) or cpu.build(cache=cacheable, replace=generated)
    return _FAMILIES[key]


def compiled_signatures(network) -> int:
    """How many signatures the generic family's batch kernel for ``network`` has compiled (or
    loaded from the disk cache) so far in this process."""
    return len(kernels_for(network, False).simulate_batch.signatures)


def is_compiled(network, specialize=False) -> bool:
    """Whether :func:`kernels_for` has this family ready in this process (no compilation; no
    generated source is written or imported to find out)."""
    generated, _, key = _family_parts(network, specialize, load=False)
    if any(fn is None for fn in generated.values()):
        return False
    return not generated or key in _FAMILIES


def _batch_kernel(family, kernel, args):
    """``(dispatcher, signature)``: the compiled batch kernel that ``family.<kernel>(*args)`` runs,
    and the Numba types of the arguments it receives (``replay_batch`` runs the sweep of its
    arguments' observation mode and estimator, which the compiled sweep holds as constants)."""
    if kernel == "replay_batch":
        dispatcher, args = family.sweep_of(args)
    else:
        dispatcher = getattr(family, kernel)
    return dispatcher, tuple(numba.typeof(a) for a in args)


def _disk_index(network, specialize, kernel="simulate_batch", args=()):
    """``(family, index)``: the family (built without compiling if this process has none yet)
    and the Numba cache index of the batch kernel that ``kernel(*args)`` runs, ``{}`` when
    nothing usable is cached. A family found cached counts as ready for :func:`is_compiled` from
    then on."""
    generated, cacheable, key = _family_parts(network, specialize)
    if not cacheable:
        return None, {}
    if not generated:
        family = cpu.default
    elif key in _FAMILIES:
        family = _FAMILIES[key]
    else:
        if key not in _PROBED:  # built once per process (a few ms), then kept for kernels_for
            _PROBED[key] = cpu.build(cache=True, replace=generated)
        family = _PROBED[key]
    try:
        # numba.core.caching.IndexDataCacheFile: empty when missing, written by another Numba
        # version, or stale (the kernel source's stamp changed)
        index = _batch_kernel(family, kernel, args)[0]._cache._cache_file._load_index()
    except (AttributeError, OSError, EOFError, ValueError, TypeError):
        return family, {}  # Numba's internals moved: decide as for an uncompiled family
    if index and generated:
        _FAMILIES.setdefault(key, _PROBED.pop(key, family))
    return family, index


def is_disk_cached(network, specialize=True) -> bool:
    """Whether Numba's disk cache holds compiled code of this family's batch kernel for the
    current kernel sources (written by an earlier process): using the family then costs a load
    from disk, not a compilation. Reads Numba's cache index and compiles nothing."""
    return bool(_disk_index(network, specialize)[1])


def has_machine_code(network, specialize, args, kernel="simulate_batch") -> bool:
    """Whether this family's batch kernel ``kernel`` (``simulate_batch`` or ``replay_batch``) can
    run ``args`` without compiling: machine code for their types is loaded in this process, or
    Numba's disk cache holds it for this machine and the current kernel sources (the same index
    key Numba's own load looks up)."""
    if is_compiled(network, specialize):
        dispatcher, signature = _batch_kernel(kernels_for(network, specialize), kernel, args)
        if signature in dispatcher.signatures:
            return True
    family, index = _disk_index(network, specialize, kernel, args)
    if not index:
        return False
    dispatcher, signature = _batch_kernel(family, kernel, args)
    try:
        return dispatcher._cache._index_key(signature, dispatcher.targetctx.codegen()) in index
    except (AttributeError, TypeError):
        return False  # Numba's internals moved: decide as for an uncompiled family


_FAMILIES: dict = {}
#: families built by is_disk_cached and not found in the disk cache: not ready (is_compiled), but
#: not built again at every simulate call that asks
_PROBED: dict = {}


def simulate_segment(network, seg, t_stop, t_eval, seed, max_steps, specialize=False):
    N = seg.x.shape[0]
    status = np.zeros(N, dtype=np.int8)
    fail_reaction = np.zeros(N, dtype=np.int64)
    lo, hi = split_seed(seed)
    kernels_for(network, specialize).simulate_batch(
        seg.x, seg.theta, seg.first, seg.t, seg.k, seg.obs, float(t_stop), float(seg.horizon),
        np.ascontiguousarray(t_eval, dtype=float), lo, hi, int(max_steps),
        np.iinfo(seg.states.dtype).max, network.tables, seg.states, seg.tape, seg.t_checkpoints,
        seg.checkpoint_every, seg.obs_step, seg.obs_frac, seg.obs_next, seg.width, seg.smooth,
        status, fail_reaction)
    return status, fail_reaction
