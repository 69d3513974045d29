"""StyleCLIP baselines (OP, LM, GD) on the micro world: losses, mapper identity, GD
directions, batched fs3 against the naive loop, caches and bad input."""

from __future__ import annotations

import pytest
import torch

import baselines.gd as gd
import baselines.lm as lm
from baselines.common import clip_loss, raw_text_embedding
from baselines.gd import FS3Config, StyleCLIPGlobal, compute_fs3, compute_fs3_naive, gd_delta_s, load_fs3
from baselines.lm import LevelsMapper, LMConfig, StyleCLIPMapper, level_split
from baselines.op import OPConfig, StyleCLIPOptimization, get_lr, optimize_latents
from deltabench import sspace
from deltabench.domain import SynthfacesDomain
from deltabench.methods import get_method


@pytest.fixture(scope="module")
def domain(micro_world):
    return SynthfacesDomain(micro_world)


@pytest.fixture(scope="module")
def w(domain):
    return domain.invert(domain.test_images(3, seed=5).images)


def test_registry_resolves_the_three_baselines():
    assert get_method("styleclip-op") is StyleCLIPOptimization
    assert get_method("styleclip-lm") is StyleCLIPMapper
    assert get_method("styleclip-gd") is StyleCLIPGlobal


# -- OP ------------------------------------------------------------------------------------------
def test_lr_schedule_is_the_official_one():
    assert get_lr(0.0, 0.1) == 0.0  # linear ramp-up from zero over the first 5 %
    assert get_lr(0.025, 0.1) == pytest.approx(0.05)
    assert get_lr(0.5, 0.1) == pytest.approx(0.1)
    assert get_lr(0.875, 0.1) == pytest.approx(0.05)  # half-way down the 25 % cosine ramp
    assert get_lr(0.999, 0.1) < 1e-4


def test_op_reduces_its_clip_loss_and_images_are_independent(domain, w):
    cfg = OPConfig(steps=10)
    flags = [p.requires_grad for p in domain.generator.parameters()]
    t = raw_text_embedding(domain, "face with glasses")
    out, hist = optimize_latents(domain, w[:2], t, cfg)
    with torch.no_grad():
        before = clip_loss(domain, domain.generator.synthesis(w[:2]), t)
        after = clip_loss(domain, domain.generator.synthesis(out), t)
    assert (after < before - 1e-3).all(), (before, after)
    assert hist[-1][1] < hist[0][1]
    # Per-image losses are summed: a batch of two follows the trajectories of two single runs.
    alone, _ = optimize_latents(domain, w[1:2], t, cfg)
    assert torch.allclose(alone, out[1:2], atol=1e-4)
    # Generator weights got no gradients and keep their requires_grad flags.
    assert all(p.grad is None for p in domain.generator.parameters())
    assert [p.requires_grad for p in domain.generator.parameters()] == flags


def test_op_strength_is_the_l2_weight(domain, w):
    m = StyleCLIPOptimization(domain, "unused", config=OPConfig(steps=5))
    assert m.strength_name == "l2_lambda" and m.default_strength == 0.008
    G = domain.generator
    s0 = sspace.gather(G.styles(w[:1]), G.slayout)
    d = {}
    for l2 in (0.0, 10.0):
        s = sspace.gather(m.edit(w[:1], "face", "face with glasses", strength=l2), G.slayout)
        d[l2] = (s - s0).norm().item()
    assert d[10.0] < d[0.0]
    with pytest.raises(ValueError, match="L2 weight"):
        m.edit(w[:1], "face", "face with glasses", strength=-1)
    with pytest.raises(ValueError, match="w_plus must be"):
        m.edit(w[0], "face", "face with glasses")


# -- LM ------------------------------------------------------------------------------------------
def test_level_split_scales_the_official_groups():
    assert level_split(18) == (slice(0, 4), slice(4, 8), slice(8, 18))  # official 0-3 / 4-7 / 8-17
    assert level_split(10) == (slice(0, 2), slice(2, 4), slice(4, 10))
    with pytest.raises(ValueError, match="at least 3"):
        level_split(2)


def test_lm_output_is_w_when_mapper_weights_are_zero(domain, w, tmp_path):
    G = domain.generator
    m = StyleCLIPMapper(domain, tmp_path)
    zero = LevelsMapper(G.n_latent, G.style_dim)
    with torch.no_grad():
        for p in zero.parameters():
            p.zero_()
    assert torch.equal(zero(w), torch.zeros_like(w))
    m._mappers["face with glasses"] = zero
    for a, b in zip(m.edit(w, "face", "face with glasses"), G.styles(w)):
        assert torch.equal(a, b)
    # A random mapper does move w, and the multiplier scales the step.
    m._mappers["smiling face"] = LevelsMapper(G.n_latent, G.style_dim)
    s0 = sspace.gather(G.styles(w), G.slayout)
    moved = [(sspace.gather(m.edit(w, "face", "smiling face", k), G.slayout) - s0).norm() for k in (0.05, 0.1)]
    assert 0 < moved[0] < moved[1]


def test_lm_trains_once_per_prompt_and_reuses_the_checkpoint(domain, w, tmp_path, monkeypatch):
    cfg = LMConfig(steps=4, batch=4, n_train=16)
    m = StyleCLIPMapper(domain, tmp_path, config=cfg)
    m.fit()
    first = m.edit(w, "face", "face with glasses")
    info = m.train_info["face with glasses"]
    assert info["history"][0][0] == 0 and len(list(m.run_dir.glob("*.safetensors"))) == 2  # latents + mapper

    def boom(*a, **k):
        raise AssertionError("retrained a cached mapper")

    monkeypatch.setattr(lm, "train_mapper", boom)
    again = StyleCLIPMapper(domain, tmp_path, config=cfg).edit(w, "face", "face with glasses")
    for a, b in zip(first, again):
        assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="unknown keys"):
        LMConfig.from_dict({"stepz": 3})


