"""Train a world's CLIP from scratch (any world kind), and measure it zero-shot.

Two fixes for the contrastive shortcut a prototype ran into (coarse attributes such as hair
colour and background separate a random batch, so fine ones never need to be learned):

- *hard-negative groups*: a batch is made of groups of ``group_size`` faces that share
  everything (identity, hair, background, skin) except the fine attributes
  (``cfg.fine_attrs``), so inside a group only the fine attributes tell captions apart;
- *minimal-pair groups* (``pair_frac`` of the groups): all faces of the group share every
  attribute but ONE fine attribute (drawn per group), so only that attribute separates their
  captions. Without them the default world's CLIP collapsed smile in both towers (image CLS
  and text output invariant to it, zero-shot 0.50, while the patch tokens at the mouth read
  smile perfectly): once neither tower encodes an attribute, the contrastive gradient for it
  is zero, a saddle that 200 fine-tuning steps on pairs did not leave. Pairs from step 0
  make that attribute the only way to lower the loss for those groups;
- *multi-positive targets*: a caption is a positive for every image it is true of
  (:func:`deltabench.world.captions.positive_matrix`), so identical or partial captions
  ("face with glasses") are never pushed away from images they describe.

Images get the identity net's robustness augmentation (blur, noise, colour jitter), since
the world's CLIP mostly looks at the generator's slightly blurry images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from deltabench import confighash
from deltabench.confighash import Schema, versioned
from deltabench.models.clip import ClipConfig, ClipModel, WordTokenizer, build_clip
from deltabench.parse import config_from_dict
from deltabench.utils import progress, seed_everything
from deltabench.world.kind import Params, WorldKind, get_kind, positive_matrix
from deltabench.world.train_identity import (
    RenderFn,
    gaussian_blur,
    lr_at,
    pool_batch,
    render_pool,
    robust_augment,
)


def world_tokenizer(context_length: int, kind: WorldKind | str | None = None) -> WordTokenizer:
    """The world CLIP's word-level tokenizer over the caption vocabulary of ``kind``."""
    return WordTokenizer(get_kind(kind).vocabulary(), context_length)


# The world's clip section (deltabench.confighash): the minimal pairs' attributes came with the
# refine phase, the identity term later; identity_share does nothing while identity_weight is 0.
CLIP_TRAIN_CONFIG_SCHEMA = Schema(
    "world.clip",
    first=(
        "model",
        "steps",
        "batch_size",
        "group_size",
        "pool_groups",
        "fine_attrs",
        "pair_frac",
        "p_full",
        "max_short",
        "lr",
        "weight_decay",
        "aug_blur_max",
        "aug_noise",
        "aug_jitter",
        "init_temperature",
    ),
    added=[{"pair_attrs": ()}, {"identity_weight": 0.0, "identity_share": 0.35}],
    follows={"identity_share": "identity_weight"},
)


