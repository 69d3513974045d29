"""FFHQ alignment of real photographs, and pasting an edited face back into the photo.

The FFHQ generator and the e4e encoder only work on faces aligned the way FFHQ was made
(NVlabs ffhq-dataset ``download_ffhq.py``, ``recreate_aligned_images``; e4e's
``utils/alignment.py`` applies the same rule to dlib landmarks):

1. dlib's frontal face detector (one upsampling) and its 68-point shape predictor give the
   landmarks; with several faces the largest box is used.
2. From the eye centres (mean of points 36-41 and 42-47) and the mouth corners (48 and 54):
   ``eye_to_eye``, ``eye_to_mouth``; the crop's half-side vector is
   ``x = eye_to_eye - rot90(eye_to_mouth)``, normalised and scaled to
   ``max(2.0 |eye_to_eye|, 1.8 |eye_to_mouth|)``, ``y = rot90(x)``, the centre is
   ``eye_avg + 0.1 eye_to_mouth`` and the quad is ``c - x - y, c - x + y, c + x + y, c + x - y``
   (top-left, bottom-left, bottom-right, top-right).
3. Shrink the photo by an integer factor when the quad is over twice the output size; crop to
   the quad plus a 10% border; where the quad leaves the photo, pad (reflect), blur the padding
   and blend it toward the median colour; map the quad onto a ``transform_size`` square
   (bilinear) and resize to ``size`` (Lanczos). ``transform_size`` defaults to ``4 * size``,
   FFHQ's 4096 for 1024.

Coordinates: landmarks and quads are in pixel-index coordinates of the photo as loaded
(EXIF orientation applied), pixel ``i`` centred at ``i``. The aligned square's continuous
frame ``[0, size]^2`` maps onto the quad with corners at ``quad + 0.5`` (FFHQ's convention). The
map is a similarity, so :func:`to_aligned` / :func:`to_photo` are exact and :func:`paste_back`
inverts it. One deliberate difference from the official script: after the integer shrink the
quad is scaled in continuous coordinates by the exact resize ratio (the script divides the
index coordinates by the factor), a sub-pixel change that keeps the recorded transform exact.

Needs the ``faces`` extra (``pip install "deltabench[faces]"``): ``dlib-bin`` and
``face-recognition-models``, which ships ``shape_predictor_68_face_landmarks.dat``. A copy in
the weights directory (``deltabench weights fetch shape_predictor_68_face_landmarks.dat``) is
used first.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

PREDICTOR = "shape_predictor_68_face_landmarks.dat"
INSTALL_HINT = 'pip install "deltabench[faces]"'
RECORD_FORMAT = "deltabench-align/1"
DETECT_MAX_SIDE = 2048  # photos are detected on a copy at most this large (the predictor runs at full size)


class AlignError(ValueError):
    """A photo cannot be aligned (no face, unreadable file, bad argument)."""


class NoFaceError(AlignError):
    """dlib's detector found no face in a photo."""


class FacesExtraMissingError(AlignError, ImportError):
    """dlib or the landmark model is not installed."""


# ------------------------------------------------------------------------------ landmarks


def _dlib():
    try:
        import dlib
    except ImportError as e:
        raise FacesExtraMissingError(
            f"face alignment needs dlib ({e}); install the faces extra: {INSTALL_HINT} "
            "(binary wheels: dlib-bin and face-recognition-models)"
        ) from None
    return dlib


def predictor_path(path: str | Path | None = None) -> Path:
    """The 68-landmark model: ``path``, else the weights directory's copy, else the one that
    the ``face-recognition-models`` package ships."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"landmark model {p} does not exist")
        return p
    from deltabench import weights

    try:
        return weights.path_of(PREDICTOR)
    except weights.WeightsError:
        pass
    # Found without importing the package: its __init__ imports pkg_resources, which newer
    # setuptools no longer has, so face_recognition_models.pose_predictor_model_location() fails.
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "models" / PREDICTOR
        if p.is_file():
            return p
    raise FacesExtraMissingError(
        f"the landmark model {PREDICTOR} was not found; install it with {INSTALL_HINT} "
        f"(the face-recognition-models package ships it) or `deltabench weights fetch {PREDICTOR}`"
    )


@lru_cache(maxsize=2)
def _shape_predictor(path: str):
    return _dlib().shape_predictor(path)


@lru_cache(maxsize=1)
def _face_detector():
    return _dlib().get_frontal_face_detector()


@dataclass(frozen=True)
class Face:
    """One detected face: dlib box ``(left, top, right, bottom)`` (inclusive pixel indices),
    detector score and the 68 landmarks ``[68, 2]`` (x, y) in photo coordinates."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def area(self) -> int:
        l, t, r, b = self.box
        return (r - l + 1) * (b - t + 1)


