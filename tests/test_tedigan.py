"""TediGAN (``tedigan``): the same optimisation steps as the official code, its perceptual
networks, its config and a micro run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deltabench
from baselines.tedigan import (
    VGG16_LAYERS,
    EncoderTrunk,
    TediGAN,
    TediGANConfig,
    VGGPerceptual,
    load_vgg16_perceptual,
    perceptual_agreement,
)

L, D, R, T = 4, 6, 16, 5  # latents, style dim, image side, CLIP dim


class TinyG(nn.Module):
    n_latent, style_dim = L, D

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(L * D, 3 * 8 * 8)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def synthesis(self, w):
        h = self.fc(w.flatten(1)).view(-1, 3, 8, 8)
        return torch.tanh(self.conv(F.interpolate(h, size=(R, R), mode="bilinear", align_corners=False)))

    def styles(self, w):
        return [w[:, i] for i in range(L)]


class TinyE(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * (R // 2) ** 2, L * D)

    def forward(self, x):
        return self.fc(F.leaky_relu(self.conv(x), 0.2).flatten(1)).view(-1, L, D)


class TinyClip(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 16, T)
        self.text = nn.Parameter(torch.randn(3, T))

    def encode_image(self, img):
        return F.normalize(self.fc(F.adaptive_avg_pool2d(img, 4).flatten(1)), dim=-1)

    def encode_text(self, texts):
        return F.normalize(torch.stack([self.text[sum(map(ord, t)) % 3] for t in texts]), dim=-1)


class TinyDomain:
    """The parts of a domain TediGAN uses, with tiny random networks in float64."""

    device = torch.device("cpu")
    kind = "test"

    def __init__(self, seed=0):
        torch.manual_seed(seed)
        self.generator, self.encoder, self.clip = TinyG().double(), TinyE().double(), TinyClip().double()
        self.vgg = VGGPerceptual().double().eval()  # random-init VGG16 features[:23]

    def encode_clip(self, img, official_input=False):
        return self.clip.encode_image(img)

    def has(self, capability):
        return False


def official_invert(dom, x, text, steps, lr, pix_w, feat_w, reg_w, clip_w, detach_reg=False):
    """IIGROUP/TediGAN base/utils/inverter.py StyleGANInverter.invert (mode 'man'), written again
    from the file for one image ``x [1, 3, H, W]``: init from E(x) (lines 153-163, 192-197),
    Adam(lr) on z (199), then per step pixel, perceptual, encoder and CLIP terms in that order
    (207-233), zero_grad / backward / step (243-245). OpenAI CLIP's model(image, text) returns
    logits_per_image = 100 cos (logit scale 100): the CLIP term is 1 - logits / 100 (34)."""
    G, E, Fnet = dom.generator, dom.encoder, dom.vgg
    z = E(x).view(1, L, D).detach().clone()
    z.requires_grad = True
    optimizer = torch.optim.Adam([z], lr=lr)
    for _ in range(1, steps + 1):
        loss = 0.0
        x_rec = G.synthesis(z)
        loss_pix = torch.mean((x - x_rec) ** 2)
        loss = loss + loss_pix * pix_w
        if feat_w:
            x_feat = Fnet(x)
            x_rec_feat = Fnet(x_rec)
            loss_feat = torch.mean((x_feat - x_rec_feat) ** 2)
            loss = loss + loss_feat * feat_w
        if reg_w:
            z_rec = E(x_rec).view(1, L, D)
            if detach_reg:  # a deliberately wrong variant: the test must tell it apart
                z_rec = z_rec.detach()
            loss_reg = torch.mean((z - z_rec) ** 2)
            loss = loss + loss_reg * reg_w
        if clip_w:
            logits_per_image = 100 * dom.clip.encode_image(x_rec) @ text[None].T  # [1, 1]
            loss_clip = 1 - logits_per_image / 100
            loss = loss + loss_clip[0][0] * clip_w
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return z.detach()


CASES = {
    "official defaults": ({}, None),
    "strength 5, no perceptual term, lr 0.05": ({"perceptual_weight": 0.0, "lr": 0.05}, 5.0),
    "big perceptual weight": ({"perceptual_weight": 0.5, "reg_weight": 0.7}, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_same_steps_as_the_official_inverter(case, tmp_path, one_thread):
    over, strength = CASES[case]
    dom = TinyDomain()
    torch.manual_seed(1)
    x = torch.rand(3, 3, R, R, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        w0 = dom.encoder(x)  # the run's w_plus: the encoder's inversion of the input, official E(x)
    cfg = TediGANConfig(**{"steps": 6, "batch": 2, **over})  # batch 2 of 3: two optimiser chunks
    m = TediGAN(dom, tmp_path, config=cfg)
    m.perceptual = dom.vgg  # the official VGG16 features[:23] (random init), as the reference uses
    styles = m.edit(w0, "face", "smiling face", strength=strength, images=x)
    ours = torch.stack(styles, 1)  # TinyG's styles are the W+ rows
    text = dom.clip.encode_text(["smiling face"])[0].detach()
    clip_w = cfg.clip_weight if strength is None else strength
    args = (cfg.steps, cfg.lr, cfg.recon_weight, cfg.perceptual_weight, cfg.reg_weight, clip_w)
    official = torch.cat([official_invert(dom, x[i : i + 1], text, *args) for i in range(3)])
    moved = (official - w0).abs().max().item()
    diff = (ours - official).abs().max().item()
    print(f"{case}: latents moved up to {moved:.3g}; max |ours - official| after {cfg.steps} steps {diff:.3g}")
    assert moved > 0.5 * cfg.steps * cfg.lr  # real steps (Adam moves a coordinate by up to lr a step)
    assert diff < 1e-10
    # A wrong regulariser (E(G(z)) detached) takes other steps: the comparison can tell.
    if cfg.reg_weight:
        wrong = torch.cat([official_invert(dom, x[i : i + 1], text, *args, detach_reg=True) for i in range(3)])
        assert (ours - wrong).abs().max().item() > 1e-6
    # The history holds the official losses before each step (step 0: at the encoder's codes).
    pix0 = torch.mean((x - dom.generator.synthesis(w0)) ** 2, dim=(1, 2, 3)).mean().item()
    assert m.last_history[0][0][1] == pytest.approx(
        torch.mean((x[:2] - dom.generator.synthesis(w0[:2])) ** 2, dim=(1, 2, 3)).mean().item(), rel=1e-12
    )
    assert math.isfinite(pix0)


def test_config_defaults_are_the_official_ones_and_bad_values_are_refused(tmp_path):
    c = TediGANConfig()
    # base/invert.py lines 24, 26, 31, 34, 37 and the reconstruction weight of line 58
    assert (c.lr, c.steps, c.recon_weight, c.perceptual_weight, c.reg_weight, c.clip_weight) == (
        0.01,
        200,
        1.0,
        5e-5,
        2.0,
        2.0,
    )
    with pytest.raises(ValueError, match="tedigan config"):
        TediGANConfig.from_dict({"iterations": 3})
    with pytest.raises(ValueError, match="recon_weight must be > 0"):
        TediGANConfig(recon_weight=0.0)
    with pytest.raises(ValueError, match="clip_weight must be"):
        TediGANConfig(clip_weight=-1.0)
    m = TediGAN(TinyDomain(), tmp_path, config={"clip_weight": 3.0})
    assert m.default_strength == 3.0 and m.strength_for(2.0) == 6.0 and m.scale_of(1.5) == 0.5
    w = torch.zeros(1, L, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="CLIP loss weight"):
        m.edit(w, "face", "smiling face", strength=-1.0)
    with pytest.raises(ValueError, match=r"images must be \[1, 3, H, W\]"):
        m.edit(w, "face", "smiling face", images=torch.zeros(2, 3, R, R, dtype=torch.float64))
    with pytest.raises(ValueError, match="w_plus must be"):
        m.edit(torch.zeros(1, L + 1, D), "face", "smiling face")


def test_vgg_perceptual_is_torchvision_vgg16_conv4_3_and_loads_safely(tmp_path, one_thread):
    from torchvision.models import vgg16

    torch.manual_seed(0)
    ref = vgg16(weights=None).eval()
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(ref.state_dict(), path)
    net = load_vgg16_perceptual(path)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    with torch.no_grad():
        want = ref.features[:VGG16_LAYERS](((x + 1) / 2 - mean) / std)
        got = net(x)
    assert got.shape == (2, 512, 4, 4) and isinstance(ref.features[VGG16_LAYERS - 1], nn.ReLU)  # conv4_3 + ReLU
    assert torch.equal(got, want)
    # a state dict without the conv weights, and a file that is not only tensors, are refused
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="features.0.weight must be a tensor"):
        load_vgg16_perceptual(tmp_path / "bad.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"features.0.weight": Evil()}, tmp_path / "evil.pth")
    from deltabench.checkpoints import CheckpointError

    with pytest.raises(CheckpointError):
        load_vgg16_perceptual(tmp_path / "evil.pth")


def test_world_stand_in_is_the_encoder_trunk_at_an_eighth(micro_world, one_thread):
    from baselines.tedigan import perceptual_network
    from deltabench.domain import WorldDomain

    dom = WorldDomain(micro_world)
    net = perceptual_network(dom)
    assert isinstance(net, EncoderTrunk)
    x = torch.zeros(2, 3, dom.resolution, dom.resolution)
    with torch.no_grad():
        assert net(x).shape[-1] * 8 == dom.resolution
    r = perceptual_agreement(dom, n=8)
    assert set(r) == {"pixel_mse", "encoder_trunk", "oracle_trunk", "vgg16_random"}
    assert r["pixel_mse"]["spearman_mse"] == pytest.approx(1.0)
    assert all(0 <= v["auc_attribute"] <= 1 and -1 <= v["spearman_ssim"] <= 1 for v in r.values())


def test_a_micro_run_works(cache, tmp_path):
    df = deltabench.run(
        methods=["tedigan"],
        world="synthfaces-micro",
        images=2,
        limit=1,
        sweep=(1,),
        options={"tedigan": {"config": {"steps": 3}}},
        out=tmp_path / "r",
    )
    rows = df.attrs["results"]
    ted = rows[rows["method"] == "tedigan"]
    assert len(ted) == 2 and (ted["strength"] == 2.0).all()  # 2 images x 1 prompt at x1: clip weight 2.0
    assert df["method"].iloc[0] == "tedigan" and math.isfinite(df.loc[0, "psnr"])


def test_real_domains_read_vgg16_through_the_weights_registry(tmp_path, one_thread):
    from torchvision.models import vgg16

    from baselines.tedigan import perceptual_network
    from deltabench.checkpoints import CheckpointError
    from deltabench.real.domain import resolve_weight

    class RealLike:  # a real domain: its weights folder is tmp_path
        device = torch.device("cpu")
        kind = "real"

        def weight_file(self, name):
            return resolve_weight(name, tmp_path)

    with pytest.raises(
        CheckpointError, match=r"vgg16-397923af\.pth not found .*deltabench weights fetch vgg16-397923af\.pth"
    ):
        perceptual_network(RealLike())
    torch.manual_seed(0)
    torch.save(vgg16(weights=None).state_dict(), tmp_path / "vgg16-397923af.pth")
    net = perceptual_network(RealLike())
    assert isinstance(net, VGGPerceptual)