@versioned(CLIP_TRAIN_CONFIG_SCHEMA)
@dataclass(frozen=True)
class ClipTrainConfig:
    """The ``clip`` section of a world config: model sizes (``model``) and the schedule."""

    model: ClipConfig = ClipConfig()
    steps: int = 1100
    batch_size: int = 128
    group_size: int = 4
    pool_groups: int = 4000  # pool of pool_groups * group_size rendered faces
    # The faces kind's (deltabench.world.faces FacesKind.fine_attrs); another kind's config gets
    # its own kind's filled in when it gives none (world.components.resolve_sections).
    fine_attrs: tuple[str, ...] = ("smile", "glasses", "beard", "eye_size", "face_width")
    pair_frac: float = 0.0  # share of pool groups that vary one fine attribute only
    # The attributes the minimal-pair groups vary; empty: ``fine_attrs``. A refine phase can
    # aim its pairs at an attribute one tower failed to learn.
    pair_attrs: tuple[str, ...] = ()
    p_full: float = 0.5  # share of captions naming every attribute; the rest name 0..max_short
    max_short: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.1
    aug_blur_max: float = 1.0
    aug_noise: float = 0.03
    aug_jitter: float = 0.05
    # Initial softmax temperature. CLIP starts at 0.07 and learns it; a sharper start lets the
    # within-group differences (fine attributes) matter from the first steps.
    init_temperature: float = 0.07
    # Identity term (0 = off): a real CLIP's image embedding tells faces with the same
    # attributes apart (it has seen people, not captions of attributes), the contrastive loss
    # over attribute captions alone teaches the world CLIP to ignore identity (same-attribute
    # cosine 0.9994). With weight > 0 the embedding's projection onto a fixed 6-d subspace
    # (:func:`identity_basis`) is regressed onto the face's identity parameters, scaled so the
    # identity part has norm ``identity_share`` on average (see :func:`identity_loss`).
    identity_weight: float = 0.0
    identity_share: float = 0.35

    @staticmethod
    def from_dict(d: dict, kind: WorldKind | str | None = None) -> ClipTrainConfig:
        d = dict(d)
        names = get_kind(kind).attribute_names
        if "model" in d:
            d["model"] = ClipConfig.from_dict(d["model"])
        for key in ("fine_attrs", "pair_attrs"):
            if key in d:
                d[key] = tuple(d[key])
                bad = [a for a in d[key] if a not in names]
                if bad:
                    raise ValueError(f"clip config: {key} {bad} are not attributes; known: {list(names)}")
        cfg = config_from_dict(ClipTrainConfig, d, "clip config")
        if cfg.identity_weight < 0 or not 0.0 < cfg.identity_share < 1.0:
            raise ValueError(
                f"clip config: identity_weight must be >= 0 and identity_share in (0, 1), "
                f"got {cfg.identity_weight} and {cfg.identity_share}"
            )
        if not 0.0 <= cfg.pair_frac <= 1.0:
            raise ValueError(f"clip config: pair_frac {cfg.pair_frac} must be in [0, 1]")
        if cfg.batch_size % cfg.group_size:
            raise ValueError(
                f"clip config: batch_size {cfg.batch_size} is not a multiple of group_size {cfg.group_size}"
            )
        return cfg

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


def identity_basis(dim: int, n_params: int = 6) -> torch.Tensor:
    """``[dim, P]``: a fixed orthonormal basis (seeded, the same in every build) of the
    subspace the identity term writes the ``P = n_params`` continuous parameters into
    (faces: its 6 identity parameters)."""
    g = torch.Generator().manual_seed(20230601)
    q, _ = torch.linalg.qr(torch.randn(dim, n_params, generator=g))
    return q


def identity_loss(img_f: torch.Tensor, ident: torch.Tensor, basis: torch.Tensor, share: float) -> torch.Tensor:
    """Relative squared error of the identity read off the normalised embedding ``img_f [B, D]``.

    Target: ``share * ident / sqrt(P / 3)`` in the basis (identity parameters are uniform in
    [-1, 1], so the target's mean squared norm is ``share**2``); the loss is the squared error
    over ``share**2``, i.e. about 1 - R^2 of that read-out. Two faces that differ only in who
    they are then sit at cosine about ``1 - share**2``.
    """
    target = share * ident / np.sqrt(ident.shape[1] / 3.0)
    return ((img_f @ basis - target) ** 2).sum(1).mean() / share**2


def group_params(
    n_groups: int,
    group_size: int,
    fine_attrs: tuple[str, ...],
    rng: np.random.Generator,
    kind: WorldKind | str | None = None,
) -> Params:
    """``n_groups * group_size`` scenes; each run of ``group_size`` shares all but ``fine_attrs``."""
    kind = get_kind(kind)
    base = kind.sample_params(n_groups, rng)
    attrs = np.repeat(base.attrs, group_size, axis=0)  # [G*k, A]
    ident = np.repeat(base.ident, group_size, axis=0)  # [G*k, P]
    fresh = kind.sample_params(len(attrs), rng).attrs
    for name in fine_attrs:
        j = kind.attribute_index(name)
        attrs[:, j] = fresh[:, j]
    return kind.params(attrs, ident)


