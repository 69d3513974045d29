"""A loaded synthetic world: its kind (renderer, schema, captions) and its trained models
(generator, encoder, CLIP, oracle, and an identity net where the kind has one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deltabench.config import WorldConfig
from deltabench.utils import uint8_to_float
from deltabench.world import store
from deltabench.world.catalog import load_world_config
from deltabench.world.components import COMPONENT_SPECS
from deltabench.world.kind import Params, get_kind


class World:
    """Everything a benchmark needs inside one synthetic world, loaded and verified."""

    def __init__(self, cfg: WorldConfig, path: Path, manifest: dict, models: dict[str, torch.nn.Module]):
        self.cfg = cfg
        self.path = path
        self.manifest = manifest
        self.kind = get_kind(cfg.kind)
        self.generator = models["generator"]
        self.encoder = models["encoder"]
        self.clip = models["clip"]
        self.identity = models.get("identity")  # None where the kind has no identity model
        self.oracle = models["oracle"]

    @property
    def resolution(self) -> int:
        return self.cfg.resolution

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def to(self, device) -> World:
        for m in (self.generator, self.encoder, self.clip, self.identity, self.oracle):
            if m is not None:
                m.to(device)
        return self

    def sample_params(self, n: int, seed: int) -> Params:
        return self.kind.sample_params(n, np.random.default_rng(seed))

    def render(self, params: Params) -> torch.Tensor:
        """Renderer ("real") images ``[N, 3, H, W]`` in [-1, 1]."""
        return uint8_to_float(self.kind.render(params, self.resolution)).to(self.device)

    def latent(self, params: Params) -> torch.Tensor:
        """The generator's input code for ``params``: ``z: [N, style_dim]``."""
        z = self.kind.encode_params(params, self.generator.style_dim)
        return torch.from_numpy(z).to(self.device)

    @torch.no_grad()
    def w_plus(self, params: Params) -> torch.Tensor:
        w = self.generator.mapping(self.latent(params))  # [N, style_dim]
        return w[:, None].repeat(1, self.generator.n_latent, 1)

    @torch.no_grad()
    def generate(self, params: Params) -> torch.Tensor:
        """Generator images for ``params``: ``[N, 3, H, W]`` in [-1, 1]."""
        return self.generator.synthesis(self.w_plus(params))


def load_world(world: str | WorldConfig, device: str | torch.device = "cpu", roots: list[Path] | None = None) -> World:
    """Find, verify and load a built world (by name, JSON path or config)."""
    cfg = world if isinstance(world, WorldConfig) else load_world_config(world)
    d = store.find_world(cfg, roots)
    manifest = store.verify_world(cfg, d)
    models = {}
    for name in cfg.components:
        spec = COMPONENT_SPECS[name]
        extra = manifest["stages"][name].get("extra", {})
        model = spec.build(cfg, extra)
        sd = store.load_tensors(d / f"{name}.safetensors", cfg)
        try:
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        except RuntimeError as e:
            raise store.WorldCacheError(
                f"{d / (name + '.safetensors')} does not fit the {name} built from the config ({e}). "
                f"Rebuild with {store.rebuild_hint(cfg)}."
            ) from None
        for p in model.parameters():
            p.requires_grad_(False)
        models[name] = model.eval().to(device)
    return World(cfg, d, manifest, models)
