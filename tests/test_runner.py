"""``deltabench run``: files, determinism, kill -9 resume, bad input."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deltabench.cli import main

pytestmark = pytest.mark.slow  # full runs through the CLI, one killed in a subprocess

OPTS = json.dumps({"deltaedit": {"config": {"n_generated": 64, "n_inverted": 16, "steps": 20, "batch": 16}}})
BASE = [
    "run",
    "--methods",
    "deltaedit",
    "--world",
    "synthfaces-micro",
    "--images",
    "6",
    "--limit",
    "4",
    "--sweep",
    "1,2",
    "--batch",
    "3",
    "--options",
    OPTS,
]


TIMING = ("ms_per_edit", "fit_seconds", "peak_mb")  # measurements, never reproducible


def _numbers(path):
    """summary.csv without the timing columns (wall-clock, never reproducible)."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in _rows(path)]


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_run_writes_its_files_and_same_seed_same_numbers(cache, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*BASE, "--out", str(a)]) == 0
    assert main([*BASE, "--out", str(b)]) == 0
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 0 and manifest["config"]["methods"] == ["deltaedit"]
    assert "torch" in manifest["versions"] and "git_commit" in manifest
    rows = _rows(a / "results.csv")
    # images x prompts x strengths, then the two reference rows (inversion, oracle-edit) at x1 only
    assert len(rows) == 4 * 4 * 2 + 2 * 4 * 4
    refs = [r for r in rows if r["method"] in ("inversion", "oracle-edit")]
    assert len(refs) == 32 and {r["strength_scale"] for r in refs} == {"1.0"}
    keys = {(r["method"], r["prompt_index"], r["strength_scale"], r["image_index"]) for r in rows}
    assert len(keys) == len(rows)
    for col in ("psnr", "ids", "clip_direction", "manipulation_accuracy", "disentanglement"):
        assert col in rows[0]
    assert _numbers(a / "summary.csv") == _numbers(b / "summary.csv")
    strip = lambda rs: [{k: v for k, v in r.items() if k != "ms_per_edit"} for r in rs]  # noqa: E731
    assert strip(rows) == strip(_rows(b / "results.csv"))


def test_kill_9_then_same_command_finishes_without_recomputing(cache, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main([*BASE, "--out", str(ref)]) == 0
    cmd = [sys.executable, "-m", "deltabench", *BASE, "--out", str(out)]
    env = {**os.environ, "DELTABENCH_CACHE": str(cache)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.csv"
    # The fit is cached by the run above, so rows come within seconds on an idle machine; the
    # deadline only bounds a starved one (on a loaded 2-core machine the first rows took over 300 s).
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if results.is_file() and len(results.read_bytes().splitlines()) >= 1 + 4:  # the first unit is done
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: nothing tests the resume"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # the kill landed: the process died of it

    def unit(r):
        return r["method"], r["prompt_index"], r["strength_scale"], r["image_index"]

    full = {unit(r) for r in _rows(ref / "results.csv")}
    partial = {unit(r) for r in _rows(results)}
    assert partial and partial < full  # some of the run's rows, not all of them, were on disk
    before = {p.name: p.stat().st_mtime_ns for p in (out / "units").glob("*.pt")}
    finished = {k[:3] for k in partial}
    assert main([*BASE, "--out", str(out)]) == 0
    rows = _rows(results)
    keys = [unit(r) for r in rows]
    assert len(keys) == len(set(keys)) == 4 * 4 * 2 + 2 * 4 * 4  # the method, then the two references at x1
    # Units whose rows were written before the kill were not computed again.
    for name, mtime in before.items():
        m, j, scale = name[:-3].split("__")
        if (m, j, str(float(scale))) in finished:
            assert (out / "units" / name).stat().st_mtime_ns == mtime
    assert _numbers(out / "summary.csv") == _numbers(ref / "summary.csv")


def test_bad_input(cache, tmp_path, capsys):
    assert main(["run", "--methods", "deltaedit,nope", "--world", "synthfaces-micro", "--out", str(tmp_path)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["run", "--methods", "styleclip-xx", "--out", str(tmp_path / "x")]) == 2
    missing = tmp_path / "missing.csv"
    assert main([*BASE, "--prompts", str(missing), "--out", str(tmp_path / "p")]) == 2
    assert f"prompts file {missing} does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    empty.write_text("\n")
    assert main([*BASE, "--prompts", str(empty), "--out", str(tmp_path / "p")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main([*BASE[:-8], "--images", "0", "--options", OPTS, "--out", str(tmp_path / "z")]) == 2
    assert "argument --images: must be at least 2" in capsys.readouterr().err


def test_other_config_in_out_dir_is_refused(cache, tmp_path, capsys):
    out = tmp_path / "r"
    assert main([*BASE, "--out", str(out)]) == 0
    other = [*BASE[:-6], "--sweep", "1", "--batch", "3", "--options", OPTS]
    assert main([*other, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "--resume" in err and "--force" in err
    assert main([*other, "--out", str(out), "--force"]) == 0
    assert len(_rows(out / "results.csv")) == 4 * 4 + 2 * 4 * 4  # and the two references
