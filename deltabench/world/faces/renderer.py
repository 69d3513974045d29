"""The synthfaces renderer: :class:`FaceParams` -> cartoon face images.

Every face is a stack of implicit shapes (ellipses, bars, rings) evaluated on one coordinate
grid for the whole batch at once. Shapes paint a small integer *label* map (background, hair,
skin, eye, ...) at twice the output resolution; each face's own palette then turns labels into
colours, and a 2x2 box filter antialiases. Geometry is in normalised image coordinates
(x right, y down, both in [-1, 1]), so every feature scales with the output size.

Attributes are drawn bold on purpose: a throwaway prototype measured that a tiny CLIP or
generator never learns thin details (see ``shared/PROTOTYPE.md``).
"""

from __future__ import annotations

from types import MappingProxyType

import numpy as np

from deltabench.world.faces.attributes import ATTRIBUTES, IDENTITY_PARAMS, FaceParams

# Fixed at 2: the packed box filter in render() relies on 2x2 = 4 samples per pixel.
SUPERSAMPLE = 2
# Faces rendered per vectorised pass: large enough to amortise numpy overhead, small enough
# that the [B, S, S] float temporaries stay in cache-friendly sizes.
_CHUNK = 32

# Label ids, painted in this order (later paints over earlier).
BG, SHIRT, HAIR, NECK, SKIN, SHADE, EYE, PUPIL, BROW, BEARD, LIP, MOUTH, TEETH, FRAME = range(14)
_N_LABELS = 14

# Colours are RGB uint8. Hair and background palettes are kept apart from each other and from
# the skin tones so that each attribute is readable from colour alone.
HAIR_RGB = MappingProxyType(
    {
        "black": (16, 18, 30),
        "brown": (104, 54, 18),
        "blond": (238, 200, 90),
        "red": (204, 62, 30),
    }
)
BACKGROUND_RGB = MappingProxyType(
    {
        "blue": (70, 120, 230),
        "green": (60, 175, 85),
        "purple": (150, 80, 190),
        "yellow": (248, 228, 36),
    }
)
SKIN_RGB = MappingProxyType(
    {
        "light": (252, 222, 196),
        "medium": (206, 150, 104),
        "dark": (128, 84, 60),
    }
)
SHIRT_RGB = (205, 205, 210)
EYE_RGB = (255, 255, 255)
PUPIL_RGB = (30, 34, 70)
# A warm near-black, not the blue-black of black hair, so a beard stays a separate region even
# when long black hair frames the jaw.
BEARD_RGB = (44, 30, 24)
LIP_RGB = (214, 84, 96)
MOUTH_RGB = (96, 14, 24)
TEETH_RGB = (255, 255, 255)
FRAME_RGB = (10, 10, 10)


def _column(name: str, values: tuple[str, ...]) -> int:
    for j, a in enumerate(ATTRIBUTES):
        if a.name == name:
            if a.values != values:
                raise RuntimeError(
                    f"renderer palette for {name!r} is out of date: schema {a.values}, renderer {values}"
                )
            return j
    raise RuntimeError(f"renderer expects attribute {name!r}, the schema has none")


def _table(name: str, colours) -> tuple[int, np.ndarray]:
    col = _column(name, tuple(colours))
    return col, np.array(list(colours.values()), dtype=np.float32)


def _ident(ident: np.ndarray, name: str) -> np.ndarray:
    """One identity column as ``[B, 1, 1]`` for broadcasting over the pixel grid."""
    col = np.clip(ident[:, IDENTITY_PARAMS.index(name)], -1.0, 1.0)
    return col.astype(np.float32)[:, None, None]


