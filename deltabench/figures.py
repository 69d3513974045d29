"""A run's figures, made to be read on their own: the edit grids and the strength trade-off plot.

Both read only the run directory (``inputs.pt``, ``units/``, the results table and the
manifest), as :mod:`deltabench.report` does, so they can be redrawn anywhere without models.

- :func:`edit_grids`: ``reports/edit_grid.png`` (``edit_grid_2.png``, ...): every benchmark
  prompt, each with its input images and their inversions (what every method edits), then every
  method and reference at strength x1; per prompt the rows are faces that do not already have its
  target, and each edit carries a tick or a cross: whether the oracle reads the target on it.
  ``edit_grid_x<k>*.png``: the same at the sweep's other strengths. Column headers, image
  numbers, marked reference columns; ``reports/edit_grid_columns.json`` lists each file's columns.
- :func:`tradeoff_plot` (:mod:`deltabench.tradeoff`, re-exported here): ``reports/tradeoff.{png,pdf}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from deltabench.rundir import load_run_file, load_unit
from deltabench.tradeoff import tradeoff_plot, tradeoff_points  # noqa: F401 - the report's figures in one place

# Tile frame colours: what a column is, at a glance (the legend under the grid names them).
INPUT_COLOR = (31, 90, 180)  # blue: the test image
INVERSION_COLOR = (230, 130, 20)  # orange: its inversion, what every method edits
REFERENCE_COLOR = (150, 150, 150)  # grey: reference rows (not methods)
TEXT_COLOR = (20, 20, 20)
MUTED_TEXT = (110, 110, 110)

GRID_WIDTH = 1100  # px: the report page's width; a grid holds as many prompts as fit in it
MAX_PROMPTS_PER_GRID = 3
TILE = 128  # px: the target tile size (64 px images are drawn 2x, nearest neighbour)
GRID_IMAGES = 4  # rows per prompt


def _font(size: int):
    """PIL's built-in font at ``size`` px (Pillow >= 10.1 with FreeType), else its bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # old Pillow, or no FreeType
        return ImageFont.load_default()


def _text_w(draw, text: str, font) -> float:
    return draw.textlength(text, font=font)


def _line_h(font) -> int:
    box = font.getbbox("Hgy")
    return int(box[3] - min(box[1], 0)) + 3


def wrap_text(text: str, width: float, draw, font, max_lines: int = 4) -> list[str]:
    """``text`` in lines no wider than ``width`` px (words broken only when one alone is wider);
    at most ``max_lines`` lines, the last one ending in an ellipsis when cut."""
    lines: list[str] = []
    pieces = []
    for word in str(text).split():
        while len(word) > 1 and _text_w(draw, word, font) > width:  # a word wider than the column
            cut = 1
            while cut < len(word) - 1 and _text_w(draw, word[: cut + 1], font) <= width:
                cut += 1
            pieces.append(word[:cut])
            word = word[cut:]
        pieces.append(word)
    for word in pieces:
        if lines and _text_w(draw, lines[-1] + " " + word, font) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and _text_w(draw, last + "…", font) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "…"
    return lines


def _fit_tile(img: np.ndarray, tile: int) -> np.ndarray:
    """``uint8 [H, W, 3]`` to a ``tile`` px square: nearest-neighbour integer enlargement of a
    small image, antialiased reduction of a large one."""
    from PIL import Image

    h = img.shape[0]
    if h == tile:
        return img
    if h < tile and tile % h == 0:
        f = tile // h
        return np.repeat(np.repeat(img, f, axis=0), f, axis=1)
    resample = Image.NEAREST if h < tile else Image.LANCZOS
    return np.asarray(Image.fromarray(img).resize((tile, tile), resample))