def _rgb_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise AlignError(f"expected an RGB uint8 image [H, W, 3], got {arr.dtype} {list(arr.shape)}")
    return np.ascontiguousarray(arr)


def detect_faces(
    image, upsample: int = 1, max_side: int | None = DETECT_MAX_SIDE, predictor: str | Path | None = None
) -> list[Face]:
    """Every face dlib's frontal detector finds (``upsample`` times upsampled, as e4e calls it),
    largest box first (ties: higher detector score first), each with its 68 landmarks.

    A photo larger than ``max_side`` is detected on a downscaled copy; the landmarks are always
    predicted on the full-size photo."""
    dlib = _dlib()
    arr = _rgb_array(image)
    shape = _shape_predictor(str(predictor_path(predictor)))
    h, w = arr.shape[:2]
    scale = 1.0
    small = arr
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        small = np.asarray(
            Image.fromarray(arr).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
        )
    boxes, scores, _ = _face_detector().run(small, upsample, 0.0)
    faces = []
    for rect, score in zip(boxes, scores):
        if scale != 1.0:
            rect = dlib.rectangle(
                int(round(rect.left() / scale)),
                int(round(rect.top() / scale)),
                int(round(rect.right() / scale)),
                int(round(rect.bottom() / scale)),
            )
        pts = shape(arr, rect)
        lm = np.array([(p.x, p.y) for p in pts.parts()], dtype=np.float64)
        faces.append(Face((rect.left(), rect.top(), rect.right(), rect.bottom()), float(score), lm))
    faces.sort(key=lambda f: (f.area, f.score), reverse=True)
    return faces


# ------------------------------------------------------------------------------ the recipe


def ffhq_quad(landmarks) -> tuple[np.ndarray, float]:
    """FFHQ's oriented crop for 68 dlib landmarks: ``(quad [4, 2], side length)``; corners
    top-left, bottom-left, bottom-right, top-right, in the landmarks' coordinates."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise AlignError(f"expected 68 (x, y) landmarks, got shape {list(lm.shape)}")
    eye_l, eye_r = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    mouth = (lm[48] + lm[54]) / 2
    eye_avg = (eye_l + eye_r) / 2
    e2e, e2m = eye_r - eye_l, mouth - eye_avg

    def rot90(v):  # image axes (y down): (vx, vy) -> (-vy, vx)
        return np.array([-v[1], v[0]])

    x = e2e - rot90(e2m)
    x = x / np.hypot(*x) * max(2.0 * np.hypot(*e2e), 1.8 * np.hypot(*e2m))
    y = rot90(x)
    c = eye_avg + 0.1 * e2m
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]), float(2 * np.hypot(*x))


def five_points(landmarks) -> np.ndarray:
    """dlib's 68 landmarks -> the 5 points of insightface's ``norm_crop`` ``[5, 2]``, in its
    order: left eye centre (36-41), right eye centre (42-47), nose tip (30), left and right
    mouth corners (48, 54)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise AlignError(f"expected 68 (x, y) landmarks, got shape {list(lm.shape)}")
    return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])


def _axes(quad) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    return q[0] + 0.5, np.stack([q[3] - q[0], q[1] - q[0]], axis=1)  # origin (continuous), [ex | ey]


def to_aligned(points, quad, size) -> np.ndarray:
    """Photo pixel coordinates ``[..., 2]`` -> pixel coordinates in the aligned image of side
    ``size`` (an int, or ``(width, height)``)."""
    w, h = (size, size) if np.isscalar(size) else size
    origin, m = _axes(quad)
    p = np.asarray(points, dtype=np.float64) + 0.5 - origin
    ab = np.linalg.solve(m, p.reshape(-1, 2).T).T.reshape(p.shape)
    return ab * [w, h] - 0.5


