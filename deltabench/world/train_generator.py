"""Distil a world's renderer into a StyleGAN2 generator (any world kind, :mod:`deltabench.world.kind`).

The mapping network reads the fixed parameter code ``encode_params(params, style_dim)`` and
the synthesis network regresses ``kind.render(params)``. No discriminator: the renderer is the
ground truth, so plain regression is the fastest way to a generator with a real S space.
A prototype measured that optimiser steps, not model size, limit quality on a CPU: small
batches, many steps, Adam betas (0, 0.99) as in StyleGAN2 (Karras et al. 2020, Appendix B),
an EMA copy as in rosinality ``train.py`` (``accumulate``), and L1 with extra weight on
edges plus an image-gradient L1 so thin details (glasses frames, mouth, beard) are learnt.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.models.stylegan2 import GeneratorConfig, StyleGAN2, build_generator
from deltabench.parse import config_from_dict
from deltabench.pixels import psnr
from deltabench.utils import progress, seed_everything, uint8_to_float
from deltabench.world.kind import Params, WorldKind, get_kind

# The world's generator section "train" (deltabench.confighash); "loss" came with the MSE option.
DISTILL_CONFIG_SCHEMA = Schema(
    "world.generator.train",
    first=(
        "steps",
        "batch",
        "lr",
        "mapping_lr_scale",
        "betas",
        "ema",
        "lr_rampdown",
        "detail_weight",
        "edge_threshold",
        "grad_weight",
        "eval_n",
        "eval_seed",
        "eval_every",
    ),
    added=[{"loss": "l1"}],
)


@versioned(DISTILL_CONFIG_SCHEMA)
@dataclass(frozen=True)
class DistillConfig:
    """Schedule of :func:`train_generator` (step-based: same seed, same weights)."""

    steps: int = 4000
    batch: int = 8
    lr: float = 1e-2
    # Adam lr multiplier for the mapping network. With the canonical lr_mlp=0.01 architecture
    # (what rosinality checkpoints assume) 100 trains the mapping like lr_mlp=1: Adam steps are
    # scale-free, so this is the same optimisation while checkpoints reload exactly. The world's
    # mapping reads a fixed parameter code, not Gaussian z; a frozen-ish mapping measured
    # 12.8 vs 16.2 dB (with lr 1e-2) after 400 micro steps.
    mapping_lr_scale: float = 100.0
    betas: tuple[float, float] = (0.0, 0.99)
    ema: float = 0.999
    lr_rampdown: float = 0.0  # cosine ramp of lr to 0 over this final fraction of the steps
    detail_weight: float = 4.0  # L1 weight on pixels near an edge of the target
    edge_threshold: float = 0.1  # target gradient magnitude (in [-1, 1] units) that counts as an edge
    grad_weight: float = 1.0  # weight of the image-gradient L1 (loss "l1" only)
    # "l1": edge-weighted L1 plus the image-gradient L1 (the shipped world's generator).
    # "mse": edge-weighted squared error. L1 regresses to the per-pixel median, and a feature
    # the network cannot yet place (a grin on a shaven face) has skin as its median: it is
    # never drawn, so it never gets the gradient that would sharpen it. The shipped generator
    # draws no mouth on shaven faces (oracle reads 0.00 of smiling shaven faces as smiling, 0.82
    # of bearded ones); trained with "mse" from scratch (default world config otherwise) it read
    # 0.64 of shaven smiles after 2,000 steps, 0.91 after 4,000 and 1.00 after 8,000, where
    # "l1" read 0.00 at 2,000 and 3,000 steps; its held-out PSNR after 8,000 steps was 26.5 dB
    # (128 faces, eval seed 12345; the shipped "l1" generator: 23.4 dB on 256 from that seed).
    loss: str = "l1"
    eval_n: int = 256  # held-out images for the PSNR reported in stats
    eval_seed: int = 12345
    eval_every: int = 0  # >0: also record held-out PSNR every this many steps (stats["curve"])

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.loss not in ("l1", "mse"):
            raise ValueError(f"generator train config: loss must be 'l1' or 'mse', got {self.loss!r}")

    @staticmethod
    def from_dict(d: dict) -> DistillConfig:
        return config_from_dict(DistillConfig, d, "DistillConfig")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


def params_code(
    params: Params, style_dim: int, device: torch.device | str = "cpu", kind: WorldKind | str | None = None
) -> torch.Tensor:
    """``z: [N, style_dim]``, the generator's input for ``params``."""
    return torch.from_numpy(get_kind(kind).encode_params(params, style_dim)).to(device)


