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
import os
import platform
import subprocess
import sys
from importlib import resources
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from deltabench.config import NOT_HASHED, WorldConfig
from deltabench.integrity import atomic_write_text, sha256_file

MANIFEST = "manifest.json"
FORMAT = "deltabench-world/1"


class WorldCacheError(RuntimeError):
    """A built world on disk is missing, damaged or built from another config."""


def cache_root() -> Path:
    """deltabench's cache: ``$DELTABENCH_CACHE``, else ``$XDG_CACHE_HOME/deltabench``, else
    ``~/.cache/deltabench``. A variable naming something that cannot be a folder is an error
    that names the variable."""
    for var, sub in (("DELTABENCH_CACHE", None), ("XDG_CACHE_HOME", "deltabench")):
        env = os.environ.get(var)
        if env:
            base = Path(env).expanduser()
            _check_cache_dir(base, var)
            return base / sub if sub else base
    return Path.home() / ".cache" / "deltabench"


def _check_cache_dir(path: Path, var: str) -> None:
    """``$var`` must name a folder, or a path one can be made at."""
    bad = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
    if bad is None:
        return
    if bad.is_symlink() and not bad.exists():
        raise WorldCacheError(f"${var}={path}: {bad} is a symbolic link to nothing; point {var} at a folder")
    if not bad.is_dir():
        raise WorldCacheError(f"${var}={path}: {bad} is a file, not a folder; point {var} at a folder "
                              f"(it is created if missing)")
    if bad != path and not os.access(bad, os.W_OK | os.X_OK):
        raise WorldCacheError(f"${var}={path}: {path} does not exist and {bad} is not writable; point {var} at "
                              f"a folder you can write")


def shipped_root() -> Path:
    return Path(str(resources.files("deltabench") / "assets" / "worlds"))


def world_dirname(cfg: WorldConfig) -> str:
    return f"{cfg.name}-{cfg.hash}"


def rebuild_hint(cfg: WorldConfig) -> str:
    return f"`deltabench world build --world {cfg.name} --force`"


def versions() -> dict:
    import numpy

    from deltabench import __version__

    out = {"deltabench": __version__, "python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "safetensors": safetensors.__version__}
    import open_clip

    out["open_clip"] = open_clip.__version__
    # Every other package a number can depend on, as installed (None: not installed).
    from importlib import metadata

    for dist in DEPENDENCIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


DEPENDENCIES = ("torchvision", "scipy", "pillow", "pytorch-fid", "onnxruntime", "onnx", "scikit-image",
                "scikit-learn", "pandas", "matplotlib", "insightface", "opencv-python", "dlib-bin",
                "face-recognition-models", "pytorch-ranger", "timm", "tqdm")


def git_commit() -> str | None:
    """The commit of the deltabench checkout, with ``+dirty`` if it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if hasattr(x, "tolist"):  # numpy arrays and scalars
        return x.tolist()
    if isinstance(x, (set, tuple)):
        return list(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot store {type(x).__name__} in JSON")


def write_json(obj, path: Path) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def find_world(cfg: WorldConfig, roots: list[Path] | None = None) -> Path:
    """The directory of the built world for ``cfg``: user cache first, then shipped."""
    roots = roots if roots is not None else [cache_root() / "worlds", shipped_root()]
    for root in roots:
        d = root / world_dirname(cfg)
        if d.exists():
            return d
    others = sorted({p.name for r in roots if r.is_dir() for p in r.glob(f"{cfg.name}-*")
                     if not p.name.endswith(".partial")})
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
        raise WorldCacheError(f"{e.args[0].split(' Rebuild with')[0]} This damaged copy in the user cache "
                              f"shadows the intact world shipped with deltabench: delete it (rm -r '{d}') "
                              f"and the shipped world is used; no rebuild is needed.") from None


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
        raise WorldCacheError(f"{mpath}: format {manifest.get('format')!r}, expected {FORMAT!r}. "
                              f"Rebuild with {hint}.")
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
            raise WorldCacheError(f"{f} has {size} bytes, the manifest says {meta['bytes']} "
                                  f"(truncated or replaced). Rebuild with {hint}.")
        digest = sha256_file(f)
        if digest != meta["sha256"]:
            raise WorldCacheError(f"{f} has sha256 {digest}, the manifest says {meta['sha256']}. "
                                  f"Rebuild with {hint}.")
    return manifest


def load_tensors(path: Path, cfg: WorldConfig) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as e:  # safetensors raises several types for damaged headers
        raise WorldCacheError(f"{path} could not be read as safetensors ({e}). "
                              f"Rebuild with {rebuild_hint(cfg)}.") from None


def describe_environment() -> dict:
    return {"versions": versions(), "git_commit": git_commit(), "platform": platform.platform(),
            "argv": sys.argv, "torch_threads": torch.get_num_threads()}
