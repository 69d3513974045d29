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


def _columns() -> tuple[tuple[str, str, bool], ...]:
    """(column, header, higher is better), from the metrics themselves. KID first (it is sane at
    small n, FID is not), then the paper's Table 1 (FID, PSNR, IDS), then ours, then the cost."""
    from deltabench.metrics.cost import EditLatency, PeakMemory
    from deltabench.metrics.suite import METRIC_CLASSES

    first = ("kid", "fid", "psnr", "ids")
    metrics = sorted(METRIC_CLASSES, key=lambda c: (c.key not in first, first.index(c.key) if c.key in first else 0))
    # FID/KID name their feature network per instance (``label`` is a property): the table adds it.
    return (*((c.key, c.label if isinstance(c.label, str) else c.key.upper(), c.higher_is_better) for c in metrics),
            *((c.key, c.label, c.higher_is_better) for c in (EditLatency, PeakMemory)), ("fit_seconds", "fit s", False))


COST = ("ms_per_edit", "peak_mb", "fit_seconds")
COST_DECIMALS = {"ms_per_edit": 1, "peak_mb": 0, "fit_seconds": 0}
ALPHA = 0.05  # a method whose paired test against the best has p >= ALPHA is "not different"


def _decimals(half_widths) -> int:
    """One precision per column: two significant digits of the column's typical half-width."""
    hw = np.asarray([h for h in half_widths if np.isfinite(h) and h > 0])
    if len(hw) == 0:
        return 3
    return int(np.clip(np.ceil(-np.log10(np.median(hw))) + 1, 0, 4))


def fid_unreliable(summary: pd.DataFrame) -> tuple[int, int] | None:
    """``(n, dim)`` when a row's FID rests on no more samples than feature dimensions."""
    if "fid_n" not in summary or "fid_dim" not in summary:
        return None
    bad = summary[summary["fid_n"] <= summary["fid_dim"]]
    return (int(bad["fid_n"].min()), int(bad["fid_dim"].max())) if len(bad) else None


def table_cells(summary: pd.DataFrame, fid_name: str = "oracle") -> dict:
    """The table as data every format renders: headers, per row the cells ``(text, mark)``
    with mark ``"best"``, ``"tie"`` (not significantly different from the best) or ``""``,
    the reference flags and the footnotes."""
    cols = [(k, h, up) for k, h, up in _columns() if k in summary.columns]
    refs = summary["reference"].astype(bool).tolist() if "reference" in summary else [False] * len(summary)
    methods = summary[[not r for r in refs]]
    bad_fid = fid_unreliable(summary)
    headers, body = ["Method", "n"], [[] for _ in range(len(summary))]
    for i, r in enumerate(summary.itertuples(index=False)):
        d = r._asdict()
        body[i] += [(str(d["method"]) + (" (reference)" if refs[i] else ""), ""),
                    (f"{int(d['prompts']) * int(d['images'])} ({int(d['images'])} img.)", "")]
    for key, header, up in cols:
        name = {"fid": f"FID ({fid_name})", "kid": f"KID ({fid_name})"}.get(key, header)
        if key == "fid" and bad_fid:
            name += " [unreliable]"
        headers.append((name, up))
        lo, hi = summary.get(f"{key}_lo"), summary.get(f"{key}_hi")
        hw = (hi - lo) / 2 if lo is not None and hi is not None else pd.Series(np.nan, index=summary.index)
        dec = COST_DECIMALS.get(key, _decimals(hw))
        best = None
        if key not in COST and len(methods) > 1 and methods[key].notna().any():  # a best needs a rival
            best = methods.loc[methods[key].idxmax() if up else methods[key].idxmin(), "method"]
        for i, (_, row) in enumerate(summary.iterrows()):
            v = row[key]
            if not np.isfinite(v):
                body[i].append(("–", ""))
                continue
            text = f"{v:.{dec}f}"
            if np.isfinite(hw.iloc[i]):
                text += f" ± {hw.iloc[i]:.{dec}f}"
            mark = ""
            if not refs[i] and best is not None:
                p = row.get(f"{key}_p", np.nan)
                mark = "best" if row["method"] == best else ("tie" if np.isfinite(p) and p >= ALPHA else "")
            body[i].append((text, mark))
    notes = ["Each cell: value ± half the width of its 95% interval (a seeded bootstrap over test images, "
             "each resampled with all of its prompts; the bounds are in summary.csv). n: edits (test images).",
             "Bold: the best method in the column; italic: not significantly different from it "
             f"(paired bootstrap on the same images and prompts, p ≥ {ALPHA}). References are never marked."]
    if bad_fid:
        notes.append(f"FID [unreliable]: {bad_fid[0]} samples for {bad_fid[1]}-d features: the covariance is "
                     f"singular and FID is biased and unstable at this size; read KID.")
    return {"headers": headers, "rows": body, "references": refs, "notes": notes}


def _header_names(t: dict, arrows: tuple[str, str] = ("↑", "↓"), esc=str) -> list[str]:
    """The table's headers as text, each metric with its direction arrow."""
    return [esc(h) if isinstance(h, str) else f"{esc(h[0])} {arrows[0] if h[1] else arrows[1]}" for h in t["headers"]]


def paper_table(summary: pd.DataFrame, fid_name: str = "oracle") -> pd.DataFrame:
    """The table as plain text cells (the CSV and what tests read)."""
    t = table_cells(summary, fid_name)
    names = _header_names(t)
    return pd.DataFrame([[c for c, _ in row] for row in t["rows"]], columns=names)


