"""Style-space (S) helpers shared by every method that edits in S.

DeltaEdit and StyleCLIP-GD edit only the non-toRGB layers (official DeltaEdit
``utils/stylespace_util.py`` and StyleCLIP ``global_directions``: 6048 of the 9088 channels at
1024px); the toRGB styles stay as the source's. ``torgb=True`` edits the toRGB styles too
(appended after the others, in layout order): see ``DeltaEditConfig.torgb`` for when that is needed.
"""

from __future__ import annotations

import torch


def edit_indices(slayout, torgb: bool = False) -> tuple[int, ...]:
    if torgb:
        return tuple(slayout.non_torgb_indices) + tuple(i for i, t in enumerate(slayout.is_torgb) if t)
    return slayout.non_torgb_indices


def edit_width(slayout, torgb: bool = False) -> int:
    return sum(slayout.widths[i] for i in edit_indices(slayout, torgb))


def gather(styles: list[torch.Tensor], slayout, torgb: bool = False) -> torch.Tensor:
    """Edited styles -> ``s: [B, S_edit]``: non-toRGB in layout order (then toRGB if ``torgb``)."""
    return torch.cat([styles[i] for i in edit_indices(slayout, torgb)], dim=1)


def scatter(styles: list[torch.Tensor], s_edit: torch.Tensor, slayout, torgb: bool = False) -> list[torch.Tensor]:
    """Replace the edited styles by the columns of ``s_edit: [B, S_edit]``; the rest kept."""
    idx = edit_indices(slayout, torgb)
    if s_edit.shape[1] != edit_width(slayout, torgb):
        raise ValueError(f"edited styles have width {s_edit.shape[1]}, the layout edits {edit_width(slayout, torgb)}")
    parts = torch.split(s_edit, [slayout.widths[i] for i in idx], dim=1)
    out = list(styles)
    for i, p in zip(idx, parts):
        out[i] = p
    return out
