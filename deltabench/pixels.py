"""Per-image PSNR and SSIM (scikit-image semantics): plain functions, used by the metrics
(:mod:`deltabench.metrics.image`) and by the world builder's checks alike.

Images come in as float ``[N, 3, H, W]`` in [-1, 1]; they are clamped and mapped to [0, 1]
in float64 and compared with ``data_range = 1``: the numbers of
``skimage.metrics.peak_signal_noise_ratio`` / ``structural_similarity(..., channel_axis=-1)``
on [0, 1] float images (uint8 images with ``data_range = 255`` give the same up to
quantisation). The mapping matters for SSIM: its luminance term is not shift invariant, and
on [-1, 1] data it would read about 0.18 lower. The tests check both against scikit-image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_RANGE = 1.0  # images compared in [0, 1]


def _pair(a: torch.Tensor, b: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(
            f"{what}: expected two image batches [N, C, H, W] of one shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    to01 = lambda x: (x.detach().to("cpu", torch.float64).clamp(-1, 1) + 1) / 2  # noqa: E731
    return to01(a), to01(b)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB, ``[N]``: 10 log10(data_range^2 / MSE) over all pixels and channels.

    Identical images give +inf, as in scikit-image.
    """
    a, b = _pair(a, b, "PSNR")
    mse = ((a - b) ** 2).flatten(1).mean(1)  # [N]
    return 10 * torch.log10(DATA_RANGE**2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """Per-image mean SSIM, ``[N]``, as ``skimage.metrics.structural_similarity(..., channel_axis=-1,
    data_range=1)`` on [0, 1] images with its defaults: 7x7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance
    (N/(N-1)), mean over the valid (un-padded) window positions, then over channels.
    """
    a, b = _pair(a, b, "SSIM")
    n, c, h, w = a.shape
    if win_size % 2 != 1 or win_size > min(h, w):
        raise ValueError(f"SSIM: win_size must be odd and at most the image side {min(h, w)}, got {win_size}")
    # skimage filters with 'reflect' padding then crops (win_size - 1) // 2 from each border,
    # which leaves exactly the windows that lie inside the image: a valid average pool.
    pool = lambda x: F.avg_pool2d(x, win_size, stride=1)  # noqa: E731  [N, C, h', w']
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1)
    ux, uy = pool(a), pool(b)
    uxx, uyy, uxy = pool(a * a), pool(b * b), pool(a * b)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean((2, 3)).mean(1)  # per channel, then over channels: [N]
