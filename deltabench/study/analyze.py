"""``deltabench study analyze``: what the participants of a study preferred, with uncertainty.

- Preference rates per question and method pair, with 95% percentile intervals from a
  bootstrap over *participants* (each resample keeps all of a participant's answers; the
  cluster bootstrap of :mod:`deltabench.stats`), so the correlation of one rater's answers is
  respected.
- With more than two methods: each method's win rate over all its comparisons, and a
  Bradley–Terry ranking fitted by Hunter's (2004) MM algorithm, its intervals from the same
  participant bootstrap.
- Exclusions: a participant who chose the unedited image in more attention checks than
  ``max_check_failures`` is left out, and listed.
- Agreement between raters: per question, Fleiss' kappa over the items answered by two or more
  participants (categories: the pair's two methods; the form for varying raters per item) and
  the mean pairwise percent agreement, with intervals from a bootstrap over items.
- Bad response files (not JSON or truncated, another study's, a participant already seen,
  rounds missing, trials that do not match the study) are left out with one line each.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import numpy as np

from deltabench.study import QUESTION_TITLES, QUESTIONS, RESPONSES_FORMAT
from deltabench.study.schedule import schedule

N_BOOT = 2000


# --- reading ------------------------------------------------------------------------------------


def _files(paths) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.json")))
        elif p.is_file():
            out.append(p)
        else:
            raise ValueError(f"RESPONSES {p}: no such file or folder")
    if not out:
        raise ValueError(f"RESPONSES {' '.join(map(str, paths))}: no .json response files there")
    return out


def load_study(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    p = Path(path)
    f = p / "study.json" if p.is_dir() else p
    if not f.is_file():
        raise ValueError(f"--study {path}: no study.json there; give the folder `deltabench study make` wrote")
    try:
        s = json.loads(f.read_text())
    except ValueError as e:
        raise ValueError(f"--study {f}: not valid JSON ({e})") from None
    if not isinstance(s, dict) or "study_id" not in s or "items" not in s:
        raise ValueError(f"--study {f}: not a deltabench study manifest")
    return s


def check_response(r: dict, study: dict | None) -> str | None:
    """Why response ``r`` cannot be used (None if it can), given the study when known."""
    rounds = int(study["rounds"]) if study else int(r.get("rounds") or 0)
    checks = len(study["attention_checks"]) if study else int(r.get("checks") or 0)
    trials = r.get("trials")
    if not isinstance(trials, list):
        return "no trials list: not a complete response file"
    bad = [
        t
        for t in trials
        if not isinstance(t, dict)
        or t.get("kind") not in ("round", "check")
        or t.get("accuracy") not in ("left", "right")
        or t.get("realism") not in ("left", "right")
    ]
    if bad:
        return f"{len(bad)} trials without both answers (left/right)"
    got = Counter(t["item"] for t in trials if t["kind"] == "round")
    missing = sorted(set(range(rounds)) - set(got))
    dup = sorted(k for k, n in got.items() if n > 1)
    extra = sorted(set(got) - set(range(rounds)))
    if missing or dup or extra or rounds == 0:
        what = "; ".join(
            s
            for s in (
                f"missing rounds {missing}" if missing else "",
                f"rounds answered twice {dup}" if dup else "",
                f"unknown rounds {extra}" if extra else "",
            )
            if s
        )
        return f"answered {len(set(got) & set(range(rounds)))} of {rounds} rounds ({what or 'no rounds'})"
    got_c = sorted(t["item"] for t in trials if t["kind"] == "check")
    if got_c != list(range(checks)):
        return f"answered attention checks {got_c}, the study has {checks}: an incomplete or altered file"
    if study is not None:
        for t in trials:
            if t["kind"] == "round":
                it = study["items"][t["item"]]
                if sorted([t.get("left"), t.get("right")]) != sorted(it["methods"]):
                    return (
                        f"round {t['item']} records {t.get('left')}/{t.get('right')}, the study pairs "
                        f"{'/'.join(it['methods'])} there: a page of another version"
                    )
                a = 0 if t["left"] == it["methods"][0] else 1
                if t.get("left_image") != it["images"][a] or t.get("right_image") != it["images"][1 - a]:
                    return f"round {t['item']}: its images do not match the study's (a page of another version)"
        expect = schedule(study["study_id"], str(r["participant"]), [it["pair"] for it in study["items"]], checks)
        seen = [{"kind": t["kind"], "item": t["item"], "first_left": t.get("first_left")} for t in trials]
        if seen != expect:
            return "the trials' order or sides differ from what the participant id implies: a modified page or file"
    return None


def load_responses(paths, study: dict | None = None) -> tuple[list[dict], list[str], str]:
    """``(usable responses, one line per file left out, study id)``."""
    files = _files(paths)
    parsed, problems = [], []
    for f in files:
        try:
            r = json.loads(f.read_text())
        except UnicodeDecodeError:
            problems.append(f"{f}: not a text file; left out")
            continue
        except ValueError as e:
            problems.append(
                f"{f}: not valid JSON, truncated or damaged ({e.msg}, line {e.lineno} column {e.colno}); left out "
                f"(ask the participant for the file again)"
            )
            continue
        if not isinstance(r, dict) or r.get("format") != RESPONSES_FORMAT:
            problems.append(
                f"{f}: not a deltabench study response file (format {r.get('format') if isinstance(r, dict) else None!r}); left out"
            )
            continue
        parsed.append((f, r))
    if study is not None:
        sid = study["study_id"]
    else:
        ids = Counter(r.get("study_id") for _, r in parsed)
        if not ids:
            raise ValueError("no readable response file: " + " | ".join(problems))
        sid = ids.most_common(1)[0][0]
    good, seen = [], {}
    for f, r in parsed:
        if r.get("study_id") != sid:
            problems.append(
                f"{f}: responses to study {r.get('study_id')!r}, not this study {sid!r}"
                f"{' (--study)' if study is not None else ''}; left out (analyse each study's files apart)"
            )
            continue
        pid = str(r.get("participant") or "").strip()
        if not pid:
            problems.append(f"{f}: no participant id; left out")
            continue
        if pid in seen:
            problems.append(f"{f}: participant {pid!r} already answered in {seen[pid]}; this duplicate is left out")
            continue
        why = check_response(r, study)
        if why:
            problems.append(f"{f}: participant {pid!r}: {why}; left out")
            continue
        seen[pid] = f
        good.append({**r, "participant": pid, "file": str(f)})
    if not good:
        raise ValueError("no usable response file: " + " | ".join(problems))
    return good, problems, sid


# --- statistics ---------------------------------------------------------------------------------


def _cluster_rate(values: np.ndarray, clusters: np.ndarray, seed: int, n_boot: int = N_BOOT):
    from deltabench.stats import mean_interval

    return mean_interval(values, clusters, n_boot=n_boot, seed=seed)


BT_PRIOR = 0.1  # pseudo-wins each way of every compared pair: a finite fit when a method never wins


def bradley_terry(wins: np.ndarray, prior: float = BT_PRIOR, iters: int = 10000, tol: float = 1e-10) -> np.ndarray:
    """Bradley–Terry strengths (summing to 1) from ``wins[i, j]`` = times i beat j, by the MM
    algorithm of Hunter (2004, eq. 3): ``p_i <- W_i / sum_j n_ij / (p_i + p_j)``. ``prior``
    pseudo-wins are added both ways to every pair compared at least once: without them a method
    that never (or always) wins has no finite maximum-likelihood strength and MM creeps towards
    the boundary; 0 gives the plain maximum-likelihood fit."""
    wins = np.asarray(wins, dtype=np.float64)
    compared = (wins + wins.T) > 0
    wins = wins + prior * compared
    np.fill_diagonal(wins, 0.0)
    n = wins + wins.T
    w = wins.sum(1)
    p = np.full(len(wins), 1.0 / len(wins))
    for _ in range(iters):
        denom = (n / (p[:, None] + p[None, :])).sum(1)
        new = np.where(denom > 0, w / np.where(denom > 0, denom, 1.0), p)
        new = new / new.sum()
        if np.max(np.abs(new - p)) < tol:
            return new
        p = new
    return p


def fleiss_kappa(counts: np.ndarray) -> tuple[float, float]:
    """``(kappa, mean pairwise agreement P̄)`` of ``counts[item, category]`` (raters per item may vary,
    each item needs two or more): Fleiss (1971), with P_i over each item's own rater count."""
    counts = np.asarray(counts, dtype=np.float64)
    n = counts.sum(1)
    p_i = (np.square(counts).sum(1) - n) / (n * (n - 1))
    p_bar = float(p_i.mean())
    p_j = counts.sum(0) / counts.sum()
    p_e = float(np.square(p_j).sum())
    kappa = (p_bar - p_e) / (1 - p_e) if p_e < 1 else float("nan")
    return float(kappa), p_bar


