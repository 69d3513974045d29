"""Captions, prompts and the editing prompt set of the synthfaces world.

Every caption is made from a face's parameters, so the world knows exactly which
attributes a text names. Three caption forms, mixed in training:

- *full compact*: every attribute in one fixed order ("blond long hair smiling glasses
  shaven blue background light skin large eyes wide face"). A prototype measured that
  captions naming a random subset let the coarse attributes (hair, background) separate a
  contrastive batch, and the fine ones (smile, beard, eye size, face width) stayed at chance;
  always naming everything fixed it.
- *full natural*: every attribute in an English sentence ("smiling shaven wide face with
  long blond hair, glasses, light skin and large eyes on a blue background").
- *short*: zero to three attributes ("face with glasses", "smiling face", "face with a
  beard"), so the editing prompts the benchmark uses are in distribution for the world's
  CLIP; the prototype found one-phrase prompts out of distribution when it trained on full
  captions only.

Each body is wrapped in a prompt template ("a photo of a {}", ...), the world's analogue
of CLIP's ImageNet templates (:func:`templates`).

**Held-out split.** A word-level model cannot meet a synonym it never saw, so
``split='heldout'`` means new *sentence structures over known words*: full captions in the
reverse attribute order, short captions with the attribute before the noun ("glasses on
a smiling face", "face grinning"), and wrapper templates in combinations training never
uses ("the {}", "a photo of the {}"). No held-out caption can be produced by the training
split (tested), and every word of both splits is in :func:`vocabulary` (tested).
"""

from __future__ import annotations

import re

import numpy as np

from deltabench.world.faces.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, FaceParams, attribute, sample_params
from deltabench.world.kind import EditPrompt, positive_matrix  # noqa: F401 - part of this module's API

SPLITS = ("train", "heldout")

# Words per (attribute, value). Synonyms are picked at random in training captions.
_HAIR_COLOR = {"black": ("black",), "brown": ("brown",), "blond": ("blond", "blonde"), "red": ("red",)}
_HAIR_LENGTH = {"short": ("short",), "long": ("long",)}
_SMILE = {"neutral": ("neutral", "serious"), "smiling": ("smiling", "grinning")}
# Distinct words per value on purpose: the prototype's "no beard" shared "no" with
# "no glasses" and its CLIP called beards on beardless faces.
_BEARD_ADJ = {"shaven": ("shaven", "beardless"), "beard": ("bearded",)}
_BEARD_COMPACT = {"shaven": ("shaven", "beardless"), "beard": ("beard", "bearded")}
_GLASSES_ON = ("glasses", "eyeglasses")
_GLASSES_OFF_COMPACT = ("no glasses",)
_GLASSES_OFF_SHORT = ("without glasses",)
_BACKGROUND = {"blue": ("blue",), "green": ("green",), "purple": ("purple",), "yellow": ("yellow",)}
_SKIN = {"light": ("light", "pale"), "medium": ("medium", "tan"), "dark": ("dark",)}
_EYES = {"small": ("small",), "large": ("large", "big")}
_WIDTH = {"narrow": ("narrow", "thin"), "wide": ("wide", "broad")}

# The world's prompt templates (analogue of CLIP's 79 ImageNet templates). Held-out ones
# reuse known words in combinations the training split never produces.
_TRAIN_TEMPLATES = (
    "{}",
    "a {}",
    "a photo of a {}",
    "a picture of the {}",
    "a drawing of a {}",
    "an image of a {}",
    "a rendering of the {}",
    "a cartoon {}",
)
_HELDOUT_TEMPLATES = (
    "the {}",
    "a photo of the {}",
    "a drawing of the {}",
    "an image of the {}",
    "a picture of a {}",
    "the cartoon {}",
)
# Attributes that can be an adjective before "face" in short captions.
_ADJ_ATTRS = ("smile", "beard", "face_width")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def templates(split: str = "train") -> list[str]:
    """The world's prompt templates (``'{}'`` formats) used to average a text embedding."""
    _check_split(split)
    return list(_TRAIN_TEMPLATES if split == "train" else _HELDOUT_TEMPLATES)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _pick(rng: np.random.Generator | None, options: tuple[str, ...]) -> str:
    return options[0] if rng is None else options[int(rng.integers(len(options)))]


# --- phrase builders: one value -> words -------------------------------------------------


def _compact(name: str, v: str, rng) -> str:
    if name == "hair_color":
        return _pick(rng, _HAIR_COLOR[v])
    if name == "hair_length":
        return _pick(rng, _HAIR_LENGTH[v])
    if name == "smile":
        return _pick(rng, _SMILE[v])
    if name == "glasses":
        return _pick(rng, _GLASSES_ON if v == "glasses" else _GLASSES_OFF_COMPACT)
    if name == "beard":
        return _pick(rng, _BEARD_COMPACT[v])
    if name == "background":
        return f"{_pick(rng, _BACKGROUND[v])} background"
    if name == "skin":
        return f"{_pick(rng, _SKIN[v])} skin"
    if name == "eye_size":
        return f"{_pick(rng, _EYES[v])} eyes"
    if name == "face_width":
        return _pick(rng, _WIDTH[v])
    raise KeyError(name)


