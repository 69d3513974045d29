"""The field's editing-benchmark metrics beside ours, every convention pinned.

What each column is, and the official code it follows:

- **LPIPS** (Zhang et al. 2018): the ``lpips`` package's formula (``lpips/lpips.py``
  ``LPIPS.forward``, version 0.1): its ``ScalingLayer`` shift/scale on [-1, 1] input, the
  trunk's five (squeeze: seven) ReLU outputs unit-normalised over channels (eps 1e-10), squared
  differences through the released linear layers ``weights/v0.1/<net>.pth`` shipped in the
  package, spatial mean, sum over layers. Trunks are torchvision's ImageNet weights through the
  weights registry (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``,
  ``squeezenet1_1-b8a52dc0.pth``). **Input range: [-1, 1]** (what ``lpips`` expects with
  ``normalize=False``); images are clamped to [-1, 1] as deltabench's PSNR/SSIM do.
  PIE-Bench scores with ``net='squeeze'`` (``evaluation/matrics_calculator.py`` line 276),
  the ``lpips`` package defaults to ``'alex'``.
- **Structure distance** (PIE-Bench, after Splice, Tumanyan et al. 2022): MSE between the
  cosine self-similarity matrices ``[T, T]`` of the last layer's keys (all heads concatenated,
  CLS token included) of DINO ViT-B/8 for source and edit (``matrics_calculator.py`` lines
  159-170, 182-183, 236-246, 385-405): images in [0, 1], ``Resize(224, max_size=480)``
  (bilinear without antialiasing: a tensor ``Resize`` in torchvision 0.13.1, which PIE-Bench's README
  installs, line 70), ImageNet mean/std. Weights
  ``dino_vitb8_pretrain.pth`` through the registry; the ViT is timm's ``VisionTransformer``
  (the same tensor names as DINO's own). Square images only (deltabench's are).
- **DINO-I** (MagicBrush ``evaluation/image_eval.py`` lines 72-95, 399-414, at fcfc892): cosine of
  the DINO ViT-S/16 CLS embeddings (``dino_vits16``, ``dino_deitsmall16_pretrain.pth`` through the
  registry) of the edit and the ground-truth target; each image rounded to 8 bits,
  ``Resize(256, interpolation=3)`` (PIL bicubic of the shorter side), ``CenterCrop(224)``, /255,
  ImageNet mean/std; mean over pairs. Details and citations: :mod:`deltabench.metrics.dino`.
- **CLIP-I** (cosine of two images' CLIP embeddings; MagicBrush ``image_eval.py``
  ``eval_clip_i``) and **CLIP-T** (cosine of image and caption; MagicBrush ``eval_clip_t``,
  PIE-Bench's ``clip_similarity_*`` as torchmetrics ``CLIPScore``, which reports
  100 * max(cos, 0)): plain cosines here (the house convention of
  :mod:`deltabench.metrics.clip_score`), the caption encoded as written (no templates), with the
  domain's CLIP; each column's name carries that CLIP's name.
- **Unedited-region PSNR / SSIM / MSE / LPIPS** where a mask exists (``mask`` 1 = the region
  the edit may change), as PIE-Bench computes them (``evaluation/evaluate.py`` lines 40-59,
  ``matrics_calculator.py`` lines 304-383): both images in [0, 1] multiplied by ``1 - mask``
  and the metric taken over the whole image (so the masked pixels are 0 in both and count in
  the means). PSNR with data range 1, capped at :data:`PSNR_CAP` dB (identical unedited regions,
  e.g. the renderer's perfect edit, would be +inf); MSE the mean over all values; SSIM
  torchmetrics' ``StructuralSimilarityIndexMeasure(data_range=1)`` (Gaussian window 11, sigma
  1.5, population covariance, valid positions), not the scikit-image uniform-window SSIM of the
  whole-image ``ssim`` column; LPIPS on ``masked * 2 - 1``.
- **CLIP-T of the edited region** (PIE-Bench ``clip_similarity_target_image_edit_part``): the
  edit times ``mask`` (black outside) against the target caption.

Exclusions: a pair whose mask has no unedited pixel (all ones) is left out of the unedited-region
columns, a pair whose mask is empty (all zeros) out of the edited-region column (PIE-Bench returns
the string "nan" for both, ``evaluate.py`` lines 41-42, 95-96). Here the per-pair array holds
NaN there, :attr:`FieldScores.excluded` counts them per column, and :meth:`FieldScores.summary`
gives each column's mean over the counted pairs with ``n`` and ``excluded`` beside it, so no NaN
ever enters a mean.

Synthetic worlds: no network of a world stands in for AlexNet/VGG/SqueezeNet or DINO (LPIPS's
linear layers are calibrated on those trunks' activations and the structure distance is defined on
DINO's keys; another network would be another metric under the same name). These columns are
computed with the registry's ImageNet/DINO weights wherever those files are present, on any
domain, and are otherwise absent, with the reason and the fetch command in
:attr:`FieldScores.notes`; the rule is the same on every domain (:func:`field_backbones`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from deltabench.checkpoints import load_prefixed
from deltabench.metrics.dino import (
    DINO_VARIANTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DinoSimilarity,
    dino_vit,  # noqa: F401  (deltabench.metrics.field.dino_vit, as before the split)
    load_dino_similarity,
    load_dino_vit,
)

PSNR_CAP = 60.0  # dB, as deltabench.metrics.image.PSNR.CAP
LPIPS_VERSION = "0.1"
# net -> (registry file of the torchvision trunk, indices of the trunk's `features` after which
# lpips taps an output (lpips/pretrained_networks.py slices), channels of each tapped output)
LPIPS_NETS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "alex": ("alexnet-owt-7be5be79.pth", (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": ("vgg16-397923af.pth", (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
    "squeeze": ("squeezenet1_1-b8a52dc0.pth", (1, 4, 7, 9, 10, 11, 12), (64, 128, 256, 384, 384, 512, 512)),
}
DINO_FILE, DINO_I_FILE = DINO_VARIANTS["vitb8"][0], DINO_VARIANTS["vits16"][0]
DINO_SIZE = 224  # PIE-Bench cfg 'dino_global_patch_size'


def _to01(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images (deltabench's convention) -> [0, 1] float32, clamped."""
    return (x.detach().float().clamp(-1, 1) + 1) / 2


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.ndim != 4 or a.shape[1] != 3 or a.shape != b.shape:
        raise ValueError(
            f"{what}: expected two image batches [N, 3, H, W] of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )


# ----------------------------------------------------------------------------------- LPIPS


def _lpips_trunk(net: str) -> nn.Sequential:
    """torchvision's ``features`` of the trunk, up to the last tapped layer (random weights)."""
    if net == "alex":  # torchvision AlexNet.features, built without its 57M-value classifier
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=True),
        )
    if net == "vgg":
        from torchvision.models.vgg import cfgs, make_layers

        return make_layers(cfgs["D"], batch_norm=False)[:30]
    if net == "squeeze":
        from torchvision.models import squeezenet1_1

        return squeezenet1_1(weights=None).features[:13]
    raise ValueError(f"LPIPS net {net!r}: give one of {', '.join(LPIPS_NETS)}")


