"""IDS through insightface itself (``ArcFaceONNX`` + ``face_align.norm_crop``), on an ONNX
model exported from a small torch net; the fallback without insightface records a warning."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_real_domains import _TinyArcFace, weights  # noqa: F401 - `weights` is a fixture

from deltabench.metrics.identity import IdentitySimilarity
from deltabench.models.irse import ffhq_face_crop
from deltabench.real import align as A
from deltabench.real import loaders
from deltabench.utils import uint8_to_float

pytest.importorskip("insightface")
from insightface.model_zoo.arcface_onnx import ArcFaceONNX  # noqa: E402
from insightface.utils.face_align import norm_crop  # noqa: E402

# insightface 2.1's norm_crop calls SimilarityTransform.estimate, deprecated in scikit-image 0.26
pytestmark = pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def net_onnx(tmp_path_factory):
    torch.manual_seed(3)
    net = _TinyArcFace().eval()
    path = tmp_path_factory.mktemp("arcface") / "w600k_r50.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.randn(1, 3, 112, 112),),
            str(path),
            dynamo=False,
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "N"}},
        )
    return net, path


@pytest.fixture(scope="module")
def aligned():
    """The astronaut aligned the FFHQ way at 256 px, and its record (landmarks)."""
    skimage_data = pytest.importorskip("skimage.data")
    res = A.align_face(skimage_data.astronaut(), 256)
    return np.asarray(res.image), res.record()


def _ref(model_file, bgr_crops):
    m = ArcFaceONNX(model_file=str(model_file))
    return F.normalize(torch.from_numpy(m.get_feat(list(bgr_crops))).float(), dim=1)


def _tensor(rgb):
    return uint8_to_float(np.stack(rgb))


def test_same_embedding_as_insightface_on_the_same_crop(net_onnx, aligned):
    net, path = net_onnx
    img, rec = aligned
    five = A.five_points(rec["landmarks_aligned"])
    crop = norm_crop(np.ascontiguousarray(img[..., ::-1]), five.astype(np.float32), image_size=112)  # BGR
    crop2 = np.ascontiguousarray(np.roll(crop, 7, axis=1))  # a second "face"
    ref = _ref(path, [crop, crop2])
    rgb = [np.ascontiguousarray(c[..., ::-1]) for c in (crop, crop2)]
    ours = loaders.load_arcface(path, crop="none")
    assert isinstance(ours, loaders.InsightFaceArcFace) and ours.warning is None
    got = ours.embed(_tensor(rgb))
    assert (got - ref).abs().max() < 1e-5
    # the fallback (insightface's preprocessing re-implemented) agrees on the crop too
    fallback = loaders.OnnxArcFace(path, crop="none").embed(_tensor(rgb))
    assert (fallback - ref).abs().max() < 1e-5
    # and both are the torch net itself: RGB, (x - 127.5) / 127.5
    with torch.no_grad():
        want = F.normalize(net(_tensor(rgb)), dim=1)
    assert (ref - want).abs().max() < 1e-5
    # the IDS metric: the cosine of insightface's embeddings
    ids = IdentitySimilarity(ours.embed).update(_tensor(rgb[:1]), _tensor(rgb[1:]))
    assert abs(float(ids[0]) - float(ref[0] @ ref[1])) < 1e-5


def test_landmarks_from_the_alignment_record(net_onnx, aligned):
    _, path = net_onnx
    img, rec = aligned
    ours = loaders.load_arcface(path)
    x = _tensor([img])
    lm68 = np.asarray(rec["landmarks_aligned"])[None]
    crop = norm_crop(np.ascontiguousarray(img[..., ::-1]), A.five_points(lm68[0]).astype(np.float32), 112)
    assert (ours.embed(x, landmarks=lm68) - _ref(path, [crop])).abs().max() < 1e-5
    assert (ours.embed(x, landmarks=A.five_points(lm68[0])[None]) - _ref(path, [crop])).abs().max() < 1e-5
    # the 5 landmarks dlib found sit near the fixed FFHQ ones (in the 256 px aligned image):
    # eyes within 4 px, this face's mouth corners 13 px above the template's
    off = np.abs(A.five_points(lm68[0]) - loaders.ffhq_five_points(256))
    assert off[:3].max() < 5 and off.max() < 16
    with pytest.raises(ValueError, match="landmarks"):
        ours.embed(x, landmarks=np.zeros((1, 3, 2)))


def test_fixed_ffhq_points_cut_the_fixed_crop(net_onnx, aligned):
    _, path = net_onnx
    img, _ = aligned
    ours = loaders.load_arcface(path)  # crop="ffhq": norm_crop at ffhq_five_points
    crop = ours.crops(_tensor([img]))[0]
    fixed = ffhq_face_crop(_tensor([img]), 112)[0]  # area-averaged, float
    fixed = ((fixed.permute(1, 2, 0).numpy() + 1) * 127.5)[..., ::-1]
    d = np.abs(crop.astype(np.float64) - fixed)
    assert d.mean() < 3.0, d.mean()  # bilinear (norm_crop) vs area averaging of one square
    assert (ours.embed(_tensor([img])) - _ref(path, [crop])).abs().max() < 1e-5
    assert ours.info()["backend"].startswith("insightface ")


def test_without_insightface_the_fallback_is_recorded(net_onnx, monkeypatch, tmp_path):
    _, path = net_onnx
    monkeypatch.setitem(sys.modules, "insightface", None)  # import insightface -> ImportError
    assert loaders.insightface_version() is None
    with pytest.warns(UserWarning, match="insightface is not installed"):
        m = loaders.load_arcface(path)
    assert isinstance(m, loaders.OnnxArcFace) and "insightface is not installed" in m.info()["warning"]

    # a run manifest records it (RealDomain.identity_info -> runner.domain_notes)
    from deltabench.domainbase import DomainBase
    from deltabench.runner import RunConfig, domain_notes, prepare_out_dir

    class D(DomainBase):  # the contract's optional members at their defaults
        identity_info = m.info()
        fid_feature_name = "Inception pool3"
        fid_resize = "clean-fid 'clean'"
        device = torch.device("cpu")
        clip = type("Clip", (), {"precision": "fp32"})()

        def describe(self):
            return {"name": "d"}

    cfg = RunConfig(methods=("deltaedit",), world="ffhq-toy", images=2)
    prepare_out_dir(tmp_path / "run", cfg, False, False, log=lambda s: None, extra=domain_notes(D()))
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "insightface is not installed" in manifest["identity"]["warning"]
    assert manifest["domain"] == {"name": "d"}

    class NoIdentity(D):
        identity_info = None

    notes = domain_notes(NoIdentity())
    assert notes["domain"] == {"name": "d"} and "identity" not in notes and notes["device"]["device"] == "cpu"


def test_real_domain_scores_ids_through_insightface(weights):  # noqa: F811 - the imported fixture
    from test_real_domains import _config

    from deltabench.real.domain import RealDomain
    from deltabench.runner import domain_notes

    d = RealDomain(_config(), weights=weights)
    assert isinstance(d.identity, loaders.InsightFaceArcFace)
    notes = domain_notes(d)
    assert notes["identity"]["backend"].startswith("insightface ") and "warning" not in notes["identity"]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    e = d.identity.embed(x)
    assert e.shape == (2, 24) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
