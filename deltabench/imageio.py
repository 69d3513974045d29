"""Reading user images: any file PIL opens, as float ``[1, 3, R, R]`` in [-1, 1].

16- and 32-bit integer images are scaled to 8 bits (PIL's ``convert("RGB")`` would clip every
value above 255), float images must lie in [0, 1]; a size other than the domain's is resized
with a warning.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch


def to_rgb8(im, path):
    """An 8-bit RGB PIL image from ``im`` (``path`` names it in errors and warnings)."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) <= 65535 else float(a.max())
        if a.min(initial=0) < 0:
            raise ValueError(f"image {path} holds negative 32-bit values; give an 8- or 16-bit image")
        warnings.warn(f"{path} is a {im.mode} image; scaled from 0..{top:.0f} to 8 bits", stacklevel=3)
        return Image.fromarray(np.round(a / top * 255).astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        if a.min(initial=0) < 0 or a.max(initial=0) > 1:
            raise ValueError(f"image {path} is a float image with values outside [0, 1]; give an 8- or 16-bit image")
        return Image.fromarray(np.round(a * 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """The image file ``path`` as ``float32 [1, 3, resolution, resolution]`` in [-1, 1]."""
    from PIL import Image, UnidentifiedImageError

    from deltabench.utils import uint8_to_float

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"image {path} is a directory; give one PNG or JPEG file")
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as im:
            im = to_rgb8(im, path)
            if im.size != (resolution, resolution):
                warnings.warn(f"{path} is {im.size[0]}x{im.size[1]}; resizing to the domain's "
                              f"{resolution}x{resolution}", stacklevel=2)
                im = im.resize((resolution, resolution), Image.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); give a PNG or JPEG file") from None
    return uint8_to_float(arr[None])
