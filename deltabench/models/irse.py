"""IR-SE ResNet backbone (ArcFace), with the key names of TreB1eN/InsightFace_Pytorch.

This is the network behind ``model_ir_se50.pth``, the differentiable identity loss of
StyleCLIP (``criteria/id_loss.py``), pSp and e4e, and the backbone of e4e's encoder
(``models/encoders/helpers.py`` there: ``get_blocks``, ``bottleneck_IR``,
``bottleneck_IR_SE``, ``SEModule``; ``models/encoders/model_irse.py``: ``Backbone``).
Written here from the architecture; parameter names match, so the official files load with
``strict=True``. Stage widths and depths are read from a state dict, so a tiny network in
the same format (tests) loads through the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deltabench.checkpoints import CheckpointError, safe_torch_load

# Units per stage of the IR-ResNets (helpers.get_blocks); stage widths 64, 128, 256, 512.
UNITS: dict[int, tuple[int, ...]] = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
WIDTHS: tuple[int, ...] = (64, 128, 256, 512)


@dataclass(frozen=True)
class IRSEConfig:
    """Backbone shape. ``units[i]`` bottlenecks of width ``widths[i]``; the first of each
    stage has stride 2. ``se``: squeeze-excitation units (``ir_se``) or plain ``ir``."""

    units: tuple[int, ...] = UNITS[50]
    widths: tuple[int, ...] = WIDTHS
    stem_width: int = 64
    se: bool = True
    se_reduction: int = 16

    def to_dict(self) -> dict:
        d = asdict(self)
        d["units"], d["widths"] = list(self.units), list(self.widths)
        return d


class SEModule(nn.Module):
    """Squeeze-excitation: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))`` with 1x1 convs."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """``res_layer``: BN - conv3x3 - PReLU - conv3x3(stride) - BN [- SE]; ``shortcut_layer``:
    a strided identity (``MaxPool2d(1, stride)``) when widths agree, else conv1x1 + BN."""

    def __init__(self, in_channel: int, depth: int, stride: int, se: bool = True, reduction: int = 16):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, 1, stride, bias=False), nn.BatchNorm2d(depth)
            )
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se:
            layers.append(SEModule(depth, reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def make_body(cfg: IRSEConfig) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The stacked bottlenecks and the index of the last unit of every stage."""
    modules, ends, cin = [], [], cfg.stem_width
    for n, depth in zip(cfg.units, cfg.widths):
        for u in range(n):
            modules.append(BottleneckIR(cin if u == 0 else depth, depth, 2 if u == 0 else 1, cfg.se, cfg.se_reduction))
        cin = depth
        ends.append(len(modules) - 1)
    return nn.Sequential(*modules), tuple(ends)


