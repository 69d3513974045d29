"""A run's figures, made to be read on their own: the edit grids and the strength trade-off plot.

Both read only the run directory (``inputs.pt``, ``units/``, the results table and the
manifest), as :mod:`deltabench.report` does, so they can be redrawn anywhere without models.

- :func:`edit_grids`: ``reports/edit_grid.png`` (``edit_grid_2.png``, ...): every benchmark
  prompt, each with every method and reference at strength x1, beside the input image and its
  inversion (what every method edits); column headers, row labels, marked reference columns.
  ``reports/edit_grid_columns.json`` lists each grid file's column labels.
- :func:`tradeoff_plot`: ``reports/tradeoff.{png,pdf}``: IDS against manipulation accuracy
  (CLIP direction where the domain has no attribute oracle), one line per method over the
  strength sweep, 95% cluster-bootstrap intervals on both axes, references as single markers.
  ``reports/tradeoff_points.csv`` holds the plotted numbers.
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from deltabench.checkpoints import safe_torch_load

# Tile frame colours: what a column is, at a glance (the legend under the grid names them).
INPUT_COLOR = (31, 90, 180)  # blue: the test image
INVERSION_COLOR = (230, 130, 20)  # orange: its inversion, what every method edits
REFERENCE_COLOR = (150, 150, 150)  # grey: reference rows (not methods)
TEXT_COLOR = (20, 20, 20)
MUTED_TEXT = (110, 110, 110)

GRID_WIDTH = 1100  # px: the report page's width; a grid holds as many prompts as fit in it
MAX_PROMPTS_PER_GRID = 3
TILE = 128  # px: the target tile size (64 px images are drawn 2x, nearest neighbour)


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
            while cut < len(word) - 1 and _text_w(draw, word[:cut + 1], font) <= width:
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


def _units(run: Path, name: str, j: int):
    f = run / "units" / f"{name}__{j}__{1.0!r}.pt"
    if not f.is_file():
        return None
    # A damaged or unsafe file raises (CheckpointError), as every reader of a run does.
    ex = safe_torch_load(f, "a deltabench run unit (metric states)").get("examples")
    return None if ex is None else np.asarray(ex.numpy() if hasattr(ex, "numpy") else ex, dtype=np.uint8)


def edit_grids(run: Path, manifest: dict, width: int = GRID_WIDTH, max_prompts: int = MAX_PROMPTS_PER_GRID,
               ) -> list[Path]:
    """Draw the run's edit grids; returns the PNG paths (``[]`` when the run has no ``inputs.pt``).

    Rows: the first test images ("image 0", ...). Columns: the input, its inversion (no edit),
    then per prompt (its target text spans the prompt's columns) every method and every reference
    but ``inversion`` (the inversion column shows it), at strength x1. As many prompts go into one
    grid as fit in ``width`` px (at least one, at most ``max_prompts``), so every prompt is shown,
    over several files when needed. A missing unit is a grey "n/a" tile.
    """
    from PIL import Image, ImageDraw

    run = Path(run)
    f = run / "inputs.pt"
    if not f.is_file():
        return []
    base = safe_torch_load(f, "a deltabench run's input images (inputs.pt)")
    inputs, start = (np.asarray(base[k].numpy(), dtype=np.uint8) for k in ("inputs", "start"))
    cfg = manifest["config"]
    prompts = list(cfg.get("prompts", []))
    refs = [r for r in cfg.get("references", []) or [] if r != "inversion"]
    names = [m for m in cfg.get("methods", []) if m not in refs] + refs
    k = min(len(inputs), len(start))

    # Geometry (px).
    gap, group_gap, frame = 6, 18, 3
    f_title, f_head, f_method, f_row, f_note = _font(15), _font(14), _font(12), _font(13), _font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = 14 + int(max(_text_w(probe, f"image {i}", f_row) for i in range(max(k, 1))))
    tile = _tile_size(inputs.shape[1], 2 + len(names), width, left + group_gap)
    cell = tile + gap
    fixed_w = 2 * cell
    group_w = max(len(names), 1) * cell
    per_grid = max(1, min(max_prompts, (width - left - fixed_w - gap) // (group_w + group_gap)))
    chunks = [list(range(i, min(i + per_grid, len(prompts)))) for i in range(0, len(prompts), per_grid)] or [[]]

    out_dir = run / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("edit_grid*.png"):  # a previous report's grids, maybe more of them
        if re.fullmatch(r"edit_grid(_\d+)?\.png", old.name):
            old.unlink()
    cache: dict[tuple[str, int], np.ndarray | None] = {}
    paths, columns_json = [], {}
    for g, chunk in enumerate(chunks):
        # Columns: (label for the JSON, header text, kind, images or None, prompt group or None).
        cols = [("input", "input", "input", inputs, None),
                ("inversion (no edit)", "inversion (no edit)", "inversion", start, None)]
        for j in chunk:
            for m in names:
                key = (m, j)
                if key not in cache:
                    cache[key] = _units(run, m, j)
                ref = m in refs
                head = f"{m} (ref.)" if ref else m
                cols.append((f"{head}: {prompts[j]['target']}", head, "reference" if ref else "method", cache[key], j))
        # x of each column's tile.
        xs, x = [], left
        for c, col in enumerate(cols):
            if c == 2 or (c > 2 and col[4] != cols[c - 1][4]):
                x += group_gap
            xs.append(x)
            x += cell
        total_w = x + gap

        # Header: title, prompt line (spanning its columns), method line (per column).
        title = (f"Edits at strength x1: prompt{'s' if len(chunk) > 1 else ''} "  # ASCII: PIL's font has no × or –
                 + (f"{chunk[0] + 1}-{chunk[-1] + 1}" if len(chunk) > 1 else f"{chunk[0] + 1}" if chunk else "-")
                 + f" of {len(prompts)}" + (f" (grid {g + 1} of {len(chunks)})" if len(chunks) > 1 else ""))
        title_lines = wrap_text(title, total_w - 2 * gap, probe, f_title, 2)
        prompt_lines = {j: wrap_text(f"“{prompts[j]['target']}”" + (f"  (from “{prompts[j]['source']}”)"
                                                                     if prompts[j].get("source") else ""),
                                     len(names) * cell - gap, probe, f_head, 3) for j in chunk}
        head_lines = [wrap_text(col[1], tile, probe, f_method, 3) for col in cols]
        lh_t, lh_h, lh_m, lh_n = _line_h(f_title), _line_h(f_head), _line_h(f_method), _line_h(f_note)
        y_title = gap
        y_prompt = y_title + lh_t * len(title_lines) + 8
        n_prompt = max((len(v) for v in prompt_lines.values()), default=1)
        y_method = y_prompt + lh_h * n_prompt + 8
        n_method = max(len(h) for h in head_lines)
        y_tiles = y_method + lh_m * n_method + 6
        notes = ["Frames: blue = the input test image; orange = its inversion by the encoder (what every method "
                 "edits)" + (f"; grey = reference, not a method ({', '.join(refs)})" if refs else "") + "."]
        if any(col[3] is None or len(col[3]) < k for col in cols):
            notes.append("n/a: the run has no unit file (or no examples) for that method and prompt.")
        note_lines = [ln for n in notes for ln in wrap_text(n, total_w - 2 * gap, probe, f_note, 3)]
        y_notes = y_tiles + k * cell + 6
        total_h = y_notes + lh_n * len(note_lines) + gap

        canvas = Image.new("RGB", (total_w, total_h), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for i, ln in enumerate(title_lines):
            draw.text((gap, y_title + i * lh_t), ln, fill=TEXT_COLOR, font=f_title)
        # Prompt headers with a bracket line over their columns.
        for j in chunk:
            cs = [c for c, col in enumerate(cols) if col[4] == j]
            x0, x1 = xs[cs[0]], xs[cs[-1]] + tile
            for i, ln in enumerate(prompt_lines[j]):
                tw = _text_w(draw, ln, f_head)
                draw.text(((x0 + x1 - tw) / 2, y_prompt + i * lh_h), ln, fill=TEXT_COLOR, font=f_head)
            yb = y_method - 5
            draw.line([(x0, yb), (x1, yb)], fill=(60, 60, 60), width=2)
        # Column headers, frames and tiles.
        colors = {"input": INPUT_COLOR, "inversion": INVERSION_COLOR, "reference": REFERENCE_COLOR}
        for c, col in enumerate(cols):
            kind, imgs = col[2], col[3]
            x0 = xs[c]
            fill = colors.get(kind, TEXT_COLOR) if kind != "reference" else MUTED_TEXT
            for i, ln in enumerate(head_lines[c]):
                tw = _text_w(draw, ln, f_method)
                draw.text((x0 + (tile - tw) / 2, y_method + i * lh_m), ln, fill=fill, font=f_method)
            for r in range(k):
                y0 = y_tiles + r * cell
                if imgs is not None and r < len(imgs):
                    canvas.paste(Image.fromarray(_fit_tile(imgs[r], tile)), (x0, y0))
                else:
                    draw.rectangle([x0, y0, x0 + tile - 1, y0 + tile - 1], fill=(225, 225, 225))
                    tw = _text_w(draw, "n/a", f_method)
                    draw.text((x0 + (tile - tw) / 2, y0 + tile / 2 - 7), "n/a", fill=MUTED_TEXT, font=f_method)
                if kind in colors:
                    draw.rectangle([x0 - frame, y0 - frame, x0 + tile - 1 + frame, y0 + tile - 1 + frame],
                                   outline=colors[kind], width=frame)
        # Separators: a dark one after the fixed columns, light ones between prompts.
        y_sep0, y_sep1 = y_method - 2, y_tiles + k * cell - gap + 2
        for c in range(2, len(cols)):
            if c == 2 or cols[c][4] != cols[c - 1][4]:
                xm = xs[c] - (group_gap + gap) // 2
                draw.line([(xm, y_sep0 if c > 2 else y_prompt), (xm, y_sep1)],
                          fill=(40, 40, 40) if c == 2 else (190, 190, 190), width=2 if c == 2 else 1)
        for r in range(k):
            y0 = y_tiles + r * cell
            draw.text((6, y0 + tile / 2 - 8), f"image {r}", fill=TEXT_COLOR, font=f_row)
        for i, ln in enumerate(note_lines):
            draw.text((gap, y_notes + i * lh_n), ln, fill=MUTED_TEXT, font=f_note)

        out = out_dir / ("edit_grid.png" if g == 0 else f"edit_grid_{g + 1}.png")
        canvas.save(out)
        paths.append(out)
        columns_json[out.name] = [col[0] for col in cols]
    (out_dir / "edit_grid_columns.json").write_text(json.dumps(columns_json, indent=1, ensure_ascii=False) + "\n")
    return paths


# Reference markers: distinct from every method's coloured circles.
REFERENCE_MARKERS = {"oracle-edit": ("*", "black", 15), "inversion": ("s", "#808080", 9)}
_OTHER_REFERENCE_MARKERS = (("D", "#404040", 8), ("P", "#606060", 10), ("X", "#202020", 10))


def tradeoff_points(results: pd.DataFrame, manifest: dict) -> pd.DataFrame | None:
    """The plotted numbers: per (method, strength_scale) the means of IDS and of the edit metric
    with their 95% cluster-bootstrap intervals over test images (``deltabench.stats``)."""
    from deltabench.stats import mean_interval

    y = "manipulation_accuracy" if "manipulation_accuracy" in results else "clip_direction"
    if y not in results or "ids" not in results or not len(results):
        return None
    cfg = manifest.get("config", {})
    seed = int(cfg.get("seed", 0))
    refs = set(cfg.get("references", []) or [])
    if "reference" in results:
        refs |= set(results.loc[results["reference"].astype(bool), "method"])
    order = {m: i for i, m in enumerate([*cfg.get("methods", []), *(cfg.get("references") or [])])}
    rows = []
    for (m, s), g in results.groupby(["method", "strength_scale"], sort=False):
        clusters = g["image_index"].to_numpy() if "image_index" in g else np.arange(len(g))
        ix = mean_interval(g["ids"].to_numpy(float), clusters, seed=seed)
        iy = mean_interval(g[y].to_numpy(float), clusters, seed=seed)
        rows.append({"method": m, "reference": m in refs, "strength_scale": float(s), "metric": y,
                     "ids": ix.value, "ids_lo": ix.lo, "ids_hi": ix.hi, "ids_n": ix.n,
                     y: iy.value, f"{y}_lo": iy.lo, f"{y}_hi": iy.hi, f"{y}_n": iy.n})
    pts = pd.DataFrame(rows)
    pts["_order"] = pts["method"].map(lambda m: order.get(m, len(order)))
    return pts.sort_values(["reference", "_order", "strength_scale"], kind="stable").drop(columns="_order") \
        .reset_index(drop=True)


def tradeoff_plot(run: Path, results: pd.DataFrame, manifest: dict) -> Path | None:
    """Draw ``reports/tradeoff.png`` (dpi 130) and ``tradeoff.pdf``; ``None`` when ``results``
    has no IDS or no edit metric. Strength is the marker size (legend "strength"), never a
    text label, so nothing can overlap; references are single black/grey markers."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state
    from matplotlib.lines import Line2D

    run = Path(run)
    pts = tradeoff_points(results, manifest)
    if pts is None:
        return None
    y = pts["metric"].iloc[0]
    scales = sorted(pts.loc[~pts["reference"], "strength_scale"].unique()) or [1.0]
    size = {s: 5 + 9 * i / max(len(scales) - 1, 1) for i, s in enumerate(scales)}  # markersize by strength
    fig = Figure(figsize=(8.2, 4.8))
    ax = fig.add_axes([0.09, 0.12, 0.6, 0.78])
    colors = [f"C{i}" for i in range(10)]
    method_handles, c, other_ref = [], 0, 0

    def err(g, key):
        v = g[key].to_numpy(float)
        return np.abs(np.vstack([v - g[f"{key}_lo"].to_numpy(float), g[f"{key}_hi"].to_numpy(float) - v]))

    for m, g in pts.groupby("method", sort=False):
        g = g[np.isfinite(g["ids"]) & np.isfinite(g[y])].sort_values("strength_scale")
        if not len(g):
            continue
        xe, ye = np.nan_to_num(err(g, "ids")), np.nan_to_num(err(g, y))
        if bool(g["reference"].iloc[0]):
            if m in REFERENCE_MARKERS:
                mk, col, ms = REFERENCE_MARKERS[m]
            else:
                mk, col, ms = _OTHER_REFERENCE_MARKERS[other_ref % len(_OTHER_REFERENCE_MARKERS)]
                other_ref += 1
            ax.errorbar(g["ids"], g[y], xerr=xe, yerr=ye, fmt="none", ecolor=col, elinewidth=1, capsize=2,
                        alpha=0.7, zorder=4)
            ax.plot(g["ids"], g[y], linestyle="none", marker=mk, color=col, markersize=ms,
                    markeredgecolor="white", markeredgewidth=0.6, zorder=5)
            method_handles.append(Line2D([], [], linestyle="none", marker=mk, color=col, markersize=ms * 0.8,
                                         label=f"{m} (reference)"))
            continue
        col = colors[c % len(colors)]
        c += 1
        ax.errorbar(g["ids"], g[y], xerr=xe, yerr=ye, fmt="none", ecolor=col, elinewidth=0.9, capsize=2,
                    alpha=0.55, zorder=2)
        ax.plot(g["ids"], g[y], "-", color=col, linewidth=1.6, alpha=0.9, zorder=3)
        for _, r in g.iterrows():
            ax.plot([r["ids"]], [r[y]], "o", color=col, markersize=size.get(r["strength_scale"], 7),
                    markeredgecolor="white", markeredgewidth=0.8, zorder=3)
        method_handles.append(Line2D([], [], color=col, marker="o", markersize=6, label=m))
    label = {"manipulation_accuracy": "manipulation accuracy →", "clip_direction": "CLIP direction →"}[y]
    ax.set_xlabel("IDS (identity similarity to the input) →")
    ax.set_ylabel(label)
    ax.set_title("Strength sweep: edit vs identity", fontsize=11)
    ax.grid(alpha=0.3)
    ax.margins(0.07)  # the big markers at the extremes (oracle-edit at accuracy 1) stay inside
    leg1 = fig.legend(handles=method_handles, title="method", loc="upper left", bbox_to_anchor=(0.71, 0.9),
                      fontsize=8, title_fontsize=9, frameon=False)
    strength_handles = [Line2D([], [], linestyle="none", marker="o", color="#777777", markersize=size[s],
                               label=f"×{s:g}") for s in scales]
    fig.legend(handles=strength_handles, title="strength (marker size)", loc="upper left",
               bbox_to_anchor=(0.71, 0.9 - 0.055 * (len(method_handles) + 2)), fontsize=8, title_fontsize=9,
               frameon=False, labelspacing=1.0)
    fig.add_artist(leg1)
    n_img = int(results["image_index"].nunique()) if "image_index" in results else len(results)
    fig.text(0.71, 0.04, textwrap.fill(
        f"Bars: 95% intervals, a bootstrap over the {n_img} test images (each resampled with all of its "
        f"prompts), seed {manifest.get('config', {}).get('seed', 0)}.", 40), fontsize=7, color="#555555")
    out_dir = run / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "tradeoff.png"
    fig.savefig(out, dpi=130)
    fig.savefig(out.with_suffix(".pdf"))
    pts.to_csv(out_dir / "tradeoff_points.csv", index=False, float_format="%.5g")
    return out
