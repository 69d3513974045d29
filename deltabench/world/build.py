"""``deltabench world build``: train every model of a synthetic world, stage by stage.

Each finished stage is written at once (safetensors + a JSON of its stats) into the stage
cache ``<root>/stages/<component>-<stage hash>.*``, keyed by what that component depends on
alone (its config section, resolution, seed, and the generator for the encoder). A build
killed at any point and started again resumes from the first unfinished stage, and a config
change retrains only the components it touches. When every stage is done, the files are
copied into ``<name>-<hash>.partial/`` with the manifest and the directory is renamed to its
final name, so a world directory without ``.partial`` is always complete. An existing world
is never overwritten without ``force``.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from deltabench import confighash, integrity
from deltabench.config import WorldConfig
from deltabench.world import store
from deltabench.world.components import COMPONENT_SPECS, schema_versions


def build_world(
    cfg: WorldConfig, root: Path | None = None, force: bool = False, log=print, only: tuple[str, ...] | None = None
) -> Path | None:
    """Build (or resume building) ``cfg`` under ``root/<name>-<hash>``; return that directory.

    ``only``: train just these stages into the stage cache (their dependencies too) and stop
    before assembling the world (returns None).
    """
    if only:
        unknown = set(only) - set(cfg.components)
        if unknown:
            raise ValueError(f"unknown world stages {sorted(unknown)}; stages of {cfg.name} are {list(cfg.components)}")
        need = set(only) | ({"generator"} if "encoder" in only else set())
    root = Path(root) if root is not None else store.cache_root() / "worlds"
    final = root / store.world_dirname(cfg)
    partial = final.with_name(final.name + ".partial")
    if final.exists():
        if not force:
            store.verify_world(cfg, final)  # a damaged cache is an error, not a silent rebuild
            log(f"world {cfg.name} is already built at {final} (use --force to rebuild)")
            return final
        log(f"--force: rebuilding {final}")
    if partial.exists():
        shutil.rmtree(partial)
    stages_dir = root / "stages"
    stages_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    models: dict[str, torch.nn.Module] = {}
    stages: dict[str, dict] = {}
    for name in cfg.components:
        if only and name not in need:
            continue
        models[name], stages[name] = _stage(cfg, name, models, stages_dir, force, log)

    if only:
        log(f"stages {sorted(need)} are in {stages_dir}")
        return None
    partial.mkdir(parents=True)
    files = {}
    for name in cfg.components:
        f = partial / f"{name}.safetensors"
        src = stages_dir / f"{name}-{cfg.stage_hash(name)}.safetensors"
        integrity.verify(src, stage_rebuild_hint(cfg, name))  # never bless a damaged stage into a world
        shutil.copyfile(src, f)
        files[f.name] = integrity.file_record(f)
        if files[f.name] != json.loads(integrity.record_path(src).read_text()):
            raise integrity.CacheIntegrityError(f"{src} changed while it was copied into {f}; run the build again")
    manifest = {
        "format": store.FORMAT,
        "name": cfg.name,
        "config_hash": cfg.hash,
        "config": cfg.to_dict(),
        confighash.SCHEMA_KEY: schema_versions(),
        "seed": cfg.seed,
        "stages": stages,
        "build_seconds": {
            "total": sum(s["seconds"] for s in stages.values()),
            **{k: s["seconds"] for k, s in stages.items()},
            "wall_this_invocation": time.perf_counter() - t_start,
        },
        "files": files,
        **store.describe_environment(),
    }
    store.write_json(manifest, partial / store.MANIFEST)
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old)
    else:
        partial.rename(final)
    log(f"world {cfg.name} built at {final} in {manifest['build_seconds']['total']:.0f} s of training")
    return final


def stage_rebuild_hint(cfg: WorldConfig, name: str) -> str:
    return f"`deltabench world build --world {cfg.name} --only {name} --force`"


def _stage(cfg: WorldConfig, name: str, models: dict, stages_dir: Path, force: bool, log) -> tuple:
    """Load stage ``name`` of ``cfg`` from the stage cache, or train and save it; ``(model, info)``.

    A section with a ``refine`` phase is its base stage (the same config without ``refine``,
    cached under its own hash) trained further, so adding a refine phase never retrains the base.
    """
    spec = COMPONENT_SPECS[name]
    key = f"{name}-{cfg.stage_hash(name)}"
    wfile, sfile = stages_dir / f"{key}.safetensors", stages_dir / f"{key}.json"
    hint = stage_rebuild_hint(cfg, name)
    if not force and not (wfile.is_file() and sfile.is_file()):
        _stage_from_installed_world(cfg, name, wfile, sfile, stages_dir.parent, log)
    if wfile.is_file() and sfile.is_file() and not force:
        info = integrity.read_json(sfile, f"the {name} stage's stats", hint)
        confighash.check_record(info, str(sfile))
        model = spec.build(cfg, info.get("extra", {}))
        sd = integrity.load_tensors(wfile, hint)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        log(f"[{name}] resumed from {wfile} (built in {info['seconds']:.0f} s)")
        return model.eval(), info
    refine = cfg.refine(name)
    if refine is not None:
        if spec.refine is None:
            raise ValueError(f"world config section {name!r} has a 'refine' phase, which {name} does not support")
        base_cfg = cfg.without_refine(name)
        base, base_info = _stage(base_cfg, name, models, stages_dir, force, log)
        log(f"[{name}] refining {name}-{base_cfg.stage_hash(name)} ...")
        t0 = time.perf_counter()
        model, stats, extra = spec.refine(cfg, base, base_info.get("extra", {}), models)
        seconds = time.perf_counter() - t0
        stats = {
            **stats,
            "base_stage": base_cfg.stage_hash(name),
            "base_seconds": base_info["seconds"],
            "refine_seconds": seconds,
        }
        seconds += base_info["seconds"]  # what building this stage from nothing costs
    else:
        log(f"[{name}] training ...")
        t0 = time.perf_counter()
        model, stats, extra = spec.train(cfg, models)
        seconds = time.perf_counter() - t0
    integrity.save_tensors(model.state_dict(), wfile, spec.save_dtype)
    info = {
        "seconds": seconds,
        "stats": stats,
        "extra": extra,
        "seed": cfg.stage_seed(name),
        "stage_hash": cfg.stage_hash(name),
        confighash.SCHEMA_KEY: schema_versions(),
    }
    store.write_json(info, sfile)
    # Evaluate what was saved (fp16 round trip included), not the in-memory fp32 copy.
    model = spec.build(cfg, extra)
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in integrity.load_tensors(wfile, hint).items()}
    )
    log(f"[{name}] done in {seconds:.0f} s: {_short(stats)}")
    return model.eval(), info


def _stage_from_installed_world(cfg: WorldConfig, name: str, wfile: Path, sfile: Path, root: Path, log) -> bool:
    """Seed the stage cache with stage ``name`` from an assembled world that holds the same
    stage (equal stage hash), e.g. the world shipped in the package: a config change then
    retrains only what it touches on a fresh install too. The file is verified against that
    world's manifest before it is used."""
    want = cfg.stage_hash(name)
    for base in (store.shipped_root(), root):
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            mf = d / store.MANIFEST
            if d.name.endswith((".partial", ".old")) or not mf.is_file():
                continue
            try:
                m = json.loads(mf.read_text())
                info, rec = m["stages"][name], m["files"][f"{name}.safetensors"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue
            src = d / f"{name}.safetensors"
            if info.get("stage_hash") != want or not src.is_file() or integrity.file_record(src) != rec:
                continue
            integrity.atomic_write(wfile, lambda tmp: shutil.copyfile(src, tmp))
            integrity.record_path(wfile).write_text(json.dumps(rec))
            store.write_json(info, sfile)
            log(f"[{name}] stage {want} taken from the world at {d}")
            return True
    return False


def _short(stats: dict) -> str:
    items = [
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in stats.items()
        if isinstance(v, (int, float, str))
    ]
    return ", ".join(items[:6])
