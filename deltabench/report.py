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
    return (
        *((c.key, c.label if isinstance(c.label, str) else c.key.upper(), c.higher_is_better) for c in metrics),
        *((c.key, c.label, c.higher_is_better) for c in (EditLatency, PeakMemory)),
        ("fit_seconds", "fit s", False),
        ("load_seconds", "this run s", False),
    )


COST = ("ms_per_edit", "peak_mb", "fit_seconds", "load_seconds")
COST_DECIMALS = {"ms_per_edit": 1, "peak_mb": 0, "fit_seconds": 0, "load_seconds": 1}
ALPHA = 0.05  # a method whose paired test against the best has p >= ALPHA is "not different"


def _decimals(half_widths) -> int:
    """One precision per column: two significant digits of the column's typical half-width."""
    hw = np.asarray([h for h in half_widths if np.isfinite(h) and h > 0])
    if len(hw) == 0:
        return 3
    return int(np.clip(np.ceil(-np.log10(np.median(hw))) + 1, 0, 4))


def fid_unreliable(summary: pd.DataFrame) -> tuple[int, int] | None:
    """``(n, dim)`` when a row's FID rests on covariances of less than full rank: ``n`` the
    fewest distinct samples (a run's reference side holds each input once per prompt, so its
    rows are not distinct samples) and ``dim`` the feature dimension. Judged on the rank of both
    sides' covariances where the summary has it (``fid_rank``), else on rows vs dimensions."""
    if "fid_n" not in summary or "fid_dim" not in summary:
        return None
    if "fid_rank" in summary and summary["fid_rank"].notna().any():
        bad = summary[summary["fid_rank"] < summary["fid_dim"]]
        n = bad["fid_distinct"] if "fid_distinct" in bad else bad["fid_n"]
    else:
        bad = summary[summary["fid_n"] <= summary["fid_dim"]]
        n = bad["fid_n"]
    return (int(n.min()), int(bad["fid_dim"].max())) if len(bad) else None


# Metrics bounded by construction: an interval touching a bound is printed as [lo, hi].
BOUNDS = {
    "manipulation_accuracy": (0.0, 1.0),
    "disentanglement": (0.0, 1.0),
    "fid": (0.0, np.inf),
    "kid": (-np.inf, np.inf),
}
SET_METRICS = ("fid", "kid")


def n_boot_of(summary: pd.DataFrame, key: str, i: int) -> int | None:
    """How many bootstrap resamples gave row ``i``'s ``<key>_p`` (its resolution): the summary's
    ``<key>_boot`` where it has one, else the runner's count (set metrics: fewer above 512-d)."""
    from deltabench import stats

    col = summary.get(f"{key}_boot")
    if col is not None and np.isfinite(col.iloc[i]):
        return int(col.iloc[i])
    if key in SET_METRICS:  # summaries from before <key>_boot was recorded: the rule of their day
        dim = summary.get(f"{key}_dim")
        big = dim is not None and np.isfinite(dim.iloc[i]) and dim.iloc[i] > 512
        return stats.SET_BOOT_LARGE if big else stats.SET_BOOT
    return stats.N_BOOT


