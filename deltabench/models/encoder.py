"""An e4e-style inversion encoder: image -> W+.

Follows the shape of e4e (Tov et al. 2021, ``models/encoders/psp_encoders.py``,
``Encoder4Editing``): a CNN backbone with a three-level feature pyramid (c1, c2, c3 at 1/4,
1/8, 1/16 of the input), one ``GradualStyleBlock`` ("map2style") head per W+ entry (coarse
entries read c3, medium the p2 merge, fine the p1 merge), and the e4e parameterisation
``w_plus[i] = w_avg + base + delta_i`` with ``delta_0 = 0``: a single base code plus
per-entry offsets, which keeps inversions close to W and so editable. The IR-SE50 backbone
is replaced by a small plain CNN (no BatchNorm: deterministic, batch-size independent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.models.ops import EqualLinear
from deltabench.parse import config_from_dict

ENCODER_CONFIG_SCHEMA = Schema("world.encoder.model", first=("style_dim", "channels", "fpn_dim", "coarse", "medium"))


@versioned(ENCODER_CONFIG_SCHEMA)
@dataclass(frozen=True)
class EncoderConfig:
    """Encoder sizes. ``channels`` are the widths at 1, 1/2, 1/4 (c1), 1/8 (c2), 1/16 (c3)
    of the input resolution; ``style_dim`` must equal the generator's. The first
    ``coarse`` W+ entries read c3, the next ``medium`` read p2, the rest read p1 (e4e at
    1024px: 3 / 4 / 11)."""

    style_dim: int = 512
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)
    fpn_dim: int = 256
    coarse: int = 3
    medium: int = 4

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.channels) != 5:
            raise ValueError(f"EncoderConfig.channels needs 5 widths (1, 1/2, 1/4, 1/8, 1/16), got {self.channels}")

    @staticmethod
    def from_dict(d: dict) -> EncoderConfig:
        return config_from_dict(EncoderConfig, d, "EncoderConfig")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class GradualStyleBlock(nn.Module):
    """e4e ``map2style``: strided convs down to 1x1, then an equalised linear layer."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        n = max(int(math.log2(spatial)), 1)
        layers = [_conv(in_c, out_c, 2)] + [_conv(out_c, out_c, 2) for _ in range(n - 1)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # [B, out_c, h, w], h = w = 1 unless spatial was 1
        return self.linear(x.mean((2, 3)))


class Encoder4Editing(nn.Module):
    """``E(img: [B, 3, R, R] in [-1, 1]) -> w_plus: [B, n_latent, style_dim]``."""

    def __init__(self, cfg: EncoderConfig, resolution: int):
        super().__init__()
        if resolution < 16 or resolution & (resolution - 1):
            raise ValueError(f"encoder resolution must be a power of two >= 16, got {resolution}")
        self.cfg = cfg
        self.resolution = resolution
        self.style_dim = cfg.style_dim
        self.n_latent = 2 * int(math.log2(resolution)) - 2  # as StyleGAN2 at this resolution
        c = cfg.channels
        self.stem = _conv(3, c[0])
        self.stages = nn.ModuleList(
            nn.Sequential(_conv(c[i], c[i + 1], 2), _conv(c[i + 1], c[i + 1])) for i in range(4)
        )
        self.lat3 = nn.Conv2d(c[4], cfg.fpn_dim, 1)
        self.lat2 = nn.Conv2d(c[3], cfg.fpn_dim, 1)
        self.lat1 = nn.Conv2d(c[2], cfg.fpn_dim, 1)
        self.levels = tuple(
            0 if i < cfg.coarse else 1 if i < cfg.coarse + cfg.medium else 2 for i in range(self.n_latent)
        )
        spatial = (resolution // 16, resolution // 8, resolution // 4)
        self.styles = nn.ModuleList(GradualStyleBlock(cfg.fpn_dim, cfg.style_dim, spatial[lv]) for lv in self.levels)
        # The generator's mean w (set by training / loaded with the weights).
        self.register_buffer("w_avg", torch.zeros(cfg.style_dim))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.stem(img)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        _, c1, c2, c3 = feats  # 1/4, 1/8, 1/16 of R
        p3 = self.lat3(c3)
        p2 = F.interpolate(p3, scale_factor=2, mode="bilinear", align_corners=False) + self.lat2(c2)
        p1 = F.interpolate(p2, scale_factor=2, mode="bilinear", align_corners=False) + self.lat1(c1)
        pyramid = (p3, p2, p1)
        base = self.styles[0](pyramid[self.levels[0]])  # [B, style_dim]
        deltas = [torch.zeros_like(base)] + [head(pyramid[lv]) for head, lv in zip(self.styles[1:], self.levels[1:])]
        return self.w_avg + base[:, None] + torch.stack(deltas, 1)  # [B, n_latent, style_dim]

    def deltas(self, w_plus: torch.Tensor) -> torch.Tensor:
        """Per-entry offsets from the base code: ``[B, n_latent - 1, style_dim]`` (e4e's
        delta regulariser penalises their norm)."""
        return w_plus[:, 1:] - w_plus[:, :1]


def build_encoder(cfg: EncoderConfig, resolution: int) -> Encoder4Editing:
    return Encoder4Editing(cfg, resolution)
