"""The domain contract: what methods and metrics may use of a domain, and the two pieces every
domain shares (test images drawn by batches, template-averaged CLIP text embeddings).

A leaf of the domain modules: ``deltabench.domain`` (synthfaces, the factory) and
``deltabench.real.domain`` both build on it, neither imports the other at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import torch

# --- the contract, declared once -----------------------------------------------------------
#
# Every domain (a synthetic world, real weights) is a DomainBase. REQUIRED members have no
# default: a domain class that lacks one fails when it loads (check_domain, called by
# deltabench.domain.load_domain), with the member's name. Every OPTIONAL member has its default
# here, on DomainBase; code outside a domain reads the member itself (never getattr/hasattr with a
# default of its own), and a capability (CAPABILITIES) says whether the domain has that part.

REQUIRED: dict[str, str] = {
    "name": "the domain's name (str)",
    "kind": "what the domain is, recorded in run manifests ('synthfaces', 'synthchurch', 'real')",
    "resolution": "image size in pixels (int)",
    "generator": "StyleGAN2 with an S space (styles, synthesis_from_styles)",
    "encoder": "the inversion encoder (images -> W+)",
    "clip": "the CLIP model (encode_image, encode_text, tokenizer, precision)",
    "templates": "prompt templates text embeddings are averaged over (tuple of '{}' formats)",
    "key": "names the domain's exact weights (method caches are keyed by it)",
    "config_hash": "hash of everything that fixes the domain's weights and data",
    "device": "the torch device the models are on",
    "text_embedding": "text -> template-averaged unit CLIP embedding [D]",
    "encode_clip": "images -> unit CLIP embeddings [N, D] (differentiable; official_input feed)",
    "clip_image": "images -> unit CLIP embeddings [N, D] (batched, no grad)",
    "sample_w_plus": "(n, seed) -> W+ latents [n, n_latent, D] from the generator's distribution",
    "test_images": "(n, seed) -> TestImages",
    "train_images": "(n, seed) -> TestImages the methods fit on (never the test images)",
    "invert": "images [N, 3, H, W] -> W+ [N, n_latent, D]",
    "prompt_problems": "text -> what the domain's CLIP will not read of it",
    "describe": "what a run manifest records about the domain",
}

# name -> (default, what it is). The defaults are the class attributes of DomainBase below.
OPTIONAL: dict[str, str] = {
    "identity": "identity network with embed(images) for IDS (None: no IDS column, no OP identity loss, "
    "no identity references)",
    "identity_loss": "a differentiable identity model for StyleCLIP's ID loss (None: use identity)",
    "identity_info": "how IDS is computed, for run manifests (None: nothing to record)",
    "oracle": "attribute oracle with predict(images) -> (attrs, continuous) and features (None: no ground truth)",
    "attributes": "the ground-truth attribute schema (tuple of Attribute; empty: none)",
    "render_edit": "(params, attribute, value) -> the renderer's image with that attribute set (None: no renderer)",
    "fid_features": "images -> FID features [N, F] (None: the oracle's features, where there is an oracle)",
    "fid_feature_name": "the FID feature network's name for the column header",
    "fid_feature_dim": "F, the FID feature size (None: the oracle's feature_dim)",
    "fid_resize": "the resize before the FID feature network, for run manifests",
    "clip_name": "the CLIP's name for the field's CLIP-I/CLIP-T column headers",
    "method_defaults": "per-method option defaults in this domain ({method: options})",
    "prompts": "the benchmark's default edit prompts (Prompt tuple; empty: the user must give prompts)",
    "edit_prompts": "every edit prompt of the domain ('--prompts all'; None: the benchmark prompts)",
    "heldout_prompts": "edit prompts in held-out phrasing ('deltabench eval --prompts heldout'; empty: none)",
    "edit_torgb": "whether S-space methods edit toRGB styles too",
    "official_clip_input": "whether the official CLIP feed (no mean/std, x7 upsample) applies",
    "latent_avg": "the generator's mean w [D] from its checkpoint (None: not known)",
    "released_fs3": "the released StyleCLIP fs3.npy of this generator (None: none)",
    "neutral": "the neutral source prompt of an edit ('face', 'church')",
    "unjudged": "attributes the oracle cannot read on the generator's images ({name: the measurement}): "
    "left out of disentanglement",
}

# capability -> the test on a domain's members: where the answer to "does it have X" lives.
CAPABILITIES: dict[str, Callable[[object], bool]] = {
    "identity": lambda d: d.identity is not None,
    "ground_truth": lambda d: d.oracle is not None and len(d.attributes) > 0,
    "renderer": lambda d: d.render_edit is not None,
    "fid_features": lambda d: d.fid_features is not None or d.oracle is not None,
    "method_defaults": lambda d: bool(d.method_defaults),
    "benchmark_prompts": lambda d: len(d.prompts) > 0,
}


class DomainBase:
    """The domain contract (see :data:`REQUIRED`, :data:`OPTIONAL`, :data:`CAPABILITIES`): the
    optional members with their defaults. A domain subclasses it and sets what it has."""

    identity = None
    identity_loss = None
    identity_info = None
    oracle = None
    attributes: tuple = ()
    render_edit = None
    fid_features = None
    fid_feature_name: str = "features"
    fid_feature_dim: int | None = None
    fid_resize: str = "not recorded"
    method_defaults: Mapping = MappingProxyType({})
    prompts: tuple = ()
    edit_prompts = None
    heldout_prompts: tuple = ()
    edit_torgb: bool = False
    official_clip_input: bool = False
    latent_avg = None
    released_fs3 = None
    neutral: str = "face"
    unjudged: Mapping = MappingProxyType({})

    @property
    def clip_name(self) -> str:
        """The CLIP's name in column headers: ``<world> CLIP`` here; a real domain names its model and file."""
        return f"{self.name} CLIP"

    @property
    def capabilities(self) -> frozenset[str]:
        """The optional parts this domain has (names of :data:`CAPABILITIES`)."""
        return frozenset(c for c, test in CAPABILITIES.items() if test(self))

    def has(self, capability: str) -> bool:
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown domain capability {capability!r}; known: {sorted(CAPABILITIES)}")
        return CAPABILITIES[capability](self)

    def all_edit_prompts(self) -> tuple:
        """Every edit prompt (``--prompts all``): :attr:`edit_prompts`, else the benchmark prompts."""
        return tuple(self.prompts if self.edit_prompts is None else self.edit_prompts)

    def attribute_code(self, attribute: str, value: str) -> tuple[int, int]:
        """``(column, value index)`` of a ground-truth attribute value; an error names the known ones."""
        names = [a.name for a in self.attributes]
        if attribute not in names:
            raise ValueError(f"domain {self.name!r} has no attribute {attribute!r}; its attributes are {names}")
        j = names.index(attribute)
        return j, self.attributes[j].index(value)

    def check_files(
        self, methods=(), metrics: bool = False, test_images: bool = False, invert: bool = False, purpose: str = ""
    ) -> tuple[str, ...]:
        """Check, before any work, that every file a command will read is there; raises naming the
        missing ones. A built synthetic world is verified whole when it loads: nothing to check."""
        return ()

    def weight_file(self, name: str):
        """The local path of the registry file ``name`` (e.g. a method's own network) in this
        domain's weights folder. A synthetic world has none: its networks are built in it."""
        raise ValueError(f"domain {self.name!r} is a synthetic world: it has no weights folder for {name!r}")

    def photo_input(self, image, what: str = "image") -> torch.Tensor:
        """A user's image (path, PIL image or ``uint8 [H, W, 3]``) as the domain's encoder takes it:
        ``[1, 3, R, R]`` in [-1, 1] at the domain's resolution. Real domains override it with the
        official photo path (PIL ``Resize(256)`` of the uint8 photo)."""
        from deltabench.imageio import as_images

        return as_images([image], self.resolution, what)

    def loss_identity(self):
        """The identity model of StyleCLIP's ID loss: :attr:`identity_loss`, else :attr:`identity`."""
        return self.identity_loss if self.identity_loss is not None else self.identity