def table_cells(summary: pd.DataFrame, fid_name: str = "oracle", columns=None) -> dict:
    """The table as data every format renders: headers, per row the cells ``(text, mark)``
    with mark ``"best"``, ``"tie"`` (not significantly different from the best) or ``""``,
    the reference flags, the footnotes and the paired tests' p-values (``pvalues``: method,
    metric, text). ``columns``: only these metric keys (the paper-width table)."""
    from deltabench import stats

    cols = [(k, h, up) for k, h, up in _columns() if k in summary.columns and (columns is None or k in columns)]
    refs = summary["reference"].astype(bool).tolist() if "reference" in summary else [False] * len(summary)
    methods = summary[[not r for r in refs]]
    bad_fid = fid_unreliable(summary)
    row_n = [int(r["prompts"]) * int(r["images"]) for _, r in summary.iterrows()]
    headers, body = ["Method", "n"], [[] for _ in range(len(summary))]
    for i, r in enumerate(summary.itertuples(index=False)):
        d = r._asdict()
        ext = str(d.get("external", "")) == "True"  # an editor scored from files (deltabench score SUITE EDITS)
        body[i] += [
            (str(d["method"]) + (" (reference)" if refs[i] else "") + (" (external)" if ext else ""), ""),
            (f"{row_n[i]} ({int(d['images'])} img.)", ""),
        ]
    notes_n, negative, pvalues = [], [], []
    for key, header, up in cols:
        name = {"fid": f"FID ({fid_name})", "kid": f"KID ({fid_name}, unscaled)"}.get(key, header)
        if key == "fid" and bad_fid:
            name += " [unreliable]"
        # A metric counted over fewer rows than the row's edits says so: in its header when the
        # count is the same for every row, else in the cell.
        ns = summary.get(f"{key}_n") if key not in SET_METRICS else None
        own_n = [int(x) if ns is not None and np.isfinite(x) else None for x in (ns if ns is not None else [])]
        own_n += [None] * (len(summary) - len(own_n))
        differs = [n is not None and n != row_n[i] for i, n in enumerate(own_n)]
        in_header = any(differs) and len({n for n in own_n if n is not None}) == 1
        if in_header:
            name += f" (n = {next(n for n in own_n if n is not None)})"
            notes_n.append(header)
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
            text = stats.format_interval(
                v, row.get(f"{key}_lo", np.nan), row.get(f"{key}_hi", np.nan), dec, BOUNDS.get(key)
            )
            if differs[i] and not in_header:
                text += f" (n = {own_n[i]})"
            if key in SET_METRICS and (v < 0 or bool(row.get(f"{key}_negative", False))):
                text += " †"
                negative.append(f"{row['method']} {key.upper()}")
            mark = ""
            if not refs[i] and best is not None:
                p = row.get(f"{key}_p", np.nan)
                mark = "best" if row["method"] == best else ("tie" if np.isfinite(p) and p >= ALPHA else "")
                if row["method"] != best and np.isfinite(p):
                    pvalues.append(
                        (
                            str(row["method"]),
                            name,
                            best,
                            stats.format_p(p, n_boot_of(summary, key, i)),
                            n_boot_of(summary, key, i),
                        )
                    )
            body[i].append((text, mark))
    notes = [
        "Each cell: value ± half the width of its 95% interval where that interval is symmetric, else "
        "value [lower, upper] (asymmetric, or touching a bound such as 0 or 1 for a rate); a seeded "
        "bootstrap over test images, each resampled with all of its prompts (bounds in summary.csv). "
        "n: edits (test images).",
        "Bold: the best method in the column; italic: not significantly different from it "
        f"(paired bootstrap on the same images and prompts, p ≥ {ALPHA}). References are never marked.",
    ]
    if notes_n:
        notes.append(
            f"(n = ...) in a header: the edits that metric counts, where fewer than the row's n "
            f"({', '.join(notes_n)}: only images that did not already have the target)."
        )
    if any(k == "kid" for k, _, _ in cols):
        notes.append(
            "KID: unbiased MMD² with the cubic kernel (x·y/d + 1)³ on the same features as FID, "
            "printed unscaled (×1), so not comparable with the ×10³ Inception KID of papers."
        )
    if negative:
        notes.append(
            f"†: below zero ({', '.join(negative)}): the estimate cannot tell the two sets apart at "
            f"this n (the true distance is ≥ 0); read it as 0 within its interval."
        )
    if any(k == "peak_mb" for k, _, _ in cols):
        notes.append(
            "process peak MiB: the whole process's peak memory while editing and scoring (models, "
            "data and all), not what the method alone adds."
        )
    if any(k == "fit_seconds" for k, _, _ in cols):
        notes.append(
            "fit s: seconds the method's fit took when it was fitted (maybe an earlier run, or the "
            "shipped fit); this run s: what this run spent fitting or loading it."
        )
    if "scored_from" in summary and "external" in summary:
        for _, r in summary[summary["external"].astype(str) == "True"].iterrows():
            start = r["starts"] if "starts" in summary and isinstance(r["starts"], str) and r["starts"] else ""
            notes.append(
                f"{r['method']} (external): edits made outside deltabench, scored from {r['scored_from']} "
                f"(file hashes in manifest.json)"
                + (f"; starting images (CLIP direction, the oracle's source readings): {start}." if start else ".")
            )
    if bad_fid:
        notes.append(
            f"FID [unreliable]: {bad_fid[0]} samples for {bad_fid[1]}-d features: the covariance is "
            f"singular and FID is biased and unstable at this size; read KID."
        )
    return {"headers": headers, "rows": body, "references": refs, "notes": notes, "pvalues": pvalues}


