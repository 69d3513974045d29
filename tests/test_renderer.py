import numpy as np
import pytest

from deltabench.viz import make_grid, save_png
from deltabench.world.attributes import ATTRIBUTES, IDENTITY_PARAMS, FaceParams, sample_params
from deltabench.world.renderer import BACKGROUND_RGB, HAIR_RGB, SKIN_RGB, render


def _faces(n=16, seed=0) -> FaceParams:
    return sample_params(n, np.random.default_rng(seed))


def _neutral(n=1) -> FaceParams:
    """Faces with every attribute at its first value and mid identity."""
    return FaceParams(
        np.zeros((n, len(ATTRIBUTES)), dtype=np.int64),
        np.zeros((n, len(IDENTITY_PARAMS)), dtype=np.float32),
    )


def _px(v: float, size: int) -> int:
    """Normalised coordinate in [-1, 1] -> pixel index."""
    return int((v + 1.0) / 2.0 * size)


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, H, W]`` bool: pixels that differ noticeably."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(-1) > 24


@pytest.mark.parametrize("size", [32, 64])
def test_shape_dtype(size):
    img = render(_faces(5), size)
    assert img.shape == (5, size, size, 3)
    assert img.dtype == np.uint8
    assert img.std() > 30  # not a flat image


def test_deterministic_and_batch_independent():
    p = _faces(70, seed=3)  # more than one internal chunk
    a, b = render(p, 64), render(p, 64)
    assert a.tobytes() == b.tobytes()
    # A face's pixels do not depend on what else is in the batch.
    single = np.concatenate([render(p[i], 64) for i in (0, 33, 69)])
    assert np.array_equal(single, a[[0, 33, 69]])


@pytest.mark.parametrize("size", [0, 30, 36 + 1, 264, 16])
def test_bad_size(size):
    with pytest.raises(ValueError, match="multiple of 8"):
        render(_faces(1), size)


def test_all_sizes_and_scaling():
    p = _faces(4, seed=1)
    for size in range(32, 257, 8):
        assert render(p[:1], size).shape == (1, size, size, 3)
    # Features scale with size: 128 px box-downsampled to 64 px matches the 64 px render.
    big = render(p, 128).astype(np.float32)
    small = big.reshape(4, 64, 2, 64, 2, 3).mean((2, 4))
    assert np.abs(small - render(p, 64)).mean() < 4.0


def test_background_is_flat_and_recoverable():
    p = _faces(64, seed=2)
    img = render(p, 32).astype(np.int16)
    pal = np.array(list(BACKGROUND_RGB.values()), dtype=np.int16)
    corner = img[:, 1, 1]  # [N, 3]
    guess = np.abs(corner[:, None] - pal[None]).sum(-1).argmin(1)
    assert np.array_equal(guess, p.get("background"))
    assert np.abs(img[:, 0:4, 0:4] - corner[:, None, None]).max() == 0


def test_background_change_only_touches_background():
    p = _faces(8, seed=4).with_attr("background", "blue")
    a, b = render(p, 64), render(p.with_attr("background", "yellow"), 64)
    d = _diff(a, b)
    assert d[:, :3, :3].all()
    blue = np.all(a == np.array(BACKGROUND_RGB["blue"], dtype=np.uint8), -1)
    # Changed pixels are background or its antialiased edge, never the face centre.
    assert (d & ~blue).mean() < 0.03
    assert not d[:, 26:40, 26:40].any()


