"""Trust, round two (issue 27): no lost file, no misleading number, no nonsense input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from deltabench.cli import main

W = ["--world", "synthfaces-micro"]
TINY = {"deltaedit": {"config": {"n_generated": 48, "n_inverted": 8, "steps": 10, "batch": 8}}}
RUN = [
    "run",
    "--methods",
    "deltaedit",
    *W,
    "--images",
    "3",
    "--sweep",
    "1",
    "--batch",
    "3",
    "--options",
    json.dumps(TINY),
]
GLASSES = "source,target,attribute,value\nface,face with glasses,glasses,glasses\n"
RED = "source,target,attribute,value\nface,face with red hair,hair_color,red\n"


def _csv(d, text, name="p.csv"):
    p = d / name
    p.write_text(text)
    return str(p)


def _call(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.err, cap.out


# 1. Files lost ------------------------------------------------------------------------------
def test_an_out_holding_a_users_files_is_refused_and_force_never_deletes_them(cache, tmp_path, capsys):
    p = tmp_path / "p"
    (p / "reports").mkdir(parents=True)
    (p / "edits").mkdir()
    (p / "reports" / "q3_report.pdf").write_bytes(b"%PDF mine")
    (p / "edits" / "my_edit.png").write_bytes(b"png mine")
    rc, err, _ = _call([*RUN, "--prompts", _csv(tmp_path, GLASSES), "--out", p], capsys)
    assert rc == 2 and err.startswith("deltabench: error:") and len(err.strip().splitlines()) == 1
    assert "reports/q3_report.pdf" in err and "edits/my_edit.png" in err and str(p) in err
    assert sorted(x.name for x in p.rglob("*")) == ["edits", "my_edit.png", "q3_report.pdf", "reports"]

    # Files a user puts into a run's own folders later survive --force; the run's files go.
    r = tmp_path / "r"
    assert main([*RUN, "--prompts", _csv(tmp_path, GLASSES), "--out", str(r)]) == 0
    (r / "reports" / "q3_report.pdf").write_bytes(b"%PDF mine")
    (r / "units" / "my_notes.txt").write_text("mine")
    (r / "edits").mkdir()
    (r / "edits" / "my_edit.png").write_bytes(b"png mine")
    old_units = sorted(x.name for x in (r / "units").glob("*.pt"))
    capsys.readouterr()
    rc, err, _ = _call([*RUN, "--prompts", _csv(tmp_path, RED, "red.csv"), "--out", r, "--force"], capsys)
    assert rc == 0, err
    assert (r / "reports" / "q3_report.pdf").read_bytes() == b"%PDF mine"
    assert (r / "edits" / "my_edit.png").read_bytes() == b"png mine"
    assert (r / "units" / "my_notes.txt").read_text() == "mine"
    assert "q3_report.pdf" in err  # said as kept
    rows = (r / "results.csv").read_text()
    assert "red hair" in rows and "glasses" not in rows
    assert (r / "reports" / "edit_grid.png").is_file() and old_units  # the new run's report is there


def test_report_on_a_truncated_unit_keeps_the_old_report_and_names_the_recompute(cache, tmp_path, capsys):
    r = tmp_path / "r"
    cmd = [*RUN, "--prompts", _csv(tmp_path, GLASSES), "--out", str(r)]
    assert main(cmd) == 0
    grid = (r / "reports" / "edit_grid.png").read_bytes()
    before = sorted(x.name for x in (r / "reports").iterdir())
    unit = r / "units" / "deltaedit__0__1.0.pt"
    unit.write_bytes(unit.read_bytes()[:200])
    capsys.readouterr()
    rc, err, _ = _call(["report", r], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "download" not in err and f"rm '{unit}'" in err and "deltabench run" in err
    assert (r / "reports" / "edit_grid.png").read_bytes() == grid
    assert sorted(x.name for x in (r / "reports").iterdir()) == before
    assert not (r / ".reports.tmp").exists()
    # Following the advice recomputes that unit only, and the report is whole again.
    unit.unlink()
    assert main(cmd) == 0
    assert unit.is_file() and main(["report", str(r)]) == 0
    assert sorted(x.name for x in (r / "reports").iterdir()) == before
    # A stale file of an earlier report goes; a file of the user's in reports/ stays.
    from deltabench import rundir

    (r / "reports" / "edit_grid_9.png").write_bytes(b"old grid")
    rundir.record(r, r / "reports" / "edit_grid_9.png")
    (r / "reports" / "mine.txt").write_text("mine")
    assert main(["report", str(r)]) == 0
    assert not (r / "reports" / "edit_grid_9.png").exists() and (r / "reports" / "mine.txt").read_text() == "mine"


def test_the_report_page_and_the_paper_table(cache, tmp_path, capsys):
    r = tmp_path / "r"
    capsys.readouterr()
    assert (
        main(
            [
                *RUN,
                "--prompts",
                _csv(tmp_path, GLASSES + "face,smiling face,smile,smiling\n"),
                "--out",
                str(r),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # stdout: a short readable table and the run directory, not summary.csv.
    assert "method,reference" not in out and out.splitlines()[0].startswith("Method") and str(r) in out
    assert "deltaedit" in out and len(out.splitlines()) < 12
    dev = json.loads((r / "manifest.json").read_text())["device"]
    assert dev["torch_threads"] == 1 and dev["threads_from"] == "--threads"
    assert (
        main(
            [
                "run",
                "--methods",
                "deltaedit",
                *W,
                "--images",
                "3",
                "--sweep",
                "1",
                "--batch",
                "3",
                "--options",
                json.dumps(TINY),
                "--prompts",
                str(tmp_path / "p.csv"),
                "--out",
                str(r),
                "--json",
            ]
        )
        == 0
    )
    js = json.loads(capsys.readouterr().out)
    assert js["run_dir"] == str(r) and {row["method"] for row in js["summary"]} >= {"deltaedit", "inversion"}
    page = (r / "reports" / "index.html").read_text()
    per = re.search(r'<div class="scroll"><table id="per-prompt">(.*?)</table></div>', page, re.S)
    assert per, "the per-prompt table scrolls in its own container"
    body = per.group(1)
    assert "NaN" not in body and "nan" not in body
    assert "Manip. acc. ↑" in body and "manipulation_accuracy" not in body and "Prompt (target)" in body
    assert re.search(r"<td>[-0-9.]+ (± [0-9.]+|\[[-0-9.]+, [-0-9.]+\])", body)  # intervals
    tex = (r / "reports" / "table_paper.tex").read_text()
    head = next(ln for ln in tex.splitlines() if ln.startswith("Method"))
    assert head.count("&") == 5 and "FID" in head and "PSNR" in head and "IDS" in head and "Manip. acc." in head
    assert tex.isascii() and "KID" not in head
    full = (r / "reports" / "table.tex").read_text()
    assert full.count("&", 0, full.index(r"\midrule")) > 10 and r"\begin{table*}" in full


# 2. Statistics that mislead (presentation) -------------------------------------------------
def _summary():
    import pandas as pd

    base = {"reference": False, "prompts": 9, "images": 32, "ms_per_edit": 5.0, "peak_mb": 1391.0, "fit_seconds": 312.0}
    rows = [
        {
            **base,
            "method": "deltaedit",
            "manipulation_accuracy": 0.006,
            "manipulation_accuracy_lo": 0.0,
            "manipulation_accuracy_hi": 0.019,
            "manipulation_accuracy_n": 160,
            "manipulation_accuracy_p": 0.0,
            "psnr": 20.0,
            "psnr_lo": 19.0,
            "psnr_hi": 21.0,
            "psnr_n": 288,
            "psnr_p": np.nan,
            "kid": 29.0,
            "kid_lo": 20.0,
            "kid_hi": 38.0,
            "kid_n": 288,
            "kid_dim": 64,
            "kid_p": np.nan,
        },
        {
            **base,
            "method": "styleclip",
            "manipulation_accuracy": 1.0,
            "manipulation_accuracy_lo": 1.0,
            "manipulation_accuracy_hi": 1.0,
            "manipulation_accuracy_n": 160,
            "manipulation_accuracy_p": np.nan,
            "psnr": 18.0,
            "psnr_lo": 17.5,
            "psnr_hi": 18.5,
            "psnr_n": 288,
            "psnr_p": 0.0,
            "kid": -0.5,
            "kid_lo": -3.0,
            "kid_hi": 2.0,
            "kid_n": 288,
            "kid_dim": 64,
            "kid_p": 0.0,
        },
    ]
    return pd.DataFrame(rows)


def test_intervals_p_values_kid_scale_n_and_cost_say_what_they_are():
    from deltabench import report

    t = report.table_cells(_summary())
    names = report._header_names(t)
    cell = {(r[0][0], h): c for r in t["rows"] for h, (c, _) in zip(names, r)}
    acc = next(h for h in names if h.startswith("Manip. acc."))
    # A bounded, asymmetric interval is [lo, hi], never "0.006 ± 0.010"; a zero-width one at 1 too.
    assert re.fullmatch(r"0\.0060? \[0\.0+, 0\.0190?\]", cell[("deltaedit", acc)]), cell[("deltaedit", acc)]
    assert "±" not in cell[("styleclip", acc)] and re.search(r"\[1\.0+, 1\.0+\]", cell[("styleclip", acc)])
    assert cell[("deltaedit", "PSNR ↑")] == "20.00 ± 1.00"
    # The accuracy counts 160 of the row's 288 edits: its header says so.
    assert "(n = 160)" in acc and cell[("deltaedit", "n")].startswith("288")
    # KID's scale is in its header and notes; a negative KID is flagged.
    kid = next(h for h in names if h.startswith("KID"))
    assert "unscaled" in kid and any("×1" in n for n in t["notes"])
    assert "†" in cell[("styleclip", kid)] and any("below zero" in n for n in t["notes"])
    # Cost headers say what they measure.
    assert "process peak MiB ↓" in names and any("process" in n for n in t["notes"])
    # p-values below the bootstrap's resolution are "< 1/B", never 0.
    md = report.pvalue_markdown(t)
    assert "< 0.0005 (B = 2000)" in md and "| 0 " not in md and "0.0 " not in md


def test_this_runs_load_time_is_beside_the_fit_time(tmp_path):
    from deltabench import report

    (tmp_path / "fits.json").write_text(
        json.dumps(
            {
                "deltaedit": {"fit_seconds": 312.0, "loaded_seconds": 0.9},
                "styleclip": {"fit_seconds": 40.0, "loaded_seconds": 40.0},
            }
        )
    )
    s = report.with_load_seconds(_summary(), tmp_path)
    t = report.table_cells(s)
    names = report._header_names(t)
    row = dict(zip(names, (c for c, _ in t["rows"][0])))
    assert row["fit s ↓"] == "312" and row["this run s ↓"] == "0.9"


def test_stats_formatting_helpers():
    from deltabench import stats

    assert stats.format_interval(0.5, 0.4, 0.6, 2) == "0.50 ± 0.10"
    assert stats.format_interval(0.5, 0.1, 0.6, 2) == "0.50 [0.10, 0.60]"
    assert stats.format_interval(0.5, 0.4, 0.6, 2, (0, 0.6)) == "0.50 [0.40, 0.60]"
    assert stats.format_p(0.0, 100) == "< 0.01" and stats.format_p(0.0, 2000) == "< 0.0005"
    assert stats.format_p(0.25, 100) == "0.25"


# 4. Input that yields nonsense ---------------------------------------------------------------
EDIT = ["--world", "synthfaces-micro", "--steps", "20", "--n-generated", "64", "--n-inverted", "16", "--batch", "16"]


def _face(path, size=32):
    from deltabench.world.attributes import sample_params
    from deltabench.world.renderer import render

    Image.fromarray(render(sample_params(1, np.random.default_rng(5)), size)[0]).save(path)
    return path


def test_an_empty_sweep_is_an_error_not_x1(cache, tmp_path, capsys):
    rc, err, _ = _call([*RUN[:-6], "--sweep", "", "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "--sweep" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("size", [1, 8])
def test_a_tiny_image_is_refused_naming_it_and_its_size(cache, tmp_path, capsys, size):
    f = tmp_path / "tiny.png"
    Image.new("RGB", (size, size), (200, 150, 120)).save(f)
    rc, err, _ = _call(["edit", f, "--target", "face with glasses", "--out", tmp_path / "o.png", *EDIT], capsys)
    assert rc == 2 and str(f) in err and f"{size}x{size}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("flag", [["--test-images", "."], ["--train-images", "."], ["--precision", "official"]])
def test_real_domain_flags_on_a_synthetic_world_are_errors(cache, tmp_path, capsys, flag):
    rc, err, _ = _call([*RUN, "--prompts", _csv(tmp_path, GLASSES), *flag, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and flag[0] in err and "synthetic" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_strengths_outside_the_calibrated_range_warn_in_words(micro_world):
    from deltabench.methods import get_method

    def method(name):
        return get_method(name)(_domain(micro_world), "/nonexistent")

    de = method("deltaedit")
    assert de.strength_warning(None) is None and de.strength_warning(de.default_strength) is None
    assert de.strength_warning(2 * de.default_strength) is None
    assert "reverses the edit" in de.strength_warning(-5)
    assert "off the generator's range" in de.strength_warning(1e9)
    assert "too weak" in de.strength_warning(de.default_strength / 100)
    op = method("styleclip-op")  # a penalty weight: smaller is a stronger edit
    assert op.strength_warning(op.default_strength / 2) is None
    assert "off the generator's range" in op.strength_warning(op.default_strength / 1000)
    assert "negative penalty" in op.strength_warning(-1)


def _domain(world):
    from deltabench.domain import WorldDomain

    return WorldDomain(world)


def test_edit_with_a_negative_strength_says_it_reverses_the_edit(cache, tmp_path, capsys):
    from deltabench.methods import StrengthWarning

    src = _face(tmp_path / "face.png")
    with pytest.warns(StrengthWarning, match="reverses the edit"):
        assert (
            main(
                [
                    "edit",
                    str(src),
                    "--target",
                    "face with glasses",
                    "--strength",
                    "-5",
                    "--out",
                    str(tmp_path / "o.png"),
                    *EDIT,
                ]
            )
            == 0
        )


# 5. Logs, threads, the CLI --------------------------------------------------------------------
def test_dry_run_lists_the_units_and_an_eta_and_writes_nothing(cache, tmp_path, capsys):
    r = tmp_path / "r"
    rc, err, out = _call(
        [*RUN, "--prompts", _csv(tmp_path, GLASSES + "face,smiling face,smile,smiling\n"), "--out", r, "--dry-run"],
        capsys,
    )
    assert rc == 0 and not r.exists(), err
    assert "units" in out and "deltaedit" in out and "face with glasses" in out and "ETA" in out
    assert "nothing was run or written" in out


def test_threads_default_to_what_the_process_may_use(monkeypatch):
    from deltabench import utils

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(utils.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(utils, "_cgroup_cpus", lambda: None)
    assert utils.usable_cpus() == (4, "CPU affinity")
    monkeypatch.setattr(utils, "_cgroup_cpus", lambda: 2.5)  # a cgroup quota of 2.5 CPUs
    assert utils.usable_cpus()[0] == 2 and "quota" in utils.usable_cpus()[1]
    # never the momentary load: the same command gets the same threads, so the same numbers
    assert not hasattr(utils, "_others_running")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert utils.usable_cpus() == (3, "OMP_NUM_THREADS")
    n = torch.get_num_threads()
    try:
        assert (
            utils.set_threads(2) == 2 and torch.get_num_threads() == 2 and utils.THREADS["threads_from"] == "--threads"
        )
        assert utils.set_threads(None) == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(n)


def test_eta_waits_for_the_warm_up_and_lines_can_carry_the_time(monkeypatch, capsys):
    import time as _time

    from deltabench.utils import LogProgress

    monkeypatch.setenv("DELTABENCH_LOG_EVERY", "0")
    monkeypatch.delenv("DELTABENCH_QUIET", raising=False)
    monkeypatch.setenv("DELTABENCH_LOG_TIME", "1")
    bar = LogProgress(total=10, desc="demo")
    _time.sleep(0.3)  # the first item: a slow warm-up
    bar.update(1)
    for _ in range(3):
        _time.sleep(0.01)
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert all(re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] deltabench: demo", ln) for ln in lines), lines
    assert "ETA after the first item" in lines[0]
    eta = re.search(r"ETA ([\d.]+) s", lines[-1])
    assert eta and float(eta.group(1)) < 1.0, lines[-1]  # 6 more items at ~0.01 s, not at the warm-up's 0.3 s


def test_world_describe_lists_attributes_prompts_and_words_without_a_model(capsys, monkeypatch):
    """`deltabench world describe`: what a world knows, read from its config and kind alone."""
    import json as _json

    import deltabench.world.world as world_mod
    from deltabench.cli import main

    monkeypatch.setattr(world_mod, "load_world", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
    assert main(["world", "describe", "--world", "church", "--json"]) == 0
    d = _json.loads(capsys.readouterr().out)
    assert d["neutral"] == "church" and d["attributes"]["season"] == ["summer", "autumn", "winter"]
    assert "snow" in d["words"] and any(p["benchmark"] for p in d["prompts"])
    assert all(p["value"] in d["attributes"][p["attribute"]] for p in d["prompts"])
    assert main(["world", "describe", "--world", "synthfaces"]) == 0
    out = capsys.readouterr().out
    assert "glasses        none, glasses" in out and "* face -> face with glasses" in out
    assert main(["world", "describe", "--world", "ffhq"]) == 0
    assert "face -> face with eyeglasses" in capsys.readouterr().out
