"""Versioned configs: one declared rule for what the hash of a cached result covers.

A config that keys a cache (a world, a world stage, a method's fit) declares a :class:`Schema`:

- ``first``: the options of its first version;
- ``added``: one entry per later version, mapping each option that version added to the value
  it had when it was introduced (the behaviour before the option existed);
- ``not_hashed``: options that do not change results (a batch size for memory);
- ``follows``: options that only act through another one (``identity_share`` does nothing
  while ``identity_weight`` is 0), hashed exactly when that one is.

Its hashed form (:meth:`Schema.hashed`) is its options minus those not hashed, minus every added
option while it equals its introduction value. So adding an option with a default changes no
existing hash (old caches stay valid), while a non-default value, or a default changed later,
does. An option the schema does not declare is an error: at import for a dataclass
(:func:`versioned`), at hashing time for a mapping; never a silent change of every hash.

Every cache record written beside a cached result carries the schema versions it was written
under (:func:`stamp`); :func:`check_record` refuses a record of a newer version than this code
knows. A record without versions predates them: the hash or config comparison decides.

A leaf module (no deltabench imports), like :mod:`deltabench.parse`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

SCHEMA_KEY = "schema"  # the key of the versions in a cache record
_REGISTRY: dict[str, Schema] = {}


class _Absent:
    """The introduction value of an option that was simply missing before (a mapping key):
    equal to no value, so the option is hashed whenever it is present."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


@dataclasses.dataclass(frozen=True)
class Either:
    """Several introduction values that all meant the old behaviour (``None``: "the domain
    decides", resolved before hashing, and the resolved ``False``)."""

    values: tuple

    def matches(self, v) -> bool:
        return any(_same(v, x) for x in self.values)


def either(*values) -> Either:
    return Either(tuple(values))


def _same(a, b) -> bool:
    if isinstance(b, Either):
        return b.matches(a)
    if b is ABSENT:
        return False
    if isinstance(a, bool) or isinstance(b, bool):  # False is not 0, True is not 1
        return a is b
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return list(a) == list(b)
    return a == b


class Schema:
    """The declared history of one hashed config (see the module docstring)."""

    def __init__(
        self,
        name: str,
        first: Iterable[str],
        added: Iterable[Mapping[str, Any]] = (),
        not_hashed: Iterable[str] = (),
        follows: Mapping[str, str] | None = None,
    ):
        self.name = name
        self.first = tuple(first)
        self.added = tuple(dict(a) for a in added)
        self.not_hashed = tuple(not_hashed)
        self.follows = dict(follows or {})
        self.introduced = {k: v for a in self.added for k, v in a.items()}
        names = [*self.first, *(k for a in self.added for k in a), *self.not_hashed]
        dup = sorted({k for k in names if names.count(k) > 1})
        if dup:
            raise TypeError(f"schema {name!r}: {dup} declared twice")
        if any(not a for a in self.added):
            raise TypeError(f"schema {name!r}: a version in 'added' adds no option")
        for k, lead in self.follows.items():
            if k not in self.introduced or lead not in self.introduced:
                raise TypeError(f"schema {name!r}: follows {k!r} -> {lead!r}: both must be added options")
        if name in _REGISTRY:
            raise TypeError(f"schema {name!r} is declared twice")
        _REGISTRY[name] = self

    @property
    def version(self) -> int:
        """1 for the first version, +1 for each entry of ``added``."""
        return 1 + len(self.added)

    @property
    def options(self) -> frozenset[str]:
        return frozenset((*self.first, *self.introduced, *self.not_hashed))

    def check_options(self, names: Iterable[str], where: str) -> None:
        """Every option in ``names`` is declared (and, for a dataclass, every declared one exists)."""
        names = set(names)
        new = sorted(names - self.options)
        if new:
            raise TypeError(
                f"{where}: options {new} are not declared in schema {self.name!r} (deltabench.confighash): "
                f"add them to a new entry of 'added' with the value each had before it existed (or to "
                f"'not_hashed' if it never changes results), so existing cache hashes stay valid"
            )

    def present(self, values: Mapping[str, Any]) -> dict:
        """``values`` without the added options that sit at their introduction value (order kept);
        not-hashed options stay."""
        self.check_options(values, f"config {self.name!r}")
        dropped = {
            k
            for k, v in values.items()
            if k in self.introduced and k not in self.follows and _same(v, self.introduced[k])
        }
        dropped |= {k for k, lead in self.follows.items() if lead in dropped or lead not in values}
        return {k: v for k, v in values.items() if k not in dropped}

    def hashed(self, values: Mapping[str, Any]) -> dict:
        """What the hash covers: :meth:`present` without the options that do not change results."""
        return {k: v for k, v in self.present(values).items() if k not in self.not_hashed}

    def __repr__(self) -> str:
        return f"Schema({self.name!r}, version {self.version})"


