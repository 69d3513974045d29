"""Real domains default to the official settings; each is checked against an independent
re-implementation of the official code (random weights in the official formats, on CPU).

- DeltaEdit ``scripts/inference_real.py`` / ``scripts/inference.py``: Δt from
  ``map_tool.GetDt`` (raw), ``select = |fs3·Δt_raw| < 0.03`` (``GetBoundary``, threshold of
  ``options/test_options.py``), Δt normalised after, i1 from the photo at 256 px through
  Upsample(x7) + AvgPool(8) with no CLIP mean/std, ``ds[select] = 0``, s' = s + ds.
- The CLIP feed of DeltaEdit, StyleCLIP-OP and -LM (``criteria/clip_loss.py``): Upsample(x7) +
  AvgPool(size/32) of the [-1, 1] image, no mean/std.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deltabench.models.stylegan2 import GeneratorConfig, StyleGAN2, save_rosinality_checkpoint
from deltabench.real import loaders
from deltabench.real.domain import RealDomain, RealDomainConfig
from test_official_checkpoints import OfficialDeltaMapper, ref_delta_mapper
from test_real_domains import TINY_CLIP, _register_tiny_clip

RES = 64
# The official DeltaMapper's structure at 64 px: coarse 3 x 16, medium 4 x 16, fine 16 + 8.
CHANNELS = {4: 16, 8: 16, 16: 16, 32: 16, 64: 8}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 64 px real domain (official-format files, random weights) and its paths."""
    import open_clip

    d = tmp_path_factory.mktemp("official-defaults")
    torch.manual_seed(0)
    G = StyleGAN2(GeneratorConfig(size=RES, style_dim=32, n_mlp=2, channels=CHANNELS)).eval()
    save_rosinality_checkpoint(d / "g.pt", G, G.mean_latent(500))
    _register_tiny_clip(d)
    torch.manual_seed(2)
    torch.save(open_clip.create_model(TINY_CLIP, pretrained=None).state_dict(), d / "clip.pt")
    torch.manual_seed(5)
    torch.save(loaders.fid_inception_net(None).state_dict(), d / "fid.pth")
    cfg = RealDomainConfig.from_dict({
        "name": "ffhq-toy64", "resolution": RES, "generator": str(d / "g.pt"), "clip": str(d / "clip.pt"),
        "clip_model": TINY_CLIP, "fid": str(d / "fid.pth"), "neutral": "face", "test_source": "generated",
        "prompts": [{"source": "face", "target": "face with smile"}]})
    return RealDomain(cfg), d


def _official_clip(path):
    """The CLIP of the official scripts, loaded without deltabench: (model, tokenizer)."""
    import open_clip

    m = open_clip.create_model(TINY_CLIP, pretrained=None)
    m.load_state_dict(torch.load(path, weights_only=True))
    return m.eval(), open_clip.get_tokenizer(TINY_CLIP)


@torch.no_grad()
def _get_dt(model, tok, target, neutral, templates):
    """utils/map_tool.py zeroshot_classifier + GetDt: the raw difference, numpy."""
    feats = []
    for name in (target, neutral):
        e = model.encode_text(tok([t.format(name) for t in templates])).float()
        e = e / e.norm(dim=-1, keepdim=True)
        m = e.mean(0)
        feats.append(m / m.norm())
    return (feats[0] - feats[1]).numpy()


