"""IDS: identity similarity, the cosine of identity embeddings of input and edited image.

``embed``: images ``[N, 3, H, W]`` in [-1, 1] -> ``[N, D]`` (the world's identity net
``domain.identity.embed`` in ``synthfaces``; insightface ArcFace in ``ffhq``). Embeddings
are L2-normalised here whether or not ``embed`` already does, so the score is a cosine.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from deltabench.metrics.image import _MeanOfScores


def identity_similarity(emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
    """Per-pair cosine of two embedding batches ``[N, D] x 2 -> [N]`` (float64)."""
    if emb_a.shape != emb_b.shape or emb_a.ndim != 2:
        raise ValueError(
            f"IDS: expected two embedding batches [N, D] of one shape, "
            f"got {tuple(emb_a.shape)} and {tuple(emb_b.shape)}"
        )
    a, b = emb_a.detach().to("cpu", torch.float64), emb_b.detach().to("cpu", torch.float64)
    return (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)


class IdentitySimilarity(_MeanOfScores):
    """Mean IDS over images (higher: the edit kept who the person is)."""

    key, label, higher_is_better = "ids", "IDS", True

    def update_from(self, batch) -> torch.Tensor:
        e_in = batch.cached("ident_inputs", lambda: self.embed(batch.inputs))
        return self.update(batch.inputs, batch.edited, input_emb=e_in)

    def __init__(self, embed: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.embed = embed

    @torch.no_grad()
    def update(self, inputs: torch.Tensor, edited: torch.Tensor, input_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Returns this batch's per-image similarities ``[N]``. ``input_emb``: the inputs'
        embeddings when already computed (the inputs are then not embedded again)."""
        if inputs.shape != edited.shape:
            raise ValueError(f"IDS: inputs {tuple(inputs.shape)} and edits {tuple(edited.shape)} differ in shape")
        e_in = self.embed(inputs) if input_emb is None else input_emb
        return self._add(identity_similarity(e_in, self.embed(edited)))
