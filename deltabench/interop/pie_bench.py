"""PIE-Bench's layout (Ju et al. 2024, cure-lab/PnPInversion), read and written.

The layout, from the benchmark's README ("Benchmark Download") and ``evaluation/evaluate.py``::

    DIR/mapping_file.json            {key: {image_path, original_prompt, editing_prompt,
                                            editing_instruction, editing_type_id, blended_word, mask}}
    DIR/annotation_images/<image_path>    the source images (PIE-Bench's are 512 x 512 JPEGs)

- ``original_prompt`` / ``editing_prompt``: the source and target captions, with ``[...]``
  marking the words that differ; the evaluator drops the brackets (``evaluate.py`` lines 255-256).
- ``mask``: run-length encoded, "the part that needed to be edited is 1, otherwise 0" (README):
  a flat list ``[start, length, start, length, ...]`` of 0-based offsets into the row-major
  flattened ``H x W`` mask, each run set to 1, a run past the end cut at the end
  (``evaluate.py`` ``mask_decode``, lines 9-18, image_shape 512 x 512). The evaluator then marks
  the one-pixel border as edited "to avoid annotation errors in boundary" (lines 19-23):
  :func:`read_pie_bench` does the same unless ``border=False``.
- Edits are read from ``<edits>/annotation_images/<image_path>`` (``evaluate.py`` line 267 with
  the ``output/<method>/annotation_images`` folders of lines 100-174); an edit wider than tall
  (the editors' side-by-side outputs) is cut to its right-most square (lines 271-273).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deltabench.interop.entries import BenchEntry

MAPPING = "mapping_file.json"
IMAGES = "annotation_images"
REQUIRED = ("image_path", "original_prompt", "editing_prompt", "mask")


def rle_decode(rle, shape: tuple[int, int], where: str = "mask") -> np.ndarray:
    """PIE-Bench RLE ``[start, length, ...]`` -> ``bool [H, W]`` (no border rule)."""
    h, w = shape
    size = h * w
    if not isinstance(rle, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in rle):
        raise ValueError(
            f"{where}: expected the RLE mask as a flat list of integers [start, length, ...], "
            f"got {type(rle).__name__}{'' if not isinstance(rle, list) else ' with non-integers'}; "
            f"re-export the mapping file"
        )
    if len(rle) % 2:
        raise ValueError(
            f"{where}: the RLE mask has {len(rle)} numbers, an odd count; it must be [start, length] "
            f"pairs. The file is truncated or not PIE-Bench's RLE; re-export it"
        )
    flat = np.zeros(size, dtype=bool)
    for i in range(0, len(rle), 2):
        start, length = rle[i], rle[i + 1]
        if start < 0 or length < 0:
            raise ValueError(f"{where}: RLE run {i // 2} has a negative start or length ({start}, {length})")
        if start >= size and length > 0:
            raise ValueError(
                f"{where}: RLE run {i // 2} starts at pixel {start}, past the end of the {h}x{w} "
                f"image ({size} pixels): the mask was made for a larger image; give the image it "
                f"belongs to"
            )
        flat[start : start + length] = True  # a run past the end is cut there, as mask_decode does
    return flat.reshape(h, w)


def rle_encode(mask: np.ndarray) -> list[int]:
    """``bool [H, W]`` -> PIE-Bench RLE: the runs of True in row-major order, ``[start, length, ...]``."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    d = np.diff(np.concatenate([[0], flat.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [int(v) for pair in zip(starts, ends - starts) for v in pair]


