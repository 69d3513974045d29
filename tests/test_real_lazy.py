"""Real domains load each network when first asked for (issue 22, items 3-5).

A domain JSON naming only the generator, e4e and CLIP (official formats, random weights, 64 px:
a rosinality checkpoint, an e4e checkpoint with a 256 px input as the released one, OpenAI's
TorchScript CLIP archive) loads, passes the up-front file check for DeltaEdit with a released
``net_face.pth``, inverts a photo through the official photo path and edits it exactly as the
official ``scripts/inference_real.py`` computes, without an identity or Inception file; asking
for a network whose file is missing is then an error naming that file and how to get it.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from test_official_checkpoints import OfficialDeltaMapper
from test_official_defaults import CHANNELS, RES, _fs3_around, _get_dt, _official_inference
from test_real_domains import TINY_CLIP, _OpenAIStyleHolder, _register_tiny_clip

from deltabench.checkpoints import CheckpointError
from deltabench.models.e4e import E4EConfig, Encoder4Editing, save_e4e_checkpoint
from deltabench.models.irse import IRSEConfig
from deltabench.models.stylegan2 import GeneratorConfig, StyleGAN2, save_rosinality_checkpoint
from deltabench.real import loaders
from deltabench.real.domain import RealDomain, load_domain_config, load_real_domain

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

E4E_BODY = IRSEConfig(units=(1, 1, 1, 1), widths=(8, 16, 24, 32), stem_width=8, se=True, se_reduction=4)
PROMPT = ("face", "face with smile")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Official-format files of a 64 px face domain: generator, e4e, CLIP (TorchScript), net_face.pth."""
    import open_clip

    d = tmp_path_factory.mktemp("lazy-weights")
    torch.manual_seed(0)
    G = StyleGAN2(GeneratorConfig(size=RES, style_dim=32, n_mlp=2, channels=CHANNELS)).eval()
    save_rosinality_checkpoint(d / "g.pt", G, G.mean_latent(500))
    torch.manual_seed(1)
    # input_size 256 = 16 * 2 ** 4: the released e4e's input (GradualStyleBlock depths 4, 5, 6)
    enc = Encoder4Editing(
        E4EConfig(backbone=E4E_BODY, n_styles=G.n_latent, style_dim=32, input_size=256, convs=(4, 5, 6))
    ).eval()
    save_e4e_checkpoint(
        d / "e4e.pt",
        enc,
        G.state_dict(),
        G.mean_latent(500).reshape(-1),
        {"stylegan_size": RES, "encoder_type": "Encoder4Editing", "start_from_latent_avg": True},
    )
    _register_tiny_clip(d)
    torch.manual_seed(2)
    clip = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(_OpenAIStyleHolder(clip), torch.zeros(1)).save(str(d / "ViT-B-32.pt"))  # clip.load's format
    torch.manual_seed(7)
    torch.save(OfficialDeltaMapper(16, 16, 24, 2 * 32).state_dict(), d / "net_face.pth")  # scripts/train.py
    photo = np.random.default_rng(3).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    Image.fromarray(photo).save(d / "photo.png")
    return {"dir": d, "G": G, "enc": enc, "clip": clip}


def _json(tmp_path, files, **entries):
    cfg = {
        "name": "ffhq-lazy",
        "resolution": RES,
        "generator": "g.pt",
        "encoder": "e4e.pt",
        "clip": "ViT-B-32.pt",
        "clip_model": TINY_CLIP,
        "neutral": "face",
        "prompts": [{"source": PROMPT[0], "target": PROMPT[1]}],
        **entries,
    }
    p = tmp_path / f"{cfg['name']}.json"
    p.write_text(json.dumps(cfg))
    return p


