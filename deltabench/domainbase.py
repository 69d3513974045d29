"""The domain contract: what methods and metrics may use of a domain, and the two pieces every
domain shares (test images drawn by batches, template-averaged CLIP text embeddings).

A leaf of the domain modules: ``deltabench.domain`` (synthfaces, the factory) and
``deltabench.real.domain`` both build on it, neither imports the other at import time.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Domain(Protocol):
    """What a benchmark needs of a domain (synthfaces worlds and real weights alike)."""

    name: str
    resolution: int
    generator: torch.nn.Module  # StyleGAN2 with an S space (``styles``, ``synthesis_from_styles``)
    templates: tuple[str, ...]  # prompt templates text embeddings are averaged over

    @property
    def key(self) -> str: ...  # names the domain's exact weights (method caches are keyed by it)

    @property
    def config_hash(self) -> str: ...

    @property
    def device(self) -> torch.device: ...

    def text_embedding(self, text: str) -> torch.Tensor: ...

    def clip_image(self, images: torch.Tensor, batch: int | None = None) -> torch.Tensor: ...

    def sample_w_plus(self, n: int, seed: int) -> torch.Tensor: ...

    def test_images(self, n: int, seed: int) -> "TestImages": ...

    # What methods fit on (DeltaEdit's inverted pool codes, StyleCLIP-LM's training latents),
    # never the test images: a real domain's training folder, synthfaces' renderer faces.
    def train_images(self, n: int, seed: int) -> "TestImages": ...

    def invert(self, images: torch.Tensor, batch: int = ...) -> torch.Tensor: ...

    def prompt_problems(self, text: str) -> list[str]: ...

    def describe(self) -> dict: ...  # what a run manifest records: where train and test images come from


@dataclass(frozen=True)
class TestImages:
    """Test images, held (``images``) or drawn a batch at a time (``render(a, b)``), so a
    benchmark over many images need not hold them all; ``params``: FaceParams in synthfaces
    (ground truth), None on real data."""

    held: torch.Tensor | None = None  # [N, 3, H, W] in [-1, 1]
    params: object | None = None
    render: Callable[[int, int], torch.Tensor] | None = None
    n: int | None = None
    latents: torch.Tensor | None = None  # [N, n_latent, D]: the exact W+ of images the domain generated

    def invert(self, domain, a: int = 0, b: int | None = None) -> torch.Tensor:
        """W+ of images ``a:b``: their own latents where the domain generated them (exact, no
        encoder), else the domain's inversion of the images."""
        b = len(self) if b is None else min(b, len(self))
        if self.latents is not None:
            return self.latents[a:b].to(domain.device)
        return domain.invert(self.batch(a, b))

    def __len__(self) -> int:
        return len(self.held) if self.held is not None else int(self.n)

    def batch(self, a: int, b: int) -> torch.Tensor:
        """Images ``a:b``: ``[b - a, 3, H, W]`` (bitwise those of :attr:`images`)."""
        return self.held[a:b] if self.held is not None else self.render(a, min(b, len(self)))

    @property
    def images(self) -> torch.Tensor:
        return self.held if self.held is not None else self.render(0, len(self))


class ClipTextImage:
    """Text and image embeddings every domain provides through its ``clip`` and ``templates``
    (needs ``self.clip``, ``self.templates`` and a ``self._text_cache`` dict)."""

    clip_batch = 256

    @torch.no_grad()
    def text_embedding(self, text: str) -> torch.Tensor:
        """A prompt's CLIP embedding averaged over the domain templates: ``[D]``, unit norm.

        Each templated text is normalised, the mean taken and renormalised (StyleCLIP
        ``MapTS.zeroshot_classifier``, DeltaEdit ``utils/map_tool.py``).
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty prompt {text!r}: give a text such as 'face with glasses'")
        key = " ".join(text.lower().split())
        if key not in self._text_cache:
            emb = self.clip.encode_text([t.format(key) for t in self.templates])  # [T, D] unit
            mean = emb.mean(0)
            self._text_cache[key] = mean / mean.norm()
        return self._text_cache[key]

    # Where the official code runs CLIP in fp16: DeltaEdit's ``scripts/inference.py`` loads it
    # with ``clip.load("ViT-B/32", device=device)``, and openai/CLIP's ``clip.load`` keeps the
    # released fp16 weights on CUDA (``model.float()`` only on the CPU). Real domains follow it with
    # ``precision="official"``; a world CLIP was trained in fp32 and stays so.
    official_fp16_clip = False

    def set_precision(self, precision: str) -> str:
        """``"fp32"`` (default) or ``"official"`` (fp16 CLIP on CUDA where the official code
        runs it so); returns the precision the CLIP now computes in."""
        if precision not in ("fp32", "official"):
            raise ValueError(f"--precision {precision!r}: give fp32 or official (fp16 CLIP on CUDA, as the "
                             f"official code runs it)")
        if precision == "official" and self.official_fp16_clip and self.device.type == "cuda":
            self.clip.half_precision()
            self._text_cache.clear()
        return self.clip.precision

    def prompt_problems(self, text: str) -> list[str]:
        """What the domain's CLIP will not read of a prompt as written: words outside its
        vocabulary (encoded as <unk>) and a templated text longer than its context (cut)."""
        tok = self.clip.tokenizer
        out = []
        unknown = sorted(set(tok.unknown_words(text)))
        if unknown:
            out.append(f"the {self.name} CLIP does not know the words {unknown} of {text!r} (they encode as "
                       f"<unk>, so the prompt reads as what is left of it)")
        longest = max(tok.n_tokens(t.format(text)) for t in self.templates)
        if longest > tok.context_length:
            out.append(f"{text!r} is cut to the CLIP context of {tok.context_length} tokens in its longest "
                       f"template ({longest} tokens): the words past it are not read")
        return out

    # Whether the methods that feed CLIP as the official code does (DeltaEdit map_tool /
    # generate_codes.py / inference_real.py, StyleCLIP criteria/clip_loss.py lines 11-15 for OP
    # and LM) get that feed here: [-1, 1] pixels through Upsample(x7) + AvgPool(size/32) with no
    # CLIP mean/std. True on the real domains (official weights, official feed); False on
    # synthfaces, whose world CLIP was trained on its own normalised input.
    official_clip_input = False

    def encode_clip(self, images: torch.Tensor, official_input: bool = False) -> torch.Tensor:
        """Unit CLIP image embeddings ``[N, D]`` (differentiable). ``official_input``: the
        official DeltaEdit / StyleCLIP-OP/LM feed (no mean/std normalisation) where the domain
        has one (:attr:`official_clip_input`), else the domain's own preprocessing."""
        if official_input and self.official_clip_input:
            return self.clip.encode_image(images, normalize=False)
        return self.clip.encode_image(images)

    @torch.no_grad()
    def clip_image(self, images: torch.Tensor, batch: int | None = None,
                   official_input: bool = False) -> torch.Tensor:
        """Unit CLIP image embeddings ``[N, D]`` of ``images [N, 3, H, W]`` in [-1, 1]
        (``official_input`` as in :meth:`encode_clip`)."""
        batch = batch or self.clip_batch
        return torch.cat([self.encode_clip(images[i : i + batch], official_input) for i in range(0, len(images), batch)])
