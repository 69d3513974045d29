"""The world's components: how each is built from its config section and trained.

Each entry knows its config section's shape, how to build an untrained module (for
loading weights), and how to train it given the components already built. The generator
and encoder sections are ``{"model": ..., "train": ...}``; the CLIP, identity and oracle
sections are their owners' config dicts (model and schedule in one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from deltabench.config import SECTION_SCHEMA, WorldConfig, as_phases
from deltabench.confighash import versions

Train = Callable[[WorldConfig, dict], "tuple[nn.Module, dict, dict]"]
Build = Callable[[WorldConfig, dict], nn.Module]


Refine = Callable[[WorldConfig, nn.Module, dict, dict], "tuple[nn.Module, dict, dict]"]


@dataclass(frozen=True)
class ComponentSpec:
    name: str
    build: Build  # (cfg, extra) -> untrained module
    train: Train  # (cfg, built components) -> (module, stats, extra)
    save_dtype: torch.dtype | None  # None keeps the trained dtype
    # (cfg, base module, base extra, built components) -> (module, stats, extra): continue training
    # the base stage (the same config without its "refine" section) with the refine schedule.
    refine: Refine | None = None


def _split(section: dict, what: str) -> tuple[dict, dict]:
    unknown = set(section) - {"model", "train", "refine"}
    if unknown:
        raise ValueError(
            f"world config section {what!r}: unknown keys {sorted(unknown)}; "
            "expected 'model', 'train' and optionally 'refine'"
        )
    return section.get("model", {}), section.get("train", {})


def _refine_seed(cfg: WorldConfig, name: str) -> int:
    # A seed of its own per phase: a refine phase draws fresh batches, not those of the stage
    # it continues (phase k: stage seed + 500 k; the single-phase seed is unchanged).
    return cfg.stage_seed(name) + 500 * len(cfg.refine_phases(name))


# --- generator ---------------------------------------------------------------------------


def _gen_cfgs(cfg: WorldConfig):
    from deltabench.models.stylegan2 import GeneratorConfig
    from deltabench.world.train_generator import DistillConfig

    m, t = _split(cfg.section("generator"), "generator")
    return GeneratorConfig.from_dict(m), DistillConfig.from_dict(t)


def _gen_build(cfg: WorldConfig, extra: dict) -> nn.Module:
    from deltabench.models.stylegan2 import build_generator

    return build_generator(_gen_cfgs(cfg)[0], cfg.resolution)


def _gen_train(cfg: WorldConfig, models: dict):
    from deltabench.world.train_generator import train_generator

    gcfg, tcfg = _gen_cfgs(cfg)
    G, stats = train_generator(gcfg, tcfg, cfg.resolution, cfg.stage_seed("generator"), kind=cfg.kind)
    latent_avg = stats.pop("latent_avg", None)
    return G, stats, {"latent_avg": latent_avg}


def _gen_refine(cfg: WorldConfig, base: nn.Module, base_extra: dict, models: dict):
    from deltabench.world.train_generator import DistillConfig, train_generator

    gcfg, _ = _gen_cfgs(cfg)
    rcfg = DistillConfig.from_dict(cfg.refine("generator"))
    G, stats = train_generator(gcfg, rcfg, cfg.resolution, _refine_seed(cfg, "generator"), init=base, kind=cfg.kind)
    latent_avg = stats.pop("latent_avg", None)
    return G, stats, {"latent_avg": latent_avg}


# --- encoder -----------------------------------------------------------------------------


def _enc_cfgs(cfg: WorldConfig):
    from deltabench.models.encoder import EncoderConfig
    from deltabench.world.train_encoder import EncoderTrainConfig

    m, t = _split(cfg.section("encoder"), "encoder")
    return EncoderConfig.from_dict(m), EncoderTrainConfig.from_dict(t)


def _enc_build(cfg: WorldConfig, extra: dict) -> nn.Module:
    from deltabench.models.encoder import build_encoder

    return build_encoder(_enc_cfgs(cfg)[0], cfg.resolution)


def _enc_train(cfg: WorldConfig, models: dict):
    from deltabench.world.train_encoder import train_encoder

    ecfg, tcfg = _enc_cfgs(cfg)
    E, stats = train_encoder(ecfg, tcfg, models["generator"], cfg.stage_seed("encoder"), kind=cfg.kind)
    return E, stats, {}


# --- clip --------------------------------------------------------------------------------


def _clip_cfg(cfg: WorldConfig, phase: str = "base"):
    return _clip_phase(cfg.section("clip"), phase, cfg.kind)


def _clip_phase(section: dict, phase: str = "base", kind: str | None = None):
    """The CLIP section's schedule; ``phase='refine'``: its ``refine`` phase, i.e. the base
    keys with the refine keys laid over them (the model must stay the base's)."""
    from deltabench.world.train_clip import ClipTrainConfig

    d = dict(section)
    refine = d.pop("refine", None)
    if phase == "refine":
        if refine is None:
            raise ValueError("world config section 'clip' has no 'refine' phase")
        refine = as_phases(refine, "world config section 'clip'")[-1]  # this stage trains the last
        if "model" in refine:
            raise ValueError(
                "world config section 'clip': a 'refine' phase continues the base model, "
                "it cannot change 'model'; remove 'model' from 'refine'"
            )
        d = {**d, **refine}
    return ClipTrainConfig.from_dict(d, kind)


def _clip_build(cfg: WorldConfig, extra: dict) -> nn.Module:
    from deltabench.models.clip import WordTokenizer, build_clip
    from deltabench.world.train_clip import world_tokenizer

    model = _clip_cfg(cfg).model
    tok = (
        WordTokenizer.from_dict(extra["tokenizer"])
        if "tokenizer" in extra
        else world_tokenizer(model.context_length, cfg.kind)
    )
    return build_clip(model, cfg.resolution, tok)


def _clip_train(cfg: WorldConfig, models: dict):
    from deltabench.world.train_clip import train_clip

    clip, stats = train_clip(_clip_cfg(cfg), cfg.resolution, cfg.stage_seed("clip"), kind=cfg.kind)
    return clip, stats, {"tokenizer": clip.tokenizer.to_dict()}


def _clip_refine(cfg: WorldConfig, base: nn.Module, base_extra: dict, models: dict):
    from deltabench.world.train_clip import train_clip

    clip, stats = train_clip(
        _clip_cfg(cfg, "refine"), cfg.resolution, _refine_seed(cfg, "clip"), init=base, kind=cfg.kind
    )
    return clip, stats, {"tokenizer": clip.tokenizer.to_dict()}


# --- identity and oracle -----------------------------------------------------------------


def _id_build(cfg: WorldConfig, extra: dict) -> nn.Module:
    from deltabench.models.identity import IdentityConfig, build_identity

    return build_identity(IdentityConfig.from_dict(cfg.section("identity")), cfg.resolution)


def _id_train(cfg: WorldConfig, models: dict):
    from deltabench.models.identity import IdentityConfig
    from deltabench.world.train_identity import train_identity

    net, stats = train_identity(
        IdentityConfig.from_dict(cfg.section("identity")), cfg.resolution, cfg.stage_seed("identity"), kind=cfg.kind
    )
    return net, stats, {}


def _or_build(cfg: WorldConfig, extra: dict) -> nn.Module:
    from deltabench.models.oracle import OracleConfig
    from deltabench.world.train_oracle import world_oracle

    return world_oracle(OracleConfig.from_dict(cfg.section("oracle")), cfg.resolution, cfg.kind)


def _or_train(cfg: WorldConfig, models: dict):
    from deltabench.models.oracle import OracleConfig
    from deltabench.world.train_oracle import train_oracle

    net, stats = train_oracle(
        OracleConfig.from_dict(cfg.section("oracle")), cfg.resolution, cfg.stage_seed("oracle"), kind=cfg.kind
    )
    return net, stats, {}


# fp16 storage halves the shipped size; every card number is measured after the fp16
# round trip (build.py reloads what it saved), so a loss of quality would show there.
COMPONENT_SPECS: dict[str, ComponentSpec] = {
    "generator": ComponentSpec("generator", _gen_build, _gen_train, torch.float16, refine=_gen_refine),
    "encoder": ComponentSpec("encoder", _enc_build, _enc_train, torch.float16),
    "clip": ComponentSpec("clip", _clip_build, _clip_train, torch.float16, refine=_clip_refine),
    "identity": ComponentSpec("identity", _id_build, _id_train, torch.float16),
    "oracle": ComponentSpec("oracle", _or_build, _or_train, torch.float16),
}


# The schemas of the sections' owners (deltabench.confighash), recorded in a built world's manifest.
SECTION_SCHEMAS: tuple[str, ...] = (
    "world.generator.model",
    "world.generator.train",
    "world.encoder.model",
    "world.encoder.train",
    "world.clip",
    "world.clip.model",
    "world.identity",
    "world.oracle",
)
_SECTION_OWNERS = (
    "deltabench.models.stylegan2",
    "deltabench.models.encoder",
    "deltabench.models.clip",
    "deltabench.models.identity",
    "deltabench.models.oracle",
    "deltabench.world.train_generator",
    "deltabench.world.train_encoder",
    "deltabench.world.train_clip",
)


def schema_versions() -> dict[str, int]:
    """``{schema: version}`` of everything a world's hashes depend on (for its cache records)."""
    import importlib

    from deltabench.config import STAGE_SCHEMA, WORLD_SCHEMA

    for owner in _SECTION_OWNERS:  # each owner declares its schema on import
        importlib.import_module(owner)

    return versions(WORLD_SCHEMA.name, STAGE_SCHEMA.name, SECTION_SCHEMA.name, *SECTION_SCHEMAS)


def _resolve_split(name: str, section: dict, model_cls, train_cls) -> dict:
    m, t = _split(section, name)
    out = {"model": model_cls.from_dict(m).to_dict(), "train": train_cls.from_dict(t).to_dict()}
    if "refine" in section:  # absent (not empty) when unused (SECTION_SCHEMA: hashed whenever given)
        out["refine"] = _map_phases(section["refine"], lambda p: train_cls.from_dict(p).to_dict())
    return SECTION_SCHEMA.present(out)


def _map_phases(refine, fn):
    """``fn`` over a ``refine`` value: one phase (dict) or a list of phases; a one-phase list is
    written as its dict, so both spellings hash (and cache) alike."""
    out = [fn(p) for p in as_phases(refine, "world config")]
    return out[0] if len(out) == 1 else out


def resolve_sections(cfg: WorldConfig) -> WorldConfig:
    """Every section parsed by its owner and written back with all defaults filled in.

    The config hash is taken over this resolved form, so a changed default in code changes
    the hash (and forces a rebuild) instead of silently loading weights trained otherwise.
    """
    from deltabench.models.clip import ClipConfig  # noqa: F401 - parsed inside ClipTrainConfig
    from deltabench.models.encoder import EncoderConfig
    from deltabench.models.identity import IdentityConfig
    from deltabench.models.oracle import OracleConfig
    from deltabench.models.stylegan2 import GeneratorConfig
    from deltabench.world.kind import get_kind
    from deltabench.world.train_encoder import EncoderTrainConfig
    from deltabench.world.train_generator import DistillConfig

    kind = get_kind(cfg.kind)  # an unknown kind is an error naming the known ones
    d = cfg.to_dict()
    if kind.has_identity and "identity" not in d:
        raise ValueError(f"world kind {kind.name!r} has an identity model: the config needs an 'identity' section")
    if not kind.has_identity and "identity" in d:
        raise ValueError(
            f"world kind {kind.name!r} has no identity model (IDS does not apply): remove the 'identity' section"
        )
    if kind.name != "faces" and "fine_attrs" not in d["clip"]:  # the default is the faces kind's
        d["clip"] = {**d["clip"], "fine_attrs": list(kind.fine_attrs)}
    d["generator"] = _resolve_split("generator", d["generator"], GeneratorConfig, DistillConfig)
    d["encoder"] = _resolve_split("encoder", d["encoder"], EncoderConfig, EncoderTrainConfig)
    clip = _clip_phase(d["clip"], kind=cfg.kind).to_dict()
    if "refine" in d["clip"]:  # each phase resolved as what it trains with: base keys, its keys laid over
        base = {k: v for k, v in d["clip"].items() if k != "refine"}
        clip["refine"] = _map_phases(
            d["clip"]["refine"],
            lambda p: {
                k: v
                for k, v in _clip_phase({**base, "refine": p}, "refine", cfg.kind).to_dict().items()
                if k != "model"
            },
        )
    d["clip"] = clip
    if "identity" in d:
        d["identity"] = IdentityConfig.from_dict(d["identity"]).to_dict()
    d["oracle"] = OracleConfig.from_dict(d["oracle"]).to_dict()
    return WorldConfig.from_dict(d)
