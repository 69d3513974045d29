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
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from baselines.common import (
    check_latents,
    check_prompts,
    clip_loss,
    config_from_dict,
    config_hash,
    domain_models,
    frozen,
    has_identity,
    id_loss,
    loss_identity,
    raw_text_embedding,
    slug,
)
from deltabench import confighash, integrity
from deltabench import distributed as dist
from deltabench.confighash import Schema, either, versioned
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
        self.layers = nn.Sequential(
            *[EqualLinear(dim, dim, lr_mul=0.01, activation="fused_lrelu") for _ in range(n_layers)]
        )

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


# What a mapper cache is keyed by (deltabench.confighash): the released mappers, then the
# optimiser came after the first version (none and Adam before).
LM_SCHEMA = Schema(
    "styleclip-lm",
    first=("steps", "batch", "lr", "clip_lambda", "l2_lambda", "id_lambda", "n_train", "train_seed"),
    added=[{"checkpoints": either(None, {})}, {"optimizer": "adam"}],
)


@versioned(LM_SCHEMA)
@dataclass(frozen=True)
class LMConfig:
    """Loss weights and lr from the official ``train_options.py`` (clip 1.0, latent L2 0.8,
    id 0.1, lr 0.5). The official run is 50k steps at batch 2 with the Ranger optimiser on a
    GPU (``mapper/options/train_options.py`` lines 22, 28, 39; ``coach.py`` lines 174-180): the
    real domains default to exactly that (``RealDomain.method_defaults``); the class defaults
    are synthfaces' (``steps`` CPU-sized, measured in the report, ``batch`` larger to use the
    steps well, Adam)."""

    steps: int = 300
    batch: int = 16
    lr: float = 0.5
    clip_lambda: float = 1.0
    l2_lambda: float = 0.8
    id_lambda: float = 0.1
    n_train: int = 1000  # inverted training faces
    train_seed: int = 90_001  # test-like images drawn away from the evaluation seeds
    # target prompt -> a released StyleCLIP mapper file (mapper/pretrained/*.pt), loaded with
    # load_official_mapper and used for that prompt instead of training one.
    checkpoints: dict[str, str] | None = None
    # "ranger": the official optimiser (StyleCLIP mapper/training/ranger.py, Ranger 20.4.11:
    # RAdam + Lookahead + gradient centralisation), :func:`ranger`; "adam": torch's Adam.
    optimizer: str = "adam"

    def __post_init__(self):
        if self.optimizer not in ("adam", "ranger"):
            raise ValueError(f"LMConfig.optimizer must be 'adam' or 'ranger' (official), got {self.optimizer!r}")
        if self.checkpoints is not None:
            if not isinstance(self.checkpoints, dict) or not all(
                isinstance(k, str) and k.strip() and isinstance(v, (str, Path)) for k, v in self.checkpoints.items()
            ):
                raise ValueError(
                    f"LMConfig.checkpoints must map target prompts to mapper file paths, got {self.checkpoints!r}"
                )
            object.__setattr__(
                self, "checkpoints", {" ".join(k.split()): str(v) for k, v in sorted(self.checkpoints.items())}
            )

    @staticmethod
    def from_dict(d: dict) -> LMConfig:
        return config_from_dict(LMConfig, d, "styleclip-lm config")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)


def ranger(params, lr: float):
    """The official optimiser of StyleCLIP's mapper training: ``Ranger(params, lr)`` of
    ``mapper/training/ranger.py`` (version 20.4.11, defaults alpha 0.5, k 6, N_sma_threshhold 5,
    betas (0.95, 0.999), eps 1e-5, weight_decay 0, use_gc=True, gc_conv_only=False; created in
    ``mapper/training/coach.py`` line 179). The maintained PyPI package ``pytorch-ranger``
    (``pytorch_ranger.Ranger``, version 9.3.19 of the same code) has the same RAdam + Lookahead
    step without gradient centralisation; 20.4.11 only adds, before the moments (its lines
    116-118), ``grad -= grad.mean(dim=1..)`` for every gradient with more than one dimension,
    which :class:`_CentralisedRanger` does before calling that step."""
    try:
        from pytorch_ranger import Ranger
    except ImportError:
        raise ImportError(
            "styleclip-lm optimizer 'ranger' needs the pytorch-ranger package: pip install pytorch-ranger"
        ) from None

    class _CentralisedRanger(Ranger):
        @torch.no_grad()
        def step(self, closure=None):
            import warnings

            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and p.grad.dim() > 1:  # gc_gradient_threshold 1 (conv + fc)
                        p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.grad.dim())), keepdim=True))
            with warnings.catch_warnings():  # its add_/addcmul_ use the deprecated scalar-first overloads
                warnings.simplefilter("ignore", UserWarning)
                return super().step(closure)

    return _CentralisedRanger(params, lr=lr)


