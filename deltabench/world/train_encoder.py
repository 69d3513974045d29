"""Train the e4e-style encoder against a frozen world generator.

Each batch mixes renderer images (the world's "real" photos) and the generator's own images.
For both the true latent is known, ``w = G.mapping(encode_params(params))`` repeated over W+,
so the encoder gets a direct latent L2 loss (which also keeps the per-entry deltas small, the
job of e4e's delta regulariser) plus e4e's image reconstruction L1 through ``G.synthesis``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.models.encoder import Encoder4Editing, EncoderConfig, build_encoder
from deltabench.models.stylegan2 import StyleGAN2
from deltabench.parse import config_from_dict
from deltabench.pixels import psnr
from deltabench.utils import progress, seed_everything
from deltabench.world.kind import WorldKind, get_kind
from deltabench.world.train_generator import params_code, render_target, world_latent_avg

ENCODER_TRAIN_CONFIG_SCHEMA = Schema(
    "world.encoder.train",
    first=("steps", "batch", "gen_batch", "lr", "latent_weight", "image_weight", "eval_n", "eval_seed", "eval_every"),
)


@versioned(ENCODER_TRAIN_CONFIG_SCHEMA)
@dataclass(frozen=True)
class EncoderTrainConfig:
    """Schedule of :func:`train_encoder` (step-based: same seed, same weights)."""

    steps: int = 1000
    batch: int = 8  # renderer images per step
    gen_batch: int = 8  # generator images per step
    lr: float = 1e-3
    latent_weight: float = 1.0
    image_weight: float = 1.0  # L1 between G.synthesis(E(x)) and x, on the renderer images
    eval_n: int = 256
    eval_seed: int = 54321
    eval_every: int = 0

    @staticmethod
    def from_dict(d: dict) -> EncoderTrainConfig:
        return config_from_dict(EncoderTrainConfig, d, "EncoderTrainConfig")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


def encoder_psnr(
    E: Encoder4Editing,
    G: StyleGAN2,
    n: int,
    seed: int,
    resolution: int | None = None,
    kind: WorldKind | str | None = None,
) -> float:
    """Mean PSNR (dB) of renderer image x vs ``G.synthesis(E(x))`` for ``n`` faces from ``seed``."""
    resolution = resolution or G.size
    dev = next(G.parameters()).device
    params = get_kind(kind).sample_params(n, np.random.default_rng(seed))
    x = render_target(params, resolution, dev, kind)
    out = []
    with torch.no_grad():
        for i in range(0, n, 64):
            out.append(G.synthesis(E(x[i : i + 64])))
    return float(psnr(torch.cat(out), x).mean())


def train_encoder(
    ecfg: EncoderConfig,
    tcfg: EncoderTrainConfig,
    G: StyleGAN2,
    seed: int,
    latent_avg: torch.Tensor | None = None,
    kind: WorldKind | str | None = None,
) -> tuple[Encoder4Editing, dict]:
    """Train an encoder for the frozen ``G``; return ``(E.eval(), stats)``.

    ``latent_avg`` (the world's mean w) defaults to :func:`world_latent_avg` of ``G``.
    """
    if ecfg.style_dim != G.style_dim:
        raise ValueError(f"EncoderConfig.style_dim={ecfg.style_dim} but the generator has {G.style_dim}")
    kind = get_kind(kind)
    seed_everything(seed)
    dev = next(G.parameters()).device
    res = G.size
    was_training = G.training
    grad_flags = [p.requires_grad for p in G.parameters()]
    G.eval().requires_grad_(False)
    E = build_encoder(ecfg, res).to(dev)
    with torch.no_grad():
        E.w_avg.copy_(world_latent_avg(G, seed=seed, kind=kind) if latent_avg is None else latent_avg.reshape(-1))
    opt = torch.optim.Adam(E.parameters(), lr=tcfg.lr)
    rng = np.random.default_rng(seed)
    lat_hist, img_hist = [], []
    curve: list[tuple[int, float, float]] = []
    t0, t_eval = time.time(), 0.0
    bar = progress(range(tcfg.steps), desc="encoder")
    try:
        for step in bar:
            params = kind.sample_params(tcfg.batch + tcfg.gen_batch, rng)
            with torch.no_grad():
                w = G.mapping(params_code(params, G.style_dim, dev, kind))  # [B, style_dim]
                real = render_target(params[: tcfg.batch], res, dev, kind)  # [b, 3, R, R]
                parts = [real]
                if tcfg.gen_batch:
                    parts.append(G.synthesis(w[tcfg.batch :]))
                x = torch.cat(parts)
            w_plus = E(x)  # [B, n_latent, style_dim]
            lat = (w_plus - w[:, None]).square().mean()
            loss = tcfg.latent_weight * lat
            if tcfg.image_weight and tcfg.batch:
                rec = G.synthesis(w_plus[: tcfg.batch])
                img = (rec - real).abs().mean()
                loss = loss + tcfg.image_weight * img
                img_hist.append(img.item())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lat_hist.append(lat.item())
            if step % 25 == 0:
                bar.set_postfix(lat=f"{np.mean(lat_hist[-25:]):.4f}")
            if tcfg.eval_every and (step + 1) % tcfg.eval_every == 0:
                te = time.time()
                p = encoder_psnr(E.eval(), G, tcfg.eval_n, tcfg.eval_seed, res, kind)
                E.train()
                curve.append((step + 1, round(te - t0 - t_eval, 1), round(p, 2)))
                t_eval += time.time() - te
    finally:
        for p, flag in zip(G.parameters(), grad_flags):
            p.requires_grad_(flag)
        G.train(was_training)
    seconds = time.time() - t0 - t_eval
    E.eval()
    k = max(1, min(50, len(lat_hist) // 5))
    stats = {
        "steps": tcfg.steps,
        "seconds": round(seconds, 1),
        "latent_loss_first": float(np.mean(lat_hist[:k])) if lat_hist else float("nan"),
        "latent_loss_last": float(np.mean(lat_hist[-k:])) if lat_hist else float("nan"),
        "image_l1_last": float(np.mean(img_hist[-k:])) if img_hist else None,
        "psnr": encoder_psnr(E, G, tcfg.eval_n, tcfg.eval_seed, res, kind) if tcfg.eval_n else None,
        "parameters": sum(p.numel() for p in E.parameters()),
        "curve": curve,
    }
    return E, stats
