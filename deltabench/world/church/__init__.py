"""The church world kind (``"kind": "church"``): an LSUN-church analogue, a procedural building
scene with nine caption-nameable attributes and no identity model (:mod:`.attributes`)."""

from __future__ import annotations

from deltabench.world.church import attributes as _attributes
from deltabench.world.church import captions as _captions
from deltabench.world.church import renderer as _renderer
from deltabench.world.kind import WorldKind


class ChurchKind(WorldKind):
    name = "church"
    noun = _captions.NOUN
    domain_kind = "synthchurch"
    params_cls = _attributes.ChurchParams
    # The local attributes: a coarse sky or season would otherwise separate a contrastive batch.
    fine_attrs = ("roof_shape", "tower", "windows", "door", "light")
    has_identity = False  # as LSUN: no identity model, no IDS

    def render(self, params, size: int = 64):
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


KIND = ChurchKind()
