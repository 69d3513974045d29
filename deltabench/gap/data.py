"""Paired (image, caption) CLIP embeddings and random delta pairs for the gap analysis."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deltabench.utils import progress

CAPTION_MODES = ("full", "mixed")


@dataclass(frozen=True)
class PairedEmbeddings:
    image: np.ndarray  # [N, D] unit rows
    text: np.ndarray  # [N, D] unit rows
    captions: list[str]


def _rng(seed: int, stream: int) -> np.random.Generator:
    # One independent stream per use, all fixed by the run seed.
    return np.random.default_rng([int(seed), int(stream)])


def world_captions(params, seed: int, mode: str = "full") -> list[str]:
    """One training-split caption per face, deterministic from ``seed``.

    ``full``: every caption names every attribute (the world's two full forms, half each),
    the analogue of the MultiModal-CelebA-HQ descriptions the paper embeds; then
    ``t_b - t_a`` names exactly what differs between faces a and b, as ``i_b - i_a`` shows it.
    ``mixed``: the CLIP training mix (:func:`deltabench.world.captions.caption`: half full,
    half naming 0-3 attributes), where a short caption leaves most of the face undescribed.
    """
    from deltabench.world.captions import captions_with_mentions

    if mode not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {mode!r}")
    texts, _ = captions_with_mentions(params, _rng(seed, 1), split="train", p_full=1.0 if mode == "full" else 0.5)
    return texts


@torch.no_grad()
def world_pairs(world, n: int, seed: int, captions: str = "full", batch: int = 256) -> PairedEmbeddings:
    """``n`` renderer faces and their captions, embedded by the world's CLIP."""
    if n < 2:
        raise ValueError(f"--pairs must be >= 2, got {n}")
    params = world.sample_params(n, seed)
    texts = world_captions(params, seed, captions)
    img, txt = [], []
    for i in progress(range(0, n, batch), desc="embed pairs"):
        images = world.render(params[i : i + batch])  # [B, 3, H, W] in [-1, 1]
        img.append(world.clip.encode_image(images).float().cpu())
        txt.append(world.clip.encode_text(texts[i : i + batch]).float().cpu())
    return PairedEmbeddings(torch.cat(img).numpy(), torch.cat(txt).numpy(), texts)


def random_pairs(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(a, b)``, ``a != b``, uniform over ordered pairs: ``([P], [P])``."""
    if n < 2:
        raise ValueError(f"need at least 2 items to form pairs, got {n}")
    rng = _rng(seed, 2)
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, n, n_pairs)) % n
    return a, b


def deltas(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x[b] - x[a]``: ``[P, D]``."""
    return x[b] - x[a]