def train_mapper(
    domain,
    target: str,
    cfg: LMConfig,
    w_train: torch.Tensor,
    seed: int = 0,
    desc: str = "styleclip-lm",
    ddp: bool = False,
) -> tuple[LevelsMapper, dict]:
    """Train one mapper for ``target`` on ``w_train: [N, L, D]`` (official ``coach.train``).

    ``ddp``: every rank of the torchrun group calls this together and trains the one mapper
    with DistributedDataParallel, each on its slice of the global batch (``cfg.batch`` must
    split evenly over the ranks)."""
    G = domain.generator
    torch.manual_seed(seed)
    mapper = LevelsMapper(G.n_latent, G.style_dim).to(domain.device)
    opt = (
        ranger(mapper.parameters(), lr=cfg.lr)
        if cfg.optimizer == "ranger"
        else torch.optim.Adam(mapper.parameters(), lr=cfg.lr)
    )
    n_ranks = dist.world_size() if ddp else 1
    if cfg.batch % n_ranks:
        raise ValueError(f"styleclip-lm batch {cfg.batch} does not split evenly over {n_ranks} ranks")
    r = dist.rank() if ddp else 0
    part = slice(r * cfg.batch // n_ranks, (r + 1) * cfg.batch // n_ranks)
    model = mapper
    if n_ranks > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            mapper, device_ids=[domain.device] if domain.device.type == "cuda" else None
        )
    t = raw_text_embedding(domain, target)
    gen = torch.Generator().manual_seed(seed)
    use_id = cfg.id_lambda > 0 and has_identity(domain)
    history = []
    t0 = time.perf_counter()
    log_every = max(1, cfg.steps // 20)
    with torch.enable_grad(), frozen(*domain_models(domain, use_id)):
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
    config_class = LMConfig
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
        # ``checkpoints`` is left out: the trained mappers do not depend on it, and a released
        # mapper is read from its own file, never from or into this cache.
        cfg = {k: v for k, v in self.cfg.to_dict().items() if k != "checkpoints"}
        key = {"config": cfg, "seed": self.seed, "n_latent": G.n_latent, "style_dim": G.style_dim}
        return self.work_dir / config_hash(key)

    def fit(self) -> dict:
        """Per-prompt training happens on first use (prompts are not known here); this only
        prepares the inverted training latents (cached)."""
        t0 = time.perf_counter()
        with dist.rank0_first():  # rank 0 inverts and caches, the other ranks load
            self.training_latents()
        return {
            "fit_seconds": time.perf_counter() - t0,
            "config": self.cfg.to_dict(),
            "run_dir": str(self.run_dir),
            "note": "mappers are trained per prompt on first use",
        }

    def training_latents(self) -> torch.Tensor:
        if self._w_train is None:
            f = self.run_dir / "train_latents.safetensors"
            if f.is_file():
                self._w_train = integrity.load_tensors(f)["w"].to(self.domain.device)
            else:
                # the domain's training images, never its test images (deltabench.real: train_images=DIR)
                imgs = self.domain.train_images(self.cfg.n_train, self.cfg.train_seed + self.seed)
                self._w_train = imgs.invert(self.domain)
                integrity.save_tensors({"w": self._w_train}, f)
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
        if target in (self.cfg.checkpoints or {}):  # a released mapper instead of training
            return _use_released_mapper(self, target, self.cfg.checkpoints[target])
        G = self.domain.generator
        f, meta = self._files(target)
        mapper = LevelsMapper(G.n_latent, G.style_dim).to(self.domain.device)
        if f.is_file() and meta.is_file():
            mapper.load_state_dict(integrity.load_tensors(f))
            info = integrity.read_json(meta, f"the styleclip-lm mapper record of {target!r}")
            confighash.check_record(info, str(meta))
            info = confighash.unstamped(info)  # the versions live in the file only
        else:
            mapper, info = train_mapper(
                self.domain,
                target,
                self.cfg,
                self.training_latents(),
                self.seed,
                desc=f"styleclip-lm '{target}'",
                ddp=ddp,
            )
            info = {"target": target, **info}

            def save() -> None:
                integrity.save_tensors(mapper.state_dict(), f)
                integrity.atomic_write_text(meta, json.dumps(confighash.stamp(info, LM_SCHEMA.name), indent=1))

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
            todo = dist.on_rank0(
                lambda: [
                    t
                    for t in targets
                    if t not in (self.cfg.checkpoints or {}) and not all(x.is_file() for x in self._files(t))
                ]
            )
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


# -- released StyleCLIP mappers ------------------------------------------------------------------
# Official file layout (orpatashnik/StyleCLIP mapper/): training/coach.py ``__get_save_dict``
# saves ``{'state_dict': StyleCLIPMapper.state_dict(), 'opts': vars(opts)}``; the state dict has
# ``mapper.*`` (styleclip_mapper.py ``self.mapper``) and ``decoder.*`` (the 1024 px StyleGAN2)
# keys. latent_mappers.py ``LevelsMapper`` holds ``course_mapping`` (sic), ``medium_mapping``
# and ``fine_mapping``, each ``Mapper`` = ``nn.Sequential(PixelNorm(), 4 x EqualLinear)``, so
# its linear layers are ``mapping.1`` .. ``mapping.4``; a sub-mapper switched off
# (``--no_fine_mapper`` etc.) has no keys and outputs zeros. ``forward`` splits W+ at the fixed
# entries 4 and 8 (``x[:, :4]``, ``x[:, 4:8]``, ``x[:, 8:]``).
OFFICIAL_LM_GROUPS = (("coarse", "course_mapping"), ("medium", "medium_mapping"), ("fine", "fine_mapping"))
OFFICIAL_LM_SPLIT = (4, 8)
_LM_WHAT = "a StyleCLIP latent mapper checkpoint (mapper/training/coach.py: 'state_dict' and 'opts')"


def load_official_mapper(path: str | Path, map_location: str | torch.device = "cpu") -> LevelsMapper:
    """A released StyleCLIP latent mapper (``mapper/pretrained/<edit>.pt``) as a :class:`LevelsMapper`.

    Called on ``w [B, n_latent, 512]`` it equals the official ``LevelsMapper.forward`` (the
    edit is ``w + 0.1 * mapper(w)``, official ``mapper/scripts/inference.py`` ``run_on_batch``).
    ``n_latent`` is read from the file's decoder (or ``opts['stylegan_size']``; 18 for the
    released 1024 px FFHQ mappers); the W+ split is the official 0-3 / 4-7 / 8-end. A sub-mapper
    missing from the file (trained with ``--no_{coarse,medium,fine}_mapper``) gets zero
    weights, so it outputs exactly zeros as the official one does. ``mapper.official_info``
    holds the file's ``description``, groups and size.

    Read with ``torch.load(weights_only=True)`` (``opts`` is a plain dict of argparse values;
    an ``argparse.Namespace`` is allowed too). A file of another kind (a DeltaEdit checkpoint,
    a generator, a StyleSpace or single mapper) raises :class:`CheckpointError` naming what
    was expected and found.
    """
    import argparse

    from deltabench.checkpoints import CheckpointError, safe_torch_load

    obj = safe_torch_load(path, _LM_WHAT, allow=[argparse.Namespace], map_location=map_location)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        found = (
            ", ".join(repr(k) for k in sorted(map(str, obj))[:6])
            if isinstance(obj, dict)
            else f"a {type(obj).__name__}"
        )
        hint = ""
        if isinstance(obj, dict) and any(str(k).startswith("sm_coarse.") for k in obj):
            hint = " (this is a DeltaEdit checkpoint such as net_face.pth: use deltaedit.load_official_checkpoint)"
        elif isinstance(obj, dict) and "g_ema" in obj:
            hint = " (this is a StyleGAN2 generator checkpoint)"
        raise CheckpointError(f"{path}: not {_LM_WHAT}: expected keys 'opts', 'state_dict'; found {found}{hint}")
    sd = obj["state_dict"]
    opts = obj.get("opts") or {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, dict):
        raise CheckpointError(f"{path}: 'opts' should be a dict, found {type(opts).__name__}")
    mkeys = [k for k in sd if str(k).startswith("mapper.")]
    if not mkeys:
        raise CheckpointError(
            f"{path}: not {_LM_WHAT}: its state_dict has no 'mapper.' keys (found {sorted(map(str, sd))[:4]})"
        )
    if opts.get("work_in_stylespace") or any(k.startswith("mapper.mapper_") for k in mkeys):
        raise CheckpointError(
            f"{path}: a StyleSpace mapper (work_in_stylespace, keys mapper.mapper_<i>.*); "
            "styleclip-lm edits W+ and loads the W+ LevelsMapper only"
        )
    if opts.get("mapper_type", "LevelsMapper") != "LevelsMapper" or any(k.startswith("mapper.mapping.") for k in mkeys):
        raise CheckpointError(
            f"{path}: a {opts.get('mapper_type', 'SingleMapper')} (one mapper over all W+ "
            "entries); deltabench loads the official LevelsMapper only"
        )
    weights, present, dim = {}, [], None
    for ours, official in OFFICIAL_LM_GROUPS:
        pre = f"mapper.{official}.mapping."
        have = {k[len(pre) :]: sd[k] for k in mkeys if k.startswith(pre)}
        want = [f"{i}.{p}" for i in range(1, 5) for p in ("weight", "bias")]
        off = opts.get(f"no_{ours}_mapper")
        if not have:
            if off is False:
                raise CheckpointError(f"{path}: opts say the {ours} mapper is on, but there are no '{pre}*' keys")
            continue
        if off:
            raise CheckpointError(f"{path}: opts say no_{ours}_mapper, but the file has '{pre}*' keys")
        if sorted(have) != sorted(want):
            raise CheckpointError(
                f"{path}: not {_LM_WHAT}: expected keys {pre}{{1..4}}.{{weight,bias}}, "
                f"found {pre}{{{', '.join(sorted(have))}}}"
            )
        d = int(have["1.weight"].shape[1]) if dim is None else dim
        for i in range(1, 5):
            for p, shape in (("weight", (d, d)), ("bias", (d,))):
                if tuple(have[f"{i}.{p}"].shape) != shape:
                    raise CheckpointError(
                        f"{path}: {pre}{i}.{p} has shape {list(have[f'{i}.{p}'].shape)}, "
                        f"expected {list(shape)} (latent width {d})"
                    )
        dim = d
        present.append(ours)
        weights.update(
            {f"{ours}.layers.{i - 1}.{p}": have[f"{i}.{p}"].float() for i in range(1, 5) for p in ("weight", "bias")}
        )
    if not present:
        raise CheckpointError(f"{path}: no sub-mapper keys (mapper.course_mapping / medium_mapping / fine_mapping)")
    # n_latent from the decoder (rosinality Generator: log_size - 2 to_rgbs, 2 * log_size - 2
    # W+ entries), else from opts['stylegan_size'] (official default 1024).
    n_rgb = len({k.split(".")[2] for k in sd if str(k).startswith("decoder.to_rgbs.")})
    size_opts = opts.get("stylegan_size")
    size = 2 ** (n_rgb + 2) if n_rgb else int(size_opts or 1024)
    if n_rgb and size_opts is not None and int(size_opts) != size:
        raise CheckpointError(f"{path}: opts say stylegan_size {size_opts}, but its decoder is {size} px")
    n_latent = 2 * size.bit_length() - 4  # 2 * log2(size) - 2
    if n_latent <= OFFICIAL_LM_SPLIT[1]:
        raise CheckpointError(
            f"{path}: a {size} px generator has {n_latent} W+ entries; the official "
            f"LevelsMapper needs more than {OFFICIAL_LM_SPLIT[1]}"
        )
    mapper = LevelsMapper(n_latent, dim)
    a, b = OFFICIAL_LM_SPLIT
    mapper.split = (slice(0, a), slice(a, b), slice(b, n_latent))  # the official split (18: as level_split)
    for ours, _ in OFFICIAL_LM_GROUPS:
        if ours not in present:  # official: zeros_like; all-zero weights give exactly 0
            weights.update(
                {
                    f"{ours}.layers.{i}.{p}": torch.zeros(dim, dim) if p == "weight" else torch.zeros(dim)
                    for i in range(4)
                    for p in ("weight", "bias")
                }
            )
    mapper.load_state_dict(weights, strict=True)
    mapper.official_info = {
        "description": opts.get("description"),
        "groups": present,
        "stylegan_size": size,
        "n_latent": n_latent,
    }
    return mapper.eval()


def _use_released_mapper(method: StyleCLIPMapper, target: str, path: str) -> LevelsMapper:
    """``StyleCLIPMapper.mapper_for`` with ``LMConfig.checkpoints[target]``: load, check against
    the domain's generator, record where it came from (never cached: the file is the mapper)."""
    from deltabench.checkpoints import CheckpointError
    from deltabench.weights import sha256_file

    G = method.domain.generator
    t0 = time.perf_counter()
    mapper = load_official_mapper(path)
    info = mapper.official_info
    if (info["n_latent"], mapper.coarse.layers[0].weight.shape[1]) != (G.n_latent, G.style_dim):
        raise CheckpointError(
            f"{path}: a mapper for a {info['stylegan_size']} px generator "
            f"({info['n_latent']} W+ entries of width {mapper.coarse.layers[0].weight.shape[1]}); "
            f"the domain's generator has {G.n_latent} of width {G.style_dim}"
        )
    method.train_info[target] = {
        "target": target,
        "checkpoint": str(path),
        "sha256": sha256_file(Path(path)),
        "description": info["description"],
        "groups": info["groups"],
        "train_seconds": 0.0,
        "load_seconds": time.perf_counter() - t0,
    }
    method._mappers[target] = mapper.to(method.domain.device).eval()
    return method._mappers[target]
