"""Ensemble output files: ``.npz``, ``.zarr`` and ``.h5``, written chunk by chunk and resumable.

Layout (the same in every format, and the one :func:`to_xarray` turns into an
``xarray.Dataset``):

=============  =============================  =========================================
name           dims                           holds
=============  =============================  =========================================
``states``     (trajectory, time, species)    integer populations
``n_events``   (trajectory,)                  events per trajectory up to the last time
``time``       (time,)                        the observation grid ``t_eval``
``species``    (species,)                     species names
``trajectory`` (trajectory,)                  global trajectory indices ``0..n-1``
=============  =============================  =========================================

Attributes: ``seed``, ``model_hash`` (sha256 of the model and of every argument that affects
the results), ``cupyssa_version``, ``backend``, ``chunk`` and ``cupyssa_run`` (a JSON string
of everything a resumed run must agree on). In ``.npz`` files, which have no attributes, each
attribute is a 0-d array entry of the same name. ``.zarr`` stores are written in the zarr v2
format with ``_ARRAY_DIMENSIONS`` (what ``xarray.open_zarr`` reads); ``.h5`` files carry HDF5
dimension scales (what ``xarray.open_dataset(..., engine="h5netcdf")`` reads).

Resuming. Trajectories are simulated in chunks of ``chunk`` trajectories; trajectory ``i``
depends only on ``(seed, i)``, so chunks are independent and any subset can be (re)computed.

* ``.npz``: each finished chunk is written atomically (temporary file, then rename) as
  ``FILE.partial/chunk_NNNNNN.npz`` beside a ``manifest.json``. When every chunk is there they
  are assembled into ``FILE`` (streamed into a temporary file, then renamed) and the sidecar
  directory is removed. The final file does not depend on how often the run was interrupted:
  it is byte-identical to that of an uninterrupted run.
* ``.zarr`` / ``.h5``: the arrays are preallocated in ``FILE``; after a chunk is written (and,
  for HDF5, flushed) its flag is set in the ``chunks_done`` attribute (one 0/1 flag per chunk);
  ``complete`` becomes 1 when all are done.

Rerunning with the same arguments skips the finished chunks. A partial run made with other
arguments (another model hash, seed, size, chunking or cupyssa version) is never mixed in: it
is refused with a message, unless ``overwrite=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ._version import __version__
from .errors import CupyssaError

__all__ = ["OutputError", "FORMATS", "output_format", "RunInfo", "simulate_to_file", "load",
           "to_xarray", "existing_run", "hash_inputs", "DEFAULT_CHUNK"]

#: file suffix -> format name
FORMATS = {".npz": "npz", ".zarr": "zarr", ".h5": "h5", ".hdf5": "h5"}
#: trajectories per chunk unless told otherwise
DEFAULT_CHUNK = 10_000
_FORMAT_TAG = "cupyssa-ensemble-1"
_DIMS = {"states": ["trajectory", "time", "species"], "n_events": ["trajectory"],
         "time": ["time"], "species": ["species"], "trajectory": ["trajectory"]}

#: test hook: called as ``_after_chunk(index)`` once chunk ``index`` is safely on disk
_after_chunk: Callable[[int], None] | None = None


class OutputError(CupyssaError, ValueError):
    """A bad output path, a missing optional library, or a partial run that does not match."""


def output_format(path: str | os.PathLike) -> str:
    """The format name (``"npz"``, ``"zarr"`` or ``"h5"``) of an output path, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise OutputError(f"cannot write {str(path)!r}: unknown output format {suffix or '(none)'!r}; "
                          f"use one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise OutputError(f".{'zarr' if module == 'zarr' else 'h5'} files need the '{module}' "
                          "package: pip install \"cupyssa[io]\"") from None


