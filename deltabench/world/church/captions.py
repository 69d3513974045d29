"""Captions, prompts and edit prompts of the church world.

The faces world's lessons (``shared/PROTOTYPE.md``), kept: a small word-level vocabulary; a
*full compact* caption names every attribute in one fixed order ("clear sky summer day red
pointed roof tower white walls two windows brown door church"), so a contrastive batch cannot
ignore the fine attributes; *short* captions name 0..3 of them ("church with a red roof at
sunset"), so the editing prompts are in distribution; distinct words per value (no shared "no").

Held-out split: new sentence structures over known words (the full caption in reverse order, the
attributes before the noun, other templates), never produced by the training split.
"""

from __future__ import annotations

import re

import numpy as np

from deltabench.world.church.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, ChurchParams
from deltabench.world.kind import EditPrompt, sample_attrs

SPLITS = ("train", "heldout")
NOUN = "church"

# Compact words per (attribute, value), in the full caption's fixed order; synonyms at random.
_COMPACT = {
    "sky": {
        "clear": ("clear sky",),
        "cloudy": ("cloudy sky", "overcast sky"),
        "sunset": ("sunset sky",),
        "night": ("night sky", "starry sky"),
    },
    "season": {"summer": ("summer",), "autumn": ("autumn", "fall"), "winter": ("winter", "snowy")},
    "light": {"day": ("day", "daylight"), "dusk": ("dusk", "evening")},
    "roof_color": {"red": ("red",), "blue": ("blue",), "green": ("green",), "black": ("black",)},
    "roof_shape": {"pointed": ("pointed roof", "gable roof"), "dome": ("dome roof", "domed roof")},
    "tower": {"none": ("towerless",), "tower": ("tower", "steeple")},
    "walls": {"white": ("white walls",), "yellow": ("yellow walls",), "brick": ("brick walls", "red brick walls")},
    "windows": {"two": ("two windows",), "four": ("four windows",)},
    "door": {"brown": ("brown door", "wooden door"), "blue": ("blue door",)},
}
# Short phrases: ("with", noun phrase) joins the "with ... and ..." list; ("at", phrase) follows it.
_SHORT = {
    "sky": {
        "clear": (("at", "under a clear sky"),),
        "cloudy": (("at", "under a cloudy sky"),),
        "sunset": (("at", "at sunset"),),
        "night": (("at", "at night"),),
    },
    "season": {
        "summer": (("at", "in summer"),),
        "autumn": (("at", "in autumn"), ("at", "in fall")),
        "winter": (("with", "snow"), ("at", "in winter")),
    },
    "light": {"day": (("at", "in daylight"),), "dusk": (("at", "at dusk"), ("at", "in the evening"))},
    "roof_color": {v: (("with", f"a {v} roof"),) for v in ("red", "blue", "green", "black")},
    "roof_shape": {"pointed": (("with", "a pointed roof"),), "dome": (("with", "a dome"), ("with", "a dome roof"))},
    "tower": {"none": (("with", "no tower"),), "tower": (("with", "a tower"), ("with", "a steeple"))},
    "walls": {
        "white": (("with", "white walls"),),
        "yellow": (("with", "yellow walls"),),
        "brick": (("with", "brick walls"),),
    },
    "windows": {"two": (("with", "two windows"),), "four": (("with", "four windows"),)},
    "door": {"brown": (("with", "a brown door"), ("with", "a wooden door")), "blue": (("with", "a blue door"),)},
}
_TRAIN_TEMPLATES = (
    "{}",
    "a {}",
    "a photo of a {}",
    "a picture of the {}",
    "a drawing of a {}",
    "an image of a {}",
    "a rendering of the {}",
)
_HELDOUT_TEMPLATES = ("the {}", "a photo of the {}", "a drawing of the {}", "an image of the {}", "a picture of a {}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def templates(split: str = "train") -> list[str]:
    _check_split(split)
    return list(_TRAIN_TEMPLATES if split == "train" else _HELDOUT_TEMPLATES)


def _pick(rng, options):
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


def _full_compact(vals: dict[str, str], rng, reverse: bool = False) -> str:
    parts = [_pick(rng, _COMPACT[n][vals[n]]) for n in ATTRIBUTE_NAMES]
    return " ".join((parts[::-1] if reverse else parts) + [NOUN])


def _short_parts(vals: dict[str, str], rng) -> tuple[list[str], list[str]]:
    withs, ats = [], []
    for n in ATTRIBUTE_NAMES:
        if n in vals:
            how, text = _pick(rng, _SHORT[n][vals[n]])
            (withs if how == "with" else ats).append(text)
    return withs, ats


def _short_train(vals: dict[str, str], rng) -> str:
    withs, ats = _short_parts(vals, rng)
    out = NOUN
    if withs:
        out += " with " + " and ".join(withs)
    return " ".join([out, *ats])


def _short_heldout(vals: dict[str, str], rng) -> str:
    # The attributes come before the noun: a word order the training split never uses.
    withs, ats = _short_parts(vals, rng)
    if withs:
        return " ".join([" and ".join(withs) + " on a " + NOUN, *ats])
    return " ".join([*ats, NOUN])


def _values(params: ChurchParams, i: int) -> dict[str, str]:
    return {a.name: a.values[int(params.attrs[i, j])] for j, a in enumerate(ATTRIBUTES)}


def captions_with_mentions(
    params: ChurchParams, rng: np.random.Generator, split: str = "train", p_full: float = 0.5, max_short: int = 3
) -> tuple[list[str], np.ndarray]:
    """Captions and which attributes each names: ``(texts [N], mentioned bool [N, A])``; with
    probability ``p_full`` the full compact caption, else 0..``max_short`` attributes."""
    _check_split(split)
    n, A = params.attrs.shape
    texts: list[str] = []
    mentioned = np.zeros((n, A), dtype=bool)
    tmpl = _TRAIN_TEMPLATES if split == "train" else _HELDOUT_TEMPLATES
    for i in range(n):
        vals = _values(params, i)
        if rng.random() < p_full:
            mentioned[i] = True
            body = _full_compact(vals, rng, reverse=split == "heldout")
        else:
            k = 0 if rng.random() < 0.03 else int(rng.integers(1, max_short + 1))
            names = rng.choice(A, size=k, replace=False) if k else np.zeros(0, dtype=int)
            mentioned[i, names] = True
            sub = {ATTRIBUTE_NAMES[j]: vals[ATTRIBUTE_NAMES[j]] for j in sorted(names)}
            body = _short_train(sub, rng) if split == "train" else _short_heldout(sub, rng)
        texts.append(_pick(rng, tmpl).format(body))
    return texts, mentioned


def attribute_prompts(attr_name: str, style: str = "full", n: int = 24, seed: int = 0) -> dict[str, list[str]]:
    """Zero-shot prompts per value: ``full``: ``n`` full captions with that value and random others;
    ``short``: every training phrasing that names only that value."""
    j = ATTRIBUTE_NAMES.index(attr_name) if attr_name in ATTRIBUTE_NAMES else None
    if j is None:
        raise KeyError(f"unknown attribute {attr_name!r}; known: {list(ATTRIBUTE_NAMES)}")
    att = ATTRIBUTES[j]
    out: dict[str, list[str]] = {}
    if style == "full":
        rng = np.random.default_rng(seed)
        for vi, v in enumerate(att.values):
            attrs = sample_attrs(ATTRIBUTES, n, rng)
            attrs[:, j] = vi
            out[v] = [
                _full_compact({a.name: a.values[int(attrs[i, k])] for k, a in enumerate(ATTRIBUTES)}, rng)
                for i in range(n)
            ]
    elif style == "short":
        for v in att.values:
            out[v] = sorted(
                {_short_train({attr_name: v}, None)}
                | {_short_train({attr_name: v}, np.random.default_rng(seed + r)) for r in range(16)}
            )
    else:
        raise ValueError(f"style must be 'full' or 'short', got {style!r}")
    return out


def _edit_prompts(split: str) -> tuple[EditPrompt, ...]:
    out = []
    for a in ATTRIBUTES:
        for v in a.values:
            if split == "train":  # the first phrasing: what a user would type ("church with snow")
                out.append(EditPrompt(NOUN, _short_train({a.name: v}, None), a.name, v))
            else:
                out.append(EditPrompt(f"the {NOUN}", _short_heldout({a.name: v}, None), a.name, v))
    return tuple(out)


EDIT_PROMPTS: tuple[EditPrompt, ...] = _edit_prompts("train")
HELDOUT_EDIT_PROMPTS: tuple[EditPrompt, ...] = _edit_prompts("heldout")


def vocabulary() -> list[str]:
    """Every word any caption, prompt or template of either split can produce (sorted)."""
    pieces = [NOUN, "with and on the"]
    for d in _COMPACT.values():
        for opts in d.values():
            pieces += list(opts)
    for d in _SHORT.values():
        for opts in d.values():
            pieces += [t for _, t in opts]
    pieces += [t.replace("{}", " ") for t in _TRAIN_TEMPLATES + _HELDOUT_TEMPLATES]
    return sorted({w for p in pieces for w in re.findall(r"[a-z0-9]+", p.lower())})
