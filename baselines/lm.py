"""StyleCLIP latent mapper (LM) as a benchmark method.

Official ``mapper/latent_mappers.py`` (``LevelsMapper``), ``mapper/training/coach.py`` and
``mapper/options/train_options.py`` (orpatashnik/StyleCLIP): one mapper per target prompt,
three sub-mappers over the coarse / medium / fine W+ entries, each ``PixelNorm`` + 4
``EqualLinear(lr_mul=0.01, fused_lrelu)``; ``w' = w + 0.1·M(w)``; loss ``1.0·CLIP + 0.8·L2 +
0.1·ID`` (``clip_lambda``, ``latent_l2_lambda``, ``id_lambda``); Adam lr 0.5.

W+ groups: the official split is entries 0-3 / 4-7 / 8-17 of 18. Here the two boundaries are
scaled to the generator's ``n_latent`` (``round(4/18·L)``, ``round(8/18·L)``): 18 -> 4, 8
(official); 10 (64px) -> 2, 4; 8 (32px) -> 2, 4.

Under ``torchrun`` the prompts' mappers are dealt to the ranks, each trained whole on one rank
(bitwise the single-process mapper); the last prompts, fewer than the ranks, are trained by
all ranks together with DistributedDataParallel: every rank draws the same global batch from
the same seeded generator and takes its equal slice (``DistributedSampler``'s scheme), DDP
averages the gradients, so the step is the global-batch step up to float rounding.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from baselines.common import (as_dict, check_latents, check_prompts, clip_loss, config_from_dict, config_hash,
                              domain_models, frozen, has_identity, id_loss, loss_identity,
                              raw_text_embedding, slug)
from deltabench import distributed as dist
from deltabench.methods import EditMethod
from deltabench.models.ops import EqualLinear, PixelNorm
from deltabench.utils import progress


def level_split(n_latent: int) -> tuple[slice, slice, slice]:
    """Coarse / medium / fine W+ entries, official 0-3 / 4-7 / 8-17 scaled to ``n_latent``."""
    if n_latent < 3:
        raise ValueError(f"the latent mapper needs at least 3 W+ entries, the generator has {n_latent}")
    a = max(1, round(4 * n_latent / 18))
    b = max(a + 1, min(n_latent - 1, round(8 * n_latent / 18)))
    return slice(0, a), slice(a, b), slice(b, n_latent)


class Mapper(nn.Module):
    """PixelNorm + 4 EqualLinear(lr_mul 0.01, fused leaky ReLU) (official ``latent_mappers.Mapper``).

    Input ``[B, k, D]``. The official ``PixelNorm`` normalises over dim 1, which for these
    ``[B, k, 512]`` slices is the W+-entry axis, not the feature axis: kept as in the official
    code. The linear layers act on the feature axis with a per-feature bias (the official CUDA
    ``fused_bias_act`` kernel indexes the bias by dim 1 on 3-D input, an accident of the
    kernel, not a design choice; rosinality's CPU path cannot run it at all).
    """

    def __init__(self, dim: int, n_layers: int = 4):
        super().__init__()
        self.norm = PixelNorm()
        self.layers = nn.Sequential(*[EqualLinear(dim, dim, lr_mul=0.01, activation="fused_lrelu")
                                      for _ in range(n_layers)])

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        x = self.norm(w)  # [B, k, D], normalised over k
        return self.layers(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class LevelsMapper(nn.Module):
    """Three sub-mappers over the coarse / medium / fine W+ entries: ``[B, L, D] -> [B, L, D]``."""

    def __init__(self, n_latent: int, dim: int):
        super().__init__()
        self.n_latent = n_latent
        self.split = level_split(n_latent)
        self.coarse = Mapper(dim)
        self.medium = Mapper(dim)
        self.fine = Mapper(dim)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        c, m, f = self.split
        return torch.cat([self.coarse(w[:, c]), self.medium(w[:, m]), self.fine(w[:, f])], dim=1)


@dataclass(frozen=True)
class LMConfig:
    """Loss weights and lr from the official ``train_options.py`` (clip 1.0, latent L2 0.8,
    id 0.1, lr 0.5). The official run is 50k steps at batch 2 on a GPU; ``steps`` here is
    CPU-sized (measured in the report) and ``batch`` larger to use the steps well."""

    steps: int = 300
    batch: int = 16
    lr: float = 0.5
    clip_lambda: float = 1.0
    l2_lambda: float = 0.8
    id_lambda: float = 0.1
    n_train: int = 1000  # inverted training faces
    train_seed: int = 90_001  # test-like images drawn away from the evaluation seeds

    @staticmethod
    def from_dict(d: dict) -> "LMConfig":
        return config_from_dict(LMConfig, d, "styleclip-lm config")

    def to_dict(self) -> dict:
        return as_dict(self)


def train_mapper(domain, target: str, cfg: LMConfig, w_train: torch.Tensor, seed: int = 0,
                 desc: str = "styleclip-lm", ddp: bool = False) -> tuple[LevelsMapper, dict]:
    """Train one mapper for ``target`` on ``w_train: [N, L, D]`` (official ``coach.train``).

    ``ddp``: every rank of the torchrun group calls this together and trains the one mapper
    with DistributedDataParallel, each on its slice of the global batch (``cfg.batch`` must
    split evenly over the ranks)."""
    G = domain.generator
    torch.manual_seed(seed)
    mapper = LevelsMapper(G.n_latent, G.style_dim).to(domain.device)
    opt = torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    n_ranks = dist.world_size() if ddp else 1
    if cfg.batch % n_ranks:
        raise ValueError(f"styleclip-lm batch {cfg.batch} does not split evenly over {n_ranks} ranks")
    r = dist.rank() if ddp else 0
    part = slice(r * cfg.batch // n_ranks, (r + 1) * cfg.batch // n_ranks)
    model = mapper
    if n_ranks > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            mapper, device_ids=[domain.device] if domain.device.type == "cuda" else None)
    t = raw_text_embedding(domain, target)
    gen = torch.Generator().manual_seed(seed)
    use_id = cfg.id_lambda > 0 and has_identity(domain)
    history = []
    t0 = time.perf_counter()
    log_every = max(1, cfg.steps // 20)
    with torch.enable_grad(), frozen(*domain_models(domain)):
        for step in progress(range(cfg.steps), desc=desc):
            idx = torch.randint(len(w_train), (cfg.batch,), generator=gen)  # the global batch
            w = w_train[idx[part]].to(domain.device)  # [b, L, D], this rank's slice
            w_hat = w + 0.1 * model(w)  # official coach: w_hat = w + 0.1 * mapper(w)
            x_hat = G.synthesis(w_hat)
            c = clip_loss(domain, x_hat, t).mean()
            l2 = (w_hat - w).square().mean()  # official latent_l2_loss = nn.MSELoss()
            loss = cfg.clip_lambda * c + cfg.l2_lambda * l2
            if use_id:
                with torch.no_grad():
                    ref = loss_identity(domain).embed(G.synthesis(w))
                ide = id_loss(domain, x_hat, ref).mean()
                loss = loss + cfg.id_lambda * ide
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == cfg.steps - 1:
                if n_ranks > 1:  # global-batch values
                    loss, c, l2 = (dist.all_reduce_mean(x.detach()) for x in (loss, c, l2))
                history.append([step, loss.item(), c.item(), l2.item()])
    return mapper.eval(), {"train_seconds": time.perf_counter() - t0, "history": history, "world_size": n_ranks}


class StyleCLIPMapper(EditMethod):
    """StyleCLIP-LM: one latent mapper per target prompt, trained on first use and cached in
    ``work_dir``. ``strength`` is the multiplier m in ``w' = w + m·M(w)`` (official 0.1)."""

    name = "styleclip-lm"
    space = "W+"
    distributed_fit = True  # under torchrun, fit()/fit_prompts() split the mappers over every rank
    strength_name = "multiplier"
    default_strength = 0.1

    def __init__(self, domain, work_dir, seed: int = 0, config: LMConfig | dict | None = None, **options):
        super().__init__(domain, work_dir, seed, **options)
        self.cfg = config if isinstance(config, LMConfig) else LMConfig.from_dict(dict(config or {}))
        self._w_train: torch.Tensor | None = None
        self._mappers: dict[str, LevelsMapper] = {}
        self.train_info: dict[str, dict] = {}

    @property
    def run_dir(self) -> Path:
        G = self.domain.generator
        key = {"config": self.cfg.to_dict(), "seed": self.seed, "n_latent": G.n_latent, "style_dim": G.style_dim}
        return self.work_dir / config_hash(key)

    def fit(self) -> dict:
        """Per-prompt training happens on first use (prompts are not known here); this only
        prepares the inverted training latents (cached)."""
        t0 = time.perf_counter()
        with dist.rank0_first():  # rank 0 inverts and caches, the other ranks load
            self.training_latents()
        return {"fit_seconds": time.perf_counter() - t0, "config": self.cfg.to_dict(),
                "run_dir": str(self.run_dir), "note": "mappers are trained per prompt on first use"}

    def training_latents(self) -> torch.Tensor:
        if self._w_train is None:
            f = self.run_dir / "train_latents.safetensors"
            if f.is_file():
                self._w_train = safetensors.torch.load_file(str(f))["w"].to(self.domain.device)
            else:
                imgs = self.domain.test_images(self.cfg.n_train, self.cfg.train_seed + self.seed).images
                self._w_train = self.domain.invert(imgs)
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_name(f.name + ".tmp")
                safetensors.torch.save_file({"w": self._w_train.detach().cpu().contiguous()}, str(tmp))
                os.replace(tmp, f)
        return self._w_train

    def _files(self, target: str) -> tuple[Path, Path]:
        base = self.run_dir / slug(target)
        return base.with_suffix(".safetensors"), base.with_suffix(".json")

    def mapper_for(self, target: str, ddp: bool = False) -> LevelsMapper:
        """The mapper for ``target`` (loaded from the cache, or trained and saved; ``ddp``:
        trained by all ranks together, saved by rank 0)."""
        target = " ".join(target.split())
        if target in self._mappers:
            return self._mappers[target]
        G = self.domain.generator
        f, meta = self._files(target)
        mapper = LevelsMapper(G.n_latent, G.style_dim).to(self.domain.device)
        if f.is_file() and meta.is_file():
            mapper.load_state_dict(safetensors.torch.load_file(str(f)))
            info = json.loads(meta.read_text())
        else:
            mapper, info = train_mapper(self.domain, target, self.cfg, self.training_latents(), self.seed,
                                        desc=f"styleclip-lm '{target}'", ddp=ddp)
            info = {"target": target, **info}

            def save() -> None:
                f.parent.mkdir(parents=True, exist_ok=True)
                tmp = f.with_name(f.name + ".tmp")
                safetensors.torch.save_file({k: v.detach().cpu().contiguous()
                                             for k, v in mapper.state_dict().items()}, str(tmp))
                os.replace(tmp, f)
                meta.write_text(json.dumps(info, indent=1))

            if ddp:
                dist.on_rank0(save)
            else:
                save()
        self.train_info[target] = info
        self._mappers[target] = mapper.eval()
        return mapper

    def fit_prompts(self, prompts: list[tuple[str, str]]) -> dict:
        """Train (or load) the mappers of all ``prompts`` now; returns seconds per prompt.

        Under torchrun every rank calls this together: whole rounds of one untrained prompt per
        rank are split over the ranks, the rest is trained with DDP by all ranks at once."""
        targets = list(dict.fromkeys(check_prompts(s, t)[1] for s, t in prompts))
        if dist.is_distributed():
            # Rank 0 decides what is untrained, before any rank writes a mapper.
            todo = dist.on_rank0(lambda: [t for t in targets if not all(x.is_file() for x in self._files(t))])
            n = dist.world_size()
            split = len(todo) - len(todo) % n if self.cfg.batch % n == 0 else len(todo)
            for t in dist.shard(todo[:split]):
                self.mapper_for(t)
            for t in todo[split:]:
                self.mapper_for(t, ddp=True)
            dist.barrier()  # every mapper is saved; the other ranks' ones load below
        out = {}
        for t in targets:
            self.mapper_for(t)
            out[t] = self.train_info[t].get("train_seconds", 0.0)
        return out

    @torch.no_grad()
    def edit(self, w_plus, source, target, strength=None):
        w_plus = check_latents(self.domain, w_plus)
        m = self.default_strength if strength is None else float(strength)
        mapper = self.mapper_for(check_prompts(source, target)[1])
        return self.domain.generator.styles(w_plus + m * mapper(w_plus))