SHORT_COLUMNS = ("kid", "fid", "psnr", "ids", "manipulation_accuracy", "clip_direction")


def short_table(summary: pd.DataFrame, fid_name: str = "oracle") -> str:
    """What ``deltabench run`` prints: one line per method, the key metrics with their intervals,
    as aligned plain text (the full table is ``reports/table.md``)."""
    t = table_cells(summary, fid_name, columns=SHORT_COLUMNS)
    names = _header_names(t)
    rows = [[c for c, _ in r] for r in t["rows"]]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(names)]
    line = lambda cells: "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
        for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()
    return "\n".join([line(names), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def pvalue_markdown(t: dict) -> str:
    """The paired tests behind the table's marks: each method against the column's best."""
    if not t.get("pvalues"):
        return ""
    lines = ["| Method | Metric | against | p |", "|:--|:--|:--|--:|"]
    for m, metric, best, p, b in t["pvalues"]:
        lines.append(f"| {m} | {metric} | {best} | {p} (B = {b}) |")
    return (
        "\nPaired bootstrap p-values (two-sided; B resamples, so a p below 1/B is printed as < 1/B):\n\n"
        + "\n".join(lines)
        + "\n"
    )


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


_TEX_ESCAPE = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
    "±": r"$\pm$",
    "–": "--",
    "²": r"$^2$",
    "³": r"$^3$",
    "·": r"$\cdot$",
    "†": r"$^\dagger$",
    "≥": r"$\geq$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "×": r"$\times$",
}


def _tex(text: str) -> str:
    out = "".join(_TEX_ESCAPE.get(ch, ch) for ch in str(text))
    bad = [ch for ch in out if ord(ch) > 127]
    if bad:
        raise ValueError(f"table.tex: no LaTeX spelling for {bad[0]!r} in {text!r}")
    return out


PAPER_COLUMNS = ("fid", "psnr", "ids", "manipulation_accuracy")


def table_latex(t: dict, caption: str, full: bool = True) -> str:
    """A booktabs table that plain pdflatex compiles (ASCII only; ``\\usepackage{booktabs}``);
    ``full=False``: a one-column-wide table (``table_paper.tex``) whose notes are the essentials."""
    names = _header_names(t, (r"$\uparrow$", r"$\downarrow$"), _tex)
    fmt = {"best": r"\textbf{%s}", "tie": r"\textit{%s}", "": "%s"}
    env = "table*" if full else "table"  # the full table spans both columns of a paper
    lines = [
        r"\begin{%s}[t]" % env,
        r"\centering",
        r"\scriptsize",
        r"\setlength{\tabcolsep}{3pt}",
        r"\begin{tabular}{l" + "r" * (len(names) - 1) + "}",
        r"\toprule",
        " & ".join(names) + r" \\",
        r"\midrule",
    ]
    first_ref = True
    for row, ref in zip(t["rows"], t["references"]):
        if ref and first_ref:
            lines.append(r"\midrule")
            first_ref = False
        cells = [fmt[m] % _tex(c) for c, m in row]
        if ref:
            cells[0] = r"\textit{%s}" % _tex(row[0][0])
        lines.append(" & ".join(cells) + r" \\")
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{%s %s}" % (_tex(caption), " ".join(_tex(n) for n in t["notes"])),
        r"\end{%s}" % env,
    ]
    return "\n".join(lines) + "\n"


