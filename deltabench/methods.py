"""The method interface and registry.

A method fits what it needs once (text-free training, a per-prompt mapper, a precompute),
then maps (source latents, source text, target text, strength) to edited style codes. It
never touches metrics or result files. Adding a method is one module and one line in
:data:`REGISTRY`.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

import torch

# name -> "module:Class". Imported lazily so a method's dependencies load only when used.
REGISTRY: dict[str, str] = {
    "deltaedit": "deltaedit.method:DeltaEdit",
    "deltaedit-naive": "deltaedit.method:DeltaEditNaive",
    "styleclip-op": "baselines.op:StyleCLIPOptimization",
    "styleclip-lm": "baselines.lm:StyleCLIPMapper",
    "styleclip-gd": "baselines.gd:StyleCLIPGlobal",
}
# Names that stand for several methods.
ALIASES: dict[str, tuple[str, ...]] = {
    "styleclip": ("styleclip-op", "styleclip-lm", "styleclip-gd"),
}


class EditMethod(ABC):
    """Base class: ``fit`` once, then ``edit`` batches of latents with text prompts."""

    name: str = ""
    space: str = "S"  # where edits happen: "S" or "W+"
    strength_name: str = "alpha"
    default_strength: float = 1.0

    def __init__(self, domain, work_dir: Path, seed: int = 0, **options):
        self.domain = domain
        self.work_dir = Path(work_dir) / self.name
        self.seed = seed
        self.options = options

    @abstractmethod
    def fit(self) -> dict:
        """Train / precompute what the method needs (cached in ``work_dir``); return stats."""

    @abstractmethod
    def edit(self, w_plus: torch.Tensor, source: str, target: str,
             strength: float | None = None) -> list[torch.Tensor]:
        """Edit ``w_plus: [B, n_latent, D]`` from ``source`` to ``target`` text; return styles."""


def expand_methods(spec: str | list[str]) -> list[str]:
    """``"deltaedit,styleclip"`` -> known method names, aliases expanded, order kept."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in names:
        n = raw.strip().lower()
        if not n:
            continue
        for m in ALIASES.get(n, (n,)):
            if m not in REGISTRY:
                known = sorted(REGISTRY) + sorted(ALIASES)
                raise ValueError(f"unknown method {m!r}" + (f" (from {n!r})" if m != n else "") +
                                 f"; registered methods: {known}")
            if m not in out:
                out.append(m)
    if not out:
        raise ValueError(f"no method named in {spec!r}; registered methods: {sorted(REGISTRY)}")
    return out


def get_method(name: str) -> type[EditMethod]:
    expand_methods(name)
    mod, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)
