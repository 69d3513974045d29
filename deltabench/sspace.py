"""Style-space (S) helpers shared by every method that edits in S.

DeltaEdit and StyleCLIP-GD edit only the non-toRGB layers (official DeltaEdit
``utils/stylespace_util.py`` and StyleCLIP ``global_directions``: 6048 of the 9088 channels at
1024px); the toRGB styles stay as the source's.
"""
from __future__ import annotations

import torch


def edit_indices(slayout) -> tuple[int, ...]:
    return slayout.non_torgb_indices


def edit_width(slayout) -> int:
    return slayout.total_non_torgb


def gather(styles: list[torch.Tensor], slayout) -> torch.Tensor:
    """Non-toRGB styles -> ``s: [B, S_edit]`` in layout order."""
    return torch.cat([styles[i] for i in edit_indices(slayout)], dim=1)


def scatter(styles: list[torch.Tensor], s_edit: torch.Tensor, slayout) -> list[torch.Tensor]:
    """Replace the non-toRGB styles by the columns of ``s_edit: [B, S_edit]``; toRGB kept."""
    idx = edit_indices(slayout)
    if s_edit.shape[1] != edit_width(slayout):
        raise ValueError(f"edited styles have width {s_edit.shape[1]}, the layout edits {edit_width(slayout)}")
    parts = torch.split(s_edit, [slayout.widths[i] for i in idx], dim=1)
    out = list(styles)
    for i, p in zip(idx, parts):
        out[i] = p
    return out