def _image_size(path: Path, where: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{where}: {path} is not a readable image ({e}); replace it") from None
    return h, w


def _strip(p: str) -> str:
    return p.replace("[", "").replace("]", "")


def read_pie_bench(root: str | Path, border: bool = True, mapping: str = MAPPING) -> list[BenchEntry]:
    """Entries of a PIE-Bench folder (``mapping_file.json`` + ``annotation_images/``), in the file's order.

    Masks are decoded at each image's size (PIE-Bench's are all 512 x 512, the size its
    ``mask_decode`` assumes); ``border``: mark the one-pixel border as edited, as PIE-Bench's
    evaluator does. Every problem is one ``ValueError`` naming the file and key."""
    root = Path(root)
    mfile = root / mapping
    if not mfile.is_file():
        raise ValueError(
            f"{root} is not a PIE-Bench folder: {mfile} does not exist; give the folder that holds "
            f"{MAPPING} and {IMAGES}/ (the benchmark's data/ folder)"
        )
    try:
        items = json.loads(mfile.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{mfile} is not valid JSON ({e}); download or export it again") from None
    if not isinstance(items, dict) or not items:
        raise ValueError(
            f"{mfile}: expected a non-empty object {{key: {{image_path, original_prompt, ...}}}}, "
            f"got {type(items).__name__ if not isinstance(items, dict) else 'an empty object'}"
        )
    out = []
    for key, item in items.items():
        where = f"{mfile} key {key!r}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object with {', '.join(REQUIRED)}, got {type(item).__name__}")
        missing = [k for k in REQUIRED if k not in item]
        if missing:
            raise ValueError(
                f"{where}: missing {', '.join(missing)} (PIE-Bench entries have {', '.join(REQUIRED)}, "
                f"editing_instruction, editing_type_id, blended_word)"
            )
        rel = item["image_path"]
        if not isinstance(rel, str) or Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ValueError(f"{where}: image_path must be a relative path inside {IMAGES}/, got {rel!r}")
        img = root / IMAGES / rel
        if not img.is_file():
            raise ValueError(
                f"{where}: its image {img} does not exist; put the image there or remove the key from {MAPPING}"
            )
        mask = rle_decode(item["mask"], _image_size(img, where), f"{where} mask")
        if border:
            mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
        meta = {k: item[k] for k in ("editing_type_id", "blended_word", "image_path") if k in item}
        out.append(
            BenchEntry(
                str(key),
                img,
                _strip(item["original_prompt"]),
                _strip(item["editing_prompt"]),
                str(item.get("editing_instruction", "")),
                mask,
                None,
                meta,
            )
        )
    return out


def pie_bench_edit_image(edits: str | Path, entry: BenchEntry) -> Path:
    """Where PIE-Bench's evaluator finds an entry's edit: ``<edits>/annotation_images/<image_path>``
    (or ``<edits>/<image_path>``); a missing one is a ``ValueError`` naming both places."""
    rel = entry.meta.get("image_path", entry.image.name)
    edits = Path(edits)
    for p in (edits / IMAGES / rel, edits / rel):
        if p.is_file():
            return p
    raise ValueError(
        f"no edit for PIE-Bench key {entry.id!r}: neither {edits / IMAGES / rel} nor {edits / rel} "
        f"exists; save the edit of {rel} there"
    )


def load_pie_bench_edit(path: Path) -> np.ndarray:
    """An edit as ``uint8 [H, W, 3]``; an edit wider than tall is cut to its right-most square
    (PIE-Bench ``evaluate.py`` lines 271-273: the editors save source and edit side by side)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w != h:
            im = im.crop((w - h, 0, w, h)) if w > h else im
        return np.asarray(im, dtype=np.uint8)


def write_pie_bench(
    out: str | Path,
    entries: Sequence[BenchEntry],
    edits: dict | None = None,
    method: str = "deltabench",
    editing_type_id: str = "0",
) -> Path:
    """Write entries (and optionally one method's edits) in PIE-Bench's layout; returns ``out``.

    ``out/mapping_file.json`` and ``out/annotation_images/deltabench/<id><suffix>`` (each source image's
    bytes copied as they are); ``edits``: ``{entry id: path of its edit}``, copied to
    ``out/output/<method>/annotation_images/<image_path>`` as the evaluator's ``all_tgt_image_folders``
    expect. Entries keep their ``image_path``/``editing_type_id``/``blended_word`` from ``meta``
    where read from PIE-Bench; others get ``deltabench/<id>.<ext>``, ``editing_type_id`` (PIE-Bench's
    "0", random editing, unless given) and an empty ``blended_word``. PIE-Bench's own scripts decode
    masks at 512 x 512 (``mask_decode``'s default): give them 512-px images."""
    out = Path(out)
    ids = [e.id for e in entries]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"write_pie_bench: entry ids listed twice: {dup[:5]}; ids are mapping_file.json keys")
    if edits is not None:
        missing = [i for i in ids if i not in edits]
        extra = sorted(set(edits) - set(ids))
        if missing or extra:
            raise ValueError(
                f"write_pie_bench: edits must name every entry once: missing {missing[:5]}, unknown {extra[:5]}"
            )
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    mapping = {}
    for e in entries:
        if e.mask is None:
            raise ValueError(f"write_pie_bench: entry {e.id!r} has no mask; PIE-Bench entries need one")
        src = Path(e.image)
        if not src.is_file():
            raise ValueError(f"write_pie_bench: entry {e.id!r}: its image {src} does not exist")
        h, w = _image_size(src, f"entry {e.id!r}")
        if tuple(e.mask.shape) != (h, w):
            raise ValueError(f"write_pie_bench: entry {e.id!r}: mask {tuple(e.mask.shape)} but image {h}x{w}")
        rel = e.meta.get("image_path") or f"deltabench/{e.id}{src.suffix.lower()}"
        dst = out / IMAGES / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        mapping[e.id] = {
            "image_path": rel,
            "original_prompt": e.source,
            "editing_prompt": e.target,
            "editing_instruction": e.instruction,
            "editing_type_id": str(e.meta.get("editing_type_id", editing_type_id)),
            "blended_word": str(e.meta.get("blended_word", "")),
            "mask": rle_encode(e.mask),
        }
        if edits is not None:
            ed = out / "output" / method / IMAGES / rel
            ed.parent.mkdir(parents=True, exist_ok=True)
            if not Path(edits[e.id]).is_file():
                raise ValueError(f"write_pie_bench: the edit of {e.id!r}, {edits[e.id]}, does not exist")
            shutil.copyfile(edits[e.id], ed)
    tmp = out / (MAPPING + ".part")
    tmp.write_text(json.dumps(mapping, indent=1))
    tmp.replace(out / MAPPING)
    return out


def _as_float(arr: np.ndarray):
    import torch

    return (
        torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True)).permute(2, 0, 1).float() / 127.5 - 1
    )  # [3, H, W] in [-1, 1]