class LPIPS(nn.Module):
    """``lpips.LPIPS(net=net, version='0.1')`` as a metric: ``forward(a, b) -> [N]`` for images
    ``[N, 3, H, W]`` in [-1, 1]. ``trunk`` / ``lin``: state dicts of the torchvision trunk
    (``features.*``) and of the package's linear layers (``lin<k>.model.1.weight``)."""

    def __init__(self, net: str = "alex", trunk: dict | None = None, lin: dict | None = None):
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"LPIPS net {net!r}: give one of {', '.join(LPIPS_NETS)}")
        self.net_name = net
        _, self.taps, chns = LPIPS_NETS[net]
        self.features = _lpips_trunk(net)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chns)
        # lpips ScalingLayer: (x - shift) / scale on [-1, 1] input
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        if trunk is not None:
            self.load_trunk(trunk)
        if lin is not None:
            self.load_lin(lin)
        self.eval().requires_grad_(False)

    def load_trunk(self, sd: dict, where: str = "LPIPS trunk") -> None:
        load_prefixed(self.features, sd, "features", where, f"torchvision's state dict, {LPIPS_NETS[self.net_name][0]}")

    def load_lin(self, sd: dict, where: str = "LPIPS linear layers") -> None:
        for i, lin in enumerate(self.lins):
            w = sd.get(f"lin{i}.model.1.weight")
            if not isinstance(w, torch.Tensor) or w.shape != lin.weight.shape:
                raise ValueError(
                    f"{where}: lin{i}.model.1.weight must be a tensor of shape "
                    f"{list(lin.weight.shape)} (the lpips package's weights/v0.1/{self.net_name}.pth)"
                )
            lin.weight.data.copy_(w)

    @property
    def name(self) -> str:
        return self.net_name

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, want = [], set(self.taps)
        for i, m in enumerate(self.features):
            x = m(x)
            if i in want:
                out.append(x)
            if i == self.taps[-1]:
                break
        return out

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_pair(a, b, "LPIPS")
        dev = self.shift.device
        xa = (a.detach().float().clamp(-1, 1).to(dev) - self.shift) / self.scale
        xb = (b.detach().float().clamp(-1, 1).to(dev) - self.shift) / self.scale
        total = 0.0
        for lin, fa, fb in zip(self.lins, self._taps(xa), self._taps(xb)):
            na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + lin((na - nb) ** 2).mean((2, 3))  # [N, 1]
        return total.flatten().double().cpu()


