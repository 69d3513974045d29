import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deltabench.models.ops import Blur, Upsample, make_kernel, upfirdn2d
from deltabench.models.stylegan2 import (
    CheckpointError,
    GeneratorConfig,
    ModulatedConv2d,
    build_generator,
    config_from_state_dict,
    load_rosinality_checkpoint,
    save_rosinality_checkpoint,
)
from deltabench.world.attributes import encoding_dim, sample_params
from deltabench.world.train_generator import (
    DistillConfig,
    detail_weights,
    distill_loss,
    generator_psnr,
    lr_factor,
    sample,
    train_generator,
)


@pytest.fixture(autouse=True)
def single_thread():
    # Tiny models gain nothing from threads, and on a shared CPU OpenMP barriers make 2 threads
    # up to 10x slower than 1.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


MICRO = GeneratorConfig(style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 8})


def micro_generator(seed=0, size=32):
    torch.manual_seed(seed)
    return build_generator(MICRO, size).eval()


# -- rosinality config-f layout, derived by hand from model.py ---------------------------------
def rosinality_expected_shapes(size=1024, style_dim=512, n_mlp=8, cm=2):
    """Key -> shape of rosinality's Generator state dict, written out from model.py."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm, 1024: 16 * cm}
    exp = {}
    for i in range(1, n_mlp + 1):
        exp[f"style.{i}.weight"] = (style_dim, style_dim)
        exp[f"style.{i}.bias"] = (style_dim,)
    exp["input.input"] = (1, ch[4], 4, 4)

    def styled(prefix, cin, cout, up):
        exp[f"{prefix}.conv.weight"] = (1, cout, cin, 3, 3)
        exp[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        exp[f"{prefix}.conv.modulation.bias"] = (cin,)
        exp[f"{prefix}.noise.weight"] = (1,)
        exp[f"{prefix}.activate.bias"] = (cout,)
        if up:
            exp[f"{prefix}.conv.blur.kernel"] = (4, 4)

    def torgb(prefix, cin, up):
        exp[f"{prefix}.conv.weight"] = (1, 3, cin, 1, 1)
        exp[f"{prefix}.conv.modulation.weight"] = (cin, style_dim)
        exp[f"{prefix}.conv.modulation.bias"] = (cin,)
        exp[f"{prefix}.bias"] = (1, 3, 1, 1)
        if up:
            exp[f"{prefix}.upsample.kernel"] = (4, 4)

    styled("conv1", ch[4], ch[4], False)
    torgb("to_rgb1", ch[4], False)
    log_size = int(math.log2(size))
    for layer_idx in range((log_size - 2) * 2 + 1):
        r = 2 ** ((layer_idx + 5) // 2)
        exp[f"noises.noise_{layer_idx}"] = (1, 1, r, r)
    cin = ch[4]
    for j, i in enumerate(range(3, log_size + 1)):
        cout = ch[2**i]
        styled(f"convs.{2 * j}", cin, cout, True)
        styled(f"convs.{2 * j + 1}", cout, cout, False)
        torgb(f"to_rgbs.{j}", cout, True)
        cin = cout
    return exp


def test_config_f_1024_layout_matches_rosinality():
    G = build_generator(GeneratorConfig(), 1024)
    exp = rosinality_expected_shapes()
    got = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    assert set(got) == set(exp)
    assert got == exp
    assert got["convs.0.conv.weight"] == (1, 512, 512, 3, 3)
    # 1024px width is 16 * channel_multiplier = 32 (64 is the 512px layer)
    assert got["to_rgbs.6.conv.weight"] == (1, 3, 64, 1, 1)
    assert got["to_rgbs.7.conv.weight"] == (1, 3, 32, 1, 1)
    n_params = sum(p.numel() for p in G.parameters())
    n_expected = sum(int(np.prod(s)) for k, s in exp.items() if not (k.startswith("noises.") or k.endswith(".kernel")))
    assert n_params == n_expected == 30_370_060
    lay = G.slayout
    assert G.n_latent == lay.n_latent == 18
    assert lay.total == 9088 and lay.total_non_torgb == 6048
    assert len(lay) == 26 and sum(lay.is_torgb) == 9
    assert [len(v) for v in lay.groups.values()] == [3, 4, 10]
    assert sum(lay.widths[i] for i in lay.groups["coarse"]) == 3 * 512
    assert sum(lay.widths[i] for i in lay.groups["medium"]) == 4 * 512
    assert lay.resolution[-1] == 1024 and lay.names[-1] == "to_rgbs.7"


def test_slayout_order_and_wplus_index():
    G = micro_generator()
    lay = G.slayout
    assert lay.names[:6] == ("conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0", "convs.2")
    # rosinality: conv1 w[0], to_rgb1 w[1], convs[2i] w[2i+1], convs[2i+1] w[2i+2], to_rgbs[i] w[2i+3]
    assert G.n_latent == 8
    assert lay.wplus_index == (0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7)
    assert lay.is_torgb[:5] == (False, True, False, False, True)
    assert lay.widths == (32, 32, 32, 32, 32, 32, 16, 16, 16, 8, 8)
    assert lay.resolution == (4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32)
    # each layer's style really is its modulation of w_plus[:, wplus_index]
    w_plus = torch.randn(2, G.n_latent, 32)
    styles = G.styles(w_plus)
    mods = dict(G.named_modules())
    for name, s, i in zip(lay.names, styles, lay.wplus_index):
        assert torch.equal(s, mods[name].conv.modulation(w_plus[:, i]))


def test_s_space_round_trip_and_flatten():
    G = micro_generator()
    w_plus = G.mapping(torch.randn(3, 32))[:, None].repeat(1, G.n_latent, 1)
    w_plus = w_plus + 0.1 * torch.randn_like(w_plus)
    with torch.no_grad():
        img = G.synthesis(w_plus)
        styles = G.styles(w_plus)
        assert img.shape == (3, 3, 32, 32)
        assert torch.equal(G.synthesis_from_styles(styles), img)
        flat = G.slayout.flatten(styles)
        assert flat.shape == (3, G.slayout.total) and G.slayout.total == sum(G.slayout.widths)
        assert torch.equal(G.synthesis_from_styles(G.slayout.unflatten(flat)), img)
        # the S space is live: moving one channel changes the image
        flat2 = flat.clone()
        flat2[:, G.slayout.offsets[2] + 5] += 5.0
        assert not torch.allclose(G.synthesis_from_styles(G.slayout.unflatten(flat2)), img)
        # stored noise is deterministic; fresh noise is not
        assert torch.equal(G.synthesis(w_plus), img)
        noise = [torch.randn_like(getattr(G.noises, f"noise_{i}")) for i in range(G.num_layers)]
        with torch.no_grad():
            for m in G.modules():
                if m.__class__.__name__ == "NoiseInjection":
                    m.weight.fill_(0.5)
        assert not torch.equal(G.synthesis(w_plus, noise=noise), G.synthesis(w_plus))
    with pytest.raises(ValueError, match="width"):
        G.slayout.unflatten(flat[:, :-1])


def _upfirdn2d_reference(x, kernel, up, pad):
    """rosinality upfirdn2d_native (op/upfirdn2d.py), restricted to down=1 and equal x/y."""
    _, c, h, w = x.shape
    x = x.reshape(-1, h, w, 1)
    kh, kw = kernel.shape
    out = x.view(-1, h, 1, w, 1, 1)
    out = F.pad(out, [0, 0, 0, up - 1, 0, 0, 0, up - 1])
    out = out.view(-1, h * up, w * up, 1)
    out = F.pad(out, [0, 0, pad[0], pad[1], pad[0], pad[1]])
    out = out.permute(0, 3, 1, 2).reshape(-1, 1, h * up + sum(pad), w * up + sum(pad))
    out = F.conv2d(out, torch.flip(kernel, [0, 1]).view(1, 1, kh, kw))
    return out.reshape(-1, c, out.shape[2], out.shape[3])


def test_upfirdn2d_matches_rosinality_native():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 8)
    k = make_kernel([1, 2, 3, 1]) * 4  # asymmetric taps catch a missing flip
    for up, pad in [(1, (2, 1)), (2, (2, 1)), (2, (1, 1))]:
        assert torch.allclose(upfirdn2d(x, k, up=up, pad=pad), _upfirdn2d_reference(x, k, up, pad), atol=1e-6)
    # an upsampled constant stays constant away from the borders
    u = Upsample((1, 3, 3, 1))(torch.ones(1, 1, 8, 8))
    assert u.shape == (1, 1, 16, 16) and torch.allclose(u[..., 2:-2, 2:-2], torch.ones(1, 1, 12, 12))
    assert Blur((1, 3, 3, 1), pad=(2, 1))(torch.ones(1, 2, 6, 6)).shape == (1, 2, 6, 6)


def test_modulated_conv_equals_rosinality_fused_path():
    """Input scaling == rosinality's per-sample modulated/demodulated weights (fused=True)."""
    torch.manual_seed(0)
    for up in (False, True):
        m = ModulatedConv2d(6, 4, 3, 16, upsample=up)
        x, s = torch.randn(2, 6, 8, 8), torch.randn(2, 6)
        b = x.shape[0]
        w = m.scale * m.weight * s.view(b, 1, 6, 1, 1)  # [B, 4, 6, 3, 3]
        w = w * torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8).view(b, 4, 1, 1, 1)
        if up:
            wt = w.transpose(1, 2).reshape(b * 6, 4, 3, 3)
            ref = F.conv_transpose2d(x.view(1, b * 6, 8, 8), wt, padding=0, stride=2, groups=b)
            ref = m.blur(ref.view(b, 4, ref.shape[2], ref.shape[3]))
        else:
            ref = F.conv2d(x.view(1, b * 6, 8, 8), w.view(b * 4, 6, 3, 3), padding=1, groups=b).view(b, 4, 8, 8)
        out = m(x, s)
        assert out.shape == ref.shape == ((2, 4, 16, 16) if up else (2, 4, 8, 8))
        assert torch.allclose(out, ref, atol=1e-5)


