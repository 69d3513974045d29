"""Text-free training of the DeltaMapper (official ``scripts/train.py``), resumable.

Under ``torchrun`` the mapper trains with DistributedDataParallel: every rank draws the same
global batch of random pairs from the same seeded generator and takes its own equal slice of
it (what ``DistributedSampler`` does with a shared seeded permutation), DDP averages the
gradients, so each step follows the global-batch gradient, as in one process, up to float
rounding. Rank 0 builds the pool and writes every file. In one process nothing changes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from deltabench import confighash, integrity, sspace
from deltabench import distributed as dist
from deltabench.checkpoints import safe_torch_load
from deltabench.confighash import Schema, either, versioned
from deltabench.parse import config_from_dict
from deltabench.utils import progress
from deltaedit.data import LatentPool, build_pool, pair_batch
from deltaedit.mapper import DeltaMapper

# What a DeltaMapper is keyed by (deltabench.confighash): clip_input came after the first
# version ("domain" before; None resolves per domain and meant the same there).
DELTAEDIT_SCHEMA = Schema(
    "deltaedit",
    first=(
        "n_generated",
        "n_inverted",
        "steps",
        "batch",
        "lr",
        "l2_lambda",
        "cos_lambda",
        "checkpoint_every",
        "naive",
        "torgb",
    ),
    added=[{"clip_input": either(None, "domain")}],
)
# The key of a DeltaEdit pool (load_or_build_pool): the toRGB styles, then the official CLIP feed,
# came after the first version.
POOL_SCHEMA = Schema(
    "deltaedit.pool", first=("n_generated", "n_inverted", "seed"), added=[{"torgb": False}, {"clip_input": "domain"}]
)


@versioned(DELTAEDIT_SCHEMA)
@dataclass(frozen=True)
class DeltaEditConfig:
    """Training settings. Defaults follow the official ``options/train_options.py`` where it
    fixes them (batch 64, Adam lr 0.5 on lr_mul-0.01 layers, l2 and cos weights 1); pool size
    and steps are scaled to the domain (official: 258k codes, several epochs)."""

    n_generated: int = 10000
    n_inverted: int = 2000
    steps: int = 4000
    batch: int = 64
    lr: float = 0.5
    l2_lambda: float = 1.0
    cos_lambda: float = 1.0
    checkpoint_every: int = 500
    naive: bool = False
    # Edit the toRGB styles too (not in the official model, which maps the non-toRGB channels
    # only). None: the domain decides (``domain.edit_torgb``): False for the real domains
    # (official), True for synthfaces, whose distilled generator keeps colour in its toRGB
    # styles: even the *true* Δs of a hair-colour or background change, restricted to the
    # non-toRGB channels, gives 0 % of red-hair / black-hair / blue-background edits
    # (measured on the default world, 100 faces), so the official layer set cannot edit
    # colour there at all.
    torgb: bool | None = None
    # How the pool's images reach CLIP. "official": as DeltaEdit's generate_codes.py lines
    # 28-29 and 66-68 feed them (Upsample(x7) + AvgPool(size/32) of the [-1, 1] image, no CLIP
    # mean/std), on a domain that has that feed (real domains); "domain": the domain CLIP's own
    # preprocessing (synthfaces). None: the domain decides (``domain.official_clip_input``).
    clip_input: str | None = None

    def __post_init__(self):
        if self.clip_input not in (None, "official", "domain"):
            raise ValueError(
                f"DeltaEditConfig.clip_input must be 'official' or 'domain' (or unset), got {self.clip_input!r}"
            )
        for k, low in (("steps", 1), ("batch", 1), ("checkpoint_every", 1), ("n_generated", 0), ("n_inverted", 0)):
            if getattr(self, k) < low:
                raise ValueError(f"DeltaEditConfig.{k} must be >= {low}, got {getattr(self, k)}")
        if self.n_generated + self.n_inverted < 2:
            raise ValueError(
                f"DeltaEditConfig: the pool needs at least 2 samples to draw pairs, got "
                f"n_generated={self.n_generated} + n_inverted={self.n_inverted}"
            )
        if not self.lr > 0:
            raise ValueError(f"DeltaEditConfig.lr must be > 0, got {self.lr}")

    @staticmethod
    def from_dict(d: dict) -> DeltaEditConfig:
        return config_from_dict(DeltaEditConfig, d, "DeltaEditConfig")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)

    def resolve(self, domain) -> DeltaEditConfig:
        """``torgb=None`` and ``clip_input=None`` replaced by the domain's choices (the resolved
        values are what is hashed)."""
        d = asdict(self)
        if d["torgb"] is None:
            d["torgb"] = bool(domain.edit_torgb)
        if d["clip_input"] is None:
            d["clip_input"] = "official" if domain.official_clip_input else "domain"
        if d["clip_input"] == "official" and not domain.official_clip_input:
            raise ValueError(
                f"DeltaEditConfig.clip_input='official': domain {domain.name!r} "
                f"has no official CLIP feed (only the real domains do); use 'domain' or leave it unset"
            )
        return self if d == asdict(self) else DeltaEditConfig.from_dict(d)

    @property
    def official_clip(self) -> bool:
        return self.clip_input == "official"


def delta_loss(
    pred: torch.Tensor, target: torch.Tensor, l2_lambda: float = 1.0, cos_lambda: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L = λ2·MSE(Δs', Δs) + λcos·(1 − mean cos(Δs', Δs)) (official ``scripts/train.py``)."""
    l2 = torch.nn.functional.mse_loss(pred, target)
    cos = 1 - torch.nn.functional.cosine_similarity(pred, target, dim=-1).mean()
    return l2_lambda * l2 + cos_lambda * cos, l2, cos


