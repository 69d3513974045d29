"""StyleGAN2 generator with the style space (S) as first-class API.

Architecture and parameter names follow rosinality/stylegan2-pytorch ``model.py``
(``Generator``, config-f at 1024px: 30.4M parameters, S space 9088 channels), so an official
``stylegan2-ffhq-config-f.pt`` ``g_ema`` state dict loads with ``strict=True``. The call shape
follows NVIDIA stylegan3 ``training/networks_stylegan2.py``: ``G.mapping(z) -> w``,
``G.synthesis(w_plus) -> img``, extended with ``G.styles(w_plus) -> [s_l]`` and
``G.synthesis_from_styles([s_l]) -> img`` (Wu et al., "StyleSpace Analysis", CVPR 2021).
The S layout is data (``G.slayout``), never a constant: 6048/9088/18 hold only at 1024px.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from deltabench import confighash
from deltabench.checkpoints import CheckpointError, safe_torch_load
from deltabench.confighash import Schema, versioned
from deltabench.models.ops import Blur, EqualLinear, FusedLeakyReLU, PixelNorm, Upsample
from deltabench.parse import config_from_dict

# rosinality's width table: 512 up to 32px, then halving (times channel_multiplier).
_BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
_MULTIPLIED = (64, 128, 256, 512, 1024)


# The world's generator section "model" (deltabench.confighash); conv_clamp came with NVIDIA's
# pickles (None: no clamp, as before).
GENERATOR_CONFIG_SCHEMA = Schema(
    "world.generator.model",
    first=("size", "style_dim", "n_mlp", "channel_multiplier", "channels", "lr_mlp", "blur_kernel"),
    added=[{"conv_clamp": None}],
)


@versioned(GENERATOR_CONFIG_SCHEMA)
@dataclass(frozen=True)
class GeneratorConfig:
    """StyleGAN2 generator hyper-parameters (rosinality ``Generator`` arguments).

    ``size`` may be left ``None`` and given to :func:`build_generator` (a world's resolution).
    ``channels`` maps resolution -> width and overrides rosinality's table entry by entry.
    """

    size: int | None = None
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channels: dict[int, int] | None = None
    lr_mlp: float = 0.01
    blur_kernel: tuple[float, ...] = (1, 3, 3, 1)
    # NVIDIA's ``conv_clamp`` (stylegan2-ada-pytorch ``training/networks.py`` SynthesisLayer and
    # ToRGBLayer: ``bias_act(..., clamp=conv_clamp)``): every conv and toRGB output clamped to
    # +-conv_clamp after its activation. None (rosinality, our worlds): no clamp.
    conv_clamp: float | None = None

    def __post_init__(self):
        if self.size is not None and (self.size < 4 or self.size & (self.size - 1)):
            raise ValueError(f"generator size must be a power of two >= 4, got {self.size}")
        if self.channels is not None:
            object.__setattr__(self, "channels", {int(k): int(v) for k, v in self.channels.items()})
        object.__setattr__(self, "blur_kernel", tuple(float(x) for x in self.blur_kernel))

    @staticmethod
    def from_dict(d: dict) -> GeneratorConfig:
        return config_from_dict(GeneratorConfig, d, "GeneratorConfig")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)

    def channel_table(self) -> dict[int, int]:
        table = {r: c * (self.channel_multiplier if r in _MULTIPLIED else 1) for r, c in _BASE_CHANNELS.items()}
        table.update(self.channels or {})
        return table


@dataclass(frozen=True)
class SLayout:
    """Where each modulated layer sits in the style space, in synthesis order.

    Order is conv1, to_rgb1, convs.0, convs.1, to_rgbs.0, convs.2, ... as in StyleCLIP and
    DeltaEdit. ``wplus_index[l]`` is the W+ entry feeding layer ``l`` (rosinality:
    conv1 w[0], to_rgb1 w[1], convs[2i] w[2i+1], convs[2i+1] w[2i+2], to_rgbs[i] w[2i+3]).
    """

    names: tuple[str, ...]
    widths: tuple[int, ...]
    is_torgb: tuple[bool, ...]
    wplus_index: tuple[int, ...]
    resolution: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def total(self) -> int:
        return sum(self.widths)

    @property
    def total_non_torgb(self) -> int:
        return sum(w for w, t in zip(self.widths, self.is_torgb) if not t)

    @property
    def n_latent(self) -> int:
        return max(self.wplus_index) + 1

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each layer in the flat S vector."""
        out, o = [], 0
        for w in self.widths:
            out.append(o)
            o += w
        return tuple(out)

    @property
    def non_torgb_indices(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.is_torgb) if not t)

    @property
    def groups(self) -> dict[str, tuple[int, ...]]:
        """DeltaEdit's coarse/medium/fine layer indices (into this layout).

        Official DeltaEdit ``delta_mapper.py`` splits the non-toRGB S vector at 3*512 and
        7*512 channels of the 1024px generator: the first 3 layers, the next 4, the rest.
        """
        nt = self.non_torgb_indices
        return {"coarse": nt[:3], "medium": nt[3:7], "fine": nt[7:]}

    def flatten(self, styles: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[s_l: [B, C_l]]`` -> ``[B, total]``."""
        if len(styles) != len(self.widths):
            raise ValueError(f"expected {len(self.widths)} style tensors, got {len(styles)}")
        for name, s, w in zip(self.names, styles, self.widths):
            if s.shape[-1] != w:
                raise ValueError(f"style {name!r} has width {s.shape[-1]}, layout says {w}")
        return torch.cat(list(styles), dim=-1)

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """``[B, total]`` -> ``[s_l: [B, C_l]]``."""
        if flat.shape[-1] != self.total:
            raise ValueError(f"flat style vector has width {flat.shape[-1]}, layout total is {self.total}")
        return list(torch.split(flat, list(self.widths), dim=-1))


class ModulatedConv2d(nn.Module):
    """Weight (de)modulation conv (Karras et al. 2020, eq. 1-3).

    ``forward`` takes the style ``s`` (the output of ``self.modulation``), not w, so the S space
    can be edited directly. It scales the input instead of building per-sample weights
    (rosinality's ``fused=False`` path): the same maths, and an ordinary batched conv on CPU.
    """

    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # x: [B, Cin, H, W], s: [B, Cin]
        weight = self.scale * self.weight[0]  # [Cout, Cin, k, k]
        x = x * s[:, :, None, None].to(x.dtype)
        if self.upsample:
            out = F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2)
            out = self.blur(out)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum_{i,k} (w_oik s_i)^2 for every sample: [B, Cout]
            dcoefs = torch.rsqrt(s.square() @ weight.square().sum((2, 3)).t() + 1e-8)
            out = out * dcoefs[:, :, None, None].to(out.dtype)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, "
            f"upsample={self.upsample}, demodulate={self.demodulate}"
        )


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(
        self,
        in_channel: int,
        out_channel: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.conv = ModulatedConv2d(
            in_channel, out_channel, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, s: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        out = self.activate(self.noise(self.conv(x, s), noise))
        return out if self.conv_clamp is None else out.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGB(nn.Module):
    def __init__(
        self,
        in_channel: int,
        style_dim: int,
        upsample: bool = True,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: float | None = None,
    ):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.conv_clamp = conv_clamp

    def forward(self, x: torch.Tensor, s: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, s) + self.bias
        if self.conv_clamp is not None:  # NVIDIA clamps the layer's output, before the skip sum
            out = out.clamp(-self.conv_clamp, self.conv_clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2(nn.Module):
    """rosinality's ``Generator`` with mapping / styles / synthesis as separate calls.

    Images are ``[B, 3, size, size]`` in about [-1, 1].
    """

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if cfg.size is None:
            raise ValueError("GeneratorConfig.size is None; use build_generator(cfg, resolution)")
        self.cfg = cfg
        self.size = cfg.size
        self.style_dim = cfg.style_dim
        bk = cfg.blur_kernel
        self.style = nn.Sequential(
            PixelNorm(),
            *[
                EqualLinear(cfg.style_dim, cfg.style_dim, lr_mul=cfg.lr_mlp, activation="fused_lrelu")
                for _ in range(cfg.n_mlp)
            ],
        )
        self.channels = cfg.channel_table()
        self.log_size = int(math.log2(cfg.size))
        missing = [2**i for i in range(2, self.log_size + 1) if 2**i not in self.channels]
        if missing:
            raise ValueError(f"GeneratorConfig.channels has no width for resolutions {missing}")
        self.input = ConstantInput(self.channels[4])
        cc = cfg.conv_clamp
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, cfg.style_dim, blur_kernel=bk, conv_clamp=cc)
        self.to_rgb1 = ToRGB(self.channels[4], cfg.style_dim, upsample=False, conv_clamp=cc)
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty, kept for rosinality module parity
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_channel = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_channel = self.channels[2**i]
            self.convs.append(
                StyledConv(in_channel, out_channel, 3, cfg.style_dim, upsample=True, blur_kernel=bk, conv_clamp=cc)
            )
            self.convs.append(StyledConv(out_channel, out_channel, 3, cfg.style_dim, blur_kernel=bk, conv_clamp=cc))
            self.to_rgbs.append(ToRGB(out_channel, cfg.style_dim, blur_kernel=bk, conv_clamp=cc))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2
        self.slayout = self._make_slayout()

    # -- layout ---------------------------------------------------------------------------
    def _modulated(self) -> list[tuple[str, ModulatedConv2d, int, int]]:
        """(name, conv, W+ index, resolution) of every modulated layer, in synthesis order."""
        out = [("conv1", self.conv1.conv, 0, 4), ("to_rgb1", self.to_rgb1.conv, 1, 4)]
        for i in range(len(self.to_rgbs)):
            res = 2 ** (i + 3)
            out.append((f"convs.{2 * i}", self.convs[2 * i].conv, 2 * i + 1, res))
            out.append((f"convs.{2 * i + 1}", self.convs[2 * i + 1].conv, 2 * i + 2, res))
            out.append((f"to_rgbs.{i}", self.to_rgbs[i].conv, 2 * i + 3, res))
        return out

    def _make_slayout(self) -> SLayout:
        mods = self._modulated()
        return SLayout(
            names=tuple(n for n, *_ in mods),
            widths=tuple(m.in_channel for _, m, *_ in mods),
            is_torgb=tuple(n.startswith("to_rgb") for n, *_ in mods),
            wplus_index=tuple(i for _, _, i, _ in mods),
            resolution=tuple(r for *_, r in mods),
        )

    # -- W ------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """``z: [B, style_dim] -> w: [B, style_dim]``."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int, z: torch.Tensor | None = None, seed: int = 0) -> torch.Tensor:
        """Mean of ``mapping`` over ``n`` Gaussian z (or over the given inputs): ``[1, style_dim]``."""
        if z is None:
            g = torch.Generator().manual_seed(seed)
            z = torch.randn(n, self.style_dim, generator=g)
        dev = next(self.parameters()).device
        return self.mapping(z.to(dev)).mean(0, keepdim=True)

    def _as_wplus(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        if w.ndim != 3 or w.shape[1] != self.n_latent or w.shape[2] != self.style_dim:
            raise ValueError(
                f"w_plus must be [B, {self.n_latent}, {self.style_dim}] "
                f"(or w [B, {self.style_dim}]), got {list(w.shape)}"
            )
        return w

    # -- S ------------------------------------------------------------------------------
    def styles(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """``w_plus: [B, n_latent, style_dim]`` (or ``w: [B, style_dim]``) -> ``[s_l: [B, C_l]]``.

        One tensor per modulated layer in ``self.slayout`` order: that layer's
        ``modulation`` (affine) output.
        """
        w_plus = self._as_wplus(w_plus)
        return [m.modulation(w_plus[:, i]) for _, m, i, _ in self._modulated()]

    def synthesis_from_styles(
        self, styles: Sequence[torch.Tensor], noise: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``[s_l: [B, C_l]]`` -> ``img: [B, 3, size, size]``.

        ``noise=None`` uses the stored ``noises.noise_*`` buffers (deterministic); otherwise
        a list of ``num_layers`` tensors ``[B or 1, 1, H, W]``.
        """
        if len(styles) != len(self.slayout):
            raise ValueError(f"expected {len(self.slayout)} style tensors, got {len(styles)}")
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if len(noise) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} noise tensors, got {len(noise)}")
        s = iter(styles)
        x = self.conv1(self.input(styles[0].shape[0]), next(s), noise[0])
        skip = self.to_rgb1(x, next(s))
        for i in range(len(self.to_rgbs)):
            x = self.convs[2 * i](x, next(s), noise[2 * i + 1])
            x = self.convs[2 * i + 1](x, next(s), noise[2 * i + 2])
            skip = self.to_rgbs[i](x, next(s), skip)
        return skip

    def synthesis(self, w_plus: torch.Tensor, noise: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """``w_plus: [B, n_latent, style_dim]`` (or ``w: [B, style_dim]``) -> ``img [B, 3, H, W]``."""
        return self.synthesis_from_styles(self.styles(w_plus), noise)

    def forward(self, z: torch.Tensor, truncation: float = 1.0, w_avg: torch.Tensor | None = None) -> torch.Tensor:
        """``z: [B, style_dim] -> img``; truncation pulls w towards ``w_avg``."""
        w = self.mapping(z)
        if truncation != 1.0:
            if w_avg is None:
                raise ValueError("truncation != 1 needs w_avg")
            w = w_avg + truncation * (w - w_avg)
        return self.synthesis(w)


Generator = StyleGAN2


def build_generator(cfg: GeneratorConfig, resolution: int | None = None) -> StyleGAN2:
    """Build from a config; ``resolution`` fills (or must agree with) ``cfg.size``."""
    if resolution is not None:
        if cfg.size is not None and cfg.size != resolution:
            raise ValueError(f"GeneratorConfig.size={cfg.size} disagrees with resolution={resolution}")
        cfg = GeneratorConfig(**{**cfg.__dict__, "size": int(resolution)})
    return StyleGAN2(cfg)


# -- rosinality checkpoints ------------------------------------------------------------------


def save_rosinality_checkpoint(path: str | Path, G: StyleGAN2, latent_avg: torch.Tensor) -> None:
    """Write ``{'g_ema': state_dict, 'latent_avg': [style_dim]}`` as rosinality's converter does."""
    sd = {k: v.detach().cpu().clone() for k, v in G.state_dict().items()}
    torch.save({"g_ema": sd, "latent_avg": latent_avg.detach().cpu().reshape(-1).clone()}, str(path))


def config_from_state_dict(sd: dict, lr_mlp: float = 0.01) -> GeneratorConfig:
    """Infer size, style_dim, n_mlp, widths and blur taps from a ``g_ema`` state dict.

    ``lr_mlp`` scales weights at run time and is not stored; 0.01 is rosinality's default.
    """
    style_dim = sd["style.1.weight"].shape[1]
    n_mlp = sum(1 for k in sd if k.startswith("style.") and k.endswith(".weight"))
    n_rgb = sum(1 for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight"))
    size = 2 ** (n_rgb + 2)
    channels = {4: sd["input.input"].shape[1]}
    for i in range(n_rgb):
        channels[2 ** (i + 3)] = sd[f"to_rgbs.{i}.conv.weight"].shape[2]
    blur = (1.0, 3.0, 3.0, 1.0)
    if "convs.0.conv.blur.kernel" in sd:
        k = sd["convs.0.conv.blur.kernel"].float().sum(1)
        blur = tuple(float(x) for x in (k / k.min()).tolist())
    return GeneratorConfig(
        size=size, style_dim=style_dim, n_mlp=n_mlp, channels=channels, lr_mlp=lr_mlp, blur_kernel=blur
    )


def load_rosinality_checkpoint(
    path: str | Path, lr_mlp: float = 0.01, key: str = "g_ema", map_location: str | torch.device = "cpu"
) -> tuple[StyleGAN2, torch.Tensor]:
    """Load a rosinality checkpoint -> ``(G.eval(), latent_avg [style_dim])``.

    Accepts converted official files (``g_ema``, ``latent_avg``) and ``train.py`` files
    (also ``g``, ``d``, ``g_optim``, ``d_optim``, ``args``). The architecture is read from
    the state dict. Without ``latent_avg`` it is the mean of 10000 mapped Gaussian z (seed 0).
    """
    path = Path(path)
    # train.py stores its argparse.Namespace under 'args'; allow exactly that class.
    ckpt = safe_torch_load(
        path, "a rosinality StyleGAN2 checkpoint", allow=[argparse.Namespace], map_location=map_location
    )
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict with key {key!r}, found a {type(ckpt).__name__}")
    if key in ckpt:
        sd = ckpt[key]
    elif "style.1.weight" in ckpt:
        sd = ckpt  # a bare generator state dict
    else:
        raise CheckpointError(
            f"{path}: not a rosinality StyleGAN2 checkpoint: no {key!r} key; found keys {sorted(map(str, ckpt))[:20]}"
        )
    if not isinstance(sd, dict) or "style.1.weight" not in sd or "input.input" not in sd:
        found = sorted(sd)[:10] if isinstance(sd, dict) else type(sd).__name__
        raise CheckpointError(f"{path}: {key!r} is not a StyleGAN2 generator state dict (found {found})")
    cfg = config_from_state_dict(sd, lr_mlp=lr_mlp)
    G = StyleGAN2(cfg)
    try:
        G.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: state dict does not match the inferred architecture {cfg.to_dict()}: {e}"
        ) from e
    G = G.to(map_location).eval()
    latent_avg = ckpt.get("latent_avg") if key in ckpt else None
    if latent_avg is None:
        latent_avg = G.mean_latent(10000)
    return G, latent_avg.reshape(-1).float()
