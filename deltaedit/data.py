"""DeltaEdit's text-free training data: S codes and CLIP image embeddings of many images.

Official ``generate_codes.py`` samples 200k generator images (plus 58k inverted FFHQ
images), stores their non-toRGB S codes and CLIP image embeddings, and training draws pairs
(1, 2) at random from that pool at every step (``datasets/train_dataset.py``). The official
code resizes 1024px images to CLIP's 224 input by Upsample(x7) + AvgPool(32); we hand images
to the domain CLIP wrapper, which resizes to its own input size only when they differ
(bilinear with antialiasing). For the synthfaces world the CLIP input is the world resolution,
so no resize happens at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deltabench import sspace
from deltabench.utils import progress


@dataclass
class LatentPool:
    s: torch.Tensor  # [N, S_edit] non-toRGB style codes
    clip: torch.Tensor  # [N, D] CLIP image embeddings, unit norm
    n_generated: int

    def __len__(self) -> int:
        return self.s.shape[0]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"s": self.s, "clip": self.clip, "n_generated": torch.tensor(self.n_generated)}

    @staticmethod
    def from_state_dict(d: dict) -> LatentPool:
        return LatentPool(d["s"].float(), d["clip"].float(), int(d["n_generated"]))


@torch.no_grad()
def encode_wplus(
    domain, w_plus: torch.Tensor, batch: int = 128, torgb: bool = False, official_clip: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """W+ ``[N, L, D]`` -> (S codes ``[N, S_edit]``, CLIP image embeddings ``[N, D_clip]``).
    ``official_clip``: the official feed (``domain.encode_clip(official_input=True)``)."""
    G = domain.generator
    s_all, c_all = [], []
    for i in range(0, len(w_plus), batch):
        styles = G.styles(w_plus[i : i + batch].to(domain.device))
        s_all.append(sspace.gather(styles, G.slayout, torgb).cpu())
        img = G.synthesis_from_styles(styles)
        c_all.append(
            (domain.encode_clip(img, official_input=True) if official_clip else domain.clip.encode_image(img)).cpu()
        )
    return torch.cat(s_all), torch.cat(c_all)


@torch.no_grad()
def build_pool(
    domain,
    n_generated: int,
    n_inverted: int,
    seed: int,
    batch: int = 128,
    torgb: bool = False,
    official_clip: bool = False,
) -> LatentPool:
    """Generated samples plus inverted "real" images, as in the official training set. The
    real images are the domain's training images (``domain.train_images``), never its test
    images; a folder domain without a training folder raises unless ``n_inverted == 0``."""
    if n_inverted:  # no training images (or a folder overlapping the test one): fail now, not after the codes
        domain.train_images(1, seed=seed * 104729 + 1)
    s_parts, c_parts = [], []
    for i in progress(range(0, n_generated, batch), desc="deltaedit pool: generated"):
        wp = domain.sample_w_plus(min(batch, n_generated - i), seed=seed * 7919 + i)
        s, c = encode_wplus(domain, wp, batch, torgb, official_clip)
        s_parts.append(s)
        c_parts.append(c)
    for i in progress(range(0, n_inverted, batch), desc="deltaedit pool: inverted"):
        real = domain.train_images(min(batch, n_inverted - i), seed=seed * 104729 + 1 + i)
        s, c = encode_wplus(domain, real.invert(domain), batch, torgb, official_clip)
        s_parts.append(s)
        c_parts.append(c)
    return LatentPool(torch.cat(s_parts), torch.cat(c_parts), n_generated)


def pair_batch(pool: LatentPool, batch: int, gen: torch.Generator, naive: bool = False):
    """Random pairs (1, 2): ``(s1 [B, S], cond [B, 2D], Δs [B, S])``.

    DeltaEdit (official ``TrainLatentsDataset``): cond = [i1n ; normalise(i2n - i1n)].
    Naive baseline (paper Sec. 3.2): cond = [i1n ; i2n], the raw target image embedding as the
    pseudo text condition.
    """
    n = len(pool)
    i1 = torch.randint(n, (batch,), generator=gen)
    i2 = torch.randint(n, (batch,), generator=gen)
    c1 = torch.nn.functional.normalize(pool.clip[i1], dim=-1)
    c2 = torch.nn.functional.normalize(pool.clip[i2], dim=-1)
    if naive:
        cond = torch.cat([c1, c2], dim=1)
    else:
        d = c2 - c1
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-5)
        cond = torch.cat([c1, d], dim=1)
    s1 = pool.s[i1]
    return s1, cond, pool.s[i2] - s1