def test_hair_colour_recoverable_and_distinct():
    pal = np.array(list(HAIR_RGB.values()), dtype=np.int16)
    dist = np.abs(pal[:, None] - pal[None]).sum(-1)
    assert dist[~np.eye(len(pal), dtype=bool)].min() >= 90
    bg = np.array(list(BACKGROUND_RGB.values()), dtype=np.int16)
    assert np.abs(pal[:, None] - bg[None]).sum(-1).min() >= 90
    p = _faces(64, seed=5)
    for size in (32, 64):
        img = render(p, size).astype(np.int16)
        top = img[:, _px(-0.6, size), size // 2]  # the hair cap above the forehead
        guess = np.abs(top[:, None] - pal[None]).sum(-1).argmin(1)
        assert np.array_equal(guess, p.get("hair_color"))


def test_hair_length_is_a_large_area_on_both_sides():
    p = _faces(8, seed=6).with_attr("hair_length", "short")
    a, b = render(p, 64), render(p.with_attr("hair_length", "long"), 64)
    d = _diff(a, b)
    assert d.mean(axis=(1, 2)).min() > 0.10
    rows = slice(_px(0.2, 64), _px(0.8, 64))
    assert d[:, rows, :12].mean() > 0.3 and d[:, rows, -12:].mean() > 0.3


def test_skin_tones_ordered_and_separated():
    tones = np.array(list(SKIN_RGB.values()), dtype=np.float32).mean(1)
    assert tones[0] > tones[1] + 40 > tones[2] + 80
    p = _neutral(1)
    cheek = [
        render(p.with_attr("skin", v), 64)[0, _px(0.05, 64), _px(-0.3, 64)].astype(float).mean()
        for v in ("light", "medium", "dark")
    ]
    assert cheek[0] > cheek[1] + 40 > cheek[2] + 80


def _region_change(name, a_val, b_val, n=12, seed=7, size=64):
    p = _faces(n, seed=seed).with_attr(name, a_val)
    a, b = render(p, size), render(p.with_attr(name, b_val), size)
    return a, b, _diff(a, b)


def test_glasses_change_eye_region_only():
    for size in (32, 64):
        a, b, d = _region_change("glasses", "none", "glasses", size=size)
        eye_rows = slice(_px(-0.35, size), _px(0.15, size))
        assert d[:, eye_rows].mean(axis=(1, 2)).min() > 0.08
        assert not d[:, : _px(-0.4, size)].any() and not d[:, _px(0.2, size) :].any()
        # Frames are dark: the eye band gets darker on every face.
        assert (b[:, eye_rows].mean(axis=(1, 2, 3)) < a[:, eye_rows].mean(axis=(1, 2, 3)) - 5).all()


def test_smile_is_a_grin_with_teeth():
    for size in (32, 64):
        a, b, d = _region_change("smile", "neutral", "smiling", size=size)
        assert not d[:, : _px(0.0, size)].any()
        lower = slice(_px(0.05, size), _px(0.6, size))

        def white(img):
            return (img[:, lower].min(-1) > 235).sum(axis=(1, 2))

        # Teeth: a band of white pixels appears in the lower face (eyes are above it).
        assert (white(b) - white(a) >= (6 if size == 64 else 2)).all()
        assert d.sum(axis=(1, 2)).min() >= (60 if size == 64 else 14)


def test_beard_darkens_the_jaw_not_the_eyes():
    for size in (32, 64):
        a, b, d = _region_change("beard", "shaven", "beard", size=size)
        assert not d[:, : _px(-0.2, size)].any()
        # Below the mouth of a neutral face the jaw is beard only.
        p = _faces(12, seed=7).with_attr("beard", "beard").with_attr("smile", "neutral")
        cols = slice(size // 2 - size // 8, size // 2 + size // 8)
        jaw = render(p, size)[:, _px(0.35, size) : _px(0.6, size), cols]
        assert np.median(jaw.max(-1).reshape(len(p), -1), axis=1).max() < 60  # near-black
        assert d.mean(axis=(1, 2)).min() > 0.06


def test_beard_differs_from_black_hair():
    p = _neutral(1).with_attr("beard", "beard").with_attr("hair_color", "black")
    img = render(p.with_attr("hair_length", "long"), 64)[0].astype(int)
    beard_px = img[_px(0.45, 64), 32]
    hair_px = img[_px(0.5, 64), 3]
    assert np.abs(beard_px - hair_px).sum() >= 30


def test_eye_size_and_face_width():
    a, b, d = _region_change("eye_size", "small", "large")
    band = slice(_px(-0.25, 64), _px(0.05, 64))

    def white(img):
        return (img[:, band].min(-1) > 235).sum(axis=(1, 2))

    assert (white(b) > white(a) * 1.5).all()
    assert not d[:, _px(0.1, 64) :].any()
    p = _neutral(1)
    row = _px(0.0, 64)

    def skin(img):
        return (np.abs(img[0, row].astype(int) - SKIN_RGB["light"]).sum(-1) < 20).sum()

    narrow, wide = render(p, 64), render(p.with_attr("face_width", "wide"), 64)
    assert skin(wide) >= skin(narrow) + 7


def test_identity_params_change_pixels_and_people():
    p = _faces(16, seed=8)
    base = render(p, 64)
    for j, name in enumerate(IDENTITY_PARAMS):
        lo, hi = p.ident.copy(), p.ident.copy()
        lo[:, j], hi[:, j] = -1.0, 1.0
        a, b = render(FaceParams(p.attrs, lo), 64), render(FaceParams(p.attrs, hi), 64)
        changed = _diff(a, b).sum(axis=(1, 2))
        assert changed.min() >= 4, name
        assert np.median(changed) >= 15, name
    # Two different people with the same attributes are different images.
    other = render(FaceParams(p.attrs, -p.ident), 64)
    assert _diff(base, other).sum(axis=(1, 2)).min() >= 30


def test_every_attribute_value_renders_distinctly():
    base = _neutral(1)
    seen = []
    for att in ATTRIBUTES:
        for v in range(1, att.n):
            seen.append(render(base.with_attr(att.name, v), 32)[0])
    ref = render(base, 32)[0]
    for img in seen:
        assert _diff(img[None], ref[None]).sum() >= 8


def test_extreme_identity_keeps_mouth_and_eyes_inside_face():
    rng = np.random.default_rng(9)
    p = sample_params(64, rng)
    ident = np.sign(rng.uniform(-1, 1, p.ident.shape)).astype(np.float32)
    p = FaceParams(p.attrs, ident).with_attr("smile", "smiling").with_attr("glasses", "none")
    img = render(p, 64)
    lower = slice(_px(0.05, 64), _px(0.6, 64))
    teeth = (img[:, lower].min(-1) > 235).sum(axis=(1, 2))
    assert teeth.min() >= 8
    eyes = (img[:, _px(-0.25, 64) : _px(0.05, 64)].min(-1) > 235).sum(axis=(1, 2))
    assert eyes.min() >= 6


def test_viz_grid(tmp_path):
    imgs = render(_faces(5), 32)
    g = make_grid(imgs, nrow=3, pad=2)
    assert g.shape == (2 + 2 * 34, 2 + 3 * 34, 3) and g.dtype == np.uint8
    assert np.array_equal(g[2:34, 36:68], imgs[1])
    assert np.array_equal(g[36:68, 2:34], imgs[3])
    assert (g[36:68, 70:102] == 255).all()  # empty slot
    path = save_png(g, tmp_path / "sub" / "g.png")
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), g)
    with pytest.raises(ValueError):
        make_grid(imgs.astype(np.float32), nrow=2)