def lpips_linear_weights(net: str = "alex") -> tuple[dict, Path]:
    """The released linear layers ``weights/v0.1/<net>.pth`` of the installed ``lpips`` package
    (read with ``weights_only=True``) and their path."""
    from importlib import resources

    from deltabench.checkpoints import safe_torch_load

    try:
        root = resources.files("lpips")
    except ModuleNotFoundError:
        raise ValueError("LPIPS needs the lpips package (its released linear layers): pip install lpips") from None
    path = Path(str(root / "weights" / f"v{LPIPS_VERSION}" / f"{net}.pth"))
    return safe_torch_load(path, f"the lpips package's linear layers (weights/v{LPIPS_VERSION}/{net}.pth)"), path


def load_lpips(net: str = "alex", weights_dir: str | Path | None = None, device: str | torch.device = "cpu") -> LPIPS:
    """LPIPS with the registry's torchvision trunk and the ``lpips`` package's linear layers.
    A missing trunk file raises :class:`deltabench.weights.MissingWeightsError` saying how to fetch it."""
    from deltabench.checkpoints import CheckpointError, safe_torch_load
    from deltabench.weights import path_of

    if net not in LPIPS_NETS:
        raise ValueError(f"LPIPS net {net!r}: give one of {', '.join(LPIPS_NETS)}")
    path = path_of(LPIPS_NETS[net][0], weights_dir)
    sd = safe_torch_load(path, f"torchvision's ImageNet weights ({LPIPS_NETS[net][0]})")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(sd).__name__}")
    lin, _ = lpips_linear_weights(net)
    m = LPIPS(net)
    m.load_trunk(sd, str(path))
    m.load_lin(lin)
    return m.to(device)


# ------------------------------------------------------------------------- structure distance


