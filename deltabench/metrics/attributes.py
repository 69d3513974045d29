"""Ground-truth metrics of the synthetic world, read by the attribute oracle.

- Manipulation accuracy: among images that did not already have the target value, the
  fraction whose edited image the oracle reads with the target value.
- Disentanglement: per image, the fraction of the *other* attributes whose oracle reading
  is unchanged between the method's starting image and the edit; averaged over images. An
  attribute the domain declares ``unjudged`` (the world card finds the oracle cannot read it on
  the generator's images) is not counted: its misreadings would lower every method alike.
- Identity-parameter error: mean absolute change of the oracle's identity parameters.
- Identity regression: per image, the cosine between the edit's change of identity
  parameters (oracle readings, edit minus start) and the direction from the start's identity
  to the mean identity (the world's identity prior, uniform in [-1, 1], has mean 0, and every
  method's training faces are drawn from it). A method that keeps who a face is scores near
  0; one that pulls every face towards the average face scores near 1. Images whose identity
  did not change at all (the inversion reference) are not counted.
"""

from __future__ import annotations

import torch

from deltabench.metrics.base import Metric


class ManipulationAccuracy(Metric):
    key, label, higher_is_better = "manipulation_accuracy", "Manip. acc.", True

    def update_from(self, batch) -> torch.Tensor:
        """Per image: 1 if the edit reads the target value, 0 if not, NaN where it was not asked."""
        e_attrs, _ = batch.oracle_edited()
        needed = batch.needed()
        self.update(e_attrs, batch.attribute, batch.value, needed)
        hit = (e_attrs[:, batch.attribute] == batch.value).double()
        hit[~needed.bool()] = float("nan")
        return hit

    def __init__(self):
        super().__init__()
        self.add_state("correct", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(
        self, edited_attrs: torch.Tensor, attr_index: int, target_value: int, needed: torch.Tensor | None = None
    ) -> None:
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
    key, label, higher_is_better = "disentanglement", "Disentangle.", True

    def update_from(self, batch) -> torch.Tensor:
        (e_attrs, _), (s_attrs, _) = batch.oracle_edited(), batch.oracle_start()
        names = [a.name for a in batch.domain.attributes]
        skip = [names.index(n) for n in batch.domain.unjudged]
        return self.update(e_attrs, s_attrs, batch.attribute, skip)

    def __init__(self):
        super().__init__()
        self.add_state("kept", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(self, edited_attrs: torch.Tensor, source_attrs: torch.Tensor, attr_index: int, skip=()) -> torch.Tensor:
        """``edited_attrs, source_attrs: int [N, A]``; the edited attribute and the columns in
        ``skip`` (unjudged attributes) are left out. Returns the per-image fractions ``[N]``."""
        other = torch.ones(edited_attrs.shape[1], dtype=torch.bool)
        other[attr_index] = False
        other[list(skip)] = False
        same = (edited_attrs[:, other] == source_attrs[:, other]).double().mean(1)  # [N]
        self.kept += same.sum()
        self.count += float(same.numel())
        return same

    def compute(self) -> float:
        return float(self.kept / self.count) if self.count > 0 else float("nan")


class IdentityParamError(Metric):
    key, label, higher_is_better = "identity_param_error", "ID-param err.", False

    def update_from(self, batch) -> torch.Tensor:
        (_, e_ident), (_, s_ident) = batch.oracle_edited(), batch.oracle_start()
        self.update(e_ident, s_ident)
        return (e_ident - s_ident).abs().mean(1)

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


class IdentityRegression(Metric):
    key, label, higher_is_better = "identity_regression", "ID regr.", False
    EPS = 1e-6  # a change below this (in identity-parameter units) is no change

    def update_from(self, batch) -> torch.Tensor:
        (_, e_ident), (_, s_ident) = batch.oracle_edited(), batch.oracle_start()
        return self.update(e_ident, s_ident)

    def __init__(self):
        super().__init__()
        self.add_state("cos_sum", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(
        self, edited_ident: torch.Tensor, source_ident: torch.Tensor, mean_ident: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[N, P]`` oracle identity parameters of edits and their starts; ``mean_ident [P]``
        the pool's mean identity (default 0, the prior's mean). Returns the per-image cosines
        (NaN where the identity did not change)."""
        e, s = edited_ident.double(), source_ident.double()
        m = torch.zeros(s.shape[1], dtype=torch.float64) if mean_ident is None else mean_ident.double()
        change, to_mean = e - s, m[None] - s
        cos = (change * to_mean).sum(1) / (change.norm(dim=1) * to_mean.norm(dim=1)).clamp_min(1e-12)
        cos[change.norm(dim=1) < self.EPS] = float("nan")
        ok = ~torch.isnan(cos)
        self.cos_sum += cos[ok].sum()
        self.count += float(ok.sum())
        return cos

    def compute(self) -> float:
        return float(self.cos_sum / self.count) if self.count > 0 else float("nan")
