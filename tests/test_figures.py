"""deltabench.figures (edit grids, trade-off plot), the gap figure's numbers and the world card
grid, on fake run directories and a fake world: no model is needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from deltabench import figures

H = 64  # the synthfaces resolution: drawn 2x
K = 3  # test images kept for the grids
METHODS = ["deltaedit", "styleclip-op", "styleclip-lm", "styleclip-gd"]
REFS = ["inversion", "oracle-edit"]
TARGETS = [
    "face with glasses",
    "face with red hair",
    "smiling face",
    "face with a beard",
    "face with very long curly blond hair and a tiny pointed hat",
    "wide face",
    "face with blue eyes",
]
MISSING = ("styleclip-op", 2)  # a unit the fake run lacks


def _colour(c: int, r: int) -> tuple[int, int, int]:
    """A colour unique to (column c, row r), far from white, grey and the frame colours."""
    return (10 + 5 * c, 20 + 60 * r, 200 - 3 * c)  # c < 45


def _solid(c: int, r: int, h: int = H) -> np.ndarray:
    return np.broadcast_to(np.array(_colour(c, r), np.uint8), (h, h, 3)).copy()


def _run(tmp_path, methods=METHODS, refs=REFS, targets=TARGETS, h=H):
    """A run directory with inputs.pt and unit files of solid colours; returns (run, manifest, colour ids).

    ``ids[(name, j)]`` is the colour column index of that unit (input 0, inversion 1)."""
    run = tmp_path / "run"
    (run / "units").mkdir(parents=True)
    torch.save(
        {
            "inputs": torch.from_numpy(np.stack([_solid(0, r, h) for r in range(K)])),
            "start": torch.from_numpy(np.stack([_solid(1, r, h) for r in range(K)])),
        },
        run / "inputs.pt",
    )
    ids, c = {}, 2
    for j in range(len(targets)):
        for m in [*methods, *refs]:
            ids[(m, j)] = c
            if (m, j) != MISSING:
                ex = torch.from_numpy(np.stack([_solid(c, r, h) for r in range(K)]))
                torch.save({"examples": ex, "suite": {}}, run / "units" / f"{m}__{j}__1.0.pt")
                torch.save({"examples": ex // 2}, run / "units" / f"{m}__{j}__2.0.pt")  # never drawn
            c += 1
    manifest = {
        "config": {
            "methods": list(methods),
            "references": list(refs),
            "seed": 3,
            "images": K,
            "prompts": [{"source": "face", "target": t, "attribute": None, "value": None} for t in targets],
        }
    }
    return run, manifest, ids


def _bbox(a: np.ndarray, colour) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(np.all(a == np.array(colour, np.uint8), axis=-1))
    return None if len(xs) == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _in_band(a: np.ndarray, colour, x0: int, x1: int):
    return _bbox(a[:, x0:x1], colour)


def test_edit_grids_show_every_prompt_with_labelled_columns(tmp_path):
    run, manifest, ids = _run(tmp_path)
    paths = figures.edit_grids(run, manifest)
    cols = json.loads((run / "reports" / "edit_grid_columns.json").read_text())
    assert list(cols) == [p.name for p in paths]
    assert paths[0].name == "edit_grid.png" and [p.name for p in paths[1:]] == [
        f"edit_grid_{i}.png" for i in range(2, len(paths) + 1)
    ]
    shown = [lab for labels in cols.values() for lab in labels]
    drawn = [m for m in METHODS] + ["oracle-edit (ref.)"]  # the inversion reference is the inversion column
    for t in TARGETS:  # every prompt, every method and reference, exactly once
        for m in drawn:
            assert shown.count(f"{m}: {t}") == 1, (m, t)
    assert not any(lab.startswith("inversion (ref.)") or lab.startswith("inversion:") for lab in shown)

    tile, group = 2 * H, 2 + len(drawn)  # per prompt: its input, its inversion, then every method
    for p in paths:
        labels = cols[p.name]
        assert len(labels) % group == 0 and len(labels) >= group
        for g in range(0, len(labels), group):
            assert labels[g : g + 2] == ["input", "inversion (no edit)"]
        a = np.asarray(Image.open(p).convert("RGB"))
        assert a.shape[1] <= figures.GRID_WIDTH  # legible on the report page without shrinking
        x_prev, tops = -1, []
        for c, lab in enumerate(labels):
            g0 = c - c % group
            if lab in ("input", "inversion (no edit)"):
                # Its images lie within its prompt's group, right before the group's methods.
                first_m = labels[g0 + 2]
                right = _bbox(
                    a,
                    _colour(
                        ids[
                            (first_m.split(": ", 1)[0].replace(" (ref.)", ""), TARGETS.index(first_m.split(": ", 1)[1]))
                        ],
                        0,
                    ),
                )
                cid, band = (0 if lab == "input" else 1), (max(x_prev, 0), right[0] if right else a.shape[1])
            else:
                name = (lab.split(": ", 1)[0].replace(" (ref.)", ""), TARGETS.index(lab.split(": ", 1)[1]))
                if name == MISSING:
                    assert all(_bbox(a, _colour(ids[name], r)) is None for r in range(K))  # drawn as "n/a"
                    continue
                cid, band = ids[name], (0, a.shape[1])
            boxes = [_in_band(a, _colour(cid, r), *band) for r in range(K)]
            boxes = [(b[0] + band[0], b[1], b[2] + band[0], b[3]) for b in boxes]
            for r, b in enumerate(boxes):
                assert (b[2] - b[0], b[3] - b[1]) == (tile, tile), (p.name, c, r, b)
                assert b[0] == boxes[0][0]  # rows of one column are aligned
                if r:
                    assert b[1] > boxes[r - 1][3]  # and stacked in row order
            assert boxes[0][0] > x_prev  # columns in label order
            x_prev = boxes[0][2]
            tops.append(boxes[0][1])
            head = a[boxes[0][1] - 60 : boxes[0][1] - 4, boxes[0][0] : boxes[0][2]]
            assert (head.min(-1) < 200).sum() > 30, (p.name, c)  # a header (text) above each column
            if lab in ("input", "inversion (no edit)"):
                frame = figures.INPUT_COLOR if lab == "input" else figures.INVERSION_COLOR
                b = boxes[0]
                assert tuple(a[b[1] + 5, b[0] - 2]) == frame and tuple(a[b[3] + 1, b[0] + 5]) == frame
            if lab == "input":  # the image's number under each input tile
                for b in boxes:
                    assert (a[b[3] + 4 : b[3] + 14, b[0] : b[2]].min(-1) < 128).sum() > 10
        assert len(set(tops)) == 1
    # Every prompt shown, at most MAX_PROMPTS_PER_GRID per grid.
    assert len(paths) >= math.ceil(len(TARGETS) / figures.MAX_PROMPTS_PER_GRID)
    assert all(len(v) <= figures.MAX_PROMPTS_PER_GRID * group for v in cols.values())


def test_edit_grids_pack_prompts_and_draw_every_strength(tmp_path):
    run, manifest, ids = _run(tmp_path, methods=["deltaedit"], refs=[], targets=TARGETS[:5])
    paths = figures.edit_grids(run, manifest)
    cols = json.loads((run / "reports" / "edit_grid_columns.json").read_text())
    per = len(cols["edit_grid.png"]) // 3
    assert [p.name for p in paths] == ["edit_grid.png"] + [f"edit_grid_{i}.png" for i in range(2, len(paths) + 1)]
    assert cols["edit_grid.png"][:3] == ["input", "inversion (no edit)", f"deltaedit: {TARGETS[0]}"]
    assert sum(len(v) // 3 for v in cols.values()) == 5 and per >= 2
    assert not any("(ref.)" in c for v in cols.values() for c in v)
    if len(paths) > 1 and len(cols[paths[-1].name]) < len(cols[paths[0].name]):
        assert Image.open(paths[0]).size[0] > Image.open(paths[-1]).size[0] + 3 * H
    # Grids at the sweep's other strengths, from those units' examples.
    manifest["config"]["sweep"] = [1.0, 2.0]
    paths = figures.edit_grids(run, manifest)
    x2 = [p for p in paths if p.name.startswith("edit_grid_x2")]
    assert x2 and x2[0].name == "edit_grid_x2.png"
    a = np.asarray(Image.open(x2[0]).convert("RGB"))
    half = tuple(v // 2 for v in _colour(ids[("deltaedit", 0)], 0))
    assert _bbox(a, half) is not None and _bbox(a, _colour(ids[("deltaedit", 0)], 0)) is None
    # 32 px images are drawn 4x.
    run32, man32, _ = _run(tmp_path / "small", methods=["deltaedit"], refs=[], targets=TARGETS[:1], h=32)
    a = np.asarray(Image.open(figures.edit_grids(run32, man32)[0]).convert("RGB"))
    b = _bbox(a, _colour(2, 1))
    assert (b[2] - b[0], b[3] - b[1]) == (128, 128)


def test_edit_grids_pick_faces_without_the_target_and_mark_reached(tmp_path):
    n = 6

    def colour(c, r):
        return (10 + 5 * c, 20 + 40 * r, 120 + 3 * c)

    def solid(c, r):
        return np.broadcast_to(np.array(colour(c, r), np.uint8), (H, H, 3)).copy()

    run = tmp_path / "run"
    (run / "units").mkdir(parents=True)
    torch.save(
        {
            "inputs": torch.from_numpy(np.stack([solid(0, r) for r in range(n)])),
            "start": torch.from_numpy(np.stack([solid(1, r) for r in range(n)])),
        },
        run / "inputs.pt",
    )
    torch.save(
        {"examples": torch.from_numpy(np.stack([solid(2, r) for r in range(n)]))},
        run / "units" / "deltaedit__0__1.0.pt",
    )
    # Images 0 and 2 already have the target (accuracy not scored); the edit reaches it on 1 and 4.
    acc = {0: np.nan, 1: 1.0, 2: np.nan, 3: 0.0, 4: 1.0, 5: 0.0}
    results = pd.DataFrame(
        {
            "method": "deltaedit",
            "prompt_index": 0,
            "strength_scale": 1.0,
            "image_index": list(acc),
            "manipulation_accuracy": list(acc.values()),
        }
    )
    manifest = {
        "config": {
            "methods": ["deltaedit"],
            "references": [],
            "seed": 0,
            "images": n,
            "sweep": [1.0],
            "prompts": [{"source": "face", "target": "face with glasses", "attribute": "glasses", "value": "glasses"}],
        }
    }
    path = figures.edit_grids(run, manifest, results=results)[0]
    a = np.asarray(Image.open(path).convert("RGB"))
    assert _bbox(a, colour(0, 0)) is None and _bbox(a, colour(0, 2)) is None  # faces that have it: left out
    rows = [_bbox(a, colour(2, r)) for r in (1, 3, 4, 5)]
    assert all(b is not None for b in rows) and [b[1] for b in rows] == sorted(b[1] for b in rows)
    for (r, ok), b in zip(((1, True), (3, False), (4, True), (5, False)), rows):
        badge = a[b[1] : b[1] + 22, b[2] - 22 : b[2]].reshape(-1, 3)
        want = figures.REACHED_COLOR if ok else figures.MISSED_COLOR
        other = figures.MISSED_COLOR if ok else figures.REACHED_COLOR
        assert (badge == want).all(-1).sum() > 30 and not (badge == other).all(-1).any(), r
    assert figures.pick_images(results, 0, 6, 4) == [(1, True), (3, True), (4, True), (5, True)]
    assert figures.pick_images(results, 0, 6, 5)[-1] == (0, False)  # too few lack it: one that has it, marked


def test_edit_grids_without_inputs_draw_nothing(tmp_path):
    run, manifest, _ = _run(tmp_path)
    (run / "inputs.pt").unlink()
    assert figures.edit_grids(run, manifest) == []


def test_wrap_text_fits_the_width():
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = figures._font(12)
    lines = figures.wrap_text("face with very long curly blond hair and a tiny pointed hat", 100, draw, font, 9)
    assert len(lines) > 2 and all(draw.textlength(ln, font=font) <= 100 for ln in lines)
    assert " ".join(lines) == "face with very long curly blond hair and a tiny pointed hat"
    long = figures.wrap_text("supercalifragilisticexpialidocious", 40, draw, font, 9)
    assert "".join(long) == "supercalifragilisticexpialidocious" and len(long) > 1
    cut = figures.wrap_text("a b c d e f g h i j k l m n o p", 12, draw, font, 2)
    assert len(cut) == 2 and cut[-1].endswith("…")


def _results(with_refs=True, metric="manipulation_accuracy"):
    rng = np.random.default_rng(0)
    rows = []
    for mi, m in enumerate(["deltaedit", "styleclip-gd"]):
        for s in (0.5, 1.0, 2.0):
            for j in range(3):
                for i in range(8):
                    acc = float(rng.random() < 0.3 + 0.2 * s) if (i + j) % 5 else np.nan  # NaN: had the value
                    rows.append(
                        {
                            "method": m,
                            "reference": False,
                            "strength_scale": s,
                            "prompt_index": j,
                            "image_index": i,
                            "ids": 0.8 - 0.2 * s + 0.05 * mi + 0.05 * rng.standard_normal(),
                            metric: acc,
                        }
                    )
    if with_refs:
        for m, ids, acc in (("inversion", 0.9, 0.0), ("oracle-edit", 0.95, 1.0)):
            for j in range(3):
                for i in range(8):
                    rows.append(
                        {
                            "method": m,
                            "reference": True,
                            "strength_scale": 1.0,
                            "prompt_index": j,
                            "image_index": i,
                            "ids": ids + 0.01 * rng.standard_normal(),
                            metric: acc,
                        }
                    )
    return pd.DataFrame(rows)


def test_tradeoff_plot_draws_intervals_and_references(tmp_path):
    from deltabench.stats import mean_interval

    run = tmp_path / "run"
    manifest = {"config": {"methods": ["deltaedit", "styleclip-gd"], "references": REFS, "seed": 3}}
    res = _results()
    out = figures.tradeoff_plot(run, res, manifest)
    assert out == run / "reports" / "tradeoff.png" and out.with_suffix(".pdf").stat().st_size > 1000
    img = Image.open(out)
    assert img.size == (round(8.2 * 130), round(4.8 * 130))
    pts = pd.read_csv(run / "reports" / "tradeoff_points.csv")
    assert len(pts) == 2 * 3 + 2
    refs = pts[pts["reference"]]
    assert sorted(refs["method"]) == ["inversion", "oracle-edit"] and set(refs["strength_scale"]) == {1.0}
    g = res[(res["method"] == "deltaedit") & (res["strength_scale"] == 2.0)]
    want_x = mean_interval(g["ids"].to_numpy(), g["image_index"].to_numpy(), seed=3)
    want_y = mean_interval(g["manipulation_accuracy"].to_numpy(), g["image_index"].to_numpy(), seed=3)
    r = pts[(pts["method"] == "deltaedit") & (pts["strength_scale"] == 2.0)].iloc[0]
    assert r["ids"] == pytest.approx(want_x.value, rel=1e-4) and r["ids_lo"] == pytest.approx(want_x.lo, rel=1e-4)
    assert r["manipulation_accuracy_hi"] == pytest.approx(want_y.hi, rel=1e-4)
    assert r["manipulation_accuracy_n"] == want_y.n < len(g)  # NaN rows left out
    assert (pts["ids_lo"] < pts["ids"]).all() and (pts["manipulation_accuracy_lo"] < pts["manipulation_accuracy_hi"])[
        ~pts["reference"]
    ].all()
    # The references are drawn: the picture without them differs, and it has the black star.
    a = np.asarray(img.convert("RGB")).astype(int)
    b = np.asarray(
        Image.open(
            figures.tradeoff_plot(
                tmp_path / "noref", _results(False), {"config": {**manifest["config"], "references": []}}
            )
        ).convert("RGB")
    ).astype(int)
    assert a.shape == b.shape and (np.abs(a - b).sum(-1) > 0).sum() > 500
    black = a.max(-1) < 40
    assert black.sum() > (b.max(-1) < 40).sum() + 100


def test_tradeoff_plot_falls_back_to_clip_direction(tmp_path):
    manifest = {"config": {"methods": ["deltaedit", "styleclip-gd"], "seed": 0}}
    out = figures.tradeoff_plot(tmp_path, _results(False, "clip_direction"), manifest)
    assert out.is_file()
    assert pd.read_csv(tmp_path / "reports" / "tradeoff_points.csv")["metric"].eq("clip_direction").all()
    assert figures.tradeoff_plot(tmp_path / "x", _results(False).drop(columns="ids"), manifest) is None


def test_tsne_figure_prints_the_gap_numbers(tmp_path):
    from deltabench.gap.figure import _metrics_text, save_tsne_figure

    rng = np.random.default_rng(0)
    pts = lambda: (rng.standard_normal((50, 2)), rng.standard_normal((50, 2)) + 3)  # noqa: E731
    m = {
        "paired_cosine": 0.123,
        "unpaired_cosine": 0.01,
        "recall_i2t@1": 0.25,
        "recall_t2i@1": 0.2,
        "probe_mlp": 1.0,
        "probe_linear": 0.51,
    }
    chance = {"recall_i2t@1": 0.02, "probe_mlp": 0.5}
    text = _metrics_text(m, chance)
    for want in (
        "paired cosine 0.123",
        "image→text 0.250",
        "text→image 0.200",
        "chance 0.02",
        "MLP 1.000",
        "linear 0.510",
        "chance 0.5",
        "separable",
    ):
        assert want in text, want
    assert "not separable" in _metrics_text({**m, "probe_mlp": 0.52}, chance)
    plain = save_tsne_figure(pts(), pts(), tmp_path / "a")
    numbered = save_tsne_figure(pts(), pts(), tmp_path / "b", "t", metrics={"raw": m, "delta": m}, chance=chance)
    assert [p.name for p in numbered] == ["tsne.png", "tsne.pdf"] and all(p.is_file() for p in numbered)
    assert Image.open(numbered[0]).size[1] > Image.open(plain[0]).size[1]  # the caption rows


class _FakeWorld:
    """What comparison_grid needs of a World: renderer, generator and encoder of solid faces."""

    class _G:
        def synthesis(self, w):
            return w * 0 - 0.5

    def __init__(self, h=64):
        self.h, self.generator = h, self._G()

    def sample_params(self, n, seed):
        return torch.arange(n)

    def render(self, p):
        return torch.full((len(p), 3, self.h, self.h), 0.5)

    def generate(self, p):
        return torch.full((len(p), 3, self.h, self.h), 0.0)

    def encoder(self, x):
        return x


def test_card_grid_labels_its_rows_and_upscales(tmp_path):
    from deltabench.world.card import CARD_ROWS, comparison_grid, save_comparison_grid

    assert CARD_ROWS == ("renderer", "generator", "encoder (recon.)")
    g = comparison_grid(_FakeWorld(), n=4)
    tile, pad = 128, 4
    assert g.shape[0] == pad + 3 * (tile + pad)
    margin = g.shape[1] - (pad + 4 * (tile + pad))
    assert margin > 60  # room for "encoder (recon.)"
    face = np.argmax(np.any(g[pad + tile // 2] != 255, axis=-1)[margin:]) + margin
    assert face == margin + pad  # the faces start right after the margin, 2x wide
    for r in range(3):
        y0 = pad + r * (tile + pad)
        assert (g[y0 : y0 + tile, :margin].min(-1) < 128).sum() > 30  # a label per row
        assert (g[y0 : y0 + tile, margin + pad : margin + pad + tile] == g[y0 + 1, margin + pad + 1]).all()
    p = save_comparison_grid(_FakeWorld(32), tmp_path / "card.png", n=2)
    a = np.asarray(Image.open(p).convert("RGB"))
    assert a.shape[0] == pad + 3 * (tile + pad)  # 32 px faces: 4x


def test_tradeoff_plot_grows_when_the_legends_would_run_into_the_caption(tmp_path, monkeypatch):
    """Seven methods (a run and external editors): the strength legend would overlap the caption, so
    the figure grows; with two methods it keeps its size (the committed plots are unchanged)."""
    res = _results()
    extra = []
    for k in range(5):
        g = res[res["method"] == "deltaedit"].copy()
        g["method"], g["ids"] = f"editor-{k}", g["ids"] - 0.02 * (k + 1)
        extra.append(g)
    many = pd.concat([res, *extra], ignore_index=True)
    names = ["deltaedit", "styleclip-gd", *(f"editor-{k}" for k in range(5))]
    manifest = {"config": {"methods": names, "references": REFS, "seed": 3}, "external": {"editor-0": {}}}
    from deltabench import tradeoff

    seen = []
    real = tradeoff._make_room

    def spy(fig, leg1, leg2, caption, **kw):
        real(fig, leg1, leg2, caption, **kw)
        r = fig.canvas.get_renderer()
        seen.append((leg2.get_window_extent(r).y0, caption.get_window_extent(r).y1, leg1.get_texts()))

    monkeypatch.setattr(tradeoff, "_make_room", spy)
    img = Image.open(figures.tradeoff_plot(tmp_path / "many", many, manifest))
    assert img.size[0] == round(8.2 * 130) and img.size[1] > round(4.8 * 130)
    low, high, texts = seen[-1]
    assert low >= high  # the strength legend ends above the caption
    assert "editor-0 (external)" in [t.get_text() for t in texts]
    small = Image.open(
        figures.tradeoff_plot(tmp_path / "two", res, {"config": {**manifest["config"], "methods": names[:2]}})
    )
    assert small.size == (round(8.2 * 130), round(4.8 * 130))