def analyze(
    responses: list[dict], study: dict | None, max_check_failures: int = 0, seed: int = 0, n_boot: int = N_BOOT
) -> dict:
    methods = list(study["methods"]) if study else list(responses[0]["methods"])
    checks_of = {}
    excluded, kept = [], []
    for r in responses:
        ch = [t for t in r["trials"] if t["kind"] == "check"]
        failed = sum(1 for t in ch if t.get(t["accuracy"]) != "edit")
        checks_of[r["participant"]] = (len(ch) - failed, len(ch))
        if failed > max_check_failures:
            excluded.append(
                {
                    "participant": r["participant"],
                    "file": r["file"],
                    "checks_passed": len(ch) - failed,
                    "checks": len(ch),
                }
            )
        else:
            kept.append(r)
    out = {
        "study_id": (study or responses[0])["study_id"],
        "methods": methods,
        "participants": len(responses),
        "included": len(kept),
        "excluded": excluded,
        "max_check_failures": max_check_failures,
        "attention": {p: {"passed": a, "of": b} for p, (a, b) in checks_of.items()},
        "n_boot": n_boot,
        "pairs": [],
        "methods_rates": [],
        "bradley_terry": [],
        "agreement": [],
        "per_item": [],
    }
    if not kept:
        return out
    pids = sorted({r["participant"] for r in kept})
    pidx = {p: i for i, p in enumerate(pids)}
    rows = []  # (question, participant index, item, first method, second method, chosen method)
    for r in kept:
        for t in r["trials"]:
            if t["kind"] != "round":
                continue
            pair = sorted([t["left"], t["right"]], key=methods.index)
            for q in QUESTIONS:
                rows.append((q, pidx[r["participant"]], int(t["item"]), pair[0], pair[1], t[t[q]]))
    for qi, q in enumerate(QUESTIONS):
        qrows = [x for x in rows if x[0] == q]
        pairs = sorted(
            {(a, b) for _, _, _, a, b, _ in qrows}, key=lambda ab: (methods.index(ab[0]), methods.index(ab[1]))
        )
        for a, b in pairs:
            sel = [x for x in qrows if (x[3], x[4]) == (a, b)]
            v = np.array([x[5] == a for x in sel], dtype=np.float64)
            c = np.array([x[1] for x in sel])
            iv = _cluster_rate(v, c, seed, n_boot)
            out["pairs"].append(
                {
                    "question": q,
                    "method": a,
                    "versus": b,
                    "rate": iv.value,
                    "lo": iv.lo,
                    "hi": iv.hi,
                    "judgements": iv.n,
                    "participants": iv.clusters,
                }
            )
            out["pairs"].append(
                {
                    "question": q,
                    "method": b,
                    "versus": a,
                    "rate": 1 - iv.value,
                    "lo": 1 - iv.hi,
                    "hi": 1 - iv.lo,
                    "judgements": iv.n,
                    "participants": iv.clusters,
                }
            )
        for m in methods:
            sel = [x for x in qrows if m in (x[3], x[4])]
            if not sel:
                continue
            iv = _cluster_rate(
                np.array([x[5] == m for x in sel], dtype=np.float64), np.array([x[1] for x in sel]), seed, n_boot
            )
            out["methods_rates"].append(
                {
                    "question": q,
                    "method": m,
                    "rate": iv.value,
                    "lo": iv.lo,
                    "hi": iv.hi,
                    "judgements": iv.n,
                    "participants": iv.clusters,
                }
            )
        if len(methods) > 2:
            k = len(methods)
            per_p = np.zeros((len(pids), k, k))
            for _, p, _, a, b, ch in qrows:
                win, lose = (a, b) if ch == a else (b, a)
                per_p[p, methods.index(win), methods.index(lose)] += 1
            strength = bradley_terry(per_p.sum(0))
            from deltabench.stats import resample_indices

            draws = np.array(
                [bradley_terry(per_p[ix].sum(0)) for ix in resample_indices(len(pids), min(n_boot, 500), seed)]
            )
            order = np.argsort(-strength)
            for rank, i in enumerate(order, 1):
                lo, hi = np.quantile(draws[:, i], [0.025, 0.975])
                out["bradley_terry"].append(
                    {
                        "question": q,
                        "rank": rank,
                        "method": methods[i],
                        "prior": BT_PRIOR,
                        "strength": float(strength[i]),
                        "lo": float(lo),
                        "hi": float(hi),
                    }
                )
        # agreement: items answered by two or more included participants
        by_item: dict[int, list] = {}
        for _, _, item, a, b, ch in qrows:
            by_item.setdefault(item, [a, b, 0, 0])
            by_item[item][2 if ch == a else 3] += 1
        for item, (a, b, na, nb) in sorted(by_item.items()):
            out["per_item"].append(
                {"question": q, "item": item, "first": a, "second": b, "first_chosen": na, "second_chosen": nb}
            )
        counts = np.array([[na, nb] for a, b, na, nb in by_item.values() if na + nb >= 2], dtype=np.float64)
        if len(counts) >= 1 and len(pids) >= 2:
            kappa, agree = fleiss_kappa(counts)
            rng = np.random.default_rng(seed + 1 + qi)
            bk, ba = [], []
            for ix in rng.integers(0, len(counts), size=(min(n_boot, 1000), len(counts))):
                k_, a_ = fleiss_kappa(counts[ix])
                bk.append(k_)
                ba.append(a_)
            bk, ba = np.array(bk), np.array(ba)
            kq = np.nanquantile(bk, [0.025, 0.975]) if np.isfinite(bk).any() else (np.nan, np.nan)
            out["agreement"].append(
                {
                    "question": q,
                    "items": len(counts),
                    "raters_per_item": float(counts.sum(1).mean()),
                    "fleiss_kappa": kappa,
                    "kappa_lo": float(kq[0]),
                    "kappa_hi": float(kq[1]),
                    "percent_agreement": agree,
                    "agreement_lo": float(np.quantile(ba, 0.025)),
                    "agreement_hi": float(np.quantile(ba, 0.975)),
                }
            )
    return out


