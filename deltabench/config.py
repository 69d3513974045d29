"""World configs: the schema of a world (frozen dataclasses) and the hash that keys its build cache.

A world config names every model the synthfaces world trains, with its size and training
schedule. The sections are parsed by the component that owns them (``GeneratorConfig``,
``ClipConfig``, ...); this module only knows the top-level shape, the hash that keys the
build cache, and where the files live.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deltabench.confighash import ABSENT, Schema, digest
from deltabench.parse import _freeze, thaw

COMPONENTS: tuple[str, ...] = ("generator", "encoder", "clip", "identity", "oracle")
# Top-level keys that do not change the built weights: outside the world hash and its check.
NOT_HASHED: tuple[str, ...] = ("description", "benchmark")
# Components a world may leave out (the world kind says whether it has one).
OPTIONAL_COMPONENTS: tuple[str, ...] = ("identity",)
# The world kind of a config without a "kind" key (the synthfaces worlds).
DEFAULT_KIND = "faces"

# The top level of a world config (deltabench.confighash): "kind" came with the church world and
# is hashed unless it is "faces", so the synthfaces worlds keep their hashes.
WORLD_SCHEMA = Schema(
    "world", first=("name", "seed", "resolution", *COMPONENTS), added=[{"kind": DEFAULT_KIND}], not_hashed=NOT_HASHED
)
# What one stage's weights depend on (WorldConfig.stage_hash); another kind draws other images,
# so a stage is never shared between kinds.
STAGE_SCHEMA = Schema(
    "world.stage", first=("component", "resolution", "seed", "section", "deps"), added=[{"kind": DEFAULT_KIND}]
)
# A section's "refine" phases (a later addition) are hashed whenever they are given.
SECTION_SCHEMA = Schema("world.section", first=("model", "train"), added=[{"refine": ABSENT}])


def _numbers(d, path: str = ""):
    """``(key path, value)`` of every number in a nested config (lists indexed)."""
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, (list, tuple)) else ()
    for k, v in items:
        p = f"{path}.{k}" if path else str(k)
        if isinstance(v, bool):
            continue
        if isinstance(v, (int, float)):
            yield p, v
        elif isinstance(v, (dict, list, tuple)):
            yield from _numbers(v, p)


@dataclass(frozen=True)
class WorldConfig:
    name: str
    seed: int
    resolution: int
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    description: str = ""
    # How the benchmark uses this world (its prompts, the methods' defaults in it, whether the
    # S-space methods edit toRGB styles, and the measurements behind them): data like a real
    # domain's settings, outside the weights hash (changing it never rebuilds the world).
    benchmark: Mapping[str, Any] = field(default_factory=dict)
    # The world kind (deltabench.world.kind): what its renderer draws and its captions say.
    # "faces" is the default and its introduction value (WORLD_SCHEMA), so it is left out of
    # to_dict() and the synthfaces worlds keep their hashes; any other kind is hashed.
    kind: str = DEFAULT_KIND

    @staticmethod
    def from_dict(d: dict) -> WorldConfig:
        known = WORLD_SCHEMA.options
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"world config {d.get('name')!r}: unknown keys {sorted(unknown)}")
        kind = d.get("kind", DEFAULT_KIND)
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"world config {d.get('name')!r}: 'kind' must be a world kind name, got {kind!r}")
        # Every component but identity is required; identity is the kind's optional part
        # (whether the kind has one is checked where kinds are known, world.components).
        missing = [
            k for k in ("name", "seed", "resolution", *COMPONENTS) if k not in d and k not in OPTIONAL_COMPONENTS
        ]
        if missing:
            raise ValueError(f"world config {d.get('name')!r}: missing keys {missing}")
        for path, v in _numbers(d):  # every size, step count, rate and weight of a world is >= 0
            if v < 0:
                raise ValueError(
                    f"world config {d.get('name')!r}: {path} = {v} is negative; sizes, steps, rates and "
                    f"weights of a world are >= 0 (see deltabench/configs/worlds/ for working values)"
                )
        res = int(d["resolution"])
        if res < 16 or res & (res - 1):
            raise ValueError(f"world config {d['name']!r}: resolution must be a power of two >= 16, got {res}")
        return WorldConfig(
            name=str(d["name"]),
            seed=int(d["seed"]),
            resolution=res,
            sections=_freeze({k: d[k] for k in COMPONENTS if k in d}),
            description=str(d.get("description", "")),
            benchmark=_freeze(dict(d.get("benchmark") or {})),
            kind=kind,
        )

    def to_dict(self) -> dict:
        out = {
            "name": self.name,
            "description": self.description,
            "seed": self.seed,
            "resolution": self.resolution,
            "kind": self.kind,
            **thaw(self.sections),
        }
        if self.benchmark:
            out["benchmark"] = thaw(self.benchmark)
        return WORLD_SCHEMA.present(out)

    @property
    def components(self) -> tuple[str, ...]:
        """The components this world builds, in build order (identity only where configured)."""
        return tuple(c for c in COMPONENTS if c in self.sections)

    def section(self, name: str) -> dict:
        return thaw(self.sections[name])

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON of everything that changes the built weights."""
        return digest(WORLD_SCHEMA.hashed(self.to_dict()), 16)

    def stage_hash(self, component: str) -> str:
        """Hash of what one component's weights depend on: its section, the resolution, its
        seed, and (for the encoder) the generator it inverts. Changing the oracle's config
        therefore never retrains the generator."""
        deps = {"encoder": ("generator",)}.get(component, ())
        d = {
            "component": component,
            "resolution": self.resolution,
            "seed": self.stage_seed(component),
            "section": thaw(self.sections[component]),
            "deps": {c: self.stage_hash(c) for c in deps},
            "kind": self.kind,
        }
        return digest(STAGE_SCHEMA.hashed(d), 16)

    def refine_phases(self, component: str) -> list[dict]:
        """The section's ``refine`` phases in training order: ``refine`` is one phase (a dict)
        or a list of them, each continuing from the stage the phases before it produced."""
        r = thaw(self.sections[component]).get("refine")
        return [] if r is None else as_phases(r, f"world config section {component!r}")

    def refine(self, component: str) -> dict | None:
        """The last ``refine`` phase (what this stage trains on top of its base), if any."""
        phases = self.refine_phases(component)
        return phases[-1] if phases else None

    def without_refine(self, component: str) -> WorldConfig:
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
        raise ValueError(
            f"{where}: 'refine' must be a phase (a JSON object) or a non-empty list of phases, got {refine!r}"
        )
    return phases
