"""The synthfaces identity network: a small ArcFace-style face embedder.

Architecture: an IResNet in miniature (insightface ``recognition/arcface_torch/backbones/iresnet.py``):
a 3x3 stem, stages of improved-residual (IR) blocks ``BN-conv-BN-PReLU-conv(stride)-BN`` with a
projection shortcut, and insightface's "E" output layer ``BN2d - dropout - flatten - FC - BN1d``,
which keeps the spatial layout (where the eyes and nose sit *is* the identity here).
Loss: ArcFace additive angular margin (Deng et al., CVPR 2019; insightface ``losses.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.parse import config_from_dict

IDENTITY_CONFIG_SCHEMA = Schema(
    "world.identity",
    first=(
        "stem_width",
        "stem_stride",
        "widths",
        "blocks_per_stage",
        "embed_dim",
        "dropout",
        "scale",
        "margin",
        "n_identities",
        "images_per_identity",
        "steps",
        "batch_size",
        "lr",
        "weight_decay",
        "aug_blur_max",
        "aug_noise",
        "aug_jitter",
    ),
)


@versioned(IDENTITY_CONFIG_SCHEMA)
@dataclass(frozen=True)
class IdentityConfig:
    """Identity net size and training schedule (the ``identity`` section of a world JSON)."""

    # model: a strided stem, then one IR stage per entry of widths, each halving H, W. A
    # full-resolution first stage measured ~7x the CPU step time; the strided net already
    # reaches held-out AUC > 0.999 at 64 px.
    stem_width: int = 16
    stem_stride: int = 2
    widths: tuple[int, ...] = (32, 64, 128)  # one IR stage per entry, each halves H, W
    blocks_per_stage: int = 1
    embed_dim: int = 128
    dropout: float = 0.0
    # ArcFace: s from the NormFace/CosFace bound s >= (K-1)/K * log((K-1) P / (1-P)) ~ 9 for
    # K=1000 classes at P=0.9; 30 (insightface's usual value for small sets) leaves room under
    # the margin, the paper's 64 is sized for 85k classes. m=0.3 rather than the paper's 0.5: a
    # milder target for a net trained a few hundred steps from scratch; measured at 64 px, 400
    # steps, held-out AUC 0.9996 (m=0.3) vs 0.9991 (m=0.5), so the margin is not the limit here.
    scale: float = 30.0
    margin: float = 0.3
    # data: K training identities, each rendered with `images_per_identity` random attribute sets
    n_identities: int = 1000
    images_per_identity: int = 8
    # optimisation
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    # robustness augmentation (generator images are slightly blurry): sigma in pixels at 64 px,
    # scaled with resolution
    aug_blur_max: float = 1.2
    aug_noise: float = 0.03
    aug_jitter: float = 0.06

    @staticmethod
    def from_dict(d: dict) -> IdentityConfig:
        return config_from_dict(IdentityConfig, d, "identity config", tuples=("widths",))

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


class IRBlock(nn.Module):
    """insightface ``IBasicBlock``: BN-conv3x3-BN-PReLU-conv3x3(stride)-BN + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if cin == cout and stride == 1
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class IdentityNet(nn.Module):
    """Face image -> L2-normalised identity embedding."""

    def __init__(self, cfg: IdentityConfig, resolution: int):
        super().__init__()
        down = cfg.stem_stride * 2 ** len(cfg.widths)
        if resolution % down:
            raise ValueError(
                f"identity net: resolution {resolution} is not divisible by {down} "
                f"(stem_stride={cfg.stem_stride}, one halving per entry of widths={list(cfg.widths)})"
            )
        self.cfg = cfg
        self.resolution = resolution
        c0 = cfg.stem_width
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, cfg.stem_stride, 1, bias=False), nn.BatchNorm2d(c0), nn.PReLU(c0))
        layers, cin = [], c0
        for w in cfg.widths:
            layers.append(IRBlock(cin, w, 2))
            layers += [IRBlock(w, w, 1) for _ in range(cfg.blocks_per_stage - 1)]
            cin = w
        self.body = nn.Sequential(*layers)
        side = resolution // down
        self.out_bn = nn.BatchNorm2d(cin)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cin * side * side, cfg.embed_dim)
        self.feat_bn = nn.BatchNorm1d(cfg.embed_dim)

    @property
    def embed_dim(self) -> int:
        return self.cfg.embed_dim

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """Un-normalised embedding ``[N, D]`` (what the ArcFace head normalises)."""
        x = self.body(self.stem(img))  # [N, C, h, w]
        x = self.dropout(self.out_bn(x)).flatten(1)
        return self.feat_bn(self.fc(x))  # [N, D]

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """``img: [N, 3, H, W]`` in [-1, 1] -> unit-norm identity embedding ``[N, D]``."""
        if img.shape[-2:] != (self.resolution, self.resolution):
            img = F.interpolate(
                img, size=(self.resolution, self.resolution), mode="bilinear", antialias=True, align_corners=False
            )
        dev = next(self.parameters()).device
        return F.normalize(self(img.to(dev)), dim=1)


def build_identity(cfg: IdentityConfig, resolution: int) -> IdentityNet:
    """An untrained identity net for ``resolution`` px images."""
    return IdentityNet(cfg, resolution)


class ArcFaceHead(nn.Module):
    """Class centres ``W: [K, D]``; returns cosines ``[N, K]`` of normalised features and centres.

    Training-only: the saved identity net does not include it.
    """

    def __init__(self, embed_dim: int, n_classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, embed_dim) * 0.01)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(feat, dim=1), F.normalize(self.weight, dim=1))  # [N, K]


def arcface_loss(cos: torch.Tensor, labels: torch.Tensor, scale: float, margin: float) -> torch.Tensor:
    """ArcFace loss: cross-entropy of ``s * cos(theta_y + m)`` for the true class, ``s * cos`` else.

    ``cos: [N, K]``, ``labels: int64 [N]``. Where ``theta_y + m`` would pass pi the logit stops being
    monotonic in theta, so (as insightface's ``ArcFace`` with ``easy_margin=False``) it falls back to
    the CosFace-like ``cos - m sin(m)`` there.
    """
    cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
    cy = cos.gather(1, labels[:, None])  # [N, 1]
    sy = torch.sqrt(1.0 - cy * cy)
    with_margin = cy * math.cos(margin) - sy * math.sin(margin)  # cos(theta + m)
    th, mm = math.cos(math.pi - margin), math.sin(math.pi - margin) * margin
    with_margin = torch.where(cy > th, with_margin, cy - mm)
    logits = cos.scatter(1, labels[:, None], with_margin) * scale
    return F.cross_entropy(logits, labels)
