"""The environment a result is computed in, and generic helpers every room uses: the cache
folder (``$DELTABENCH_CACHE``), package versions, the git commit, the platform, JSON files
written atomically. It imports nothing of deltabench but :mod:`deltabench.integrity`, so every
layer (models, metrics, worlds, the run) may use it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import safetensors
import torch

from deltabench.integrity import atomic_write_text


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
        raise WorldCacheError(
            f"${var}={path}: {bad} is a file, not a folder; point {var} at a folder (it is created if missing)"
        )
    if bad != path and not os.access(bad, os.W_OK | os.X_OK):
        raise WorldCacheError(
            f"${var}={path}: {path} does not exist and {bad} is not writable; point {var} at a folder you can write"
        )


def versions() -> dict:
    import numpy

    from deltabench import __version__

    out = {
        "deltabench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "safetensors": safetensors.__version__,
    }
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


DEPENDENCIES = (
    "torchvision",
    "scipy",
    "pillow",
    "pytorch-fid",
    "onnxruntime",
    "onnx",
    "scikit-image",
    "scikit-learn",
    "pandas",
    "matplotlib",
    "insightface",
    "opencv-python",
    "dlib-bin",
    "face-recognition-models",
    "pytorch-ranger",
    "timm",
    "tqdm",
)


def git_commit() -> str | None:
    """The commit of the deltabench checkout, with ``+dirty`` if it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
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


def describe_environment() -> dict:
    return {
        "versions": versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "argv": sys.argv,
        "torch_threads": torch.get_num_threads(),
    }
