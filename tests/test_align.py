"""FFHQ alignment of real photos (deltabench.real.align, `deltabench align`) on scikit-image's
photographs: the astronaut (a face, plus a weak second detection) and the coffee cup (none)."""

import hashlib
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from deltabench.cli import main
from deltabench.real import align as A


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


@pytest.fixture(scope="module")
def faces(astronaut):
    return A.detect_faces(astronaut)


def _centres(lm):
    """Left eye, right eye and mouth centres as the FFHQ recipe defines them."""
    lm = np.asarray(lm, dtype=np.float64)
    return lm[36:42].mean(0), lm[42:48].mean(0), (lm[48] + lm[54]) / 2


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_astronaut_face_found_and_the_largest_of_two_boxes_wins(astronaut, faces):
    # with one upsampling dlib also returns a weak box on her suit; the face box is larger
    assert len(faces) == 2
    face, other = faces
    assert face.area > other.area and face.score > 1.0 > 0.5 > other.score
    eye_l, eye_r, mouth = _centres(face.landmarks)
    l, t, r, b = face.box
    for p in (eye_l, eye_r, mouth):
        assert l <= p[0] <= r and t <= p[1] <= b
    assert 150 < eye_l[0] < eye_r[0] < 260 and mouth[1] < 200  # the face at the top, not the box below
    res = A.align_face(astronaut, 64, transform_size=64)
    assert res.n_faces == 2 and res.face.box == face.box


def test_eyes_and_mouth_land_on_the_ffhq_positions_at_1024(astronaut, faces):
    S = 1024
    face = faces[0]
    res = A.align_face(astronaut, S, face=face)
    assert res.image.size == (S, S) and res.image.mode == "RGB"
    # Canonical positions derived from the recipe: the crop is the square of half-side
    # s = max(2 |eye_to_eye|, 1.8 |eye_to_mouth|) centred at eye_avg + 0.1 eye_to_mouth, with
    # its x axis along the eyes (for a face whose eye line is perpendicular to eye_to_mouth),
    # mapped onto [0, S]^2 (continuous coordinates; pixel index = continuous - 0.5).
    eye_l, eye_r, mouth = _centres(face.landmarks)
    a = np.hypot(*(eye_r - eye_l))
    b = np.hypot(*(mouth - (eye_l + eye_r) / 2))
    s = max(2.0 * a, 1.8 * b)
    k = S / (2 * s)  # aligned pixels per photo pixel
    canon = (
        np.array(
            [
                [S / 2 - k * a / 2, S / 2 - k * 0.1 * b],
                [S / 2 + k * a / 2, S / 2 - k * 0.1 * b],
                [S / 2, S / 2 + k * 0.9 * b],
            ]
        )
        - 0.5
    )
    if 2.0 * a >= 1.8 * b:  # the usual case (hers): the eyes sit at 3/8 and 5/8 of the width
        np.testing.assert_allclose(canon[:2, 0], [3 * S / 8 - 0.5, 5 * S / 8 - 0.5])
    # the landmarks mapped through the recorded transform
    mapped = np.array(_centres(res.landmarks_aligned()))
    err_mapped = np.hypot(*(mapped - canon).T)
    assert err_mapped.max() < 4.0, err_mapped
    # and the pixels: dlib run again on the aligned image finds them there too
    again = A.detect_faces(res.image)
    assert again
    found = np.array(_centres(again[0].landmarks))
    err_pixels = np.hypot(*(found - canon).T)
    assert err_pixels.max() < 4.0, err_pixels


def test_same_input_same_bytes(astronaut):
    one = A.align_face(astronaut, 256)
    two = A.align_face(astronaut.copy(), 256)
    assert _png_bytes(one.image) == _png_bytes(two.image)
    assert json.dumps(one.record()) == json.dumps(two.record())


