"""CLIP score and directional CLIP score of edits.

- CLIP score: cos(E_I(edit), E_T(target)). Reported as the plain cosine in [-1, 1]: no x100
  and no clamp at 0 (torchmetrics ``CLIPScore`` reports 100 * max(cos, 0), Hessel et al.
  2.5 * max(cos, 0)); a small world CLIP gives small and sometimes negative cosines, and a
  clamp would hide them. ``scale=100`` gives the torchmetrics scale (still unclamped).
- Directional CLIP score: cos(E_I(edit) - E_I(input), E_T(target) - E_T(source)), the
  "directional CLIP similarity" of StyleGAN-NADA (Gal et al. 2022) and InstructPix2Pix: did the
  image move in CLIP space the way the text moved? Swapping source and target flips its sign.

Text embeddings are passed in (``[D]``), so the caller chooses template averaging (the domain's
``text_embedding`` averages over its templates, as StyleCLIP and DeltaEdit do).
``encode_image``: images ``[N, 3, H, W]`` in [-1, 1] -> ``[N, D]`` (``domain.clip_image``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from deltabench.metrics.image import _MeanOfScores

ImageEncoder = Callable[[torch.Tensor], torch.Tensor]


def _unit(v: torch.Tensor, what: str, ndim: int) -> torch.Tensor:
    v = torch.as_tensor(v).detach().to("cpu", torch.float64)
    if v.ndim != ndim:
        raise ValueError(f"{what}: expected a {ndim}-d tensor, got shape {tuple(v.shape)}")
    return F.normalize(v, dim=-1)


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Per-image cos(image, text): ``[N, D], [D] -> [N]``."""
    img, txt = _unit(image_emb, "CLIP score image embeddings", 2), _unit(text_emb, "CLIP score text embedding", 1)
    if img.shape[1] != txt.shape[0]:
        raise ValueError(f"CLIP score: image embeddings are {img.shape[1]}-d, the text embedding {txt.shape[0]}-d")
    return img @ txt


def directional_clip_score(
    input_emb: torch.Tensor, edited_emb: torch.Tensor, source_text: torch.Tensor, target_text: torch.Tensor
) -> torch.Tensor:
    """Per-image cos(Δ image, Δ text): ``[N, D] x 2, [D] x 2 -> [N]``.

    Image embeddings are normalised before the difference (CLIP's space is the sphere);
    an edit that leaves the embedding unchanged scores 0.
    """
    a, b = _unit(input_emb, "input image embeddings", 2), _unit(edited_emb, "edited image embeddings", 2)
    s, t = _unit(source_text, "source text embedding", 1), _unit(target_text, "target text embedding", 1)
    dt = t - s  # [D]
    if dt.norm() < 1e-8:
        raise ValueError(
            "directional CLIP score: source and target texts have the same embedding; give two different prompts"
        )
    di = b - a  # [N, D]
    return (F.normalize(di, dim=1) * F.normalize(dt, dim=0)).sum(1)


class ClipScore(_MeanOfScores):
    """Mean cos(E_I(edit), target text) over edited images."""

    key, label, higher_is_better = "clip_score", "CLIP score", True

    def update_from(self, batch) -> torch.Tensor:
        return self.update(batch.edited, edited_emb=batch.clip_edited())

    def __init__(self, encode_image: ImageEncoder, target_text: torch.Tensor, scale: float = 1.0):
        super().__init__()
        self.encode_image, self.scale = encode_image, scale
        self.target_text = _unit(target_text, "CLIP score target text embedding", 1)

    @torch.no_grad()
    def update(self, edited: torch.Tensor, edited_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Score edited images (or their precomputed embeddings); returns per-image scores ``[N]``."""
        emb = self.encode_image(edited) if edited_emb is None else edited_emb
        return self._add(self.scale * clip_score(emb, self.target_text))


class DirectionalClipScore(_MeanOfScores):
    """Mean cos(E_I(edit) - E_I(input), E_T(target) - E_T(source)) over images."""

    key, label, higher_is_better = "clip_direction", "CLIP direction", True

    def update_from(self, batch) -> torch.Tensor:
        return self.update(input_emb=batch.clip_start(), edited_emb=batch.clip_edited())

    def __init__(self, encode_image: ImageEncoder, source_text: torch.Tensor, target_text: torch.Tensor):
        super().__init__()
        self.encode_image = encode_image
        self.source_text = _unit(source_text, "source text embedding", 1)
        self.target_text = _unit(target_text, "target text embedding", 1)
        if (self.target_text - self.source_text).norm() < 1e-8:
            raise ValueError(
                "directional CLIP score: source and target texts have the same embedding; give two different prompts"
            )

    @torch.no_grad()
    def update(
        self,
        inputs: torch.Tensor | None = None,
        edited: torch.Tensor | None = None,
        input_emb: torch.Tensor | None = None,
        edited_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images or precomputed CLIP embeddings of inputs and edits; returns per-image scores ``[N]``."""
        if (inputs is None) == (input_emb is None) or (edited is None) == (edited_emb is None):
            raise ValueError(
                "DirectionalClipScore.update: give inputs= or input_emb=, and edited= or edited_emb= "
                "(exactly one of each)"
            )
        a = self.encode_image(inputs) if input_emb is None else input_emb
        b = self.encode_image(edited) if edited_emb is None else edited_emb
        return self._add(directional_clip_score(a, b, self.source_text, self.target_text))