def render_target(
    params: Params, resolution: int, device: torch.device | str = "cpu", kind: WorldKind | str | None = None
) -> torch.Tensor:
    """Renderer images ``[N, 3, R, R]`` in [-1, 1]."""
    return uint8_to_float(get_kind(kind).render(params, resolution)).to(device)


def sample(G: StyleGAN2, params: Params, batch: int = 64, kind: WorldKind | str | None = None) -> torch.Tensor:
    """G's image of ``params``: ``[N, 3, size, size]`` in [-1, 1] (no grad, stored noise)."""
    dev = next(G.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(params), batch):
            z = params_code(params[i : i + batch], G.style_dim, dev, kind)
            out.append(G.synthesis(G.mapping(z)))
    return torch.cat(out)


def world_latent_avg(G: StyleGAN2, n: int = 4096, seed: int = 0, kind: WorldKind | str | None = None) -> torch.Tensor:
    """Mean w over faces drawn from the world's prior: ``[style_dim]``.

    The world's w_avg is *not* ``G.mean_latent`` (Gaussian z): the mapping input is the
    parameter code.
    """
    params = get_kind(kind).sample_params(n, np.random.default_rng(seed))
    dev = next(G.parameters()).device
    with torch.no_grad():
        return G.mapping(params_code(params, G.style_dim, dev, kind)).mean(0)


def generator_psnr(
    G: StyleGAN2, n: int, seed: int, resolution: int | None = None, kind: WorldKind | str | None = None
) -> float:
    """Held-out PSNR (dB): G's image vs the renderer's for ``n`` fresh faces from ``seed``."""
    resolution = resolution or G.size
    if resolution != G.size:
        raise ValueError(f"generator is {G.size}px, asked to score at {resolution}px")
    params = get_kind(kind).sample_params(n, np.random.default_rng(seed))
    img = sample(G, params, kind=kind)
    target = render_target(params, resolution, img.device, kind)
    return float(psnr(img, target).mean())


def image_grads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences ``(dx [B,C,H,W-1], dy [B,C,H-1,W])``."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def detail_weights(target: torch.Tensor, detail_weight: float, threshold: float) -> torch.Tensor:
    """Per-pixel L1 weight ``[B, 1, H, W]``: ``detail_weight`` within a pixel of an edge, else 1.

    Edges come from the target's own gradient magnitude, so no renderer masks are needed.
    """
    dx, dy = image_grads(target)
    mag = F.pad(dx.abs(), (0, 1, 0, 0)) + F.pad(dy.abs(), (0, 0, 0, 1))  # [B, C, H, W]
    mag = mag.amax(1, keepdim=True)
    edge = F.max_pool2d(mag, 3, stride=1, padding=1) > threshold
    return 1.0 + (detail_weight - 1.0) * edge.float()