def _attr(attrs: np.ndarray, name: str, values: tuple[str, ...]) -> np.ndarray:
    return attrs[:, _column(name, values)][:, None, None]


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _labels(params: FaceParams, s: int, windowed: bool = True) -> np.ndarray:
    """``uint8 [B, s, s]`` label map for a chunk of faces.

    Each feature is evaluated only inside a fixed window that holds it for every parameter
    value (``windowed=False`` evaluates everything on the full grid; the two are identical).
    """
    b = len(params)
    attrs, ident = params.attrs, params.ident
    c = (np.arange(s, dtype=np.float32) + 0.5) * (2.0 / s) - 1.0
    lab = np.zeros((b, s, s), dtype=np.uint8)

    def window(y0, y1, x0=-1.0, x1=1.0):
        """Pixels covering [x0, x1] x [y0, y1]; coordinates ``x: [1, 1, w]``, ``y: [1, h, 1]``."""
        if not windowed:
            y0, y1, x0, x1 = -1.0, 1.0, -1.0, 1.0
        r0, r1 = max(0, int((y0 + 1) / 2 * s) - 1), min(s, int((y1 + 1) / 2 * s) + 2)
        c0, c1 = max(0, int((x0 + 1) / 2 * s) - 1), min(s, int((x1 + 1) / 2 * s) + 2)
        return (slice(r0, r1), slice(c0, c1)), c[None, None, c0:c1], c[None, r0:r1, None]

    def paint(win, mask, label):
        view = lab[:, win[0], win[1]]
        np.putmask(view, np.broadcast_to(mask, view.shape), label)

    face_h = _ident(ident, "face_height")
    chin = _ident(ident, "chin")
    eye_sp = _ident(ident, "eye_spacing")
    nose_len = _ident(ident, "nose_length")
    nose_w = _ident(ident, "nose_width")
    brow_h = _ident(ident, "brow_height")
    long_hair = _attr(attrs, "hair_length", ("short", "long")) == 1
    smiling = _attr(attrs, "smile", ("neutral", "smiling")) == 1
    glasses = _attr(attrs, "glasses", ("none", "glasses")) == 1
    beard = _attr(attrs, "beard", ("shaven", "beard")) == 1
    large_eye = _attr(attrs, "eye_size", ("small", "large")) == 1
    wide = _attr(attrs, "face_width", ("narrow", "wide")) == 1

    # Head: half-width fa, half-height fb around (0, fcy). Upper half an ellipse; the lower half
    # a superellipse |x/fa|^m + t^2 <= 1 (t: 0 at the cheekbones, 1 at the chin) whose exponent
    # and an extra taper go from a square, rounded jaw (chin=-1) to a pointed V (chin=+1).
    fcy = np.float32(0.0)
    fa = np.where(wide, 0.64, 0.50).astype(np.float32)
    fb = (0.70 + 0.10 * face_h).astype(np.float32)

    def head_r2(x, y):
        t = np.clip((y - fcy) / fb, 0.0, 1.0)
        m = np.where(y > fcy, 2.0 - 0.8 * chin, 2.0)
        taper = 1.0 - (0.12 + 0.12 * chin) * t
        return np.abs(x / (fa * taper)) ** m + ((y - fcy) / fb) ** 2

    # Shoulders in a plain shirt, then long hair falling onto them, then the neck in front.
    w, x, y = window(0.74, 1.0)
    paint(w, _ellipse(x, y, 0.0, 1.32, 0.95, 0.55), SHIRT)
    w, x, y = window(-1.0, 0.93)
    hair_back = (_ellipse(x, y, 0.0, fcy, fa + 0.17, fb + 0.15) & (y <= fcy)) | (
        (np.abs(x) <= fa + 0.20) & (y > fcy) & (y <= 0.92)
    )
    paint(w, hair_back & long_hair, HAIR)
    w, x, y = window(0.28, 1.0, -0.22, 0.22)
    paint(w, (np.abs(x) <= 0.20) & (y > fcy + 0.3), NECK)
    w, x, y = window(-0.82, 0.82, -0.66, 0.66)
    paint(w, head_r2(x, y) <= 1.0, SKIN)

    # Hair cap over the top of the head, for both lengths; its lower edge is the hairline.
    hairline = fcy - 0.64 * fb
    w, x, y = window(-1.0, -0.36, -0.73, 0.73)
    paint(w, _ellipse(x, y, 0.0, fcy, fa + 0.07, fb + 0.12) & (y <= hairline), HAIR)

    # Eyes (white ellipse and pupil) and eyebrows.
    ey = fcy - 0.10
    ex = 0.27 + 0.05 * eye_sp
    erx = np.where(large_eye, 0.145, 0.095).astype(np.float32)
    ery = np.where(large_eye, 0.115, 0.068).astype(np.float32)
    pr = np.where(large_eye, 0.074, 0.042).astype(np.float32)
    w, x, y = window(-0.23, 0.03, -0.48, 0.48)
    ax = np.abs(x)
    paint(w, _ellipse(ax, y, ex, ey, erx, ery), EYE)
    paint(w, _ellipse(ax, y, ex, ey, pr, pr), PUPIL)
    by = ey - (0.20 + 0.06 * brow_h)
    w, x, y = window(-0.41, -0.19, -0.45, 0.45)
    paint(w, (np.abs(np.abs(x) - ex) <= 0.12) & (np.abs(y - by) <= 0.036), BROW)

    # Nose: a wedge widening from below the glasses' bridge to a rounded tip.
    ntop = ey + 0.08
    nbot = ey + 0.22 + 0.09 * nose_len
    nw = 0.08 + 0.05 * nose_w
    w, x, y = window(-0.06, 0.25, -0.15, 0.15)
    frac = (y - ntop) / (nbot - ntop)
    nose = ((frac >= 0) & (frac <= 1) & (np.abs(x) <= nw * (0.3 + 0.7 * frac))) | _ellipse(
        x, y, 0.0, nbot - 0.025, nw, 0.045
    )
    paint(w, nose, SHADE)

    # Beard: the jaw below a line rising towards the cheeks, puffed slightly beyond the face
    # outline so its silhouette differs from a shaven jaw, plus a thick moustache. It stays below
    # the eyes and the glasses, and leaves the nose visible.
    my = nbot + 0.11
    w, x, y = window(0.03, 0.86, -0.71, 0.71)
    beard_top = np.maximum(my - 0.02 - 0.40 * (x / fa) ** 2, ey + 0.14)
    jaw = (head_r2(x, y) <= 1.10) & (y >= beard_top)
    moustache = _ellipse(x, y, 0.0, my - 0.055, 0.21, 0.042)
    paint(w, (jaw | moustache) & beard, BEARD)

    # Mouth, drawn over the beard: a wide open grin (lip rim, dark inside, band of teeth) or
    # a short flat closed mouth.
    top = my - 0.03
    w, x, y = window(0.06, 0.53, -0.29, 0.29)
    grin_lip = _ellipse(x, y, 0.0, top, 0.27, 0.22) & (y >= top - 0.035)
    grin = _ellipse(x, y, 0.0, top, 0.235, 0.185) & (y >= top)
    paint(w, grin_lip & smiling, LIP)
    paint(w, grin & smiling, MOUTH)
    paint(w, grin & (y <= top + 0.095) & smiling, TEETH)
    flat = _ellipse(x, y, 0.0, my, 0.13, 0.038)
    paint(w, flat & ~smiling, LIP)

    # Glasses on top of everything: thick oval rims (0.08 = 2.6 px at 64 px) around both eyes,
    # bridge, temple arms. Ovals, so close-set eyes keep two separate lenses.
    w, x, y = window(-0.32, 0.12, -0.68, 0.68)
    ax = np.abs(x)
    rims = _ellipse(ax, y, ex, ey, 0.225, 0.205) & ~_ellipse(ax, y, ex, ey, 0.145, 0.125)
    bridge = (ax <= ex) & (np.abs(y - ey + 0.02) <= 0.04)
    arms = (ax >= ex + 0.2) & (ax <= fa + 0.03) & (np.abs(y - ey + 0.02) <= 0.035)
    paint(w, (rims | bridge | arms) & glasses, FRAME)
    return lab


