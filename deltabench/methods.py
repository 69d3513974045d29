"""The method interface and registry.

A method fits what it needs once (text-free training, a per-prompt mapper, a precompute),
then maps (source latents, source text, target text, strength) to edited style codes. It
never touches metrics or result files. Adding a method is one module and one line in
:data:`REGISTRY`.
"""
from __future__ import annotations

import importlib
import inspect
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
    # The frozen config dataclass behind the ``config`` option (its ``from_dict`` rejects
    # unknown keys and wrong types), or None for a method without one.
    config_class: type | None = None

    def __init__(self, domain, work_dir: Path, seed: int = 0, **options):
        if options:
            raise ValueError(f"{self.name}: unknown options {sorted(options)}; it takes "
                             f"{sorted(option_names(type(self)))}")
        self.domain = domain
        self.work_dir = Path(work_dir) / self.name
        self.seed = seed

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


def option_names(cls: type[EditMethod]) -> set[str]:
    """The keyword options a method's constructor takes (what ``--options`` may set for it)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is EditMethod or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in
                                            ("self", "domain", "work_dir", "seed")):
                names.add(p.name)
    return names


def validate_options(options, methods: list[str]) -> None:
    """``--options``: a JSON object mapping methods of this run to their options; every method
    named must be run, every option must exist, and a ``config`` must parse. Clear errors."""
    example = '\'{"deltaedit": {"config": {"steps": 500}}}\''
    if not isinstance(options, dict):
        raise ValueError(f"--options must map method names to their options, e.g. {example}; got {options!r}")
    for m, opts in options.items():
        if m not in methods:
            raise ValueError(f"--options names method {m!r}, which this run does not run "
                             f"(methods: {', '.join(methods)}); check the spelling")
        if not isinstance(opts, dict):
            raise ValueError(f"--options: the options of {m!r} must be a JSON object, e.g. {example}; got {opts!r}")
        cls = get_method(m)
        unknown = set(opts) - option_names(cls)
        if unknown:
            raise ValueError(f"--options: {m} has no options {sorted(unknown)}; it takes "
                             f"{sorted(option_names(cls))}")
        cfg = opts.get("config")
        if cfg is not None and cls.config_class is not None:
            if not isinstance(cfg, dict):
                raise ValueError(f"--options: {m}'s config must be a JSON object, got {cfg!r}")
            try:
                cls.config_class.from_dict(cfg)  # unknown keys, wrong types, bad values
            except (ValueError, TypeError) as e:
                raise ValueError(f"--options: {m}: {e}") from None


def get_method(name: str) -> type[EditMethod]:
    expand_methods(name)
    mod, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(mod), cls)