def _tile_size(h: int, columns: int, width: int, margin: int) -> int:
    """The drawn size of an ``h`` px image: small images an integer multiple up to :data:`TILE`
    (32 px: 4x, 64 px: 2x); larger ones reduced to 2 * TILE where ``columns`` of them still fit in
    ``width`` px beside ``margin``, else to TILE."""
    if h <= TILE:
        return h * max(1, TILE // h)
    big = min(h, 2 * TILE)
    return big if margin + columns * (big + 8) <= width else TILE


def _units(run: Path, name: str, j: int, scale: float = 1.0):
    f = run / "units" / f"{name}__{j}__{float(scale)!r}.pt"
    if not f.is_file():
        return None
    # A damaged file is an error naming the command that recomputes it; an unsafe one is refused.
    ex = load_unit(f, run).get("examples")
    return None if ex is None else np.asarray(ex.numpy() if hasattr(ex, "numpy") else ex, dtype=np.uint8)


# Tile badges: whether the oracle reads the target on the edit (Okabe-Ito bluish green / vermillion,
# told apart by shape too: a tick and a cross).
REACHED_COLOR = (0, 158, 115)
MISSED_COLOR = (213, 94, 0)


def pick_images(results: pd.DataFrame | None, j: int, pool: int, k: int) -> list[tuple[int, bool]]:
    """Per prompt ``j``: ``k`` of the first ``pool`` test images, those that do not already have the
    target first (manipulation accuracy is scored on them, left empty on the others); each as
    ``(image index, lacks the target)``. Without an attribute oracle: the first ``k``."""
    if results is None or "manipulation_accuracy" not in results or not len(results):
        return [(i, True) for i in range(min(k, pool))]
    rows = results[(results["prompt_index"] == j) & (results["image_index"] < pool)]
    scored = rows.groupby("image_index")["manipulation_accuracy"].apply(lambda v: v.notna().any())
    lack = [int(i) for i in sorted(scored.index) if scored[i]]
    have = [i for i in range(pool) if i not in lack]
    return [(i, True) for i in lack[:k]] + [(i, False) for i in have[: max(0, k - len(lack))]]


def _reached(results: pd.DataFrame | None) -> dict:
    """``(method, prompt, strength, image) -> 1/0`` from the oracle's reading of each edit."""
    if results is None or "manipulation_accuracy" not in results:
        return {}
    r = results[results["manipulation_accuracy"].notna()]
    return {
        (m, int(j), float(s), int(i)): float(v)
        for m, j, s, i, v in zip(
            r["method"], r["prompt_index"], r["strength_scale"], r["image_index"], r["manipulation_accuracy"]
        )
    }


def _badge(draw, x: float, y: float, ok: bool, r: int = 9) -> None:
    """A tick (reached) or a cross (not) in a filled circle centred at ``(x, y)``."""
    draw.ellipse(
        [x - r, y - r, x + r, y + r], fill=REACHED_COLOR if ok else MISSED_COLOR, outline=(255, 255, 255), width=2
    )
    if ok:
        draw.line(
            [(x - r * 0.5, y), (x - r * 0.1, y + r * 0.45), (x + r * 0.55, y - r * 0.45)], fill=(255, 255, 255), width=3
        )
    else:
        d = r * 0.45
        draw.line([(x - d, y - d), (x + d, y + d)], fill=(255, 255, 255), width=3)
        draw.line([(x - d, y + d), (x + d, y - d)], fill=(255, 255, 255), width=3)


def grid_name(scale: float, g: int) -> str:
    """``edit_grid.png`` (``edit_grid_2.png``, ...) at x1; ``edit_grid_x0.5.png`` ... at other strengths."""
    stem = "edit_grid" if scale == 1.0 else f"edit_grid_x{scale:g}"
    return f"{stem}.png" if g == 0 else f"{stem}_{g + 1}.png"


def edit_grids(
    run: Path,
    manifest: dict,
    width: int = GRID_WIDTH,
    max_prompts: int = MAX_PROMPTS_PER_GRID,
    out_dir: Path | None = None,
    results: pd.DataFrame | None = None,
) -> list[Path]:
    """Draw the run's edit grids; returns the PNG paths (``[]`` when the run has no ``inputs.pt``).

    Per prompt (its target text spans its columns): the input, its inversion (no edit), then
    every method and every reference but ``inversion`` (the inversion column shows it). Its rows
    are test images that do not already have the prompt's target (the world's ground truth,
    through the rows' manipulation accuracy; others only when too few lack it, marked "has it"),
    so every tile shows an edit that has something to do; each edit tile carries a tick (the
    oracle reads the target on it) or a cross (it does not). As many prompts go into one grid as
    fit in ``width`` px (at least one, at most ``max_prompts``). Grids at x1 first, then one set
    per other strength of the sweep (where the run kept examples). A missing unit is a grey "n/a".
    """
    from PIL import Image, ImageDraw

    run = Path(run)
    f = run / "inputs.pt"
    if not f.is_file():
        return []
    base = load_run_file(f, run, "a deltabench run's input images (inputs.pt)")
    inputs, start = (np.asarray(base[k].numpy(), dtype=np.uint8) for k in ("inputs", "start"))
    if results is None and (run / "results.csv").is_file():
        results = pd.read_csv(run / "results.csv")
    cfg = manifest["config"]
    prompts = list(cfg.get("prompts", []))
    refs = [r for r in cfg.get("references", []) or [] if r != "inversion"]
    names = [m for m in cfg.get("methods", []) if m not in refs] + refs
    external = set(manifest.get("external") or {})  # editors scored from files: edits at x1 only
    pool = min(len(inputs), len(start))
    k = min(GRID_IMAGES, pool)
    sweep = [float(x) for x in cfg.get("sweep", [1.0])]
    scales = [1.0] + [x for x in sweep if x != 1.0]
    reached = _reached(results)
    picks = {j: pick_images(results, j, pool, k) for j in range(len(prompts))}

    # Geometry (px).
    gap, group_gap, frame = 6, 18, 3
    f_title, f_head, f_method, f_row, f_note = _font(15), _font(14), _font(12), _font(11), _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 10
    per_group = 2 + len(names)
    tile = _tile_size(inputs.shape[1], per_group, width, left + group_gap)
    cell = tile + gap
    group_w = per_group * cell
    per_grid = max(1, min(max_prompts, (width - left - gap) // (group_w + group_gap)))
    chunks = [list(range(i, min(i + per_grid, len(prompts)))) for i in range(0, len(prompts), per_grid)] or [[]]

    out_dir = Path(out_dir) if out_dir is not None else run / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    cache: dict[tuple[str, int, float], np.ndarray | None] = {}
    paths, columns_json = [], {}
    for scale in scales:
        if scale != 1.0 and not any(
            _units(run, m, j, scale) is not None for m in names[:1] for j in range(len(prompts))
        ):
            continue  # a run from before examples were kept at every strength
        for g, chunk in enumerate(chunks):
            # Columns: (label for the JSON, header, kind, images or None, prompt, method or None).
            cols = []
            for j in chunk:
                cols += [
                    ("input", "input", "input", inputs, j, None),
                    ("inversion (no edit)", "inversion (no edit)", "inversion", start, j, None),
                ]
                for m in names:
                    if scale != 1.0 and m in external:
                        continue
                    ref = m in refs
                    key = (m, j, scale if not ref else 1.0)
                    if key not in cache:
                        cache[key] = _units(run, *key)
                    head = f"{m} (ref.)" if ref else f"{m} (ext.)" if m in external else m
                    cols.append(
                        (f"{head}: {prompts[j]['target']}", head, "reference" if ref else "method", cache[key], j, m)
                    )
            xs, x = [], left
            for c, col in enumerate(cols):
                if c > 0 and col[4] != cols[c - 1][4]:
                    x += group_gap
                xs.append(x)
                x += cell
            total_w = x + gap
            title = (
                f"Edits at strength x{scale:g}: prompt{'s' if len(chunk) > 1 else ''} "  # ASCII: PIL's font
                + (f"{chunk[0] + 1}-{chunk[-1] + 1}" if len(chunk) > 1 else f"{chunk[0] + 1}" if chunk else "-")
                + f" of {len(prompts)}"
                + (f" (grid {g + 1} of {len(chunks)})" if len(chunks) > 1 else "")
            )
            title_lines = wrap_text(title, total_w - 2 * gap, probe, f_title, 2)
            prompt_lines = {
                j: wrap_text(
                    f"“{prompts[j]['target']}”"
                    + (f"  (from “{prompts[j]['source']}”)" if prompts[j].get("source") else ""),
                    (2 + len([m for m in names if scale == 1.0 or m not in external])) * cell - gap,
                    probe,
                    f_head,
                    3,
                )
                for j in chunk
            }
            head_lines = [wrap_text(col[1], tile, probe, f_method, 3) for col in cols]
            lh_t, lh_h, lh_m, lh_n, lh_r = (
                _line_h(f_title),
                _line_h(f_head),
                _line_h(f_method),
                _line_h(f_note),
                _line_h(f_row),
            )
            y_title = gap
            y_prompt = y_title + lh_t * len(title_lines) + 8
            n_prompt = max((len(v) for v in prompt_lines.values()), default=1)
            y_method = y_prompt + lh_h * n_prompt + 8
            n_method = max(len(h) for h in head_lines)
            y_tiles = y_method + lh_m * n_method + 6
            row_h = cell + lh_r  # each row: the tiles, then the input's image number under them
            notes = [
                "Rows: per prompt, test images that do not already have its target (the world's ground "
                "truth); 'has it' marks one that does (too few lacked it). Badges: tick = the oracle reads "
                "the target on the edit, cross = it does not.",
                "Frames: blue = the input test image; orange = its inversion by the encoder (what every method "
                "edits)"
                + (f"; grey = reference, not a method ({', '.join(refs)}; always at x1)" if refs else "")
                + ".",
            ]
            if not reached:
                notes[0] = "Rows: the first test images (the domain has no attribute oracle, so no badges)."
            if external:
                notes.append(
                    "ext.: an editor scored from files (deltabench score SUITE EDITS); its edits are at x1 only."
                )
            if any(col[3] is None for col in cols):
                notes.append("n/a: the run has no unit file (or no examples) for that method and prompt.")
            note_lines = [ln for n in notes for ln in wrap_text(n, total_w - 2 * gap, probe, f_note, 4)]
            y_notes = y_tiles + k * row_h + 6
            total_h = y_notes + lh_n * len(note_lines) + gap

            canvas = Image.new("RGB", (total_w, total_h), (255, 255, 255))
            draw = ImageDraw.Draw(canvas)
            for i, ln in enumerate(title_lines):
                draw.text((gap, y_title + i * lh_t), ln, fill=TEXT_COLOR, font=f_title)
            for j in chunk:
                cs = [c for c, col in enumerate(cols) if col[4] == j]
                x0, x1 = xs[cs[0]], xs[cs[-1]] + tile
                for i, ln in enumerate(prompt_lines[j]):
                    tw = _text_w(draw, ln, f_head)
                    draw.text(((x0 + x1 - tw) / 2, y_prompt + i * lh_h), ln, fill=TEXT_COLOR, font=f_head)
                draw.line([(x0, y_method - 5), (x1, y_method - 5)], fill=(60, 60, 60), width=2)
            colors = {"input": INPUT_COLOR, "inversion": INVERSION_COLOR, "reference": REFERENCE_COLOR}
            for c, col in enumerate(cols):
                _, _, kind, imgs, j, m = col
                x0 = xs[c]
                fill = colors.get(kind, TEXT_COLOR) if kind != "reference" else MUTED_TEXT
                for i, ln in enumerate(head_lines[c]):
                    tw = _text_w(draw, ln, f_method)
                    draw.text((x0 + (tile - tw) / 2, y_method + i * lh_m), ln, fill=fill, font=f_method)
                for r, (img, lacks) in enumerate(picks[j]):
                    y0 = y_tiles + r * row_h
                    if imgs is not None and img < len(imgs):
                        canvas.paste(Image.fromarray(_fit_tile(imgs[img], tile)), (x0, y0))
                    else:
                        draw.rectangle([x0, y0, x0 + tile - 1, y0 + tile - 1], fill=(225, 225, 225))
                        tw = _text_w(draw, "n/a", f_method)
                        draw.text((x0 + (tile - tw) / 2, y0 + tile / 2 - 7), "n/a", fill=MUTED_TEXT, font=f_method)
                    if kind in colors:
                        draw.rectangle(
                            [x0 - frame, y0 - frame, x0 + tile - 1 + frame, y0 + tile - 1 + frame],
                            outline=colors[kind],
                            width=frame,
                        )
                    if kind == "input":
                        label = f"image {img}" + ("" if lacks else " (has it)")
                        draw.text((x0, y0 + tile + 1), label, fill=TEXT_COLOR if lacks else MUTED_TEXT, font=f_row)
                    if m is not None and imgs is not None:
                        ok = reached.get((m, j, scale if kind == "method" else 1.0, img))
                        if ok is not None:
                            _badge(draw, x0 + tile - 11, y0 + 11, ok >= 0.5)
            y_sep0, y_sep1 = y_prompt, y_tiles + k * row_h - gap
            for c in range(1, len(cols)):
                if cols[c][4] != cols[c - 1][4]:
                    xm = xs[c] - (group_gap + gap) // 2
                    draw.line([(xm, y_sep0), (xm, y_sep1)], fill=(150, 150, 150), width=2)
            for i, ln in enumerate(note_lines):
                draw.text((gap, y_notes + i * lh_n), ln, fill=MUTED_TEXT, font=f_note)
            out = out_dir / grid_name(scale, g)
            canvas.save(out)
            paths.append(out)
            columns_json[out.name] = [col[0] for col in cols]
    (out_dir / "edit_grid_columns.json").write_text(json.dumps(columns_json, indent=1, ensure_ascii=False) + "\n")
    return paths
