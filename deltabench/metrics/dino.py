"""DINO ViTs for the field's metrics, and MagicBrush's DINO image similarity (DINO-I).

**The networks** (Caron et al. 2021, facebookresearch/dino at 7c446df): ``vit_small`` (embed 384,
6 heads) and ``vit_base`` (768, 12 heads), both 12 blocks, MLP ratio 4, qkv bias, LayerNorm eps
1e-6 (``vision_transformer.py`` lines 236-253), built here as timm's ``VisionTransformer``, whose
tensor names are DINO's own (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``,
``blocks.<i>.*``, ``norm.*``; no head: the hub models have ``num_classes=0``). Their weights are the
released backbone files the hub entries download (``hubconf.py`` lines 22-34 ``dino_vits16`` ->
``dino_deitsmall16_pretrain.pth``; ``dino_vitb8`` -> ``dino_vitb8_pretrain.pth``), through the
weights registry, read with ``weights_only=True``; a file must hold every tensor at its shape
(:func:`load_dino_vit`), else one error names it.

**DINO-I** (MagicBrush, Zhang et al. 2023; OSU-NLP-Group/MagicBrush ``evaluation/image_eval.py``
at fcfc892), the column ``dino_i_ref[dino_vits16]`` of
:func:`deltabench.metrics.field.score_field`:

- the network: ``torch.hub.load('facebookresearch/dino:main', 'dino_vits16')`` (line 400), in
  eval mode (line 401); its output is DINO's ``forward``: the final LayerNorm's CLS token, 384 values
  (dino ``vision_transformer.py`` lines 209-214; at 224 px the position embeddings are used as
  they are, lines 177-178);
- the preprocessing (lines 403-408), on the PIL RGB image read from the PNG (lines 87-88):
  ``Resize(256, interpolation=3)``: PIL bicubic (3 = ``PIL.Image.BICUBIC``, antialiased as PIL's
  filters are) of the shorter side to 256, the longer to ``int(256 * long / short)``
  (torchvision's rule); ``CenterCrop(224)``: offsets ``int(round((side - 224) / 2))``; ``ToTensor``
  (/255); ``Normalize`` with ImageNet mean/std. Here a [-1, 1] image is first rounded to 8 bits
  (exact for an image read from an 8-bit file, as MagicBrush's are) and PIL resizes the 8-bit RGB
  image, so the network sees the very tensor MagicBrush's transform makes
  (:func:`magicbrush_dino_input`);
- the similarity: ``1 - scipy.spatial.distance.cosine`` of the two embeddings (lines 89-90), a
  plain cosine (here in float64 from the float32 embeddings);
- the pair: the generated image against the ground-truth target ``<id>-output<k>.png`` (lines
  86-88, 208-248, 283-293), each image preprocessed on its own;
- the average: the plain mean over the pairs (line 95), reported for the final-turn and the
  all-turn pairs (lines 409-414). deltabench's reader gives every turn's independent edit (the
  all-turn setting), so the column's mean is MagicBrush's all-turn DINO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# variant -> (registry file, patch size, embedding width, heads, name); 12 blocks each
DINO_VARIANTS: dict[str, tuple[str, int, int, int, str]] = {
    "vitb8": ("dino_vitb8_pretrain.pth", 8, 768, 12, "DINO ViT-B/8"),
    "vits16": ("dino_deitsmall16_pretrain.pth", 16, 384, 6, "DINO ViT-S/16"),
}
DINO_I_VARIANT = "vits16"  # MagicBrush's dino_vits16
MB_RESIZE, MB_CROP = 256, 224  # MagicBrush image_eval.py lines 404-405


def dino_vit(variant: str = "vitb8") -> nn.Module:
    """timm's ``VisionTransformer`` shaped as a DINO ViT (``vitb8``: ``vit_base`` patch 8, PIE-Bench's;
    ``vits16``: ``vit_small`` patch 16, MagicBrush's), 224 px input, no head (random weights)."""
    from functools import partial

    from timm.models.vision_transformer import VisionTransformer

    if variant not in DINO_VARIANTS:
        raise ValueError(f"DINO variant {variant!r}: give one of {', '.join(DINO_VARIANTS)}")
    _, patch, dim, heads, _ = DINO_VARIANTS[variant]
    return VisionTransformer(
        img_size=224,
        patch_size=patch,
        embed_dim=dim,
        depth=12,
        num_heads=heads,
        mlp_ratio=4,
        qkv_bias=True,
        num_classes=0,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
    )


