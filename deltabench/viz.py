"""Image grids and PNG files, for looking at what a world or a method produced."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_grid(images: np.ndarray, nrow: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile ``uint8 [N, H, W, 3]`` into ``uint8 [H', W', 3]`` with ``nrow`` images per row."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    n, h, w, _ = images.shape
    ncol = min(nrow, max(n, 1))
    rows = -(-n // ncol)
    grid = np.full((pad + rows * (h + pad), pad + ncol * (w + pad), 3), pad_value, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        y0, x0 = pad + r * (h + pad), pad + c * (w + pad)
        grid[y0 : y0 + h, x0 : x0 + w] = images[k]
    return grid


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlarge ``uint8 [H, W, 3]`` by an integer ``factor``."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def save_png(image: np.ndarray, path) -> Path:
    """Write ``uint8 [H, W, 3]`` to a PNG file (parent directories are created)."""
    from PIL import Image

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def label_grid(
    images: np.ndarray, nrow: int, row_labels: list[str], pad: int = 2, width: int = 0, font_size: int = 0
) -> np.ndarray:
    """:func:`make_grid` with one text label per grid row in a white margin on the left.

    ``width`` is the margin in pixels (0: fitted to the longest label). ``font_size``: the label
    text's height in pixels, PIL's built-in scalable font (0: PIL's small default bitmap font).
    """
    from PIL import Image, ImageDraw, ImageFont

    grid = make_grid(images, nrow, pad)
    n, h = len(images), images.shape[1]
    rows = -(-n // min(nrow, max(n, 1)))
    if len(row_labels) != rows:
        raise ValueError(f"got {len(row_labels)} row labels for a grid of {rows} rows")
    font = None
    if font_size:
        try:
            font = ImageFont.load_default(size=font_size)
        except (TypeError, ImportError, OSError):  # Pillow < 10.1 or no FreeType: the bitmap font
            font = None
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    width = width or 4 + (font_size // 2 if font else 0) + max(
        (int(draw.textlength(t, font=font)) for t in row_labels), default=0
    )
    canvas = Image.new("RGB", (width + grid.shape[1], grid.shape[0]), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (width, 0))
    draw = ImageDraw.Draw(canvas)
    half = (font_size if font else 10) // 2
    for r, text in enumerate(row_labels):
        draw.text(
            (2 + (font_size // 4 if font else 0), pad + r * (h + pad) + h // 2 - half), text, fill=(0, 0, 0), font=font
        )
    return np.asarray(canvas)
