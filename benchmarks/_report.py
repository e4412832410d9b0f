"""Shared helpers of the benchmark scripts: the machine they ran on, their section of
RESULTS.md, cold and warm start-up, and the Hellinger distance the CME benchmarks report."""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np


def hellinger(p, q) -> float:
    """Hellinger distance of two probability vectors (the shorter one padded with zeros;
    negative round-off entries count as 0)."""
    n = max(len(p), len(q))
    p, q = np.pad(p, (0, n - len(p))), np.pad(q, (0, n - len(q)))
    return float(np.sqrt(0.5 * np.sum((np.sqrt(np.maximum(p, 0)) - np.sqrt(np.maximum(q, 0))) ** 2)))


def cpu_model() -> str:
    """The CPU model name from ``lscpu`` (or ``platform.processor()``)."""
    try:
        return next(ln.split(":", 1)[1].strip() for ln in
                    subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                    if ln.startswith("Model name"))
    except Exception:  # noqa: BLE001 - informative only
        return platform.processor() or "unknown"


def git_revision() -> str:
    """Short git revision of the benchmarks' checkout, marked when the working tree differs."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, cwd=here).stdout.strip()
        return (rev or "?") + (" (working tree modified)" if dirty else "")
    except Exception:  # noqa: BLE001 - informative only
        return "?"


def write_section(path, heading, text):
    """Replace (or append) the section starting with ``heading`` in the Markdown file ``path``,
    leaving the other sections alone."""
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        nxt = old.find("\n## ", start + len(heading))
        rest = "" if nxt < 0 else old[nxt:]
        new = old[:start] + text.rstrip("\n") + "\n" + rest
    with open(path, "w") as fh:
        fh.write(new)


def empty_cache_env(cache: str) -> dict:
    """This process's environment with Numba's disk cache in the directory ``cache``; the
    generated sources of ``specialize`` then go to ``cache/cupyssa`` (``CUPYSSA_CACHE_DIR``
    dropped), so nothing compiled earlier can be loaded."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    env.pop("CUPYSSA_CACHE_DIR", None)
    return env


def cold_and_warm(child: str) -> dict:
    """Run the Python source ``child`` twice, each in a new process sharing one fresh Numba cache:
    ``cold`` (empty ``NUMBA_CACHE_DIR``: everything compiles) and ``warm`` (the cache the cold
    run wrote). ``child`` prints a JSON object of timings as its last line; each result gets the
    whole process's wall time as ``process`` (or ``error``), plus ``cache_files`` written. The
    generated sources of ``specialize=True`` go to ``$NUMBA_CACHE_DIR/cupyssa`` as well."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="cupyssa_numba_cache_") as cache:
        env = empty_cache_env(cache)
        for kind in ("cold", "warm"):
            t = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True,
                               text=True, cwd=tempfile.gettempdir())
            wall = time.perf_counter() - t
            if p.returncode:
                out[kind] = {"error": p.stderr.strip().splitlines()[-1:]}
                continue
            d = json.loads(p.stdout.strip().splitlines()[-1])
            d["process"] = wall
            out[kind] = d
        out["cache_files"] = sum(len(f) for _, _, f in os.walk(cache))
    return out


def startup_table(startup: dict, columns) -> list:
    """Markdown table lines of :func:`cold_and_warm`'s result: one row for the cold and one for
    the warm run, ``columns`` = ``[(key printed by the child, header), ...]`` in seconds, then the
    whole process."""
    md = ["| | " + " | ".join(h for _, h in columns) + " | whole process s |",
          "|---|" + "---|" * (len(columns) + 1)]
    for kind, name in (("cold", "cold compile"), ("warm", "warm (cached) start-up")):
        d = startup[kind]
        if "error" in d:
            md.append(f"| {name} | failed: {d['error']} |" + " |" * len(columns))
        else:
            md.append(f"| {name} | " + " | ".join(f"{d[k]:.2f}" for k, _ in columns)
                      + f" | {d['process']:.2f} |")
    return md
