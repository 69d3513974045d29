"""One registry for every kind of pluggable thing: methods, metrics, references and domains.

The shape of lm-evaluation-harness's registry: a name maps to a lazy ``"module:attr"`` target
(imported on first use, so a method's dependencies load only when it runs), to an object
registered at run time, or to an entry point of an installed package; whatever a name resolves
to must be a subclass of the kind's base class; an unknown name is an error that lists the
known names and suggests the nearest ones.

A package adds to a kind through the kind's entry-point group, e.g. in its ``pyproject.toml``::

    [project.entry-points."deltabench.methods"]
    mine = "my_package.my_module:MyMethod"

Groups: ``deltabench.methods``, ``deltabench.metrics``, ``deltabench.references``,
``deltabench.domains``. This module imports nothing of deltabench at import time (its targets
and base classes are strings), so every layer may use it.
"""

from __future__ import annotations

import difflib
import importlib
from importlib import metadata


def load_target(target: str):
    """``"package.module:attr"`` -> the object."""
    mod, _, attr = target.partition(":")
    if not mod or not attr:
        raise ValueError(f"{target!r}: a registry target is 'module:attribute'")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class Registry:
    """Names of one ``kind`` -> classes (subclasses of ``base``, a ``"module:Class"`` string).

    Lookup order: ``builtins`` (``"module:attr"``, in the order given: for metrics, the table's
    column order), :meth:`register` (at run time), then the entry points of ``group``.
    ``aliases`` are names that stand for several (``styleclip``: its three methods).
    """

    def __init__(
        self,
        kind: str,
        base: str | None,
        group: str | None,
        builtins: dict[str, str],
        aliases: dict[str, tuple[str, ...]] | None = None,
    ):
        self.kind, self.base, self.group = kind, base, group
        self.builtins = dict(builtins)
        self.aliases = dict(aliases or {})
        self.registered: dict[str, object] = {}

    # --- names ---------------------------------------------------------------------------
    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        if self.group is None:
            return {}
        return {ep.name.lower(): ep for ep in metadata.entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every name that resolves: built-in, registered, then installed entry points."""
        return list(dict.fromkeys([*self.builtins, *self.registered, *self.entry_points()]))

    def __contains__(self, name: str) -> bool:
        return str(name).strip().lower() in self.names()

    def unknown(self, name: str, extra: str = "") -> ValueError:
        """The error for a name of this kind that resolves to nothing: the known names and the
        nearest ones (did you mean)."""
        known = self.names() + sorted(self.aliases)
        close = difflib.get_close_matches(str(name).lower(), known, n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        return ValueError(f"unknown {self.kind} {name!r}{extra}{hint}; registered {self.kind}s: {known}")

    def expand(self, spec) -> list[str]:
        """``"a,alias"`` or a list -> known names, aliases expanded, order kept, each once."""
        names = spec.split(",") if isinstance(spec, str) else list(spec)
        out: list[str] = []
        for raw in names:
            n = str(raw).strip().lower()
            if not n:
                continue
            known_now = self.names()
            for m in self.aliases.get(n, (n,)):
                if m not in known_now:
                    raise self.unknown(m, f" (from {n!r})" if m != n else "")
                if m not in out:
                    out.append(m)
        if not out:
            raise ValueError(f"no {self.kind} named in {spec!r}; registered {self.kind}s: {self.names()}")
        return out

    # --- adding and resolving --------------------------------------------------------------
    def base_class(self) -> type | None:
        return load_target(self.base) if self.base else None

    def check(self, name: str, target) -> type:
        """``target`` if it is a subclass of the kind's base, else a clear error."""
        base = self.base_class()
        if base is not None and not (isinstance(target, type) and issubclass(target, base)):
            raise ValueError(f"{self.kind} {name!r} is {target!r}, not a subclass of {self.base.replace(':', '.')}")
        return target

    def register(self, name: str, target) -> None:
        """Make ``target`` (a class, or ``"module:Class"``) resolvable as ``name``."""
        key = str(name).strip().lower()
        if not key or "," in key:
            raise ValueError(f"{self.kind} name {name!r}: give a non-empty name without commas")
        if key in self.builtins or key in self.aliases:
            raise ValueError(f"{self.kind} name {name!r} is a built-in {self.kind}; choose another name")
        if not isinstance(target, str):
            base = self.base_class()
            if base is not None and not (isinstance(target, type) and issubclass(target, base)):
                raise ValueError(
                    f"register({name!r}, ...): give a subclass of {self.base.replace(':', '.')}, got {target!r}"
                )
        self.registered[key] = target

    def get(self, name: str):
        """The class registered as ``name`` (one name, not an alias)."""
        key = str(name).strip().lower()
        if key in self.builtins:
            return self.check(key, load_target(self.builtins[key]))
        target = self.registered.get(key)
        if target is None:
            eps = self.entry_points()
            if key not in eps:
                raise self.unknown(name)
            try:
                target = eps[key].load()
            except Exception as e:  # noqa: BLE001 - a broken plugin is the user's to fix: say which
                raise ValueError(
                    f"{self.kind} {key!r} (entry point of group {self.group!r}) could not be "
                    f"loaded: {type(e).__name__}: {e}"
                ) from None
        if isinstance(target, str):
            target = load_target(target)
        return self.check(key, target)


METHODS = Registry(
    "method",
    "deltabench.methods:EditMethod",
    "deltabench.methods",
    {
        "deltaedit": "deltaedit.method:DeltaEdit",
        "deltaedit-naive": "deltaedit.method:DeltaEditNaive",
        "styleclip-op": "baselines.op:StyleCLIPOptimization",
        "styleclip-lm": "baselines.lm:StyleCLIPMapper",
        "styleclip-gd": "baselines.gd:StyleCLIPGlobal",
        "tedigan": "baselines.tedigan:TediGAN",
    },
    aliases={"styleclip": ("styleclip-op", "styleclip-lm", "styleclip-gd")},
)

# In the tables' column order; each class declares its key, label and direction.
METRICS = Registry(
    "metric",
    "deltabench.metrics.base:Metric",
    "deltabench.metrics",
    {
        "fid": "deltabench.metrics.fid:FrechetDistance",
        "kid": "deltabench.metrics.fid:KernelDistance",
        "psnr": "deltabench.metrics.image:PSNR",
        "ssim": "deltabench.metrics.image:SSIM",
        "ids": "deltabench.metrics.identity:IdentitySimilarity",
        "clip_score": "deltabench.metrics.clip_score:ClipScore",
        "clip_direction": "deltabench.metrics.clip_score:DirectionalClipScore",
        "manipulation_accuracy": "deltabench.metrics.attributes:ManipulationAccuracy",
        "disentanglement": "deltabench.metrics.attributes:Disentanglement",
        "identity_param_error": "deltabench.metrics.attributes:IdentityParamError",
        "identity_regression": "deltabench.metrics.attributes:IdentityRegression",
    },
)

REFERENCES = Registry(
    "reference",
    "deltabench.references:Reference",
    "deltabench.references",
    {
        "inversion": "deltabench.references:Inversion",
        "oracle-edit": "deltabench.references:OracleEdit",
    },
)

# Sources of domains, asked in order which one serves a ``--world`` name (``claims``); the
# synthetic worlds come last, as they take any other name (a built-in world or a config path).
DOMAINS = Registry(
    "domain source",
    "deltabench.domainbase:DomainSource",
    "deltabench.domains",
    {
        "real": "deltabench.real.domain:RealDomains",
        "world": "deltabench.domain:SyntheticWorlds",
    },
)