def to_photo(points, quad, size) -> np.ndarray:
    """The inverse of :func:`to_aligned`."""
    w, h = (size, size) if np.isscalar(size) else size
    origin, m = _axes(quad)
    ab = (np.asarray(points, dtype=np.float64) + 0.5) / [w, h]
    return ab @ m.T + origin - 0.5


def load_photo(path: str | Path) -> Image.Image:
    """A photo as RGB with its EXIF orientation applied (the coordinates every record uses)."""
    from PIL import ImageOps, UnidentifiedImageError

    p = Path(path)
    if p.is_dir():
        raise AlignError(f"{p} is a directory; give image files (e.g. {p}/*.jpg)")
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise AlignError(f"{p} is not a readable image ({e}); give a PNG or JPEG file") from None


@dataclass
class Aligned:
    """An aligned face and what is needed to map it back into its photo."""

    image: Image.Image
    quad: np.ndarray  # [4, 2] photo coordinates: top-left, bottom-left, bottom-right, top-right
    landmarks: np.ndarray  # [68, 2] photo coordinates
    photo_size: tuple[int, int]  # (width, height)
    transform_size: int
    face: Face | None = None
    n_faces: int | None = None  # faces the detector found (None: landmarks were given)

    @property
    def size(self) -> int:
        return self.image.size[0]

    def landmarks_aligned(self) -> np.ndarray:
        return to_aligned(self.landmarks, self.quad, self.size)

    def record(self, source: str = "") -> dict:
        """JSON-ready: everything :func:`paste_back` needs, and the landmarks."""
        r = {
            "format": RECORD_FORMAT,
            "source": source,
            "photo_size": list(self.photo_size),
            "size": self.size,
            "transform_size": self.transform_size,
            "quad": self.quad.tolist(),
            "quad_corners": "top-left, bottom-left, bottom-right, top-right; photo pixel coordinates "
            "(EXIF orientation applied); the aligned image's corners map to quad + 0.5",
            "landmarks": self.landmarks.round(4).tolist(),
            "landmarks_aligned": self.landmarks_aligned().round(3).tolist(),
        }
        if self.face is not None:
            r.update(face_box=list(self.face.box), detector_score=round(self.face.score, 4), faces_found=self.n_faces)
        return r


def align_face(
    image,
    size: int = 1024,
    *,
    landmarks=None,
    face: Face | None = None,
    transform_size: int | None = None,
    upsample: int = 1,
    predictor: str | Path | None = None,
) -> Aligned:
    """Align the largest face of ``image`` (PIL image or RGB uint8 array) the FFHQ way.

    ``landmarks`` ([68, 2], dlib's order) or ``face`` skip the detection. Raises
    :class:`NoFaceError` when no face is found."""
    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise AlignError(f"size must be a positive integer, got {size!r}")
    transform_size = int(transform_size or 4 * size)
    if transform_size < size:
        raise AlignError(f"transform_size ({transform_size}) must be at least size ({size})")
    img = Image.fromarray(_rgb_array(image))
    n_faces = None
    if landmarks is None:
        if face is None:
            faces = detect_faces(img, upsample=upsample, predictor=predictor)
            if not faces:
                raise NoFaceError("no face found by dlib's frontal face detector")
            face, n_faces = faces[0], len(faces)
        landmarks = face.landmarks
    lm = np.asarray(landmarks, dtype=np.float64)
    quad, qsize = ffhq_quad(lm)
    photo_size = img.size

    q = quad + 0.5  # continuous coordinates of the working image
    # Shrink by an integer factor when the face is over twice the output size.
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        small = (int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink)))
        q = q * [small[0] / img.size[0], small[1] / img.size[1]]
        img = img.resize(small, Image.LANCZOS)
        qsize /= shrink
    # Crop to the quad plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor((q - 0.5).min(axis=0)).astype(int), np.ceil((q - 0.5).max(axis=0)).astype(int)
    box = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if box[2] - box[0] < img.size[0] or box[3] - box[1] < img.size[1]:
        img = img.crop(box)
        q = q - box[:2]
    # Pad where the quad leaves the photo: reflect, blur toward the edge, fade to the median.
    lo, hi = np.floor((q - 0.5).min(axis=0)).astype(int), np.ceil((q - 0.5).max(axis=0)).astype(int)
    pad = np.array(
        [
            max(border - lo[0], 0),
            max(border - lo[1], 0),
            max(hi[0] - img.size[0] + border, 0),
            max(hi[1] - img.size[1] + border, 0),
        ]
    )
    if pad.max() > border - 4:
        pad = np.maximum(pad, max(int(np.rint(qsize * 0.3)), 1))
        img = _pad_blend(np.asarray(img, dtype=np.float32), pad, qsize)
        q = q + pad[:2]
    out = img.transform((transform_size, transform_size), Image.QUAD, tuple(q.reshape(-1)), Image.BILINEAR)
    if size < transform_size:
        out = out.resize((size, size), Image.LANCZOS)
    return Aligned(out, quad, lm, photo_size, transform_size, face, n_faces)


