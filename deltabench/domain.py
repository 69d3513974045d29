"""Domains: everything a benchmark needs, behind one interface.

A domain bundles a StyleGAN2 generator with its S space, an inversion encoder, a CLIP, test
images and prompts, and optional parts (an identity model, a ground-truth oracle, a feature
network...). The contract, required members and optional capabilities with their defaults, is
declared once in :mod:`deltabench.domainbase` and checked when a domain loads. Methods and metrics
see only this interface, so the same code runs on every synthetic world kind and on real weights.
"""

from __future__ import annotations

import torch

from deltabench.domainbase import (  # noqa: F401 - the contract, re-exported
    ClipTextImage,
    Domain,
    DomainBase,
    DomainSource,
    TestImages,
    check_domain,
)
from deltabench.parse import thaw
from deltabench.prompts import Prompt
from deltabench.world.world import World, load_world


class WorldDomain(ClipTextImage):
    """A synthetic world as a domain (any world kind): renderer images are the "real" test images,
    its oracle the ground truth, its identity net (where the kind has one) the IDS model."""

    def __init__(self, world: World):
        kind = world.kind
        self.world = world
        self.kind = kind.domain_kind  # "synthfaces" for the faces kind (run manifests record it)
        self.name = world.cfg.name
        self.generator = world.generator
        self.encoder = world.encoder
        self.clip = world.clip
        self.identity = world.identity  # None where the kind has none: no IDS, no OP identity loss
        self.oracle = world.oracle
        self.attributes = kind.attributes
        # FID/KID on the oracle's penultimate features (no Inception trained on cartoons).
        self.fid_features = world.oracle.features
        self.fid_feature_name = "oracle"
        self.fid_resize = "none: the oracle reads the world's images at their native resolution"
        self.fid_feature_dim = world.oracle.feature_dim
        self.neutral = kind.noun
        self.resolution = world.resolution
        # The world CLIP never saw ImageNet phrasing; its own caption templates play the role
        # of the 79 ImageNet templates that StyleCLIP and DeltaEdit average text over.
        self.templates: tuple[str, ...] = tuple(kind.templates("train"))
        self._text_cache: dict[str, torch.Tensor] = {}
        # How the benchmark uses this world: data in the world config's "benchmark" section
        # (its prompts, the baselines' defaults here, toRGB editing), with the measurements
        # behind each value beside it (``*_note(s)`` keys).
        b = thaw(world.cfg.benchmark)
        known = {"prompts", "edit_torgb", "method_defaults", "unjudged"}
        unknown = {k for k in b if not k.endswith(("_note", "_notes"))} - known
        if unknown:
            raise ValueError(
                f"world config {self.name!r}: unknown benchmark keys {sorted(unknown)}; known: "
                f"{', '.join(sorted(known))} (and *_note / *_notes)"
            )
        self.benchmark_targets: tuple[str, ...] = tuple(b.get("prompts", ()))
        self.edit_torgb: bool = bool(b.get("edit_torgb", False))
        self.method_defaults: dict = dict(b.get("method_defaults", {}))
        # Attributes the world card finds the oracle cannot read on generated images: left out of
        # disentanglement (deltabench.metrics.attributes), each with its measurement.
        self.unjudged: dict[str, str] = dict(b.get("unjudged", {}))
        names = [a.name for a in self.attributes]
        stray = sorted(set(self.unjudged) - set(names))
        if stray:
            raise ValueError(
                f"world config {self.name!r}: benchmark.unjudged names {stray}, which are no attributes of the "
                f"{kind.name} world; its attributes are {names}"
            )

        def as_prompts(edits) -> tuple[Prompt, ...]:
            return tuple(Prompt(e.source, e.target, e.attribute, e.value) for e in edits)

        # Every value of every attribute (``--prompts all``), the benchmark's subset (one edit per
        # attribute: the config's ``benchmark.prompts``; all of them when it names none), and the
        # held-out phrasings (``deltabench eval --prompts heldout``).
        self.edit_prompts: tuple[Prompt, ...] = as_prompts(kind.edit_prompts("train"))
        self.heldout_prompts: tuple[Prompt, ...] = as_prompts(kind.edit_prompts("heldout"))
        targets = {p.target for p in self.edit_prompts}
        stray = [t for t in self.benchmark_targets if t not in targets]
        if stray:
            raise ValueError(
                f"world config {self.name!r}: benchmark prompts {stray} are not edit prompts of the "
                f"{kind.name} world; its edit prompts are {sorted(targets)}"
            )
        keep = set(self.benchmark_targets)
        self.prompts: tuple[Prompt, ...] = tuple(p for p in self.edit_prompts if not keep or p.target in keep)

    def render_edit(self, params, attribute: str, value: str) -> torch.Tensor:
        """The renderer's image of ``params`` with ``attribute`` set to ``value`` (a perfect edit)."""
        return self.world.render(params.with_attr(attribute, value))

    @property
    def key(self) -> str:
        """Names this domain's exact weights: cache directories of methods are keyed by it."""
        from deltabench.world.store import world_dirname

        return world_dirname(self.world.cfg)

    @property
    def config_hash(self) -> str:
        """Hash of everything that fixes the domain's weights (recorded in run manifests)."""
        return self.world.cfg.hash

    @property
    def device(self) -> torch.device:
        return self.world.device

    @torch.no_grad()
    def sample_w_plus(self, n: int, seed: int) -> torch.Tensor:
        """Training latents from the generator's own distribution: ``[n, n_latent, D]``."""
        params = self.world.sample_params(n, seed)
        return torch.cat([self.world.w_plus(params[i : i + 256]) for i in range(0, n, 256)])

    def test_images(self, n: int, seed: int) -> TestImages:
        """Renderer scenes of ``seed``, drawn on demand (the renderer is deterministic per face)."""
        params = self.world.sample_params(n, seed)

        def render(a: int, b: int) -> torch.Tensor:
            return torch.cat([self.world.render(params[i : min(i + 256, b)]) for i in range(a, b, 256)])

        return TestImages(params=params, render=render, n=n)

    def train_images(self, n: int, seed: int) -> TestImages:
        """Images for methods to fit on (DeltaEdit's inverted pool codes, StyleCLIP-LM's training
        latents): renderer faces of ``seed``, exactly what those call sites drew before training
        and test images were split (bit-identical numbers). Their seeds are the methods' own
        (``LMConfig.train_seed + seed``; the pool's ``seed * 104729 + 1 + i``), away from the
        run's test seed ``seed + 1`` except for the pool at seed 0, whose first batch shares
        the test faces' random stream (not their faces: the draws are sized differently)."""
        return self.test_images(n, seed)

    def describe(self) -> dict:
        """What a run manifest records about the domain (see ``RealDomain.describe``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "config_hash": self.config_hash,
            "train": {"source": "renderer", "seeds": "the methods' training seeds"},
            "test": {"source": "renderer", "seeds": "the run's test seed"},
        }

    @torch.no_grad()
    def invert(self, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` -> W+ ``[N, n_latent, D]`` with the domain's encoder."""
        return torch.cat([self.encoder(images[i : i + batch].to(self.device)) for i in range(0, len(images), batch)])


