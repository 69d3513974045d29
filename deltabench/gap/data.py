"""Paired (image, caption) CLIP embeddings and random delta pairs for the gap analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deltabench.utils import progress

CAPTION_MODES = ("full", "mixed")


@dataclass(frozen=True)
class PairedEmbeddings:
    image: np.ndarray  # [N, D] unit rows
    text: np.ndarray  # [N, D] unit rows
    captions: list[str]


def _rng(seed: int, stream: int) -> np.random.Generator:
    # One independent stream per use, all fixed by the run seed.
    return np.random.default_rng([int(seed), int(stream)])


def world_captions(params, seed: int, mode: str = "full", kind=None) -> list[str]:
    """One training-split caption per face, deterministic from ``seed``.

    ``full``: every caption names every attribute (the world's two full forms, half each),
    the analogue of the MultiModal-CelebA-HQ descriptions the paper embeds; then
    ``t_b - t_a`` names exactly what differs between faces a and b, as ``i_b - i_a`` shows it.
    ``mixed``: the CLIP training mix (:func:`deltabench.world.captions.caption`: half full,
    half naming 0-3 attributes), where a short caption leaves most of the face undescribed.
    """
    from deltabench.world.kind import get_kind

    if mode not in CAPTION_MODES:
        raise ValueError(f"captions must be one of {CAPTION_MODES}, got {mode!r}")
    texts, _ = get_kind(kind).captions_with_mentions(
        params, _rng(seed, 1), split="train", p_full=1.0 if mode == "full" else 0.5
    )
    return texts


@torch.no_grad()
def world_pairs(world, n: int, seed: int, captions: str = "full", batch: int = 256) -> PairedEmbeddings:
    """``n`` renderer faces and their captions, embedded by the world's CLIP."""
    if n < 2:
        raise ValueError(f"--pairs must be >= 2, got {n}")
    params = world.sample_params(n, seed)
    texts = world_captions(params, seed, captions, world.kind)
    img, txt = [], []
    for i in progress(range(0, n, batch), desc="embed pairs"):
        images = world.render(params[i : i + batch])  # [B, 3, H, W] in [-1, 1]
        img.append(world.clip.encode_image(images).float().cpu())
        txt.append(world.clip.encode_text(texts[i : i + batch]).float().cpu())
    return PairedEmbeddings(torch.cat(img).numpy(), torch.cat(txt).numpy(), texts)


def random_pairs(n: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(a, b)``, ``a != b``, uniform over ordered pairs: ``([P], [P])``."""
    if n < 2:
        raise ValueError(f"need at least 2 items to form pairs, got {n}")
    rng = _rng(seed, 2)
    a = rng.integers(0, n, n_pairs)
    b = (a + rng.integers(1, n, n_pairs)) % n
    return a, b


def deltas(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``x[b] - x[a]``: ``[P, D]``."""
    return x[b] - x[a]


# --- real data: images with caption files (MultiModal-CelebA-HQ layout) ----------------------

CAPTION_LAYOUT = (
    "DIR/image/N.jpg with DIR/text/N.txt, one caption per line (the MultiModal-CelebA-HQ layout); "
    "DIR may also be the image folder itself, its captions in ../text/ or beside the images"
)


@dataclass(frozen=True)
class CaptionFolder:
    """Images that have captions: ``files[i]`` described by every line of ``captions[i]``."""

    image_dir: Path
    text_dir: Path | None  # where the first caption file was found
    files: list[Path]  # [M] numeric stems in numeric order
    captions: list[tuple[str, ...]]  # [M]
    n_images: int  # images in image_dir, with or without a caption


def _natural(p: Path) -> tuple:
    return (0, int(p.stem), "") if p.stem.isdigit() else (1, 0, p.stem)


def caption_folder(path) -> CaptionFolder:
    """Read a folder in the MultiModal-CelebA-HQ layout (IIGROUP/MM-CelebA-HQ-Dataset: ``image/``
    holds ``N.jpg``, ``text/`` holds ``N.txt`` with ten descriptions of image N, one a line).

    ``path`` is the dataset root (with ``image/`` and ``text/``) or the image folder; the
    caption file of ``N.jpg`` is ``text/N.txt`` beside the image folder, else ``N.txt`` in
    it. Images without a caption file (or with an empty one) are left out; none at all is an
    error that names the layout.
    """
    from deltabench.real.domain import IMAGE_SUFFIXES

    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"--images {root}: no such folder; give a folder in the layout {CAPTION_LAYOUT}")
    image_dir = root / "image" if (root / "image").is_dir() else root
    files = sorted((f for f in image_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()), key=_natural)
    if not files:
        raise ValueError(f"{image_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}); expected {CAPTION_LAYOUT}")
    text_dirs = []
    for d in (root / "text", image_dir.parent / "text", image_dir):
        if d.is_dir() and d not in text_dirs:
            text_dirs.append(d)
    kept, caps, found_in = [], [], None
    for f in files:
        for d in text_dirs:
            t = d / f"{f.stem}.txt"
            if t.is_file():
                try:
                    lines = tuple(s.strip() for s in t.read_text(encoding="utf-8").splitlines() if s.strip())
                except (UnicodeDecodeError, OSError) as e:
                    raise ValueError(f"{t}: caption file cannot be read as UTF-8 text ({e})") from None
                if lines:
                    kept.append(f)
                    caps.append(lines)
                    found_in = found_in or d
                break
    if not kept:
        where = ", ".join(str(d) for d in text_dirs)
        raise ValueError(
            f"no captions for any of the {len(files)} images in {image_dir} (looked for N.txt in "
            f"{where}); the gap analysis pairs each image with a caption: give a folder in the layout "
            f"{CAPTION_LAYOUT}"
        )
    return CaptionFolder(image_dir, found_in, kept, caps, len(files))


def read_images(files, resolution: int) -> torch.Tensor:
    """Image files -> ``[N, 3, R, R]`` in [-1, 1], RGB, bicubic-resized to the domain's
    resolution as :meth:`deltabench.real.domain.RealDomain.test_images` reads test images."""
    from PIL import Image, UnidentifiedImageError

    from deltabench.utils import uint8_to_float

    out = []
    for path in files:
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (resolution, resolution):
                    im = im.resize((resolution, resolution), Image.BICUBIC)
                out.append(np.asarray(im, dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path} is not a readable image ({e}); remove it or replace it with a PNG/JPEG") from None
    return uint8_to_float(np.stack(out))


@torch.no_grad()
def folder_pairs(
    clip,
    folder: CaptionFolder,
    resolution: int,
    n: int,
    seed: int,
    batch: int = 32,
) -> tuple[PairedEmbeddings, list[Path]]:
    """``n`` captioned images drawn without replacement with ``seed`` (all of them when ``n``
    is the folder's count), each paired with one of its captions drawn with ``seed``, and
    embedded by ``clip`` (images at ``resolution``). Returns the pairs and their image files."""
    m = len(folder.files)
    if n < 2:
        raise ValueError(f"--pairs must be >= 2, got {n}")
    if n > m:
        raise ValueError(
            f"asked for {n} pairs but {folder.image_dir} holds {m} captioned images; pass --pairs {m} or fewer"
        )
    rng = _rng(seed, 3)
    idx = np.sort(rng.choice(m, n, replace=False)) if n < m else np.arange(m)
    files = [folder.files[i] for i in idx]
    texts = [folder.captions[i][int(rng.integers(len(folder.captions[i])))] for i in idx]
    img, txt = [], []
    for i in progress(range(0, n, batch), desc="embed pairs"):
        img.append(clip.encode_image(read_images(files[i : i + batch], resolution)).float().cpu())
        txt.append(clip.encode_text(texts[i : i + batch]).float().cpu())
    return PairedEmbeddings(torch.cat(img).numpy(), torch.cat(txt).numpy(), texts), files
