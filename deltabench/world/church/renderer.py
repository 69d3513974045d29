"""The church renderer: :class:`ChurchParams` -> a building scene (sky, ground, tree, church).

Drawn like the faces: implicit shapes on one coordinate grid for the whole batch, at twice the
output size, then a 2x2 box filter. Coordinates are normalised (x right, y down, in [-1, 1]), so
every feature scales with the size. Every attribute is bold and its values far apart in colour or
shape (a prototype found that small models never learn thin details, ``shared/PROTOTYPE.md``):
sky colour with clouds, a sun or a moon; ground and tree colour per season; dusk darkens the
scene and lights the windows; a red/blue/green/black roof, pointed or a dome; a tower with a spire
or none; white, yellow or brick walls; two or four windows; a brown or blue door.
"""

from __future__ import annotations

import numpy as np

from deltabench.world.church.attributes import ATTRIBUTES, CONTINUOUS_PARAMS, ChurchParams

SUPERSAMPLE = 2
_CHUNK = 32


def _rgb(*c) -> np.ndarray:
    return np.array(c, dtype=np.float32)


# Value -> colour, in the schema's value order (checked at import below).
PALETTES = {
    "sky": {
        "clear": (_rgb(80, 150, 235), _rgb(165, 210, 250)),  # (top, horizon)
        "cloudy": (_rgb(120, 126, 138), _rgb(170, 174, 182)),
        "sunset": (_rgb(150, 60, 130), _rgb(255, 150, 50)),
        "night": (_rgb(20, 28, 75), _rgb(45, 58, 120)),
    },
    "season": {
        "summer": (_rgb(70, 165, 55), _rgb(25, 105, 35)),  # (ground, tree crown)
        "autumn": (_rgb(160, 105, 40), _rgb(235, 120, 20)),
        "winter": (_rgb(245, 248, 252), _rgb(225, 232, 240)),
    },
    "roof_color": {
        "red": _rgb(200, 35, 30),
        "blue": _rgb(35, 70, 190),
        "green": _rgb(30, 140, 60),
        "black": _rgb(30, 30, 34),
    },
    "walls": {"white": _rgb(240, 238, 230), "yellow": _rgb(235, 195, 70), "brick": _rgb(150, 65, 45)},
    "door": {"brown": _rgb(95, 55, 20), "blue": _rgb(40, 90, 220)},
}
WINDOW_DAY = _rgb(35, 45, 75)
WINDOW_DUSK = _rgb(255, 225, 80)
CLOUD = _rgb(245, 245, 248)
SUN = _rgb(255, 220, 120)
MOON = _rgb(240, 240, 210)
TRUNK = _rgb(85, 55, 30)
DUSK = _rgb(0.55, 0.5, 0.6)  # colour multiplier of everything lit by daylight at dusk

_COL = {a.name: j for j, a in enumerate(ATTRIBUTES)}
for _name, _pal in PALETTES.items():
    if tuple(_pal) != ATTRIBUTES[_COL[_name]].values:
        raise RuntimeError(
            f"church palette for {_name!r} is out of date: schema "
            f"{ATTRIBUTES[_COL[_name]].values}, renderer {tuple(_pal)}"
        )


def _stack(name: str, part: int | None = None) -> np.ndarray:
    vals = PALETTES[name].values()
    return np.stack([v if part is None else v[part] for v in vals])  # [V, 3]


def _cont(ident: np.ndarray, name: str) -> np.ndarray:
    return np.clip(ident[:, CONTINUOUS_PARAMS.index(name)], -1, 1).astype(np.float32)[:, None, None]


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


# Label ids, painted in this order (later over earlier); 0 is the sky's own gradient.
(SKY, CLOUDS, SUNDISK, MOONDISK, GROUND, TRUNKS, CROWN, WALLS, ROOF, BELFRY, WIN_DARK, WIN_LIT, DOOR) = range(13)
_N_LABELS = 13
_LIT = np.array([False, False, False, False, True, True, True, True, True, True, True, False, True])


