"""StyleCLIP latent optimisation (OP) as a benchmark method.

Official ``optimization/run_optimization.py`` (orpatashnik/StyleCLIP), ``--mode edit``: start
from the inverted W+ code, minimise ``L_CLIP + λ_L2·||w - w_s||² + λ_ID·L_ID`` with Adam
(lr 0.1) for 300 steps under the ``get_lr`` schedule. Batched here: one Adam over a batch of
latents, with per-image losses *summed*, so every image follows exactly the trajectory it
would follow alone (Adam is element-wise; a batch mean would rescale each image's gradient).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from baselines.common import (
    as_dict,
    check_latents,
    check_prompts,
    clip_loss,
    config_from_dict,
    domain_models,
    frozen,
    has_identity,
    id_loss,
    loss_identity,
    raw_text_embedding,
)
from deltabench.methods import EditMethod
from deltabench.utils import progress


@dataclass(frozen=True)
class OPConfig:
    """Defaults from the official code: ``run_optimization.py`` argparse (lr 0.1, step 300,
    l2_lambda 0.008: lines 125, 126, 128) and ``optimization_playground.ipynb`` (id_lambda
    0.005). The script's own ``--id_lambda`` default is 0.0 (line 129): the real domains use
    that (``RealDomain.method_defaults``); synthfaces keeps 0.005."""

    steps: int = 300
    lr: float = 0.1
    l2_lambda: float = 0.008
    id_lambda: float = 0.005
    rampdown: float = 0.25
    rampup: float = 0.05
    batch: int = 64  # latents optimised together (images x prompts)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"OPConfig.steps must be >= 1, got {self.steps}")
        if self.batch < 1:
            raise ValueError(f"OPConfig.batch must be >= 1, got {self.batch}")

    @staticmethod
    def from_dict(d: dict) -> OPConfig:
        return config_from_dict(OPConfig, d, "styleclip-op config")

    def to_dict(self) -> dict:
        return as_dict(self)


def get_lr(t: float, initial_lr: float, rampdown: float = 0.25, rampup: float = 0.05) -> float:
    """Official ``get_lr``: cosine ramp-down over the last ``rampdown`` of the run, linear
    ramp-up over the first ``rampup``; ``t`` in [0, 1)."""
    lr_ramp = min(1.0, (1.0 - t) / rampdown)
    lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
    lr_ramp = lr_ramp * min(1.0, t / rampup)
    return initial_lr * lr_ramp


def optimize_latents(
    domain,
    w_init: torch.Tensor,
    text_emb: torch.Tensor,
    cfg: OPConfig,
    l2_lambda: float | None = None,
    desc: str = "styleclip-op",
) -> tuple[torch.Tensor, list]:
    """Optimise ``w_init: [B, L, D]`` towards ``text_emb: [D] or [B, D]``.

    Returns the final latents and a history ``[[step, mean clip loss, mean l2, mean id], ...]``
    (losses of the latent *before* each step's update).
    """
    G = domain.generator
    l2w = cfg.l2_lambda if l2_lambda is None else float(l2_lambda)
    use_id = cfg.id_lambda > 0 and has_identity(domain)
    w_init = w_init.detach()
    latent = w_init.clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=cfg.lr)
    history = []
    with torch.enable_grad(), frozen(*domain_models(domain, use_id)):
        if use_id:
            with torch.no_grad():
                id_ref = loss_identity(domain).embed(G.synthesis(w_init))  # [B, E] of the starting image
        for i in progress(range(cfg.steps), desc=desc):
            opt.param_groups[0]["lr"] = get_lr(i / cfg.steps, cfg.lr, cfg.rampdown, cfg.rampup)
            img = G.synthesis(latent)  # [B, 3, H, W]
            c = clip_loss(domain, img, text_emb)  # [B]
            l2 = (latent - w_init).square().sum((1, 2))  # [B], official: ((w_init - w) ** 2).sum()
            loss = c + l2w * l2
            ide = id_loss(domain, img, id_ref) if use_id else torch.zeros_like(c)
            if use_id:
                loss = loss + cfg.id_lambda * ide
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            history.append([i, c.mean().item(), l2.mean().item(), ide.mean().item()])
    return latent.detach(), history


class StyleCLIPOptimization(EditMethod):
    """StyleCLIP-OP. ``strength`` is the L2 latent weight λ_L2 (official ``--l2_lambda``,
    default 0.008; ``default_strength`` is ``config.l2_lambda``): *smaller* means a stronger,
    less faithful edit, so a run's ×k (:meth:`strength_for`) divides it by k. Steps are
    ``config.steps``. The target prompt is encoded bare, as the official code does; the source
    is not used."""

    name = "styleclip-op"
    space = "W+"
    strength_name = "l2_lambda"
    default_strength = 0.008
    config_class = OPConfig

    def __init__(self, domain, work_dir, seed: int = 0, config: OPConfig | dict | None = None, **options):
        super().__init__(domain, work_dir, seed, **options)
        self.cfg = config if isinstance(config, OPConfig) else OPConfig.from_dict(dict(config or {}))
        self.default_strength = self.cfg.l2_lambda
        self.last_history: list = []
        self.seconds_per_image: float | None = None

    def fit(self) -> dict:
        return {"fit_seconds": 0.0, "config": self.cfg.to_dict(), "note": "no training; optimises each image"}

    def strength_for(self, scale: float) -> float:
        """×``scale`` is ``scale`` times the edit: the L2 weight, an inverse knob, divided by
        ``scale`` (×2 halves the pull back to the inversion, ×0.5 doubles it)."""
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{self.name}: a strength multiplier must be a finite number > 0, got {scale!r}")
        return self.default_strength / scale

    def edit_batch(
        self, w_plus: torch.Tensor, prompts: list[tuple[str, str]], strength: float | None = None
    ) -> list[list[torch.Tensor]]:
        """Every image x every prompt, all latents in one optimiser (chunks of ``config.batch``)."""
        w_plus = check_latents(self.domain, w_plus)
        l2w = self.cfg.l2_lambda if strength is None else float(strength)
        if l2w < 0:
            raise ValueError(f"styleclip-op strength is the L2 weight and must be >= 0, got {l2w}")
        texts = torch.stack([raw_text_embedding(self.domain, check_prompts(s, t)[1]) for s, t in prompts])  # [P, D]
        B, P = w_plus.shape[0], len(prompts)
        w_all = w_plus[None].expand(P, -1, -1, -1).reshape(P * B, *w_plus.shape[1:])  # prompt-major
        t_all = texts[:, None].expand(P, B, -1).reshape(P * B, -1)
        out, self.last_history = [], []
        t0 = time.perf_counter()
        for i in range(0, P * B, self.cfg.batch):
            w, hist = optimize_latents(
                self.domain, w_all[i : i + self.cfg.batch], t_all[i : i + self.cfg.batch], self.cfg, l2w
            )
            out.append(w)
            self.last_history.append(hist)
        self.seconds_per_image = (time.perf_counter() - t0) / (P * B)
        w_edit = torch.cat(out).reshape(P, B, *w_plus.shape[1:])
        G = self.domain.generator
        with torch.no_grad():
            return [G.styles(w_edit[p]) for p in range(P)]

    def edit(self, w_plus, source, target, strength=None):
        return self.edit_batch(w_plus, [(source, target)], strength)[0]
