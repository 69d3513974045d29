"""The method contract and registry.

A method fits what it needs once (text-free training, a per-prompt mapper, a precompute),
then maps (source latents, source text, target text, strength) to edited style codes. It
never touches metrics or result files. :class:`EditMethod` declares everything the runner
uses, with defaults; a subclass overrides what it needs.

Methods are found by name through :data:`deltabench.registry.METHODS`: the built-in ones
(adding one is a module and a line there), :func:`register_method` (at run time), and the
``deltabench.methods`` entry-point group of any installed package, e.g. in its
``pyproject.toml``::

    [project.entry-points."deltabench.methods"]
    mine = "my_package.my_module:MyMethod"
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from pathlib import Path

import torch

from deltabench.registry import METHODS

ENTRY_POINT_GROUP = METHODS.group
# name -> "module:Class" (the registry's built-ins). Imported lazily so a method's dependencies
# load only when used.
REGISTRY: dict[str, str] = METHODS.builtins
# Names that stand for several methods.
ALIASES: dict[str, tuple[str, ...]] = METHODS.aliases
_REGISTERED: dict[str, object] = METHODS.registered  # register_method(); a process's own additions


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
    # What a run's row of this class is: "method" (fitted, then edits latents), or "reference"
    # (deltabench.references: drawn, not fitted; scored at x1 only).
    kind: str = "method"
    # Other methods whose artefacts this one reads (their fitted caches or defaults), e.g.
    # DeltaEdit reads StyleCLIP-GD's fs3 table: ``{"styleclip-gd": "fs3"}``.
    requires: dict[str, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        edit = cls.__dict__.get("edit")
        if edit is not None and not _takes_images(edit):
            # The contract is edit(..., images=None); a method written before it (a plugin)
            # keeps working: the images it does not use are not passed on.
            @functools.wraps(edit)
            def edit_without_images(self, w_plus, source, target, strength=None, images=None, _edit=edit):
                return _edit(self, w_plus, source, target, strength)

            cls.edit = edit_without_images

    def __init__(self, domain, work_dir: Path, seed: int = 0, **options):
        if options:
            raise ValueError(
                f"{self.name}: unknown options {sorted(options)}; it takes {sorted(option_names(type(self)))}"
            )
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
            return (
                f"{what} is negative: it reverses the edit, moving the image away from the target "
                f"(towards the opposite of the prompt), not towards it"
            )
        if grows and strength == 0:
            return f"{what} is 0: no edit at all, the output is the inversion of the input"
        if not grows and strength < 0:
            return f"{what} is a negative penalty weight: nothing holds the edit near the input"
        k = self.scale_of(strength)
        if not lo <= k <= hi:
            effect = (
                "expect an image off the generator's range (artefacts or noise), not a stronger edit"
                if k > hi
                else "expect an edit too weak to see"
            )
            return (
                f"{what} is x{k:.3g} the default edit, outside the x{lo:g} to x{hi:g} this method is "
                f"calibrated for: {effect}"
            )
        return None

    @abstractmethod
    def edit(
        self,
        w_plus: torch.Tensor,
        source: str,
        target: str,
        strength: float | None = None,
        images: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Edit ``w_plus: [B, n_latent, D]`` from ``source`` to ``target`` text; return styles.
        ``images``: the input images the latents were inverted from (``[B, 3, H, W]`` in
        [-1, 1]), which a method may use (official DeltaEdit: i1 from the photo) or ignore."""

    def edit_images(self, domain, prompt, w_plus, inputs, start, params, strength):
        """The run's one call per batch, for every kind of row: ``(edited images, the starting
        image the edit is scored from)``. A method edits the latents and the generator draws the
        styles; its starting image is the inversion's."""
        styles = self.edit(w_plus, prompt.source, prompt.target, strength, images=inputs)
        with torch.no_grad():
            return domain.generator.synthesis_from_styles(styles), start

    def artefact_dir(self, other: str) -> Path:
        """Where method ``other`` (one this method ``requires``) caches what it fits, beside this one's."""
        if other not in self.requires:
            raise ValueError(f"{self.name} reads {other!r}'s artefacts but does not declare it in requires")
        return self.work_dir.parent / other

    def defaults_of(self, other: str) -> dict:
        """The domain's default options of method ``other`` (one this method ``requires``)."""
        if other not in self.requires:
            raise ValueError(f"{self.name} reads {other!r}'s defaults but does not declare it in requires")
        return dict(self.domain.method_defaults.get(other, {}))

    def describe_strength(self, scales) -> dict:
        """What the manifest records of the method's strength: its knob's name, the space it
        edits in, and the knob's value at every multiplier of the run."""
        return {
            "space": self.space,
            "strength_name": self.strength_name,
            "strength_for": {repr(float(k)): self.strength_for(float(k)) for k in scales},
        }

    def edit_batch(
        self, w_plus: torch.Tensor, prompts: list[tuple[str, str]], strength: float | None = None
    ) -> list[list[torch.Tensor]]:
        """Every image x every prompt: styles per prompt. Default: one :meth:`edit` per prompt."""
        return [self.edit(w_plus, s, t, strength) for s, t in prompts]


def _takes_images(fn) -> bool:
    params = inspect.signature(fn).parameters
    return "images" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def register_method(name: str, cls: type[EditMethod] | str) -> None:
    """Make ``cls`` (an :class:`EditMethod` subclass, or ``"module:Class"``) runnable as ``name``
    (``deltabench.run(methods=[name])``, ``deltabench run --methods NAME``)."""
    METHODS.register(name, cls)


def method_names() -> list[str]:
    """Every method name that resolves: built-in, registered, then installed entry points."""
    return METHODS.names()


def expand_methods(spec: str | list[str]) -> list[str]:
    """``"deltaedit,styleclip"`` -> known method names, aliases expanded, order kept."""
    return METHODS.expand(spec)


def option_names(cls: type[EditMethod]) -> set[str]:
    """The keyword options a method's constructor takes (what ``--options`` may set for it)."""
    names = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is EditMethod or klass is object:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind is p.KEYWORD_ONLY or (
                p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "domain", "work_dir", "seed")
            ):
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
            raise ValueError(
                f"--options names method {m!r}, which this run does not run "
                f"(methods: {', '.join(methods)}); check the spelling"
            )
        if not isinstance(opts, dict):
            raise ValueError(f"--options: the options of {m!r} must be a JSON object, e.g. {example}; got {opts!r}")
        cls = get_method(m)
        unknown = set(opts) - option_names(cls)
        if unknown:
            raise ValueError(f"--options: {m} has no options {sorted(unknown)}; it takes {sorted(option_names(cls))}")
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
    return METHODS.get(names[0])