def _labels(params: ChurchParams, s: int) -> np.ndarray:
    """``uint8 [B, s, s]`` label map for a chunk of scenes (see the label ids above)."""
    a = params.attrs
    b = len(params)
    c = (np.arange(s, dtype=np.float32) + 0.5) * (2.0 / s) - 1.0
    x, y = c[None, None, :], c[None, :, None]
    lab = np.zeros((b, s, s), dtype=np.uint8)

    def per(name):  # [B, 1, 1]
        return a[:, _COL[name]][:, None, None]

    def paint(mask, label):
        np.putmask(lab, np.broadcast_to(mask, lab.shape), label)

    g = 0.52 + 0.08 * _cont(params.ident, "horizon")  # ground line
    bw = 0.36 + 0.08 * _cont(params.ident, "width")  # nave half-width
    bx = 0.10 + 0.10 * _cont(params.ident, "position")  # nave centre
    wh = 0.36 + 0.08 * _cont(params.ident, "height")  # wall height
    th = 0.80 + 0.14 * _cont(params.ident, "tower_height")  # tower top above the ground
    top = g - wh  # top of the walls

    # Sky features: clouds (cloudy), a low sun (sunset), a crescent moon (night).
    clouds = (
        _ellipse(x, y, -0.55, -0.62, 0.34, 0.12)
        | _ellipse(x, y, -0.30, -0.70, 0.22, 0.13)
        | _ellipse(x, y, 0.45, -0.45, 0.36, 0.12)
        | _ellipse(x, y, 0.68, -0.52, 0.22, 0.12)
    )
    paint(clouds & (per("sky") == 1), CLOUDS)
    paint(_ellipse(x, y, -0.62, g - 0.16, 0.17, 0.17) & (per("sky") == 2), SUNDISK)
    paint(
        _ellipse(x, y, -0.62, -0.62, 0.14, 0.14) & ~_ellipse(x, y, -0.55, -0.67, 0.12, 0.12) & (per("sky") == 3),
        MOONDISK,
    )
    paint(y >= g, GROUND)
    # A tree on the right, behind the church: its crown shows the season (bare branches in winter).
    winter = per("season") == 2
    paint((np.abs(x - 0.84) <= 0.035) & (y <= g) & (y >= g - 0.42), TRUNKS)
    paint(_ellipse(x, y, 0.84, g - 0.45, 0.15, 0.20) & ~winter, CROWN)
    u = g - 0.30 - y
    branches = (
        ((np.abs((x - 0.84) - 0.5 * u) <= 0.025) | (np.abs((x - 0.84) + 0.5 * u) <= 0.025))
        & (y <= g - 0.30)
        & (y >= g - 0.55)
    )
    paint(branches & winter, TRUNKS)

    # Nave: walls, then the roof: a tall, steep gable vs a low, wide dome (their outlines differ at
    # the apex and at the eaves).
    paint((np.abs(x - bx) <= bw) & (y <= g) & (y >= top), WALLS)
    pointed = per("roof_shape") == 0
    rh = 0.40
    gable = (y < top) & (y >= top - rh) & (np.abs(x - bx) <= (bw + 0.04) * (y - (top - rh)) / rh)
    dome = _ellipse(x, y, bx, top, bw + 0.07, 0.22) & (y < top)
    paint((gable & pointed) | (dome & ~pointed), ROOF)
    # Tower (in front of the nave's left end): a shaft in the wall colour, a spire in the roof
    # colour, and a dark belfry opening that keeps the shaft readable on white walls.
    has_tower = per("tower") == 1
    tx = bx - bw + 0.02
    ty0 = g - th
    spire_h = 0.30
    paint((np.abs(x - tx) <= 0.11) & (y <= g) & (y >= ty0) & has_tower, WALLS)
    spire = (y < ty0) & (y >= ty0 - spire_h) & (np.abs(x - tx) <= 0.14 * (y - (ty0 - spire_h)) / spire_h)
    paint(spire & has_tower, ROOF)
    paint(_ellipse(x, y, tx, ty0 + 0.12, 0.05, 0.07) & has_tower, BELFRY)

    # Windows: two or four tall round-topped openings; lit (yellow, not darkened) at dusk.
    four = per("windows") == 1
    wy = top + 0.38 * wh
    win_h, win_w = 0.10, 0.065
    win = np.zeros((b, s, s), dtype=bool)
    for f, n4 in ((-0.55, False), (0.55, False), (-0.72, True), (-0.26, True), (0.26, True), (0.72, True)):
        cx = bx + f * bw
        m = ((np.abs(x - cx) <= win_w) & (np.abs(y - wy) <= win_h)) | _ellipse(x, y, cx, wy - win_h, win_w, win_w)
        np.logical_or(win, m & (four == n4), out=win)
    dusk = per("light") == 1
    paint(win & ~dusk, WIN_DARK)
    paint(win & dusk, WIN_LIT)
    # Door: a large arched door in the middle of the nave.
    paint(((np.abs(x - bx) <= 0.10) & (y <= g) & (y >= g - 0.20)) | _ellipse(x, y, bx, g - 0.20, 0.10, 0.10), DOOR)
    return lab


