"""``deltabench edit PHOTO`` on a real face domain: FFHQ alignment first, ``--paste-back`` into
the photo, ``--no-align`` for aligned images; on synthfaces no alignment ever runs.

The domain is the random-weight 32 px ``ffhq``-like one of ``tests/test_real_domains.py``
(every file in its official format), the photo scikit-image's astronaut (512 px, one face)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_real_domains import RES, _config, weights  # noqa: F401 - `weights` is a fixture

from deltabench.cli import main
from deltabench.real import align as A

pytestmark = pytest.mark.slow  # photo alignment and edits on a toy real domain (about 2 minutes each)

FAST = ["--method", "deltaedit", "--steps", "2", "--n-generated", "8", "--n-inverted", "0", "--batch", "4"]


@pytest.fixture
def toy(weights, tmp_path, monkeypatch):  # noqa: F811 - the imported fixture
    monkeypatch.setenv("DELTABENCH_WEIGHTS", str(weights))
    cfg = tmp_path / "ffhq-toy.json"
    cfg.write_text(json.dumps(_config().to_dict()))
    return cfg


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data")
    p = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(p)
    return p


def _edit(photo, cfg, out, *extra):
    return main(
        [
            "edit",
            str(photo),
            "--world",
            str(cfg),
            "--target",
            "face with smile",
            "--out",
            str(out),
            "--work-dir",
            str(out.parent / "work"),
            *FAST,
            *extra,
        ]
    )


def test_paste_back_changes_only_the_face(toy, photo, tmp_path, capsys):
    out = tmp_path / "res" / "edit.png"
    out.parent.mkdir()
    assert _edit(photo, toy, out, "--paste-back") == 0
    printed = capsys.readouterr().out.strip().splitlines()[-3:]
    aligned_png, pasted_png = out.with_name("edit_aligned.png"), out.with_name("edit_pasted.png")
    assert printed == [str(aligned_png), str(pasted_png), str(out)]
    edit = np.asarray(Image.open(out))
    assert edit.shape == (RES, RES, 3)
    # the aligned input is exactly what `deltabench align --size 32` makes
    want = A.align_face(A.load_photo(photo), RES)
    assert np.array_equal(np.asarray(Image.open(aligned_png)), np.asarray(want.image))
    rec = A.load_record(aligned_png.with_suffix(".json"))
    assert (
        np.allclose(rec["quad"], want.quad) and rec["size"] == RES and rec["faces_found"] == want.n_faces
    )  # 2: a small second "face" on the suit

    orig = np.asarray(Image.open(photo).convert("RGB")).astype(int)
    pasted = np.asarray(Image.open(pasted_png)).astype(int)
    assert pasted.shape == orig.shape
    diff = np.abs(pasted - orig).max(axis=2)
    # outside the quad's bounding box: untouched, bit for bit
    q = want.quad
    x0, y0 = np.floor(q.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(q.max(axis=0)).astype(int) + 1
    box = np.zeros(diff.shape, bool)
    box[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    assert diff[~box].max() == 0
    # ... and wherever the feathered face mask, mapped into the photo, is 0
    from scipy.ndimage import map_coordinates

    ys, xs = np.mgrid[: diff.shape[0], : diff.shape[1]]
    uv = A.to_aligned(np.stack([xs, ys], axis=-1), q, RES)
    weight = map_coordinates(A.face_mask(RES), [uv[..., 1], uv[..., 0]], order=1, mode="constant", cval=0.0)
    assert (weight > 0).sum() < 0.2 * weight.size
    assert diff[weight == 0].max() == 0
    assert diff[weight > 0.5].mean() > 5  # the (random-weight) edit really is in the photo
    # the face region is where the astronaut's face is (dlib box inside the mask's support)
    l, t, r, b = rec["face_box"]
    assert weight[(t + b) // 2, (l + r) // 2] > 0.9


def test_no_align_skips_alignment(toy, photo, tmp_path, monkeypatch, capsys):
    def no_dlib(*a, **k):
        raise AssertionError("alignment ran despite --no-align")

    monkeypatch.setattr(A, "detect_faces", no_dlib)
    monkeypatch.setattr(A, "align_face", no_dlib)
    out = tmp_path / "edit.png"
    with pytest.warns(UserWarning, match="resizing"):  # the 512 px photo goes in as it is, resized
        assert _edit(photo, toy, out, "--no-align") == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    assert np.asarray(Image.open(out)).shape == (RES, RES, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["edit.png", "ffhq-toy.json"]


def _one_error_line(rc, capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("deltabench: error:"), err
    for w in words:
        assert w in err[0]


def test_photo_without_a_face_stops_before_any_work(toy, tmp_path, monkeypatch, capsys):
    import deltabench.domain

    monkeypatch.setattr(deltabench.domain, "load_domain", lambda *a, **k: pytest.fail("domain loaded"))
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(noise)
    rc = _edit(noise, toy, tmp_path / "e.png", "--paste-back")
    _one_error_line(rc, capsys, "no face found", "--no-align")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ffhq-toy.json", "noise.png"]
    rc = _edit(noise, toy, tmp_path / "e.png", "--paste-back", "--no-align")
    _one_error_line(rc, capsys, "--paste-back", "--no-align")


def test_paste_back_on_synthfaces_is_a_clear_error(tmp_path, capsys):
    img = tmp_path / "face.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    rc = main(["edit", str(img), "--target", "smiling face", "--paste-back"])
    _one_error_line(rc, capsys, "--paste-back", "synthfaces")
    rc = main(["edit", str(img), "--target", "smiling face", "--paste-back", "--feather", "0"])
    _one_error_line(rc, capsys, "--feather")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]
