"""World configs: JSON data files, loaded into frozen dataclasses.

A world config names every model the synthfaces world trains, with its size and training
schedule. The sections are parsed by the component that owns them (``GeneratorConfig``,
``ClipConfig``, ...); this module only knows the top-level shape, the hash that keys the
build cache, and where the files live.
"""
from __future__ import annotations

import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

COMPONENTS: tuple[str, ...] = ("generator", "encoder", "clip", "identity", "oracle")


def config_from_dict(cls, d: dict, what: str, tuples: tuple[str, ...] = ()):
    """A frozen config dataclass from a dict (JSON); unknown keys are a clear error naming them.

    ``tuples``: fields given as JSON lists that the dataclass holds as tuples.
    """
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{what}: unknown keys {sorted(unknown)}; known keys: {sorted(names)}")
    d = dict(d)
    for k in tuples:
        if k in d and isinstance(d[k], (list, tuple)):
            d[k] = tuple(d[k])
    hints = typing.get_type_hints(cls)
    for k, v in d.items():
        if not _fits(v, hints.get(k, Any)):
            raise ValueError(f"{what}: {k} must be {_type_name(hints[k])}, got {v!r}")
    return cls(**d)


def _fits(v, tp) -> bool:
    """Does the JSON value ``v`` fit the annotation ``tp`` (ints fit floats; bools are not ints)?"""
    if tp is Any:
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(v, a) for a in args)
    if tp is type(None):
        return v is None
    if tp is bool:
        return isinstance(v, bool)
    if tp is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if tp is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if tp is str:
        return isinstance(v, str)
    if origin in (tuple, list) or tp in (tuple, list):
        if not isinstance(v, (tuple, list)):
            return False
        elems = [a for a in args if a is not Ellipsis]
        # Scalar elements are checked; structured ones are parsed by the config's __post_init__.
        return len(elems) != 1 or elems[0] not in (int, float, str, bool) or all(_fits(x, elems[0]) for x in v)
    if origin is dict or tp is dict or origin in (Mapping, typing.Mapping):
        return isinstance(v, (dict, Mapping))
    return True


def _type_name(tp) -> str:
    names = {int: "a whole number", float: "a finite number", bool: "true or false", str: "a string",
             type(None): "null"}
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) in (tuple, list):
        return "a list"
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _freeze(x):
    if isinstance(x, dict):
        return MappingProxyType({k: _freeze(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    return x


def thaw(x):
    """Frozen mapping/tuple tree -> plain dict/list tree (for JSON and ``from_dict``)."""
    if isinstance(x, Mapping):
        return {k: thaw(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [thaw(v) for v in x]
    return x


@dataclass(frozen=True)
class WorldConfig:
    name: str
    seed: int
    resolution: int
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""

    @staticmethod
    def from_dict(d: dict) -> "WorldConfig":
        known = {"name", "seed", "resolution", "description", *COMPONENTS}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"world config {d.get('name')!r}: unknown keys {sorted(unknown)}")
        missing = [k for k in ("name", "seed", "resolution", *COMPONENTS) if k not in d]
        if missing:
            raise ValueError(f"world config {d.get('name')!r}: missing keys {missing}")
        res = int(d["resolution"])
        if res < 16 or res & (res - 1):
            raise ValueError(f"world config {d['name']!r}: resolution must be a power of two >= 16, got {res}")
        return WorldConfig(
            name=str(d["name"]),
            seed=int(d["seed"]),
            resolution=res,
            sections=_freeze({k: d[k] for k in COMPONENTS}),
            description=str(d.get("description", "")),
        )

    def to_dict(self) -> dict:
        out = {"name": self.name, "description": self.description, "seed": self.seed,
               "resolution": self.resolution}
        out.update(thaw(self.sections))
        return out

    def section(self, name: str) -> dict:
        return thaw(self.sections[name])

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of everything that changes the built weights."""
        d = self.to_dict()
        d.pop("description", None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def stage_hash(self, component: str) -> str:
        """Hash of what one component's weights depend on: its section, the resolution, its
        seed, and (for the encoder) the generator it inverts. Changing the oracle's config
        therefore never retrains the generator."""
        deps = {"encoder": ("generator",)}.get(component, ())
        d = {"component": component, "resolution": self.resolution, "seed": self.stage_seed(component),
             "section": thaw(self.sections[component]), "deps": {c: self.stage_hash(c) for c in deps}}
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def refine_phases(self, component: str) -> list[dict]:
        """The section's ``refine`` phases in training order: ``refine`` is one phase (a dict)
        or a list of them, each continuing from the stage the phases before it produced."""
        r = thaw(self.sections[component]).get("refine")
        return [] if r is None else as_phases(r, f"world config section {component!r}")

    def refine(self, component: str) -> dict | None:
        """The last ``refine`` phase (what this stage trains on top of its base), if any."""
        phases = self.refine_phases(component)
        return phases[-1] if phases else None

    def without_refine(self, component: str) -> "WorldConfig":
        """This config with ``component``'s last ``refine`` phase removed: the stage it refines.
        One phase left is written as a dict, so ``[a, b]`` refines exactly the cached ``a``."""
        phases = self.refine_phases(component)
        d = self.to_dict()
        if len(phases) <= 1:
            d[component].pop("refine", None)
        else:
            d[component]["refine"] = phases[0] if len(phases) == 2 else phases[:-1]
        return WorldConfig.from_dict(d)

    def stage_seed(self, component: str) -> int:
        # Distinct, stable seeds per component: rebuilding one stage never shifts another.
        return self.seed * 1000 + COMPONENTS.index(component) + 1


def as_phases(refine, where: str) -> list[dict]:
    """A ``refine`` value as its list of phases: one phase (a dict) or a non-empty list of them."""
    phases = [refine] if isinstance(refine, dict) else refine
    if not isinstance(phases, list) or not phases or not all(isinstance(p, dict) for p in phases):
        raise ValueError(f"{where}: 'refine' must be a phase (a JSON object) or a non-empty list of "
                         f"phases, got {refine!r}")
    return phases


def builtin_world_names() -> list[str]:
    d = resources.files("deltabench") / "configs" / "worlds"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".json"))


def load_world_config(name_or_path: str) -> WorldConfig:
    """A world config by built-in name (``synthfaces``, ``synthfaces-micro``) or JSON path."""
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
        from deltabench.world.components import resolve_sections

        return resolve_sections(cfg)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None