# -- GD ------------------------------------------------------------------------------------------
def test_gd_delta_s_is_zero_below_beta_and_follows_the_sign_of_dt():
    g = torch.Generator().manual_seed(0)
    fs3 = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1)
    std = torch.rand(40, generator=g) + 0.5
    dt = torch.nn.functional.normalize(torch.randn(1, 8, generator=g), dim=1)
    ds, n = gd_delta_s(fs3, std, dt, beta=0.3)
    r = (dt @ fs3.T)[0]
    keep = r.abs() >= 0.3
    assert 0 < int(n) < 40 and int(n) == int(keep.sum())
    assert torch.equal(ds[0][~keep], torch.zeros(int((~keep).sum())))
    assert torch.equal(torch.sign(ds[0][keep]), torch.sign(r[keep]))
    # The strongest channel moves by exactly its sigma (official: divide by max |r|, then x std).
    top = r.abs().argmax()
    assert ds[0, top].abs() == pytest.approx(std[top].item())
    ds_neg, _ = gd_delta_s(fs3, std, -dt, beta=0.3)
    assert torch.allclose(ds_neg, -ds)
    none, n0 = gd_delta_s(fs3, std, dt, beta=1.1)  # nothing above beta: no edit, not NaN
    assert int(n0) == 0 and torch.equal(none, torch.zeros_like(none))


@pytest.mark.parametrize("torgb", [False, True])
def test_fs3_batched_equals_the_naive_loop(domain, torgb):
    # 3 channels per pass, chunks across layers; toRGB rows take the linear skip-path shortcut.
    cfg = FS3Config(n_images=2, n_std=200, max_batch=12, torgb=torgb)
    fs3, std, info = compute_fs3(domain, cfg)
    ref = compute_fs3_naive(domain, cfg, std)
    S = sspace.edit_width(domain.generator.slayout, torgb)
    assert S > domain.generator.slayout.total_non_torgb or not torgb
    assert fs3.shape == ref.shape == (S, domain.text_embedding("face").shape[0])
    assert torch.allclose(fs3.norm(dim=1), torch.ones(S), atol=1e-4)
    assert torch.allclose(fs3, ref, atol=2e-4), (fs3 - ref).abs().max()
    assert info["channels"] == S and info["channels_per_second"] > 0


def test_gd_fit_caches_fs3_and_edits_along_it(domain, w, tmp_path, monkeypatch):
    cfg = FS3Config(n_images=2, n_std=200)
    m = StyleCLIPGlobal(domain, tmp_path, config=cfg, beta=0.05)
    info = m.fit()
    assert not info["cached"] and m.fs3_path.is_file() and m.fs3_path.with_suffix(".json").is_file()
    fs3, std, meta = load_fs3(m.work_dir)
    assert meta["slayout"]["widths"] == list(domain.generator.slayout.widths)
    # The domain decides toRGB (synthfaces: yes, like DeltaEdit), and the cache records it.
    assert m.cfg.torgb is True and meta["config"]["torgb"] is True
    assert fs3.shape[0] == sspace.edit_width(domain.generator.slayout, True)  # DeltaEdit's relevance=[S_edit, D]

    def boom(*a, **k):
        raise AssertionError("fs3 recomputed although cached")

    monkeypatch.setattr(gd, "compute_fs3", boom)
    m2 = StyleCLIPGlobal(domain, tmp_path, config=cfg, beta=0.05)
    cached = m2.fit()
    assert cached["cached"] and torch.equal(m2.fs3, fs3)
    # A cached fs3 reports what computing it cost, not the moment it took to load.
    assert cached["fit_seconds"] == info["fit_seconds"] == pytest.approx(info["seconds"])
    assert info["fit_seconds"] > 0
    with pytest.raises(AssertionError, match="recomputed"):  # other settings -> recompute
        StyleCLIPGlobal(domain, tmp_path, config=FS3Config(n_images=3, n_std=200)).fit()

    G = domain.generator
    s0 = sspace.gather(G.styles(w), G.slayout, True)
    up = sspace.gather(m2.edit(w, "face", "face with glasses"), G.slayout, True) - s0
    ds = m2.direction([("face", "face with glasses")])[0]
    assert torch.allclose(up, 4.1 * ds[None].expand_as(up), atol=1e-5)  # default alpha 4.1, same for every image
    assert int(m2.last_n_channels[0]) == int((ds != 0).sum()) > 0
    down = sspace.gather(m2.edit(w, "face with glasses", "face"), G.slayout, True) - s0
    assert torch.allclose(down, -up, atol=1e-5)  # swapping the prompts flips Δt and Δs
    zero = m2.edit(w, "face", "face with glasses", strength=0.0)
    for a, b in zip(zero, G.styles(w)):
        assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="same"):
        m2.edit(w, "face", "face")


def test_fs3_config_and_cli_parser():
    with pytest.raises(ValueError, match="unknown keys"):
        FS3Config.from_dict({"n_imgs": 3})
    with pytest.raises(ValueError, match="precision"):
        FS3Config(precision="int8")
    from deltabench import cli

    a = cli.build_parser().parse_args(["fit", "styleclip-gd", "--world", "synthfaces-micro", "--n-images", "4"])
    assert a.method == "styleclip-gd" and a.world == "synthfaces-micro" and a.n_images == 4 and a.func is cli._cmd_fit