def load_dino_vit(variant: str = "vitb8", weights_dir: str | Path | None = None) -> nn.Module:
    """:func:`dino_vit` with the registry's released backbone file of ``variant``, read with
    ``weights_only=True``. A missing file raises :class:`deltabench.weights.MissingWeightsError`
    saying how to fetch it; a file without every tensor at its shape, a ``CheckpointError``."""
    from deltabench.checkpoints import CheckpointError, safe_torch_load
    from deltabench.weights import path_of

    if variant not in DINO_VARIANTS:
        raise ValueError(f"DINO variant {variant!r}: give one of {', '.join(DINO_VARIANTS)}")
    file, _, _, _, name = DINO_VARIANTS[variant]
    path = path_of(file, weights_dir)
    sd = safe_torch_load(path, f"{name} weights ({file})")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(sd).__name__}")
    with torch.device("meta"):  # shapes only: the file's tensors are assigned, nothing is initialised
        vit = dino_vit(variant)
    own = vit.state_dict()
    bad = [k for k, v in own.items() if not isinstance(sd.get(k), torch.Tensor) or sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(
            f"{path}: not {name} weights: {len(bad)} tensors missing or misshapen "
            f"(first: {bad[:3]}); expected {file} from facebookresearch/dino"
        )
    vit.load_state_dict({k: sd[k].float() for k in own}, assign=True)
    return vit.eval().requires_grad_(False)


def magicbrush_dino_input(img: torch.Tensor, resize: int = MB_RESIZE, crop: int = MB_CROP) -> torch.Tensor:
    """MagicBrush's DINO transform of images ``[N, 3, H, W]`` in [-1, 1]: rounded to 8 bits, PIL
    bicubic resize of the shorter side to ``resize``, centre crop ``crop``, /255, then ImageNet
    mean/std -> float32 ``[N, 3, crop, crop]`` (on the CPU)."""
    from PIL import Image

    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"DINO-I: expected images [N, 3, H, W], got {tuple(img.shape)}")
    h, w = img.shape[-2:]
    short, long = min(h, w), max(h, w)
    wh = (resize, int(resize * long / short)) if w <= h else (int(resize * long / short), resize)  # PIL: (w, h)
    if min(wh) < crop:
        raise ValueError(f"DINO-I: a {w}x{h} image resized to {wh[0]}x{wh[1]} is smaller than the {crop}-px crop")
    u8 = ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)
    out = torch.stack(
        [torch.from_numpy(np.array(Image.fromarray(a.numpy(), "RGB").resize(wh, Image.BICUBIC))) for a in u8]
    )
    top, left = int(round((wh[1] - crop) / 2.0)), int(round((wh[0] - crop) / 2.0))
    x = out.permute(0, 3, 1, 2)[..., top : top + crop, left : left + crop].float() / 255
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class DinoSimilarity(nn.Module):
    """MagicBrush's DINO-I: ``forward(a, b) -> [N]`` float64 cosines of the DINO CLS embeddings of
    images ``a`` and ``b`` (``[N, 3, H, W]`` each, in [-1, 1]; a's and b's sizes may differ, each is
    preprocessed on its own). ``vit``: a timm ``VisionTransformer`` (``forward_features``), e.g.
    :func:`load_dino_vit` ``("vits16")``; ``resize`` / ``crop``: the transform's sizes."""

    def __init__(
        self, vit: nn.Module, resize: int = MB_RESIZE, crop: int = MB_CROP, name: str = "DINO ViT-S/16"
    ) -> None:
        super().__init__()
        self.vit, self.resize, self.crop, self.name = vit.eval().requires_grad_(False), resize, crop, name

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        """The CLS token after the final LayerNorm, float32 ``[N, D]`` (on the CPU)."""
        dev = next(self.vit.parameters()).device
        x = magicbrush_dino_input(img, self.resize, self.crop).to(dev)
        return self.vit.forward_features(x)[:, 0].float().cpu()

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if len(a) != len(b):
            raise ValueError(f"DINO-I: {len(a)} images against {len(b)}; give one target per image")
        ea, eb = self.embed(a).double(), self.embed(b).double()
        return (ea * eb).sum(1) / (ea.norm(dim=1) * eb.norm(dim=1))


def load_dino_similarity(weights_dir: str | Path | None = None, device: str | torch.device = "cpu") -> DinoSimilarity:
    """MagicBrush's DINO-I on DINO ViT-S/16 from the registry's ``dino_deitsmall16_pretrain.pth``."""
    return DinoSimilarity(load_dino_vit(DINO_I_VARIANT, weights_dir)).to(device)