class StructureDistance(nn.Module):
    """PIE-Bench's structure distance on a DINO ViT: ``forward(a, b) -> [N]`` for images in [-1, 1].

    ``vit``: a timm ``VisionTransformer`` (``patch_embed``, ``_pos_embed``, ``blocks``), e.g.
    :func:`dino_vit` with ``dino_vitb8_pretrain.pth`` loaded. ``size``: the resize's target side."""

    def __init__(self, vit: nn.Module, size: int = DINO_SIZE, name: str = "DINO ViT-B/8"):
        super().__init__()
        self.vit, self.size, self.name = vit.eval().requires_grad_(False), size, name
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def prep(self, img: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [0, 1] -> Resize(size) bilinear, no antialiasing -> ImageNet mean/std."""
        if img.ndim != 4 or img.shape[-1] != img.shape[-2]:
            raise ValueError(f"structure distance: expected square images [N, 3, H, H], got {tuple(img.shape)}")
        x = _to01(img).to(self.mean.device)
        if x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=False)
        return (x - self.mean) / self.std

    def keys(self, x: torch.Tensor) -> torch.Tensor:
        """The last block's keys ``[N, T, D]`` (heads concatenated per token) of prepared input."""
        v = self.vit
        h = v._pos_embed(v.patch_embed(x))
        h = v.norm_pre(v.patch_drop(h))
        for blk in v.blocks[:-1]:
            h = blk(h)
        last = v.blocks[-1]
        qkv = last.attn.qkv(last.norm1(h))  # [N, T, 3D]: q | k | v, each heads-major
        d = qkv.shape[-1] // 3
        return qkv[..., d : 2 * d]

    def self_similarity(self, img: torch.Tensor) -> torch.Tensor:
        """Cosine self-similarity of the keys, ``[N, T, T]`` (norm product clamped at 1e-8)."""
        k = self.keys(self.prep(img)).float()
        n = k.norm(dim=-1, keepdim=True)
        return (k @ k.transpose(1, 2)) / (n @ n.transpose(1, 2)).clamp_min(1e-8)

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        _check_pair(a, b, "structure distance")
        sa, sb = self.self_similarity(a), self.self_similarity(b)
        return ((sa - sb) ** 2).mean((1, 2)).double().cpu()


def load_structure_distance(
    weights_dir: str | Path | None = None, device: str | torch.device = "cpu"
) -> StructureDistance:
    """The structure distance on DINO ViT-B/8 from the registry's ``dino_vitb8_pretrain.pth``."""
    return StructureDistance(load_dino_vit("vitb8", weights_dir)).to(device)


# ------------------------------------------------------------------------------ pixel metrics


def mse01(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image MSE ``[N]`` of [0, 1] images (float64)."""
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1)


def psnr01(a: torch.Tensor, b: torch.Tensor, cap: float = PSNR_CAP) -> torch.Tensor:
    """Per-image PSNR ``[N]`` (dB, data range 1) of [0, 1] images, capped at ``cap``."""
    m = mse01(a, b)
    return torch.where(m > 0, 10 * torch.log10(1.0 / m.clamp_min(1e-300)), torch.full_like(m, math.inf)).clamp(max=cap)


def ssim_gaussian01(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5, kernel: int = 11) -> torch.Tensor:
    """Per-image SSIM ``[N]`` of [0, 1] images as torchmetrics' ``StructuralSimilarityIndexMeasure(
    data_range=1)``: Gaussian window (11 taps, sigma 1.5), K1 0.01, K2 0.03, population
    (co)variances, mean over the positions whose window lies inside the image, then over channels.
    Equals ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)``."""
    a, b = a.double(), b.double()
    n, c, h, w = a.shape
    if kernel > min(h, w):
        raise ValueError(f"SSIM: the {kernel}-pixel window is larger than the {h}x{w} image")
    r = torch.arange(kernel, dtype=torch.float64) - (kernel - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :]).expand(c, 1, kernel, kernel)
    pool = lambda x: F.conv2d(x, win, groups=c)  # noqa: E731  valid positions only
    ua, ub = pool(a), pool(b)
    va, vb, vab = pool(a * a) - ua * ua, pool(b * b) - ub * ub, pool(a * b) - ua * ub
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
    return s.mean((2, 3)).mean(1)


def _mask_tensor(masks, n: int, h: int, w: int) -> torch.Tensor:
    """Masks (bool/0-1 ``[N, H, W]`` array or tensor, or a list of ``[H, W]`` arrays) -> float64 ``[N, 1, H, W]``."""
    if isinstance(masks, (list, tuple)):
        masks = np.stack([np.asarray(m) for m in masks]) if len(masks) else np.zeros((0, h, w))
    m = torch.as_tensor(np.asarray(masks) if not isinstance(masks, torch.Tensor) else masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if tuple(m.shape) != (n, h, w):
        raise ValueError(f"masks: expected one [H, W] = [{h}, {w}] mask per image ({n}), got shape {tuple(m.shape)}")
    if m.dtype != torch.bool and not ((m == 0) | (m == 1)).all():
        raise ValueError("masks: expected 0/1 (or boolean) values, 1 where the edit may change the image")
    return m.to(torch.float64)[:, None]


# --------------------------------------------------------------------------------- the scorer


@dataclass(frozen=True)
class FieldClip:
    """A CLIP for CLIP-I / CLIP-T: ``name`` (in the column names), ``image``: ``[N, 3, H, W]`` in
    [-1, 1] -> unit ``[N, D]``, ``text``: list of captions -> unit ``[N, D]`` (as written, no templates)."""

    name: str
    image: Callable[[torch.Tensor], torch.Tensor]
    text: Callable[[list[str]], torch.Tensor]


def clip_name(domain) -> str:
    """The name of a domain's CLIP for column names (the domain contract's ``clip_name``): the
    open_clip model and weights file on a real domain, ``<world> CLIP`` on a synthetic world."""
    return domain.clip_name


def domain_clip(domain) -> FieldClip:
    """The domain's CLIP wrapper as a :class:`FieldClip` (``domain.clip_image``, ``domain.clip.encode_text``)."""
    return FieldClip(
        clip_name(domain), domain.clip_image, lambda texts: domain.clip.encode_text(list(texts)).detach().float().cpu()
    )