def table_markdown(t: dict) -> str:
    names = _header_names(t)
    fmt = {"best": "**{}**", "tie": "*{}*", "": "{}"}
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join([":--"] + ["--:"] * (len(names) - 1)) + "|"]
    for row, ref in zip(t["rows"], t["references"]):
        cells = [fmt[m].format(c) for c, m in row]
        if ref:
            cells[0] = f"_{row[0][0]}_"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in t["notes"]) + "\n"


_TEX_ESCAPE = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
               "±": r"$\pm$", "–": "--", "≥": r"$\geq$", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "×": r"$\times$"}


def _tex(text: str) -> str:
    out = "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))
    bad = [ch for ch in out if ord(ch) > 127]
    if bad:
        raise ValueError(f"table.tex: no LaTeX spelling for {bad[0]!r} in {text!r}")
    return out


def table_latex(t: dict, caption: str) -> str:
    """A booktabs table that plain pdflatex compiles (ASCII only; ``\\usepackage{booktabs}``)."""
    names = _header_names(t, (r"$\uparrow$", r"$\downarrow$"), _tex)
    fmt = {"best": r"\textbf{%s}", "tie": r"\textit{%s}", "": "%s"}
    lines = [r"\begin{table}[t]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
             r"\begin{tabular}{l" + "r" * (len(names) - 1) + "}", r"\toprule", " & ".join(names) + r" \\",
             r"\midrule"]
    first_ref = True
    for row, ref in zip(t["rows"], t["references"]):
        if ref and first_ref:
            lines.append(r"\midrule")
            first_ref = False
        cells = [fmt[m] % _tex(c) for c, m in row]
        if ref:
            cells[0] = r"\textit{%s}" % _tex(row[0][0])
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{%s %s}" % (_tex(caption), " ".join(_tex(n) for n in t["notes"])),
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_report(run: str | Path) -> Path:
    """Write ``RUN/reports/``: table.{md,csv,tex}, per_prompt.csv, edit_grid*.png (every prompt,
    labelled; :mod:`deltabench.figures`), tradeoff.png/.pdf, index.html."""
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
    cfg = manifest["config"]
    cells = table_cells(summary)
    table = paper_table(summary)
    table.to_csv(rep / "table.csv", index=False)
    (rep / "table.md").write_text(table_markdown(cells))
    caption = (f"deltabench on {cfg.get('world')} ({cfg.get('images')} test images, {len(cfg.get('prompts', []))} "
               f"prompts, seed {cfg.get('seed')}).")
    (rep / "table.tex").write_text(table_latex(cells, caption))
    metric_cols = [c for c, _, _ in _columns() if c in results.columns and c not in ("fid", "kid", "fit_seconds", "peak_mb")]
    at1 = results[results["strength_scale"] == 1.0]
    groups = at1.groupby(["method", "target"], sort=False)
    per_prompt = groups[metric_cols].mean()
    per_prompt.insert(0, "n", groups.size())
    if "manipulation_accuracy" in at1:  # counted only where the image lacked the target value
        per_prompt.insert(1, "manipulation_accuracy_n", groups["manipulation_accuracy"].count())
    per_prompt = per_prompt.reset_index()
    per_prompt.to_csv(rep / "per_prompt.csv", index=False, float_format="%.4g")
    from deltabench.figures import edit_grids, tradeoff_plot

    grids = edit_grids(run, manifest)
    curve = tradeoff_plot(run, results, manifest)
    _html(run, manifest, cells, per_prompt, grids, curve)
    return rep


def _html_table(t: dict) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header_names(t))
    tag = {"best": ("<b>", "</b>"), "tie": ("<i>", "</i>"), "": ("", "")}
    rows = []
    for row, ref in zip(t["rows"], t["references"]):
        tds = "".join(f"<td>{tag[m][0]}{html.escape(c)}{tag[m][1]}</td>" for c, m in row)
        rows.append(f'<tr class="reference">{tds}</tr>' if ref else f"<tr>{tds}</tr>")
    return (f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<ul class="notes">{"".join(f"<li>{html.escape(n)}</li>" for n in t["notes"])}</ul>')


def _html(run: Path, manifest: dict, cells: dict, per_prompt: pd.DataFrame, grids: list[Path], curve) -> None:
    cfg = manifest["config"]
    imgs = []
    if grids:
        imgs.append("<h2>Edits (strength ×1)</h2>")
        for g in grids:
            imgs.append(f'<img src="{g.name}" alt="edit grid {html.escape(g.stem)}" '
                        f'style="image-rendering:pixelated;max-width:100%;display:block;margin:0.5em 0">')
    if curve:
        imgs.append(f'<h2>Strength sweep</h2><img src="{curve.name}" alt="trade-off curves">')
    warns = list(manifest.get("warnings", [])) + [n for n in cells["notes"] if n.startswith("FID [unreliable]")]
    warn_html = ("<h2>Warnings</h2><ul class=\"warnings\">" + "".join(f"<li>{html.escape(w)}</li>" for w in warns)
                 + "</ul>") if warns else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>deltabench report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}tr.reference td{{color:#555;font-style:italic;background:#f4f4f4}}
.warnings li{{color:#a40}}</style></head><body>
<h1>deltabench report</h1>
<p>World <code>{html.escape(str(cfg.get('world')))}</code> (config {html.escape(str(cfg.get('world_hash')))}),
{cfg.get('images')} test images, {len(cfg.get('prompts', []))} prompts, seed {cfg.get('seed')},
git {html.escape(str(manifest.get('git_commit')))}.</p>
<h2>Table</h2>
{_html_table(cells)}
{warn_html}
{''.join(imgs)}
<h2>Per prompt (default strength)</h2>
{per_prompt.to_html(index=False, float_format=lambda x: f"{x:.3f}", table_id="per-prompt")}
<h2>Run config</h2>
<details><summary>manifest config (JSON)</summary><pre>{html.escape(json.dumps(cfg, indent=1))}</pre></details>
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
