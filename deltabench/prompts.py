"""Edit prompts: the ``Prompt`` record, prompt files (CSV / JSON) and prompt checks.

A leaf module (it imports nothing of deltabench), so domains, methods, the runner and the API
all use one definition. The attribute and value a prompt names are checked against the domain's
own attribute schema (:func:`check_attributes`, with ``domain.attributes``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Prompt:
    source: str
    target: str
    attribute: str | None = None
    value: str | None = None


def load_prompts(path: str | Path) -> tuple[Prompt, ...]:
    """Prompts from a CSV (``source,target[,attribute,value]``, header optional) or JSON list."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"prompts file {p} is a directory; give a CSV or JSON prompts file")
    if not p.is_file():
        raise FileNotFoundError(f"prompts file {p} does not exist")
    try:
        text = p.read_text().strip()
    except UnicodeDecodeError:
        raise ValueError(
            f"prompts file {p} is not a text file (it holds binary data); give a CSV or JSON "
            f"file of source,target prompts"
        ) from None
    if not text:
        raise ValueError(f"prompts file {p} is empty; give one 'source,target' pair per line")
    if p.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"prompts file {p}: not valid JSON ({e})") from None
        shape = (
            'a JSON list of objects such as [{"source": "face", "target": "smiling face"}] '
            "(optional keys: attribute, value)"
        )
        if not isinstance(items, list):
            raise ValueError(f"prompts file {p} holds a JSON {type(items).__name__}; give {shape}")
        rows = []
        for i, it in enumerate(items, 1):
            if not isinstance(it, dict):
                raise ValueError(f"prompts file {p}, prompt {i}: {it!r} is not an object; give {shape}")
            missing = [k for k in ("source", "target") if not isinstance(it.get(k), str)]
            if missing:
                raise ValueError(f"prompts file {p}, prompt {i}: no text for {missing}; give {shape}")
            unknown = set(it) - {"source", "target", "attribute", "value"}
            if unknown:
                raise ValueError(f"prompts file {p}, prompt {i}: unknown keys {sorted(unknown)}; give {shape}")
            rows.append((it["source"], it["target"], it.get("attribute"), it.get("value")))
    else:
        reader = list(csv.reader(io.StringIO(text)))
        if reader and [c.strip().lower() for c in reader[0][:2]] == ["source", "target"]:
            reader = reader[1:]
        rows = []
        for i, r in enumerate(reader, 1):
            if not r or not any(c.strip() for c in r):
                continue
            if len(r) < 2:
                raise ValueError(f"prompts file {p}, line {i}: expected 'source,target[,attribute,value]', got {r}")
            rows.append((r[0], r[1], r[2] if len(r) > 2 and r[2] else None, r[3] if len(r) > 3 and r[3] else None))
    out = []
    for i, (s, t, a, v) in enumerate(rows, 1):
        s, t = str(s).strip(), str(t).strip()
        if not s or not t:
            raise ValueError(f"prompts file {p}, prompt {i}: empty source or target text")
        if s.lower() == t.lower():
            raise ValueError(f"prompts file {p}, prompt {i}: source and target are the same ({s!r})")
        out.append(Prompt(s, t, a, v))
    if not out:
        raise ValueError(f"prompts file {p} holds no prompts")
    return tuple(out)


def check_attributes(prompts, attributes, where: str | None = None, domain: str = "the world") -> None:
    """Every ``attribute``/``value`` a prompt names must be one of ``attributes`` (the domain's
    ground-truth schema: ``Attribute`` records with ``name`` and ``values``; empty where the domain
    has none). ``where``: the prompts file, named in the error."""
    names = [x.name for x in attributes]
    for i, p in enumerate(prompts, 1):
        a, v = p.attribute, p.value
        if a is None:
            continue
        at = f"prompts file {where}, prompt {i}" if where else f"prompt {i}"
        if not names:
            raise ValueError(
                f"{at}: {domain} has no ground-truth attributes, so it cannot name attribute "
                f"{a!r}; leave the attribute and value columns empty"
            )
        if a not in names:
            raise ValueError(
                f"{at}: unknown attribute {a!r}; {domain}'s attributes are {names} (or leave the column empty)"
            )
        values = list(attributes[names.index(a)].values)
        if v not in values:
            raise ValueError(f"{at}: attribute {a!r} has no value {v!r}; its values are {values}")


def check_prompts(source: str, target: str) -> tuple[str, str]:
    for what, t in (("source", source), ("target", target)):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"the {what} prompt is empty ({t!r}); give a text such as 'face' or 'face with glasses'")
    s, t = " ".join(source.split()), " ".join(target.split())
    if s.lower() == t.lower():
        raise ValueError(f"source and target prompts are the same ({s!r}): there is no edit direction")
    return s, t


def as_prompts(prompts) -> tuple[Prompt, ...]:
    """Prompts given as a CSV/JSON file path, a ``Prompt``, a ``(source, target)`` pair, a dict
    ``{"source", "target"[, "attribute", "value"]}``, or a list of any of these."""
    if isinstance(prompts, (str, Path)):
        return load_prompts(prompts)
    if isinstance(prompts, (Prompt, dict)) or (
        isinstance(prompts, tuple) and len(prompts) == 2 and all(isinstance(x, str) for x in prompts)
    ):
        prompts = [prompts]
    out = []
    for i, p in enumerate(prompts, 1):
        if isinstance(p, Prompt):
            q = p
        elif isinstance(p, dict):
            unknown = set(p) - {"source", "target", "attribute", "value"}
            if unknown or "target" not in p:
                raise ValueError(f"prompt {i}: {p!r}: give {{'source', 'target'[, 'attribute', 'value']}}")
            q = Prompt(p.get("source", "face"), p["target"], p.get("attribute"), p.get("value"))
        elif isinstance(p, (tuple, list)) and len(p) in (2, 4) and all(isinstance(x, (str, type(None))) for x in p):
            q = Prompt(*p)
        else:
            raise ValueError(f"prompt {i}: {p!r} is not a (source, target) pair, a dict or a Prompt")
        s, t = check_prompts(q.source, q.target)
        out.append(Prompt(s, t, q.attribute, q.value))
    if not out:
        raise ValueError("no prompts given")
    return tuple(out)
