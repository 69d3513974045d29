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
from test_official_checkpoints import OfficialDeltaMapper, ref_delta_mapper
from test_real_domains import TINY_CLIP, _register_tiny_clip

from deltabench.models.stylegan2 import GeneratorConfig, StyleGAN2, save_rosinality_checkpoint
from deltabench.real import loaders
from deltabench.real.domain import RealDomain, RealDomainConfig

RES = 64
# The official DeltaMapper's structure at 64 px: coarse 3 x 16, medium 4 x 16, fine 16 + 8.
CHANNELS = {4: 16, 8: 16, 16: 16, 32: 16, 64: 8}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


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
    cfg = RealDomainConfig.from_dict(
        {
            "name": "ffhq-toy64",
            "resolution": RES,
            "generator": str(d / "g.pt"),
            "clip": str(d / "clip.pt"),
            "clip_model": TINY_CLIP,
            "fid": str(d / "fid.pth"),
            "neutral": "face",
            "test_source": "generated",
            "prompts": [{"source": "face", "target": "face with smile"}],
        }
    )
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
    if photos is not None:  # the photo files as inference_real.py reads them (lines 52-56, 67)
        from PIL import Image
        from torchvision import transforms

        tf = transforms.Compose(
            [transforms.Resize(256), transforms.ToTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
        )
        u8 = ((photos.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        img = torch.stack([tf(Image.fromarray(a)) for a in u8])
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
    return (cos[:, None] * u[None] + np.sqrt(1 - cos**2)[:, None] * r).astype(np.float32)


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
    de = type(domain).method_defaults["deltaedit"]  # with an encoder (ffhq): the official pool
    assert de["config"] == {"n_generated": 200_000, "n_inverted": 58_000, "steps": 201_562, "batch": 64}
    # this toy has no encoder: nothing to invert, DeltaEdit's pool is generated codes only
    assert domain.method_defaults["deltaedit"]["config"] == {**de["config"], "n_inverted": 0}
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
    torch.save(OfficialDeltaMapper(16, 16, 24, 2 * 32).state_dict(), tmp_path / "net.pth")
    m = DeltaEdit(domain, tmp_path / "methods" / domain.key, checkpoint=str(tmp_path / "net.pth"))
    info = m.fit()
    assert seen["work_dir"] == tmp_path / "methods" / domain.key / "styleclip-gd"
    assert seen["cfg"].resolve(domain) == gd.FS3Config.from_dict(
        domain.method_defaults.get("styleclip-gd", {}).get("config", {})
    ).resolve(domain)
    assert info["relevance"]["source"] == "styleclip-gd fs3" and m.relevance.shape[0] == 136


def test_deltaedit_uses_the_released_fs3_next_to_the_generator(toy, tmp_path, monkeypatch):
    """On ffhq the filter reads StyleCLIP's released fs3.npy (what inference.py line 58 loads)
    when it lies next to the generator; other generators have none."""
    from deltaedit.method import DeltaEdit

    domain, d = toy
    assert domain.released_fs3 is None  # no released fs3 for this generator
    assert RealDomain.RELEASED_FS3 == {"stylegan2-ffhq-config-f.pt": "styleclip-fs3-ffhq.npy"}
    rows = _fs3_around(np.ones(32), domain.generator.slayout.total_non_torgb, seed=3)
    np.save(d / "released-fs3.npy", rows)
    monkeypatch.setattr(RealDomain, "RELEASED_FS3", {"g.pt": "released-fs3.npy"})
    assert domain.released_fs3 == d / "released-fs3.npy"
    torch.save(OfficialDeltaMapper(16, 16, 24, 2 * 32).state_dict(), tmp_path / "net.pth")
    m = DeltaEdit(domain, tmp_path, checkpoint=str(tmp_path / "net.pth"))
    info = m.fit()
    assert info["relevance"] == {"source": "released fs3", "path": str(d / "released-fs3.npy")}
    assert torch.allclose(m.relevance, torch.from_numpy(rows))


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


# -- StyleCLIP-LM: Ranger, batch 2, 50k steps; OP: the script's id_lambda ----------------------
def _ref_ranger_run(params, grads, lr, steps):
    """StyleCLIP mapper/training/ranger.py (Ranger 20.4.11) step by step, written from its
    source: GC (grad - mean over dims 1..) for dim > 1, RAdam with the 10-slot buffer, Lookahead
    every k=6 steps with alpha 0.5; betas (0.95, 0.999), eps 1e-5, N_sma_threshhold 5."""
    import math

    beta1, beta2, eps, k, alpha, thr = 0.95, 0.999, 1e-5, 6, 0.5, 5
    ps = [p.clone() for p in params]
    st = [{"step": 0, "m": torch.zeros_like(p), "v": torch.zeros_like(p), "slow": p.clone()} for p in ps]
    buf = [[None, None, None] for _ in range(10)]
    for t in range(steps):
        for i, p in enumerate(ps):
            g = grads(t, i, p).clone()
            if g.dim() > 1:
                g = g - g.mean(dim=tuple(range(1, g.dim())), keepdim=True)
            s = st[i]
            s["step"] += 1
            s["v"] = s["v"] * beta2 + (1 - beta2) * g * g
            s["m"] = s["m"] * beta1 + (1 - beta1) * g
            b = buf[s["step"] % 10]
            if s["step"] == b[0]:
                n_sma, size = b[1], b[2]
            else:
                b[0] = s["step"]
                b2t = beta2 ** s["step"]
                n_max = 2 / (1 - beta2) - 1
                n_sma = n_max - 2 * s["step"] * b2t / (1 - b2t)
                b[1] = n_sma
                if n_sma > thr:
                    size = math.sqrt(
                        (1 - b2t) * (n_sma - 4) / (n_max - 4) * (n_sma - 2) / n_sma * n_max / (n_max - 2)
                    ) / (1 - beta1 ** s["step"])
                else:
                    size = 1.0 / (1 - beta1 ** s["step"])
                b[2] = size
            if n_sma > thr:
                p = p - size * lr * s["m"] / (s["v"].sqrt() + eps)
            else:
                p = p - size * lr * s["m"]
            if s["step"] % k == 0:
                s["slow"] = s["slow"] + alpha * (p - s["slow"])
                p = s["slow"].clone()
            ps[i] = p
    return ps


def test_lm_ranger_is_the_official_optimiser():
    pytest.importorskip("pytorch_ranger")
    from baselines import lm

    g = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 6, generator=g), torch.randn(6, generator=g)]
    target = [torch.randn(4, 6, generator=g), torch.randn(6, generator=g)]

    def grads(t, i, p):  # a quadratic loss with a step-dependent scale
        return (1 + 0.1 * t) * (p - target[i])

    steps = 20  # past N_sma > 5 (step 6 on) and three Lookahead syncs
    want = _ref_ranger_run(params, grads, 0.5, steps)
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    opt = lm.ranger(ps, lr=0.5)
    for t in range(steps):
        opt.zero_grad()
        for i, p in enumerate(ps):
            p.grad = grads(t, i, p.detach())
        opt.step()
    for a, b in zip(ps, want):
        assert torch.allclose(a.detach(), b, atol=1e-6)
    assert not torch.allclose(ps[0].detach(), params[0])


def test_styleclip_real_domain_defaults_are_the_official_ones(toy):
    from baselines import lm, op
    from baselines.common import clip_loss

    domain, d = toy
    dflt = domain.method_defaults
    cfg = lm.LMConfig.from_dict(dflt["styleclip-lm"]["config"])
    assert (cfg.steps, cfg.batch, cfg.optimizer, cfg.lr, cfg.l2_lambda, cfg.id_lambda) == (
        50_000,
        2,
        "ranger",
        0.5,
        0.8,
        0.1,
    )
    assert cfg.to_dict()["optimizer"] == "ranger" and "optimizer" not in lm.LMConfig().to_dict()
    ocfg = op.OPConfig.from_dict(dflt["styleclip-op"]["config"])
    assert (ocfg.id_lambda, ocfg.lr, ocfg.steps, ocfg.l2_lambda) == (0.0, 0.1, 300, 0.008)
    assert op.OPConfig().id_lambda == 0.005  # synthfaces keeps its value
    with pytest.raises(ValueError, match="optimizer"):
        lm.LMConfig(optimizer="sgd")
    # the CLIP loss of OP and LM sees the official feed (criteria/clip_loss.py): no mean/std
    clip, tok = _official_clip(d / "clip.pt")
    x = torch.rand(2, 3, RES, RES, generator=torch.Generator().manual_seed(4)) * 2 - 1
    t = F.normalize(torch.randn(32, generator=torch.Generator().manual_seed(5)), dim=0)
    with torch.no_grad():
        want = 1 - F.normalize(clip.encode_image(_official_feed(x, RES)), dim=-1) @ t
        assert torch.allclose(clip_loss(domain, x, t), want, atol=1e-5)


# -- StyleCLIP-GD fs3: the SingleChannel.py protocol --------------------------------------------
@torch.no_grad()
def _naive_single_channel(domain, n_images, n_std, seed, channels):
    """global_directions/SingleChannel.py + GetCode.py, one channel at a time in numpy where
    the script is numpy: codes truncated by 0.7 towards the average w, mean/σ over n_std codes
    (ddof 0), each channel set to its mean then ±5σ, images as uint8, GetFs. (Without the
    script's carry-over of earlier channels' means, see FS3Config.protocol.)"""
    from deltabench import sspace

    G = domain.generator
    sl = G.slayout
    avg = domain.latent_avg.reshape(-1)

    def codes(n, sd):  # GetCode: lerp(dlatent_avg, w, 0.7)
        return avg + 0.7 * (domain.sample_w_plus(n, sd) - avg)

    # the same code draws as baselines.gd (1024 at a time, seeds seed + 1 + i)
    pool = torch.cat([codes(min(1024, n_std - i), seed + 1 + i) for i in range(0, n_std, 1024)])
    S = sspace.gather(G.styles(pool), sl, False).double().numpy()
    mean, std = S.mean(axis=0), S.std(axis=0)  # GetCodeMS (numpy: ddof 0)
    styles = G.styles(codes(n_images, seed))
    s0 = sspace.gather(styles, sl, False).numpy()
    feats = []
    for c in channels:
        dl = s0.copy()
        dl[:, c] = mean[c]  # SingleChannel.py line 79
        f = []
        for a in (-5, 5):  # M.alpha = [-5, 5]; EditOneC: boundary = std at the channel
            x = dl.copy()
            x[:, c] += a * std[c]
            img = G.synthesis_from_styles(sspace.scatter(styles, torch.from_numpy(x).float(), sl, False))
            u8 = np.clip(img.numpy() * 127.5 + 128.0, 0, 255).astype("uint8")  # convert_images_to_uint8
            f.append(domain.clip.encode_image(torch.from_numpy(u8.astype(np.float32) / 127.5 - 1)).numpy())
        feats.append(np.stack(f, 1))  # [N, 2, D]
    fs = np.stack(feats)  # [C, N, 2, D]
    fs1 = fs / np.linalg.norm(fs, axis=-1)[..., None]  # GetFs
    fs2 = fs1[:, :, 1] - fs1[:, :, 0]
    fs3 = (fs2 / np.linalg.norm(fs2, axis=-1)[..., None]).mean(axis=1)
    return fs3 / np.linalg.norm(fs3, axis=-1)[:, None], mean, std


@pytest.mark.slow  # training or a many-file end-to-end check: minutes on 2 cores
def test_fs3_official_protocol_matches_single_channel(toy):
    import baselines.gd as gd

    domain, _ = toy
    cfg = gd.FS3Config.from_dict(domain.method_defaults["styleclip-gd"]["config"])
    assert (cfg.protocol, cfg.n_images, cfg.n_std, cfg.sigma) == ("official", 100, 100_000, 5.0)
    assert "protocol" not in gd.FS3Config().to_dict()  # synthfaces' fs3 key (and caches) unchanged
    cfg = gd.FS3Config(protocol="official", n_images=3, n_std=1500, seed=2, precision="fp32")
    channels = [0, 7, 20, 47, 60, 111, 120, 135]  # every non-toRGB layer kind, 64 px toy
    want, mean, std = _naive_single_channel(domain, 3, 1500, 2, channels)
    m, s = gd.channel_stats(domain, cfg)
    assert np.allclose(m.numpy(), mean, rtol=1e-4, atol=1e-5) and np.allclose(s.numpy(), std, rtol=1e-4, atol=1e-5)
    fs3, _, _ = gd.compute_fs3(domain, cfg, channels=channels)
    assert np.abs(fs3.numpy() - want).max() < 2e-4
    naive = gd.compute_fs3_naive(domain, cfg, s, channels=channels)
    assert np.abs(naive.numpy() - want).max() < 2e-4
    # the per-image protocol measures something else
    per_image, _, _ = gd.compute_fs3(
        domain, gd.FS3Config(n_images=3, n_std=1500, seed=2, precision="fp32"), channels=channels
    )
    assert np.abs(per_image.numpy() - want).max() > 1e-2
    with pytest.raises(ValueError, match="protocol"):
        gd.FS3Config(protocol="tf")


def test_deltaedit_takes_the_worlds_filter_defaults_outside_a_run(micro_world, tmp_path, monkeypatch):
    """`edit` and `eval` build the method without the run's merged options: the world config's
    benchmark defaults (the shipped world: beta 0.03 on the raw delta) must still apply."""
    from deltabench.domain import SynthfacesDomain
    from deltaedit.method import DeltaEdit

    domain = SynthfacesDomain(micro_world)
    assert DeltaEdit(domain, tmp_path).relevance_dt == "unit"  # a world that names none
    monkeypatch.setattr(domain, "method_defaults", {"deltaedit": {"beta": 0.03, "relevance_dt": "raw"}})
    m = DeltaEdit(domain, tmp_path)
    assert m.beta == 0.03 and m.relevance_dt == "raw"
    assert DeltaEdit(domain, tmp_path, relevance_dt="unit").relevance_dt == "unit"  # the user's wins
