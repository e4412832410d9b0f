"""Command line: ``cupyssa <command>`` (also ``python -m cupyssa <command>``).

Commands: ``demo``, ``simulate`` and ``bench``.

Each subcommand is a function ``cmd_<name>(args) -> int`` whose parser is added by an
``_add_<name>(sub)`` function listed in :data:`SUBCOMMANDS`; a new command (e.g. ``fit
CONFIG.toml``) is one more pair, and reuses :func:`load_model_file` and the ``--param`` /
``--init`` overrides. Errors in the input raise :class:`~cupyssa.errors.CupyssaError` (or
:class:`CLIError`); :func:`main` turns them into a one-line message on stderr and exit status 2.
Arguments after ``--`` are passed through to commands that accept them (``bench``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .errors import CupyssaError, ParseError

#: exit status of errors in the input (bad arguments, bad files)
EXIT_USAGE = 2
#: exit status after Ctrl-C / SIGTERM
EXIT_INTERRUPTED = 130


class CLIError(CupyssaError):
    """An error in the command-line input: reported as one line, exit status 2."""


def cmd_demo(args) -> int:
    """Reversible dimerization, 10^4 trajectories on the CPU backend: mean ± sd table."""
    from . import models
    from .simulate import simulate

    model = models.dimerization()
    t_eval = np.linspace(0.0, model.t_end, 11)
    print("cupyssa demo: reversible dimerization 2A -> B (k1=1e-3), B -> 2A (k2=0.1), A0=1000, B0=0")
    print(f"exact SSA (direct method), {args.trajectories} trajectories, backend={args.backend}, "
          f"seed={args.seed}")
    # first call compiles (or loads the on-disk cache); time the simulation itself separately
    simulate(model, t_eval=t_eval, n_trajectories=1, seed=args.seed, backend=args.backend)
    start = time.perf_counter()
    res = simulate(model, t_eval=t_eval, n_trajectories=args.trajectories, seed=args.seed,
                   backend=args.backend, progress=True)
    elapsed = time.perf_counter() - start
    mean, sd = res.mean(), res.std()
    print(f"\n{'t':>6} {'A mean':>10} {'A sd':>8} {'B mean':>10} {'B sd':>8}")
    for m, t in enumerate(res.t):
        print(f"{t:6.1f} {mean[m, 0]:10.2f} {sd[m, 0]:8.2f} {mean[m, 1]:10.2f} {sd[m, 1]:8.2f}")
    events = int(res.n_events.sum())
    print(f"\nevents: {events:,}   wall time: {elapsed:.2f} s   throughput: {events / elapsed:,.0f} events/s")
    return 0


# -- models from files -----------------------------------------------------------------------

#: suffixes read as SBML; anything else is read as the text format (cupyssa.parser)
SBML_SUFFIXES = (".xml", ".sbml")


def load_model_file(path: str | os.PathLike):
    """Read a model file: SBML (``.xml``/``.sbml``, through :func:`cupyssa.sbml.read_sbml`) or
    the text format (anything else).

    Returns
    -------
    (Model, bytes)
        The model (network, default ``x0`` and ``params``) and the file's contents (hashed into
        the output's ``model_hash``).

    Raises
    ------
    CLIError
        The file is missing or unreadable, or SBML support is not installed.
    ParseError, NetworkError
        The file is not a valid model (the message names the line).
    """
    from .models import Model
    from .network import ReactionNetwork

    path = Path(path)
    if not path.exists():
        raise CLIError(f"model file {str(path)!r} does not exist")
    if path.is_dir():
        raise CLIError(f"model file {str(path)!r} is a directory")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CLIError(f"cannot read model file {str(path)!r}: {exc.strerror or exc}") from None
    if path.suffix.lower() in SBML_SUFFIXES:
        try:
            from .sbml import read_sbml
        except ModuleNotFoundError as exc:
            if exc.name == "cupyssa.sbml":
                raise CLIError(f"cannot read SBML file {str(path)!r}: this version of cupyssa has "
                               "no SBML reader") from None
            raise CLIError(f"cannot read SBML file {str(path)!r}: {exc}; "
                           "pip install \"cupyssa[sbml]\"") from None
        try:
            model = read_sbml(str(path))
        except ImportError as exc:
            raise CLIError(f"cannot read SBML file {str(path)!r}: {exc}; "
                           "pip install \"cupyssa[sbml]\"") from None
        except CupyssaError as exc:
            raise CLIError(f"{path}: {_one_line(exc)}") from None
        return model, data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"model file {str(path)!r} is not UTF-8 text (SBML files must end in "
                       f"{' or '.join(SBML_SUFFIXES)})") from None
    try:
        net = ReactionNetwork.from_string(text)
    except ParseError as exc:
        message = str(exc).split("\n", 1)[0]
        raise CLIError(f"{path}, {message}: {exc.line.strip()!r}") from None
    except CupyssaError as exc:
        raise CLIError(f"{path}: {_one_line(exc)}") from None
    if net.n_reactions == 0:
        raise CLIError(f"{path}: the model has no reactions")
    return Model(net, net.initial_defaults, net.parameter_defaults), data


def _assignment(kind: str):
    """argparse type for ``NAME=VALUE`` (``kind``: "param" float, "init" non-negative integer)."""
    def parse(text: str):
        name, sep, value = text.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: {value!r} is not a number") from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"{name}: {value!r} is not finite")
        if kind == "init":
            if number < 0 or not number.is_integer():
                raise argparse.ArgumentTypeError(f"{name}: initial count {value!r} is not a "
                                                 "non-negative integer")
            return name, int(number)
        return name, number
    parse.__name__ = f"{kind} assignment"
    return parse


def _bounded(kind, low, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not (value >= low and math.isfinite(value)) or (low == 0.0 and kind is float and value == 0):
            raise argparse.ArgumentTypeError(f"{text!r}: {what}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _seed(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2 ** 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not in [0, 2^64)")
    return value


def apply_overrides(model, params: list, init: list, source: str):
    """``x0`` and ``params`` dicts: the model's defaults updated by ``--param`` / ``--init``
    (lists of ``(name, value)``), checked for unknown names and missing values."""
    net = model.network
    p = dict(model.params)
    x0 = dict(model.x0)
    for name, value in params:
        if name not in net.parameters:
            raise CLIError(f"--param {name}: unknown parameter; the model's parameters are "
                           f"{', '.join(net.parameters) or '(none)'}")
        p[name] = value
    for name, value in init:
        if name not in net.species:
            raise CLIError(f"--init {name}: unknown species; the model's species are "
                           f"{', '.join(net.species)}")
        x0[name] = value
    missing = [n for n in net.parameters if p.get(n) is None]
    if missing:
        raise CLIError(f"parameter {missing[0]!r} has no value in {source}; give it with "
                       f"--param {missing[0]}=VALUE")
    missing = [s for s in net.species if x0.get(s) is None]
    if missing:
        raise CLIError(f"species {missing[0]!r} has no initial count in {source}; give it with "
                       f"--init {missing[0]}=N")
    return x0, p


# -- simulate --------------------------------------------------------------------------------

def _run_hash(data: bytes, args, seed: int) -> str:
    """sha256 of the model file and of every argument that affects the results."""
    h = hashlib.sha256(b"cupyssa-cli-simulate\0")
    h.update(data)
    h.update(b"\0" + json.dumps({
        "sbml": Path(args.model).suffix.lower() in SBML_SUFFIXES,
        "param": sorted(args.param), "init": sorted(args.init), "t_end": args.t_end,
        "points": args.points, "n_trajectories": args.trajectories, "seed": seed,
        "dtype": args.dtype, "backend": args.backend}, sort_keys=True).encode())
    return h.hexdigest()


def _print_summary(res, file=None):
    file = sys.stdout if file is None else file
    mean, sd = res.mean(), res.std()
    rows = np.unique(np.linspace(0, len(res.t) - 1, min(len(res.t), 11)).round().astype(int))
    cols = list(range(min(len(res.species), 6)))
    head = f"{'t':>10}" + "".join(f" {res.species[s][:21]:>22}" for s in cols)
    print(head, file=file)
    for m in rows:
        cells = "".join(f" {f'{mean[m, s]:.4g} ± {sd[m, s]:.3g}':>22}" for s in cols)
        print(f"{res.t[m]:10.4g}{cells}", file=file)
    if len(res.species) > len(cols):
        print(f"({len(res.species) - len(cols)} more species not shown; use --out to save all)",
              file=file)


class _Terminate(KeyboardInterrupt):
    """SIGTERM (e.g. from a batch scheduler), handled like Ctrl-C."""


def cmd_simulate(args) -> int:
    """Simulate a model file; print a summary, or write ``--out`` chunk by chunk (resumable)."""
    from . import output
    from .simulate import simulate

    model, data = load_model_file(args.model)
    x0, params = apply_overrides(model, args.param, args.init, args.model)
    t_eval = np.linspace(0.0, args.t_end, args.points)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    dtype = np.dtype(args.dtype)

    if args.out is None:
        res = simulate(model, x0, t_eval, params, n_trajectories=args.trajectories,
                       seed=args.seed, backend=args.backend, max_steps=args.max_steps,
                       progress=progress, dtype=dtype)
        print(f"{args.model}: {res.n_trajectories} trajectories, seed {res.seed}, "
              f"{int(res.n_events.sum()):,} events; mean ± sd:")
        _print_summary(res)
        return 0

    out = Path(args.out)
    output.output_format(out)  # unknown suffix: error before any work
    if not out.parent.is_dir():
        raise CLIError(f"--out {args.out}: directory {str(out.parent)!r} does not exist")
    seed = args.seed
    if seed is None:
        state, attrs = output.existing_run(out)
        if state == "partial" and not args.overwrite and attrs.get("seed") is not None:
            seed = int(attrs["seed"])
            print(f"cupyssa simulate: resuming {out} with its seed {seed}", file=sys.stderr)
        else:
            seed = int(np.random.SeedSequence().entropy) % (2 ** 64)
            print(f"cupyssa simulate: seed {seed} (pass --seed {seed} to repeat this run)",
                  file=sys.stderr)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminate)
    except ValueError:  # not in the main thread
        pass
    try:
        info = output.simulate_to_file(
            out, model, x0, t_eval, params, n_trajectories=args.trajectories, seed=seed,
            backend=args.backend, chunk=args.chunk, overwrite=args.overwrite,
            model_hash=_run_hash(data, args, seed), max_steps=args.max_steps, dtype=dtype,
            progress=progress, attrs={"model": Path(args.model).name})
    except OSError as exc:
        raise CLIError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    except KeyboardInterrupt:
        print(f"cupyssa simulate: interrupted; the finished chunks are kept: rerun the same "
              f"command{'' if args.seed is not None else f' with --seed {seed}'} to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if info["chunks_computed"] == 0 and info["chunks_resumed"] == info["n_chunks"]:
        print(f"{out}: already complete (same arguments); nothing to do")
    else:
        resumed = f", {info['chunks_resumed']} resumed" if info["chunks_resumed"] else ""
        print(f"wrote {out}: {args.trajectories} trajectories x {args.points} times x "
              f"{model.network.n_species} species, seed {seed} "
              f"({info['chunks_computed']} chunk(s) computed{resumed})")
    return 0


def _raise_terminate(signum, frame):
    raise _Terminate()


# -- bench -----------------------------------------------------------------------------------

def find_benchmarks_dir(explicit: str | None = None) -> Path:
    """The ``benchmarks/`` directory: ``explicit``, else ``$CUPYSSA_BENCHMARKS``, else
    ``benchmarks/`` in the current directory or one of its parents, else beside the package
    (a source checkout or editable install). ``benchmarks/`` is not installed with the package."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise CLIError(f"--dir {explicit}: not a directory")
        return path
    env = os.environ.get("CUPYSSA_BENCHMARKS")
    if env:
        if not Path(env).is_dir():
            raise CLIError(f"CUPYSSA_BENCHMARKS={env} is not a directory")
        return Path(env)
    here = Path.cwd().resolve()
    for base in (here, *here.parents):
        if (base / "benchmarks").is_dir():
            return base / "benchmarks"
    repo = Path(__file__).resolve().parent.parent / "benchmarks"
    if repo.is_dir():
        return repo
    raise CLIError("cannot find the benchmarks/ directory (it is not installed with the package): "
                   "run from a cupyssa source checkout, or pass --dir PATH")


