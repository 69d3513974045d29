"""``deltabench score --suite pie-bench|magicbrush DIR EDITS [EDITS ...]``: another benchmark's
items, read in its own layout, and one or more editors' edits of them, scored with that
benchmark's own columns (:mod:`deltabench.metrics.field`).

- PIE-Bench (:func:`~deltabench.interop.pie_bench.load_pie_bench_pairs`): each EDITS folder holds
  ``annotation_images/<image_path>`` (or ``<image_path>``) per key, as PnPInversion's editors save
  them; columns: the structure distance, PSNR/SSIM/MSE/LPIPS of the unedited region (the
  benchmark's masks, border rule included), CLIP similarity of the whole edit and of the edited
  region to the target caption, and CLIP-I of input and edit.
- MagicBrush (:func:`~deltabench.interop.magicbrush.load_magicbrush_pairs`): each EDITS folder holds
  ``<id>/<id>_1.png`` / ``<id>_inde_<k>.png``; columns: L1 and L2 to the ground-truth target,
  CLIP-I (input-edit, edit-target), DINO-I (MagicBrush's DINO: DINO ViT-S/16 CLS cosine of edit and
  target, :mod:`deltabench.metrics.dino`) and, with ``--captions``, CLIP-T of the edit and the target's caption.

There is no ground truth of the scene here, so no accuracy, disentanglement or identity columns.
The CLIP is the ``--world`` domain's, named in every CLIP column; LPIPS, the structure
distance and DINO-I need the weights registry's ImageNet / DINO files and are otherwise absent with the
reason (:func:`~deltabench.metrics.field.field_backbones`). The folder written holds
``manifest.json``, ``field.csv`` and ``field_summary.csv`` (:mod:`deltabench.suite.field`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

LAYOUTS = ("pie-bench", "magicbrush")
SCORED_BY = "deltabench score --suite LAYOUT DIR EDITS"


def _check_out(out: Path) -> None:
    from deltabench.harness.rundir import check_replaceable_out

    check_replaceable_out(out, "scored_by", SCORED_BY, "deltabench score --suite", ValueError)


def load_pairs(layout: str, root, edits, captions=None) -> dict:
    """One editor's pairs of ``layout``: ``{"entries", "inputs", "edits", "masks", "references"}``
    (images ``[N, 3, H, W]`` in [-1, 1]); every problem is one ``ValueError`` (from the readers)."""
    from deltabench.interop.magicbrush import load_magicbrush_pairs
    from deltabench.interop.pie_bench import load_pie_bench_pairs

    if layout == "pie-bench":
        entries, src, ed, masks = load_pie_bench_pairs(root, edits)
        return {"entries": entries, "inputs": src, "edits": ed, "masks": masks, "references": None}
    entries, src, ed, refs = load_magicbrush_pairs(root, edits, captions)
    return {"entries": entries, "inputs": src, "edits": ed, "masks": None, "references": refs}


def score_bench(
    layout: str,
    root,
    edits: dict,
    out=None,
    world: str = "synthfaces",
    captions=None,
    batch: int = 16,
    device: str = "auto",
    log=print,
) -> pd.DataFrame:
    """Score ``edits`` (``{editor name: folder}``) of the ``layout`` benchmark in ``root`` into
    ``out`` (default: a new temporary folder); returns the field summary (``attrs["out"]``,
    ``attrs["per_edit"]``, ``attrs["scores"]``). Every input is read and checked before any model loads."""
    from deltabench.domain import load_domain
    from deltabench.metrics.field import field_backbones
    from deltabench.suite.field import score_editor, write_field
    from deltabench.utils import resolve_device
    from deltabench.world import store

    if layout not in LAYOUTS:
        raise ValueError(
            f"--suite {layout!r}: give one of {', '.join(LAYOUTS)} (or leave it out for a deltabench "
            f"suite or folders of images)"
        )
    if captions is not None and layout != "magicbrush":
        raise ValueError(
            f"--captions applies to --suite magicbrush (its local_captions.json); {layout} items carry "
            f"their own captions: drop --captions"
        )
    if not edits:
        raise ValueError("give at least one EDITS folder")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch must be a whole number of at least 1, got {batch!r}")
    where = (
        "annotation_images/<image_path> per mapping_file.json key"
        if layout == "pie-bench"
        else "<image id>/<image id>_1.png (and _inde_<k>.png) per turn"
    )
    pairs = {}
    for name, folder in edits.items():
        if not Path(folder).is_dir():
            raise ValueError(
                f"EDITS {folder} {'is a file' if Path(folder).exists() else 'does not exist'}; give a "
                f"folder of one editor's edits laid out as {layout} reads them ({where})"
            )
        pairs[name] = load_pairs(layout, root, folder, captions)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="deltabench-score-"))
    _check_out(out)

    domain = load_domain(world, device=resolve_device(device))
    backbones = field_backbones(domain, device=domain.device, dino_i=layout == "magicbrush")
    scores, ids = {}, {}
    for name, p in pairs.items():
        targets = [e.target for e in p["entries"]]
        prompts, extra = targets, {}
        if not all(t.strip() for t in targets):
            prompts = None
            extra["clip_t"] = "absent: no target caption for every item" + (
                " (give MagicBrush's captions file with --captions, e.g. local_captions.json)"
                if layout == "magicbrush"
                else ""
            )
        log(f"scoring {name} ({len(targets)} edits)")
        scores[name] = score_editor(
            domain,
            backbones,
            p["inputs"],
            p["edits"],
            p["masks"],
            prompts,
            references=p["references"],
            batch=batch,
            extra_notes=extra,
        )
        ids[name] = [e.id for e in p["entries"]]
    out.mkdir(parents=True, exist_ok=True)
    for f in ("manifest.json", "field.csv", "field_summary.csv"):
        (out / f).unlink(missing_ok=True)
    manifest = {
        "scored_by": SCORED_BY,
        "layout": layout,
        "dir": str(Path(root).resolve()),
        "captions": str(Path(captions).resolve()) if captions is not None else None,
        "edits": {n: str(Path(f).resolve()) for n, f in edits.items()},
        "world": world,
        "clip": domain.clip_name,
        "notes": backbones.notes,
        "items": len(next(iter(ids.values()))),
        **store.describe_environment(),
    }
    store.write_json(manifest, out / "manifest.json")
    per, summ = write_field(out, scores, ids)
    summ.attrs.update({"out": out, "per_edit": per, "scores": scores, "manifest": manifest})
    return summ