def distill_loss(img: torch.Tensor, target: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    wgt = detail_weights(target, cfg.detail_weight, cfg.edge_threshold)
    if cfg.loss == "mse":
        return (wgt * (img - target) ** 2).mean()
    l1 = (wgt * (img - target).abs()).mean()
    gx, gy = image_grads(img)
    tx, ty = image_grads(target)
    return l1 + cfg.grad_weight * ((gx - tx).abs().mean() + (gy - ty).abs().mean())


def lr_factor(step: int, steps: int, rampdown: float) -> float:
    """1, then a cosine ramp to 0 over the last ``rampdown`` fraction (StyleGAN2 ``projector.py``)."""
    if rampdown <= 0:
        return 1.0
    t = (steps - step) / (rampdown * steps)
    return 0.5 - 0.5 * math.cos(math.pi * min(1.0, t))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.lerp_(p, 1.0 - beta)


def train_generator(
    gcfg: GeneratorConfig,
    tcfg: DistillConfig,
    resolution: int,
    seed: int,
    device: torch.device | str = "cpu",
    on_eval: Callable[[int, StyleGAN2, float], None] | None = None,
    init: StyleGAN2 | None = None,
    kind: WorldKind | str | None = None,
) -> tuple[StyleGAN2, dict]:
    """Distil the renderer at ``resolution`` into a StyleGAN2; return ``(G_ema.eval(), stats)``.

    ``init``: continue from these weights (a refine phase; both the trained copy and the EMA
    start there, and the EMA needs no warm-up).

    ``on_eval(step, G_ema, psnr)`` is called at every ``eval_every`` evaluation.
    ``stats``: steps, seconds, ``loss_first`` and ``loss_last`` (means over up to 50 steps), held-out ``psnr``
    of the EMA generator, parameter count, S-space size, and ``latent_avg`` (list, the world
    prior's mean w) for the rosinality checkpoint.
    """
    kind = get_kind(kind)
    seed_everything(seed)
    G = build_generator(gcfg, resolution).to(device)
    if init is not None:
        G.load_state_dict(init.state_dict())
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    mapping = list(G.style.parameters())
    ids = {id(p) for p in mapping}
    rest = [p for p in G.parameters() if id(p) not in ids]
    opt = torch.optim.Adam(
        [{"params": rest, "scale": 1.0}, {"params": mapping, "scale": tcfg.mapping_lr_scale}],
        lr=tcfg.lr,
        betas=tcfg.betas,
    )
    rng = np.random.default_rng(seed)
    losses: list[float] = []
    curve: list[tuple[int, float, float]] = []  # (step, train seconds, psnr)
    t0, t_eval = time.time(), 0.0
    bar = progress(range(tcfg.steps), desc="generator")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = tcfg.lr * group["scale"] * lr_factor(step, tcfg.steps, tcfg.lr_rampdown)
        params = kind.sample_params(tcfg.batch, rng)
        target = render_target(params, resolution, device, kind)  # [B, 3, R, R]
        img = G.synthesis(G.mapping(params_code(params, G.style_dim, device, kind)))
        loss = distill_loss(img, target, tcfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # EMA ramp-up: early weights are noise, don't average them in for ~1/(1-ema) steps.
        ema_update(G_ema, G, tcfg.ema if init is not None else min(tcfg.ema, (1.0 + step) / (10.0 + step)))
        losses.append(loss.item())
        if step % 25 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-25:]):.4f}")
        if tcfg.eval_every and (step + 1) % tcfg.eval_every == 0:
            te = time.time()
            p = generator_psnr(G_ema, tcfg.eval_n, tcfg.eval_seed, resolution, kind)
            curve.append((step + 1, round(te - t0 - t_eval, 1), round(p, 2)))
            if on_eval is not None:
                on_eval(step + 1, G_ema, p)
            t_eval += time.time() - te
    seconds = time.time() - t0 - t_eval
    k = max(1, min(50, len(losses) // 5))
    stats = {
        "steps": tcfg.steps,
        "psnr_init": (
            generator_psnr(init, tcfg.eval_n, tcfg.eval_seed, resolution, kind)
            if init is not None and tcfg.eval_n
            else None
        ),
        "seconds": round(seconds, 1),
        "loss_first": float(np.mean(losses[:k])) if losses else float("nan"),
        "loss_last": float(np.mean(losses[-k:])) if losses else float("nan"),
        "psnr": generator_psnr(G_ema, tcfg.eval_n, tcfg.eval_seed, resolution, kind) if tcfg.eval_n else None,
        "parameters": sum(p.numel() for p in G_ema.parameters()),
        "s_dim": G_ema.slayout.total,
        "latent_avg": world_latent_avg(G_ema, seed=seed, kind=kind).cpu().tolist(),
        "curve": curve,
    }
    return G_ema.requires_grad_(True).eval(), stats
