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
TARGETS = ["face with glasses", "face with red hair", "smiling face", "face with a beard",
           "face with very long curly blond hair and a tiny pointed hat", "wide face", "face with blue eyes"]
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
    torch.save({"inputs": torch.from_numpy(np.stack([_solid(0, r, h) for r in range(K)])),
                "start": torch.from_numpy(np.stack([_solid(1, r, h) for r in range(K)]))}, run / "inputs.pt")
    ids, c = {}, 2
    for j in range(len(targets)):
        for m in [*methods, *refs]:
            ids[(m, j)] = c
            if (m, j) != MISSING:
                ex = torch.from_numpy(np.stack([_solid(c, r, h) for r in range(K)]))
                torch.save({"examples": ex, "suite": {}}, run / "units" / f"{m}__{j}__1.0.pt")
                torch.save({"examples": ex // 2}, run / "units" / f"{m}__{j}__2.0.pt")  # never drawn
            c += 1
    manifest = {"config": {"methods": list(methods), "references": list(refs), "seed": 3, "images": K,
                           "prompts": [{"source": "face", "target": t, "attribute": None, "value": None}
                                       for t in targets]}}
    return run, manifest, ids


def _bbox(a: np.ndarray, colour) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(np.all(a == np.array(colour, np.uint8), axis=-1))
    return None if len(xs) == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def test_edit_grids_show_every_prompt_with_labelled_columns(tmp_path):
    run, manifest, ids = _run(tmp_path)
    paths = figures.edit_grids(run, manifest)
    cols = json.loads((run / "reports" / "edit_grid_columns.json").read_text())
    assert list(cols) == [p.name for p in paths]
    assert paths[0].name == "edit_grid.png" and [p.name for p in paths[1:]] == \
        [f"edit_grid_{i}.png" for i in range(2, len(paths) + 1)]
    shown = [lab for labels in cols.values() for lab in labels]
    drawn = [m for m in METHODS] + ["oracle-edit (ref.)"]  # the inversion reference is the inversion column
    for t in TARGETS:  # every prompt, every method and reference, exactly once
        for m in drawn:
            assert shown.count(f"{m}: {t}") == 1, (m, t)
    assert not any(lab.startswith("inversion (ref.)") or lab.startswith("inversion:") for lab in shown)

    tile, n_per = 2 * H, len(drawn)
    for p in paths:
        labels = cols[p.name]
        assert labels[:2] == ["input", "inversion (no edit)"]
        assert (len(labels) - 2) % n_per == 0 and len(labels) > 2
        a = np.asarray(Image.open(p).convert("RGB"))
        assert a.shape[1] <= figures.GRID_WIDTH  # legible on the report page without shrinking
        # Every column's images sit where its label says, in label order, one per row, 2x upscaled.
        names = [None, None] + [(lab.split(": ", 1)[0].replace(" (ref.)", ""), TARGETS.index(lab.split(": ", 1)[1]))
                                for lab in labels[2:]]
        x_prev, tops = -1, []
        for c, name in enumerate(names):
            cid = c if name is None else ids[name]
            boxes = [_bbox(a, _colour(cid, r)) for r in range(K)]
            if name == MISSING:
                assert boxes == [None] * K  # the missing unit: drawn as "n/a"
                continue
            for r, b in enumerate(boxes):
                assert b is not None and (b[2] - b[0], b[3] - b[1]) == (tile, tile), (p.name, c, r, b)
                assert b[0] == boxes[0][0]  # rows of one column are aligned
                if r:
                    assert b[1] > boxes[r - 1][3]  # and stacked in row order
            assert boxes[0][0] > x_prev  # columns in label order
            x_prev = boxes[0][0]
            tops.append(boxes[0][1])
            # The header above each column holds text (drawn, not white).
            head = a[boxes[0][1] - 60: boxes[0][1] - 4, boxes[0][0]: boxes[0][2]]
            assert (head.min(-1) < 200).sum() > 30, (p.name, c)
        assert len(set(tops)) == 1
        # Row labels: text in the left margin beside every row.
        first = _bbox(a, _colour(0, 0))
        assert first[0] > 30
        for r in range(K):
            b = _bbox(a, _colour(0, r))
            assert (a[b[1]: b[3], : first[0] - 6].min(-1) < 128).sum() > 20
        # Input and inversion columns are framed in their colours.
        for c, frame in ((0, figures.INPUT_COLOR), (1, figures.INVERSION_COLOR)):
            b = _bbox(a, _colour(c, 0))
            assert tuple(a[b[1] + 5, b[0] - 2]) == frame and tuple(a[b[3] + 1, b[0] + 5]) == frame
        # The grid's width is its columns': a grid with fewer prompts is narrower by whole groups.
        expected_h = tops[0] + K * tile
        assert expected_h < a.shape[0] < expected_h + 120  # the notes under the tiles
    widths = {len(cols[p.name]): Image.open(p).size[0] for p in paths}
    if len(widths) > 1:
        (n1, w1), (n2, w2) = sorted(widths.items())
        assert (w2 - w1) % ((n2 - n1) // n_per) == 0 and (w2 - w1) // ((n2 - n1) // n_per) > n_per * tile
    # Every prompt shown, at most MAX_PROMPTS_PER_GRID per grid.
    assert len(paths) >= math.ceil(len(TARGETS) / figures.MAX_PROMPTS_PER_GRID)
    assert all(len(v) - 2 <= figures.MAX_PROMPTS_PER_GRID * n_per for v in cols.values())


def test_edit_grids_pack_prompts_and_clean_up_old_grids(tmp_path):
    run, manifest, ids = _run(tmp_path, methods=["deltaedit"], refs=[], targets=TARGETS[:5])
    (run / "reports").mkdir()
    for old in ("edit_grid_7.png", "edit_grid_2.png"):
        Image.new("RGB", (4, 4)).save(run / "reports" / old)
    paths = figures.edit_grids(run, manifest)
    assert [p.name for p in paths] == ["edit_grid.png", "edit_grid_2.png"]  # 3 + 2 prompts
    assert not (run / "reports" / "edit_grid_7.png").exists()
    cols = json.loads((run / "reports" / "edit_grid_columns.json").read_text())
    assert cols["edit_grid.png"] == ["input", "inversion (no edit)", *(f"deltaedit: {t}" for t in TARGETS[:3])]
    assert cols["edit_grid_2.png"] == ["input", "inversion (no edit)", *(f"deltaedit: {t}" for t in TARGETS[3:5])]
    assert not any("(ref.)" in c for v in cols.values() for c in v)
    w1, w2 = Image.open(paths[0]).size[0], Image.open(paths[1]).size[0]
    assert w1 > w2 + 2 * H  # one prompt more is one column (and a gap) wider
    # 32 px images are drawn 4x.
    run32, man32, _ = _run(tmp_path / "small", methods=["deltaedit"], refs=[], targets=TARGETS[:1], h=32)
    a = np.asarray(Image.open(figures.edit_grids(run32, man32)[0]).convert("RGB"))
    b = _bbox(a, _colour(2, 1))
    assert (b[2] - b[0], b[3] - b[1]) == (128, 128)


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
                    rows.append({"method": m, "reference": False, "strength_scale": s, "prompt_index": j,
                                 "image_index": i, "ids": 0.8 - 0.2 * s + 0.05 * mi + 0.05 * rng.standard_normal(),
                                 metric: acc})
    if with_refs:
        for m, ids, acc in (("inversion", 0.9, 0.0), ("oracle-edit", 0.95, 1.0)):
            for j in range(3):
                for i in range(8):
                    rows.append({"method": m, "reference": True, "strength_scale": 1.0, "prompt_index": j,
                                 "image_index": i, "ids": ids + 0.01 * rng.standard_normal(), metric: acc})
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
        ~pts["reference"]].all()
    # The references are drawn: the picture without them differs, and it has the black star.
    a = np.asarray(img.convert("RGB")).astype(int)
    b = np.asarray(Image.open(figures.tradeoff_plot(tmp_path / "noref", _results(False),
                                                    {"config": {**manifest["config"], "references": []}}))
                   .convert("RGB")).astype(int)
    assert a.shape == b.shape and (np.abs(a - b).sum(-1) > 0).sum() > 500
    black = (a.max(-1) < 40)
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
    m = {"paired_cosine": 0.123, "unpaired_cosine": 0.01, "recall_i2t@1": 0.25, "recall_t2i@1": 0.2,
         "probe_mlp": 1.0, "probe_linear": 0.51}
    chance = {"recall_i2t@1": 0.02, "probe_mlp": 0.5}
    text = _metrics_text(m, chance)
    for want in ("paired cosine 0.123", "image→text 0.250", "text→image 0.200", "chance 0.02", "MLP 1.000",
                 "linear 0.510", "chance 0.5", "separable"):
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
        assert (g[y0: y0 + tile, :margin].min(-1) < 128).sum() > 30  # a label per row
        assert (g[y0: y0 + tile, margin + pad: margin + pad + tile] == g[y0 + 1, margin + pad + 1]).all()
    p = save_comparison_grid(_FakeWorld(32), tmp_path / "card.png", n=2)
    a = np.asarray(Image.open(p).convert("RGB"))
    assert a.shape[0] == pad + 3 * (tile + pad)  # 32 px faces: 4x