@dataclass
class FieldBackbones:
    """The networks of the field's columns and, per column family, what was used or why absent."""

    lpips: LPIPS | None = None
    structure: StructureDistance | None = None
    dino: DinoSimilarity | None = None
    notes: dict = field(default_factory=dict)


def field_backbones(
    domain=None,
    weights_dir: str | Path | None = None,
    lpips_net: str = "alex",
    device: str | torch.device = "cpu",
    dino_i: bool = False,
) -> FieldBackbones:
    """LPIPS, the structure distance and (``dino_i``: for ground-truth targets, MagicBrush) DINO-I
    with the registry's weights where present, else absent.

    The rule is the same on every domain: the ImageNet trunk (``lpips_net``), DINO ViT-B/8 and
    ViT-S/16 files from the weights folder; no world network stands in for them (see the module
    docstring). ``notes`` says, per column family, the backbone used or why the columns are absent."""
    from deltabench.weights import MissingWeightsError

    out = FieldBackbones()
    synthetic = domain is not None and domain.kind != "real"
    world = f" (no network of the synthetic world {domain.name!r} stands in for it)" if synthetic else ""
    try:
        out.lpips = load_lpips(lpips_net, weights_dir, device)
        out.notes["lpips"] = (
            f"LPIPS v{LPIPS_VERSION}, lpips package linear layers weights/v{LPIPS_VERSION}/"
            f"{lpips_net}.pth, torchvision ImageNet trunk {LPIPS_NETS[lpips_net][0]}, input [-1, 1]"
        )
    except MissingWeightsError as e:
        out.notes["lpips"] = f"absent: {e}{world}"
    try:
        out.structure = load_structure_distance(weights_dir, device)
        out.notes["structure_distance"] = (
            f"DINO ViT-B/8 ({DINO_FILE}), last-layer keys' self-similarity, "
            f"PIE-Bench resize {DINO_SIZE} bilinear (no antialias), ImageNet mean/std"
        )
    except MissingWeightsError as e:
        out.notes["structure_distance"] = f"absent: {e}{world}"
    if dino_i:
        try:
            out.dino = load_dino_similarity(weights_dir, device)
            out.notes["dino_i_ref"] = (
                f"DINO ViT-S/16 ({DINO_I_FILE}) CLS cosine of edit and target, MagicBrush's transform: "
                f"8-bit, PIL bicubic shorter side 256, centre crop 224, ImageNet mean/std"
            )
        except MissingWeightsError as e:
            out.notes["dino_i_ref"] = f"absent: {e}{world}"
    return out