def versioned(schema: Schema):
    """Class decorator for a config dataclass: its fields must be exactly ``schema``'s options
    (checked at import), and ``cls.SCHEMA`` is set."""

    def wrap(cls):
        names = {f.name for f in dataclasses.fields(cls)}
        schema.check_options(names, cls.__qualname__)
        missing = sorted(schema.options - names)
        if missing:
            raise TypeError(f"{cls.__qualname__}: schema {schema.name!r} declares {missing}, which are not fields")
        cls.SCHEMA = schema
        return cls

    return wrap


def plain(x):
    """A config value as JSON data: dataclasses by their ``to_dict`` (else their fields), tuples
    as lists, mapping keys as strings (sorted)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        if hasattr(x, "to_dict"):
            return x.to_dict()
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Mapping):
        try:
            items = sorted(x.items())
        except TypeError:  # keys of mixed types
            items = sorted(x.items(), key=lambda kv: str(kv[0]))
        return {str(k): plain(v) for k, v in items}
    if isinstance(x, (tuple, list)):
        return [plain(v) for v in x]
    return x


def to_dict(cfg) -> dict:
    """A versioned config dataclass as its hashed JSON form (``cfg.SCHEMA``)."""
    return cfg.SCHEMA.hashed({f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)})


def digest(obj, n: int, compact: bool = True) -> str:
    """The first ``n`` hex digits of sha256 over ``obj`` as canonical JSON (sorted keys;
    ``compact=False``: json's default separators, the spelling some caches were keyed with)."""
    seps = (",", ":") if compact else None
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=seps).encode()).hexdigest()[:n]


def schema(name: str) -> Schema:
    return _REGISTRY[name]


def versions(*names: str) -> dict[str, int]:
    """``{schema name: version}`` for the named schemas (an unknown name is a KeyError)."""
    return {n: _REGISTRY[n].version for n in names}


def stamp(record: dict, *names: str) -> dict:
    """``record`` with the versions of the named schemas under :data:`SCHEMA_KEY`."""
    return {**record, SCHEMA_KEY: versions(*names)}


def unstamped(record: Mapping) -> dict:
    """``record`` without its versions (to compare it with a key)."""
    return {k: v for k, v in record.items() if k != SCHEMA_KEY}


def check_record(record: Mapping, where: str) -> None:
    """Refuse a cache record written under a newer version of a schema than this code knows
    (its options would be read as their introduction values, silently). Schemas this code does
    not declare are not checked; a record without versions predates them and passes."""
    got = record.get(SCHEMA_KEY) or {}
    if not isinstance(got, Mapping):
        raise ValueError(f"{where}: {SCHEMA_KEY!r} must map schema names to versions, got {got!r}")
    newer = {n: v for n, v in got.items() if n in _REGISTRY and not (isinstance(v, int) and v <= _REGISTRY[n].version)}
    if newer:
        known = {n: _REGISTRY[n].version for n in newer}
        raise ValueError(
            f"{where} was written by a newer deltabench (schema versions {newer}; this one knows "
            f"{known}): upgrade deltabench, or delete the file to recompute it"
        )
