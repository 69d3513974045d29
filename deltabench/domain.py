"""Domains: everything a benchmark needs, behind one interface.

A domain bundles a StyleGAN2 generator with its S space, an inversion encoder, a CLIP, an
identity model, a feature network, test images and prompts. Methods and metrics see only
this interface, so the same code runs on the synthetic world and on real weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from deltabench.world.world import World, load_world


@dataclass(frozen=True)
class TestImages:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.images: torch.Tensor  # [N, 3, H, W] in [-1, 1]
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.params: object | None = None  # FaceParams in synthfaces (ground truth), None on real data


class ClipTextImage:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it."""Text and image embeddings every domain provides through its ``clip`` and ``templates``
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.(needs ``self.clip``, ``self.templates`` and a ``self._text_cache`` dict)."""

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.clip_batch = 256

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@torch.no_grad()
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def text_embedding(self, text: str) -> torch.Tensor:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """A prompt's CLIP embedding averaged over the domain templates: ``[D]``, unit norm.

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    Each templated text is normalised, the mean taken and renormalised (StyleCLIP
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    ``MapTS.zeroshot_classifier``, DeltaEdit ``utils/map_tool.py``).
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    if not isinstance(text, str) or not text.strip():
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.        raise ValueError(f"empty prompt {text!r}: give a text such as 'face with glasses'")
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    key = " ".join(text.lower().split())
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    if key not in self._text_cache:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.        emb = self.clip.encode_text([t.format(key) for t in self.templates])  # [T, D] unit
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.        mean = emb.mean(0)
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.        self._text_cache[key] = mean / mean.norm()
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return self._text_cache[key]

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@torch.no_grad()
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def clip_image(self, images: torch.Tensor, batch: int | None = None) -> torch.Tensor:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """Unit CLIP image embeddings ``[N, D]`` of ``images [N, 3, H, W]`` in [-1, 1]."""
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    batch = batch or self.clip_batch
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return torch.cat([self.clip.encode_image(images[i : i + batch]) for i in range(0, len(images), batch)])


class SynthfacesDomain(ClipTextImage):
 there: within 100 steps the latent has to travel further than lr 0.1 carries it."""The synthetic world as a domain: renderer images are the "real" test images."""

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.kind = "synthfaces"
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# The distilled generator keeps hair, background and skin colour in its toRGB styles, so
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# the S-space methods (DeltaEdit, StyleCLIP-GD) edit those too here
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# (deltaedit.train.DeltaEditConfig.torgb has the measurement).
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.edit_torgb = True
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# The default benchmark: one edit per attribute (``--prompts all`` runs all 23).
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.BENCHMARK_TARGETS = ("face with red hair", "face with long hair", "smiling face", "face with glasses",
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.                     "face with a beard", "face on a purple background", "face with dark skin",
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.                     "face with large eyes", "wide face")
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# Defaults of the baselines in this world (user --options override them; real domains keep
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# the official values). Steps are the CPU budget of the default run: a 64-latent Adam step
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# through G, CLIP and the identity net takes ~1.2 s on 2 cores (official: OP 300 steps, LM
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# 50k steps on a GPU). The latent L2 weights are recalibrated: the official ones (OP 0.008,
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# LM 0.8) were set for FFHQ's W space, and here faces that differ in one attribute lie far
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# apart in W+ (|dw|^2 summed over the 10 entries: 152 for glasses, 420 for background), so
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# the L2 term outweighs the cosine gain of the small world CLIP: at the official weights OP
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# reached 0.09 and LM 0.21 manipulation accuracy on the benchmark prompts. Measured on 4
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# prompts x 8 faces: OP l2 0.001 -> 0.71 (disentanglement 0.89), 0.0002 -> 0.79 (0.77);
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# LM l2 0.1 -> 0.50 (0.92), 0.02 -> 0.83 (0.82). On all 9 benchmark prompts OP needs less:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# 16 held-out faces (run seed 1): l2 0.00025 -> 0.51 (0.68), 0.0001 -> 0.66 (0.67).
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# On world 6dbba9c2891fa826 (sharper, MSE-distilled generator) OP at the official lr 0.1
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# fell to 0.44 on the default run's 8 faces and to 0.55 on the same 16 faces (7 of 9
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# prompts finished; no prompt better than at lr 0.2), while lr 0.2 reached 0.63 (0.71)
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.# there: within 100 steps the latent has to travel further than lr 0.1 carries it.
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.method_defaults = {"styleclip-op": {"config": {"steps": 100, "l2_lambda": 0.0001, "lr": 0.2}},
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.                   "styleclip-lm": {"config": {"steps": 150, "l2_lambda": 0.02}}}

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def __init__(self, world: World):
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    from deltabench.world.captions import templates

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.world = world
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.name = world.cfg.name
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.generator = world.generator
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.encoder = world.encoder
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.clip = world.clip
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.identity = world.identity
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.oracle = world.oracle
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.resolution = world.resolution
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    # The world CLIP never saw ImageNet phrasing; its own caption templates play the role
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    # of the 79 ImageNet templates that StyleCLIP and DeltaEdit average text over.
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self.templates: tuple[str, ...] = tuple(templates("train"))
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    self._text_cache: dict[str, torch.Tensor] = {}

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@property
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def key(self) -> str:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """Names this domain's exact weights: cache directories of methods are keyed by it."""
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    from deltabench.world.store import world_dirname

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return world_dirname(self.world.cfg)

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@property
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def config_hash(self) -> str:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """Hash of everything that fixes the domain's weights (recorded in run manifests)."""
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return self.world.cfg.hash

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@property
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def device(self) -> torch.device:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return self.world.device

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@torch.no_grad()
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def sample_w_plus(self, n: int, seed: int) -> torch.Tensor:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """Training latents from the generator's own distribution: ``[n, n_latent, D]``."""
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    params = self.world.sample_params(n, seed)
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return torch.cat([self.world.w_plus(params[i : i + 256]) for i in range(0, n, 256)])

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def test_images(self, n: int, seed: int) -> TestImages:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    params = self.world.sample_params(n, seed)
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return TestImages(torch.cat([self.world.render(params[i : i + 256]) for i in range(0, n, 256)]), params)

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.@torch.no_grad()
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.def invert(self, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    """Images ``[N, 3, H, W]`` -> W+ ``[N, n_latent, D]`` with the domain's encoder."""
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return torch.cat([self.encoder(images[i : i + batch].to(self.device)) for i in range(0, len(images), batch)])



def load_domain(world: str = "synthfaces", device: str | torch.device = "cpu", weights: str | None = None,
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.            images: str | None = None):
 there: within 100 steps the latent has to travel further than lr 0.1 carries it."""A domain by name: a real domain config (``ffhq``, ``lsun-cat``, ... or a JSON file with a
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.``generator`` entry: :mod:`deltabench.real`), else a synthfaces world (name or config path).
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.``weights`` (the weights folder) and ``images`` (test image folder) apply to real domains."""
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.from deltabench.real.domain import (
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    domain_names,
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    is_real_domain_config,
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    load_real_domain,
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.)

 there: within 100 steps the latent has to travel further than lr 0.1 carries it.if world in domain_names() or is_real_domain_config(world):
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.    return load_real_domain(world, weights=weights, images=images, device=device)
 there: within 100 steps the latent has to travel further than lr 0.1 carries it.return SynthfacesDomain(load_world(world, device=device))