def test_transform_round_trip_and_record(astronaut, faces):
    res = A.align_face(astronaut, 128, face=faces[0], transform_size=256)
    pts = np.array([[0.0, 0.0], [511.0, 3.5], [200.25, 300.75]])
    np.testing.assert_allclose(A.to_photo(A.to_aligned(pts, res.quad, 128), res.quad, 128), pts, atol=1e-9)
    # the quad's corners are the aligned image's corners (continuous frame: quad + 0.5 <-> 0, size)
    np.testing.assert_allclose(
        A.to_aligned(res.quad, res.quad, 128), [[-0.5, -0.5], [-0.5, 127.5], [127.5, 127.5], [127.5, -0.5]], atol=1e-9
    )
    rec = res.record("x.png")
    assert rec["format"] == A.RECORD_FORMAT and rec["photo_size"] == [512, 512] and rec["faces_found"] is None
    assert len(rec["landmarks"]) == 68 and np.asarray(rec["quad"]).shape == (4, 2)


def test_face_at_the_photo_edge_is_padded_not_shifted(astronaut, faces):
    # cut the photo through her hair: the quad leaves the photo on the top and the left, so the
    # recipe pads (reflect, blur, fade to the median); the face itself must not move
    lm = faces[0].landmarks
    full = np.asarray(A.align_face(astronaut, 256, landmarks=lm).image).astype(int)
    cut = np.asarray(A.align_face(astronaut[40:, 160:], 256, landmarks=lm - [160, 40]).image).astype(int)
    assert np.abs(full - cut)[64:, 64:].max() <= 2
    assert cut[:16, :16].min() > 40  # filled from the photo, not black


def test_large_photo_is_detected_on_a_downscaled_copy(astronaut, faces):
    big = np.asarray(Image.fromarray(astronaut).resize((1024, 1024), Image.LANCZOS))
    found = A.detect_faces(big, max_side=512)
    assert found and found[0].box[1] < 400  # the face, in full-size coordinates
    np.testing.assert_allclose(
        np.array(_centres(found[0].landmarks)), 2 * np.array(_centres(faces[0].landmarks)) + 0.5, atol=3.0
    )
    # at 64 px the face (quad side ~350 px) is over 4x the output: the recipe shrinks the photo
    # by 2 first, and the result matches aligning the original photo
    lm2 = 2 * faces[0].landmarks + 0.5
    assert int(A.ffhq_quad(lm2)[1] / 64 * 0.5) == 2
    small = np.asarray(A.align_face(astronaut, 64, landmarks=faces[0].landmarks).image).astype(int)
    shrunk = np.asarray(A.align_face(big, 64, landmarks=lm2).image).astype(int)
    assert np.abs(small - shrunk).mean() < 0.5


def test_exif_orientation_is_applied(tmp_path, astronaut):
    # a phone photo stored sideways with orientation 6 ("rotate 90 degrees clockwise to view")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(astronaut).copy()).save(tmp_path / "phone.png", exif=exif)
    assert np.array_equal(np.asarray(A.load_photo(tmp_path / "phone.png")), astronaut)


def test_photo_without_a_face_is_a_clear_error():
    coffee = data.coffee()
    assert A.detect_faces(coffee) == []
    with pytest.raises(A.NoFaceError, match="no face found"):
        A.align_face(coffee, 256)