def test_rosinality_checkpoint_round_trip(tmp_path):
    G = micro_generator(seed=3)
    latent_avg = torch.randn(32)
    path = tmp_path / "g.pt"
    save_rosinality_checkpoint(path, G, latent_avg)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"g_ema", "latent_avg"}
    G2, la2 = load_rosinality_checkpoint(path)
    assert G2.size == 32 and G2.cfg.channels == {4: 32, 8: 32, 16: 16, 32: 8} and G2.cfg.n_mlp == 2
    assert torch.equal(la2, latent_avg)
    w = G.mapping(torch.randn(2, 32))
    with torch.no_grad():
        assert torch.equal(G.synthesis(w), G2.synthesis(w))
    # a train.py checkpoint: g, d, optimiser states and an argparse.Namespace
    train_ckpt = {
        "g": raw["g_ema"],
        "d": {"convs.0.0.weight": torch.zeros(1)},
        "g_ema": raw["g_ema"],
        "g_optim": {},
        "d_optim": {},
        "args": argparse.Namespace(size=32, latent=32),
    }
    torch.save(train_ckpt, tmp_path / "train.pt")
    G3, la3 = load_rosinality_checkpoint(tmp_path / "train.pt")
    assert la3.shape == (32,)
    with torch.no_grad():
        assert torch.equal(G3.synthesis(w), G.synthesis(w))