@dataclass
class FieldScores:
    """Per-pair scores of the field's columns: ``columns[key]`` float64 ``[N]`` (NaN where the
    pair is excluded), ``excluded[key]`` how many pairs were left out and why, ``labels`` headers,
    ``higher_is_better``, ``notes`` (backbones, conventions, absent columns)."""

    columns: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    excluded: dict[str, dict] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def add(
        self, key: str, values, label: str, higher: bool, excluded: np.ndarray | None = None, reason: str = ""
    ) -> None:
        v = np.asarray(
            torch.as_tensor(values).double().cpu().numpy() if isinstance(values, torch.Tensor) else values,
            dtype=np.float64,
        ).copy()
        if excluded is not None and excluded.any():
            v[excluded] = np.nan
            self.excluded[key] = {"n": int(excluded.sum()), "reason": reason}
        self.columns[key], self.labels[key], self.higher_is_better[key] = v, label, higher

    def summary(self) -> dict[str, dict]:
        """Per column: ``mean`` over the counted pairs, ``n`` counted, ``excluded`` left out
        (``mean`` is None when every pair was excluded; never NaN)."""
        out = {}
        for k, v in self.columns.items():
            ok = ~np.isnan(v)
            out[k] = {
                "mean": float(v[ok].mean()) if ok.any() else None,
                "n": int(ok.sum()),
                "excluded": int((~ok).sum()),
            }
        return out


def _batched(fn, xs: tuple, batch: int) -> torch.Tensor:
    """``fn`` over batches of the tensors ``xs`` (one scalar per item) -> float64 ``[N]``."""
    n = len(xs[0])
    if not n:
        return torch.zeros(0, dtype=torch.float64)
    return torch.cat(
        [torch.as_tensor(fn(*(x[i : i + batch] for x in xs))).double().cpu().flatten() for i in range(0, n, batch)]
    )


