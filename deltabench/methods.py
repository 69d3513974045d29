"""The method contract and registry.

A method fits what it needs once (text-free training, a per-prompt mapper, a precompute),
then maps (source latents, source text, target text, strength) to edited style codes. It
never touches metrics or result files. :class:`EditMethod` declares everything the runner
uses, with defaults; a subclass overrides what it needs.

Methods are found by name in three places, in this order: :data:`REGISTRY` (the built-in
ones: adding one is a module and a line here), :func:`register_method` (at run time), and the
``deltabench.methods`` entry-point group of any installed package, e.g. in its
``pyproject.toml``::

    [project.entry-points."deltabench.methods"]
    mine = "my_package.my_module:MyMethod"
"""
from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path

import torch

ENTRY_POINT_GROUP = "deltabench.methods"
# name -> "module:Class". Imported lazily so a method's dependencies load only when used.
REGISTRY: dict[str, str] = {
    "deltaedit": "deltaedit.method:DeltaEdit",
    "deltaedit-naive": "deltaedit.method:DeltaEditNaive",
    "styleclip-op": "baselines.op:StyleCLIPOptimization",
    "styleclip-lm": "baselines.lm:StyleCLIPMapper",
    "styleclip-gd": "baselines.gd:StyleCLIPGlobal",
    "tedigan": "baselines.tedigan:TediGAN",
}
# Names that stand for several methods.
ALIASES: dict[str, tuple[str, ...]] = {
    "styleclip": ("styleclip-op", "styleclip-lm", "styleclip-gd"),
}
_REGISTERED: dict[str, type] = {}  # register_method(); a process's own additions


class StrengthWarning(UserWarning):
    """A strength outside the range a method is calibrated for (:meth:`EditMethod.strength_warning`)."""


class EditMethod(ABC):
    """The contract: ``fit`` once, then ``edit`` batches of latents with text prompts.

    Strength: ``strength`` is the method's own knob (``strength_name``), ``default_strength``
    its default (the ×1 edit). A run's ×k (``--sweep``) means k times the edit, for every
    method: larger k, stronger edit. The runner asks :meth:`strength_for` for the knob's value
    at ×k and records both (``strength_scale`` = k, ``strength`` = that value) in
    ``results.csv``. The default, ``default_strength · k``, fits a knob that grows with the
    edit (α, a step multiplier); a method whose knob is inverse (a penalty weight such as
    StyleCLIP-OP's latent L2 weight) overrides :meth:`strength_for` (OP: weight / k).
    """

    name: str = ""
    space: str = "S"  # where edits happen: "S" or "W+"
    strength_name: str = "alpha"
    default_strength: float = 1.0
    # The frozen config dataclass behind the ``config`` option (its ``from_dict`` rejects
    # unknown keys and wrong types), or None for a method without one.
    config_class: type | None = None
    # True: under torchrun every rank calls fit()/fit_prompts() together and the method splits
    # the work itself (DDP training, sharded precompute). False: rank 0 fits into the method
    # cache first, then the other ranks fit (load) from it.
    distributed_fit: bool = False
    # True: ``edit``/``edit_batch`` take ``images=`` (the input images the latents were inverted
    # from, ``[B, 3, H, W]`` in [-1, 1]) and may use them (official DeltaEdit: i1 from the photo).
    takes_images: bool = False

    def __init__(self, domain, work_dir: Path, seed: int = 0, **options):
        if options:
            raise ValueError(f"{self.name}: unknown options {sorted(options)}; it takes "
                             f"{sorted(option_names(type(self)))}")
        self.domain = domain
        self.work_dir = Path(work_dir) / self.name
        self.seed = seed

    def fit(self) -> dict:
        """Train / precompute what the method needs (cached in ``work_dir``); return stats
        (``fit_seconds``: what fitting cost, also when it was loaded from the cache)."""
        return {}

    def refit(self) -> dict:
        """Fit again, ignoring (and replacing) what the cache holds. Default: refused, naming the cache."""
        raise ValueError(f"{self.name} cannot refit in place; delete its cache (rm -r '{self.work_dir}') and fit again")

    def fit_prompts(self, prompts: list[tuple[str, str]]) -> dict[str, float]:
        """Per-prompt fitting (e.g. one mapper per target) before any edit; returns the seconds
        each target cost. Default: nothing to fit per prompt."""
        return {}

    def strength_for(self, scale: float) -> float:
        """The knob's value for ×``scale``, ``scale`` times the edit (``scale`` > 0). Default:
        ``default_strength · scale``; override it where a larger value means a weaker edit."""
        return self.default_strength * float(scale)

    # The multipliers of the default edit the method is calibrated for: its official default is
    # x1, and the benchmark's default sweep (0.5, 1, 2) lies well inside this range.
    calibrated_scales: tuple[float, float] = (0.25, 4.0)

    def scale_of(self, strength: float) -> float:
        """The multiplier of the default edit that the knob value ``strength`` is (the inverse of
        :meth:`strength_for`; a knob that falls as the edit grows, e.g. a penalty weight, inverts)."""
        s1, s2 = self.strength_for(1.0), self.strength_for(2.0)
        if s1 == 0:
            return float("nan")
        return float(strength) / s1 if s2 > s1 else (s1 / float(strength) if strength else float("inf"))

    def strength_warning(self, strength: float | None) -> str | None:
        """What a ``strength`` outside the calibrated range will do, in words (None inside it)."""
        if strength is None:
            return None
        lo, hi = self.calibrated_scales
        grows = self.strength_for(2.0) > self.strength_for(1.0)
        what = f"{self.name} --strength {strength:g} ({self.strength_name}; default {self.strength_for(1.0):g})"
        if grows and strength < 0:
            return (f"{what} is negative: it reverses the edit, moving the image away from the target "
                    f"(towards the opposite of the prompt), not towards it")
        if grows and strength == 0:
            return f"{what} is 0: no edit at all, the output is the inversion of the input"
        if not grows and strength < 0:
            return f"{what} is a negative penalty weight: nothing holds the edit near the input"
        k = self.scale_of(strength)
        if not lo <= k <= hi:
            effect = ("expect an image off the generator's range (artefacts or noise), not a stronger edit"
                      if k > hi else "expect an edit too weak to see")
            return (f"{what} is x{k:.3g} the default edit, outside the x{lo:g} to x{hi:g} this method is "
                    f"calibrated for: {effect}")
        return None

    @abstractmethod
    def edit(self, w_plus: torch.Tensor, source: str, target: str,
             strength: float | None = None) -> list[torch.Tensor]:
        """Edit ``w_plus: [B, n_latent, D]`` from ``source`` to ``target`` text; return styles."""

    def edit_batch(self, w_plus: torch.Tensor, prompts: list[tuple[str, str]],
                   strength: float | None = None) -> list[list[torch.Tensor]]:
        """Every image x every prompt: styles per prompt. Default: one :meth:`edit` per prompt."""
        return [self.edit(w_plus, s, t, strength) for s, t in prompts]