def _pad_blend(arr: np.ndarray, pad: np.ndarray, qsize: float) -> Image.Image:
    """FFHQ's padding: ``pad`` = (left, top, right, bottom) pixels of reflection; toward the
    outer edge it is blurred (sigma 2% of the crop) and faded to the median colour."""
    from scipy.ndimage import gaussian_filter

    left, top, right, bottom = (int(v) for v in pad)
    arr = np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    h, w = arr.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    xx, yy = xx.astype(np.float32)[..., None], yy.astype(np.float32)[..., None]
    # 0 inside the photo, rising to 1 at the outer edge of the padding
    mask = np.maximum(
        1.0 - np.minimum(xx / left, (w - 1 - xx) / right), 1.0 - np.minimum(yy / top, (h - 1 - yy) / bottom)
    )
    sigma = qsize * 0.02
    arr += (gaussian_filter(arr, [sigma, sigma, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")


# ------------------------------------------------------------------------------ paste-back


def face_mask(size, kind: str = "face", feather: float = 0.15) -> np.ndarray:
    """A soft mask ``[h, w]`` in [0, 1] over an aligned image of side ``size`` (or
    ``(width, height)``). ``face``: an ellipse over the FFHQ face region (eyes at 47.5%, mouth at
    about 72% of the height), ``full``: the whole square. ``feather`` is the fraction of the
    radius (``face``) or of half the side (``full``) over which it fades to 0."""
    w, h = (size, size) if np.isscalar(size) else size
    if not 0 < feather <= 1:
        raise AlignError(f"feather must be in (0, 1], got {feather}")
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    if kind == "face":
        r = np.hypot((u[None, :] - 0.5) / 0.31, (v[:, None] - 0.56) / 0.38)
        t = np.clip((1.0 - r) / feather, 0.0, 1.0)
    elif kind == "full":
        d = np.minimum(np.minimum(u, 1 - u)[None, :], np.minimum(v, 1 - v)[:, None])
        t = np.clip(d / (0.5 * feather), 0.0, 1.0)
    else:
        raise AlignError(f"unknown mask {kind!r}; give 'face', 'full' or an array")
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible seam


def paste_back(original, aligned_edit, quad, mask="face", feather: float = 0.15) -> Image.Image:
    """Put an edited aligned face back into its photo.

    ``original``: the photo (PIL image, RGB array, or a path, loaded as :func:`load_photo`
    does); ``aligned_edit``: the edited aligned image (any size: it is mapped onto ``quad``);
    ``quad``: from :attr:`Aligned.quad` or the ``quad`` of the ``.json`` record;
    ``mask``: ``"face"``, ``"full"`` or an array ``[h, w]`` in [0, 1] over the aligned image.
    Photo pixels outside the quad's bounding box, and wherever the mask is 0, are unchanged."""
    from scipy.ndimage import map_coordinates

    photo = _rgb_array(load_photo(original) if isinstance(original, (str, Path)) else original)
    edit = _rgb_array(aligned_edit).astype(np.float32)
    eh, ew = edit.shape[:2]
    if isinstance(mask, str):
        m = face_mask((ew, eh), mask, feather)
    else:
        m = np.asarray(mask, dtype=np.float32)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != (eh, ew):
            raise AlignError(f"mask is {list(m.shape)}, the aligned image is {[eh, ew]}")
        m = np.clip(m / 255.0 if m.max() > 1 else m, 0.0, 1.0)
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    H, W = photo.shape[:2]
    x0, y0 = np.maximum(np.floor(q.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(q.max(axis=0)).astype(int) + 1, [W - 1, H - 1])
    out = photo.copy()
    if x1 < x0 or y1 < y0:
        return Image.fromarray(out)
    ys, xs = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    uv = to_aligned(np.stack([xs, ys], axis=-1), q, (ew, eh))
    coords = np.stack([uv[..., 1], uv[..., 0]])  # (row, col)
    weight = map_coordinates(m, coords, order=1, mode="constant", cval=0.0)
    inside = weight > 0
    if not inside.any():
        return Image.fromarray(out)
    pts = coords[:, inside]
    src = np.stack([map_coordinates(edit[..., c], pts, order=1, mode="nearest") for c in range(3)], axis=-1)
    region = out[y0 : y1 + 1, x0 : x1 + 1]
    old = region[inside].astype(np.float32)
    region[inside] = np.uint8(np.clip(np.rint(old + weight[inside][:, None] * (src - old)), 0, 255))
    return Image.fromarray(out)


def _record_json(record: dict) -> str:
    """One key a line, each value compact (68 landmark pairs stay readable)."""
    return (
        "{\n"
        + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in record.items())
        + "\n}\n"
    )


def load_record(path: str | Path) -> dict:
    """A ``.json`` record written by ``deltabench align`` (``quad`` as an array)."""
    p = Path(path)
    try:
        r = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise AlignError(f"{p} is not a readable alignment record ({e})") from None
    if r.get("format") != RECORD_FORMAT:
        raise AlignError(f"{p}: format {r.get('format')!r}, expected {RECORD_FORMAT!r}")
    r["quad"] = np.asarray(r["quad"], dtype=np.float64)
    return r


# ------------------------------------------------------------------------------ CLI


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer (pixels), got {text!r}")
    return v


def add_parser(subparsers) -> None:
    """Register ``deltabench align IMAGES... --out DIR [--size N]`` on the CLI's subparsers."""
    a = subparsers.add_parser(
        "align", help="FFHQ alignment of real photos (dlib 68 landmarks), with the transform for pasting edits back"
    )
    a.add_argument("images", nargs="+", metavar="IMAGE", help="photos (PNG, JPEG, ...)")
    a.add_argument("--out", required=True, help="directory for <stem>.png and <stem>.json")
    a.add_argument("--size", type=_positive_int, default=1024, help="side of the aligned images (default 1024)")
    a.set_defaults(func=_cmd_align)


def _cmd_align(args) -> int:
    paths = [Path(p) for p in args.images]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AlignError(f"--out {out} exists and is not a directory")
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems and stems[p.stem] != p:
            raise AlignError(
                f"{stems[p.stem]} and {p} would both be written as {out / p.stem}.png; "
                "rename one or align them into separate --out directories"
            )
        stems[p.stem] = p
    _dlib()
    predictor = predictor_path()
    # Every photo is checked (readable, a face found) before anything is written.
    found: list[tuple[Path, Face, int]] = []
    for p in dict.fromkeys(paths):
        faces = detect_faces(load_photo(p), predictor=predictor)
        if not faces:
            raise NoFaceError(
                f"{p}: no face found — dlib's frontal face detector needs a roughly "
                "frontal face at least about 40 px wide; nothing was written"
            )
        if len(faces) > 1:
            l, t, r, b = faces[0].box
            print(
                f"deltabench: {p}: {len(faces)} faces found; aligning the largest "
                f"({r - l + 1}x{b - t + 1} px at ({l}, {t}))",
                file=sys.stderr,
            )
        found.append((p, faces[0], len(faces)))
    out.mkdir(parents=True, exist_ok=True)
    for p, face, n in found:
        res = align_face(load_photo(p), args.size, face=face)
        res.n_faces = n
        png, rec = out / f"{p.stem}.png", out / f"{p.stem}.json"
        res.image.save(png)
        rec.write_text(_record_json(res.record(str(p))))
        print(f"{p} -> {png}")
    return 0
