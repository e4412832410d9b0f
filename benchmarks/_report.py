"""Shared helpers of the benchmark scripts: the machine they ran on, their section of
RESULTS.md, and the Hellinger distance the CME benchmarks report."""

import os
import platform
import subprocess

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