def write_report(run: str | Path) -> Path:
    """Write ``RUN/reports/``: table.{md,csv,tex}, per_prompt.csv, edit_grid*.png (every prompt,
    labelled; :mod:`deltabench.figures`), tradeoff.png/.pdf, index.html."""
    run = Path(run)
    for need in ("manifest.json", "summary.csv", "results.csv"):
        if not (run / need).is_file():
            raise FileNotFoundError(
                f"{run} is not a finished run directory: {need} is missing (run `deltabench run --out {run}` first)"
            )
    from deltabench.rundir import read_manifest

    manifest = read_manifest(run)
    if manifest is None:
        raise ValueError(f"{run} is not a deltabench run directory (no manifest.json); give the --out of a run")
    try:
        summary = pd.read_csv(run / "summary.csv")
        results = pd.read_csv(run / "results.csv")
    except FileNotFoundError as e:
        raise ValueError(
            f"{run}: {Path(e.filename).name} is missing: the run has not finished; run the same "
            f"`deltabench run` command again to finish it"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{run}: summary.csv or results.csv is damaged ({' '.join(str(e).split())}); run the "
            f"same `deltabench run` command again to rewrite them"
        ) from None
    import shutil

    # Built whole in a temporary folder, then swapped in: a failure leaves the old report as it was.
    from deltabench.rundir import adopt_legacy

    adopt_legacy(run)  # a run from before the ledger: its files are recorded first
    rep = run / ".reports.tmp"
    shutil.rmtree(rep, ignore_errors=True)
    rep.mkdir()
    try:
        _build(run, rep, manifest, summary, results)
    except BaseException:
        shutil.rmtree(rep, ignore_errors=True)
        raise
    return _swap_in(run, rep)