class Evil:
    """Not allow-listed for weights_only loading."""


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_rosinality_checkpoint(tmp_path / "missing.pt")
    torch.save({"model": torch.zeros(1), "step": torch.tensor(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt.*not a rosinality.*'model'"):
        load_rosinality_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match=r"junk\.pt.*corrupt"):
        load_rosinality_checkpoint(tmp_path / "junk.pt")
    torch.save({"g_ema": {}, "extra": Evil()}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match=r"pickled\.pt.*weights_only=True.*Evil"):
        load_rosinality_checkpoint(tmp_path / "pickled.pt")


def test_config_dict_round_trip_and_unknown_keys():
    cfg = GeneratorConfig.from_dict(
        {"style_dim": 64, "channels": {"4": 16, "8": 8, "16": 8}, "blur_kernel": [1, 3, 3, 1]}
    )
    assert cfg.channels == {4: 16, 8: 8, 16: 8}
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys.*'widths'"):
        GeneratorConfig.from_dict({"widths": 3})
    G = build_generator(cfg, 16)
    assert config_from_state_dict(G.state_dict()).channel_table()[16] == 8
    with pytest.raises(ValueError, match="disagrees"):
        build_generator(GeneratorConfig(size=32), 64)


def test_detail_weights_mark_edges_only():
    img = -torch.ones(1, 3, 16, 16)
    assert torch.equal(detail_weights(img, 4.0, 0.1), torch.ones(1, 1, 16, 16))
    img[..., :, 8:] = 1.0  # a vertical edge between columns 7 and 8
    w = detail_weights(img, 4.0, 0.1)
    # both pixels of the edge, dilated by one pixel
    assert torch.all(w[..., 6:9] == 4.0) and torch.all(w[..., :6] == 1.0) and torch.all(w[..., 9:] == 1.0)


def test_distill_loss_l1_or_mse():
    target = -torch.ones(2, 3, 16, 16)
    target[..., :, 8:] = 1.0
    img = target.clone()
    img[0, :, 2, 2] += 0.5  # off the edge: weight 1
    img[1, :, 4, 8] -= 0.5  # on the edge: weight 4
    wsum = 3 * (1 + 4)  # over 2*3*16*16 pixels, channels included
    mse = distill_loss(img, target, DistillConfig(loss="mse"))
    assert mse.item() == pytest.approx(wsum * 0.25 / img.numel())
    # L1: the weighted |error| plus the image-gradient L1, so it is larger than the weighted L1 alone
    l1 = distill_loss(img, target, DistillConfig())
    assert l1.item() > wsum * 0.5 / img.numel()
    assert distill_loss(img, target, DistillConfig(grad_weight=0.0)).item() == pytest.approx(wsum * 0.5 / img.numel())
    assert "loss" not in DistillConfig().to_dict()  # the default keeps old stage hashes
    assert DistillConfig.from_dict(DistillConfig(loss="mse").to_dict()).loss == "mse"
    with pytest.raises(ValueError, match="loss must be 'l1' or 'mse'"):
        DistillConfig(loss="l2")


def test_lr_rampdown():
    assert lr_factor(0, 100, 0.0) == lr_factor(99, 100, 0.0) == 1.0
    assert lr_factor(0, 100, 0.25) == 1.0 and lr_factor(75, 100, 0.25) == 1.0
    assert lr_factor(88, 100, 0.25) == pytest.approx(0.5 - 0.5 * math.cos(math.pi * 12 / 25))
    assert 0 < lr_factor(99, 100, 0.25) < 0.02


def test_distillation_reduces_loss_and_is_seeded():
    assert MICRO.style_dim >= encoding_dim()
    tcfg = DistillConfig(steps=40, batch=8, eval_n=16)
    G, stats = train_generator(MICRO, tcfg, 32, seed=1)
    assert not G.training
    assert stats["loss_last"] < 0.85 * stats["loss_first"]
    assert len(stats["latent_avg"]) == 32 and stats["s_dim"] == G.slayout.total
    G0 = build_generator(MICRO, 32).eval()
    assert stats["psnr"] > generator_psnr(G0, 16, tcfg.eval_seed, 32) + 1.0
    params = sample_params(4, np.random.default_rng(0))
    img = sample(G, params)
    assert img.shape == (4, 3, 32, 32)
    G2, _ = train_generator(MICRO, DistillConfig(steps=3, eval_n=0), 32, seed=5)
    G3, _ = train_generator(MICRO, DistillConfig(steps=3, eval_n=0), 32, seed=5)
    for (k, a), b in zip(G2.state_dict().items(), G3.state_dict().values()):
        assert torch.equal(a, b), k
