"""One benchmark item, whatever layout it was read from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class BenchEntry:
    """An (image, edit request) item in the shape of a suite's ``edits.json`` entry.

    ``mask``: ``bool [H, W]``, True where the edit may change the image, or None (no mask).
    ``reference``: a ground-truth edited image (MagicBrush's target), or None. ``meta``: the
    layout's other fields, kept as read (PIE-Bench ``editing_type_id``, ``blended_word``)."""

    id: str
    image: Path
    source: str
    target: str
    instruction: str
    mask: np.ndarray | None = None
    reference: Path | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``edits.json``-like fields (the mask as its shape and edited-pixel count)."""
        d = {
            "id": self.id,
            "image": str(self.image),
            "source": self.source,
            "target": self.target,
            "instruction": self.instruction,
        }
        if self.mask is not None:
            d["mask_shape"], d["mask_pixels"] = list(self.mask.shape), int(self.mask.sum())
        if self.reference is not None:
            d["reference"] = str(self.reference)
        return {**d, **({"meta": dict(self.meta)} if self.meta else {})}
