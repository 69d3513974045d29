"""Pixel fidelity between input and edited image: the PSNR and SSIM metrics over the per-image
functions of :mod:`deltabench.pixels` (scikit-image semantics, images mapped to [0, 1])."""

from __future__ import annotations

import torch

from deltabench.metrics.base import Metric
from deltabench.pixels import psnr, ssim  # noqa: F401 - psnr, ssim importable from here too


class _MeanOfScores(Metric):
    """Mean (and std) of a per-image score; ``update`` returns the batch's scores ``[N]`` so a
    runner can write per-image rows without computing them twice."""

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("total_sq", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), "sum")

    def _add(self, scores: torch.Tensor) -> torch.Tensor:
        s = scores.detach().to("cpu", torch.float64).flatten()
        self.total = self.total + s.sum()
        self.total_sq = self.total_sq + (s * s).sum()
        self.count = self.count + float(s.numel())
        return s

    def compute(self) -> float:
        return float(self.total / self.count) if self.count > 0 else float("nan")

    def std(self) -> float:
        """Population standard deviation of the per-image scores."""
        if self.count == 0:
            return float("nan")
        mean = self.total / self.count
        return float((self.total_sq / self.count - mean * mean).clamp_min(0).sqrt())


class PSNR(_MeanOfScores):
    """Mean per-image PSNR (dB) between input and edited images (higher: closer to the input).

    Identical images (PSNR +inf: the oracle-edit reference on a face that already has the
    target value) count as :attr:`CAP` dB, so a mean stays finite; an 8-bit image one level off
    everywhere is 48 dB, so no real edit reaches the cap."""

    key, label, higher_is_better = "psnr", "PSNR", True
    CAP = 60.0

    def update(self, inputs: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
        return self._add(psnr(inputs, edited).clamp(max=self.CAP))

    def update_from(self, batch) -> torch.Tensor:
        return self.update(batch.inputs, batch.edited)


class SSIM(_MeanOfScores):
    """Mean per-image SSIM between input and edited images (scikit-image defaults)."""

    key, label, higher_is_better = "ssim", "SSIM", True

    def update_from(self, batch) -> torch.Tensor:
        return self.update(batch.inputs, batch.edited)

    def __init__(self, win_size: int = 7):
        super().__init__()
        self.win_size = win_size

    def update(self, inputs: torch.Tensor, edited: torch.Tensor) -> torch.Tensor:
        return self._add(ssim(inputs, edited, self.win_size))