def _store_rows(chunk: int, n: int, row_bytes: int, target: int = 1 << 24) -> int:
    """Rows per zarr / HDF5 chunk: the run's chunk, or a divisor of it whose storage chunk is
    at most ``target`` bytes. Storage chunks never straddle two run chunks, so rewriting an
    unfinished run chunk cannot touch the rows of a finished one."""
    rows = min(chunk, n)
    if rows * row_bytes <= target:
        return rows
    if n <= chunk:  # a single run chunk: nothing to straddle
        return max(1, target // row_bytes)
    for k in range(-(-rows * row_bytes // target), rows + 1):
        if chunk % k == 0:
            return chunk // k
    return 1


@dataclass
class RunInfo:
    """What a chunked run writes: sizes, grid, names, chunking and attributes.

    Attributes
    ----------
    n_trajectories : int
    t : ndarray [T]
    species : tuple of str
    dtype : numpy dtype of ``states``
    chunk : int
        Trajectories per chunk (the last chunk may be shorter).
    attrs : dict
        ``seed``, ``model_hash``, ``backend`` and any further JSON-able attributes.
    """

    n_trajectories: int
    t: np.ndarray
    species: tuple
    dtype: np.dtype
    chunk: int
    attrs: dict = field(default_factory=dict)

    @property
    def n_chunks(self) -> int:
        return -(-self.n_trajectories // self.chunk)

    def chunk_range(self, index: int) -> tuple[int, int]:
        start = index * self.chunk
        return start, min(self.n_trajectories, start + self.chunk)

    def run_key(self) -> dict:
        """Everything a resumed run must agree on (JSON-able)."""
        return {"format": _FORMAT_TAG, "model_hash": str(self.attrs["model_hash"]),
                "seed": int(self.attrs["seed"]), "n_trajectories": int(self.n_trajectories),
                "n_times": int(len(self.t)), "species": list(self.species),
                "dtype": np.dtype(self.dtype).str, "chunk": int(self.chunk),
                "cupyssa_version": __version__}

    def all_attrs(self) -> dict:
        out = dict(self.attrs)
        out.update(seed=int(self.attrs["seed"]), model_hash=str(self.attrs["model_hash"]),
                   cupyssa_version=__version__, chunk=int(self.chunk),
                   cupyssa_run=json.dumps(self.run_key(), sort_keys=True))
        return out


def hash_inputs(network, x0: np.ndarray, theta: np.ndarray, t_eval: np.ndarray, extra: dict) -> str:
    """sha256 of a network (names, reactions, rate laws, kernel tables), the initial state, the
    parameters, the time grid and ``extra`` (a JSON-able mapping of further arguments that
    affect the results)."""
    h = hashlib.sha256(b"cupyssa-inputs\0")
    h.update(json.dumps([list(network.species), list(network.parameters),
                         list(network.reaction_names)]).encode())
    h.update(repr([(r.reactants, r.products, r.law) for r in network.reactions]).encode())
    for arr in network.tables:
        h.update(np.ascontiguousarray(arr).tobytes())
    for arr in (x0, theta, t_eval):
        a = np.ascontiguousarray(arr)
        h.update(str(a.shape).encode() + a.dtype.str.encode() + a.tobytes())
    h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _mismatch(found: dict, wanted: dict) -> str:
    def show(k, v):
        return f"{v[:12]}..." if k == "model_hash" and isinstance(v, str) else repr(v)
    diff = [k for k in sorted(set(found) | set(wanted)) if found.get(k) != wanted.get(k)]
    return ", ".join(f"{k} ({show(k, found.get(k))} there, {show(k, wanted.get(k))} now)"
                     if k != "species" else "species" for k in diff)


# -- npz ---------------------------------------------------------------------------------------

class _NpzWriter:
    def __init__(self, path: Path, info: RunInfo):
        self.path, self.info = path, info
        self.partial = path.with_name(path.name + ".partial")

    def _chunk_file(self, i: int) -> Path:
        return self.partial / f"chunk_{i:06d}.npz"

    def open(self, overwrite: bool) -> set:
        key = self.info.run_key()
        if self.path.exists():
            state, attrs = existing_run(self.path)
            if state == "complete" and _key_of(attrs) == key and not overwrite:
                shutil.rmtree(self.partial, ignore_errors=True)
                return set(range(self.info.n_chunks))
            if not overwrite:
                raise OutputError(f"{self.path} exists{_why(state, attrs, key)}; pass --overwrite "
                                  "(overwrite=True) to replace it, or choose another output file")
            if self.path.is_dir():
                raise OutputError(f"{self.path} is a directory; not removing it")
        if self.partial.exists():
            manifest = self.partial / "manifest.json"
            try:
                found = json.loads(manifest.read_text())
            except (OSError, ValueError):
                found = None
            if found == key and not overwrite:
                return {i for i in range(self.info.n_chunks) if self._chunk_file(i).exists()}
            if not overwrite:
                reason = ("its manifest is missing or unreadable" if found is None else
                          "it was started with different arguments: " + _mismatch(found, key))
                raise OutputError(f"found the partial run {self.partial} but {reason}; pass "
                                  "--overwrite (overwrite=True) to discard it, or rerun with the "
                                  "arguments it was started with")
            shutil.rmtree(self.partial)
        self.partial.mkdir(parents=False)
        _atomic_write_bytes(self.partial / "manifest.json",
                            json.dumps(key, sort_keys=True, indent=1).encode())
        return set()

    def write(self, i: int, states: np.ndarray, n_events: np.ndarray):
        target = self._chunk_file(i)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, states=states, n_events=n_events)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def finish(self):
        info = self.info
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        T, S = len(info.t), len(info.species)
        try:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                with _npy_entry(zf, "states", (info.n_trajectories, T, S), info.dtype) as f:
                    for i in range(info.n_chunks):
                        f.write(self._load_chunk(i)["states"].tobytes())
                with _npy_entry(zf, "n_events", (info.n_trajectories,), np.dtype(np.int64)) as f:
                    for i in range(info.n_chunks):
                        f.write(self._load_chunk(i, "n_events")["n_events"].tobytes())
                small = {"time": np.asarray(info.t, dtype=float),
                         "species": np.array(info.species, dtype=str),
                         "trajectory": np.arange(info.n_trajectories, dtype=np.int64)}
                for name, value in info.all_attrs().items():
                    small[name] = _attr_array(name, value)
                for name, arr in small.items():
                    with _npy_entry(zf, name, arr.shape, arr.dtype) as f:
                        f.write(np.ascontiguousarray(arr).tobytes())
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        shutil.rmtree(self.partial, ignore_errors=True)

    def _load_chunk(self, i: int, *names) -> dict:
        start, stop = self.info.chunk_range(i)
        T, S = len(self.info.t), len(self.info.species)
        try:
            with np.load(self._chunk_file(i)) as z:
                out = {n: z[n] for n in (names or ("states", "n_events"))}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            self._chunk_file(i).unlink(missing_ok=True)
            raise OutputError(f"chunk file {self._chunk_file(i)} is unreadable ({exc}); it has been "
                              "removed: rerun the same command to recompute it") from None
        expected = {"states": ((stop - start, T, S), np.dtype(self.info.dtype)),
                    "n_events": ((stop - start,), np.dtype(np.int64))}
        for n, arr in out.items():
            if (arr.shape, arr.dtype) != expected[n]:
                self._chunk_file(i).unlink(missing_ok=True)
                raise OutputError(f"chunk file {self._chunk_file(i)} has the wrong shape; it has been "
                                  "removed: rerun the same command to recompute it")
        return out

    def close(self):
        pass


class _npy_entry:
    """A ``.npy`` member of a zip file written in pieces (deterministic timestamps)."""

    def __init__(self, zf: zipfile.ZipFile, name: str, shape, dtype):
        self.zf, self.name, self.shape, self.dtype = zf, name, tuple(shape), np.dtype(dtype)

    def __enter__(self):
        info = zipfile.ZipInfo(self.name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_STORED
        self.f = self.zf.open(info, "w", force_zip64=True)
        np.lib.format.write_array_header_1_0(
            self.f, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": self.shape})
        return self.f

    def __exit__(self, *exc):
        self.f.close()


def _attr_array(name: str, value) -> np.ndarray:
    """A 0-d array for an attribute of an ``.npz`` file (loadable without pickle)."""
    if name == "seed":
        return np.array(value, dtype=np.uint64)
    if isinstance(value, (bool, int, float, str, np.integer, np.floating)):
        return np.array(value)
    return np.array(json.dumps(value, default=str))


def _atomic_write_bytes(path: Path, data: bytes):
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _key_of(attrs: dict | None):
    if not attrs or "cupyssa_run" not in attrs:
        return None
    try:
        return json.loads(str(attrs["cupyssa_run"]))
    except ValueError:
        return None


def _why(state, attrs, key) -> str:
    if state is None:
        return " and is not a cupyssa output file"
    found = _key_of(attrs)
    if found is None:
        return " and is not a cupyssa output file"
    if found != key:
        return " and was written with different arguments: " + _mismatch(found, key)
    return ""


# -- zarr and h5 -------------------------------------------------------------------------------

class _ArrayStoreWriter:
    """Shared logic of the preallocated formats (zarr, h5)."""

    def __init__(self, path: Path, info: RunInfo):
        self.path, self.info = path, info
        self.done = np.zeros(info.n_chunks, dtype=np.uint8)

    def open(self, overwrite: bool) -> set:
        key = self.info.run_key()
        if self.path.exists():
            state, attrs = existing_run(self.path)
            if state is not None and _key_of(attrs) == key and not overwrite:
                self._open_existing()
                self.done = np.array(self._get_attr("chunks_done"), dtype=np.uint8)
                return set(np.flatnonzero(self.done).tolist())
            if not overwrite:
                what = "the partial run " if state == "partial" else ""
                raise OutputError(f"{what}{self.path} exists{_why(state, attrs, key)}; pass --overwrite "
                                  "(overwrite=True) to replace it, or choose another output file")
            self._remove()
        self._create()
        return set()

    def write(self, i: int, states: np.ndarray, n_events: np.ndarray):
        start, stop = self.info.chunk_range(i)
        self._write_rows(start, stop, states, n_events)
        self.done[i] = 1
        self._set_attr("chunks_done", self.done.tolist())

    def finish(self):
        self._set_attr("complete", 1)
        self._finalize()


class _ZarrWriter(_ArrayStoreWriter):
    def _remove(self):
        is_store = (self.path / ".zgroup").exists() or (self.path / "zarr.json").exists()
        if not self.path.is_dir() or not is_store:
            raise OutputError(f"{self.path} exists and is not a zarr store; not removing it")
        shutil.rmtree(self.path)

    def _open_existing(self):
        zarr = _require("zarr")
        self.group = zarr.open_group(str(self.path), mode="r+")

    def _create(self):
        zarr = _require("zarr")
        info = self.info
        try:
            g = zarr.open_group(str(self.path), mode="w", zarr_format=2)
        except TypeError:  # zarr < 3
            g = zarr.open_group(str(self.path), mode="w")
        create = getattr(g, "create_array", None) or g.create_dataset
        n, T, S = info.n_trajectories, len(info.t), len(info.species)
        rows = _store_rows(info.chunk, n, T * S * np.dtype(info.dtype).itemsize)
        arrays = {"states": ((n, T, S), (rows, T, S), info.dtype),
                  "n_events": ((n,), (rows,), np.int64),
                  "trajectory": ((n,), (rows,), np.int64),
                  "time": ((T,), (T,), np.float64),
                  "species": ((S,), (S,), f"<U{max(1, max(len(s) for s in info.species))}")}
        for name, (shape, chunks, dtype) in arrays.items():
            # no fill value: xarray would read it as _FillValue and mask real zeros as NaN
            a = create(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=None)
            a.attrs["_ARRAY_DIMENSIONS"] = _DIMS[name]
        g["time"][:] = np.asarray(info.t, dtype=float)
        g["species"][:] = np.array(info.species)
        attrs = info.all_attrs()
        attrs.update(chunks_done=self.done.tolist(), complete=0)
        g.attrs.update(attrs)
        self.group = g

    def _get_attr(self, name):
        return self.group.attrs[name]

    def _set_attr(self, name, value):
        self.group.attrs[name] = value

    def _write_rows(self, start, stop, states, n_events):
        self.group["states"][start:stop] = states
        self.group["n_events"][start:stop] = n_events
        self.group["trajectory"][start:stop] = np.arange(start, stop, dtype=np.int64)

    def _finalize(self):
        zarr = _require("zarr")
        try:
            zarr.consolidate_metadata(str(self.path))
        except Exception:  # noqa: BLE001 - consolidation is an optimisation for readers only
            pass

    def close(self):
        pass


class _H5Writer(_ArrayStoreWriter):
    def _remove(self):
        if self.path.is_dir():
            raise OutputError(f"{self.path} is a directory; not removing it")
        self.path.unlink()

    def _open_existing(self):
        h5py = _require("h5py")
        self.file = h5py.File(self.path, "r+")

    def _create(self):
        h5py = _require("h5py")
        info = self.info
        n, T, S = info.n_trajectories, len(info.t), len(info.species)
        rows = _store_rows(info.chunk, n, T * S * np.dtype(info.dtype).itemsize)
        f = h5py.File(self.path, "w")
        self.file = f
        f.create_dataset("trajectory", shape=(n,), dtype=np.int64, chunks=(rows,))
        f.create_dataset("time", data=np.asarray(info.t, dtype=float))
        f.create_dataset("species", data=np.array(info.species, dtype=object),
                         dtype=h5py.string_dtype())
        for name in ("trajectory", "time", "species"):
            f[name].make_scale(name)
        f.create_dataset("states", shape=(n, T, S), dtype=info.dtype, chunks=(rows, T, S))
        f.create_dataset("n_events", shape=(n,), dtype=np.int64, chunks=(rows,))
        for name in ("states", "n_events"):
            for axis, dim in enumerate(_DIMS[name]):
                f[name].dims[axis].attach_scale(f[dim])
        for name, value in info.all_attrs().items():
            f.attrs[name] = np.uint64(value) if name == "seed" else value
        f.attrs["chunks_done"] = self.done
        f.attrs["complete"] = 0
        f.flush()

    def _get_attr(self, name):
        return self.file.attrs[name]

    def _set_attr(self, name, value):
        self.file.attrs[name] = np.asarray(value, dtype=np.uint8) if name == "chunks_done" else value
        self.file.flush()

    def _write_rows(self, start, stop, states, n_events):
        self.file["states"][start:stop] = states
        self.file["n_events"][start:stop] = n_events
        self.file["trajectory"][start:stop] = np.arange(start, stop, dtype=np.int64)
        self.file.flush()

    def _finalize(self):
        self.file.flush()

    def close(self):
        f = getattr(self, "file", None)
        if f is not None and f.id.valid:
            f.close()


_WRITERS = {"npz": _NpzWriter, "zarr": _ZarrWriter, "h5": _H5Writer}


# -- reading -----------------------------------------------------------------------------------

def existing_run(path: str | os.PathLike) -> tuple[str | None, dict | None]:
    """The state of what is at ``path``: ``("complete", attrs)``, ``("partial", attrs)`` or
    ``(None, None)`` (nothing there, or not a cupyssa output). For ``.npz``, a sidecar
    ``FILE.partial/`` with a manifest counts as a partial run (its attrs are the manifest)."""
    path = Path(path)
    fmt = output_format(path)
    try:
        if fmt == "npz":
            if path.is_file():
                with np.load(path) as z:
                    if "cupyssa_run" in z.files:  # attributes only: never the big arrays
                        return "complete", {k: z[k][()] for k in z.files if k not in _DIMS}
                return None, None
            manifest = path.with_name(path.name + ".partial") / "manifest.json"
            if manifest.exists():
                key = json.loads(manifest.read_text())
                return "partial", {"cupyssa_run": json.dumps(key), "seed": key.get("seed"),
                                   "model_hash": key.get("model_hash")}
            return None, None
        if not path.exists():
            return None, None
        if fmt == "zarr":
            zarr = _require("zarr")
            attrs = dict(zarr.open_group(str(path), mode="r").attrs)
        else:
            h5py = _require("h5py")
            with h5py.File(path, "r") as f:
                attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except OutputError:
        raise
    except Exception:  # noqa: BLE001 - anything unreadable is "not a cupyssa output"
        return None, None
    if "cupyssa_run" not in attrs:
        return None, None
    return ("complete" if int(attrs.get("complete", 0)) else "partial"), attrs


def load(path: str | os.PathLike) -> dict:
    """Read a complete output file into memory.

    Returns
    -------
    dict
        ``states [n, T, S]``, ``n_events [n]``, ``time [T]``, ``species`` (tuple of str),
        ``trajectory [n]`` and ``attrs`` (dict: seed, model_hash, cupyssa_version, ...).
    """
    path = Path(path)
    fmt = output_format(path)
    state, _ = existing_run(path)
    if state is None:
        if fmt == "npz" and path.with_name(path.name + ".partial").exists():
            state = "partial"
        elif not path.exists():
            raise OutputError(f"{path} does not exist")
        else:
            raise OutputError(f"{path} is not a cupyssa output file")
    if state == "partial":
        raise OutputError(f"{path} is an unfinished run; rerun the same simulate command to finish it")
    names = ("states", "n_events", "time", "species", "trajectory")
    if fmt == "npz":
        with np.load(path) as z:
            out = {n: z[n] for n in names}
            attrs = {k: z[k][()] for k in z.files if k not in names}
    elif fmt == "zarr":
        zarr = _require("zarr")
        g = zarr.open_group(str(path), mode="r")
        out = {n: g[n][:] for n in names}
        attrs = dict(g.attrs)
    else:
        h5py = _require("h5py")
        with h5py.File(path, "r") as f:
            out = {n: f[n][()] for n in names}
            attrs = dict(f.attrs)
    out["species"] = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in out["species"])
    out["attrs"] = {k: (v.item() if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0)
                        else v) for k, v in attrs.items()}
    return out


def to_xarray(path: str | os.PathLike):
    """The output file as an ``xarray.Dataset`` (dims trajectory, time, species; loaded into
    memory). Needs ``xarray``."""
    try:
        import xarray as xr
    except ImportError:
        raise OutputError("to_xarray needs the 'xarray' package: pip install xarray") from None
    d = load(path)
    coords = {"trajectory": d["trajectory"], "time": d["time"], "species": list(d["species"])}
    return xr.Dataset({"states": (_DIMS["states"], d["states"]),
                       "n_events": (_DIMS["n_events"], d["n_events"])}, coords=coords,
                      attrs={k: v for k, v in d["attrs"].items() if k != "chunks_done"})


# -- the chunked driver ------------------------------------------------------------------------

def simulate_to_file(path: str | os.PathLike, model, x0=None, t_eval=None, params=None,
                     n_trajectories: int = 1, seed: int | None = None, *, backend: str = "cpu",
                     chunk: int = DEFAULT_CHUNK, overwrite: bool = False,
                     model_hash: str | None = None, max_steps: int | None = None,
                     dtype=np.int32, progress: bool = False, attrs: dict | None = None) -> dict:
    """Simulate an ensemble chunk by chunk into ``path`` (``.npz``, ``.zarr`` or ``.h5``),
    resuming a run interrupted with the same arguments.

    Parameters
    ----------
    path : path-like
        Output file; the suffix picks the format (see the module docstring).
    model, x0, t_eval, params, n_trajectories, seed, backend, max_steps, dtype
        As for :func:`cupyssa.simulate`. ``seed`` is drawn from the OS when omitted (a resumed
        run then needs the seed recorded in the partial output: pass it explicitly).
    chunk : int
        Trajectories per chunk (the unit of resuming and of memory use).
    overwrite : bool
        Replace an existing output or partial run made with other arguments.
    model_hash : str, optional
        Identity of the inputs, recorded in the file and checked when resuming; by default a
        sha256 of the network, ``x0``, ``params``, ``t_eval``, ``n_trajectories``, ``seed``,
        ``dtype`` and ``backend`` (see :func:`hash_inputs`).
    progress : bool
        Progress bar over trajectories.
    attrs : dict, optional
        Further JSON-able attributes to record (e.g. the model file name).

    Returns
    -------
    dict
        ``path``, ``format``, ``n_chunks``, ``chunks_resumed`` (already on disk),
        ``chunks_computed``, ``seed``, ``model_hash``.
    """
    from tqdm.auto import tqdm

    from .errors import ParameterError
    from .simulate import _time_grid, _unpack, simulate

    path = Path(path)
    fmt = output_format(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not exist")
    network, x0, params, model_obj = _unpack(model, x0, params)
    t = _time_grid(t_eval, 0.0, model_obj)
    x0_arr = network.initial_vector(x0)
    theta = network.parameter_vector(params)
    n = int(n_trajectories)
    if n < 1 or n != n_trajectories:
        raise ParameterError(f"n_trajectories must be a positive integer, got {n_trajectories!r}")
    for arr, what in ((x0_arr, "x0"), (theta, "params")):
        if arr.ndim == 2 and arr.shape[0] != n:
            raise ParameterError(f"per-trajectory {what} has {arr.shape[0]} rows but n_trajectories={n}")
    if int(chunk) < 1:
        raise ParameterError(f"chunk must be a positive integer, got {chunk!r}")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) % (2 ** 64)
    seed = int(seed)
    if not 0 <= seed < 2 ** 64:
        raise ParameterError(f"seed must be an integer in [0, 2^64), got {seed}")
    dtype = np.dtype(dtype)
    events = getattr(model_obj, "events", ())
    if model_hash is None:
        model_hash = hash_inputs(network, x0_arr, theta, t, {
            "n_trajectories": n, "seed": seed, "dtype": dtype.str, "backend": backend,
            "events": repr(events)})
    target = model_obj if events else network  # a model with events has them applied
    info = RunInfo(n, t, tuple(network.species), dtype, int(chunk),
                   dict(attrs or {}, seed=seed, model_hash=model_hash, backend=backend))
    writer = _WRITERS[fmt](path, info)
    try:
        done = writer.open(overwrite)
        todo = [i for i in range(info.n_chunks) if i not in done]
        already = sum(b - a for a, b in map(info.chunk_range, done))
        with tqdm(total=n, initial=already, unit="traj", disable=not progress,
                  desc=f"simulate -> {path.name}") as bar:
            for i in todo:
                a, b = info.chunk_range(i)
                res = simulate(target, x0_arr[a:b] if x0_arr.ndim == 2 else x0_arr, t,
                               theta[a:b] if theta.ndim == 2 else theta, n_trajectories=b - a,
                               seed=seed, backend=backend, max_steps=max_steps, dtype=dtype,
                               first_trajectory=a)
                writer.write(i, res.states, res.n_events)
                bar.update(b - a)
                if _after_chunk is not None:
                    _after_chunk(i)
        if todo or existing_run(path)[0] != "complete":
            writer.finish()
    finally:
        writer.close()
    return {"path": str(path), "format": fmt, "n_chunks": info.n_chunks,
            "chunks_resumed": len(done), "chunks_computed": len(todo), "seed": seed,
            "model_hash": model_hash}