def pair_params(
    n_groups: int,
    group_size: int,
    attrs_to_vary: tuple[str, ...],
    rng: np.random.Generator,
    kind: WorldKind | str | None = None,
) -> Params:
    """``n_groups * group_size`` faces; each group varies ONE attribute (drawn uniformly from
    ``attrs_to_vary``) over all its values, as evenly as the group size allows, and shares the rest."""
    kind = get_kind(kind)
    base = kind.sample_params(n_groups, rng)
    attrs = np.repeat(base.attrs, group_size, axis=0)  # [G*k, A]
    ident = np.repeat(base.ident, group_size, axis=0)
    which = rng.integers(0, len(attrs_to_vary), size=n_groups)
    for g in range(n_groups):  # one small draw per group, only at pool creation
        j = kind.attribute_index(attrs_to_vary[which[g]])
        n_values = kind.attributes[j].n
        attrs[g * group_size : (g + 1) * group_size, j] = rng.permutation(np.resize(np.arange(n_values), group_size))
    return kind.params(attrs, ident)


def multi_positive_loss(
    img_f: torch.Tensor, txt_f: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric contrastive loss with several positives per row.

    ``img_f [Ni, D]``, ``txt_f [Nc, D]`` normalised, ``pos bool [Nc, Ni]``. Each direction
    is a cross-entropy against the uniform distribution over that row's positives; with one
    positive per row (``pos`` = identity) it is CLIP's loss.
    """
    logits = scale * txt_f @ img_f.t()  # [Nc, Ni]
    p = pos.float()
    t2i = -(F.log_softmax(logits, 1) * p / p.sum(1, keepdim=True).clamp_min(1)).sum(1)
    i2t = -(F.log_softmax(logits.t(), 1) * p.t() / p.t().sum(1, keepdim=True).clamp_min(1)).sum(1)
    return 0.5 * (t2i[p.sum(1) > 0].mean() + i2t[p.sum(0) > 0].mean())


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # No decay on gains, biases, embeddings' 1-D params and the temperature
    # (open_clip training/main.py `exclude`).
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_clip(
    cfg: ClipTrainConfig,
    resolution: int,
    seed: int,
    render_fn: RenderFn | None = None,
    callback: Callable[[int, ClipModel], None] | None = None,
    init: ClipModel | None = None,
    kind: WorldKind | str | None = None,
) -> tuple[ClipModel, dict]:
    """Contrastive training on rendered faces and their captions, from scratch or from ``init``.

    Returns ``(clip.eval(), stats)``; the same ``seed`` gives the same weights. The
    tokenizer's vocabulary (``clip.tokenizer.to_dict()``) must be stored with the weights.
    ``callback(step, clip)`` runs after each step (for experiments; it must not draw from
    the global RNGs if the run is to stay reproducible). ``init``: continue from this model
    (a refine phase; its tokenizer and temperature are kept, ``init`` itself is not modified).
    """
    kind = get_kind(kind)
    t0 = time.perf_counter()
    gen = seed_everything(seed)
    rng = np.random.default_rng(seed)
    n_pairs = int(round(cfg.pool_groups * cfg.pair_frac))
    params = group_params(cfg.pool_groups - n_pairs, cfg.group_size, cfg.fine_attrs, rng, kind)
    if n_pairs:
        pairs = pair_params(n_pairs, cfg.group_size, cfg.pair_attrs or cfg.fine_attrs, rng, kind)
        params = kind.params(np.concatenate([params.attrs, pairs.attrs]), np.concatenate([params.ident, pairs.ident]))
    pool = render_pool(params, resolution, render_fn, desc="render clip pool", kind=kind)  # uint8 [N, 3, H, W]
    t_render = time.perf_counter() - t0

    if init is not None:
        model = build_clip(cfg.model, resolution, init.tokenizer)
        model.load_state_dict(init.state_dict())
        model.train()
    else:
        model = build_clip(cfg.model, resolution, world_tokenizer(cfg.model.context_length, kind)).train()
        with torch.no_grad():
            model.clip.logit_scale.fill_(float(np.log(1.0 / cfg.init_temperature)))
    opt = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    per_batch = cfg.batch_size // cfg.group_size
    offs = torch.arange(cfg.group_size)
    basis = identity_basis(cfg.model.embed_dim, len(kind.continuous)) if cfg.identity_weight else None
    losses, id_losses = [], []
    t_train, cpu_train = time.perf_counter(), time.process_time()
    bar = progress(range(cfg.steps), desc="clip")
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.steps, cfg.lr)
        groups = torch.randint(0, cfg.pool_groups, (per_batch,), generator=gen)
        idx = (groups[:, None] * cfg.group_size + offs[None]).flatten()  # [B]
        sub = params[idx.numpy()]
        x = robust_augment(pool_batch(pool, idx), gen, cfg.aug_blur_max, cfg.aug_noise, cfg.aug_jitter)
        texts, mentioned = kind.captions_with_mentions(sub, rng, "train", cfg.p_full, cfg.max_short)
        pos = torch.from_numpy(positive_matrix(sub.attrs, mentioned, sub.attrs))  # [B, B]
        img_f = model.encode_image(x)  # [B, D]
        txt_f = model.encode_text(texts)  # [B, D]
        loss = multi_positive_loss(img_f, txt_f, pos, model.logit_scale)
        if basis is not None:
            id_loss = identity_loss(img_f, torch.from_numpy(sub.ident), basis, cfg.identity_share)
            id_losses.append(id_loss.item())
            loss = loss + cfg.identity_weight * id_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # CLIP clamps the temperature at 100 (Radford et al. 2021, sec. 2.5)
            model.clip.logit_scale.clamp_(0, np.log(100.0))
        losses.append(loss.item())
        if callback is not None:
            callback(step, model)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{model.logit_scale.item():.1f}")
    tail = max(1, cfg.steps // 10)
    stats = {
        "loss_first": float(np.mean(losses[:tail])),
        "loss_last": float(np.mean(losses[-tail:])),
        "logit_scale": float(model.logit_scale.item()),
        "steps": cfg.steps,
        "seconds_per_step": (time.perf_counter() - t_train) / max(1, cfg.steps),
        # CPU time of this process: the cost on an idle machine when the CPU is shared.
        "cpu_seconds_per_step": (time.process_time() - cpu_train) / max(1, cfg.steps),
        "seconds_render": t_render,
        "seconds": time.perf_counter() - t0,
    }
    if id_losses:
        stats["identity_loss_first"] = float(np.mean(id_losses[:tail]))
        stats["identity_loss_last"] = float(np.mean(id_losses[-tail:]))
    return model.eval(), stats


@torch.no_grad()
def text_embedding(clip: ClipModel, text: str, templates: list[str] | tuple[str, ...] = ("{}",)) -> torch.Tensor:
    """``[D]``: ``text`` in every template, each embedding normalised, mean, renormalised
    (StyleCLIP global_directions/MapTS.py ``zeroshot_classifier``; DeltaEdit does the same)."""
    return mean_embedding(clip, [t.format(text) for t in templates])


@torch.no_grad()
def mean_embedding(clip: ClipModel, texts: list[str], batch: int = 256) -> torch.Tensor:
    """``[D]``: normalised mean of the normalised embeddings of ``texts``."""
    e = torch.cat([clip.encode_text(texts[i : i + batch]) for i in range(0, len(texts), batch)])
    m = e.mean(0)
    return m / m.norm()


@torch.no_grad()
def embed_images(clip: ClipModel, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """``[N, D]`` normalised image embeddings of ``images [N, 3, H, W]`` in [-1, 1], on CPU."""
    return torch.cat([clip.encode_image(images[i : i + batch]).cpu() for i in range(0, len(images), batch)])


def _render(params: Params, resolution: int, render_fn: RenderFn | None) -> torch.Tensor:
    return pool_batch(render_pool(params, resolution, render_fn, desc="render eval"), torch.arange(len(params)))


@torch.no_grad()
def clip_zeroshot(
    clip: ClipModel,
    n: int,
    seed: int,
    resolution: int,
    style: str = "full",
    render_fn: RenderFn | None = None,
    blur_sigma: float = 0.0,
    kind: WorldKind | str | None = None,
) -> dict[str, float]:
    """Zero-shot accuracy per attribute on ``n`` fresh rendered faces.

    Each value's class embedding is the mean embedding of its prompts
    (:func:`deltabench.world.captions.attribute_prompts`): ``style='full'`` averages full
    captions with random other values; ``style='short'`` averages the short edit-style
    phrasings ("face with glasses", "face without glasses") over the world's templates.
    ``blur_sigma`` (pixels) blurs the images as a stand-in for generator output.
    """
    kind = get_kind(kind)
    was_training = clip.training
    clip.eval()
    params = kind.sample_params(n, np.random.default_rng(seed))
    images = _render(params, resolution, render_fn or kind.render)
    if blur_sigma > 0:
        images = gaussian_blur(images, blur_sigma)
    img_f = embed_images(clip, images).to(clip.device)  # [n, D]
    out = {}
    for j, a in enumerate(kind.attributes):
        prompts = kind.attribute_prompts(a.name, style=style)
        if style == "short":
            prompts = {v: [t.format(p) for p in ps for t in kind.templates()] for v, ps in prompts.items()}
        cls = torch.stack([mean_embedding(clip, prompts[v]) for v in a.values])  # [V, D]
        pred = (img_f @ cls.t()).argmax(1).cpu().numpy()
        out[a.name] = float((pred == params.attrs[:, j]).mean())
    clip.train(was_training)
    return out


@torch.no_grad()
def clip_identity(
    clip: ClipModel,
    seed: int,
    resolution: int,
    n_train: int = 2500,
    n_test: int = 500,
    n_pairs: int = 500,
    render_fn: RenderFn | None = None,
    kind: WorldKind | str | None = None,
) -> dict:
    """How much of who a face is the CLIP image embedding carries, on fresh renderer faces.

    ``r2``: per identity parameter, held-out R^2 of a ridge regression (regularisation chosen
    by cross-validation on the training faces) from the normalised image embedding; ``cos``:
    mean image cosine of ``n_pairs`` pairs with identical attributes and independently drawn
    identity (1.0 = the embedding cannot tell them apart).
    """
    from sklearn.linear_model import RidgeCV

    kind = get_kind(kind)
    was_training = clip.training
    clip.eval()
    rng = np.random.default_rng(seed)
    params = kind.sample_params(n_train + n_test, rng)
    x = embed_images(clip, _render(params, resolution, render_fn or kind.render)).double().numpy()
    ridge = RidgeCV(alphas=np.logspace(-4, 2, 13)).fit(x[:n_train], params.ident[:n_train])
    pred = ridge.predict(x[n_train:])
    y = params.ident[n_train:]
    r2 = 1.0 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    a = kind.sample_params(n_pairs, rng)
    b = kind.params(a.attrs.copy(), kind.sample_params(n_pairs, rng).ident)
    ea = embed_images(clip, _render(a, resolution, render_fn or kind.render))
    eb = embed_images(clip, _render(b, resolution, render_fn or kind.render))
    clip.train(was_training)
    return {"r2": {p: float(v) for p, v in zip(kind.continuous, r2)}, "cos": float((ea * eb).sum(1).mean())}