def _read_rgb(path: Path, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{where}: {path} is not a readable image ({e}); replace it") from None


def stack_images(arrays: Sequence[np.ndarray], paths: Sequence[Path], what: str):
    """uint8 ``[H, W, 3]`` arrays of one size -> ``float [N, 3, H, W]`` in [-1, 1]."""
    import torch

    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        first = arrays[0].shape
        odd = next(p for a, p in zip(arrays, paths) if a.shape != first)
        raise ValueError(
            f"{what}: images differ in size ({paths[0]} is {first[1]}x{first[0]}, {odd} is not); "
            f"score items of one size together"
        )
    return torch.stack([_as_float(a) for a in arrays]) if arrays else torch.zeros(0, 3, 0, 0)


def load_pie_bench_pairs(root: str | Path, edits: str | Path, border: bool = True):
    """A PIE-Bench folder and one method's edits, ready for
    :func:`deltabench.metrics.field.score_field`: ``(entries, inputs [N, 3, H, W], edited
    [N, 3, H, W], masks bool [N, H, W])``, images in [-1, 1]. A missing edit, or an edit whose size
    differs from its source after PIE-Bench's right-most-square cut, is a ``ValueError`` naming it."""
    entries = read_pie_bench(root, border=border)
    srcs, outs = [], []
    for e in entries:
        src = _read_rgb(e.image, f"PIE-Bench key {e.id!r}")
        p = pie_bench_edit_image(edits, e)
        ed = load_pie_bench_edit(p)
        if ed.shape != src.shape:
            raise ValueError(
                f"the edit {p} of PIE-Bench key {e.id!r} is {ed.shape[1]}x{ed.shape[0]}, its source "
                f"{src.shape[1]}x{src.shape[0]}; save the edit at the source's size"
            )
        srcs.append(src)
        outs.append(ed)
    paths = [e.image for e in entries]
    return (
        entries,
        stack_images(srcs, paths, f"PIE-Bench {root}"),
        stack_images(outs, paths, f"edits {edits}"),
        np.stack([e.mask for e in entries]),
    )
