"""Where built worlds live, and how they are written and verified.

A built world is a directory ``<name>-<config hash>/`` holding one safetensors file per
component and ``manifest.json`` (config, seeds, versions, git commit, build seconds and the
sha256 and size of every file). Worlds are looked up first in the user cache
(``$DELTABENCH_CACHE`` or ``$XDG_CACHE_HOME/deltabench`` or ``~/.cache/deltabench``), then
among the worlds shipped inside the package. Loading verifies everything; a damaged cache
is an error that names the file and the command that rebuilds it, never a silent retrain.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from deltabench import confighash
from deltabench.config import NOT_HASHED, WorldConfig
from deltabench.env import (  # noqa: F401 - generic helpers, re-exported where they used to live
    DEPENDENCIES,
    WorldCacheError,
    _check_cache_dir,
    _jsonable,
    cache_root,
    describe_environment,
    git_commit,
    versions,
    write_json,
)
from deltabench.integrity import sha256_file

MANIFEST = "manifest.json"
FORMAT = "deltabench-world/1"


def shipped_root() -> Path:
    return Path(str(resources.files("deltabench") / "assets" / "worlds"))


def world_dirname(cfg: WorldConfig) -> str:
    return f"{cfg.name}-{cfg.hash}"


def rebuild_hint(cfg: WorldConfig) -> str:
    return f"`deltabench world build --world {cfg.name} --force`"


def find_world(cfg: WorldConfig, roots: list[Path] | None = None) -> Path:
    """The directory of the built world for ``cfg``: user cache first, then shipped."""
    roots = roots if roots is not None else [cache_root() / "worlds", shipped_root()]
    for root in roots:
        d = root / world_dirname(cfg)
        if d.exists():
            return d
    others = sorted(
        {p.name for r in roots if r.is_dir() for p in r.glob(f"{cfg.name}-*") if not p.name.endswith(".partial")}
    )
    extra = f" (found builds of other configs: {others})" if others else ""
    raise WorldCacheError(
        f"world {cfg.name!r} with config hash {cfg.hash} is not built{extra}; looked in "
        f"{[str(r) for r in roots]}. Build it with `deltabench world build --world {cfg.name}`."
    )


def verify_world(cfg: WorldConfig, d: Path) -> dict:
    """Check manifest, config and every file's size and sha256; return the manifest.

    A damaged copy in the user cache of a world that also ships with the package is an error
    that says to delete the copy (the intact shipped world is then used), not to rebuild."""
    try:
        return _verify_world(cfg, d)
    except WorldCacheError as e:
        shipped = shipped_root() / world_dirname(cfg)
        if Path(d).resolve() == shipped.resolve() or not shipped.is_dir():
            raise
        try:
            _verify_world(cfg, shipped)
        except WorldCacheError:
            raise e from None
        raise WorldCacheError(
            f"{e.args[0].split(' Rebuild with')[0]} This damaged copy in the user cache "
            f"shadows the intact world shipped with deltabench: delete it (rm -r '{d}') "
            f"and the shipped world is used; no rebuild is needed."
        ) from None


def _verify_world(cfg: WorldConfig, d: Path) -> dict:
    mpath = d / MANIFEST
    hint = rebuild_hint(cfg)
    if not mpath.is_file():
        raise WorldCacheError(f"{mpath} is missing: the world cache is incomplete. Rebuild with {hint}.")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorldCacheError(f"{mpath} is not valid JSON ({e}). Rebuild with {hint}.") from None
    if manifest.get("format") != FORMAT:
        raise WorldCacheError(f"{mpath}: format {manifest.get('format')!r}, expected {FORMAT!r}. Rebuild with {hint}.")
    try:
        confighash.check_record(manifest, str(mpath))
    except ValueError as e:
        raise WorldCacheError(f"{e} (rebuild: {hint})") from None
    want = cfg.to_dict()
    got = dict(manifest.get("config", {}))
    for k in NOT_HASHED:
        want.pop(k, None)
        got.pop(k, None)
    if manifest.get("config_hash") != cfg.hash or got != want:
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise WorldCacheError(
            f"{mpath} was built from a different config (hash {manifest.get('config_hash')}, expected "
            f"{cfg.hash}; differing sections: {diff}). Rebuild with {hint}."
        )
    for name, meta in manifest.get("files", {}).items():
        f = d / name
        if not f.is_file():
            raise WorldCacheError(f"{f} is missing. Rebuild with {hint}.")
        size = f.stat().st_size
        if size != meta["bytes"]:
            raise WorldCacheError(
                f"{f} has {size} bytes, the manifest says {meta['bytes']} (truncated or replaced). Rebuild with {hint}."
            )
        digest = sha256_file(f)
        if digest != meta["sha256"]:
            raise WorldCacheError(f"{f} has sha256 {digest}, the manifest says {meta['sha256']}. Rebuild with {hint}.")
    return manifest


def load_tensors(path: Path, cfg: WorldConfig) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as e:  # safetensors raises several types for damaged headers
        raise WorldCacheError(
            f"{path} could not be read as safetensors ({e}). Rebuild with {rebuild_hint(cfg)}."
        ) from None