def _palettes(params: ChurchParams) -> np.ndarray:
    """``float32 [B, L, 3]``: each scene's colour per label (label 0, the sky, is its gradient)."""
    a = params.attrs
    v = {name: a[:, j] for name, j in _COL.items()}
    pal = np.zeros((len(params), _N_LABELS, 3), dtype=np.float32)
    pal[:, CLOUDS], pal[:, SUNDISK], pal[:, MOONDISK] = CLOUD, SUN, MOON
    pal[:, GROUND] = _stack("season", 0)[v["season"]]
    pal[:, TRUNKS] = TRUNK
    pal[:, CROWN] = _stack("season", 1)[v["season"]]
    pal[:, WALLS] = _stack("walls")[v["walls"]]
    pal[:, ROOF] = _stack("roof_color")[v["roof_color"]]
    pal[:, BELFRY] = pal[:, WIN_DARK] = WINDOW_DAY
    pal[:, WIN_LIT] = WINDOW_DUSK
    pal[:, DOOR] = _stack("door")[v["door"]]
    # Dusk: everything daylight lit is darker and bluer.
    dusk = (v["light"] == 1)[:, None, None] & _LIT[None, :, None]
    return np.where(dusk, pal * DUSK, pal)


def _draw(params: ChurchParams, s: int) -> np.ndarray:
    """``float32 [B, s, s, 3]`` (0..255) for a chunk of scenes."""
    b = len(params)
    lab = _labels(params, s)
    pal = _palettes(params)
    img = pal[np.arange(b)[:, None, None], lab]  # [B, s, s, 3]
    # The sky: a vertical gradient from its top colour to its horizon colour, where label 0 shows.
    sky = params.attrs[:, _COL["sky"]]
    g = 0.52 + 0.08 * _cont(params.ident, "horizon")[:, :, 0]  # [B, 1]
    c = (np.arange(s, dtype=np.float32) + 0.5) * (2.0 / s) - 1.0
    t = np.clip((c[None, :] + 1.0) / (g + 1.0), 0, 1)[..., None]  # [B, s, 1]
    grad = _stack("sky", 0)[sky][:, None] * (1 - t) + _stack("sky", 1)[sky][:, None] * t  # [B, s, 3]
    np.copyto(img, np.broadcast_to(grad[:, :, None], img.shape), where=(lab == SKY)[..., None])
    return img


def render(params: ChurchParams, size: int = 64) -> np.ndarray:
    """Draw church scenes: ``params`` (N) -> ``uint8 [N, size, size, 3]``, deterministic per scene.
    ``size`` must be a multiple of 8 between 16 and 256."""
    if not isinstance(size, (int, np.integer)) or size % 8 or not 16 <= size <= 256:
        raise ValueError(f"size must be a multiple of 8 between 16 and 256, got {size!r}")
    size = int(size)
    s = size * SUPERSAMPLE
    out = np.empty((len(params), size, size, 3), dtype=np.uint8)
    chunk = max(1, _CHUNK * 64 * 64 // (size * size))
    for i in range(0, len(params), chunk):
        img = _draw(params[i : i + chunk], s)
        img = img.reshape(len(img), size, 2, size, 2, 3).mean(axis=(2, 4))
        out[i : i + len(img)] = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return out
