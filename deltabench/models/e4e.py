"""e4e (encoder4editing, Tov et al. 2021): the official FFHQ inversion encoder, our own writing.

Architecture and key names follow omertov/encoder4editing ``models/encoders/psp_encoders.py``
(``Encoder4Editing``) and ``models/psp.py`` (the ``pSp`` wrapper): an IR-SE50 body
(:mod:`deltabench.models.irse`), taps c1 / c2 / c3 at the ends of stages 2 / 3 / 4 (units 6,
20, 23 of IR-SE50), an FPN (``latlayer1`` on c2, ``latlayer2`` on c1, bilinear
``align_corners=True`` upsample-add), one ``GradualStyleBlock`` per W+ entry (entries 0-2
read c3, 3-6 read p2, 7+ read p1), and ``w[i] = w0 + delta_i`` (``delta_0 = 0``), plus the
generator's ``latent_avg`` (``start_from_latent_avg``).

Checkpoint (``e4e_ffhq_encode.pt``): ``{'state_dict': {'encoder.*', 'decoder.*'}, 'latent_avg',
'opts'}``, ``opts`` a plain dict (``vars(argparse.Namespace)``). The number of W+ entries, the
decoder resolution and the encoder input size are read from the tensors; ``opts['stylegan_size']``
is checked against them. Input: images at the encoder's input size (256) as the official code
makes them from the photo file: the uint8 photo through PIL ``transforms.Resize(256)``,
``ToTensor()``, ``Normalize(0.5, 0.5)`` (e4e's test transform; DeltaEdit
``scripts/inference_real.py`` lines 52-56, :func:`deltabench.imageio.official_photo_input`).
Images of another size are quantised to uint8 and resized so (:func:`deltabench.imageio.official_resize`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deltabench.checkpoints import CheckpointError, safe_torch_load
from deltabench.models.irse import (
    IRSEConfig,
    _fill_bn_counters,
    config_from_state_dict,
    make_body,
    stem,
)
from deltabench.models.ops import EqualLinear

COARSE_IND, MIDDLE_IND = 3, 7  # e4e: entries < 3 read c3, < 7 read p2, the rest p1


class GradualStyleBlock(nn.Module):
    """``map2style``: ``n_convs`` stride-2 3x3 convs (LeakyReLU 0.01) to 1x1, then EqualLinear."""

    def __init__(self, in_c: int, out_c: int, n_convs: int):
        super().__init__()
        self.out_c = out_c
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # [B, C, 1, 1]
        return self.linear(x.reshape(-1, self.out_c))


@dataclass(frozen=True)
class E4EConfig:
    backbone: IRSEConfig
    n_styles: int  # W+ entries: 2 log2(stylegan_size) - 2
    style_dim: int = 512
    input_size: int = 256
    convs: tuple[int, int, int] = (4, 5, 6)  # GradualStyleBlock depth on c3, p2, p1 (16, 32, 64 px at 256)


class Encoder4Editing(nn.Module):
    """``E(img [B, 3, S, S]) -> codes [B, n_styles, style_dim]`` (before ``latent_avg``)."""

    def __init__(self, cfg: E4EConfig):
        super().__init__()
        self.cfg = cfg
        bb = cfg.backbone
        if len(bb.units) != 4:
            raise ValueError(f"e4e needs a 4-stage IR body, got {len(bb.units)} stages")
        self.input_layer = stem(bb.stem_width)
        self.body, self.ends = make_body(bb)
        self.style_count = cfg.n_styles
        level = lambda i: 0 if i < COARSE_IND else 1 if i < MIDDLE_IND else 2
        self.styles = nn.ModuleList(
            GradualStyleBlock(bb.widths[3], cfg.style_dim, cfg.convs[level(i)]) for i in range(cfg.n_styles)
        )
        self.latlayer1 = nn.Conv2d(bb.widths[2], cfg.style_dim, 1)
        self.latlayer2 = nn.Conv2d(bb.widths[1], cfg.style_dim, 1)

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_layer(x)
        c1 = c2 = c3 = None
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i == self.ends[1]:
                c1 = x
            elif i == self.ends[2]:
                c2 = x
            elif i == self.ends[3]:
                c3 = x
        w0 = self.styles[0](c3)  # [B, D]
        codes = [w0]
        features = c3
        for i in range(1, self.style_count):
            if i == COARSE_IND:
                p2 = self._upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_IND:
                p1 = self._upsample_add(p2, self.latlayer2(c1))
                features = p1
            codes.append(w0 + self.styles[i](features))
        return torch.stack(codes, 1)  # [B, n_styles, D]


class E4EInverter(nn.Module):
    """The domain's ``encoder``: ``inverter(images [N, 3, H, W] in [-1, 1]) -> w_plus [N, L, D]``."""

    def __init__(self, encoder: Encoder4Editing, latent_avg: torch.Tensor, opts: dict | None = None):
        super().__init__()
        self.encoder = encoder.eval()
        self.register_buffer("latent_avg", latent_avg.float())  # [D] or [L, D]
        self.opts = dict(opts or {})
        self.input_size = encoder.cfg.input_size
        self.n_latent = encoder.cfg.n_styles
        self.style_dim = encoder.cfg.style_dim

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from deltabench.imageio import official_resize

        dev = self.latent_avg.device
        s = self.input_size
        # the official input: the uint8 photo through PIL Resize(256), ToTensor, Normalize(0.5)
        # (an input already at s px is taken as made so, e.g. by official_photo_input)
        x = official_resize(images.detach().to("cpu", torch.float32), s) if images.shape[-2:] != (s, s) else images
        codes = self.encoder(x.to(dev, torch.float32))  # [N, L, D]
        return codes + (self.latent_avg if self.latent_avg.ndim == 2 else self.latent_avg[None])[None]


