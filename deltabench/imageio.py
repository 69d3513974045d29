"""Reading user images: any file PIL opens, as float ``[1, 3, R, R]`` in [-1, 1].

16- and 32-bit integer images are scaled to 8 bits (PIL's ``convert("RGB")`` would clip every
value above 255), float images must lie in [0, 1]; a non-square image is centre-cropped to its
middle square (with a warning that says so: it is never squashed) and a size other than the
domain's is resized with a warning.

The official photo path of the real domains (:func:`official_photo_input`): DeltaEdit's
``scripts/inference_real.py`` (Yueming6568/DeltaEdit) opens the photo with PIL and converts it
to RGB (line 67), then applies ``transforms.Resize(256)``, ``ToTensor()`` and
``Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))`` (lines 52-56; ``image_size=256``, lines 42 and
119) and feeds that tensor both to e4e (line 172) and, through Upsample(x7) + AvgPool(8), to CLIP
(lines 179-181). ``Resize(256)`` on a PIL image is PIL's own bilinear resize of the uint8
photo (antialiased: the filter widens when it shrinks), rounded back to uint8.
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


def centre_square(a: np.ndarray, what="image") -> np.ndarray:
    """``uint8 [H, W, 3]`` -> its middle ``min(H, W)`` square; a non-square image is cropped with
    a warning that says so (the e4e input and the generator's images are square: a photo is
    never squashed)."""
    h, w = a.shape[:2]
    if h == w:
        return a
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    warnings.warn(
        f"{what} is {w}x{h}, not square: centre-cropped to its middle {s}x{s} square (columns "
        f"{left}-{left + s - 1}, rows {top}-{top + s - 1}); align the photo (deltabench align) or crop it "
        f"yourself to choose what is kept",
        stacklevel=3,
    )
    return np.ascontiguousarray(a[top : top + s, left : left + s])


def read_photo(image, what="image") -> np.ndarray:
    """A photo as ``uint8 [H, W, 3]`` RGB: a file path, a PIL image or an ``uint8 [H, W, 3]`` array."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        path = Path(image)
        if path.is_dir():
            raise ValueError(f"{what} {path} is a directory; give one PNG or JPEG file")
        if not path.is_file():
            raise ValueError(f"{what} {path} does not exist")
        try:
            with Image.open(path) as im:
                return np.asarray(to_rgb8(im, path), dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path} is not a readable image ({e}); give a PNG or JPEG file") from None
    if isinstance(image, Image.Image):
        return np.asarray(to_rgb8(image, what), dtype=np.uint8)
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{what}: an array must be uint8 [H, W, 3], got {a.dtype} {a.shape}")
    return a


