"""The synthfaces parameter schema: what a face is made of.

A face is two arrays: discrete attributes ``attrs: int64 [N, A]`` (one column per
:data:`ATTRIBUTES` entry, value index into its ``values``) and continuous identity
parameters ``ident: float32 [N, P]`` in [-1, 1] (one column per :data:`IDENTITY_PARAMS`).
Identity (who the person is) is the continuous part only: the same person can smile,
wear glasses, grow a beard or dye their hair.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from deltabench.world.kind import Attribute, Params

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("hair_color", ("black", "brown", "blond", "red")),
    Attribute("hair_length", ("short", "long")),
    Attribute("smile", ("neutral", "smiling")),
    Attribute("glasses", ("none", "glasses")),
    Attribute("beard", ("shaven", "beard")),
    Attribute("background", ("blue", "green", "purple", "yellow")),
    Attribute("skin", ("light", "medium", "dark")),
    Attribute("eye_size", ("small", "large")),
    Attribute("face_width", ("narrow", "wide")),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)

IDENTITY_PARAMS: tuple[str, ...] = (
    "face_height",  # taller vs shorter head ellipse
    "chin",  # rounded vs pointed jaw
    "eye_spacing",  # distance between the eyes
    "nose_length",
    "nose_width",
    "brow_height",  # eyebrow distance above the eyes
)


def attribute(name: str) -> Attribute:
    for a in ATTRIBUTES:
        if a.name == name:
            return a
    raise KeyError(f"unknown attribute {name!r}; known: {list(ATTRIBUTE_NAMES)}")


def attribute_index(name: str) -> int:
    attribute(name)
    return ATTRIBUTE_NAMES.index(name)


class FaceParams(Params):
    """A batch of faces. ``attrs: int64 [N, A]``, ``ident: float32 [N, P]`` in [-1, 1]."""

    ATTRIBUTES: ClassVar[tuple[Attribute, ...]] = ATTRIBUTES
    CONTINUOUS: ClassVar[tuple[str, ...]] = IDENTITY_PARAMS


def sample_identities(n: int, rng: np.random.Generator) -> np.ndarray:
    """``ident: float32 [n, P]`` uniform in [-1, 1]."""
    return rng.uniform(-1.0, 1.0, size=(n, len(IDENTITY_PARAMS))).astype(np.float32)


def sample_attrs(n: int, rng: np.random.Generator) -> np.ndarray:
    cols = []
    for a in ATTRIBUTES:
        cols.append(rng.choice(a.n, size=n, p=a.probs))
    return np.stack(cols, axis=1).astype(np.int64)


def sample_params(n: int, rng: np.random.Generator, ident: np.ndarray | None = None) -> FaceParams:
    """Random faces. Pass ``ident [n, P]`` to fix who they are and randomise the rest."""
    attrs = sample_attrs(n, rng)
    if ident is None:
        ident = sample_identities(n, rng)
    return FaceParams(attrs, np.asarray(ident, dtype=np.float32))


def encoding_dim() -> int:
    return sum(a.n for a in ATTRIBUTES) + len(IDENTITY_PARAMS)


def encode_params(params: FaceParams, dim: int) -> np.ndarray:
    """Fixed code fed to the world generator's mapping network: ``float32 [N, dim]``.

    One ±1 block per attribute (+1 at the value, -1 elsewhere), then the identity
    parameters, zero-padded to ``dim``. A prototype measured that this trains far faster
    than regressing from Gaussian z: the mapping MLP cannot cheaply learn step functions.
    """
    need = encoding_dim()
    if dim < need:
        raise ValueError(f"encoding needs at least {need} dims, the generator has style_dim={dim}")
    n = len(params)
    out = np.zeros((n, dim), dtype=np.float32)
    col = 0
    for j, a in enumerate(ATTRIBUTES):
        block = -np.ones((n, a.n), dtype=np.float32)
        block[np.arange(n), params.attrs[:, j]] = 1.0
        out[:, col : col + a.n] = block
        col += a.n
    out[:, col : col + len(IDENTITY_PARAMS)] = params.ident
    return out