def list_benchmarks(directory: Path) -> dict:
    """Benchmark name -> script: every ``*.py`` not starting with ``_`` (a ``bench_`` prefix
    may be left out of the name)."""
    found = {}
    for script in sorted(directory.glob("*.py")):
        if script.name.startswith("_"):
            continue
        found[script.stem] = script
    for name, script in list(found.items()):
        if name.startswith("bench_") and name[6:] and name[6:] not in found:
            found[name[6:]] = script
    return found


def cmd_bench(args) -> int:
    """Run benchmark scripts (all, or those named) with the arguments after ``--``."""
    directory = find_benchmarks_dir(args.dir)
    available = list_benchmarks(directory)
    if not available:
        raise CLIError(f"no benchmark scripts (*.py) in {directory}")
    if args.list:
        scripts = {}
        for name, script in available.items():
            scripts.setdefault(script, name)
        for script, name in scripts.items():
            print(f"{name:30s} {script}")
        return 0
    names = args.names or sorted({s.stem: None for s in available.values()})
    unknown = [n for n in names if n not in available]
    if unknown:
        raise CLIError(f"unknown benchmark {unknown[0]!r}; available: "
                       f"{', '.join(sorted({s.stem for s in available.values()}))}")
    status = 0
    for name in names:
        script = available[name]
        cmd = [sys.executable, str(script), *args.passthrough]
        print(f"== cupyssa bench {script.stem}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
        code = subprocess.run(cmd).returncode
        if code:
            print(f"cupyssa bench: {script.stem} exited with status {code}", file=sys.stderr)
            status = code
    return status


# -- the parser ------------------------------------------------------------------------------

def _add_demo(sub):
    demo = sub.add_parser("demo", help="simulate the reversible dimerization and print a summary")
    demo.add_argument("--trajectories", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--backend", default="cpu", choices=["cpu", "numpy"])
    demo.set_defaults(func=cmd_demo)


def _add_simulate(sub):
    from .output import DEFAULT_CHUNK

    p = sub.add_parser(
        "simulate", help="simulate a model file (SBML or text format)",
        description="Simulate an ensemble of exact SSA trajectories of a model file on the grid "
                    "linspace(0, T_END, POINTS). Without --out, print mean ± sd; with --out, "
                    "write the trajectories chunk by chunk (.npz, .zarr or .h5); an interrupted "
                    "run rerun with the same arguments resumes and gives the identical file.")
    p.add_argument("model", metavar="MODEL",
                   help="model file: SBML (.xml, .sbml) or the cupyssa text format")
    p.add_argument("--t-end", type=_bounded(float, 0.0, "must be positive and finite"),
                   required=True, help="final time")
    p.add_argument("--points", type=_bounded(int, 1, "must be at least 1"), default=101,
                   help="number of observation times (default 101)")
    p.add_argument("--trajectories", "-n", type=_bounded(int, 1, "must be at least 1"),
                   default=1000, help="ensemble size (default 1000)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="random seed in [0, 2^64) (default: drawn from the OS and printed)")
    p.add_argument("--backend", default="cpu", choices=["cpu", "numpy"])
    p.add_argument("--param", action="append", default=[], type=_assignment("param"),
                   metavar="NAME=VALUE", help="override a parameter (repeatable)")
    p.add_argument("--init", action="append", default=[], type=_assignment("init"),
                   metavar="SPECIES=N", help="override an initial count (repeatable)")
    p.add_argument("--out", "-o", metavar="FILE",
                   help="output file: .npz (numpy), .zarr or .h5 (pip install \"cupyssa[io]\")")
    p.add_argument("--chunk", type=_bounded(int, 1, "must be at least 1"), default=DEFAULT_CHUNK,
                   help=f"trajectories per chunk written (default {DEFAULT_CHUNK})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output or a partial run made with other arguments")
    p.add_argument("--max-steps", type=_bounded(int, 0, "must be non-negative"), default=None,
                   help="maximum events per trajectory")
    p.add_argument("--dtype", default="int32", choices=["int32", "int64"],
                   help="integer type of the states (default int32)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_simulate)


def _add_bench(sub):
    p = sub.add_parser(
        "bench", help="run the benchmark suite (scripts in benchmarks/)",
        description="Run the scripts in benchmarks/ (all, or those named), passing the "
                    "arguments after '--' to each, e.g. cupyssa bench ssa_throughput -- --quick")
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--dir", default=None, help="the benchmarks directory (default: found from "
                   "the current directory, $CUPYSSA_BENCHMARKS or the source checkout)")
    p.set_defaults(func=cmd_bench, passthrough=[])


#: functions adding one subcommand each to the subparsers (``fit`` will be one more)
SUBCOMMANDS = [_add_demo, _add_simulate, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cupyssa", description=__doc__.splitlines()[0])
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"cupyssa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(part.strip() for part in str(exc).splitlines() if part.strip())


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    parser = build_parser()
    try:  # argparse reports bad arguments (exit 2), --help and --version (exit 0) by SystemExit
        args, unknown = parser.parse_known_args(argv)
        if hasattr(args, "passthrough"):
            args.passthrough = unknown + passthrough
        elif unknown or passthrough:
            parser.error(f"unrecognized arguments: {' '.join(unknown + passthrough)}")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except CupyssaError as exc:
        print(f"cupyssa {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"cupyssa {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
