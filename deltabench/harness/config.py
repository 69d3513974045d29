"""A run's settings: :class:`RunConfig`, its one set of defaults (:data:`RUN_DEFAULTS`, which the
CLI, the API and ``RunConfig`` all read), its validation (once, before any work), and its
resolution against a loaded domain (references, default prompts, world hash, method options)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from deltabench.prompts import Prompt


@dataclass(frozen=True)
class RunDefaults:
    """Every run setting's default, in one place."""

    methods: str = "deltaedit,styleclip"
    world: str = "synthfaces"
    # 32: every method's manipulation-accuracy interval within +-0.10 and the default run in
    # 20-38 min on 2 CPU cores (FID needs more distinct images than feature dimensions)
    images: int = 32
    seed: int = 0
    sweep: tuple[float, ...] = (0.5, 1.0, 2.0)
    batch: int = 50
    references: str = "auto"
    out: str = "runs/latest"


RUN_DEFAULTS = RunDefaults()


@dataclass(frozen=True)
class RunConfig:
    methods: tuple[str, ...]
    world: str = RUN_DEFAULTS.world
    world_hash: str = ""
    prompts: tuple[Prompt, ...] = ()
    prompts_file: str | None = None
    images: int = RUN_DEFAULTS.images
    seed: int = RUN_DEFAULTS.seed
    sweep: tuple[float, ...] = RUN_DEFAULTS.sweep
    batch: int = RUN_DEFAULTS.batch
    method_options: dict = field(default_factory=dict)
    # Reference rows (deltabench.references), scored at the default strength only; "auto":
    # every reference the domain has (what the CLI and API pass by default).
    references: tuple[str, ...] = ()
    # The domain's unjudged attributes (left out of disentanglement), resolved from the domain;
    # absent from to_dict() when there are none, so the manifests of earlier runs compare equal.
    unjudged: tuple[str, ...] = ()

    @property
    def scored(self) -> tuple[str, ...]:
        """Methods, then references: every name with rows in the results."""
        return tuple(self.methods) + tuple(self.references)

    def scales(self, name: str) -> tuple[float, ...]:
        """The strength multipliers ``name`` is run at: the sweep, or x1 for a reference."""
        return (1.0,) if name in self.references else tuple(float(s) for s in self.sweep)

    def to_dict(self) -> dict:
        """JSON-shaped (lists, not tuples), so it compares equal to what manifest.json holds."""
        d = asdict(self)
        d["prompts"] = [asdict(p) for p in self.prompts]
        if not d["unjudged"]:
            del d["unjudged"]
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """The config a manifest's ``config`` records (the inverse of :meth:`to_dict`)."""
        return cls(
            methods=tuple(d["methods"]),
            world=d["world"],
            world_hash=d.get("world_hash", ""),
            prompts=tuple(Prompt(**p) for p in d.get("prompts", [])),
            prompts_file=d.get("prompts_file"),
            images=int(d["images"]),
            seed=int(d["seed"]),
            sweep=tuple(float(s) for s in d.get("sweep", (1.0,))),
            batch=int(d.get("batch", RUN_DEFAULTS.batch)),
            method_options=d.get("method_options") or {},
            references=tuple(d.get("references") or ()),
            unjudged=tuple(d.get("unjudged") or ()),
        )


def default_prompts(domain, every: bool = False) -> tuple[Prompt, ...]:
    """The domain's benchmark prompts; ``every``: all of its edit prompts.

    synthfaces benchmarks one edit per attribute (the world config's ``benchmark.prompts``), so
    the default run fits its CPU budget; ``--prompts all`` runs all 23.
    """
    return domain.all_edit_prompts() if every else tuple(domain.prompts)


def with_domain_defaults(options: dict, domain, methods) -> dict:
    """Per-method options: the domain's defaults under the user's (:func:`deltabench.settings.resolve_options`,
    the one resolution every entry point uses)."""
    from deltabench.settings import resolve_options

    return resolve_options(domain, methods, options)


def check_sweep(sweep) -> tuple[float, ...]:
    """Strength multipliers: finite and > 0 (x0 is no edit; a negative one reverses it)."""
    out = []
    for x in sweep:
        v = float(x)
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"--sweep: every strength multiplier must be a finite number > 0, got {x!r}")
        out.append(v)
    if not out:
        raise ValueError("--sweep: give at least one strength multiplier, e.g. 0.5,1,2")
    return tuple(out)


def validate_config(cfg: RunConfig) -> RunConfig:
    """Every value of ``cfg`` that can be wrong, checked before any work (clear errors); returns
    ``cfg`` with its method names expanded (aliases) and each registered."""
    from deltabench.methods import expand_methods, get_method, validate_options

    if isinstance(cfg.images, bool) or not isinstance(cfg.images, int) or cfg.images < 2:
        raise ValueError(
            f"--images must be a whole number of at least 2 (FID and KID compare sets of at "
            f"least two images), got {cfg.images!r}"
        )
    if isinstance(cfg.batch, bool) or not isinstance(cfg.batch, int) or cfg.batch < 1:
        raise ValueError(f"--batch must be a whole number of at least 1, got {cfg.batch!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"--seed must be a whole number >= 0, got {cfg.seed!r}")
    check_sweep(cfg.sweep)
    methods = expand_methods(list(cfg.methods))
    for m in methods:
        get_method(m)  # an unregistered or unloadable method is an error before any work
    validate_options(cfg.method_options, methods)
    if any(p.attribute is not None for p in cfg.prompts):  # against the domain's own schema, before any model loads
        from deltabench.domain import domain_attributes
        from deltabench.prompts import check_attributes

        check_attributes(cfg.prompts, domain_attributes(cfg.world), cfg.prompts_file, f"world {cfg.world!r}")
    return replace(cfg, methods=tuple(methods))


def resolve(cfg: RunConfig, domain, log=print) -> RunConfig:
    """``cfg`` against the loaded ``domain``, in one step: its references named ("auto": every
    one the domain has; one that cannot score the prompts is an error when asked for by name,
    else left out with a note), its prompts (the domain's benchmark ones when none are given),
    the world's hash and every method's options over the domain's defaults."""
    from deltabench import references

    methods = list(cfg.methods)
    asked = tuple(cfg.references)
    names = [n for r in cfg.references for n in references.parse(r if r == "auto" else [r], domain)]
    names = list(dict.fromkeys(names))
    clash = set(names) & set(methods)
    if clash:
        raise ValueError(f"--methods: {sorted(clash)} is a reference row, not a method; it is added by --references")
    prompts = cfg.prompts or default_prompts(domain)
    for name in list(names):
        problem = references.get_reference(name)(domain).prompt_problem(prompts)
        if problem is None:
            continue
        why, fix = problem
        if name in asked:
            raise ValueError(f"--references {name}: {why}; {fix} or leave {name} out")
        log(f"{name} reference left out: {why} ({fix})")
        names.remove(name)
    return replace(
        cfg,
        references=tuple(names),
        prompts=tuple(prompts),
        world_hash=domain.config_hash,
        method_options=with_domain_defaults(cfg.method_options, domain, methods),
        unjudged=tuple(sorted(domain.unjudged)),
    )
