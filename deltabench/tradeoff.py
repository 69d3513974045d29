"""The strength trade-off plot: ``reports/tradeoff.{png,pdf}``, IDS against manipulation accuracy
(CLIP direction where the domain has no attribute oracle), one line per method over the strength
sweep, 95% cluster-bootstrap intervals on both axes, references as single markers, external
editors (scored from files) named so in the legend; Okabe-Ito colours and one marker shape per
method, see-through fills under every outline (a marker under another still shows), and a caption
naming the world, the prompts and n. ``reports/tradeoff_points.csv`` holds the plotted numbers.
Reads only the results table and the manifest (no models); :mod:`deltabench.figures` re-exports it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

# Methods: the Okabe-Ito colour-blind-safe palette (no red beside green), each with its own marker.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
METHOD_MARKERS = ("o", "s", "D", "^", "v", "P", "h")


def _rgb(hex_color: str) -> tuple[float, float, float]:
    return tuple(int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5))


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
        rows.append(
            {
                "method": m,
                "reference": m in refs,
                "strength_scale": float(s),
                "metric": y,
                "ids": ix.value,
                "ids_lo": ix.lo,
                "ids_hi": ix.hi,
                "ids_n": ix.n,
                y: iy.value,
                f"{y}_lo": iy.lo,
                f"{y}_hi": iy.hi,
                f"{y}_n": iy.n,
            }
        )
    pts = pd.DataFrame(rows)
    pts["_order"] = pts["method"].map(lambda m: order.get(m, len(order)))
    return (
        pts.sort_values(["reference", "_order", "strength_scale"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def _make_room(fig, leg1, leg2, caption, gap: float = 0.03) -> None:
    """With many methods the strength legend would run into the caption under it: then the figure
    grows by the overlap (the legends keep their distance from the top, the caption from the
    bottom). A figure where nothing overlaps is left exactly as it was."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    r = fig.canvas.get_renderer()
    h = fig.get_figheight()
    low = leg2.get_window_extent(r).y0 / fig.dpi  # inches from the bottom
    high = caption.get_window_extent(r).y1 / fig.dpi
    if low >= high:  # their boxes (padding included) do not overlap
        return
    grow = high + gap - low
    keep = {a: a.get_bbox_to_anchor().y0 / fig.dpi for a in (leg1, leg2)}  # inches from the bottom
    fig.set_figheight(h + grow)
    for a, y in keep.items():
        a.set_bbox_to_anchor((0.71, (y + grow) / (h + grow)), transform=fig.transFigure)
    caption.set_y(0.03 * h / (h + grow))