class DomainContractError(TypeError):
    """A domain lacks a required member of the contract."""


def check_domain(domain) -> object:
    """``domain`` if it keeps the contract, else :class:`DomainContractError` naming what is missing.

    Looks members up statically (properties are not evaluated: a real domain's config hash reads
    its image folders)."""
    import inspect

    if not isinstance(domain, DomainBase):
        raise DomainContractError(
            f"{type(domain).__name__} is not a domain: it must subclass deltabench.domainbase.DomainBase"
        )
    missing = [m for m in REQUIRED if inspect.getattr_static(domain, m, _MISSING) is _MISSING]
    if missing:
        raise DomainContractError(
            f"domain {type(domain).__name__} lacks the required member(s) {missing} of the domain contract "
            f"(deltabench.domainbase.REQUIRED: " + "; ".join(f"{m}: {REQUIRED[m]}" for m in missing) + ")"
        )
    return domain


_MISSING = object()


@runtime_checkable
class Domain(Protocol):
    """What a benchmark needs of a domain, as a typing Protocol (the required members; the
    declared contract, with the optional members and their defaults, is :class:`DomainBase`)."""

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

    def test_images(self, n: int, seed: int) -> TestImages: ...

    # What methods fit on (DeltaEdit's inverted pool codes, StyleCLIP-LM's training latents),
    # never the test images: a real domain's training folder, synthfaces' renderer faces.
    def train_images(self, n: int, seed: int) -> TestImages: ...

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