def _full_compact(vals: dict[str, str], rng, reverse: bool) -> str:
    hair = f"{_compact('hair_color', vals['hair_color'], rng)} {_compact('hair_length', vals['hair_length'], rng)} hair"
    parts = [
        hair,
        _compact("smile", vals["smile"], rng),
        _compact("glasses", vals["glasses"], rng),
        _compact("beard", vals["beard"], rng),
        _compact("background", vals["background"], rng),
        _compact("skin", vals["skin"], rng),
        _compact("eye_size", vals["eye_size"], rng),
        f"{_compact('face_width', vals['face_width'], rng)} face",
    ]
    if reverse:
        hair = f"{_compact('hair_length', vals['hair_length'], rng)} {_compact('hair_color', vals['hair_color'], rng)} hair"
        parts = parts[::-1]
        parts[-1] = hair
    return " ".join(parts)


def _full_natural(vals: dict[str, str], rng) -> str:
    adjs = " ".join(
        _pick(rng, d[vals[n]]) for n, d in (("smile", _SMILE), ("beard", _BEARD_ADJ), ("face_width", _WIDTH))
    )
    hair = f"{_pick(rng, _HAIR_LENGTH[vals['hair_length']])} {_pick(rng, _HAIR_COLOR[vals['hair_color']])} hair"
    glasses = _pick(rng, _GLASSES_ON if vals["glasses"] == "glasses" else _GLASSES_OFF_COMPACT)
    skin = f"{_pick(rng, _SKIN[vals['skin']])} skin"
    eyes = f"{_pick(rng, _EYES[vals['eye_size']])} eyes"
    bg = _pick(rng, _BACKGROUND[vals["background"]])
    return f"{adjs} face with {hair}, {glasses}, {skin} and {eyes} on a {bg} background"


def _short_parts(vals: dict[str, str], rng) -> tuple[list[str], list[str], list[str], str | None]:
    """Split named values into (adjectives, with-nouns, without-nouns, background colour)."""
    adjs, withs, withouts, bg = [], [], [], None
    hair = [n for n in ("hair_length", "hair_color") if n in vals]
    if hair:
        words = [_pick(rng, (_HAIR_LENGTH if n == "hair_length" else _HAIR_COLOR)[vals[n]]) for n in hair]
        withs.append(" ".join(words) + " hair")
    for name in ("smile", "face_width"):
        if name in vals:
            adjs.append(_pick(rng, (_SMILE if name == "smile" else _WIDTH)[vals[name]]))
    if "beard" in vals:
        # "a beard" reads as the natural edit prompt; the shaven value has no noun form.
        if vals["beard"] == "beard" and (rng is None or rng.random() < 0.5):
            withs.append("a beard")
        else:
            adjs.append(_pick(rng, _BEARD_ADJ[vals["beard"]]))
    if "glasses" in vals:
        if vals["glasses"] == "glasses":
            withs.append(_pick(rng, _GLASSES_ON))
        else:
            withouts.append("glasses")
    if "skin" in vals:
        withs.append(f"{_pick(rng, _SKIN[vals['skin']])} skin")
    if "eye_size" in vals:
        withs.append(f"{_pick(rng, _EYES[vals['eye_size']])} eyes")
    if "background" in vals:
        bg = _pick(rng, _BACKGROUND[vals["background"]])
    return adjs, withs, withouts, bg


def _short_train(vals: dict[str, str], rng) -> str:
    adjs, withs, withouts, bg = _short_parts(vals, rng)
    out = " ".join(adjs + ["face"])
    if withs:
        out += " with " + " and ".join(withs)
    if withouts:
        out += " without " + " and ".join(withouts)
    if bg:
        out += f" on a {bg} background"
    return out


def _short_heldout(vals: dict[str, str], rng) -> str:
    # The attribute comes before the noun ("glasses on a face") or after it as a bare
    # adjective ("face grinning"): word orders the training split never uses.
    adjs, withs, withouts, bg = _short_parts(vals, rng)
    nouns = withs + [f"no {w}" for w in withouts] + ([f"{bg} background"] if bg else [])
    if nouns:
        return " and ".join(nouns) + " on a " + " ".join(adjs + ["face"])
    if adjs:
        return "face " + " ".join(adjs)
    return "face"


def _values(params: FaceParams, i: int) -> dict[str, str]:
    return {a.name: a.values[int(params.attrs[i, j])] for j, a in enumerate(ATTRIBUTES)}


