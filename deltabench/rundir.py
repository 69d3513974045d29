"""A run directory as files: its manifest, read back with clear errors. A leaf module, so the
runner (which writes runs) and the report (which reads them) share it without importing each other.
"""
from __future__ import annotations

import json
from pathlib import Path


class RunConfigError(ValueError):
    """The output directory holds a run of another config."""


def read_manifest(out: Path) -> dict | None:
    """The run manifest of ``out`` (None if there is none); anything else is a clear error."""
    mpath = out / "manifest.json"
    if not mpath.is_file():
        return None
    try:
        m = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RunConfigError(f"{mpath} is not valid JSON ({e}): {out} is not a readable deltabench run; "
                             f"give another --out, or move the directory away") from None
    if not (isinstance(m, dict) and isinstance(m.get("config"), dict) and "methods" in m["config"]):
        raise RunConfigError(f"{mpath} is not a deltabench run manifest: {out} is not a deltabench run "
                             f"directory and is left untouched; give another --out")
    return m
