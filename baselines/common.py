"""Pieces the three StyleCLIP baselines share: the CLIP and identity losses, frozen models,
prompt checks and small config helpers."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict

import torch
import torch.nn.functional as F

from deltabench.parse import config_from_dict  # noqa: F401 - re-exported for the baselines
from deltabench.prompts import check_prompts  # noqa: F401 - re-exported for the baselines


def config_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def as_dict(cfg) -> dict:
    return asdict(cfg)


@torch.no_grad()
def raw_text_embedding(domain, text: str) -> torch.Tensor:
    """The prompt's CLIP text embedding without templates: ``[D]`` unit.

    Official StyleCLIP OP (``optimization/run_optimization.py``) and LM (``mapper/``) tokenize
    the bare description (``clip.tokenize(description)``); only global directions average
    over the ImageNet templates.
    """
    return domain.clip.encode_text([" ".join(text.split())])[0]


def clip_loss(domain, img: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Per-image CLIP loss ``1 - cos(E_img(img), t)``: ``img [B, 3, H, W]``, ``t [D] or [B, D]`` -> ``[B]``.

    Official ``criteria/clip_loss.py`` returns ``1 - logits_per_image / 100``; OpenAI CLIP's
    logit scale is 100, so that is exactly 1 - cos. Our CLIP has its own learned temperature,
    so the cosine is used directly. ``encode_image`` resizes to the CLIP input size (official:
    7x upsample + average pool to 224).
    """
    # the official feed where the domain has one (real domains: Upsample(x7) + AvgPool, no
    # mean/std, criteria/clip_loss.py lines 11-15), else the domain CLIP's own (synthetic worlds)
    e = domain.encode_clip(img, official_input=True)  # [B, D] unit
    t = text_emb.to(e)
    return 1 - (e * (t if t.ndim == 2 else t[None])).sum(-1)


def loss_identity(domain):
    """The identity model of the ID loss: the domain's differentiable one (``identity_loss``:
    IR-SE50 in ``ffhq``, as StyleCLIP's ``criteria/id_loss.py``) when it has one, else ``identity``
    (None where the domain declares no identity: no ID loss)."""
    return domain.loss_identity()


def id_loss(domain, img: torch.Tensor, ref_embed: torch.Tensor) -> torch.Tensor:
    """Per-image identity loss ``1 - cos(id(img), id_ref)`` -> ``[B]`` (official ``criteria/id_loss.py``)."""
    return 1 - (loss_identity(domain).embed(img) * ref_embed).sum(-1)


def has_identity(domain) -> bool:
    """Whether StyleCLIP's ID loss applies: exactly when the domain declares identity."""
    return domain.has("identity")


@contextlib.contextmanager
def frozen(*modules):
    """Disable ``requires_grad`` on the models' weights for the block (no weight gradients are
    computed or accumulated), restoring each flag afterwards. Gradients still flow through."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


def domain_models(domain, identity: bool = True) -> tuple:
    """The domain's networks a loss runs through (``identity=False``: without the identity model,
    which a real domain then never loads)."""
    return (domain.generator, domain.clip) + ((loss_identity(domain),) if identity else ())


def check_latents(domain, w_plus: torch.Tensor) -> torch.Tensor:
    G = domain.generator
    if not isinstance(w_plus, torch.Tensor) or w_plus.ndim != 3 or tuple(w_plus.shape[1:]) != (G.n_latent, G.style_dim):
        shape = list(w_plus.shape) if isinstance(w_plus, torch.Tensor) else type(w_plus).__name__
        raise ValueError(
            f"w_plus must be [B, {G.n_latent}, {G.style_dim}] (W+ of this domain's generator), got {shape}"
        )
    return w_plus.to(domain.device)


def slug(text: str) -> str:
    """A file-name-safe short form of a prompt plus a hash (two prompts never collide)."""
    keep = "".join(c if c.isalnum() else "_" for c in text.lower())[:40].strip("_")
    return f"{keep}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return F.normalize(x, dim=dim, eps=1e-8)
