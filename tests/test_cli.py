"""The command line: cupyssa simulate / bench (through main([...]) and one subprocess)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cupyssa as cs
from cupyssa import output
from cupyssa.cli import main

DIMER = """\
# reversible dimerization
k1 = 1e-3
k2 = 0.1
init A = 300
init B = 0
2 A -> B ; k1
B -> 2 A ; k2
"""


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "dimer.txt"
    path.write_text(DIMER)
    return path


def error_of(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_simulate_prints_a_summary(model_file, capsys):
    assert main(["simulate", str(model_file), "--t-end", "2", "--points", "3", "-n", "50",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "50 trajectories, seed 1" in out
    assert "A" in out and "B" in out and "±" in out


@pytest.mark.parametrize("suffix", [".npz", ".zarr", ".h5"])
def test_simulate_writes_the_same_as_the_api(model_file, tmp_path, suffix):
    if suffix == ".zarr":
        pytest.importorskip("zarr")
    if suffix == ".h5":
        pytest.importorskip("h5py")
    out = tmp_path / f"run{suffix}"
    assert main(["simulate", str(model_file), "--t-end", "4", "--points", "5", "-n", "120",
                 "--seed", "9", "--chunk", "50", "--param", "k2=0.2", "--init", "B=10",
                 "--out", str(out)]) == 0
    model = cs.ReactionNetwork.from_string(DIMER)
    ref = cs.simulate(model, {"A": 300, "B": 10}, np.linspace(0, 4, 5), {"k1": 1e-3, "k2": 0.2},
                      n_trajectories=120, seed=9)
    d = output.load(out)
    np.testing.assert_array_equal(d["states"], ref.states)
    np.testing.assert_array_equal(d["n_events"], ref.n_events)
    assert d["attrs"]["seed"] == 9 and d["attrs"]["model"] == "dimer.txt"


def test_interrupted_cli_run_resumes(model_file, tmp_path, monkeypatch, capsys):
    args = ["simulate", str(model_file), "--t-end", "3", "--points", "4", "-n", "500", "--seed",
            "2", "--chunk", "100"]
    assert main(args + ["--out", str(tmp_path / "whole.npz")]) == 0

    def interrupt(i):
        if i == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(output, "_after_chunk", interrupt)
    out = tmp_path / "run.npz"
    assert main(args + ["--out", str(out)]) == 130
    assert "rerun the same command" in error_of(capsys)
    monkeypatch.setattr(output, "_after_chunk", None)
    assert main(args + ["--out", str(out)]) == 0
    assert "3 resumed" in capsys.readouterr().out
    assert out.read_bytes() == (tmp_path / "whole.npz").read_bytes()
    assert main(args + ["--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    # other arguments against the finished file: refused, unless --overwrite
    assert main(args[:-4] + ["--seed", "3", "--chunk", "100", "--out", str(out)]) == 2
    assert "different arguments" in error_of(capsys)
    assert main(args[:-4] + ["--seed", "3", "--chunk", "100", "--out", str(out),
                             "--overwrite"]) == 0


def test_resume_without_seed_adopts_the_partial_runs_seed(model_file, tmp_path, monkeypatch,
                                                          capsys):
    args = ["simulate", str(model_file), "--t-end", "1", "--points", "2", "-n", "30",
            "--chunk", "10", "--out", str(tmp_path / "run.npz")]

    def interrupt(i):
        raise KeyboardInterrupt
    monkeypatch.setattr(output, "_after_chunk", interrupt)
    assert main(args) == 130
    seed = output.existing_run(tmp_path / "run.npz")[1]["seed"]
    monkeypatch.setattr(output, "_after_chunk", None)
    assert main(args) == 0
    assert f"resuming {tmp_path / 'run.npz'} with its seed {seed}" in capsys.readouterr().err
    assert output.load(tmp_path / "run.npz")["attrs"]["seed"] == seed


@pytest.mark.parametrize("text, extra, message", [
    ("k = 1\n2 A => B ; k\n", [], r"bad\.txt, line 2: expected exactly one '->'"),
    ("2 A -> B ; k1\n", [], "parameter 'k1' has no value in .*--param k1=VALUE"),
    ("k1 = 1\n2 A -> B ; k1\n", [], "species 'A' has no initial count .*--init A=N"),
    (DIMER, ["--init", "C=1"], "--init C: unknown species; the model's species are A, B"),
    (DIMER, ["--param", "kx=1"], "--param kx: unknown parameter"),
    (DIMER, ["--out", "run.csv"], "unknown output format '.csv'"),
    (DIMER, ["--out", "nowhere/run.npz"], "directory .* does not exist"),
])
def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys, monkeypatch, text, extra,
                                               message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.txt").write_text(text)
    assert main(["simulate", "bad.txt", "--t-end", "1", "-n", "2", "--seed", "0", *extra]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("cupyssa simulate: error: ")
    import re
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("argv", [
    ["simulate", "x.txt"],                                   # --t-end missing
    ["simulate", "x.txt", "--t-end", "-1"],
    ["simulate", "x.txt", "--t-end", "1", "--points", "0"],
    ["simulate", "x.txt", "--t-end", "1", "--param", "k=abc"],
    ["simulate", "x.txt", "--t-end", "1", "--init", "A=1.5"],
    ["simulate", "x.txt", "--t-end", "1", "--seed", "-3"],
    ["simulate", "x.txt", "--t-end", "1", "--backend", "gpu"],
    ["simulate", "x.txt", "--t-end", "1", "--", "extra"],
    ["nosuchcommand"],
])
def test_bad_arguments_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_missing_and_unreadable_model_files(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "none.txt"), "--t-end", "1"]) == 2
    assert "does not exist" in error_of(capsys)
    assert main(["simulate", str(tmp_path), "--t-end", "1"]) == 2
    assert "is a directory" in error_of(capsys)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["simulate", str(tmp_path / "binary.txt"), "--t-end", "1"]) == 2
    assert "not UTF-8" in error_of(capsys)
    (tmp_path / "model.xml").write_text("<sbml/>")
    assert main(["simulate", str(tmp_path / "model.xml"), "--t-end", "1"]) == 2
    assert "SBML" in error_of(capsys)


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert cs.__version__ in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    assert "--trajectories" in capsys.readouterr().out


# -- bench -----------------------------------------------------------------------------------

@pytest.fixture
def bench_dir(tmp_path):
    d = tmp_path / "benchmarks"
    d.mkdir()
    (d / "bench_echo.py").write_text(
        "import sys, pathlib\n"
        "pathlib.Path(sys.argv[0]).with_suffix('.out').write_text(' '.join(sys.argv[1:]))\n")
    (d / "failing.py").write_text("import sys\nsys.exit(3)\n")
    (d / "_helper.py").write_text("")
    return d


def test_bench_runs_a_named_script_with_passthrough(bench_dir, capsys):
    assert main(["bench", "echo", "--dir", str(bench_dir), "--", "--quick", "--n", "5"]) == 0
    assert (bench_dir / "bench_echo.out").read_text() == "--quick --n 5"
    assert main(["bench", "bench_echo", "--dir", str(bench_dir), "--quick"]) == 0
    assert (bench_dir / "bench_echo.out").read_text() == "--quick"


def test_bench_suite_discovery_and_failures(bench_dir, capsys, monkeypatch):
    monkeypatch.chdir(bench_dir.parent)  # found from the current directory
    assert main(["bench", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "echo" in listed and "failing" in listed and "_helper" not in listed
    assert main(["bench"]) == 3  # runs all; reports the failing script's status
    assert "failing exited with status 3" in capsys.readouterr().err
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'; available: bench_echo, failing" in error_of(capsys)
    assert main(["bench", "--dir", str(bench_dir / "missing")]) == 2
    empty = bench_dir.parent / "empty"
    empty.mkdir()
    assert main(["bench", "--dir", str(empty)]) == 2
    assert "no benchmark scripts" in error_of(capsys)


# -- a real process, killed mid-run ----------------------------------------------------------

def test_killed_process_resumes_to_the_identical_file(model_file, tmp_path):
    args = ["simulate", str(model_file), "--t-end", "20", "--points", "5", "-n", "6000",
            "--chunk", "150", "--seed", "4", "--no-progress"]
    out = tmp_path / "run.npz"
    env = dict(os.environ, PYTHONPATH=str(Path(cs.__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-m", "cupyssa", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    partial = tmp_path / "run.npz.partial"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list(partial.glob("chunk_*.npz"))) >= 2:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed midway: {err.decode()}"
    done = len(list(partial.glob("chunk_*.npz")))
    print("chunks done when killed:", done)
    assert 2 <= done < 40 and not out.exists()

    assert main(args + ["--out", str(out)]) == 0
    assert not partial.exists()
    assert main(args + ["--out", str(tmp_path / "whole.npz")]) == 0
    assert out.read_bytes() == (tmp_path / "whole.npz").read_bytes()


# -- SBML models -----------------------------------------------------------------------------

DATA = Path(__file__).parent / "data"


def test_simulate_sbml_with_events_and_overrides(tmp_path):
    pytest.importorskip("libsbml")
    sbml = pytest.importorskip("cupyssa.sbml")
    path = DATA / "immigration_death_event.xml"
    out = tmp_path / "ev.npz"
    assert main(["simulate", str(path), "--t-end", "40", "--points", "9", "-n", "60", "--seed",
                 "3", "--param", "t_event=20", "--chunk", "25", "--out", str(out)]) == 0
    model = sbml.read_sbml(str(path))
    params = dict(model.params, t_event=20.0)
    ref = cs.simulate(model, model.x0, np.linspace(0, 40, 9), params, n_trajectories=60, seed=3)
    np.testing.assert_array_equal(output.load(out)["states"], ref.states)
    # the event (X := 50 at t = 20) was applied
    assert (output.load(out)["states"][:, 4, 0] == 50).all()


def test_invalid_sbml_is_one_line(tmp_path, capsys):
    pytest.importorskip("libsbml")
    pytest.importorskip("cupyssa.sbml")
    bad = tmp_path / "bad.xml"
    bad.write_text("<sbml><model>")
    assert main(["simulate", str(bad), "--t-end", "1"]) == 2
    line = error_of(capsys)
    assert line.startswith("cupyssa simulate: error: ") and "not valid SBML" in line


def test_missing_optional_libraries_are_explained(tmp_path, monkeypatch, model_file, capsys):
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr -> ImportError
    assert main(["simulate", str(model_file), "--t-end", "1", "-n", "2", "--seed", "0",
                 "--out", str(tmp_path / "run.zarr")]) == 2
    assert 'pip install "cupyssa[io]"' in error_of(capsys)
