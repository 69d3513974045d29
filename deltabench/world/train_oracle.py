"""Train and evaluate a world's attribute oracle on renderer images (any world kind): a head per
attribute of the kind's schema and a regression of its continuous parameters.

Trained with the same robustness augmentation as the identity net (blur, noise, colour jitter),
because its main job is reading attributes off *generated* images, which are slightly blurry.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from deltabench.models.oracle import Oracle, OracleConfig, build_oracle
from deltabench.utils import progress, seed_everything
from deltabench.world.kind import Params, WorldKind, get_kind
from deltabench.world.train_identity import RenderFn, lr_at, pool_batch, render_pool, robust_augment


@torch.no_grad()
def world_oracle(cfg: OracleConfig, resolution: int, kind: WorldKind | str | None = None) -> Oracle:
    """An untrained oracle with a head per attribute of the world's schema."""
    kind = get_kind(kind)
    return build_oracle(cfg, resolution, {a.name: a.n for a in kind.attributes}, len(kind.continuous))


def oracle_predict(oracle: Oracle, images: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Batched :meth:`Oracle.predict` in eval mode: ``(attrs int64 [N, A], ident float32 [N, P])``."""
    was_training = oracle.training
    oracle.eval()
    attrs, ident = [], []
    for i in range(0, len(images), batch):
        a, p = oracle.predict(images[i : i + batch])
        attrs.append(a.cpu())
        ident.append(p.float().cpu())
    oracle.train(was_training)
    return torch.cat(attrs).numpy(), torch.cat(ident).numpy()


def oracle_accuracy(oracle: Oracle, images: torch.Tensor, params: Params) -> dict[str, float]:
    """Fraction of ``images [N, 3, H, W]`` whose predicted attribute equals ``params``, per attribute."""
    attrs, _ = oracle_predict(oracle, images)
    return {a.name: float((attrs[:, j] == params.attrs[:, j]).mean()) for j, a in enumerate(params.ATTRIBUTES)}


def ident_error(oracle: Oracle, images: torch.Tensor, params: Params) -> dict[str, float]:
    """Mean absolute error of the regressed continuous (identity) parameters (range [-1, 1]), per parameter."""
    _, ident = oracle_predict(oracle, images)
    err = np.abs(ident - params.ident).mean(0)
    return {name: float(e) for name, e in zip(params.CONTINUOUS, err)}


def oracle_loss(
    out, attrs: torch.Tensor, ident: torch.Tensor, ident_weight: float, kind: WorldKind | str | None = None
) -> torch.Tensor:
    """Sum of per-attribute cross-entropies + ``ident_weight`` x L1 on the continuous parameters."""
    ce = sum(F.cross_entropy(out.logits[a.name], attrs[:, j]) for j, a in enumerate(get_kind(kind).attributes))
    return ce + ident_weight * F.l1_loss(out.ident, ident)


def train_oracle(
    cfg: OracleConfig,
    resolution: int,
    seed: int,
    render_fn: RenderFn | None = None,
    kind: WorldKind | str | None = None,
) -> tuple[Oracle, dict]:
    """Train the oracle on a pool of ``cfg.pool_size`` random rendered faces.

    Returns ``(oracle.eval(), stats)``; the same ``seed`` gives the same weights.
    """
    kind = get_kind(kind)
    t0 = time.perf_counter()
    gen = seed_everything(seed)
    params = kind.sample_params(cfg.pool_size, np.random.default_rng(seed))
    pool = render_pool(params, resolution, render_fn, desc="render oracle pool", kind=kind)
    attrs_all = torch.from_numpy(params.attrs)  # [N, A]
    ident_all = torch.from_numpy(params.ident)  # [N, P]
    t_render = time.perf_counter() - t0

    oracle = world_oracle(cfg, resolution, kind).train()
    opt = torch.optim.AdamW(oracle.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, accs = [], []
    bar = progress(range(cfg.steps), desc="oracle")
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr)
        idx = torch.randint(0, len(pool), (cfg.batch_size,), generator=gen)
        x = robust_augment(pool_batch(pool, idx), gen, cfg.aug_blur_max, cfg.aug_noise, cfg.aug_jitter)
        out = oracle(x)
        loss = oracle_loss(out, attrs_all[idx], ident_all[idx], cfg.ident_weight, kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        with torch.no_grad():
            pred = torch.stack([out.logits[a.name].argmax(1) for a in kind.attributes], 1)
            accs.append((pred == attrs_all[idx]).float().mean().item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{np.mean(accs[-20:]):.3f}")
    tail = max(1, cfg.steps // 10)
    stats = {
        "loss_first": float(np.mean(losses[:tail])),
        "loss_last": float(np.mean(losses[-tail:])),
        "train_acc_last": float(np.mean(accs[-tail:])),
        "steps": cfg.steps,
        "seconds_render": t_render,
        "seconds": time.perf_counter() - t0,
    }
    return oracle.eval(), stats