def _palettes(params: FaceParams) -> np.ndarray:
    """``uint8 [B, L, 3]``: each face's colour for every label."""
    attrs = params.attrs
    b = len(params)
    pal = np.zeros((b, _N_LABELS, 3), dtype=np.float32)
    hcol, hair = _table("hair_color", HAIR_RGB)
    bcol, bg = _table("background", BACKGROUND_RGB)
    scol, skin = _table("skin", SKIN_RGB)
    skin_rgb = skin[attrs[:, scol]]
    hair_rgb = hair[attrs[:, hcol]]
    pal[:, BG] = bg[attrs[:, bcol]]
    pal[:, SHIRT] = SHIRT_RGB
    pal[:, HAIR] = hair_rgb
    pal[:, NECK] = skin_rgb * 0.85
    pal[:, SKIN] = skin_rgb
    pal[:, SHADE] = skin_rgb * 0.64
    pal[:, EYE] = EYE_RGB
    pal[:, PUPIL] = PUPIL_RGB
    # Brows follow the hair colour but much darker, so they read on every skin tone (they carry
    # the brow_height identity parameter).
    pal[:, BROW] = hair_rgb * 0.3
    pal[:, BEARD] = BEARD_RGB
    pal[:, LIP] = LIP_RGB
    pal[:, MOUTH] = MOUTH_RGB
    pal[:, TEETH] = TEETH_RGB
    pal[:, FRAME] = FRAME_RGB
    return np.round(pal).astype(np.uint8)


def render(params: FaceParams, size: int = 64) -> np.ndarray:
    """Draw faces: ``params`` (N faces) -> ``uint8 [N, size, size, 3]``.

    Deterministic (the same parameters give bitwise the same pixels). ``size`` must be a
    multiple of 8 between 32 and 256; features scale with it.
    """
    if not isinstance(size, (int, np.integer)) or size % 8 or not 32 <= size <= 256:
        raise ValueError(f"size must be a multiple of 8 between 32 and 256, got {size!r}")
    size = int(size)
    n = len(params)
    s = size * SUPERSAMPLE
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    chunk = max(1, _CHUNK * 64 * 64 // (size * size))
    for i in range(0, n, chunk):
        p = params[i : i + chunk]
        bsz = len(p)
        lab = _labels(p, s)  # [B, s, s]
        # Colours packed 10 bits per channel into one uint32: the 2x2 box sum (at most
        # 4 * 255 = 1020 per channel) then needs one gather and three adds, not one per channel.
        pal = _palettes(p).astype(np.uint32)  # [B, L, 3]
        packed = (pal[..., 0] | (pal[..., 1] << 10) | (pal[..., 2] << 20)).reshape(-1)  # [B*L]
        offset = (np.arange(bsz, dtype=np.uint16) * _N_LABELS)[:, None, None]
        sub = packed[lab + offset]  # [B, s, s]
        acc = sub[:, 0::2, 0::2] + sub[:, 1::2, 0::2] + sub[:, 0::2, 1::2] + sub[:, 1::2, 1::2]
        for c in range(3):
            out[i : i + bsz, :, :, c] = (((acc >> (10 * c)) & 1023) + 2) >> 2
    return out
