"""A small CLIP from open_clip's own ``CLIP`` class, with a word-level tokenizer.

The synthfaces world trains this model from scratch; the ``ffhq`` domain uses the real
open_clip ViT-B/32 behind the same :class:`ClipModel` interface (``encode_image`` on
images in [-1, 1], ``encode_text`` on strings, both L2-normalised).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
from torch import nn

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.parse import config_from_dict

# The 79 ImageNet prompt templates of StyleCLIP's global directions
# (orpatashnik/StyleCLIP, global_directions/MapTS.py): CLIP's 80 notebook templates without
# 'a photo of many {}.'. DeltaEdit averages its text deltas over the same list.
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

# OpenAI CLIP's image normalisation (open_clip.constants.OPENAI_DATASET_MEAN / STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


CLIP_CONFIG_SCHEMA = Schema(
    "world.clip.model",
    first=(
        "embed_dim",
        "image_size",
        "patch_size",
        "vision_width",
        "vision_layers",
        "vision_heads",
        "text_width",
        "text_layers",
        "text_heads",
        "context_length",
        "vocab_size",
    ),
)


@versioned(CLIP_CONFIG_SCHEMA)
@dataclass(frozen=True)
class ClipConfig:
    """Sizes of the world's CLIP. ``image_size=None`` means the world resolution."""

    embed_dim: int = 128
    image_size: int | None = None
    patch_size: int = 8
    vision_width: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    text_width: int = 128
    text_layers: int = 4
    text_heads: int = 4
    context_length: int = 26  # the longest caption is 23 words + <sot>/<eot>
    # Size of the token embedding table; the tokenizer's ids must fit (checked at build).
    vocab_size: int = 64

    @staticmethod
    def from_dict(d: dict) -> ClipConfig:
        return config_from_dict(ClipConfig, d, "clip model config")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