# --- writing ------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def table_rows(res: dict) -> list[dict]:
    """One row per question and method: its preference rate (two methods: against the other;
    more: its win rate over all its comparisons)."""
    rows = res["methods_rates"]
    return [
        {
            "question": QUESTION_TITLES[r["question"]],
            "method": r["method"],
            "preferred_pct": _pct(r["rate"]),
            "ci95_lo_pct": _pct(r["lo"]),
            "ci95_hi_pct": _pct(r["hi"]),
            "judgements": r["judgements"],
            "participants": r["participants"],
        }
        for r in rows
    ]


def _tex(s: str) -> str:
    return "".join({"&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$"}.get(c, c) for c in str(s))


def write_tables(res: dict, out: Path) -> None:
    import csv

    rows = table_rows(res)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["question"])
        w.writeheader()
        w.writerows(rows)
    head = "| question | method | preferred (%) | 95% CI | judgements | participants |\n|---|---|---:|---|---:|---:|\n"
    md = head + "".join(
        f"| {r['question']} | {r['method']} | {r['preferred_pct']} | "
        f"[{r['ci95_lo_pct']}, {r['ci95_hi_pct']}] | {r['judgements']} | {r['participants']} |\n"
        for r in rows
    )
    (out / "table.md").write_text(md)
    tex = [
        "\\begin{tabular}{llrcrr}",
        "\\toprule",
        "Question & Method & Preferred (\\%) & 95\\% CI & Judgements & Participants \\\\",
        "\\midrule",
    ]
    tex += [
        f"{_tex(r['question'])} & {_tex(r['method'])} & {r['preferred_pct']} & "
        f"[{r['ci95_lo_pct']}, {r['ci95_hi_pct']}] & {r['judgements']} & {r['participants']} \\\\"
        for r in rows
    ]
    tex += ["\\bottomrule", "\\end{tabular}", ""]
    (out / "table.tex").write_text("\n".join(tex).replace("–", "--"))