def load_or_build_pool(domain, cfg: DeltaEditConfig, seed: int, pool_dir: Path) -> LatentPool:
    """The pool depends only on its size and seed, so DeltaEdit and its naive variant share it."""
    cfg = cfg.resolve(domain)
    key = POOL_SCHEMA.hashed(
        {
            "n_generated": cfg.n_generated,
            "n_inverted": cfg.n_inverted,
            "seed": seed,
            "torgb": bool(cfg.torgb),
            "clip_input": cfg.clip_input,
        }
    )
    pool_dir.mkdir(parents=True, exist_ok=True)
    stem = (
        f"pool-{cfg.n_generated}-{cfg.n_inverted}-{seed}"
        + ("-torgb" if cfg.torgb else "")
        + ("-official" if cfg.official_clip else "")
    )
    f, meta = pool_dir / f"{stem}.safetensors", pool_dir / f"{stem}.json"
    if f.is_file() and meta.is_file():
        got = integrity.read_json(meta, "a DeltaEdit pool's key")
        confighash.check_record(got, str(meta))
        if confighash.unstamped(got) == key:
            return LatentPool.from_state_dict(integrity.load_tensors(f))
    pool = build_pool(
        domain, cfg.n_generated, cfg.n_inverted, seed, torgb=bool(cfg.torgb), official_clip=cfg.official_clip
    )
    integrity.save_tensors(pool.state_dict(), f)
    integrity.atomic_write_text(meta, json.dumps(confighash.stamp(key, POOL_SCHEMA.name)))
    return pool