def test_paste_back_changes_only_the_face(astronaut):
    res = A.align_face(astronaut, 256)
    edit = Image.fromarray(255 - np.asarray(res.image))  # an "edit": inverted colours
    out = np.asarray(A.paste_back(astronaut, edit, res.quad))
    assert out.shape == astronaut.shape and out.dtype == np.uint8
    x0, y0 = np.floor(res.quad.min(0)).astype(int) - 1
    x1, y1 = np.ceil(res.quad.max(0)).astype(int) + 1
    outside = np.ones(astronaut.shape[:2], bool)
    outside[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = False
    assert outside.sum() > 0.8 * outside.size
    assert np.array_equal(out[outside], astronaut[outside])
    # the centre of the face is the edit (inverted), the corner of the aligned square is not touched
    nose = np.rint(res.landmarks[30]).astype(int)
    patch = (slice(nose[1] - 2, nose[1] + 3), slice(nose[0] - 2, nose[0] + 3))
    assert np.abs(out[patch].astype(int) - (255 - astronaut[patch].astype(int))).mean() < 12
    corner = np.rint(A.to_photo([8, 8], res.quad, 256)).astype(int)
    assert np.array_equal(out[corner[1], corner[0]], astronaut[corner[1], corner[0]])
    # pasting the unedited aligned image back reproduces the photo up to resampling
    same = np.asarray(A.paste_back(astronaut, res.image, res.quad, mask="full"))
    changed = (same != astronaut).any(-1) | ~outside
    assert np.abs(same.astype(int) - astronaut.astype(int))[changed].mean() < 4.0
    # a mask of zeros changes nothing; a wrong-sized mask is an error
    assert np.array_equal(np.asarray(A.paste_back(astronaut, edit, res.quad, mask=np.zeros((256, 256)))), astronaut)
    with pytest.raises(A.AlignError, match="mask is"):
        A.paste_back(astronaut, edit, res.quad, mask=np.ones((10, 10)))


def test_cli_aligns_photos_and_writes_the_transform(tmp_path, capsys, astronaut):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    out = tmp_path / "aligned"
    assert main(["align", str(photo), "--out", str(out), "--size", "256"]) == 0
    captured = capsys.readouterr()
    assert "2 faces found; aligning the largest" in captured.err
    img = Image.open(out / "astronaut.png")
    assert img.size == (256, 256) and img.mode == "RGB"
    rec = A.load_record(out / "astronaut.json")
    assert rec["faces_found"] == 2 and rec["size"] == 256 and rec["source"] == str(photo)
    assert np.array_equal(np.asarray(img), np.asarray(A.align_face(astronaut, 256).image))
    # the record is what paste-back needs
    back = A.paste_back(photo, img, rec["quad"])
    assert back.size == (512, 512)


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, astronaut):
    coffee = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).save(coffee)
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    out = tmp_path / "out"
    # no face: exit 2, one error line, no output directory; also when another photo is fine
    for args in ([str(coffee)], [str(photo), str(coffee)]):
        assert main(["align", *args, "--out", str(out), "--size", "64"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"deltabench: error: {coffee}: no face found — ")
        assert [line for line in err if line.startswith("deltabench: error:")] == [err[-1]]
        assert not out.exists()
    # a directory, an unreadable file, a missing file, two photos with one stem
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    (tmp_path / "b").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "b" / "astronaut.jpg")
    for args, msg in (
        ([str(tmp_path)], "is a directory"),
        ([str(bad)], "is not a readable image"),
        ([str(tmp_path / "missing.png")], "does not exist"),
        ([str(photo), str(tmp_path / "b" / "astronaut.jpg")], "would both be written"),
    ):
        assert main(["align", *args, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deltabench: error:") and msg in err[0], err
        assert not out.exists()
    # --size must be a positive integer
    for size in ("0", "-5", "abc", "1.5"):
        try:
            code = main(["align", str(photo), "--out", str(out), "--size", size])
        except SystemExit as e:  # argparse's exit, where main lets it through
            code = e.code
        assert code == 2
        assert "--size" in capsys.readouterr().err
    assert not out.exists()


def test_missing_dlib_names_the_extra(monkeypatch, tmp_path, capsys, astronaut):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib -> ImportError
    with pytest.raises(A.FacesExtraMissingError, match=r'pip install "deltabench\[faces\]"'):
        A.detect_faces(astronaut)
    photo = tmp_path / "a.png"
    Image.fromarray(astronaut).save(photo)
    assert main(["align", str(photo), "--out", str(tmp_path / "o")]) == 2
    assert 'pip install "deltabench[faces]"' in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_landmark_model_names_the_extra(monkeypatch, tmp_path):
    import importlib.util

    monkeypatch.setenv("DELTABENCH_WEIGHTS", str(tmp_path))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(A.FacesExtraMissingError, match=r"deltabench\[faces\].*weights fetch"):
        A.predictor_path()


def test_registry_entry_matches_the_packaged_landmark_model():
    from deltabench import weights as W

    entry = W.registry()[A.PREDICTOR]
    path = A.predictor_path()
    assert path.stat().st_size == entry.size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    assert h.hexdigest() == entry.sha256
    assert "align" in entry.used_by and "300-W" in entry.licence
