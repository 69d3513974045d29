"""``deltabench suite to-pie-bench SUITE OUT [--edits EDITS]``: a suite in PIE-Bench's layout.

Every edit of the suite becomes one ``mapping_file.json`` key (its id): ``image_path``
``deltabench/<id>.png`` (the test image's bytes, copied), ``original_prompt`` / ``editing_prompt``
the source and target captions, ``editing_instruction`` the suite's instruction phrasing,
``editing_type_id`` "0" (PIE-Bench's random-editing category), an empty ``blended_word`` and the
suite's mask run-length encoded (:func:`deltabench.interop.write_pie_bench`). ``--edits``: a folder
of ``<id>.png`` (as ``deltabench score SUITE EDITS`` reads) written to
``output/<name>/annotation_images/`` for PIE-Bench's evaluator. ``deltabench_suite.json`` beside
records the suite it came from. PIE-Bench's own scripts decode masks at 512 x 512: their
numbers need 512-px images; ``deltabench score --suite pie-bench`` reads any size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def suite_entries(suite) -> list:
    """The suite's edits as :class:`~deltabench.interop.BenchEntry` (mask: ``bool [R, R]``)."""
    from PIL import Image

    from deltabench.interop import BenchEntry

    out = []
    for e in suite.entries:
        mask = np.asarray(Image.open(suite.root / e["mask"]).convert("L")) > 0
        out.append(BenchEntry(e["id"], suite.root / e["image"], e["source"], e["target"], e["instruction"], mask))
    return out


def to_pie_bench(suite, out, edits=None, method: str | None = None) -> Path:
    """Write the suite in ``suite`` (a folder or :class:`~deltabench.suite.format.Suite`) in PIE-Bench's
    layout into ``out`` (a new or empty folder); ``edits``: a folder of ``<id>.png``, written as
    method ``method`` (default: the folder's name). Inputs are checked before anything is written."""
    from deltabench.interop import write_pie_bench
    from deltabench.suite.format import Suite, read_suite, sha256
    from deltabench.suite.score import ID_PATTERN, check_folder

    s = suite if isinstance(suite, Suite) else read_suite(suite)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUT {out} is a file; give a new folder for the PIE-Bench layout")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"OUT {out} is not empty; give a new or empty folder for the PIE-Bench layout")
    paths = None
    if edits is not None:
        files = check_folder(edits, s.ids, s.resolution, "--edits", ID_PATTERN, "id")
        paths = {i: p for i, p in zip(s.ids, files)}
        method = method or Path(edits).resolve().name
    write_pie_bench(out, suite_entries(s), paths, method=method or "deltabench")
    info = {
        "from_suite": str(s.root.resolve()),
        "suite_manifest_sha256": sha256(s.root / "manifest.json"),
        "world": s.manifest["world"],
        "world_config_hash": s.manifest["world_config_hash"],
        "resolution": s.resolution,
        "edits": len(s.entries),
        "mask_rule": s.manifest.get("mask_rule"),
        "method": method if edits is not None else None,
        "note": "PIE-Bench's evaluator decodes masks at 512 x 512 (mask_decode's default) and marks the "
        "one-pixel border edited; deltabench's read_pie_bench decodes at each image's size",
    }
    (out / "deltabench_suite.json").write_text(json.dumps(info, indent=1))
    return out
