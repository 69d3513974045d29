"""Ground-truth metrics of the synthetic world, read by the attribute oracle.

- Manipulation accuracy: among images that did not already have the target value, the
  fraction whose edited image the oracle reads with the target value.
- Disentanglement: per image, the fraction of the *other* attributes whose oracle reading
  is unchanged between the method's starting image and the edit; averaged over images.
- Identity-parameter error: mean absolute change of the oracle's identity parameters.
"""
from __future__ import annotations

import torch

from deltabench.metrics.base import Metric


class ManipulationAccuracy(Metric):
    def __init__(self):
        super().__init__()
        self.add_state("correct", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(self, edited_attrs: torch.Tensor, attr_index: int, target_value: int,
               needed: torch.Tensor | None = None) -> None:
        """``edited_attrs: int [N, A]`` oracle readings of the edits; ``needed: bool [N]``
        marks images whose source lacked the target value (others are not counted)."""
        hit = edited_attrs[:, attr_index] == target_value
        if needed is not None:
            hit = hit[needed.bool()]
        self.correct += hit.sum().double()
        self.total += float(hit.numel())

    def compute(self) -> float:
        return float(self.correct / self.total) if self.total > 0 else float("nan")


class Disentanglement(Metric):
    def __init__(self):
        super().__init__()
        self.add_state("kept", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(self, edited_attrs: torch.Tensor, source_attrs: torch.Tensor, attr_index: int) -> None:
        """``edited_attrs, source_attrs: int [N, A]``; the edited attribute is left out."""
        other = torch.ones(edited_attrs.shape[1], dtype=torch.bool)
        other[attr_index] = False
        same = (edited_attrs[:, other] == source_attrs[:, other]).double().mean(1)  # [N]
        self.kept += same.sum()
        self.count += float(same.numel())

    def compute(self) -> float:
        return float(self.kept / self.count) if self.count > 0 else float("nan")


class IdentityParamError(Metric):
    def __init__(self):
        super().__init__()
        self.add_state("abs_sum", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(self, edited_ident: torch.Tensor, source_ident: torch.Tensor) -> None:
        """``[N, P]`` oracle identity parameters of edits and their sources."""
        d = (edited_ident.double() - source_ident.double()).abs()
        self.abs_sum += d.sum()
        self.count += float(d.numel())

    def compute(self) -> float:
        return float(self.abs_sum / self.count) if self.count > 0 else float("nan")