class WordTokenizer:
    """Word-level tokenizer over a fixed vocabulary.

    Ids: 0 = pad, 1 = <sot>, 2 = <unk>, 3.. = words, last = <eot>. open_clip's text tower
    pools the feature at ``argmax`` of the token ids, so <eot> must be the largest id.
    Text is lowercased and split on anything that is not a letter or digit.
    """

    PAD, SOT, UNK = 0, 1, 2

    def __init__(self, words: list[str], context_length: int):
        words = list(words)
        if len(set(words)) != len(words):
            raise ValueError("tokenizer vocabulary has duplicate words")
        bad = [w for w in words if not re.fullmatch(r"[a-z0-9]+", w)]
        if bad:
            raise ValueError(f"tokenizer words must be lowercase letters/digits, got {bad[:5]}")
        if context_length < 3:
            raise ValueError(f"context_length must be >= 3, got {context_length}")
        self.words = words
        self.context_length = int(context_length)
        self._ids = {w: i + 3 for i, w in enumerate(words)}
        self.eot = len(words) + 3

    @property
    def vocab_size(self) -> int:
        return self.eot + 1

    @staticmethod
    def split(text: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", text.lower())

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` not in the vocabulary (they encode as <unk>)."""
        return [w for w in self.split(text) if w not in self._ids]

    def n_tokens(self, text: str) -> int:
        """Tokens ``text`` needs with <sot>/<eot>, before truncation to ``context_length``."""
        return len(self.split(text)) + 2

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` with <sot>/<eot>, no padding; truncated to ``context_length``."""
        ids = [self._ids.get(w, self.UNK) for w in self.split(text)]
        ids = ids[: self.context_length - 2]
        return [self.SOT, *ids, self.eot]

    def decode(self, ids) -> str:
        inv = {i: w for w, i in self._ids.items()}
        out = []
        for i in ids:
            i = int(i)
            if i == self.eot:
                break
            if i in (self.PAD, self.SOT):
                continue
            out.append(inv.get(i, "<unk>"))
        return " ".join(out)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        """``tokens: int64 [N, context_length]``, zero-padded."""
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = self.encode(t)
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def to_dict(self) -> dict:
        return {"words": list(self.words), "context_length": self.context_length}

    @staticmethod
    def from_dict(d: dict) -> WordTokenizer:
        unknown = set(d) - {"words", "context_length"}
        if unknown:
            raise ValueError(f"tokenizer data: unknown keys {sorted(unknown)}")
        return WordTokenizer(d["words"], d["context_length"])


class ClipModel(nn.Module):
    """open_clip ``CLIP`` + tokenizer + preprocessing, on images in [-1, 1]."""

    def __init__(self, clip: nn.Module, tokenizer, image_size: int):
        super().__init__()
        self.clip = clip
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The learned temperature, exponentiated (CLIP multiplies cosines by it)."""
        return self.clip.logit_scale.exp()

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """``img [N, 3, H, W]`` in [-1, 1] -> CLIP input ``[N, 3, S, S]`` (mean/std normalised)."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"encode_image wants [N, 3, H, W] images in [-1, 1], got shape {tuple(img.shape)}")
        x = img.to(self.mean.device, torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False, antialias=True
            )
        return ((x + 1) / 2 - self.mean) / self.std

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"fp16"`` (:meth:`half_precision`): the dtype the CLIP computes in."""
        return "fp16" if self.logit_scale.dtype == torch.float16 else "fp32"

    def half_precision(self) -> None:
        """Compute in fp16, as the official code's ``clip.load`` does on CUDA (outputs stay fp32)."""
        self.clip.half()

    def _dtype(self) -> torch.dtype:
        return self.logit_scale.dtype

    def encode_image(self, img: torch.Tensor) -> torch.Tensor:
        """``img [N, 3, H, W]`` in [-1, 1] -> ``[N, D]`` L2-normalised."""
        return self.clip.encode_image(self.preprocess(img).to(self._dtype()), normalize=True).float()

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"encode_text got an empty text {t!r}; every prompt needs at least one word")
        return self.tokenizer(texts).to(self.mean.device)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """``texts`` (N strings) -> ``[N, D]`` L2-normalised."""
        return self.clip.encode_text(self.tokenize(texts), normalize=True).float()


def build_clip(cfg: ClipConfig, resolution: int, tokenizer: WordTokenizer) -> ClipModel:
    """An untrained CLIP of ``cfg`` for ``resolution`` px images, reading text with ``tokenizer``
    (the world's: :func:`deltabench.world.train_clip.world_tokenizer`)."""
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} ids but the clip config has vocab_size={cfg.vocab_size}; "
            f"raise vocab_size in the world config's clip section"
        )
    if tokenizer.context_length != cfg.context_length:
        raise ValueError(f"tokenizer context_length {tokenizer.context_length} != config {cfg.context_length}")
    size = cfg.image_size or resolution
    if size % cfg.patch_size:
        raise ValueError(f"clip image_size {size} is not a multiple of patch_size {cfg.patch_size}")
    for what, w, h in (("vision", cfg.vision_width, cfg.vision_heads), ("text", cfg.text_width, cfg.text_heads)):
        if w % h:
            raise ValueError(f"clip {what}_width {w} is not divisible by {what}_heads {h}")
    vision = CLIPVisionCfg(
        layers=cfg.vision_layers,
        width=cfg.vision_width,
        head_width=cfg.vision_width // cfg.vision_heads,
        patch_size=cfg.patch_size,
        image_size=size,
    )
    text = CLIPTextCfg(
        context_length=cfg.context_length,
        vocab_size=cfg.vocab_size,
        width=cfg.text_width,
        heads=cfg.text_heads,
        layers=cfg.text_layers,
        pad_id=WordTokenizer.PAD,
        eos_id=tokenizer.eot,
    )
    clip = CLIP(embed_dim=cfg.embed_dim, vision_cfg=vision, text_cfg=text)
    return ClipModel(clip, tokenizer, size)
