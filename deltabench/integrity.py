"""Checksummed cache files: whatever deltabench caches is recorded when written, verified when read.

Every cached artefact (DeltaEdit pools and mappers, StyleCLIP-GD's fs3, StyleCLIP-LM's mappers
and training latents, world stages) is written through :func:`save_tensors`: the bytes go to a
temporary file, its sha256 and size go to ``<file>.sha256`` (JSON), and only then is the
temporary renamed into place. So an existing file always has its record, and a kill at any
point leaves either a complete pair or a cache miss. :func:`load_tensors` re-hashes the file and
compares before reading a byte of it: a flipped byte, a truncated or replaced file is an error
naming the file and what rebuilds it, never a silently different number.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import safetensors.torch
import torch

RECORD_SUFFIX = ".sha256"


class CacheIntegrityError(RuntimeError):
    """A cached file does not match the checksum recorded when it was written."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def record_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + RECORD_SUFFIX)


def file_record(path: str | Path) -> dict:
    return {"sha256": sha256_file(path), "bytes": Path(path).stat().st_size}


def atomic_write(path: str | Path, write) -> None:
    """``write(tmp)`` writes the content to a temporary file beside ``path``, which is then
    renamed onto ``path``: readers see the old file or the new one, never a torn one."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.unlink(missing_ok=True)
    write(tmp)
    os.replace(tmp, p)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def fix_hint(path: Path, rebuild: str | None) -> str:
    how = f"rebuild just it with {rebuild}" if rebuild else "the same command then rebuilds just it"
    return f"delete it (rm '{path}'); {how}"


def verify(path: str | Path, rebuild: str | None = None) -> None:
    """Raise :class:`CacheIntegrityError` unless ``path`` matches its recorded sha256 and size."""
    p = Path(path)
    rec_f = record_path(p)
    try:
        rec = json.loads(rec_f.read_text())
        want_sha, want_bytes = str(rec["sha256"]), int(rec["bytes"])
    except FileNotFoundError:
        raise CacheIntegrityError(
            f"{p} has no checksum record ({rec_f.name}): it was written by an older "
            f"deltabench or by hand, so it cannot be verified; {fix_hint(p, rebuild)}"
        ) from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CacheIntegrityError(f"{rec_f} is not a valid checksum record ({e}); {fix_hint(p, rebuild)}") from None
    size = p.stat().st_size
    if size != want_bytes:
        raise CacheIntegrityError(
            f"{p} has {size} bytes, {want_bytes} were written (truncated or replaced); {fix_hint(p, rebuild)}"
        )
    digest = sha256_file(p)
    if digest != want_sha:
        raise CacheIntegrityError(
            f"{p} has sha256 {digest[:16]}..., {want_sha[:16]}... was written (the file "
            f"is damaged); {fix_hint(p, rebuild)}"
        )


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, dtype: torch.dtype | None = None) -> dict:
    """Write a safetensors file with its checksum record (see the module doc); return the record.

    Floating tensors are cast to ``dtype`` when given."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in tensors.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    tmp = p.with_name(p.name + ".tmp")
    safetensors.torch.save_file(out, str(tmp))
    rec = file_record(tmp)
    atomic_write_text(record_path(p), json.dumps(rec) + "\n")
    os.replace(tmp, p)
    return rec


def load_tensors(path: str | Path, rebuild: str | None = None) -> dict[str, torch.Tensor]:
    """Verify ``path`` against its record, then read it (see :func:`save_tensors`)."""
    p = Path(path)
    verify(p, rebuild)
    try:
        return safetensors.torch.load_file(str(p))
    except Exception as e:  # safetensors raises several types for damaged headers
        raise CacheIntegrityError(f"{p} could not be read as safetensors ({e}); {fix_hint(p, rebuild)}") from None


def read_json(path: str | Path, what: str, rebuild: str | None = None):
    """A JSON file deltabench wrote; unreadable or garbage content is a clear error."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CacheIntegrityError(f"{p} ({what}) is not valid JSON ({e}); {fix_hint(p, rebuild)}") from None
