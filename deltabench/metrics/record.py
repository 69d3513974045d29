"""The one record every metric of a suite is updated from: an edit batch and what it shares.

``EditBatch`` holds the batch's images (``inputs``, ``edited``, ``start``), the inputs' ground
truth (``params``, synthfaces) and the prompt's attribute, and computes on first use what
several metrics read — CLIP embeddings, feature-network features, oracle readings — once per
batch. ``cache`` (a dict the caller may keep per input batch) carries the inputs' and starts'
shares across the cells that edit the same batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class EditBatch:
    domain: object
    inputs: torch.Tensor  # [N, 3, H, W] in [-1, 1]: the images the user gave
    edited: torch.Tensor  # [N, 3, H, W]: the method's edits
    start: torch.Tensor  # [N, 3, H, W]: the method's starting images (G of the inversion)
    features: Callable[[torch.Tensor], torch.Tensor] | None = None  # FID/KID feature network
    params: object | None = None  # the inputs' FaceParams (synthfaces ground truth)
    attribute: int | None = None  # the prompt's attribute index and target value (synthfaces)
    value: int | None = None
    cache: dict = field(default_factory=dict)  # shares of inputs and starts, kept by the caller
    _own: dict = field(default_factory=dict, repr=False)  # shares of the edits: this batch only

    def cached(self, key: str, fn):
        """``fn()`` once per input batch (kept in :attr:`cache`)."""
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def _mine(self, key: str, fn):
        if key not in self._own:
            self._own[key] = fn()
        return self._own[key]

    def clip_edited(self) -> torch.Tensor:
        return self._mine("clip_edited", lambda: self.domain.clip_image(self.edited))

    def clip_start(self) -> torch.Tensor:
        return self.cached("clip_start", lambda: self.domain.clip_image(self.start))

    def features_inputs(self) -> torch.Tensor:
        return self.cached("feat_inputs", lambda: self.features(self.inputs))

    def features_edited(self) -> torch.Tensor:
        return self._mine("feat_edited", lambda: self.features(self.edited))

    def oracle_start(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The oracle's attributes ``int [N, A]`` and identity parameters ``float64 [N, P]`` of the starts."""
        return self.cached("oracle_start", lambda: _oracle(self.domain, self.start))

    def oracle_edited(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._mine("oracle_edited", lambda: _oracle(self.domain, self.edited))

    def needed(self) -> torch.Tensor:
        """``bool [N]``: the images whose input lacks the target value (the edit was asked). From
        the ground truth when ``params`` is given, else from the oracle's reading of the start."""
        if self.params is not None:
            return torch.as_tensor(self.params.attrs[:, self.attribute] != self.value)
        return self.oracle_start()[0][:, self.attribute] != self.value


def _oracle(domain, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    attrs, ident = domain.oracle.predict(images)
    return attrs.cpu(), ident.cpu().double()