def figure(res: dict, path: Path) -> Path | None:
    """The paper's Figure 6 style: per question, a horizontal bar split into each method's share
    (two methods), or each method's win rate (more), with 95% interval bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deltabench.tradeoff import OKABE_ITO

    methods = res["methods"]
    rates = {(r["question"], r["method"]): r for r in res["methods_rates"]}
    qs = [q for q in QUESTIONS if any((q, m) in rates for m in methods)]
    if not qs:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.9 * len(qs) * (1 if len(methods) == 2 else len(methods) / 2)))
    if len(methods) == 2:
        a, b = methods
        for y, q in enumerate(reversed(qs)):
            ra = rates[(q, a)]
            ax.barh(y, ra["rate"] * 100, color=OKABE_ITO[0], height=0.55, label=a if y == 0 else None)
            ax.barh(
                y,
                (1 - ra["rate"]) * 100,
                left=ra["rate"] * 100,
                color=OKABE_ITO[1],
                height=0.55,
                label=b if y == 0 else None,
            )
            ax.errorbar(
                ra["rate"] * 100,
                y,
                xerr=[[100 * (ra["rate"] - ra["lo"])], [100 * (ra["hi"] - ra["rate"])]],
                color="black",
                capsize=5,
                lw=1.5,
            )
            ax.text(2, y, f"{_pct(ra['rate'])}%", va="center", ha="left", color="white", fontweight="bold")
            ax.text(98, y, f"{_pct(1 - ra['rate'])}%", va="center", ha="right", color="black", fontweight="bold")
        ax.axvline(50, color="#555", ls=":", lw=1)
        ax.set_yticks(range(len(qs)), [QUESTION_TITLES[q] for q in reversed(qs)])
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"preferred (%), 95% interval over participants (n = {res['included']})")
    else:
        h = 0.8 / len(methods)
        for k, m in enumerate(methods):
            ys, xs, lo, hi = [], [], [], []
            for y, q in enumerate(reversed(qs)):
                r = rates.get((q, m))
                if r:
                    ys.append(y + (len(methods) / 2 - k - 0.5) * h)
                    xs.append(100 * r["rate"])
                    lo.append(100 * (r["rate"] - r["lo"]))
                    hi.append(100 * (r["hi"] - r["rate"]))
            ax.barh(
                ys,
                xs,
                height=h * 0.9,
                color=OKABE_ITO[k % len(OKABE_ITO)],
                label=m,
                xerr=[lo, hi],
                capsize=3,
                error_kw={"lw": 1},
            )
        ax.axvline(50, color="#555", ls=":", lw=1)
        ax.set_yticks(range(len(qs)), [QUESTION_TITLES[q] for q in reversed(qs)])
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"wins over all comparisons (%), 95% interval over participants (n = {res['included']})")
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(methods) == 2 else -0.2), ncol=len(methods), frameon=False
    )
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path


def _html_table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html(res: dict, out: Path, fig: Path | None) -> None:
    def fmt(rows, keys):
        return [{k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in r.items() if k in keys} for r in rows]

    parts = [
        f"<h1>User study {html.escape(res['study_id'])}</h1>",
        f"<p>{res['participants']} participants' files read, {res['included']} included, "
        f"{len(res['excluded'])} excluded by attention checks (more than {res['max_check_failures']} failed); "
        f"{len(res['skipped'])} files left out. Intervals: 95% percentile, bootstrap over participants "
        f"({res['n_boot']} resamples).</p>",
    ]
    if fig:
        parts.append(f'<img src="{fig.name}" alt="preference per question" style="max-width:100%">')
    parts += [
        "<h2>Preference</h2>",
        _html_table(
            table_rows(res),
            ["question", "method", "preferred_pct", "ci95_lo_pct", "ci95_hi_pct", "judgements", "participants"],
        ),
    ]
    if res["bradley_terry"]:
        parts += [
            "<h2>Bradley–Terry ranking</h2>",
            _html_table(
                fmt(res["bradley_terry"], {"question", "rank", "method", "strength", "lo", "hi"}),
                ["question", "rank", "method", "strength", "lo", "hi"],
            ),
        ]
    if res["agreement"]:
        cols = [
            "question",
            "items",
            "raters_per_item",
            "fleiss_kappa",
            "kappa_lo",
            "kappa_hi",
            "percent_agreement",
            "agreement_lo",
            "agreement_hi",
        ]
        parts += ["<h2>Agreement between raters</h2>", _html_table(fmt(res["agreement"], set(cols)), cols)]
    parts += [
        "<h2>Exclusions</h2>",
        _html_table(res["excluded"], ["participant", "file", "checks_passed", "checks"])
        if res["excluded"]
        else "<p>None.</p>",
    ]
    parts += [
        "<h2>Files left out</h2>",
        "<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in res["skipped"]) + "</ul>"
        if res["skipped"]
        else "<p>None.</p>",
    ]
    style = (
        "body{font-family:system-ui,sans-serif;max-width:960px;margin:1rem auto;padding:0 1rem}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem}"
    )
    (out / "index.html").write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>User study '
        f"{html.escape(res['study_id'])}</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def analyze_files(
    paths,
    out: str | Path,
    study: str | Path | None = None,
    max_check_failures: int = 0,
    seed: int = 0,
    log=print,
    warn=None,
) -> dict:
    """Read ``paths`` (response files or folders of them), analyse, write ``out``; return the analysis."""
    import sys

    warn = warn or (lambda s: print(f"deltabench: warning: {s}", file=sys.stderr))
    if isinstance(max_check_failures, bool) or not isinstance(max_check_failures, int) or max_check_failures < 0:
        raise ValueError(f"--max-check-failures must be a whole number of at least 0, got {max_check_failures!r}")
    meta = load_study(study)
    responses, skipped, sid = load_responses(paths, meta)
    for s in skipped:
        warn(s)
    res = analyze(responses, meta, max_check_failures, seed)
    res["skipped"] = skipped
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(res, out)
    fig = figure(res, out / "figure.png") if res["methods_rates"] else None
    write_html(res, out, fig)
    (out / "analysis.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    for r in res["methods_rates"]:
        log(
            f"{QUESTION_TITLES[r['question']]:<22} {r['method']:<20} {_pct(r['rate']):>5}% "
            f"[{_pct(r['lo'])}, {_pct(r['hi'])}]  ({r['judgements']} judgements, {r['participants']} participants)"
        )
    for x in res["excluded"]:
        log(f"excluded {x['participant']}: passed {x['checks_passed']} of {x['checks']} attention checks")
    log(
        f"{res['included']} of {res['participants']} participants analysed; {len(skipped)} files left out; "
        f"{out / 'index.html'}"
    )
    return res