def load_domain(
    world: str = "synthfaces",
    device: str | torch.device = "cpu",
    weights: str | None = None,
    images: str | None = None,
    train_images: str | None = None,
):
    """A domain by name, from the first source of :data:`deltabench.registry.DOMAINS` that claims
    it: a real domain config (``ffhq``, ``lsun-cat``, ... or a JSON file with a ``generator``
    entry: :mod:`deltabench.real`), else a synthfaces world (name or config path).
    ``weights`` (the weights folder), ``images`` (test image folder) and ``train_images`` (the
    folder methods train on, disjoint from the test folder) apply to real domains."""
    return check_domain(
        domain_source(world).load(world, device=device, weights=weights, images=images, train_images=train_images)
    )


def domain_source(world: str):
    """The :class:`~deltabench.domainbase.DomainSource` that serves ``world``: plugins (the
    ``deltabench.domains`` entry points, registered sources) first, then the built-in ones in
    order; the synthetic worlds, last, take any name left."""
    from deltabench.registry import DOMAINS

    order = [n for n in DOMAINS.names() if n not in DOMAINS.builtins] + list(DOMAINS.builtins)
    for name in order:
        source = DOMAINS.get(name)
        if source.claims(world):
            return source
    raise DOMAINS.unknown(world)


class SyntheticWorlds(DomainSource):
    """The synthetic worlds (any kind): a built-in world name or a world config path."""

    @classmethod
    def claims(cls, world: str) -> bool:
        return True  # the last source: load_world names what is wrong with a name it cannot load

    @classmethod
    def load(cls, world: str, device="cpu", weights=None, images=None, train_images=None):
        return WorldDomain(load_world(world, device=device))

    @classmethod
    def neutral(cls, world: str) -> str:
        from deltabench.world.catalog import load_world_config
        from deltabench.world.kind import get_kind

        return get_kind(load_world_config(world).kind).noun

    @classmethod
    def attributes(cls, world: str) -> tuple:
        from deltabench.world.catalog import load_world_config
        from deltabench.world.kind import get_kind

        return get_kind(load_world_config(world).kind).attributes


# The faces world's domain went by this name before worlds had kinds.
SynthfacesDomain = WorldDomain


def neutral_prompt(world: str) -> str:
    """The neutral source prompt of the domain ``world`` names ("face", "church"), without loading a
    model: a real domain's config ``neutral``, a synthetic world's kind's noun."""
    return domain_source(world).neutral(world)


def domain_attributes(world: str) -> tuple:
    """The ground-truth attribute schema of the domain ``world`` names, without loading a model:
    a synthetic world's kind's attributes, none for a real domain."""
    return domain_source(world).attributes(world)
