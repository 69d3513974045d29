"""Train and evaluate a world's identity net (kinds that declare ``has_identity``: faces).

Who a person is = the continuous identity parameters ``ident`` only (face height, chin, eye
spacing, nose length and width, brow height), as in :mod:`deltabench.world.faces.attributes`. Every
discrete attribute, including skin tone, eye size and face width, varies freely within an
identity, because the benchmark edits each of them and IDS must measure whether the *person*
survived the edit, not whether the edit happened. The training set is a fixed set of K identities,
each rendered with several random attribute sets; evaluation uses fresh identities.

Also home of the robustness augmentation shared with the oracle (generator images are slightly
blurry, noisy and colour-shifted versions of renderer images).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from deltabench.models.identity import ArcFaceHead, IdentityConfig, IdentityNet, arcface_loss, build_identity
from deltabench.utils import progress, seed_everything
from deltabench.world.kind import Params, WorldKind, get_kind

RenderFn = Callable[[Params, int], np.ndarray]


# ---------------------------------------------------------------------------------------------
# augmentation


def gaussian_blur(img: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur with a per-image ``sigma`` (pixels; 0 = unchanged). ``[N, 3, H, W]``."""
    n, c, h, w = img.shape
    sigma = torch.as_tensor(sigma, dtype=img.dtype, device=img.device).expand(n)  # [N]
    smax = float(sigma.max())
    if smax <= 1e-3:
        return img
    r = max(1, math.ceil(3 * smax))
    r = min(r, (min(h, w) - 1))  # reflect padding needs r < side
    x = torch.arange(-r, r + 1, dtype=img.dtype, device=img.device)  # [k]
    k = torch.exp(-(x[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))  # [N, k]
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [N*C, k]
    y = img.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def robust_augment(
    img: torch.Tensor, gen: torch.Generator, blur_max: float, noise: float, jitter: float
) -> torch.Tensor:
    """Random colour jitter, Gaussian blur (sigma ~ U[0, blur_max] px at 64 px, scaled with the
    image size) and Gaussian noise (std ~ U[0, noise]), per image; ``[N, 3, H, W]`` in [-1, 1]."""
    n, _, h, _ = img.shape
    u = lambda *s: torch.rand(*s, generator=gen, device=img.device)  # noqa: E731
    if jitter > 0:
        gain = 1 + (2 * u(n, 1, 1, 1) - 1) * jitter  # contrast
        chan = 1 + (2 * u(n, 3, 1, 1) - 1) * jitter * 0.5  # per-channel colour cast
        bias = (2 * u(n, 1, 1, 1) - 1) * jitter  # brightness
        img = img * gain * chan + bias
    if blur_max > 0:
        img = gaussian_blur(img, u(n) * blur_max * h / 64)
    if noise > 0:
        img = img + torch.randn(img.shape, generator=gen, device=img.device) * (u(n, 1, 1, 1) * noise)
    return img.clamp(-1, 1)


def render_pool(
    params: Params,
    resolution: int,
    render_fn: RenderFn | None = None,
    chunk: int = 1000,
    desc: str = "render",
    kind: WorldKind | str | None = None,
) -> torch.Tensor:
    """Render once into ``uint8 [N, 3, H, W]`` (4x smaller than float; converted per batch) with
    ``render_fn``, else the renderer of ``kind``."""
    render_fn = render_fn or get_kind(kind).render
    out = torch.empty((len(params), 3, resolution, resolution), dtype=torch.uint8)
    for i in progress(range(0, len(params), chunk), desc=desc):
        img = render_fn(params[i : i + chunk], resolution)  # uint8 [n, H, W, 3]
        out[i : i + len(img)] = torch.from_numpy(np.ascontiguousarray(img)).permute(0, 3, 1, 2)
    return out


def pool_batch(pool: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return pool[idx].float() / 127.5 - 1.0  # [B, 3, H, W]


def lr_at(step: int, steps: int, lr: float, warmup_frac: float = 0.05) -> float:
    """Linear warm-up then cosine decay to zero."""
    warm = max(1, int(steps * warmup_frac))
    if step < warm:
        return lr * (step + 1) / warm
    t = (step - warm) / max(1, steps - warm)
    return lr * 0.5 * (1 + math.cos(math.pi * t))


# ---------------------------------------------------------------------------------------------
# evaluation


def verification_pairs(
    n_pairs: int, seed: int, kind: WorldKind | str | None = None
) -> tuple[Params, Params, np.ndarray]:
    """``n_pairs`` genuine pairs (same ``ident``, independent random attributes) then ``n_pairs``
    impostor pairs (independent identities); returns ``(a, b, same: bool [2 n_pairs])``."""
    kind = get_kind(kind)
    rng = np.random.default_rng(seed)
    ident = kind.sample_continuous(n_pairs, rng)
    ga, gb = kind.sample_params(n_pairs, rng, ident), kind.sample_params(n_pairs, rng, ident)
    ia, ib = kind.sample_params(n_pairs, rng), kind.sample_params(n_pairs, rng)
    same = np.concatenate([np.ones(n_pairs, bool), np.zeros(n_pairs, bool)])
    return kind.params_cls.concat([ga, ia]), kind.params_cls.concat([gb, ib]), same


def pair_auc(emb_a: torch.Tensor, emb_b: torch.Tensor, same: np.ndarray) -> float:
    """Verification ROC AUC of the cosine similarity of rows of ``emb_a``/``emb_b`` ``[M, D]``."""
    cos = F.cosine_similarity(emb_a.float(), emb_b.float(), dim=1).cpu().numpy()
    return float(roc_auc_score(np.asarray(same, bool), cos))


@torch.no_grad()
def embed_images(net: IdentityNet, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Embeddings ``[N, D]`` of ``images [N, 3, H, W]`` in [-1, 1], batched, on CPU."""
    return torch.cat([net.embed(images[i : i + batch]).cpu() for i in range(0, len(images), batch)])


@torch.no_grad()
def identity_auc(
    net: IdentityNet,
    n_pairs: int,
    seed: int,
    resolution: int,
    blur_sigma: float = 0.0,
    render_fn: RenderFn | None = None,
    kind: WorldKind | str | None = None,
) -> float:
    """Verification ROC AUC on fresh identities: ``n_pairs`` genuine vs ``n_pairs`` impostor pairs.

    ``blur_sigma`` (pixels at ``resolution``) blurs both images, as a stand-in for the generator.
    """
    a, b, same = verification_pairs(n_pairs, seed, kind)
    was_training = net.training
    net.eval()
    embs = []
    for p in (a, b):
        img = render_pool(p, resolution, render_fn, desc="render pairs", kind=kind).float() / 127.5 - 1.0
        if blur_sigma > 0:
            img = gaussian_blur(img, blur_sigma)
        embs.append(embed_images(net, img))
    net.train(was_training)
    return pair_auc(embs[0], embs[1], same)


# ---------------------------------------------------------------------------------------------
# training


def train_identity(
    cfg: IdentityConfig,
    resolution: int,
    seed: int,
    render_fn: RenderFn | None = None,
    kind: WorldKind | str | None = None,
) -> tuple[IdentityNet, dict]:
    """Train the identity net with ArcFace on ``cfg.n_identities`` rendered identities.

    Returns ``(net.eval(), stats)``; the same ``seed`` gives the same weights.
    """
    kind = get_kind(kind)
    t0 = time.perf_counter()
    gen = seed_everything(seed)
    rng = np.random.default_rng(seed)
    k, m = cfg.n_identities, cfg.images_per_identity
    ident = np.repeat(kind.sample_continuous(k, rng), m, axis=0)  # [K*M, P]
    params = kind.sample_params(k * m, rng, ident)
    labels = torch.arange(k).repeat_interleave(m)  # [K*M]
    pool = render_pool(params, resolution, render_fn, desc="render identities", kind=kind)
    t_render = time.perf_counter() - t0

    net = build_identity(cfg, resolution).train()
    head = ArcFaceHead(cfg.embed_dim, k)
    opt = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, accs = [], []
    bar = progress(range(cfg.steps), desc="identity")
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr)
        idx = torch.randint(0, len(pool), (cfg.batch_size,), generator=gen)
        x = robust_augment(pool_batch(pool, idx), gen, cfg.aug_blur_max, cfg.aug_noise, cfg.aug_jitter)
        y = labels[idx]
        cos = head(net(x))  # [B, K]
        loss = arcface_loss(cos, y, cfg.scale, cfg.margin)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        accs.append((cos.argmax(1) == y).float().mean().item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", acc=f"{np.mean(accs[-20:]):.2f}")
    tail = max(1, cfg.steps // 10)
    stats = {
        "loss_first": float(np.mean(losses[:tail])),
        "loss_last": float(np.mean(losses[-tail:])),
        "train_acc_last": float(np.mean(accs[-tail:])),
        "steps": cfg.steps,
        "seconds_render": t_render,
        "seconds": time.perf_counter() - t0,
    }
    return net.eval(), stats