def register_method(name: str, cls: type[EditMethod] | str) -> None:
    """Make ``cls`` (an :class:`EditMethod` subclass, or ``"module:Class"``) runnable as ``name``
    (``deltabench.run(methods=[name])``, ``deltabench run --methods NAME``)."""
    key = str(name).strip().lower()
    if not key or "," in key:
        raise ValueError(f"method name {name!r}: give a non-empty name without commas")
    if key in REGISTRY or key in ALIASES:
        raise ValueError(f"method name {name!r} is a built-in method; choose another name")
    if not isinstance(cls, str) and not (isinstance(cls, type) and issubclass(cls, EditMethod)):
        raise ValueError(f"register_method({name!r}, ...): give a subclass of deltabench.methods.EditMethod, "
                         f"got {cls!r}")
    _REGISTERED[key] = cls


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name.lower(): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def method_names() -> list[str]:
    """Every method name that resolves: built-in, registered, then installed entry points."""
    return list(dict.fromkeys([*REGISTRY, *_REGISTERED, *_entry_points()]))


def expand_methods(spec: str | list[str]) -> list[str]:
    """``"deltaedit,styleclip"`` -> known method names, aliases expanded, order kept."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for raw in names:
        n = raw.strip().lower()
        if not n:
            continue
        known_now = method_names()
        for m in ALIASES.get(n, (n,)):
            if m not in known_now:
                known = known_now + sorted(ALIASES)
                raise ValueError(f"unknown method {m!r}" + (f" (from {n!r})" if m != n else "") +
                                 f"; registered methods: {known}")
            if m not in out:
                out.append(m)
    if not out:
        raise ValueError(f"no method named in {spec!r}; registered methods: {method_names()}")
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
    """The class of method ``name`` (see the module doc for where names are found)."""
    names = expand_methods(name)
    if len(names) != 1:
        raise ValueError(f"{name!r} names several methods ({', '.join(names)}); give one")
    (name,) = names
    if name in REGISTRY:
        mod, cls = REGISTRY[name].split(":")
        return getattr(importlib.import_module(mod), cls)
    target = _REGISTERED.get(name)
    if target is None:
        try:
            target = _entry_points()[name].load()
        except Exception as e:  # noqa: BLE001 - a broken plugin is the user's to fix: say which
            raise ValueError(f"method {name!r} (entry point of group {ENTRY_POINT_GROUP!r}) could not be "
                             f"loaded: {type(e).__name__}: {e}") from None
    if isinstance(target, str):
        mod, cls = target.split(":")
        target = getattr(importlib.import_module(mod), cls)
    if not (isinstance(target, type) and issubclass(target, EditMethod)):
        raise ValueError(f"method {name!r} is {target!r}, not a subclass of deltabench.methods.EditMethod")
    return target
