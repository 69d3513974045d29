"""A run's summary and tables: n, 95% intervals, paired tests, reference rows, honest FID, LaTeX."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from deltabench.cli import main

pytestmark = pytest.mark.slow  # full runs and pdflatex

OPTS = json.dumps({"deltaedit": {"config": {"n_generated": 64, "n_inverted": 16, "steps": 20, "batch": 16}}})


@pytest.fixture(scope="module")
def run_dir(micro_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("tables") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELTABENCH_CACHE", str(micro_root.parent))
        assert (
            main(
                [
                    "run",
                    "--methods",
                    "deltaedit,styleclip-gd",
                    "--world",
                    "synthfaces-micro",
                    "--limit",
                    "3",
                    "--sweep",
                    "1",
                    "--options",
                    OPTS,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
    return out


def test_summary_has_n_intervals_and_reference_rows(cache, run_dir):
    s = pd.read_csv(run_dir / "summary.csv")
    assert s["method"].tolist() == ["deltaedit", "styleclip-gd", "inversion", "oracle-edit"]
    assert s["reference"].tolist() == [False, False, True, True]
    results = pd.read_csv(run_dir / "results.csv")
    for key in ("psnr", "ids", "clip_direction", "manipulation_accuracy", "disentanglement", "identity_param_error"):
        for _, r in s.iterrows():
            rows = results[(results["method"] == r["method"]) & (results["strength_scale"] == 1.0)][key]
            assert r[f"{key}_n"] == rows.notna().sum()
            assert r[key] == pytest.approx(rows.mean(), rel=1e-4, abs=1e-6)
            assert r[f"{key}_lo"] <= r[key] + 1e-9 and r[key] <= r[f"{key}_hi"] + 1e-9
    assert (s["fid_n"] == 9).all() and (s["fid_dim"] == 64).all()
    for key in ("fid", "kid"):  # centred on the full-sample value (resampled duplicates bias FID up)
        assert ((s[f"{key}_lo"] <= s[key] + 1e-9) & (s[key] <= s[f"{key}_hi"] + 1e-9)).all()
    inv = s[s["method"] == "inversion"].iloc[0]
    # The inversion is every method's starting image: no CLIP direction, every attribute kept.
    assert inv["clip_direction"] == 0 and inv["disentanglement"] == 1 and inv["identity_param_error"] == 0
    assert np.isnan(inv["identity_regression"])  # nothing changed, nothing counted
    oracle = s[s["method"] == "oracle-edit"].iloc[0]
    assert oracle["manipulation_accuracy"] == 1.0 and oracle["psnr"] > inv["psnr"]
    # The best method and the references have no p-value; the other is tested against the best.
    best = s.loc[s.loc[~s["reference"], "psnr"].idxmax(), "method"]
    for _, r in s.iterrows():
        assert np.isnan(r["psnr_p"]) == (r["reference"] or r["method"] == best)
    assert 0 <= s.loc[~s["reference"] & (s["method"] != best), "psnr_p"].iloc[0] <= 1


def test_tables_mark_references_fid_and_compile_with_pdflatex(cache, run_dir, tmp_path):
    rep = run_dir / "reports"
    md = (rep / "table.md").read_text()
    assert "inversion (reference)" in md and "oracle-edit (reference)" in md
    assert "FID (oracle) [unreliable]" in md and "3 samples for 64-d features" in md  # 3 distinct test images
    assert md.index("KID (oracle, unscaled)") < md.index("FID (oracle)")
    assert "**" in md and " ± " in md and "9 (3 img.)" in md
    tex = (rep / "table.tex").read_text()
    assert tex.isascii() and r"\toprule" in tex and r"\bottomrule" in tex and r"$\pm$" in tex
    assert tex.count(r"\midrule") == 2  # header rule, then the rule above the references
    per_prompt = pd.read_csv(rep / "per_prompt.csv")
    assert (per_prompt["n"] == 3).all() and "manipulation_accuracy_n" in per_prompt
    page = (rep / "index.html").read_text()
    assert "Warnings" in page and "unreliable" in page and "Run config" in page and 'class="reference"' in page
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (.ci/run installs TeX Live's base and recommended packages)")
    doc = tmp_path / "doc.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
        f"\\input{{{rep / 'table.tex'}}}\n\\end{{document}}\n"
    )
    r = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout[-2000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000


def test_one_precision_per_column():
    from deltabench.report import table_cells

    s = pd.DataFrame(
        {
            "method": ["a", "b"],
            "reference": [False, False],
            "prompts": [2, 2],
            "images": [3, 3],
            "psnr": [14.123, 9.5],
            "psnr_lo": [13.0, 9.0],
            "psnr_hi": [15.2, 10.1],
            "psnr_p": [np.nan, 0.01],
        }
    )
    t = table_cells(s)
    col = [row[2] for row in t["rows"]]
    # two significant digits of the median half-width (0.825): two decimals for both rows
    assert col == [("14.12 ± 1.10", "best"), ("9.50 ± 0.55", "")]
