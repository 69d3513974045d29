"""The field's columns wired to the CLI: `deltabench score SUITE EDITS` writes field.csv and
field_summary.csv beside a run's scores; `deltabench score --suite pie-bench|magicbrush DIR EDITS`
scores another benchmark's layout with its own columns; `deltabench suite to-pie-bench` writes a
suite in PIE-Bench's layout and reads back the same."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_field_metrics import _magicbrush_sample, _pie_sample, _png

W = "synthfaces-micro"


@pytest.fixture(scope="module")
def suite(micro_root, tmp_path_factory):
    """A micro suite (6 images x 3 prompts) and an editor that changes nothing (EDITS/identity)."""
    from deltabench.domain import load_domain
    from deltabench.suite.export import export_suite

    tmp = tmp_path_factory.mktemp("suitefield")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELTABENCH_CACHE", str(micro_root.parent))
        torch.set_num_threads(1)
        ps = load_domain(W).prompts[:3]
        (tmp / "p.csv").write_text(
            "source,target,attribute,value\n" + "".join(f"{p.source},{p.target},{p.attribute},{p.value}\n" for p in ps)
        )
        export_suite(W, out=tmp / "suite", images=6, prompts=str(tmp / "p.csv"), seed=3, log=lambda m: None)
    entries = json.loads((tmp / "suite" / "edits.json").read_text())
    (tmp / "EDITS" / "identity").mkdir(parents=True)
    for e in entries:
        shutil.copy(tmp / "suite" / e["image"], tmp / "EDITS" / "identity" / f"{e['id']}.png")
    return {"dir": tmp, "entries": entries}


def _one_error(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("deltabench: error:"), err
    return err[0]


def test_score_suite_writes_the_field_columns(suite, micro_root, monkeypatch, capsys):
    from deltabench.cli import main
    from deltabench.metrics.field import PSNR_CAP

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    d, entries = suite["dir"], suite["entries"]
    assert (
        main(["score", str(d / "suite"), str(d / "EDITS" / "identity"), "--out", str(d / "out"), "--batch", "8"]) == 0
    )
    out = capsys.readouterr().out
    assert "field metrics" in out and "identity: " in out and out.strip().endswith("index.html")
    per, summ = pd.read_csv(d / "out" / "field.csv"), pd.read_csv(d / "out" / "field_summary.csv")
    clip = f"{W} CLIP"
    ct, cr, ci = f"clip_t[{clip}]", f"clip_t_edit_region[{clip}]", f"clip_i[{clip}]"
    assert per["editor"].unique().tolist() == ["identity", "inversion", "oracle-edit"]
    ids = [e["id"] for e in entries]
    empty = np.array([e["mask_pixels"] == 0 for e in entries])
    n_empty = json.loads((d / "suite" / "manifest.json").read_text())["empty_masks"]
    assert 0 < n_empty == empty.sum() < len(ids)
    rows = {m: g.set_index("id").loc[ids] for m, g in per.groupby("editor")}

    # the identity edit: unedited region identical (PSNR at the cap, never inf), CLIP-I of an unchanged image 1
    idn = rows["identity"]
    assert (idn["psnr_unedited"] == PSNR_CAP).all() and (idn["mse_unedited"] == 0).all()
    assert np.allclose(idn["ssim_unedited"], 1, atol=1e-12) and np.allclose(idn[ci], 1, atol=1e-5)
    # the renderer's perfect edit changes nothing outside the mask (its renders are on the 8-bit grid of the test
    # PNGs, so exactly nothing: PSNR at the cap); where the mask is empty it is the test image
    orc = rows["oracle-edit"]
    assert (orc["psnr_unedited"] == PSNR_CAP).all() and (orc["mse_unedited"] == 0).all(), orc["psnr_unedited"].min()
    assert np.allclose(orc[ci].values[empty], 1, atol=1e-4)
    assert (orc[ci].values[~empty] < 1 - 1e-4).all()  # it does change the image where it is asked to
    # (plain CLIP-T, the caption as written with no templates, does not rank the perfect edit above the unedited
    # image on the micro world's CLIP: 0.353 vs 0.362 over the 7 non-empty edits; the field's column as defined)

    # exclusions: the empty masks are counted for the edited-region CLIP-T, never a NaN in a mean
    for m, r in rows.items():
        assert np.array_equal(np.isnan(r[cr].values), empty), m
        assert not r[[ct, ci, "psnr_unedited", "ssim_unedited", "mse_unedited"]].isna().any().any(), m
    s = summ[summ["column"] == cr]
    assert len(s) == 3 and (s["excluded"] == n_empty).all() and (s["n"] == len(ids) - n_empty).all()
    assert s["note"].str.contains("the mask is empty").all() and s["higher_is_better"].all()
    for _, r in summ[summ["n"] > 0].iterrows():
        assert r["mean"] == pytest.approx(rows[r["editor"]][r["column"]].mean(skipna=True), rel=1e-8)
    assert summ[summ["n"] > 0]["mean"].notna().all()
    # LPIPS / the structure distance: computed with the registry's weights, else absent with the reason
    for fam in ("lpips", "structure_distance"):
        present = any(c.startswith(fam) for c in per.columns)
        absent = summ[(summ["column"] == fam) & summ["note"].str.startswith("absent")]
        assert present != (len(absent) == 3), fam
    man = json.loads((d / "out" / "manifest.json").read_text())
    assert man["field"]["clip"] == clip and set(man["field"]["notes"]) >= {"lpips", "structure_distance"}


def test_score_pie_bench_and_magicbrush_layouts(micro_root, tmp_path, monkeypatch, capsys):
    from deltabench.cli import main
    from deltabench.interop import load_pie_bench_pairs, read_pie_bench
    from deltabench.metrics import field as fm

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    data = tmp_path / "data"
    _pie_sample(data)
    for e in read_pie_bench(data):
        src = np.asarray(Image.open(e.image).convert("RGB"))
        ed = src.copy()
        ed[5:8, 5:8] = 255  # a change outside both masks
        _png(tmp_path / "good/annotation_images" / e.meta["image_path"], np.concatenate([src, ed], 1))
        _png(tmp_path / "same/annotation_images" / e.meta["image_path"], src)
    assert (
        main(
            [
                "score",
                "--suite",
                "pie-bench",
                str(data),
                str(tmp_path / "good"),
                str(tmp_path / "same"),
                "--world",
                W,
                "--out",
                str(tmp_path / "o"),
                "--batch",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "good: " in out and "same: " in out and out.strip().endswith("field_summary.csv")
    per = pd.read_csv(tmp_path / "o" / "field.csv", dtype={"id": str})
    assert per["id"].tolist() == ["000000000000", "111000000000"] * 2
    assert not [c for c in per.columns if "accuracy" in c or "disentangle" in c]  # no ground truth here
    same, good = per[per["editor"] == "same"], per[per["editor"] == "good"]
    assert (same["psnr_unedited"] == fm.PSNR_CAP).all() and (same["mse_unedited"] == 0).all()
    _, src, edit, masks = load_pie_bench_pairs(data, tmp_path / "good")
    want = fm.score_field(src, edit, masks)
    for k in ("psnr_unedited", "ssim_unedited", "mse_unedited"):
        assert np.allclose(good[k].values, want.columns[k], rtol=1e-8, atol=1e-12), k
    assert (good["mse_unedited"] > 0).all() and f"clip_t_edit_region[{W} CLIP]" in per.columns

    # MagicBrush: an editor that returns the ground-truth target exactly; CLIP-T needs the captions file
    mb = tmp_path / "mb"
    _magicbrush_sample(mb)
    for name in ("139_1", "139_inde_2"):
        k = 1 if name == "139_1" else 2
        shutil.copy(mb / f"images/139/139-output{k}.png", _mk(tmp_path / "perfect/139") / f"{name}.png")
    assert (
        main(
            [
                "score",
                "--suite",
                "magicbrush",
                str(mb),
                str(tmp_path / "perfect"),
                "--world",
                W,
                "--out",
                str(tmp_path / "m1"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    m1 = pd.read_csv(tmp_path / "m1" / "field.csv")
    assert (m1["l1_ref"] == 0).all() and (m1["l2_ref"] == 0).all()
    assert np.allclose(m1[f"clip_i_ref[{W} CLIP]"], 1, atol=1e-5) and f"clip_t[{W} CLIP]" not in m1.columns
    s1 = pd.read_csv(tmp_path / "m1" / "field_summary.csv")
    assert s1[s1["column"] == "clip_t"]["note"].str.contains("--captions").all()
    assert (
        main(
            [
                "score",
                "--suite",
                "magicbrush",
                str(mb),
                str(tmp_path / "perfect"),
                "--world",
                W,
                "--captions",
                str(mb / "local_captions.json"),
                "--out",
                str(tmp_path / "m2"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert f"clip_t[{W} CLIP]" in pd.read_csv(tmp_path / "m2" / "field.csv").columns

    # bad layouts and flags: one line each, before any model loads
    import deltabench.domain

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(deltabench.domain, "load_domain", no_model)

    def score(*args) -> str:
        assert main(["score", *map(str, args)]) == 2
        return _one_error(capsys)

    assert "is not a PIE-Bench folder" in score("--suite", "pie-bench", tmp_path / "good", tmp_path / "good")
    assert "does not exist; give a folder of one editor's edits" in score(
        "--suite", "pie-bench", data, tmp_path / "nowhere"
    )
    (tmp_path / "same/annotation_images/0_random_140/000000000000.png").unlink()
    assert "no edit for PIE-Bench key '000000000000'" in score("--suite", "pie-bench", data, tmp_path / "same")
    assert "--captions applies to --suite magicbrush" in score(
        "--suite", "pie-bench", data, tmp_path / "good", "--captions", mb / "local_captions.json"
    )
    assert "drop --prompts" in score("--suite", "pie-bench", data, tmp_path / "good", "--prompts", mb)
    assert "--out" in score("--suite", "pie-bench", data, tmp_path / "good", "--out", tmp_path / "good")
    assert "is not a MagicBrush split folder" in score("--suite", "magicbrush", data, tmp_path / "perfect")
    (mb / "edit_sessions.json").write_text("{not json")
    assert "edit_sessions.json is not valid JSON" in score("--suite", "magicbrush", mb, tmp_path / "perfect")


def _mk(p):
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_suite_to_pie_bench_round_trip(suite, micro_root, tmp_path, monkeypatch, capsys):
    from deltabench.cli import main
    from deltabench.interop import pie_bench_edit_image, read_pie_bench

    d, entries = suite["dir"], suite["entries"]
    assert (
        main(
            ["suite", "to-pie-bench", str(d / "suite"), str(tmp_path / "pie"), "--edits", str(d / "EDITS" / "identity")]
        )
        == 0
    )
    capsys.readouterr()
    back = read_pie_bench(tmp_path / "pie", border=False)
    assert [b.id for b in back] == [e["id"] for e in entries]
    for e, b in zip(entries, back):
        assert (b.source, b.target, b.instruction) == (e["source"], e["target"], e["instruction"])
        assert np.array_equal(b.mask, np.asarray(Image.open(d / "suite" / e["mask"])) > 0), e["id"]
        assert b.image.read_bytes() == (d / "suite" / e["image"]).read_bytes()
        assert (
            pie_bench_edit_image(tmp_path / "pie/output/identity", b).read_bytes()
            == (d / "EDITS" / "identity" / f"{e['id']}.png").read_bytes()
        )
    info = json.loads((tmp_path / "pie" / "deltabench_suite.json").read_text())
    assert info["edits"] == len(entries) and info["method"] == "identity"
    # and scored back in that layout (the evaluator's border rule on): the unchanged edits are unchanged
    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    assert (
        main(
            [
                "score",
                "--suite",
                "pie-bench",
                str(tmp_path / "pie"),
                str(tmp_path / "pie/output/identity"),
                "--world",
                W,
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    per = pd.read_csv(tmp_path / "o" / "field.csv", dtype={"id": str})
    assert per["id"].tolist() == [e["id"] for e in entries] and (per["mse_unedited"] == 0).all()
    # bad inputs: one line
    assert main(["suite", "to-pie-bench", str(d / "suite"), str(tmp_path / "pie")]) == 2
    assert "is not empty" in _one_error(capsys)
    assert main(["suite", "to-pie-bench", str(d / "EDITS"), str(tmp_path / "p2")]) == 2
    assert "not a deltabench suite" in _one_error(capsys)
    (tmp_path / "bad").mkdir()
    shutil.copytree(d / "EDITS" / "identity", tmp_path / "bad" / "ed")
    (tmp_path / "bad" / "ed" / f"{entries[0]['id']}.png").unlink()
    assert (
        main(["suite", "to-pie-bench", str(d / "suite"), str(tmp_path / "p3"), "--edits", str(tmp_path / "bad" / "ed")])
        == 2
    )
    assert "--edits" in (line := _one_error(capsys)) and "lacks 1 of the suite's" in line
    assert not (tmp_path / "p3").exists()
