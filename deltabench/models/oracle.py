"""The synthfaces attribute oracle: reads every renderer parameter back from an image.

It is the world's ground-truth reader (manipulation accuracy, disentanglement) and, through
:meth:`Oracle.features`, the feature network of the synthfaces Fréchet distance (the role
InceptionV3's pool3 plays for FFHQ).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.parse import config_from_dict

ORACLE_CONFIG_SCHEMA = Schema(
    "world.oracle",
    first=(
        "stem_width",
        "stem_stride",
        "widths",
        "feature_dim",
        "pool_size",
        "steps",
        "batch_size",
        "lr",
        "weight_decay",
        "ident_weight",
        "aug_blur_max",
        "aug_noise",
        "aug_jitter",
    ),
)


@versioned(ORACLE_CONFIG_SCHEMA)
@dataclass(frozen=True)
class OracleConfig:
    """Oracle size and training schedule (the ``oracle`` section of a world JSON)."""

    # model: a strided stem, then one stage (two 3x3 convs, the second strided) per entry of widths
    stem_width: int = 16
    stem_stride: int = 2
    widths: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 256
    # data: a pre-rendered pool of random faces
    pool_size: int = 10000
    # optimisation
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ident_weight: float = 4.0  # L1 on identity params vs the sum of per-attribute cross-entropies
    # robustness augmentation, as for the identity net (sigma in pixels at 64 px)
    aug_blur_max: float = 1.2
    aug_noise: float = 0.03
    aug_jitter: float = 0.06

    @staticmethod
    def from_dict(d: dict) -> OracleConfig:
        return config_from_dict(OracleConfig, d, "oracle config", tuples=("widths",))

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


@dataclass
class OracleOutput:
    """``logits[name]: [N, n_values]`` per attribute; ``ident: [N, P]`` regressed identity params."""

    logits: dict[str, torch.Tensor]
    ident: torch.Tensor


class Oracle(nn.Module):
    """Image ``[N, 3, H, W]`` in [-1, 1] -> every attribute and identity parameter."""

    def __init__(self, cfg: OracleConfig, resolution: int, heads: dict[str, int], n_ident: int):
        super().__init__()
        down = cfg.stem_stride * 2 ** len(cfg.widths)
        if resolution % down:
            raise ValueError(
                f"oracle: resolution {resolution} is not divisible by {down} "
                f"(stem_stride={cfg.stem_stride}, one halving per entry of widths={list(cfg.widths)})"
            )
        self.cfg = cfg
        self.resolution = resolution
        c0 = cfg.stem_width
        layers = [nn.Conv2d(3, c0, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(inplace=True)]
        cin = c0
        for w in cfg.widths:
            layers += [
                nn.Conv2d(cin, w, 3, 1, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
                nn.Conv2d(w, w, 3, 2, 1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            ]
            cin = w
        self.body = nn.Sequential(*layers)
        side = resolution // down
        # Flatten, not global pooling: identity params are positions and sizes.
        self.fc = nn.Sequential(nn.Linear(cin * side * side, cfg.feature_dim), nn.ReLU(inplace=True))
        # One classification head per attribute (name -> number of values, in schema order) and
        # a regression head for the identity parameters: the schema is the world's, given here.
        self.heads = nn.ModuleDict({name: nn.Linear(cfg.feature_dim, n) for name, n in heads.items()})
        self.ident_head = nn.Linear(cfg.feature_dim, n_ident)

    @property
    def feature_dim(self) -> int:
        return self.cfg.feature_dim

    def _prep(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-2:] != (self.resolution, self.resolution):
            img = F.interpolate(
                img, size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False
            )
        return img.to(next(self.parameters()).device)

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, F]`` (the Fréchet-distance features of synthfaces)."""
        return self.fc(self.body(self._prep(img)).flatten(1))

    def forward(self, img: torch.Tensor) -> OracleOutput:
        h = self.features(img)  # [N, F]
        return OracleOutput({k: head(h) for k, head in self.heads.items()}, self.ident_head(h))

    @torch.no_grad()
    def predict(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(attrs int64 [N, A] in head (schema) order, ident float [N, P])``."""
        out = self(img)
        attrs = torch.stack([out.logits[name].argmax(1) for name in self.heads], dim=1)
        return attrs, out.ident


def build_oracle(cfg: OracleConfig, resolution: int, heads: dict[str, int], n_ident: int) -> Oracle:
    """An untrained oracle for ``resolution`` px images: ``heads`` maps each attribute to its
    number of values (in the order ``predict`` reports them), ``n_ident`` identity parameters."""
    return Oracle(cfg, resolution, heads, n_ident)
