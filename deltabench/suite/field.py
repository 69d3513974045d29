"""The field's columns (:func:`deltabench.metrics.field.score_field`) of scored edits, as files.

Used by ``deltabench score SUITE EDITS`` (masks from the suite, its target captions, the domain's
CLIP) and ``deltabench score --suite pie-bench|magicbrush DIR EDITS`` (the benchmark's own masks,
captions and targets). Written into the scoring's folder:

- ``field.csv``: one row per (editor, edit): ``editor``, ``id``, then every column of
  :class:`~deltabench.metrics.field.FieldScores` (empty where the pair is excluded);
- ``field_summary.csv``: one row per (editor, column): ``mean`` over the counted pairs, ``n``
  counted, ``excluded`` left out (never a NaN inside a mean; ``mean`` empty when every pair was
  excluded), ``higher_is_better``, ``note`` (the exclusion's reason, the backbone). A column family
  that is absent (LPIPS, the structure distance and MagicBrush's DINO-I without their weights files,
  CLIP-T without captions) is one row per editor with ``n`` 0 and the reason in ``note``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

FIELD_CSV = "field.csv"
FIELD_SUMMARY_CSV = "field_summary.csv"


def _family(key: str) -> str:
    """The notes key a column belongs to: ``lpips_unedited[alex]`` -> ``lpips``."""
    base = key.split("[", 1)[0]
    if base.startswith("lpips"):
        return "lpips"
    if base.startswith("structure_distance"):
        return "structure_distance"
    if base.startswith("clip"):
        return "clip"
    return base


def field_frames(scores: dict, ids: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(per-edit rows, summary rows)`` of ``scores`` (``{editor: FieldScores}``), ``ids``
    (``{editor: [edit id per pair]}``)."""
    rows, summ = [], []
    for name, fs in scores.items():
        keys = list(fs.columns)
        for i, eid in enumerate(ids[name]):
            rows.append({"editor": name, "id": eid, **{k: float(fs.columns[k][i]) for k in keys}})
        s = fs.summary()
        for k in keys:
            notes = []
            if k in fs.excluded:
                notes.append(f"excluded: {fs.excluded[k]['reason']}")
            fam = fs.notes.get(_family(k))
            if fam:
                notes.append(fam)
            summ.append(
                {
                    "editor": name,
                    "column": k,
                    "label": fs.labels[k],
                    "mean": s[k]["mean"],
                    "n": s[k]["n"],
                    "excluded": s[k]["excluded"],
                    "higher_is_better": bool(fs.higher_is_better[k]),
                    "note": "; ".join(notes),
                }
            )
        for fam, note in fs.notes.items():
            if str(note).startswith("absent"):
                summ.append(
                    {
                        "editor": name,
                        "column": fam,
                        "label": fam,
                        "mean": None,
                        "n": 0,
                        "excluded": 0,
                        "higher_is_better": None,
                        "note": note,
                    }
                )
    return pd.DataFrame(rows), pd.DataFrame(summ)


def write_field(out: Path, scores: dict, ids: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``field.csv`` and ``field_summary.csv`` into ``out``; returns both frames."""
    per, summ = field_frames(scores, ids)
    per.to_csv(Path(out) / FIELD_CSV, index=False, float_format="%.9g")
    summ.to_csv(Path(out) / FIELD_SUMMARY_CSV, index=False, float_format="%.9g")
    return per, summ


def field_table(summ: pd.DataFrame) -> str:
    """The field summary as a short text table: one line per editor, ``column mean (n=, excluded=)``,
    then the absent column families once with their reason."""
    lines, absent = [], {}
    for name, g in summ.groupby("editor", sort=False):
        cells = []
        for _, r in g.iterrows():
            if r["n"] == 0 and r["excluded"] == 0 and str(r["note"]).startswith("absent"):
                absent.setdefault(r["column"], r["note"])
                continue
            m = r["mean"]
            v = "-" if m is None or (isinstance(m, float) and math.isnan(m)) else f"{m:.4g}"
            ex = f", {int(r['excluded'])} excluded" if r["excluded"] else ""
            cells.append(f"{r['column']} {v} (n={int(r['n'])}{ex})")
        lines.append(f"{name}: " + "; ".join(cells))
    for fam, note in absent.items():
        lines.append(f"{fam}: {note}")
    return "\n".join(["field metrics (deltabench.metrics.field; field.csv, field_summary.csv):", *lines])


def suite_masks(suite) -> np.ndarray:
    """The suite's per-edit masks as ``bool [E, R, R]`` in the order of ``edits.json`` (True: may change)."""
    from PIL import Image

    return np.stack([np.asarray(Image.open(suite.root / e["mask"]).convert("L")) > 0 for e in suite.entries])


def score_editor(
    domain,
    backbones,
    inputs,
    edits,
    masks,
    prompts: Sequence[str] | None,
    references=None,
    batch: int = 16,
    extra_notes: dict | None = None,
):
    """:func:`~deltabench.metrics.field.score_field` of one editor with the domain's CLIP and
    ``backbones`` (:func:`~deltabench.metrics.field.field_backbones`)."""
    import torch

    from deltabench.metrics.field import domain_clip, score_field

    clip = domain_clip(domain)
    notes = {
        **backbones.notes,
        "clip": f"CLIP-I/CLIP-T cosines with the domain's CLIP: {clip.name}",
        **(extra_notes or {}),
    }
    with torch.no_grad():
        return score_field(
            inputs.float(),
            edits.float(),
            masks,
            prompts,
            clip,
            lpips=backbones.lpips,
            structure=backbones.structure,
            references=references,
            dino=backbones.dino,
            notes=notes,
            batch=batch,
        )