@dataclass
class E4ECheckpoint:
    inverter: E4EInverter
    decoder_state_dict: dict  # the rosinality generator e4e was trained with (``decoder.*``)
    opts: dict
    resolution: int  # of the decoder


def e4e_config_from_state_dict(enc: dict) -> E4EConfig:
    bb: IRSEConfig = config_from_state_dict(enc)
    n = sum(1 for k in enc if k.startswith("styles.") and k.endswith(".linear.weight"))
    if n < 1:
        raise CheckpointError("no 'styles.<i>.linear.weight' keys: not an e4e GradualStyle encoder")

    def n_convs(i: int) -> int:
        return sum(1 for k in enc if k.startswith(f"styles.{i}.convs.") and k.endswith(".weight"))

    levels = [0, min(COARSE_IND, n - 1), min(MIDDLE_IND, n - 1)]
    convs = tuple(n_convs(i) for i in levels)
    style_dim = int(enc["styles.0.linear.weight"].shape[0])
    return E4EConfig(backbone=bb, n_styles=n, style_dim=style_dim, input_size=16 * 2 ** convs[0], convs=convs)  # type: ignore[arg-type]


def load_e4e(
    path: str | Path, expect_resolution: int | None = None, map_location: str | torch.device = "cpu"
) -> E4ECheckpoint:
    """Load an official e4e checkpoint. ``expect_resolution``: the domain generator's size;
    an encoder made for another resolution is a clear error naming both."""
    path = Path(path)
    # opts is a plain dict in the official files; older pSp-style files hold the Namespace itself.
    ckpt = safe_torch_load(
        path, "an e4e checkpoint (e4e_ffhq_encode.pt)", allow=[argparse.Namespace], map_location=map_location
    )
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = sorted(map(str, ckpt))[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        hint = (
            " (this looks like a StyleGAN2 generator checkpoint, not an e4e encoder)"
            if isinstance(ckpt, dict) and "g_ema" in ckpt
            else ""
        )
        raise CheckpointError(
            f"{path}: not an e4e checkpoint: expected keys 'state_dict', 'latent_avg', 'opts'; found {found}{hint}"
        )
    sd = ckpt["state_dict"]
    enc = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
    dec = {k[len("decoder.") :]: v for k, v in sd.items() if k.startswith("decoder.")}
    if not enc:
        raise CheckpointError(
            f"{path}: 'state_dict' has no 'encoder.' keys (found {sorted(sd)[:6]}); expected an e4e checkpoint"
        )
    try:
        cfg = e4e_config_from_state_dict(enc)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    opts = ckpt.get("opts") or {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, dict):
        raise CheckpointError(f"{path}: 'opts' should be a dict, found {type(opts).__name__}")
    enc_res = 2 ** ((cfg.n_styles + 2) // 2)
    resolution = enc_res
    if dec:
        n_rgb = sum(1 for k in dec if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
        resolution = 2 ** (n_rgb + 2)
        if resolution != enc_res:
            raise CheckpointError(
                f"{path}: encoder predicts {cfg.n_styles} W+ entries (a {enc_res} px "
                f"generator) but its decoder is {resolution} px"
            )
    size = opts.get("stylegan_size")
    if size is not None and int(size) != resolution:
        raise CheckpointError(
            f"{path}: opts['stylegan_size']={size} but the weights are for a {resolution} px "
            f"generator ({cfg.n_styles} W+ entries)"
        )
    if expect_resolution is not None and resolution != expect_resolution:
        raise CheckpointError(
            f"{path}: e4e encoder for a {resolution} px generator ({cfg.n_styles} W+ entries); "
            f"the domain's generator is {expect_resolution} px "
            f"({2 * int(math.log2(expect_resolution)) - 2} entries). Use the encoder "
            f"trained for this generator"
        )
    if "latent_avg" not in ckpt:
        raise CheckpointError(f"{path}: no 'latent_avg' (e4e starts from the generator's average latent)")
    latent_avg = torch.as_tensor(ckpt["latent_avg"]).float()
    if (
        latent_avg.shape[-1] != cfg.style_dim
        or latent_avg.ndim not in (1, 2)
        or (latent_avg.ndim == 2 and latent_avg.shape[0] not in (1, cfg.n_styles))
    ):
        raise CheckpointError(
            f"{path}: latent_avg has shape {list(latent_avg.shape)}, expected "
            f"[{cfg.style_dim}] or [{cfg.n_styles}, {cfg.style_dim}]"
        )
    encoder = Encoder4Editing(cfg)
    try:
        encoder.load_state_dict(_fill_bn_counters(enc, encoder), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: encoder weights do not match the layout read from them: {e}") from None
    inv = E4EInverter(encoder, latent_avg, opts).to(map_location).eval()
    return E4ECheckpoint(inverter=inv, decoder_state_dict=dec, opts=opts, resolution=resolution)


def save_e4e_checkpoint(
    path: str | Path, encoder: Encoder4Editing, decoder_sd: dict, latent_avg: torch.Tensor, opts: dict
) -> None:
    """Write the official layout (tests make random-weight files with it)."""
    sd = {f"encoder.{k}": v.detach().cpu().clone() for k, v in encoder.state_dict().items()}
    sd.update({f"decoder.{k}": v.detach().cpu().clone() for k, v in decoder_sd.items()})
    torch.save({"state_dict": sd, "latent_avg": latent_avg.detach().cpu().clone(), "opts": dict(opts)}, str(path))
