"""What a world *kind* is: a renderer with its attribute schema and captions.

A synthetic world = a :class:`WorldKind` (what its scenes are made of, how they are drawn and
described) + the shared training stages (generator, encoder, CLIP, oracle and, where the kind
has one, identity; :mod:`deltabench.world.components`). A world config names its kind with
``"kind"`` (default ``"faces"``, the synthfaces worlds); generic code reaches a kind only
through :func:`get_kind`, never by importing a kind's own modules (a test walks the imports).

A scene is two arrays (:class:`Params`): discrete attributes ``attrs: int64 [N, A]`` (one column
per :attr:`WorldKind.attributes` entry, a value index) and continuous parameters
``ident: float32 [N, P]`` in [-1, 1] (one column per :attr:`WorldKind.continuous`): no caption
names them, so they are what an edit must keep (faces: who the person is; the disentanglement
metrics' identity-parameter error and regression read them).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

# kind name -> the module whose ``KIND`` is that kind (imported on first use).
KINDS: dict[str, str] = {
    "faces": "deltabench.world.faces",
    "church": "deltabench.world.church",
}
from deltabench.config import DEFAULT_KIND  # noqa: E402 - "faces"


@dataclass(frozen=True)
class Attribute:
    name: str
    values: tuple[str, ...]
    # Sampling probabilities; uniform when None. Binary attributes are 50/50 on purpose:
    # a prototype CLIP mis-read a 30 % beard as "no beard" far more often.
    probs: tuple[float, ...] | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    def index(self, value: str) -> int:
        try:
            return self.values.index(value)
        except ValueError:
            raise ValueError(
                f"attribute {self.name!r} has no value {value!r}; choose one of {list(self.values)}"
            ) from None


@dataclass(frozen=True)
class EditPrompt:
    """One editing instruction: ``source`` -> ``target`` sets ``attribute`` to ``value``."""

    source: str
    target: str
    attribute: str
    value: str


@dataclass(frozen=True)
class Params:
    """A batch of scenes of one kind: ``attrs: int64 [N, A]``, ``ident: float32 [N, P]`` in [-1, 1].

    Subclasses set :attr:`ATTRIBUTES` and :attr:`CONTINUOUS` (their kind's schema)."""

    attrs: np.ndarray
    ident: np.ndarray
    ATTRIBUTES: ClassVar[tuple[Attribute, ...]] = ()
    CONTINUOUS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        A, P = len(self.ATTRIBUTES), len(self.CONTINUOUS)
        if self.attrs.ndim != 2 or self.attrs.shape[1] != A:
            raise ValueError(f"attrs must be [N, {A}], got {self.attrs.shape}")
        if self.ident.shape != (self.attrs.shape[0], P):
            raise ValueError(f"ident must be [N, {P}] with N={self.attrs.shape[0]}, got {self.ident.shape}")

    def __len__(self) -> int:
        return self.attrs.shape[0]

    def __getitem__(self, idx):
        a, i = self.attrs[idx], self.ident[idx]
        if a.ndim == 1:
            a, i = a[None], i[None]
        return type(self)(a, i)

    @classmethod
    def _attribute(cls, name: str) -> tuple[int, Attribute]:
        for j, a in enumerate(cls.ATTRIBUTES):
            if a.name == name:
                return j, a
        raise KeyError(f"unknown attribute {name!r}; known: {[a.name for a in cls.ATTRIBUTES]}")

    def with_attr(self, name: str, value: str | int):
        """Copy with one attribute set to ``value`` on every scene."""
        j, att = self._attribute(name)
        v = att.index(value) if isinstance(value, str) else int(value)
        attrs = self.attrs.copy()
        attrs[:, j] = v
        return type(self)(attrs, self.ident.copy())

    def get(self, name: str) -> np.ndarray:
        return self.attrs[:, self._attribute(name)[0]]

    @classmethod
    def concat(cls, items: list):
        return cls(np.concatenate([p.attrs for p in items]), np.concatenate([p.ident for p in items]))


def sample_attrs(attributes: tuple[Attribute, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """``int64 [n, A]``: each column drawn with its attribute's probabilities."""
    return np.stack([rng.choice(a.n, size=n, p=a.probs) for a in attributes], axis=1).astype(np.int64)


def encode_onehot_pm(attributes: tuple[Attribute, ...], params: Params, dim: int) -> np.ndarray:
    """The generator's fixed input code ``float32 [N, dim]``: one ±1 block per attribute (+1 at the
    value, -1 elsewhere), then the continuous parameters, zero-padded to ``dim``. A prototype
    measured that this trains far faster than regressing from Gaussian z: the mapping MLP cannot
    cheaply learn step functions."""
    need = sum(a.n for a in attributes) + params.ident.shape[1]
    if dim < need:
        raise ValueError(f"encoding needs at least {need} dims, the generator has style_dim={dim}")
    n = len(params)
    out = np.zeros((n, dim), dtype=np.float32)
    col = 0
    for j, a in enumerate(attributes):
        block = -np.ones((n, a.n), dtype=np.float32)
        block[np.arange(n), params.attrs[:, j]] = 1.0
        out[:, col : col + a.n] = block
        col += a.n
    out[:, col : col + params.ident.shape[1]] = params.ident
    return out


def positive_matrix(cap_attrs: np.ndarray, mentioned: np.ndarray, img_attrs: np.ndarray) -> np.ndarray:
    """``pos: bool [Nc, Ni]``: caption i is true of image j.

    A caption is true of an image when every attribute it names has the image's value.
    This generalises "identical captions are positives" (the prototype's multi-positive
    target) to short captions: "face with glasses" is true of every face with glasses in
    the batch, and treating those as negatives would teach the model to contradict itself.
    """
    eq = cap_attrs[:, None, :] == img_attrs[None, :, :]  # [Nc, Ni, A]
    return np.all(eq | ~mentioned[:, None, :], axis=-1)


class WorldKind:
    """The declared interface of a world kind. A kind module defines ``KIND = <subclass>()``.

    Required: the members below without a default (``name``, ``noun``, ``domain_kind``,
    ``params_cls``, ``fine_attrs`` and every method that raises ``NotImplementedError``).
    Optional: ``has_identity`` (an identity network is trained and IDS scored; False by default).
    """

    name: str  # the config's "kind"
    noun: str  # the neutral source prompt of every edit ("face", "church")
    domain_kind: str  # what a run manifest records as the domain's kind ("synthfaces", ...)
    params_cls: type[Params]
    # Attributes the CLIP's hard-negative groups vary (the rest is shared within a group): the
    # ones a coarse attribute would otherwise let a contrastive batch ignore.
    fine_attrs: tuple[str, ...]
    has_identity: bool = False

    # -- schema --------------------------------------------------------------------------
    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return self.params_cls.ATTRIBUTES

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def continuous(self) -> tuple[str, ...]:
        return self.params_cls.CONTINUOUS

    def attribute(self, name: str) -> Attribute:
        return self.params_cls._attribute(name)[1]

    def attribute_index(self, name: str) -> int:
        return self.params_cls._attribute(name)[0]

    def params(self, attrs: np.ndarray, ident: np.ndarray) -> Params:
        return self.params_cls(attrs, ident)

    def sample_continuous(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``float32 [n, P]`` uniform in [-1, 1]."""
        return rng.uniform(-1.0, 1.0, size=(n, len(self.continuous))).astype(np.float32)

    def sample_params(self, n: int, rng: np.random.Generator, ident: np.ndarray | None = None) -> Params:
        """Random scenes; ``ident [n, P]`` fixes the continuous part and randomises the rest."""
        attrs = sample_attrs(self.attributes, n, rng)
        if ident is None:
            ident = self.sample_continuous(n, rng)
        return self.params_cls(attrs, np.asarray(ident, dtype=np.float32))

    def encoding_dim(self) -> int:
        return sum(a.n for a in self.attributes) + len(self.continuous)

    def encode_params(self, params: Params, dim: int) -> np.ndarray:
        return encode_onehot_pm(self.attributes, params, dim)

    # -- drawing and describing ----------------------------------------------------------
    def render(self, params: Params, size: int = 64) -> np.ndarray:
        """``uint8 [N, size, size, 3]``, deterministic per scene."""
        raise NotImplementedError

    def captions_with_mentions(
        self, params: Params, rng: np.random.Generator, split: str = "train", p_full: float = 0.5, max_short: int = 3
    ) -> tuple[list[str], np.ndarray]:
        """Captions and which attributes each names: ``(texts [N], mentioned bool [N, A])``."""
        raise NotImplementedError

    def templates(self, split: str = "train") -> list[str]:
        raise NotImplementedError

    def vocabulary(self) -> list[str]:
        raise NotImplementedError

    def attribute_prompts(
        self, attr_name: str, style: str = "full", n: int = 24, seed: int = 0
    ) -> dict[str, list[str]]:
        """Zero-shot prompts per value of one attribute: ``{value: [text, ...]}``."""
        raise NotImplementedError

    def edit_prompts(self, split: str = "train") -> tuple[EditPrompt, ...]:
        """Every value of every attribute as an edit from :attr:`noun` (``heldout``: new phrasing)."""
        raise NotImplementedError

    def check(self) -> None:
        """The declared members are there (a kind module that forgets one fails on load)."""
        for m in ("name", "noun", "domain_kind", "params_cls", "fine_attrs"):
            if not hasattr(self, m):
                raise TypeError(f"world kind {type(self).__name__} does not declare {m!r}")
        for m in ("render", "captions_with_mentions", "templates", "vocabulary", "attribute_prompts", "edit_prompts"):
            if getattr(type(self), m) is getattr(WorldKind, m):
                raise TypeError(f"world kind {self.name!r} does not implement {m!r}")
        bad = [a for a in self.fine_attrs if a not in self.attribute_names]
        if bad:
            raise TypeError(f"world kind {self.name!r}: fine_attrs {bad} are not attributes")


_LOADED: dict[str, WorldKind] = {}


def get_kind(name: str | WorldKind | None = None) -> WorldKind:
    """The world kind called ``name`` (None: :data:`DEFAULT_KIND`)."""
    if isinstance(name, WorldKind):
        return name
    name = DEFAULT_KIND if name is None else name
    if name not in _LOADED:
        if name not in KINDS:
            raise ValueError(f"unknown world kind {name!r}; known kinds: {sorted(KINDS)}")
        kind = importlib.import_module(KINDS[name]).KIND
        kind.check()
        _LOADED[name] = kind
    return _LOADED[name]