def _swap_in(run: Path, tmp: Path) -> Path:
    """Move the complete report in ``tmp`` into ``run/reports`` (file by file, each atomic), remove
    the previous report's files that it no longer has, and record what it wrote. A file that
    deltabench did not write is never touched."""
    import os
    import shutil

    from deltabench import rundir

    rep = run / "reports"
    if rep.is_symlink() or (rep.exists() and not rep.is_dir()):
        raise ValueError(f"{rep} is not a folder; move it away and run `deltabench report {run}` again")
    rep.mkdir(exist_ok=True)
    new = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
    foreign = set(rundir.foreign_files(run))
    clash = [f"reports/{r.as_posix()}" for r in new if f"reports/{r.as_posix()}" in foreign]
    if clash:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(
            f"{run}: the report would overwrite {', '.join(clash)}, which deltabench did not write; "
            f"move it away and run `deltabench report {run}` again"
        )
    for r in new:
        (rep / r).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / r, rep / r)
    rundir.record(run, *(rep / r for r in new))
    keep = {f"reports/{r.as_posix()}" for r in new}
    for rel in sorted(rundir.owned(run)):
        if rel.startswith("reports/") and rel not in keep and rel not in foreign:
            (run / rel).unlink(missing_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return rep


def with_load_seconds(summary: pd.DataFrame, run: Path) -> pd.DataFrame:
    """``summary`` with ``load_seconds``: what this run spent fitting or loading each method
    (``fits.json``'s ``loaded_seconds``; 0 for references), beside ``fit_seconds``."""
    f = Path(run) / "fits.json"
    try:
        fits = json.loads(f.read_text()) if f.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        fits = {}
    if not isinstance(fits, dict) or "fit_seconds" not in summary:
        return summary
    refs = summary["reference"].astype(bool) if "reference" in summary else pd.Series(False, index=summary.index)
    load = [
        0.0 if ref else float((fits.get(m) or {}).get("loaded_seconds", np.nan))
        for m, ref in zip(summary["method"], refs)
    ]
    out = summary.copy()
    out.insert(list(out.columns).index("fit_seconds") + 1, "load_seconds", load)
    return out


def _build(run: Path, rep: Path, manifest: dict, summary: pd.DataFrame, results: pd.DataFrame) -> None:
    """Every report file, written into ``rep``."""
    cfg = manifest["config"]
    fid_name = manifest.get("fid_features", "oracle")  # runs from before it was recorded: synthfaces
    summary = with_load_seconds(summary, run)
    cells = table_cells(summary, fid_name)
    unjudged = manifest.get("unjudged") or {}
    if unjudged and "disentanglement" in summary:
        cells["notes"].append(
            "Disentangle.: over the other attributes the oracle reads on generated images; left out as "
            "unjudged (world card): " + "; ".join(f"{k} ({v})" for k, v in unjudged.items()) + "."
        )
    table = paper_table(summary, fid_name)
    table.to_csv(rep / "table.csv", index=False)
    (rep / "table.md").write_text(table_markdown(cells) + pvalue_markdown(cells))
    caption = (
        f"deltabench on {cfg.get('world')} ({cfg.get('images')} test images, {len(cfg.get('prompts', []))} "
        f"prompts, seed {cfg.get('seed')})."
    )
    (rep / "table.tex").write_text(table_latex(cells, caption))
    # Paper width: the paper's Table 1 columns (FID, PSNR, IDS) plus manipulation accuracy.
    paper = table_cells(summary, fid_name, columns=PAPER_COLUMNS)
    (rep / "table_paper.tex").write_text(table_latex(paper, caption, full=False))
    metric_cols = [
        c for c, _, _ in _columns() if c in results.columns and c not in ("fid", "kid", "fit_seconds", "peak_mb")
    ]
    at1 = results[results["strength_scale"] == 1.0]
    groups = at1.groupby(["method", "target"], sort=False)
    per_prompt = groups[metric_cols].mean()
    per_prompt.insert(0, "n", groups.size())
    if "manipulation_accuracy" in at1:  # counted only where the image lacked the target value
        per_prompt.insert(1, "manipulation_accuracy_n", groups["manipulation_accuracy"].count())
    per_prompt = per_prompt.reset_index()
    per_prompt.to_csv(rep / "per_prompt.csv", index=False, float_format="%.4g")
    from deltabench.figures import edit_grids, tradeoff_plot

    grids = edit_grids(run, manifest, out_dir=rep)
    curve = tradeoff_plot(run, results, manifest, out_dir=rep)
    _html(rep, manifest, cells, per_prompt_html(at1, metric_cols, int(cfg.get("seed", 0))), grids, curve)


def _html_pvalues(t: dict) -> str:
    if not t.get("pvalues"):
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{html.escape(k)}</td><td>{html.escape(b)}</td>"
        f"<td>{html.escape(p)} (B = {n})</td></tr>"
        for m, k, b, p, n in t["pvalues"]
    )
    return (
        "<details><summary>Paired bootstrap p-values against each column's best (two-sided; a p below "
        "1/B is printed as &lt; 1/B)</summary><table><thead><tr><th>Method</th><th>Metric</th><th>against</th>"
        f"<th>p</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _html_table(t: dict) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in _header_names(t))
    tag = {"best": ("<b>", "</b>"), "tie": ("<i>", "</i>"), "": ("", "")}
    rows = []
    for row, ref in zip(t["rows"], t["references"]):
        tds = "".join(f"<td>{tag[m][0]}{html.escape(c)}{tag[m][1]}</td>" for c, m in row)
        rows.append(f'<tr class="reference">{tds}</tr>' if ref else f"<tr>{tds}</tr>")
    return (
        f'<table id="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'<ul class="notes">{"".join(f"<li>{html.escape(n)}</li>" for n in t["notes"])}</ul>'
    )


def per_prompt_html(at1: pd.DataFrame, metric_cols: list[str], seed: int = 0) -> str:
    """The per-prompt table for the page: readable headers, each mean with its 95% interval
    (cluster bootstrap over test images, :func:`deltabench.stats.format_interval`), "–" for no
    value, in a container that scrolls sideways instead of overflowing the page."""
    from deltabench import stats

    label = {k: h for k, h, _ in _columns()}
    up = {k: u for k, _, u in _columns()}
    rows = []
    for (m, target), g in at1.groupby(["method", "target"], sort=False):
        cells = [html.escape(str(m)), html.escape(str(target)), str(len(g))]
        for k in metric_cols:
            v = g[k].to_numpy(float)
            if not np.isfinite(v).any():
                cells.append("–")
                continue
            if k == "ms_per_edit":  # one timing per unit: no interval
                cells.append(f"{np.nanmean(v):.1f}")
                continue
            iv = stats.mean_interval(v, g["image_index"].to_numpy(), n_boot=500, seed=seed)
            text = stats.format_interval(iv.value, iv.lo, iv.hi, 2 if k == "psnr" else 3, BOUNDS.get(k))
            if iv.n != len(g):  # counted on fewer edits than the prompt's (accuracy: faces that lacked it)
                text += f" (n = {iv.n})"
            cells.append(html.escape(text))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ["Method", "Prompt (target)", "n"] + [
        f"{label.get(k, k)} {'↑' if up.get(k, True) else '↓'}" for k in metric_cols
    ]
    return (
        '<div class="scroll"><table id="per-prompt"><thead><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + '</tbody></table></div><p class="notes">Each cell: the mean over the prompt\'s edits with its '
        "95% interval (± where symmetric, else [lower, upper]; a bootstrap over test images). "
        "Manipulation accuracy counts only images that did not already have the target (its n).</p>"
    )


def _html(rep: Path, manifest: dict, cells: dict, per_prompt: str, grids: list[Path], curve) -> None:
    cfg = manifest["config"]
    imgs = []
    seen_heads = set()
    for g in grids:
        scale = g.stem.split("_x", 1)[1].split("_")[0] if "_x" in g.stem else "1"
        if scale not in seen_heads:
            seen_heads.add(scale)
            imgs.append(f"<h2>Edits (strength ×{html.escape(scale)})</h2>")
        imgs.append(
            f'<img src="{g.name}" alt="edit grid {html.escape(g.stem)}" '
            f'style="image-rendering:pixelated;max-width:100%;display:block;margin:0.5em 0">'
        )
    if curve:
        imgs.append(f'<h2>Strength sweep</h2><img src="{curve.name}" alt="trade-off curves">')
    warns = list(manifest.get("warnings", [])) + [n for n in cells["notes"] if n.startswith("FID [unreliable]")]
    warn_html = (
        ('<h2>Warnings</h2><ul class="warnings">' + "".join(f"<li>{html.escape(w)}</li>" for w in warns) + "</ul>")
        if warns
        else ""
    )
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>deltabench report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}tr.reference td{{color:#555;font-style:italic;background:#f4f4f4}}
.warnings li{{color:#a40}}.scroll{{overflow-x:auto;max-width:100%}}th{{white-space:normal;vertical-align:bottom}}
</style></head><body>
<h1>deltabench report</h1>
<p>World <code>{html.escape(str(cfg.get("world")))}</code> (config {html.escape(str(cfg.get("world_hash")))}),
{cfg.get("images")} test images, {len(cfg.get("prompts", []))} prompts, seed {cfg.get("seed")},
git {html.escape(str(manifest.get("git_commit")))}.</p>
<h2>Table</h2>
<div class="scroll">{_html_table(cells)}</div>
{_html_pvalues(cells)}
{warn_html}
{"".join(imgs)}
<h2>Per prompt (default strength)</h2>
{per_prompt}
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
    (rep / "index.html").write_text(page)
