"""A large ensemble at full speed: the shared kernel against ``specialize=True``.

    python examples/large_ensemble.py [--trajectories 400] [--model vilar|dimerization]

Simulates the same trajectories twice (same seed) with the shared, table-driven CPU kernel and
with the network-specific event update of ``specialize=True``; checks that they are identical,
and prints events per second of each. The first ``specialize=True`` use of a network compiles
for 5-15 s; its generated source is kept in ``~/.cache/cupyssa`` (``$CUPYSSA_CACHE_DIR``), so
running this script again loads the compiled code from Numba's disk cache in about a second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cupyssa as cs

MODELS = {"vilar": (cs.models.vilar_oscillator, 200.0),
          "dimerization": (cs.models.dimerization, 50.0)}


def timed(model, t_eval, n, specialize):
    start = time.perf_counter()
    result = cs.simulate(model, t_eval=t_eval, n_trajectories=n, seed=2026, specialize=specialize)
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trajectories", type=int, default=400)
    parser.add_argument("--model", choices=sorted(MODELS), default="vilar")
    args = parser.parse_args(argv)
    make, t_end = MODELS[args.model]
    model = make()
    t_eval = np.linspace(0.0, t_end, 101)
    results = {}
    for specialize in (False, True):
        # a one-trajectory call first, so compilation (or the cache load) is not timed
        _, first = timed(model, t_eval[:2], 1, specialize)
        result, wall = timed(model, t_eval, args.trajectories, specialize)
        events = int(result.n_events.sum())
        print(f"specialize={specialize!s:5}  first call {first:6.2f} s   {events:.3e} events in "
              f"{wall:6.2f} s = {events / wall / 1e6:6.1f} Mevents/s")
        results[specialize] = result
    same = np.array_equal(results[False].states, results[True].states)
    print(f"identical trajectories: {same}")


if __name__ == "__main__":
    main()