def tradeoff_plot(run: Path, results: pd.DataFrame, manifest: dict, out_dir: Path | None = None) -> Path | None:
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
    colors = OKABE_ITO
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
            ax.errorbar(
                g["ids"], g[y], xerr=xe, yerr=ye, fmt="none", ecolor=col, elinewidth=1, capsize=2, alpha=0.7, zorder=4
            )
            ax.plot(
                g["ids"],
                g[y],
                linestyle="none",
                marker=mk,
                color=col,
                markersize=ms,
                markeredgecolor="white",
                markeredgewidth=0.6,
                zorder=5,
            )
            method_handles.append(
                Line2D([], [], linestyle="none", marker=mk, color=col, markersize=ms * 0.8, label=f"{m} (reference)")
            )
            continue
        col, mk = colors[c % len(colors)], METHOD_MARKERS[c % len(METHOD_MARKERS)]
        c += 1
        ax.errorbar(
            g["ids"], g[y], xerr=xe, yerr=ye, fmt="none", ecolor=col, elinewidth=0.9, capsize=2, alpha=0.55, zorder=2
        )
        ax.plot(g["ids"], g[y], "-", color=col, linewidth=1.6, alpha=0.9, zorder=3)
        for _, r in g.iterrows():
            ms = size.get(r["strength_scale"], 7)
            # A see-through fill, a solid outline in the method's colour and its own shape, small
            # markers above big ones.
            # Fills first, every outline above every fill: a marker under another's still shows its edge.
            ax.plot(
                [r["ids"]],
                [r[y]],
                linestyle="none",
                marker=mk,
                markersize=ms,
                markerfacecolor=(*_rgb(col), 0.35),
                markeredgewidth=0,
                zorder=3.5,
            )
            ax.plot(
                [r["ids"]],
                [r[y]],
                linestyle="none",
                marker=mk,
                markersize=ms,
                markerfacecolor="none",
                markeredgecolor=col,
                markeredgewidth=1.6,
                zorder=6 - ms / 10,
            )
        method_handles.append(
            Line2D(
                [],
                [],
                color=col,
                marker=mk,
                markersize=6,
                markerfacecolor=(*_rgb(col), 0.45),
                markeredgecolor=col,
                label=f"{m} (external)" if m in (manifest.get("external") or {}) else m,
            )
        )
    label = {"manipulation_accuracy": "manipulation accuracy →", "clip_direction": "CLIP direction →"}[y]
    ax.set_xlabel("IDS (identity similarity to the input) →")
    ax.set_ylabel(label)
    ax.set_title("Strength sweep: edit vs identity", fontsize=11)
    ax.grid(alpha=0.3)
    ax.margins(0.07)  # the big markers at the extremes (oracle-edit at accuracy 1) stay inside
    leg1 = fig.legend(
        handles=method_handles,
        title="method",
        loc="upper left",
        bbox_to_anchor=(0.71, 0.9),
        fontsize=8,
        title_fontsize=9,
        frameon=False,
    )
    strength_handles = [
        Line2D([], [], linestyle="none", marker="o", color="#777777", markersize=size[s], label=f"×{s:g}")
        for s in scales
    ]
    leg2 = fig.legend(
        handles=strength_handles,
        title="strength (marker size)",
        loc="upper left",
        bbox_to_anchor=(0.71, 0.9 - 0.055 * (len(method_handles) + 2)),
        fontsize=8,
        title_fontsize=9,
        frameon=False,
        labelspacing=1.0,
    )
    fig.add_artist(leg1)
    n_img = int(results["image_index"].nunique()) if "image_index" in results else len(results)
    cfg = manifest.get("config", {})
    prompts = cfg.get("prompts", []) or []
    targets = ", ".join(f"“{p['target']}”" for p in prompts[:6]) + (
        f" and {len(prompts) - 6} more" if len(prompts) > 6 else ""
    )
    n_pts = pts.loc[~pts["reference"], "ids_n"]
    n_txt = (
        f"n = {int(n_pts.iloc[0])} edits per point"
        if len(n_pts) and n_pts.nunique() == 1
        else "n per point in tradeoff_points.csv"
    )
    acc_n = pts.loc[~pts["reference"], f"{y}_n"]
    if (
        y == "manipulation_accuracy"
        and len(acc_n)
        and acc_n.nunique() == 1
        and len(n_pts)
        and int(acc_n.iloc[0]) != int(n_pts.iloc[0])
    ):
        n_txt += f" ({int(acc_n.iloc[0])} for accuracy: faces that lacked the target)"
    caption = fig.text(
        0.71,
        0.03,
        textwrap.fill(
            f"World {cfg.get('world', '?')}, {len(prompts)} prompt{'s' if len(prompts) != 1 else ''} ({targets}), "
            f"{n_img} test images, {n_txt}. Bars: 95% intervals, a bootstrap over test images (each resampled with "
            f"all of its prompts), seed {cfg.get('seed', 0)}.",
            44,
        ),
        fontsize=7,
        color="#333333",
    )
    _make_room(fig, leg1, leg2, caption)
    out_dir = Path(out_dir) if out_dir is not None else run / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "tradeoff.png"
    fig.savefig(out, dpi=130)
    fig.savefig(out.with_suffix(".pdf"))
    pts.to_csv(out_dir / "tradeoff_points.csv", index=False, float_format="%.5g")
    return out