def test_generator_e4e_clip_json_edits_with_released_deltaedit(files, tmp_path, monkeypatch):
    import open_clip
    from torchvision import transforms

    from deltabench.domain import load_domain
    from deltaedit.method import DeltaEdit

    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("TorchScript code must not be loaded"))
    d = files["dir"]
    domain = load_domain(str(_json(tmp_path, files)), weights=str(d))
    assert isinstance(domain, RealDomain) and domain.loaded == ()  # nothing read yet
    method_opts = {"deltaedit": {"checkpoint": str(d / "net_face.pth")}}
    assert domain.check_files(method_opts, invert=True) == ("generator", "encoder", "clip")
    assert domain.loaded == ()  # the check looks at files only
    # the released fs3 at any path (DeltaEdit's relevance_file, the lead's --fs3)
    G = domain.generator
    tok = open_clip.get_tokenizer(TINY_CLIP)  # the official scripts' CLIP and tokenizer, not deltabench's
    dt_raw = _get_dt(files["clip"], tok, PROMPT[1], PROMPT[0], domain.templates)
    fs3 = _fs3_around(dt_raw, G.slayout.total_non_torgb)
    (tmp_path / "anywhere").mkdir()
    np.save(tmp_path / "anywhere" / "fs3.npy", fs3)

    x = domain.photo_input(d / "photo.png")  # PIL Resize(256), ToTensor, Normalize(0.5)
    official = transforms.Compose(
        [transforms.Resize(256), transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )
    assert torch.equal(x[0], official(Image.open(d / "photo.png").convert("RGB")))
    w = domain.invert(x)
    assert torch.allclose(w, files["enc"](x) + domain.encoder.encoder.latent_avg, atol=1e-5)
    m = DeltaEdit(
        domain,
        tmp_path / "work",
        checkpoint=str(d / "net_face.pth"),
        relevance_file=str(tmp_path / "anywhere" / "fs3.npy"),
    )
    info = m.fit()
    assert info["relevance"]["path"] == str(tmp_path / "anywhere" / "fs3.npy")
    styles = m.edit(w, *PROMPT, images=x)
    assert domain.loaded == ("generator", "encoder", "clip")  # no identity, no Inception

    # what scripts/inference_real.py computes from the same input tensor (lines 170-190)
    sd = torch.load(d / "net_face.pth", weights_only=True)
    ref_s, _, _ = _official_inference(G, files["clip"], tok, domain.templates, fs3, sd, w, x, PROMPT[1])
    ours = torch.cat([s for s, t in zip(styles, G.slayout.is_torgb) if not t], dim=1)
    assert torch.allclose(ours, ref_s, atol=1e-4)


def test_missing_files_are_errors_when_needed_and_before_work(files, tmp_path):
    d = files["dir"]
    # the ffhq entries for IDS, the StyleCLIP identity loss and FID, none of them on disk
    p = _json(
        tmp_path,
        files,
        identity="w600k_r50.onnx",
        identity_loss="model_ir_se50.pth",
        fid="pt_inception-2015-12-05-6726825d.pth",
    )
    domain = load_real_domain(p, weights=d)
    assert domain.has("identity") and domain.loaded == ()
    domain.check_files({"deltaedit": {"checkpoint": str(d / "net_face.pth")}}, invert=True)  # edit: fine
    domain.check_files({"styleclip-op": {}, "styleclip-gd": {}})  # OP's official id_lambda is 0 here
    with pytest.raises(CheckpointError, match=r"w600k_r50\.onnx not found.*deltabench weights fetch buffalo_l\.zip"):
        domain.identity
    with pytest.raises(
        CheckpointError,
        match=r"IR-SE50 identity loss.*model_ir_se50\.pth not found.*"
        r"deltabench weights fetch model_ir_se50\.pth",
    ):
        domain.check_files({"styleclip-lm": {}}, purpose="styleclip-lm")  # LM's identity loss (id_lambda 0.1)
    with pytest.raises(CheckpointError) as e:  # a run: every missing file in one message, before any work
        domain.check_files({"deltaedit": {}}, metrics=True, test_images=True, purpose="run")
    msg = str(e.value)
    assert (
        msg.startswith("run: 2 files are missing")
        and "pt_inception-2015-12-05-6726825d.pth" in msg
        and "w600k_r50.onnx" in msg
    )
    with pytest.raises(CheckpointError, match=r"pt_inception-2015-12-05-6726825d\.pth"):
        domain.fid_features(torch.zeros(1, 3, RES, RES))
    assert domain.loaded == ()
    # the method cache key names the weights fits read, so a metric file appearing never moves it
    key, world = domain.key, domain.config_hash
    torch.manual_seed(5)
    fid = d / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(loaders.fid_inception_net(None).state_dict(), fid)
    try:
        later = load_real_domain(p, weights=d)
        assert later.fid_features(torch.zeros(2, 3, RES, RES)).shape == (2, 2048)
        assert later.loaded == ("fid",) and later.config_hash != world and later.key == key
    finally:
        fid.unlink()


def test_optional_entries_may_be_absent(files, tmp_path):
    d = files["dir"]
    cfg = load_domain_config(_json(tmp_path, files))  # no fid: once "missing 1 required positional argument"
    assert cfg.fid is None and cfg.identity is None
    domain = RealDomain(cfg, weights=d)
    assert domain.identity is None and domain.identity_loss is None and not domain.has("identity")
    assert domain.needs(["styleclip-lm"]) == ("generator", "clip")  # no identity model: no ID loss
    with pytest.raises(CheckpointError, match=r"names no 'fid' file.*pt_inception"):
        domain.check_files(metrics=True)
    assert domain.needs(metrics=True) == ("clip", "fid")  # score: no generator
    # no encoder: a photo cannot be inverted, said before the edit starts
    lsun = RealDomain(load_domain_config(_json(tmp_path, files, encoder=None)), weights=d)
    with pytest.raises(CheckpointError, match="has no inversion encoder"):
        lsun.check_files(["deltaedit"], invert=True)


def test_fs3_entry_takes_a_path_anywhere(files, tmp_path):
    d = files["dir"]
    (tmp_path / "elsewhere").mkdir()
    f = tmp_path / "elsewhere" / "my-fs3.npy"
    np.save(f, np.eye(4, dtype=np.float32))
    assert RealDomain(load_domain_config(_json(tmp_path, files, fs3=str(f))), weights=d).released_fs3 == f
    with pytest.raises(CheckpointError, match="no such file"):
        RealDomain(load_domain_config(_json(tmp_path, files, fs3=str(tmp_path / "nope.npy"))), weights=d).released_fs3
    # a registry name not fetched yet: none (the filter then uses the domain's own fs3)
    assert (
        RealDomain(load_domain_config(_json(tmp_path, files, fs3="styleclip-fs3-ffhq.npy")), weights=d).released_fs3
        is None
    )
    (d / "styleclip-fs3-ffhq.npy").write_bytes(f.read_bytes())
    try:
        assert (
            RealDomain(load_domain_config(_json(tmp_path, files, fs3="styleclip-fs3-ffhq.npy")), weights=d).released_fs3
            == d / "styleclip-fs3-ffhq.npy"
        )
    finally:
        (d / "styleclip-fs3-ffhq.npy").unlink()
    assert load_domain_config("ffhq").fs3 == "styleclip-fs3-ffhq.npy"


# -- the official photo path (issue 22, item 5) -----------------------------------------------
@pytest.mark.parametrize("side", [256, 300, 1024])
def test_photo_input_is_torchvision_resize_totensor_normalize(side):
    from torchvision import transforms

    from deltabench.imageio import official_photo_input, official_resize
    from deltabench.utils import uint8_to_float

    a = np.random.default_rng(side).integers(0, 256, (side, side, 3), dtype=np.uint8)
    official = transforms.Compose(
        [transforms.Resize(256), transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )(Image.fromarray(a))
    ours = official_photo_input(a)
    assert ours.shape == (1, 3, 256, 256) and torch.equal(ours[0], official)
    # e4e (and DeltaEdit's i1) given the photo as float [-1, 1] at the generator's size: the same
    assert torch.equal(official_resize(uint8_to_float(a[None]), 256)[0], official)


def test_non_square_photo_is_centre_cropped_and_says_so(tmp_path):
    from torchvision import transforms

    from deltabench.imageio import load_image, official_photo_input

    a = np.random.default_rng(0).integers(0, 256, (200, 320, 3), dtype=np.uint8)  # 320 wide, 200 high
    Image.fromarray(a).save(tmp_path / "wide.png")
    with pytest.warns(
        UserWarning,
        match=r"320x200, not square: centre-cropped to its middle 200x200 square "
        r"\(columns 60-259, rows 0-199\)",
    ):
        x = official_photo_input(tmp_path / "wide.png")
    crop = a[:, 60:260]
    official = transforms.Compose(
        [transforms.Resize(256), transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    )(Image.fromarray(crop))
    assert torch.equal(x[0], official)
    with pytest.warns(UserWarning, match="centre-cropped"):
        y = load_image(tmp_path / "wide.png", 200)  # never squashed
    assert torch.equal(y, torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1)
