"""deltabench suite export / score SUITE EDITS: a ground-truth test set, and edits of it made
outside the package scored to the run's own numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

W = "synthfaces-micro"
TINY = {"deltaedit": {"config": {"n_generated": 48, "n_inverted": 8, "steps": 10, "batch": 8}}}
METRICS = (
    "psnr",
    "ssim",
    "ids",
    "clip_score",
    "clip_direction",
    "manipulation_accuracy",
    "disentanglement",
    "identity_param_error",
    "identity_regression",
)


@pytest.fixture(scope="module")
def proof(micro_root, tmp_path_factory):
    """A micro run with saved DeltaEdit edits, and the suite of the same world, seed, images and
    prompts; the run's edits written as an outside tool would (EDITS/<id>.png), and its
    starting images (STARTS/<image>.png)."""
    import deltabench
    from deltabench.domain import load_domain
    from deltabench.suite.export import export_suite
    from deltabench.utils import float_to_uint8

    tmp = tmp_path_factory.mktemp("suite")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELTABENCH_CACHE", str(micro_root.parent))
        torch.set_num_threads(1)
        ps = load_domain(W).prompts[:3]
        (tmp / "p.csv").write_text(
            "source,target,attribute,value\n" + "".join(f"{p.source},{p.target},{p.attribute},{p.value}\n" for p in ps)
        )
        deltabench.run(
            methods="deltaedit",
            world=W,
            images=6,
            prompts=str(tmp / "p.csv"),
            sweep=(1,),
            options=TINY,
            out=tmp / "run",
            batch=4,
            save_edits=True,
            seed=3,
        )
        export_suite(W, out=tmp / "suite", images=6, prompts=str(tmp / "p.csv"), seed=3, log=lambda m: None)
    entries = json.loads((tmp / "suite" / "edits.json").read_text())
    saved = tmp / "run" / "edits"
    edits = torch.stack(
        [
            torch.from_numpy(np.load(saved / f"deltaedit__{e['prompt_index']}__1.0.npy")[e["image_index"]])
            for e in entries
        ]
    )  # [E, 3, R, R], the order of edits.json
    starts = torch.from_numpy(np.load(saved / "start.npy"))
    (tmp / "EDITS" / "deltaedit").mkdir(parents=True)
    (tmp / "STARTS").mkdir()
    for e, img in zip(entries, float_to_uint8(edits)):
        Image.fromarray(img).save(tmp / "EDITS" / "deltaedit" / f"{e['id']}.png")
    for i, img in enumerate(float_to_uint8(starts)):
        Image.fromarray(img).save(tmp / "STARTS" / f"{i:05d}.png")
    return {"dir": tmp, "entries": entries, "edits": edits, "starts": starts}


def _rows(results: pd.DataFrame, method: str) -> pd.DataFrame:
    return results[results["method"] == method].sort_values(["prompt_index", "image_index"]).reset_index(drop=True)


def test_the_suite_is_the_runs_test_set(proof):
    d = proof["dir"]
    run_inputs = np.load(d / "run" / "edits" / "inputs.npy")  # the run's test images, float [-1, 1] from uint8
    from deltabench.utils import float_to_uint8

    for i, want in enumerate(float_to_uint8(torch.from_numpy(run_inputs))):
        assert np.array_equal(np.asarray(Image.open(d / "suite" / "images" / f"{i:05d}.png")), want)
    m = json.loads((d / "suite" / "manifest.json").read_text())
    run_m = json.loads((d / "run" / "manifest.json").read_text())
    assert m["world_config_hash"] == run_m["config"]["world_hash"] and m["seed"] == run_m["config"]["seed"] == 3
    assert [(p["source"], p["target"]) for p in m["prompts"]] == [
        (p["source"], p["target"]) for p in run_m["config"]["prompts"]
    ]
    assert m["edits"] == 18 == len(proof["entries"]) and m["images"] == 6
    assert proof["entries"][0]["id"] == "00000-p00" and proof["entries"][0]["mask"] == "masks/00000-p00.png"
    assert set(m["files"]) == {
        "edits.json",
        "params.json",
        *(f"images/{i:05d}.png" for i in range(6)),
        *(f"masks/{e['id']}.png" for e in proof["entries"]),
    }


def test_scores_of_the_runs_edits_equal_the_runs_own(proof, micro_root, monkeypatch, capsys):
    """The key proof: DeltaEdit's saved edits, scored as an outside tool's, give the run's numbers."""
    from deltabench.cli import main
    from deltabench.suite.score import score_suite
    from deltabench.utils import float_to_uint8, uint8_to_float

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    d = proof["dir"]
    run_rows, run_sum = pd.read_csv(d / "run" / "results.csv"), pd.read_csv(d / "run" / "summary.csv")
    # 1. The run's float edits and starting images: every row and the summary equal the run's to float error
    #    (the summary CSV's 6 digits; rows within 1e-6 relative: oracle/identity nets on other batch members).
    score_suite(d / "suite", {"deltaedit": proof["edits"]}, out=d / "api", starts=proof["starts"], batch=4, log=print)
    got_rows, got_sum = pd.read_csv(d / "api" / "results.csv"), pd.read_csv(d / "api" / "summary.csv")
    for m in ("deltaedit", "inversion", "oracle-edit"):
        a, b = _rows(run_rows, m), _rows(got_rows, m)
        assert len(a) == len(b) == 18
        for c in METRICS:
            assert np.allclose(a[c], b[c], rtol=1e-6, atol=1e-6, equal_nan=True), (m, c, a[c].values, b[c].values)
        sa, sb = run_sum[run_sum["method"] == m].iloc[0], got_sum[got_sum["method"] == m].iloc[0]
        for c in [
            c
            for c in run_sum.columns
            if c in got_sum.columns
            and c.split("_")[0]
            in ("psnr", "ssim", "ids", "clip", "manipulation", "disentanglement", "identity", "fid", "kid")
        ]:
            assert sa[c] == pytest.approx(sb[c], rel=2e-6, abs=1e-6, nan_ok=True), (m, c)

    # 2. The CLI on PNG files (what an outside tool writes): exactly the Python path given the same uint8 images.
    assert (
        main(
            [
                "score",
                str(d / "suite"),
                str(d / "EDITS" / "deltaedit"),
                "--starts",
                str(d / "STARTS"),
                "--out",
                str(d / "cli"),
                "--batch",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "deltaedit (external)" in out and out.strip().endswith("index.html")
    q = uint8_to_float(float_to_uint8(proof["edits"]))
    score_suite(
        d / "suite",
        {"deltaedit": q},
        out=d / "api8",
        starts=uint8_to_float(float_to_uint8(proof["starts"])),
        batch=4,
        log=lambda m: None,
    )
    cli_rows, q_rows = pd.read_csv(d / "cli" / "results.csv"), pd.read_csv(d / "api8" / "results.csv")
    for c in METRICS:
        assert np.array_equal(_rows(cli_rows, "deltaedit")[c], _rows(q_rows, "deltaedit")[c], equal_nan=True), c
    # ... and the run's own: the oracle's verdicts are the same; the continuous metrics move only by the
    # rounding of the edits and starts to 8 bits (<= 1/255 per pixel in [0, 1]).
    a, b = _rows(run_rows, "deltaedit"), _rows(cli_rows, "deltaedit")
    for c in ("manipulation_accuracy", "disentanglement"):
        assert np.array_equal(a[c], b[c], equal_nan=True), c
    tol = {"psnr": 0.02, "ssim": 0.002, "clip_score": 0.002, "clip_direction": 0.02, "ids": 0.05}
    for c, t in tol.items():
        assert np.nanmax(np.abs(a[c] - b[c])) < t, (c, np.nanmax(np.abs(a[c] - b[c])))
    s = pd.read_csv(d / "cli" / "summary.csv")
    assert s["method"].tolist() == ["deltaedit", "inversion", "oracle-edit"]
    assert s["external"].tolist() == [True, False, False]
    assert s.loc[0, "scored_from"] == str((d / "EDITS" / "deltaedit").resolve())
    html = (d / "cli" / "reports" / "index.html").read_text()
    assert "deltaedit (external)" in html and "scored from" in html
    for f in ("table.md", "table.tex", "per_prompt.csv", "edit_grid.png", "tradeoff.png"):
        assert (d / "cli" / "reports" / f).is_file(), f
    man = json.loads((d / "cli" / "manifest.json").read_text())
    assert set(man["external"]["deltaedit"]["files"]) == {f"{e['id']}.png" for e in proof["entries"]}

    # 3. Without --starts an outside editor is compared with the test image itself; two editors get paired tests.
    other = d / "EDITS" / "copy"
    shutil.copytree(d / "EDITS" / "deltaedit", other)
    Image.open(d / "suite" / "images" / "00000.png").save(other / "00000-p00.png")  # one edit left undone
    assert (
        main(
            [
                "score",
                str(d / "suite"),
                str(d / "EDITS" / "deltaedit"),
                str(other),
                "--out",
                str(d / "two"),
                "--references",
                "none",
                "--batch",
                "4",
            ]
        )
        == 0
    )
    two = pd.read_csv(d / "two" / "summary.csv")
    assert two["method"].tolist() == ["deltaedit", "copy"] and two["external"].all()
    p_cols = [c for c in two.columns if c.endswith("_p")]
    assert p_cols and two[p_cols].notna().any().any()  # the paired tests against the column's best


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("deltabench: error:"), err
    return err[0]


def test_bad_edits_and_suites_get_one_line_before_any_work(proof, tmp_path, monkeypatch, capsys):
    import deltabench.domain
    from deltabench.cli import main

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(deltabench.domain, "load_domain", no_model)
    d = proof["dir"]
    suite, ids = d / "suite", [e["id"] for e in proof["entries"]]

    def edits_dir(name: str) -> Path:
        p = tmp_path / name
        shutil.copytree(d / "EDITS" / "deltaedit", p)
        return p

    def score(*args) -> str:
        assert main(["score", *map(str, args)]) == 2
        return _one_error(capsys)

    e = edits_dir("missing")
    for i in ids[3:9]:
        (e / f"{i}.png").unlink()
    line = score(suite, e)
    assert (
        "lacks 6 of the suite's 18 edits: 00001-p00.png, 00001-p01.png, 00001-p02.png, 00002-p00.png, "
        "00002-p01.png and 1 more" in line
    )
    e = edits_dir("extra")
    shutil.copy(e / "00000-p00.png", e / "00099-p00.png")
    assert "extra file(s) 00099-p00.png" in score(suite, e)
    e = edits_dir("misnamed")
    (e / "00000-p00.png").rename(e / "00000-p00.jpg")
    assert "misnamed file(s) 00000-p00.jpg" in score(suite, e)
    e = edits_dir("size")
    Image.new("RGB", (16, 16)).save(e / "00002-p01.png")
    assert "00002-p01.png is 16x16 px; the suite's images are 32x32" in score(suite, e)
    e = edits_dir("jpeg")
    Image.new("RGB", (32, 32)).save(e / "00002-p01.png", format="JPEG")
    assert "is a JPEG file named .png" in score(suite, e)
    assert "does not exist" in score(suite, tmp_path / "nowhere")
    s2 = tmp_path / "starts"
    shutil.copytree(d / "STARTS", s2)
    (s2 / "00005.png").unlink()
    assert "--starts" in (line := score(suite, d / "EDITS" / "deltaedit", "--starts", s2)) and "00005.png" in line
    assert "drop --prompts" in score(suite, d / "EDITS" / "deltaedit", "--prompts", d / "p.csv")
    # not a suite: a folder without a suite manifest is INPUTS, and then prompts are needed
    assert "is no suite" in score(d / "EDITS" / "deltaedit", d / "EDITS" / "deltaedit")
    assert "--starts applies to a suite" in score(
        d / "STARTS", d / "STARTS", "--prompts", d / "p.csv", "--starts", d / "STARTS"
    )
    # a changed suite file
    bad = tmp_path / "suite-changed"
    shutil.copytree(suite, bad)
    img = np.asarray(Image.open(bad / "images" / "00001.png")).copy()
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(bad / "images" / "00001.png")
    assert "images/00001.png does not match its sha256 in manifest.json" in score(bad, d / "EDITS" / "deltaedit")


def test_manifest_hashes_are_checked(proof, tmp_path):
    from deltabench.suite.format import SuiteError, read_suite

    d = tmp_path / "s"
    shutil.copytree(proof["dir"] / "suite", d)
    assert len(read_suite(d).entries) == 18
    entries = json.loads((d / "edits.json").read_text())
    entries[0]["target"] = "face with a hat"
    (d / "edits.json").write_text(json.dumps(entries))
    with pytest.raises(SuiteError, match="edits.json does not match its sha256"):
        read_suite(d)
    shutil.copy(proof["dir"] / "suite" / "edits.json", d / "edits.json")
    read_suite(d)
    shutil.copy(d / "masks" / "00000-p00.png", d / "masks" / "00000-p09.png")
    with pytest.raises(SuiteError, match="masks/00000-p09.png not in manifest.json"):
        read_suite(d)
    (d / "masks" / "00000-p09.png").unlink()
    (d / "params.json").unlink()
    with pytest.raises(SuiteError, match="params.json is missing"):
        read_suite(d)


def _check_masks(suite_dir: Path, domain, entries: list[dict]) -> tuple[int, int]:
    """The mask rule against the renderer (the generic domain API): a mask is non-empty exactly where
    the ground-truth edit changes the render, and no pixel outside it changes. Returns (empty, edits)."""
    from deltabench.suite.format import read_suite

    s = read_suite(suite_dir)
    params = s.world_params()
    empty = 0
    for e in entries:
        mask = np.asarray(Image.open(suite_dir / e["mask"])) > 0
        before = np.asarray(Image.open(suite_dir / e["image"])).astype(int)
        from deltabench.utils import float_to_uint8

        after = float_to_uint8(domain.render_edit(params[e["image_index"]], e["attribute"], e["value"]))[0].astype(int)
        changed = np.abs(after - before).max(-1) > 0
        assert not (changed & ~mask).any(), e["id"]  # nothing outside the mask changes
        assert mask.any() == changed.any() == (not e["already_satisfied"]), e["id"]
        assert e["mask_pixels"] == int(mask.sum())
        empty += not mask.any()
    return empty, len(entries)


def test_masks_follow_the_renderer(proof, micro_root, monkeypatch):
    from deltabench.domain import load_domain

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    empty, n = _check_masks(proof["dir"] / "suite", load_domain(W), proof["entries"])
    assert 0 < empty < n  # images that already have the target: an empty mask, recorded, not an error
    m = json.loads((proof["dir"] / "suite" / "manifest.json").read_text())
    assert m["empty_masks"] == empty and "dilated" in m["mask_rule"]["text"]


def test_church_suite(church_micro_root, monkeypatch, tmp_path):
    """The other world kind, through the same generic code."""
    from deltabench.domain import load_domain
    from deltabench.suite.export import export_suite
    from deltabench.suite.format import read_suite

    monkeypatch.setenv("DELTABENCH_CACHE", str(church_micro_root.parent))
    export_suite("church-micro", out=tmp_path / "c", images=2, seed=0, log=lambda m: None)
    s = read_suite(tmp_path / "c")
    assert s.manifest["world_kind"] == "church" and len(s.entries) == 2 * len(s.manifest["prompts"])
    assert {e["instruction"] for e in s.entries} >= {"show the church at sunset", "give the church a tower"}
    empty, n = _check_masks(tmp_path / "c", load_domain("church-micro"), s.entries)
    assert n == len(s.entries)


def test_instructions():
    from deltabench.suite.format import instruction

    assert instruction("face", "face with glasses") == "give the face glasses"
    assert instruction("face", "face with a beard") == "give the face a beard"
    assert instruction("face", "face without glasses") == "remove the glasses from the face"
    assert instruction("church", "church with no tower") == "remove the tower from the church"
    assert instruction("church", "church under a cloudy sky") == "show the church under a cloudy sky"
    assert instruction("face", "face on a blue background") == "show the face on a blue background"
    assert instruction("face", "smiling face") == "make the face smiling"
    assert instruction("face", "portrait of a cat") == "make it a portrait of a cat"  # any other shape
    assert instruction("face", "an old portrait") == "make it an old portrait"


def _tree(d: Path) -> dict:
    import hashlib

    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in d.rglob("*") if p.is_file()
    }


@pytest.fixture(scope="module")
def scored(proof, micro_root):
    """The run's DeltaEdit edits (float, with the run's starting images) and an identity editor
    (the test images unchanged) scored on the run's suite; and the identity editor scored on a
    second suite of the same world, seed and images whose prompts come in reverse order with one
    prompt the run lacks."""
    from deltabench.domain import load_domain
    from deltabench.suite.export import export_suite
    from deltabench.suite.format import read_suite
    from deltabench.suite.score import score_suite

    d = proof["dir"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELTABENCH_CACHE", str(micro_root.parent))
        s1 = read_suite(d / "suite")
        inputs = torch.stack(
            [torch.from_numpy(np.load(d / "run" / "edits" / "inputs.npy")[e["image_index"]]) for e in s1.entries]
        )
        quiet = lambda m: None  # noqa: E731
        score_suite(
            s1,
            {"deltaedit": proof["edits"], "identity": inputs},
            out=d / "scored",
            starts=proof["starts"],
            batch=4,
            log=quiet,
        )
        ps = load_domain(W).prompts
        run_ps = [(p["source"], p["target"], p["attribute"], p["value"]) for p in s1.manifest["prompts"]]
        extra = next(p for p in ps if (p.source, p.target, p.attribute, p.value) not in run_ps)
        rows = [*reversed(run_ps), (extra.source, extra.target, extra.attribute, extra.value)]
        (d / "rev.csv").write_text("source,target,attribute,value\n" + "".join(",".join(r) + "\n" for r in rows))
        export_suite(W, out=d / "suite-rev", images=6, prompts=str(d / "rev.csv"), seed=3, log=quiet)
        s2 = read_suite(d / "suite-rev")
        inputs2 = torch.stack(
            [torch.from_numpy(np.load(d / "run" / "edits" / "inputs.npy")[e["image_index"]]) for e in s2.entries]
        )
        score_suite(s2, {"identity-rev": inputs2}, out=d / "scored-rev", starts=proof["starts"], batch=4, log=quiet)
    return {"one": d / "scored", "rev": d / "scored-rev", "extra": extra.target}


def test_report_places_external_editors_beside_a_runs_methods(proof, scored, capsys):
    """`deltabench report RUN --external SCORED --out DIR`: one table, the paired tests over the
    same images and prompts; the run's DeltaEdit edits scored as external give the run's own row."""
    from deltabench.cli import main

    d = proof["dir"]
    before = _tree(d / "run"), _tree(scored["one"]), _tree(scored["rev"])
    argv = ["report", str(d / "run"), "--external", str(scored["one"]), str(scored["rev"]), "--out", str(d / "merged")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("index.html") and "'deltaedit' is named 'deltaedit-external'" in out
    assert f"1 prompt(s) not in the run left out: {scored['extra']}" in out
    assert (_tree(d / "run"), _tree(scored["one"]), _tree(scored["rev"])) == before  # only read

    run_sum = pd.read_csv(d / "run" / "summary.csv").set_index("method")
    s = pd.read_csv(d / "merged" / "summary.csv").set_index("method")
    assert s.index.tolist() == [
        "deltaedit",
        "deltaedit-external",
        "identity",
        "identity-rev",
        "inversion",
        "oracle-edit",
    ]
    assert s["external"].tolist() == [False, True, True, True, False, False]
    assert s.loc["deltaedit-external", "scored_from"] == "(tensor given to deltabench.suite.score_suite)"
    assert s.loc["identity", "starts"] == "given as a tensor"
    values = [
        c
        for c in run_sum.columns
        if not c.endswith("_p")
        and c.split("_")[0]
        in ("psnr", "ssim", "ids", "clip", "manipulation", "disentanglement", "identity", "fid", "kid")
    ]
    assert len(values) > 20
    for m in ("deltaedit", "inversion", "oracle-edit"):  # the run's own rows: unchanged but for the paired tests
        for c in values:
            assert s.loc[m, c] == pytest.approx(run_sum.loc[m, c], rel=1e-6, abs=1e-9, nan_ok=True), (m, c)
    for c in values:  # the run's edits scored as external: the run's numbers, intervals included
        assert s.loc["deltaedit-external", c] == pytest.approx(
            run_sum.loc["deltaedit", c], rel=2e-6, abs=1e-6, nan_ok=True
        ), c
        # the same edits with the prompts in another order in their suite: the same numbers
        assert s.loc["identity-rev", c] == pytest.approx(s.loc["identity", c], rel=1e-9, abs=1e-12, nan_ok=True), c
    # Paired tests over the combined rows: against each column's best, among all methods.
    from deltabench.metrics.suite import HIGHER_IS_BETTER

    for key in ("psnr", "manipulation_accuracy", "ids", "kid"):
        up = HIGHER_IS_BETTER[key]
        best = s.loc[~s["reference"], key].idxmax() if up else s.loc[~s["reference"], key].idxmin()
        assert np.isnan(s.loc[best, f"{key}_p"])
        others = [m for m in s.index if m != best and not s.loc[m, "reference"]]
        assert all(np.isfinite(s.loc[m, f"{key}_p"]) or m.startswith("deltaedit") for m in others), key
    assert s.loc["identity", "psnr_p"] < 0.05 or s.loc["identity", "psnr"] == s["psnr"].max()

    res = pd.read_csv(d / "merged" / "results.csv")
    run_res = pd.read_csv(d / "run" / "results.csv")
    a, b = _rows(run_res, "deltaedit"), _rows(res, "deltaedit-external")
    assert (a["target"].tolist(), a["image_index"].tolist()) == (b["target"].tolist(), b["image_index"].tolist())
    r1, r2 = _rows(res, "identity"), _rows(res, "identity-rev")
    assert r1["target"].tolist() == r2["target"].tolist() and len(r2) == 18  # remapped; the extra prompt left out
    assert np.allclose(r1["psnr"], r2["psnr"]) and np.array_equal(
        r1["manipulation_accuracy"], r2["manipulation_accuracy"], equal_nan=True
    )

    md = (d / "merged" / "reports" / "table.md").read_text()
    assert "deltaedit-external (external)" in md and "identity-rev (external)" in md and "scored from" in md
    assert "starting images" in md
    html = (d / "merged" / "reports" / "index.html").read_text()
    assert "identity (external)" in html
    grid_cols = (d / "merged" / "reports" / "edit_grid_columns.json").read_text()
    assert "deltaedit-external (ext.)" in grid_cols and "identity-rev (ext.)" in grid_cols
    man = json.loads((d / "merged" / "manifest.json").read_text())
    assert man["external"]["deltaedit-external"]["name_when_scored"] == "deltaedit"
    assert man["external"]["identity-rev"]["prompts_left_out"] == [scored["extra"]]
    assert man["run"]["path"] == str((d / "run").resolve())
    # The merged folder is a run-shaped folder: its report can be drawn again from it alone.
    assert main(["report", str(d / "merged")]) == 0
    assert (d / "merged" / "reports" / "table.md").read_text() == md
    # ... and merged again into the same --out, replacing its own files only.
    (d / "merged" / "mine.txt").write_text("a user's file")
    assert main(argv) == 2
    assert "mine.txt" in capsys.readouterr().err
    (d / "merged" / "mine.txt").unlink()
    assert main(argv) == 0


def test_report_external_bad_inputs_get_one_line_before_any_work(
    proof, scored, micro_root, tmp_path, monkeypatch, capsys
):
    from deltabench.cli import main

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))

    d = proof["dir"]
    run, one = d / "run", scored["one"]

    def refuse(*args, out=tmp_path / "m") -> str:
        argv = ["report", *map(str, args)] + (["--out", str(out)] if out is not None else [])
        assert main(argv) == 2
        assert not (tmp_path / "m").exists()
        return _one_error(capsys)

    assert "--external needs --out" in refuse(run, "--external", one, out=None)
    assert "--out applies with --external" in refuse(run)

    def altered(name: str, change) -> Path:
        c = tmp_path / name
        shutil.copytree(one, c)
        m = json.loads((c / "manifest.json").read_text())
        change(m)
        (c / "manifest.json").write_text(json.dumps(m))
        return c

    e = refuse(run, "--external", altered("seed", lambda m: m["suite"].update(seed=4)))
    assert "drawn with seed 4" in e and "--seed 3" in e
    e = refuse(run, "--external", altered("world", lambda m: m["config"].update(world_hash="0" * 16)))
    assert "not the same test set" in e
    e = refuse(run, "--external", altered("prompts", lambda m: m["config"].update(prompts=m["config"]["prompts"][:2])))
    assert "lacks 1 of RUN's 3 prompts" in e
    e = refuse(
        run, "--external", altered("bench", lambda m: m.update(scored_by="deltabench score --suite LAYOUT DIR EDITS"))
    )
    assert "PIE-Bench" in e
    thumbs = tmp_path / "thumbs"
    shutil.copytree(one, thumbs)
    t = torch.load(thumbs / "inputs.pt", weights_only=True)
    t["inputs"][0] = 255 - t["inputs"][0]
    torch.save(t, thumbs / "inputs.pt")
    assert "test image 00000 differs" in refuse(run, "--external", thumbs)
    assert "two --external folders each have an editor named 'deltaedit'" in refuse(run, "--external", one, one)
    assert "is a `deltabench score` folder, not a run" in refuse(one, "--external", one)
    assert "inside RUN" in refuse(run, "--external", one, out=run / "merged")
    assert not (run / "merged").exists()
    assert "does not exist" in refuse(run, "--external", tmp_path / "nope")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    assert "not empty" in refuse(run, "--external", one, out=tmp_path / "full")
    assert (tmp_path / "full" / "x.txt").read_text() == "x"
    # Scoring again into a scored folder replaces only what the scoring wrote: a user's file there refuses it.
    mine = tmp_path / "rescored"
    shutil.copytree(one, mine)
    (mine / "notes.txt").write_text("mine")
    assert main(["score", str(d / "suite"), str(d / "EDITS" / "deltaedit"), "--out", str(mine)]) == 2
    assert "notes.txt" in _one_error(capsys) and (mine / "notes.txt").read_text() == "mine"
    # A run never resumes into (or --force-clears) a scored or merged folder, though it is shaped like a run.
    before = _tree(one)
    for extra in ([], ["--resume"], ["--force"]):
        assert main(["run", "--out", str(one), "--world", W, "--methods", "deltaedit", "--images", "2", *extra]) == 2
        assert "holds the output of `deltabench score SUITE EDITS`, not a run" in _one_error(capsys)
    assert _tree(one) == before
