"""The synthfaces world kind: cartoon faces (``"kind": "faces"``, the default).

Face-only code lives in this package (schema :mod:`.attributes`, :mod:`.renderer`,
:mod:`.captions`); generic code reaches it through :func:`deltabench.world.kind.get_kind`.
"""

from __future__ import annotations

import numpy as np

from deltabench.world.faces import attributes as _attributes
from deltabench.world.faces import captions as _captions
from deltabench.world.faces import renderer as _renderer
from deltabench.world.kind import WorldKind


class FacesKind(WorldKind):
    name = "faces"
    noun = "face"
    domain_kind = "synthfaces"
    params_cls = _attributes.FaceParams
    fine_attrs = ("smile", "glasses", "beard", "eye_size", "face_width")
    # Who a person is = the continuous parameters; an ArcFace-style net learns it (IDS).
    has_identity = True

    def sample_params(self, n: int, rng: np.random.Generator, ident: np.ndarray | None = None):
        return _attributes.sample_params(n, rng, ident)

    def sample_continuous(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return _attributes.sample_identities(n, rng)

    def encode_params(self, params, dim: int) -> np.ndarray:
        return _attributes.encode_params(params, dim)

    def render(self, params, size: int = 64) -> np.ndarray:
        return _renderer.render(params, size)

    def captions_with_mentions(self, params, rng, split="train", p_full=0.5, max_short=3):
        return _captions.captions_with_mentions(params, rng, split, p_full, max_short)

    def templates(self, split: str = "train") -> list[str]:
        return _captions.templates(split)

    def vocabulary(self) -> list[str]:
        return _captions.vocabulary()

    def attribute_prompts(self, attr_name, style="full", n=24, seed=0):
        return _captions.attribute_prompts(attr_name, style, n, seed)

    def edit_prompts(self, split: str = "train"):
        return _captions.EDIT_PROMPTS if split == "train" else _captions.HELDOUT_EDIT_PROMPTS


KIND = FacesKind()