def _embed(clip: FieldClip, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Unit CLIP image embeddings ``[N, D]``, float64."""
    return F.normalize(torch.cat([clip.image(x[i : i + batch]).double().cpu() for i in range(0, len(x), batch)]), dim=1)


def _clip_columns(out: FieldScores, clip: FieldClip, inputs, edits, prompts, references, batch: int):
    """CLIP-I (input-edit, and edit-target with references) and CLIP-T; returns the unit text embeddings or None."""
    ea, eb = _embed(clip, inputs, batch), _embed(clip, edits, batch)
    out.add(f"clip_i[{clip.name}]", (ea * eb).sum(1), f"CLIP-I input-edit ({clip.name})", True)
    if references is not None:
        er = _embed(clip, references, batch)
        out.add(f"clip_i_ref[{clip.name}]", (er * eb).sum(1), f"CLIP-I edit-target ({clip.name})", True)
    if prompts is None:
        return None
    et = F.normalize(torch.as_tensor(clip.text(list(prompts))).double().cpu(), dim=1)
    out.add(f"clip_t[{clip.name}]", (eb * et).sum(1), f"CLIP-T ({clip.name})", True)
    return et


def _region_columns(out: FieldScores, a01, b01, masks, lpips, clip, text_emb, batch: int) -> None:
    """The unedited-region columns (PIE-Bench: both images times 1 - mask) and CLIP-T of the edited region."""
    n, _, h, w = a01.shape
    m = _mask_tensor(masks, n, h, w)  # [N, 1, H, W] float64, 1 = may change
    keep = 1 - m
    no_unedited = (keep.flatten(1).sum(1) == 0).numpy()
    why = "the mask covers the whole image: no unedited region"
    a_k, b_k = a01.double() * keep, b01.double() * keep
    out.add("psnr_unedited", psnr01(a_k, b_k), "PSNR unedited", True, no_unedited, why)
    out.add("ssim_unedited", ssim_gaussian01(a_k, b_k), "SSIM unedited (Gaussian)", True, no_unedited, why)
    out.add("mse_unedited", mse01(a_k, b_k), "MSE unedited", False, no_unedited, why)
    if lpips is not None:
        v = _batched(lpips, ((a_k * 2 - 1).float(), (b_k * 2 - 1).float()), batch)
        out.add(f"lpips_unedited[{lpips.name}]", v, f"LPIPS unedited ({lpips.name})", False, no_unedited, why)
    if clip is not None and text_emb is not None:
        ee = _embed(clip, (b01.double() * m * 2 - 1).float(), batch)  # the edit, black outside the edit region
        empty = (m.flatten(1).sum(1) == 0).numpy()
        out.add(
            f"clip_t_edit_region[{clip.name}]",
            (ee * text_emb).sum(1),
            f"CLIP-T edited region ({clip.name})",
            True,
            empty,
            "the mask is empty: no edited region",
        )


@torch.no_grad()
def score_field(
    inputs: torch.Tensor,
    edits: torch.Tensor,
    masks=None,
    prompts: Sequence[str] | None = None,
    clip: FieldClip | None = None,
    lpips: LPIPS | None = None,
    structure: StructureDistance | None = None,
    references: torch.Tensor | None = None,
    dino: DinoSimilarity | None = None,
    notes: dict | None = None,
    batch: int = 16,
) -> FieldScores:
    """The field's columns for ``N`` (input, edit) pairs.

    ``inputs``, ``edits``: ``[N, 3, H, W]`` in [-1, 1]. ``masks``: ``[N, H, W]`` 0/1 (1: the region the
    edit may change), or None (no unedited-region columns). ``prompts``: the N target captions
    (CLIP-T), or None. ``clip``: a :class:`FieldClip` (:func:`domain_clip`), or None (no CLIP
    columns). ``lpips`` / ``structure``: from :func:`field_backbones`, or None (column absent).
    ``references``: ground-truth target images ``[N, 3, H, W]`` (MagicBrush), adding L1/L2/CLIP-I
    and, with ``dino`` (:func:`field_backbones` ``(dino_i=True)``), DINO-I against them. ``notes``:
    recorded as they are (e.g. ``FieldBackbones.notes``).
    """
    _check_pair(inputs, edits, "score_field inputs and edits")
    n = len(inputs)
    out = FieldScores(notes=dict(notes or {}))
    a01, b01 = _to01(inputs), _to01(edits)
    if prompts is not None and len(prompts) != n:
        raise ValueError(f"score_field: {len(prompts)} prompts for {n} pairs; give one target caption per pair")
    if references is not None:
        _check_pair(edits, references, "score_field edits and references")
    if lpips is not None:
        out.add(f"lpips[{lpips.name}]", _batched(lpips, (inputs, edits), batch), f"LPIPS ({lpips.name})", False)
    if structure is not None:
        v = _batched(structure, (inputs, edits), batch)
        out.add("structure_distance[dino_vitb8]", v, f"structure distance ({structure.name})", False)
    if references is not None:
        r01 = _to01(references)
        out.add("l1_ref", (b01.double() - r01.double()).abs().flatten(1).mean(1), "L1 to target", False)
        out.add("l2_ref", mse01(b01, r01), "L2 to target", False)
        if dino is not None:
            v = _batched(dino, (edits, references), batch)
            out.add("dino_i_ref[dino_vits16]", v, f"DINO-I edit-target ({dino.name})", True)
    text_emb = _clip_columns(out, clip, inputs, edits, prompts, references, batch) if clip is not None and n else None
    if masks is not None:
        _region_columns(out, a01, b01, masks, lpips, clip, text_emb, batch)
    return out