def captions_with_mentions(
    params: FaceParams,
    rng: np.random.Generator,
    split: str = "train",
    p_full: float = 0.5,
    max_short: int = 3,
) -> tuple[list[str], np.ndarray]:
    """Captions and which attributes each one names: ``(texts [N], mentioned bool [N, A])``.

    With probability ``p_full`` a caption names every attribute (compact or natural form,
    half each), otherwise 0..``max_short`` attributes drawn uniformly (0 = just "face",
    rare: it teaches the text tower that the bare source prompt is the centroid).
    """
    _check_split(split)
    n, A = params.attrs.shape
    texts: list[str] = []
    mentioned = np.zeros((n, A), dtype=bool)
    tmpl = _TRAIN_TEMPLATES if split == "train" else _HELDOUT_TEMPLATES
    for i in range(n):
        vals = _values(params, i)
        if rng.random() < p_full:
            mentioned[i] = True
            if split == "heldout":
                body = _full_compact(vals, rng, reverse=True)
            elif rng.random() < 0.5:
                body = _full_compact(vals, rng, reverse=False)
            else:
                body = _full_natural(vals, rng)
        else:
            k = 0 if rng.random() < 0.03 else int(rng.integers(1, max_short + 1))
            names = rng.choice(A, size=k, replace=False) if k else np.zeros(0, dtype=int)
            mentioned[i, names] = True
            sub = {ATTRIBUTE_NAMES[j]: vals[ATTRIBUTE_NAMES[j]] for j in sorted(names)}
            body = _short_train(sub, rng) if split == "train" else _short_heldout(sub, rng)
        texts.append(_pick(rng, tmpl).format(body))
    return texts, mentioned


def caption(params: FaceParams, rng: np.random.Generator, split: str = "train") -> list[str]:
    """One random caption per face (see the module docstring for the forms and splits)."""
    return captions_with_mentions(params, rng, split)[0]


def attribute_prompts(attr_name: str, style: str = "full", n: int = 24, seed: int = 0) -> dict[str, list[str]]:
    """Zero-shot prompts per value of one attribute: ``{value: [text, ...]}``.

    ``style='full'``: ``n`` full captions (both training forms) with that value and random
    other values, so averaging cancels the rest (the prototype's working protocol).
    ``style='short'``: every training-split short phrasing that names only that value,
    e.g. "face with glasses", "face with eyeglasses" (the editing prompts' form).
    """
    att = attribute(attr_name)
    out: dict[str, list[str]] = {}
    if style == "full":
        rng = np.random.default_rng(seed)
        for vi, v in enumerate(att.values):
            p = sample_params(n, rng).with_attr(attr_name, vi)
            texts = []
            for i in range(n):
                vals = _values(p, i)
                texts.append(_full_compact(vals, rng, False) if i % 2 == 0 else _full_natural(vals, rng))
            out[v] = texts
    elif style == "short":
        for v in att.values:
            texts = set()
            rng = np.random.default_rng(seed)
            for _ in range(64):  # enumerates every synonym choice for one value
                texts.add(_short_train({attr_name: v}, rng))
            out[v] = sorted(texts)
    else:
        raise ValueError(f"style must be 'full' or 'short', got {style!r}")
    return out


def _edit_prompts(split: str) -> tuple[EditPrompt, ...]:
    out = []
    for a in ATTRIBUTES:
        for v in a.values:
            if split == "train":
                # First synonym, and the "a beard" noun form: the phrasing a user would type.
                tgt = "face with a beard" if (a.name, v) == ("beard", "beard") else _short_train({a.name: v}, None)
                out.append(EditPrompt("face", tgt, a.name, v))
            else:
                out.append(EditPrompt("the face", _short_heldout({a.name: v}, None), a.name, v))
    return tuple(out)


# Every value of every attribute, from the neutral source "face" (StyleCLIP / DeltaEdit
# convention: source "face", target "face with glasses").
EDIT_PROMPTS: tuple[EditPrompt, ...] = _edit_prompts("train")
HELDOUT_EDIT_PROMPTS: tuple[EditPrompt, ...] = _edit_prompts("heldout")


def vocabulary() -> list[str]:
    """Every word any caption, prompt or template of either split can produce (sorted)."""
    pieces: list[str] = ["face with without and on a background hair skin eyes no glasses beard"]
    for d in (_HAIR_COLOR, _HAIR_LENGTH, _SMILE, _BEARD_ADJ, _BEARD_COMPACT, _BACKGROUND, _SKIN, _EYES, _WIDTH):
        for opts in d.values():
            pieces.extend(opts)
    pieces += list(_GLASSES_ON) + list(_GLASSES_OFF_COMPACT) + list(_GLASSES_OFF_SHORT)
    pieces += [t.replace("{}", " ") for t in _TRAIN_TEMPLATES + _HELDOUT_TEMPLATES]
    for e in EDIT_PROMPTS + HELDOUT_EDIT_PROMPTS:
        pieces += [e.source, e.target]
    return sorted({w for p in pieces for w in _words(p)})