def stem(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


class IRSEBackbone(nn.Module):
    """ArcFace ``Backbone(input_size=112, mode='ir_se')``: ``[N, 3, 112, 112]`` in [-1, 1] ->
    unit ``[N, embed_dim]``. The output layer is BN2d - Dropout - Flatten - Linear - BN1d."""

    def __init__(
        self, cfg: IRSEConfig = IRSEConfig(), input_size: int = 112, embed_dim: int = 512, drop_ratio: float = 0.6
    ):
        super().__init__()
        self.cfg, self.input_size = cfg, input_size
        side = input_size // 2 ** len(cfg.units)
        self.input_layer = stem(cfg.stem_width)
        self.body, _ = make_body(cfg)
        c = cfg.widths[-1]
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(c),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(c * side * side, embed_dim),
            nn.BatchNorm1d(embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [N, 3, 112, 112] -> [N, D]
        return F.normalize(self.output_layer(self.body(self.input_layer(x))), dim=1)


def config_from_state_dict(sd: dict, prefix: str = "") -> IRSEConfig:
    """Stage units and widths of an IR(-SE) body from its keys (``{prefix}body.{i}.res_layer...``).

    A stage starts where a unit changes width (or at unit 0)."""
    idx = sorted(
        {
            int(k[len(prefix) + 5 :].split(".")[0])
            for k in sd
            if k.startswith(prefix + "body.") and ".res_layer.1.weight" in k
        }
    )
    if not idx or idx != list(range(len(idx))):
        raise CheckpointError(f"no IR-SE body found (expected keys '{prefix}body.<i>.res_layer.1.weight')")
    stem_w = sd[prefix + "input_layer.0.weight"].shape[0]
    units, widths, cur = [], [], None
    for i in idx:
        w = sd[f"{prefix}body.{i}.res_layer.1.weight"]  # [depth, in, 3, 3]
        depth, cin = int(w.shape[0]), int(w.shape[1])
        if i == 0 or depth != cin or depth != cur:
            units.append(0)
            widths.append(depth)
            cur = depth
        units[-1] += 1
    se = f"{prefix}body.0.res_layer.5.fc1.weight" in sd
    red = 16
    if se:
        fc1 = sd[f"{prefix}body.0.res_layer.5.fc1.weight"]
        red = int(fc1.shape[1] // fc1.shape[0])
    return IRSEConfig(units=tuple(units), widths=tuple(widths), stem_width=int(stem_w), se=se, se_reduction=red)


def _fill_bn_counters(sd: dict, module: nn.Module, prefix: str = "") -> dict:
    """Files saved before PyTorch 0.4.1 lack BatchNorm ``num_batches_tracked``; it is unused in eval."""
    sd = dict(sd)
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked") and prefix + k not in sd:
            sd[prefix + k] = torch.zeros_like(v)
    return sd


def load_irse50(path: str | Path, map_location: str | torch.device = "cpu") -> IRSEBackbone:
    """Load ``model_ir_se50.pth`` (a bare ``Backbone`` state dict) -> ``IRSEBackbone.eval()``."""
    path = Path(path)
    sd = safe_torch_load(path, "an IR-SE50 ArcFace state dict (model_ir_se50.pth)", map_location=map_location)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "input_layer.0.weight" not in sd or "output_layer.3.weight" not in sd:
        found = sorted(map(str, sd))[:8] if isinstance(sd, dict) else type(sd).__name__
        raise CheckpointError(
            f"{path}: not an IR-SE ArcFace backbone state dict (expected keys "
            f"'input_layer.0.weight', 'output_layer.3.weight'; found {found})"
        )
    try:
        cfg = config_from_state_dict(sd)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    lin = sd["output_layer.3.weight"]  # [D, C * side * side]
    side2 = lin.shape[1] // cfg.widths[-1]
    side = round(side2**0.5)
    if side * side != side2:
        raise CheckpointError(f"{path}: output linear takes {lin.shape[1]} inputs, not widths[-1] x side^2")
    net = IRSEBackbone(cfg, input_size=side * 2 ** len(cfg.units), embed_dim=int(lin.shape[0]))
    try:
        net.load_state_dict(_fill_bn_counters(sd, net), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not match the IR-SE layout {cfg.to_dict()} read from it: {e}") from None
    return net.to(map_location).eval()


def ffhq_face_crop(img: torch.Tensor, out: int = 112) -> torch.Tensor:
    """The face crop of FFHQ-aligned images that ArcFace expects: ``[N, 3, H, W] -> [N, 3, out, out]``.

    Official StyleCLIP / pSp / e4e ``IDLoss.extract_feats``: average-pool to 256, crop rows
    35:223 and columns 32:220 ("interesting region"), average-pool to 112. FFHQ alignment puts
    eyes and mouth at fixed places, so this fixed crop plays the role of insightface's
    5-landmark ``norm_crop`` for generator outputs and CelebA-HQ images. Worked through the
    FFHQ alignment rule (ffhq-dataset ``recreate_aligned_images``: crop side 4x the eye
    distance, centre 0.1 of the eye-to-mouth vector below the eyes), the eye centres land at
    about (38, 51) and (76, 51) of the 112 px crop and the mouth at y ~ 93, against (38.3, 51.7),
    (73.5, 51.5) and y ~ 92.3 in insightface's ``arcface_dst`` template. Differentiable.
    """
    if img.shape[-1] != 256 or img.shape[-2] != 256:
        img = F.adaptive_avg_pool2d(img, (256, 256))
    return F.adaptive_avg_pool2d(img[:, :, 35:223, 32:220], (out, out))


class IdentityLoss(nn.Module):
    """Differentiable identity embedding for StyleCLIP-OP/LM's ID loss: ``embed(img)`` with the
    same interface as the synthfaces identity net (images in [-1, 1] -> unit ``[N, D]``)."""

    def __init__(self, backbone: IRSEBackbone, crop: str = "ffhq"):
        super().__init__()
        if crop not in ("ffhq", "none"):
            raise ValueError(f"identity crop must be 'ffhq' or 'none', got {crop!r}")
        self.backbone, self.crop = backbone.eval(), crop

    @property
    def embed_dim(self) -> int:
        return self.backbone.output_layer[3].out_features

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        dev = next(self.backbone.parameters()).device
        x = img.to(dev, torch.float32)
        s = self.backbone.input_size
        x = ffhq_face_crop(x, s) if self.crop == "ffhq" else F.adaptive_avg_pool2d(x, (s, s))
        return self.backbone(x)

    forward = embed
