"""Command line: ``cupyssa <command>`` (also ``python -m cupyssa <command>``).

Each subcommand is a function ``cmd_<name>(args) -> int`` registered in :func:`build_parser`;
errors in the input end with a one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .errors import CupyssaError


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cupyssa", description=__doc__.splitlines()[0])
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"cupyssa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="simulate the reversible dimerization and print a summary")
    demo.add_argument("--trajectories", type=int, default=10_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--backend", default="cpu", choices=["cpu", "numpy"])
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CupyssaError as exc:
        print(f"cupyssa {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