def train_deltamapper(
    domain, cfg: DeltaEditConfig, out_dir: Path, seed: int = 0, log=None, pool_dir: Path | None = None
) -> tuple[DeltaMapper, dict]:
    """Train (or resume, or load a finished) DeltaMapper in ``out_dir``; never calls a text encoder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg.resolve(domain)
    G = domain.generator
    mapper = DeltaMapper(G.slayout, clip_dim=_clip_dim(domain), torgb=cfg.torgb).to(domain.device)
    final, info_f = out_dir / "mapper.safetensors", out_dir / "train.json"
    want = {"config": cfg.to_dict(), "seed": seed, "s_dim": sspace.edit_width(G.slayout, cfg.torgb)}
    if final.is_file() and info_f.is_file():
        info = integrity.read_json(info_f, "a DeltaMapper's training record")
        confighash.check_record(info, str(info_f))
        info = confighash.unstamped(info)  # the versions live in the file, not in the fit's record
        if {k: info.get(k) for k in want} == want:
            mapper.load_state_dict(integrity.load_tensors(final))
            return mapper.eval(), info
        raise ValueError(
            f"{out_dir} holds a DeltaMapper trained with other settings "
            f"({info.get('config')}, seed {info.get('seed')}); use another directory or delete it"
        )

    t0 = time.perf_counter()
    with dist.rank0_first():  # rank 0 builds and saves the pool, the others load it
        pool = load_or_build_pool(domain, cfg, seed, Path(pool_dir) if pool_dir else out_dir)
    pool = LatentPool(pool.s.to(domain.device), pool.clip.to(domain.device), pool.n_generated)
    pool_seconds = time.perf_counter() - t0

    torch.manual_seed(seed)
    mapper = DeltaMapper(G.slayout, clip_dim=_clip_dim(domain), torgb=cfg.torgb).to(domain.device)
    opt = torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed)
    n_ranks = dist.world_size()
    if cfg.batch % n_ranks:
        raise ValueError(
            f"DeltaMapper batch {cfg.batch} does not split evenly over {n_ranks} ranks; "
            f"give a batch that is a multiple of {n_ranks} (--batch)"
        )
    part = slice(dist.rank() * cfg.batch // n_ranks, (dist.rank() + 1) * cfg.batch // n_ranks)
    model = mapper
    if n_ranks > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            mapper, device_ids=[domain.device] if domain.device.type == "cuda" else None
        )
    step, history = 0, []
    # Seconds spent by earlier, interrupted invocations (pool and steps), so that a resumed
    # fit reports what the whole fit cost, not only its last part.
    seconds_before = 0.0
    ckpt = out_dir / "checkpoint.pt"
    if ckpt.is_file():
        state = safe_torch_load(ckpt, "a DeltaMapper training checkpoint")
        if state.get("want") == json.dumps(want, sort_keys=True):
            mapper.load_state_dict(state["mapper"])
            opt.load_state_dict(state["optim"])
            gen.set_state(state["gen"])
            step, history = int(state["step"]), list(state["history"])
            seconds_before = float(state.get("seconds", 0.0))
    t1 = time.perf_counter()
    bar = progress(
        range(step, cfg.steps), desc="deltaedit" + ("-naive" if cfg.naive else ""), initial=step, total=cfg.steps
    )
    log_every = max(1, min(50, cfg.steps // 10))
    mapper.train()
    for step in bar:
        s1, cond, ds = pair_batch(pool, cfg.batch, gen, naive=cfg.naive)  # the global batch
        s1, cond, ds = s1[part], cond[part], ds[part]  # this rank's slice (all of it in one process)
        loss, l2, cos = delta_loss(model(s1, cond), ds, cfg.l2_lambda, cfg.cos_lambda)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            loss, l2, cos = (dist.all_reduce_mean(x.detach()) for x in (loss, l2, cos))  # global-batch values
            history.append([step, loss.item(), l2.item(), cos.item()])
            bar.set_postfix(loss=f"{loss.item():.4f}", cos=f"{1 - cos.item():.3f}")
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps and dist.is_main():
            state = {
                "mapper": mapper.state_dict(),
                "optim": opt.state_dict(),
                "gen": gen.get_state(),
                "step": step + 1,
                "history": history,
                "seconds": seconds_before + pool_seconds + time.perf_counter() - t1,
                "want": json.dumps(want, sort_keys=True),
            }
            integrity.atomic_write(ckpt, lambda tmp: torch.save(state, tmp))
    mapper.eval()
    with torch.no_grad():
        s1, cond, ds = pair_batch(pool, 1024, torch.Generator().manual_seed(seed + 1), naive=cfg.naive)
        _, l2, cos = delta_loss(mapper(s1, cond), ds)
    train_seconds = time.perf_counter() - t1
    info = {
        **want,
        "pool_seconds": pool_seconds,
        "train_seconds": train_seconds,
        "fit_seconds": seconds_before + pool_seconds + train_seconds,
        "resumed_seconds": seconds_before,
        "steps_per_second": (cfg.steps - history[0][0] if history else cfg.steps) / max(time.perf_counter() - t1, 1e-9),
        "final_mse": float(l2),
        "final_cos": 1 - float(cos),
        "pool_size": len(pool),
        "world_size": n_ranks,
        "history": history,
    }

    def save() -> None:
        integrity.save_tensors(mapper.state_dict(), final)
        integrity.atomic_write_text(info_f, json.dumps(confighash.stamp(info, DELTAEDIT_SCHEMA.name), indent=1))
        if ckpt.exists():
            ckpt.unlink()

    dist.on_rank0(save)
    return mapper, info


def _clip_dim(domain) -> int:
    with torch.no_grad():
        x = torch.zeros(1, 3, domain.resolution, domain.resolution, device=domain.device)
        return int(domain.clip.encode_image(x).shape[-1])
