"""``deltabench report RUN_DIR``: the paper's table, edit grids, trade-off curves, one HTML page.

Reads only the run directory (``manifest.json``, ``results.csv``, ``summary.csv``,
``units/``), so a report can be regenerated anywhere without the models.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pandas as pd

from deltabench.checkpoints import safe_torch_load

def _columns() -> tuple[tuple[str, str, bool], ...]:
    """(column, header, higher is better), from the metrics themselves; the paper's three first
    (Table 1: FID, PSNR, IDS), then ours, then the cost."""
    from deltabench.metrics.cost import EditLatency, PeakMemory
    from deltabench.metrics.suite import METRIC_CLASSES

    first = ("fid", "psnr", "ids")
    metrics = sorted(METRIC_CLASSES, key=lambda c: (c.key not in first, first.index(c.key) if c.key in first else 0))
    # FID/KID name their feature network per instance (``label`` is a property): the table adds it.
    return (*((c.key, c.label if isinstance(c.label, str) else c.key.upper(), c.higher_is_better) for c in metrics),
            *((c.key, c.label, c.higher_is_better) for c in (EditLatency, PeakMemory)), ("fit_seconds", "fit s", False))


def paper_table(summary: pd.DataFrame, fid_name: str = "oracle") -> pd.DataFrame:
    cols, names = ["method"], ["Method"]
    for key, header, up in _columns():
        if key in summary.columns:
            cols.append(key)
            h = f"FID ({fid_name})" if key == "fid" else (f"KID ({fid_name})" if key == "kid" else header)
            names.append(f"{h} {'↑' if up else '↓'}")
    t = summary[cols].copy()
    t.columns = names
    return t


def _grid(run: Path, manifest: dict, max_prompts: int = 6) -> Path | None:
    from deltabench.viz import make_grid, save_png

    f = run / "inputs.pt"
    if not f.is_file():
        return None
    base = safe_torch_load(f, "a deltabench run's input images (inputs.pt)")
    cfg = manifest["config"]
    prompts = cfg["prompts"][:max_prompts]
    columns = [base["inputs"].numpy(), base["start"].numpy()]
    labels = ["input", "inversion"]
    for j, p in enumerate(prompts):
        for m in cfg["methods"]:
            u = run / "units" / f"{m}__{j}__{1.0!r}.pt"
            if not u.is_file():
                continue
            ex = safe_torch_load(u, "a deltabench run unit (metric states)").get("examples")
            if ex is None:
                continue
            columns.append(ex.numpy())
            labels.append(f"{m}: {p['target']}")
    k = min(len(c) for c in columns)
    tiles = np.stack([c[:k] for c in columns], axis=1).reshape(-1, *columns[0].shape[1:])  # rows = images
    grid = make_grid(tiles, nrow=len(columns))
    out = run / "reports" / "edit_grid.png"
    save_png(grid, out)
    (run / "reports" / "edit_grid_columns.json").write_text(json.dumps(labels, indent=1))
    return out


def _tradeoff(run: Path, results: pd.DataFrame) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = "manipulation_accuracy" if "manipulation_accuracy" in results else "clip_direction"
    if y not in results or "ids" not in results:
        return None
    agg = results.groupby(["method", "strength_scale"])[[y, "ids"]].mean().reset_index()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for m, g in agg.groupby("method", sort=False):
        g = g.sort_values("strength_scale")
        ax.plot(g["ids"], g[y], marker="o", label=m)
        for _, r in g.iterrows():
            ax.annotate(f"×{r['strength_scale']:g}", (r["ids"], r[y]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel("IDS (identity similarity) →")
    ax.set_ylabel({"manipulation_accuracy": "manipulation accuracy →", "clip_direction": "CLIP direction →"}[y])
    ax.set_title("strength sweep: edit vs identity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = run / "reports" / "tradeoff.png"
    fig.savefig(out, dpi=130)
    fig.savefig(out.with_suffix(".pdf"))
    plt.close(fig)
    return out


def write_report(run: str | Path) -> Path:
    """Write ``RUN/reports/``: table.{md,csv,tex}, per_prompt.csv, edit_grid.png, tradeoff.png, index.html."""
    run = Path(run)
    for need in ("manifest.json", "summary.csv", "results.csv"):
        if not (run / need).is_file():
            raise FileNotFoundError(f"{run} is not a finished run directory: {need} is missing "
                                    f"(run `deltabench run --out {run}` first)")
    from deltabench.rundir import read_manifest

    manifest = read_manifest(run)
    if manifest is None:
        raise ValueError(f"{run} is not a deltabench run directory (no manifest.json); give the --out of a run")
    try:
        summary = pd.read_csv(run / "summary.csv")
        results = pd.read_csv(run / "results.csv")
    except FileNotFoundError as e:
        raise ValueError(f"{run}: {Path(e.filename).name} is missing: the run has not finished; run the same "
                         f"`deltabench run` command again to finish it") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"{run}: summary.csv or results.csv is damaged ({' '.join(str(e).split())}); run the "
                         f"same `deltabench run` command again to rewrite them") from None
    rep = run / "reports"
    rep.mkdir(exist_ok=True)
    table = paper_table(summary)
    table.to_csv(rep / "table.csv", index=False, float_format="%.4g")
    (rep / "table.md").write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n")
    (rep / "table.tex").write_text(table.to_latex(index=False, float_format="%.4g", escape=True))
    metric_cols = [c for c, _, _ in _columns() if c in results.columns and c not in ("fid", "kid", "fit_seconds", "peak_mb")]
    per_prompt = (results[results["strength_scale"] == 1.0]
                  .groupby(["method", "target"], sort=False)[metric_cols].mean().reset_index())
    per_prompt.to_csv(rep / "per_prompt.csv", index=False, float_format="%.4g")
    grid = _grid(run, manifest)
    curve = _tradeoff(run, results)
    _html(run, manifest, table, per_prompt, grid, curve)
    return rep


def _html(run: Path, manifest: dict, table: pd.DataFrame, per_prompt: pd.DataFrame, grid, curve) -> None:
    cfg = manifest["config"]
    imgs = []
    if grid:
        labels = json.loads((run / "reports" / "edit_grid_columns.json").read_text())
        imgs.append(f'<h2>Edits</h2><p>Columns: {html.escape(", ".join(labels))}</p>'
                    f'<img src="{grid.name}" alt="edit grid" style="image-rendering:pixelated;width:100%">')
    if curve:
        imgs.append(f'<h2>Strength sweep</h2><img src="{curve.name}" alt="trade-off curves">')
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>deltabench report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>deltabench report</h1>
<p>World <code>{html.escape(str(cfg.get('world')))}</code> (config {html.escape(str(cfg.get('world_hash')))}),
{cfg.get('images')} test images, {len(cfg.get('prompts', []))} prompts, seed {cfg.get('seed')},
git {html.escape(str(manifest.get('git_commit')))}.</p>
<h2>Table</h2>
{table.to_html(index=False, float_format=lambda x: f"{x:.4g}", table_id="summary")}
{''.join(imgs)}
<h2>Per prompt (default strength)</h2>
{per_prompt.to_html(index=False, float_format=lambda x: f"{x:.3f}", table_id="per-prompt")}
<script>
// Record whether every figure loaded (body data-* attributes): a headless browser's DOM dump
// then tells a test, or a user, that no image link is broken.
window.addEventListener("load", () => {{
  const imgs = Array.from(document.images);
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.imagesLoaded = ok;
  document.body.dataset.imagesBroken = imgs.length - ok;
}});
</script>
</body></html>
"""
    (run / "reports" / "index.html").write_text(page)