def _official_feed(img, size):
    """AvgPool2d(size // 32)(Upsample(scale_factor=7)(img)), as the official scripts build it."""
    return torch.nn.AvgPool2d(kernel_size=size // 32)(torch.nn.Upsample(scale_factor=7)(img))


@torch.no_grad()
def _official_inference(G, clip, tok, templates, fs3, sd, w, photos, target, neutral="face", threshold=0.03):
    """scripts/inference_real.py (lines 94-103, 155-192) on S codes; photos=None:
    scripts/inference.py, whose delta_c[:, :512] are CLIP features of the generated image
    (generate_codes.py lines 66-68, normalised by train_dataset.py line 48)."""
    dt = _get_dt(clip, tok, target, neutral, templates)
    select = np.abs(np.dot(fs3, dt)) < threshold  # GetBoundary
    dt = torch.Tensor(dt)
    dt = dt / dt.norm(dim=-1, keepdim=True).float().clamp(min=1e-5)
    styles = G.styles(w)
    latent_s = torch.cat([styles[i] for i in range(len(styles)) if not G.slayout.is_torgb[i]], dim=1)
    if photos is not None:
        img = F.interpolate(photos, size=(256, 256), mode="bilinear", align_corners=False, antialias=True)
        c = clip.encode_image(_official_feed(img, 256))
    else:
        c = clip.encode_image(_official_feed(G.synthesis_from_styles(styles), RES))
    c = c / c.norm(dim=-1, keepdim=True).float()
    out = []
    for i in range(len(w)):
        delta_c = torch.cat((c[i : i + 1], dt.unsqueeze(0)), dim=1)
        fake = ref_delta_mapper(sd, latent_s[i : i + 1], delta_c, 16, 16)[0]
        fake[torch.from_numpy(select)] = 0  # improved_ds
        out.append(latent_s[i] + fake)
    return torch.stack(out), select, dt


def _fs3_around(dt_raw: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Unit rows whose cosines with Δt spread over [-1, 1], so |fs3·Δt_raw| crosses 0.03."""
    rng = np.random.default_rng(seed)
    u = dt_raw / np.linalg.norm(dt_raw)
    r = rng.standard_normal((n, len(u)))
    r -= (r @ u)[:, None] * u[None]
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    cos = rng.permutation(np.linspace(-1, 1, n))
    return (cos[:, None] * u[None] + np.sqrt(1 - cos ** 2)[:, None] * r).astype(np.float32)


def test_deltaedit_on_a_real_domain_edits_as_the_official_inference(toy, tmp_path):
    from deltaedit.method import DeltaEdit

    domain, d = toy
    G, sl = domain.generator, domain.generator.slayout
    assert sl.total_non_torgb == 3 * 16 + 4 * 16 + 24
    torch.manual_seed(7)
    net = OfficialDeltaMapper(16, 16, 24, 2 * 32)
    torch.save(net.state_dict(), d / "net_face.pth")  # scripts/train.py line 59
    sd = net.state_dict()
    clip, tok = _official_clip(d / "clip.pt")
    dt_raw = _get_dt(clip, tok, "face with smile", "face", domain.templates)
    norm = float(np.linalg.norm(dt_raw))
    assert 0.03 < norm < 1  # so thresholding the raw and the unit Δt differ
    fs3 = _fs3_around(dt_raw, sl.total_non_torgb)
    np.save(d / "fs3.npy", fs3)

    m = DeltaEdit(domain, tmp_path, checkpoint=str(d / "net_face.pth"), relevance_file=str(d / "fs3.npy"))
    assert m.beta == 0.03 and m.relevance_dt == "raw" and not m.cfg.torgb and m.cfg.clip_input == "official"
    info = m.fit()
    assert info["relevance"]["source"] == "relevance_file" and len(info["sha256"]) == 64
    w = domain.sample_w_plus(3, seed=11)
    photos = torch.rand(3, 3, RES, RES, generator=torch.Generator().manual_seed(3)) * 2 - 1

    for images in (photos, None):  # inference_real.py (the photo), inference.py (G(s))
        want, select, _ = _official_inference(G, clip, tok, domain.templates, fs3, sd, w, images, "face with smile")
        assert 0 < select.sum() < len(select)
        got = m.edit(w, "face", "face with smile", images=images)
        assert (torch.cat([got[i] for i in sl.non_torgb_indices], 1) - want).abs().max() < 1e-5
        styles = G.styles(w)
        assert all(torch.equal(got[i], styles[i]) for i in range(len(sl)) if sl.is_torgb[i])

    # the raw Δt matters: the unit one keeps channels the official filter zeroes
    unit = np.abs(fs3 @ (dt_raw / norm)) < 0.03
    assert (unit != select).any()
    m.relevance_dt = "unit"
    other = m.edit(w, "face", "face with smile", images=photos)
    want, _, _ = _official_inference(G, clip, tok, domain.templates, fs3, sd, w, photos, "face with smile")
    assert (torch.cat([other[i] for i in sl.non_torgb_indices], 1) - want).abs().max() > 1e-4


def test_deltaedit_real_domain_defaults(toy, tmp_path):
    from deltaedit.method import DeltaEdit, DeltaEditNaive

    domain, _ = toy
    m = DeltaEdit(domain, tmp_path)
    assert m.beta == 0.03 and m.relevance_dt == "raw" and m.cfg.clip_input == "official"
    assert "clip_input" in m.cfg.to_dict()  # real-domain pools and mappers are keyed by the feed
    assert DeltaEditNaive(domain, tmp_path).beta == 0.0  # no official filter for the naive baseline
    assert DeltaEdit(domain, tmp_path, beta=0.0).beta == 0.0
    de = domain.method_defaults["deltaedit"]
    assert de["config"] == {"n_generated": 200_000, "n_inverted": 58_000, "steps": 201_562, "batch": 64}
    assert (200_000 + 58_000) * 50 // 64 == 201_562  # train_dataset.py x50, scripts/train.py drop_last
    with pytest.raises(ValueError, match="relevance_dt"):
        DeltaEdit(domain, tmp_path, relevance_dt="scaled")


def test_deltaedit_beta_uses_the_domain_styleclip_gd_fs3(toy, tmp_path, monkeypatch):
    """Without a relevance file, fit() takes the fs3 that `fit styleclip-gd` caches for the domain."""
    import baselines.gd as gd
    from deltaedit.method import DeltaEdit

    domain, d = toy
    seen = {}

    def fake_fit_fs3(dom, work_dir, cfg, force=False, log=None):
        seen["work_dir"], seen["cfg"] = work_dir, cfg
        return torch.ones(dom.generator.slayout.total_non_torgb, 32), None, {"config": cfg.to_dict(), "cached": True}

    monkeypatch.setattr(gd, "fit_fs3", fake_fit_fs3)
    m = DeltaEdit(domain, tmp_path / "methods" / domain.key, checkpoint=str(d / "net_face.pth"))
    info = m.fit()
    assert seen["work_dir"] == tmp_path / "methods" / domain.key / "styleclip-gd"
    assert seen["cfg"].resolve(domain) == gd.FS3Config.from_dict(domain.method_defaults.get("styleclip-gd", {}).get("config", {})).resolve(domain)
    assert info["relevance"]["source"] == "styleclip-gd fs3" and m.relevance.shape[0] == 136


def test_official_clip_feed_is_upsample_avgpool_without_normalisation(toy):
    domain, d = toy
    x = torch.rand(2, 3, RES, RES, generator=torch.Generator().manual_seed(1)) * 2 - 1
    feed = _official_feed(x, RES)  # criteria/clip_loss.py lines 11-15
    assert torch.allclose(domain.clip.preprocess(x, normalize=False), feed, atol=1e-5)
    assert not torch.allclose(domain.clip.preprocess(x), feed, atol=1e-2)  # the config's clip_normalize
    clip, _ = _official_clip(d / "clip.pt")
    with torch.no_grad():
        want = F.normalize(clip.encode_image(feed), dim=-1)
        assert torch.allclose(domain.encode_clip(x, official_input=True), want, atol=1e-5)
        assert torch.allclose(domain.clip_image(x, official_input=True), want, atol=1e-5)
        # the metrics and StyleCLIP-GD keep the domain's own (normalised) feed
        assert not torch.allclose(domain.clip_image(x), want, atol=1e-3)