def test_feature_windows_hold_every_feature():
    # render() evaluates each feature only inside a fixed window; extreme identities at the
    # largest size (the tightest window margin) must still give the full-grid result.
    from deltabench.world.renderer import _labels

    rng = np.random.default_rng(10)
    p = sample_params(48, rng)
    ident = np.sign(rng.uniform(-1, 1, p.ident.shape)).astype(np.float32)
    p = FaceParams(p.attrs, ident)
    for s, q in ((64, p), (512, p[:12])):
        assert np.array_equal(_labels(q, s, windowed=True), _labels(q, s, windowed=False))


def test_identity_is_clipped_to_its_range():
    p = _faces(4, seed=11)
    far = FaceParams(p.attrs, np.sign(p.ident) * 3.0)
    edge = FaceParams(p.attrs, np.sign(p.ident).astype(np.float32))
    assert np.array_equal(render(far, 64), render(edge, 64))


def test_label_grid():
    from deltabench.viz import label_grid

    imgs = render(_faces(4), 32)
    g = label_grid(imgs, nrow=2, row_labels=["glasses", "beard"])
    plain = make_grid(imgs, nrow=2)
    assert g.shape[0] == plain.shape[0] and g.shape[1] > plain.shape[1]
    assert np.array_equal(g[:, -plain.shape[1] :], plain)
    assert (g[:, : g.shape[1] - plain.shape[1]] < 128).any()  # some text was drawn
    with pytest.raises(ValueError, match="row labels"):
        label_grid(imgs, nrow=2, row_labels=["one"])
