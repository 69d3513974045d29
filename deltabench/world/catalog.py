"""Where world configs live and how one is loaded: built-in names or JSON files, each section
parsed by the component that owns it (so the hash covers every default)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from deltabench.config import WorldConfig
from deltabench.world.components import resolve_sections


def builtin_world_names() -> list[str]:
    d = resources.files("deltabench") / "configs" / "worlds"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".json"))


def load_world_config(name_or_path: str) -> WorldConfig:
    """A world config by built-in name (``synthfaces``, ``church``, their ``-micro`` variants) or JSON path."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"world config file {p} does not exist")
        text = p.read_text()
        where = str(p)
    else:
        names = builtin_world_names()
        if name_or_path not in names:
            raise ValueError(f"unknown world {name_or_path!r}; built-in worlds: {names}, or pass a JSON file")
        res = resources.files("deltabench") / "configs" / "worlds" / f"{name_or_path}.json"
        text = res.read_text()
        where = f"built-in world {name_or_path}"
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from None
    try:
        cfg = WorldConfig.from_dict(d)
        return resolve_sections(cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