def pil_resize(a: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``transforms.Resize(size)`` of the PIL image of ``a`` (``uint8 [H, W, 3]``):
    the shorter side to ``size`` (the longer one ``int(size * long / short)``), PIL bilinear,
    uint8 out."""
    from PIL import Image

    h, w = a.shape[:2]
    if min(h, w) == size:
        return a  # torchvision returns the image unchanged when the shorter side already fits
    nh, nw = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    return np.asarray(Image.fromarray(a).resize((nw, nh), Image.BILINEAR), dtype=np.uint8)


def to_normalised_tensor(a: np.ndarray) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` (or ``[H, W, 3]``) -> ``float32 [N, 3, H, W]`` in [-1, 1] with the
    arithmetic of torchvision ``ToTensor()`` then ``Normalize(0.5, 0.5)``: ``(x / 255 - 0.5) / 0.5``."""
    a = np.asarray(a)
    t = torch.from_numpy(np.require(a if a.ndim == 4 else a[None], requirements=["C", "W"]))
    t = t.permute(0, 3, 1, 2).float().div(255)
    return t.sub(0.5).div(0.5)


def official_photo_input(image, size: int = 256, what="image") -> torch.Tensor:
    """The official e4e (and DeltaEdit i1) input of a photo: ``float32 [1, 3, size, size]``.

    The uint8 photo (a path, a PIL image or an ``uint8 [H, W, 3]`` array; for a real face domain
    the FFHQ-aligned photo), centre-cropped to a square if it is not one (:func:`centre_square`,
    with a warning), then ``transforms.Resize(size)`` (:func:`pil_resize`), ``ToTensor`` and
    ``Normalize(0.5, 0.5)`` (:func:`to_normalised_tensor`): DeltaEdit ``inference_real.py``
    lines 52-56 and 67, see the module docstring."""
    return to_normalised_tensor(pil_resize(centre_square(read_photo(image, what), what), size))


def official_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``float [N, 3, H, W]`` in [-1, 1] -> the official photo input at ``size``: each image
    quantised to uint8 (as the photo file holds it; exact for images read from 8-bit files),
    then :func:`pil_resize` and :func:`to_normalised_tensor`. On ``x``'s device."""
    from deltabench.utils import float_to_uint8

    if x.shape[-2:] == (size, size):
        return x
    arr = float_to_uint8(x)
    out = np.stack([pil_resize(centre_square(a, "an image"), size) for a in arr])
    return to_normalised_tensor(out).to(x.device)


MIN_SIDE = 16  # px: a smaller image holds no face to edit (the encoder would invent one)


def check_image_size(path: Path, size: tuple[int, int] | None = None) -> None:
    """Refuse an image file smaller than :data:`MIN_SIDE` px a side, naming it and its size."""
    if size is None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                size = im.size
        except (UnidentifiedImageError, OSError):
            return  # unreadable: load_image says so
    if min(size) < MIN_SIDE:
        raise ValueError(
            f"image {path} is {size[0]}x{size[1]} px, too small to hold a face (editing it would "
            f"invent one); give an image of at least {MIN_SIDE}x{MIN_SIDE} px"
        )


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
            check_image_size(path, im.size)
            if im.size[0] != im.size[1]:
                im = Image.fromarray(centre_square(np.asarray(im, dtype=np.uint8), path))
            if im.size != (resolution, resolution):
                warnings.warn(
                    f"{path} is {im.size[0]}x{im.size[1]}; resizing to the domain's {resolution}x{resolution}",
                    stacklevel=2,
                )
                im = im.resize((resolution, resolution), Image.BICUBIC)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path} is not a readable image ({e}); give a PNG or JPEG file") from None
    return uint8_to_float(arr[None])


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".npy")


def as_images(images, resolution: int, what: str = "images") -> torch.Tensor:
    """Images in any of the accepted forms -> ``float32 [N, 3, R, R]`` in [-1, 1]."""
    from PIL import Image

    from deltabench.utils import uint8_to_float

    if isinstance(images, torch.Tensor):
        t = images.detach().float().cpu()
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{what}: a tensor must be [N, 3, H, W] in [-1, 1], got {tuple(t.shape)}")
        return resize_to(t, resolution, what)
    if isinstance(images, (str, Path)):
        p = Path(images)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise ValueError(f"{what}: the folder {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            images = files
        elif p.is_file():
            images = [p]
        else:
            raise ValueError(f"{what}: {p} does not exist")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    out = []
    for im in images:
        if isinstance(im, (str, Path)):
            f = Path(im)
            if f.suffix.lower() == ".npy":
                out.append(as_images(torch.from_numpy(np.load(f, allow_pickle=False)), resolution, what))
                continue
            out.append(load_image(f, resolution))
        elif isinstance(im, Image.Image):
            out.append(resize_to(uint8_to_float(np.asarray(to_rgb8(im, what), dtype=np.uint8)[None]), resolution, what))
        elif isinstance(im, torch.Tensor):
            out.append(as_images(im, resolution, what))
        else:
            a = np.asarray(im)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"{what}: an array must be uint8 [H, W, 3], got {a.dtype} {a.shape}")
            out.append(resize_to(uint8_to_float(a[None]), resolution, what))
    if not out:
        raise ValueError(f"{what}: no images given")
    return torch.cat(out)


def resize_to(t: torch.Tensor, resolution: int, what: str) -> torch.Tensor:
    if t.shape[-2:] == (resolution, resolution):
        return t
    if min(t.shape[-2:]) < MIN_SIDE:
        raise ValueError(
            f"{what}: {t.shape[-1]}x{t.shape[-2]} px is too small to hold a face (editing it would "
            f"invent one); give images of at least {MIN_SIDE}x{MIN_SIDE} px"
        )
    import warnings

    warnings.warn(
        f"{what}: {t.shape[-1]}x{t.shape[-2]} images resized to the domain's {resolution}x{resolution}", stacklevel=3
    )
    return torch.nn.functional.interpolate(t, size=(resolution, resolution), mode="bicubic", align_corners=False).clamp(
        -1, 1
    )