class ClipTextImage(DomainBase):
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
            raise ValueError(
                f"--precision {precision!r}: give fp32 or official (fp16 CLIP on CUDA, as the official code runs it)"
            )
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
            out.append(
                f"the {self.name} CLIP does not know the words {unknown} of {text!r} (they encode as "
                f"<unk>, so the prompt reads as what is left of it)"
            )
        longest = max(tok.n_tokens(t.format(text)) for t in self.templates)
        if longest > tok.context_length:
            out.append(
                f"{text!r} is cut to the CLIP context of {tok.context_length} tokens in its longest "
                f"template ({longest} tokens): the words past it are not read"
            )
        return out

    # Whether the methods that feed CLIP as the official code does (DeltaEdit map_tool /
    # generate_codes.py / inference_real.py, StyleCLIP criteria/clip_loss.py lines 11-15 for OP
    # and LM) get that feed here: [-1, 1] pixels through Upsample(x7) + AvgPool(size/32) with no
    # CLIP mean/std. True on the real domains (official weights, official feed); False on
    # synthfaces, whose world CLIP was trained on its own normalised input. (Declared with its
    # default False on DomainBase.)
    def encode_clip(self, images: torch.Tensor, official_input: bool = False) -> torch.Tensor:
        """Unit CLIP image embeddings ``[N, D]`` (differentiable). ``official_input``: the
        official DeltaEdit / StyleCLIP-OP/LM feed (no mean/std normalisation) where the domain
        has one (:attr:`official_clip_input`), else the domain's own preprocessing."""
        if official_input and self.official_clip_input:
            return self.clip.encode_image(images, normalize=False)
        return self.clip.encode_image(images)

    @torch.no_grad()
    def clip_image(self, images: torch.Tensor, batch: int | None = None, official_input: bool = False) -> torch.Tensor:
        """Unit CLIP image embeddings ``[N, D]`` of ``images [N, 3, H, W]`` in [-1, 1]
        (``official_input`` as in :meth:`encode_clip`)."""
        batch = batch or self.clip_batch
        return torch.cat(
            [self.encode_clip(images[i : i + batch], official_input) for i in range(0, len(images), batch)]
        )


class DomainSource:
    """Where domains of one kind come from (registered in :data:`deltabench.registry.DOMAINS`):
    which ``--world`` names it serves, loading one, and what a run checks before any model loads."""

    @classmethod
    def claims(cls, world: str) -> bool:
        """Whether ``world`` (a name or a config path) is one of this source's domains."""
        raise NotImplementedError

    @classmethod
    def load(cls, world: str, device="cpu", weights=None, images=None, train_images=None):
        raise NotImplementedError

    @classmethod
    def neutral(cls, world: str) -> str:
        """The neutral source prompt ("face", "church"), without loading a model."""
        raise NotImplementedError

    @classmethod
    def attributes(cls, world: str) -> tuple:
        """The ground-truth attribute schema, without loading a model (none: ``()``)."""
        return ()
