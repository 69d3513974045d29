"""DeltaMapper (DeltaEdit, Lyu et al. CVPR 2023), generic over a generator's S layout.

Follows the official ``delta_mapper.py``: the non-toRGB style vector is split into coarse
(first 3 layers), medium (next 4) and fine (the rest) groups. Each group has a Style module
on the source styles s1, a Condition module on the CLIP condition [i1 ; Δi] and a Fusion
module on their concatenation, each 4 equalised-lr linear layers (lr_mul 0.01, fused leaky
ReLU 0.2·√2). At 1024px the coarse/medium groups are 3 and 4 layers of 512 channels, and the
official code maps each layer with one shared module (``view(-1, 3, 512)``); the fine group is
flattened (2464 channels). That gives 82,660,576 parameters.

Generalisation (ours): a coarse/medium group whose layers have unequal widths (small
generators) cannot share one per-layer module, so it is flattened like the fine group.
``torgb=True`` (not in the official model) adds a fourth, flattened group over the toRGB
styles, with its own Style/Condition/Fusion modules; see ``DeltaEditConfig.torgb``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from deltabench.models.ops import EqualLinear, PixelNorm

GROUPS = ("coarse", "medium", "fine")


class Mapper(nn.Module):
    """``[PixelNorm] -> 4 x EqualLinear(lr_mul=0.01, fused_lrelu)`` (official ``Mapper``)."""

    def __init__(self, in_dim: int, out_dim: int, norm: bool = True, num_layers: int = 4):
        super().__init__()
        self.norm = PixelNorm() if norm else None
        dims = [in_dim] + [out_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(a, b, lr_mul=0.01, activation="fused_lrelu") for a, b in zip(dims[:-1], dims[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C] or [B, L, C]. The official PixelNorm (rosinality) normalises over dim 1,
        # which for the per-layer [B, L, C] groups is the layer axis; we keep that quirk to
        # stay faithful to the released model.
        if self.norm is not None:
            x = self.norm(x)
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # bias and activation act on the last (feature) axis
        for layer in self.layers:
            x = layer(x)
        return x.reshape(*shape[:-1], x.shape[-1])


@dataclass(frozen=True)
class GroupSpec:
    name: str
    widths: tuple[int, ...]  # per-layer widths of this group (non-toRGB layers only)

    @property
    def per_layer(self) -> bool:
        """Share one mapper across the group's layers (official coarse/medium at 1024px)."""
        return self.name in ("coarse", "medium") and len(set(self.widths)) == 1

    @property
    def unit(self) -> int:
        return self.widths[0] if self.per_layer else sum(self.widths)

    @property
    def total(self) -> int:
        return sum(self.widths)


def group_specs(slayout, torgb: bool = False) -> tuple[GroupSpec, ...]:
    """Coarse/medium/fine group widths from a generator's ``SLayout`` (empty groups dropped),
    plus a ``torgb`` group when asked (matching ``sspace.gather(..., torgb=True)``)."""
    specs = []
    for name in GROUPS:
        idx = slayout.groups[name]
        if idx:
            specs.append(GroupSpec(name, tuple(slayout.widths[i] for i in idx)))
    if torgb:
        specs.append(GroupSpec("torgb", tuple(w for w, t in zip(slayout.widths, slayout.is_torgb) if t)))
    return tuple(specs)


class DeltaMapper(nn.Module):
    """Δs' = DeltaMapper(s1, [i1 ; Δi]) over the non-toRGB S channels.

    ``s: [B, S]`` is the concatenation of the non-toRGB styles in layout order,
    ``cond: [B, 2 * clip_dim]``; returns ``Δs': [B, S]``.
    """

    def __init__(self, slayout, clip_dim: int, num_layers: int = 4, torgb: bool = False):
        super().__init__()
        self.specs = group_specs(slayout, torgb)
        self.clip_dim = clip_dim
        self.s_dim = sum(g.total for g in self.specs)
        c = 2 * clip_dim
        self.sm = nn.ModuleDict({g.name: Mapper(g.unit, g.unit, True, num_layers) for g in self.specs})
        self.cm = nn.ModuleDict({g.name: Mapper(c, g.unit, True, num_layers) for g in self.specs})
        self.fm = nn.ModuleDict({g.name: Mapper(2 * g.unit, g.unit, False, num_layers) for g in self.specs})

    def forward(self, s: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if s.shape[-1] != self.s_dim or cond.shape[-1] != 2 * self.clip_dim:
            raise ValueError(
                f"DeltaMapper expects s [B, {self.s_dim}] and cond [B, {2 * self.clip_dim}], "
                f"got {tuple(s.shape)} and {tuple(cond.shape)}"
            )
        outs, start = [], 0
        for g in self.specs:
            sg = s[:, start : start + g.total]  # [B, total_g]
            start += g.total
            c = self.cm[g.name](cond)  # [B, unit]
            if g.per_layer:
                sg = self.sm[g.name](sg.reshape(-1, len(g.widths), g.unit))  # [B, L, unit]
                c = c[:, None].expand(-1, len(g.widths), -1)
                x = self.fm[g.name](torch.cat([sg, c], dim=2)).reshape(-1, g.total)
            else:
                x = self.fm[g.name](torch.cat([self.sm[g.name](sg), c], dim=1))
            outs.append(x)
        return torch.cat(outs, dim=1)
