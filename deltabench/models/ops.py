"""StyleGAN2 building blocks in pure torch (no CUDA extensions).

Semantics follow rosinality/stylegan2-pytorch (``model.py``, ``op/upfirdn2d.py``
``upfirdn2d_native``, ``op/fused_act.py``), so official checkpoints load and give the same
images. Equalised learning rate (Karras et al. 2018) scales weights at run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """1-D taps -> normalised 2-D separable FIR kernel ``[K, K]`` summing to 1."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR filter, downsample: ``x [B, C, H, W]``.

    Same result as rosinality's ``upfirdn2d_native`` with equal x/y factors and pads;
    negative pads crop.
    """
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    out = x
    if up > 1:
        out = out.reshape(b, c, h, 1, w, 1)
        out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
        out = out.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        out = out[:, :, max(-p0, 0) : out.shape[2] - max(-p1, 0), max(-p0, 0) : out.shape[3] - max(-p1, 0)]
    # upfirdn2d is a true convolution: the kernel is flipped (F.conv2d correlates). A depthwise
    # conv is ~40x faster on CPU than rosinality's [B*C, 1, H, W] reshape (backward pass).
    weight = torch.flip(kernel, [0, 1]).to(out.dtype).expand(c, 1, kh, kw)
    out = F.conv2d(out, weight, groups=c)
    if down > 1:
        out = out[:, :, ::down, ::down]
    return out


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2, scale: float = 2**0.5
) -> torch.Tensor:
    """``leaky_relu(x + bias) * sqrt(2)``, bias broadcast over channel dim 1."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(*shape).to(x.dtype), negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channel: int, negative_slope: float = 0.2, scale: float = 2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            # Zero insertion loses factor**2 energy; the kernel gives it back.
            k = k * (upsample_factor**2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * (factor**2)
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalised lr; ``lr_mul`` slows it (0.01 in the mapping network)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear activation must be None or 'fused_lrelu', got {activation!r}")
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, self.bias * self.lr_mul)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """Conv2d with equalised lr (rosinality ``EqualConv2d``)."""

    def __init__(
        self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)
