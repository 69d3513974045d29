"""Real domains from official-format checkpoints (random weights, made here), on CPU.

Every file the ``ffhq`` domain reads is written in its official format at toy sizes: a
rosinality generator (``g_ema``, ``latent_avg``), an e4e checkpoint (``state_dict`` with
``encoder.``/``decoder.`` prefixes, ``opts`` dict, ``latent_avg``), an open_clip state dict,
an insightface-style recognition ONNX exported from a torch net, an IR-SE state dict and
pytorch-fid's Inception state dict. They load through the public loaders into a
:class:`RealDomain` built from a temp config, which then edits and scores end to end.
The full-size layouts (1024 px generator, ViT-B-32, IR-SE50, e4e at 1024) are checked on the
meta device (no memory, no time).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from deltabench.checkpoints import CheckpointError
from deltabench.models.e4e import (
    E4EConfig,
    Encoder4Editing,
    e4e_config_from_state_dict,
    load_e4e,
    save_e4e_checkpoint,
)
from deltabench.models.irse import (
    IRSEBackbone,
    IRSEConfig,
    config_from_state_dict,
    load_irse50,
)
from deltabench.models.stylegan2 import (
    GeneratorConfig,
    StyleGAN2,
    load_rosinality_checkpoint,
    save_rosinality_checkpoint,
)
from deltabench.models.stylegan2 import config_from_state_dict as g_config
from deltabench.real import loaders
from deltabench.real.domain import RealDomain, RealDomainConfig, load_domain_config

RES, STYLE = 32, 32
TINY_CLIP = "deltabench-test-tiny-quickgelu"
TINY_IRSE = IRSEConfig(units=(1, 1, 1, 1), widths=(8, 16, 24, STYLE), stem_width=8, se=True, se_reduction=4)


def _tiny_generator(seed: int = 0, size: int = RES) -> StyleGAN2:
    torch.manual_seed(seed)
    return StyleGAN2(
        GeneratorConfig(size=size, style_dim=STYLE, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 16, 64: 8})
    ).eval()


class _TinyArcFace(torch.nn.Module):
    """A small face embedder standing in for w600k_r50 (same input/output contract)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.act = torch.nn.PReLU(8)
        self.pool = torch.nn.AdaptiveAvgPool2d(4)
        self.fc = torch.nn.Linear(128, 24)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def _register_tiny_clip(tmp) -> None:
    import open_clip

    cfg_dir = tmp / "clip_cfg"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / f"{TINY_CLIP}.json").write_text(
        json.dumps(
            {
                "embed_dim": 32,
                "quick_gelu": True,
                "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
            }
        )
    )
    open_clip.add_model_config(cfg_dir)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder holding every file of a toy 'ffhq' in its official format."""
    import open_clip

    d = tmp_path_factory.mktemp("weights")
    G = _tiny_generator()
    save_rosinality_checkpoint(d / "stylegan2-test.pt", G, G.mean_latent(500))
    torch.manual_seed(1)
    enc = Encoder4Editing(
        E4EConfig(backbone=TINY_IRSE, n_styles=G.n_latent, style_dim=STYLE, input_size=64, convs=(2, 3, 4))
    ).eval()
    save_e4e_checkpoint(
        d / "e4e_test.pt",
        enc,
        G.state_dict(),
        G.mean_latent(500).reshape(-1),
        {
            "stylegan_size": RES,
            "encoder_type": "Encoder4Editing",
            "start_from_latent_avg": True,
            "checkpoint_path": None,
            "lpips_lambda": 0.8,
        },
    )
    _register_tiny_clip(d)
    torch.manual_seed(2)
    clip = open_clip.create_model(TINY_CLIP, pretrained=None)
    torch.save(clip.state_dict(), d / "clip-test.pt")
    torch.manual_seed(3)
    net = _TinyArcFace().eval()
    onnx_dir = d / "buffalo_test"
    onnx_dir.mkdir()
    with warnings.catch_warnings():  # the TorchScript exporter (the dynamo one needs onnxscript) is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.randn(1, 3, 112, 112),),
            str(onnx_dir / "w600k_r50.onnx"),
            dynamo=False,
            input_names=["input.1"],
            output_names=["embedding"],
            dynamic_axes={"input.1": {0: "N"}},
        )
    torch.manual_seed(4)
    torch.save(IRSEBackbone(TINY_IRSE, 112, 16).state_dict(), d / "irse-test.pth")
    torch.manual_seed(5)
    torch.save(loaders.fid_inception_net(None).state_dict(), d / "pt_inception-test.pth")
    return d


def _config(**over) -> RealDomainConfig:
    d = {
        "name": "ffhq-toy",
        "resolution": RES,
        "generator": "stylegan2-test.pt",
        "encoder": "e4e_test.pt",
        "clip": "clip-test.pt",
        "clip_model": TINY_CLIP,
        "identity": "buffalo_test",
        "identity_loss": "irse-test.pth",
        "fid": "pt_inception-test.pth",
        "neutral": "face",
        "prompts": [{"source": "face", "target": "face with smile"}],
        "images_env": "DELTABENCH_TOY_IMAGES",
        **over,
    }
    return RealDomainConfig.from_dict(d)


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("celebahq")
    rng = np.random.default_rng(0)
    for i in range(4):  # 48 px: resized to the generator's 32
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(d / f"{i:05d}.png")
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def domain(weights, images_dir):
    return RealDomain(_config(), weights=weights, images=images_dir)


def test_domain_configs_ship_as_data():
    ffhq = load_domain_config("ffhq")
    assert ffhq.resolution == 1024 and ffhq.clip_model == "ViT-B-32-quickgelu" and ffhq.identity
    assert len(ffhq.prompts) == 16 and all(s == "face" for s, _ in ffhq.prompts)
    for name in ("lsun-cat", "lsun-church", "lsun-horse"):
        c = load_domain_config(name)
        assert c.resolution == 256 and c.identity is None and c.identity_loss is None and c.prompts
        assert c.neutral == name.split("-")[1]
    with pytest.raises(ValueError, match="unknown keys"):
        RealDomainConfig.from_dict({**_config().to_dict(), "weigths": 1})
    with pytest.raises(ValueError, match="unknown real domain"):
        load_domain_config("lsun-dog")


# --- full-size layouts, on the meta device -------------------------------------------------


def test_generator_1024_layout_is_config_f():
    with torch.device("meta"):
        G = StyleGAN2(GeneratorConfig(size=1024))
    sd = G.state_dict()
    # rosinality stylegan2-ffhq-config-f.pt g_ema: key names and shapes
    assert tuple(sd["input.input"].shape) == (1, 512, 4, 4)
    assert tuple(sd["style.8.weight"].shape) == (512, 512) and "style.9.weight" not in sd
    assert tuple(sd["convs.15.conv.weight"].shape) == (1, 32, 32, 3, 3)
    assert tuple(sd["to_rgbs.7.conv.weight"].shape) == (1, 3, 32, 1, 1)
    assert tuple(sd["noises.noise_16"].shape) == (1, 1, 1024, 1024)
    assert tuple(sd["convs.0.conv.blur.kernel"].shape) == (4, 4)
    cfg = g_config({k: v for k, v in sd.items() if not k.endswith("blur.kernel")})  # meta: no values
    assert cfg.size == 1024 and cfg.n_mlp == 8 and cfg.channels[1024] == 32 and cfg.channels[64] == 512
    sl = G.slayout
    assert (G.n_latent, sl.total, sl.total_non_torgb, len(sl)) == (18, 9088, 6048, 26)
    assert abs(sum(p.numel() for p in G.parameters()) - 30.37e6) < 0.01e6


def test_e4e_and_irse50_full_layouts():
    with torch.device("meta"):
        enc = Encoder4Editing(E4EConfig(backbone=IRSEConfig(), n_styles=18))
        irse = IRSEBackbone()
    sd = enc.state_dict()
    # omertov/encoder4editing e4e_ffhq_encode.pt 'encoder.*' key names and shapes
    assert tuple(sd["input_layer.0.weight"].shape) == (64, 3, 3, 3)
    assert tuple(sd["body.23.res_layer.5.fc2.weight"].shape) == (512, 32, 1, 1)
    assert tuple(sd["body.3.shortcut_layer.0.weight"].shape) == (128, 64, 1, 1)
    assert "body.1.shortcut_layer.0.weight" not in sd  # MaxPool2d(1, 1) shortcut: no weights
    assert tuple(sd["styles.17.convs.10.weight"].shape) == (512, 512, 3, 3) and "styles.17.convs.12.weight" not in sd
    assert "styles.2.convs.6.weight" in sd and "styles.2.convs.8.weight" not in sd
    assert tuple(sd["styles.0.linear.weight"].shape) == (512, 512)
    assert tuple(sd["latlayer1.weight"].shape) == (512, 256, 1, 1) and tuple(sd["latlayer2.weight"].shape) == (
        512,
        128,
        1,
        1,
    )
    assert enc.ends == (2, 6, 20, 23)  # the official taps c1 = unit 6, c2 = 20, c3 = 23
    cfg = e4e_config_from_state_dict(sd)
    assert (cfg.n_styles, cfg.input_size, cfg.convs, cfg.backbone.units) == (18, 256, (4, 5, 6), (3, 4, 14, 3))
    isd = irse.state_dict()  # model_ir_se50.pth
    assert tuple(isd["output_layer.3.weight"].shape) == (512, 512 * 7 * 7)
    assert tuple(isd["output_layer.4.running_var"].shape) == (512,)
    assert config_from_state_dict(isd) == IRSEConfig()


def test_vit_b32_quickgelu_key_table():
    import open_clip
    from open_clip.transformer import QuickGELU

    with torch.device("meta"):
        m = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None, device="meta")
    sd = m.state_dict()
    expect = {
        "visual.conv1.weight": (768, 3, 32, 32),
        "visual.class_embedding": (768,),
        "visual.positional_embedding": (50, 768),
        "visual.proj": (768, 512),
        "visual.transformer.resblocks.11.mlp.c_fc.weight": (3072, 768),
        "transformer.resblocks.11.attn.in_proj_weight": (1536, 512),
        "token_embedding.weight": (49408, 512),
        "positional_embedding": (77, 512),
        "text_projection": (512, 512),
        "ln_final.weight": (512,),
        "logit_scale": (),
    }
    assert {k: tuple(sd[k].shape) for k in expect} == expect
    assert sum(v.numel() for v in sd.values() if v.dtype.is_floating_point) == 151_277_313  # OpenAI ViT-B/32
    assert isinstance(m.visual.transformer.resblocks[0].mlp.gelu, QuickGELU)


# --- loaders agree with the networks that wrote the files ----------------------------------


def test_loaders_reproduce_the_saved_networks(weights):
    import open_clip

    x = torch.rand(3, 3, RES, RES) * 2 - 1
    G, avg = load_rosinality_checkpoint(weights / "stylegan2-test.pt")
    ref = _tiny_generator()
    w = ref.mean_latent(1)
    assert torch.allclose(G.synthesis(w), ref.synthesis(w)) and avg.shape == (STYLE,)

    ck = load_e4e(weights / "e4e_test.pt", expect_resolution=RES)
    assert ck.resolution == RES and ck.opts["stylegan_size"] == RES and ck.inverter.input_size == 64
    wp = ck.inverter(x)  # [3, 8, 32]
    assert wp.shape == (3, G.n_latent, STYLE)
    enc = ck.inverter.encoder
    from deltabench.imageio import official_resize  # the official input: uint8, PIL Resize, Normalize(0.5)

    x64 = official_resize(x, 64)
    assert torch.allclose(wp, enc(x64) + ck.inverter.latent_avg, atol=1e-5)
    codes = enc(x64)
    torch.manual_seed(1)
    src_enc = Encoder4Editing(
        E4EConfig(backbone=TINY_IRSE, n_styles=G.n_latent, style_dim=STYLE, input_size=64, convs=(2, 3, 4))
    ).eval()
    assert torch.allclose(codes, src_enc(x64), atol=1e-5)
    # e4e's forward, recomputed by hand: w_i = w0 + map2style_i(features), features c3 for
    # entries < 3, p2 = up(c3) + latlayer1(c2) for < 7, p1 = up(p2) + latlayer2(c1) after
    c1, c2, c3 = _taps(enc, x64)
    up = lambda a, b: torch.nn.functional.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b
    p2 = up(c3, enc.latlayer1(c2))
    p1 = up(p2, enc.latlayer2(c1))
    w0 = enc.styles[0](c3)
    assert torch.allclose(codes[:, 0], w0, atol=1e-5)
    assert torch.allclose(codes[:, 2], w0 + enc.styles[2](c3), atol=1e-5)
    assert torch.allclose(codes[:, 5], w0 + enc.styles[5](p2), atol=1e-5)
    assert torch.allclose(codes[:, 7], w0 + enc.styles[7](p1), atol=1e-5)
    assert G.synthesis(wp).shape == (3, 3, RES, RES)

    net = load_irse50(weights / "irse-test.pth")
    torch.manual_seed(4)
    src = IRSEBackbone(TINY_IRSE, 112, 16).eval()
    x112 = torch.rand(2, 3, 112, 112) * 2 - 1
    assert torch.allclose(net(x112), src(x112), atol=1e-5) and net.input_size == 112

    arc = loaders.OnnxArcFace(weights / "buffalo_test")  # a model directory, as insightface ships it
    assert arc.path.name == "w600k_r50.onnx" and (arc.input_mean, arc.input_std) == (127.5, 127.5)
    torch.manual_seed(3)
    tnet = _TinyArcFace().eval()
    from deltabench.models.irse import ffhq_face_crop

    want = torch.nn.functional.normalize(tnet(ffhq_face_crop(x, 112)), dim=1)  # (x+1)*127.5 -127.5 /127.5 == x
    assert torch.allclose(arc.embed(x), want, atol=1e-4)
    with pytest.raises(RuntimeError, match="not differentiable"):
        arc.embed(x.clone().requires_grad_(True))

    clip = loaders.load_open_clip(weights / "clip-test.pt", TINY_CLIP)
    torch.manual_seed(2)
    ref_clip = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    # the official feed: Upsample(x7) + AvgPool(size // 32) -> 224, then CLIP mean/std
    x224 = torch.nn.functional.interpolate(x, scale_factor=7, mode="nearest")
    mean, std = (
        torch.tensor(open_clip.OPENAI_DATASET_MEAN)[:, None, None],
        torch.tensor(open_clip.OPENAI_DATASET_STD)[:, None, None],
    )
    want = ref_clip.encode_image(((x224 + 1) / 2 - mean) / std, normalize=True)
    assert torch.allclose(clip.encode_image(x), want, atol=1e-5)
    tok = open_clip.get_tokenizer(TINY_CLIP)
    assert torch.allclose(
        clip.encode_text(["face with smile"]), ref_clip.encode_text(tok(["face with smile"]), normalize=True), atol=1e-5
    )
    assert clip.tokenizer.unknown_words("a zyzzyva face") == []

    fid = loaders.load_fid_inception(weights / "pt_inception-test.pth")
    from pytorch_fid.inception import InceptionV3

    torch.manual_seed(5)
    raw = loaders.fid_inception_net(None)
    import unittest.mock as um

    import pytorch_fid.inception as pfi

    with um.patch.object(pfi, "fid_inception_v3", lambda: raw):
        ref_fid = InceptionV3([3]).eval()
    q = ((x + 1) * 127.5).round() / 255
    # default: clean-fid's PIL bicubic resize to 299 first (pytorch-fid's own resize is then a copy)
    from deltabench.metrics.fid import clean_resize

    assert fid.resize == "clean"
    assert torch.allclose(fid.features(x), ref_fid(clean_resize(q * 255, 299) / 255)[0].flatten(1), atol=1e-4)
    assert fid.features(x).shape == (3, 2048)
    fid.resize = "pytorch-fid"  # pytorch-fid's bilinear resize, as its CLI computes FID from files
    assert torch.allclose(fid.features(x), ref_fid(q)[0].flatten(1), atol=1e-4)


class _OpenAIStyleHolder(torch.nn.Module):
    """Holds a CLIP's weights under OpenAI's key names, plus the int entries OpenAI's
    TorchScript ``ViT-B-32.pt`` carries, to be traced into a TorchScript archive."""

    def __init__(self, m):
        super().__init__()
        for n, c in m.named_children():
            self.add_module(n, c)
        for n, p in m.named_parameters(recurse=False):
            self.register_parameter(n, p)
        for k, v in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
            self.register_buffer(k, torch.tensor(v))

    def forward(self, x):
        return x * self.logit_scale


def test_open_clip_loads_openai_torchscript_archive(weights, tmp_path):
    """OpenAI's own release of the weights is a TorchScript archive, not a pickle."""
    import open_clip

    torch.manual_seed(2)
    m = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(_OpenAIStyleHolder(m), torch.zeros(1)).save(str(tmp_path / "ViT-B-32.pt"))
    clip = loaders.load_open_clip(tmp_path / "ViT-B-32.pt", TINY_CLIP)
    x = torch.rand(2, 3, RES, RES) * 2 - 1
    assert torch.allclose(
        clip.encode_image(x), loaders.load_open_clip(weights / "clip-test.pt", TINY_CLIP).encode_image(x), atol=1e-6
    )


@pytest.mark.parametrize("h", [32, 64, 256])
def test_clip_feed_equals_official_upsample_avgpool(h):
    x = torch.rand(2, 3, h, h)
    want = torch.nn.AvgPool2d(7 * h // 224)(torch.nn.Upsample(scale_factor=7)(x))  # StyleCLIP / DeltaEdit
    a = loaders.official_resize_matrix(h, 224)
    assert torch.allclose(torch.einsum("ih,nchw,jw->ncij", a, x, a), want, atol=1e-5)


def _taps(enc, x):
    h = enc.input_layer(x)
    out = []
    for i, layer in enumerate(enc.body):
        h = layer(h)
        if i in enc.ends[1:]:
            out.append(h)
    return out  # c1, c2, c3


# --- the domain, end to end ----------------------------------------------------------------


@pytest.mark.slow
def test_real_domain_edits_and_scores_end_to_end(domain):
    from deltabench.metrics.suite import build_metrics
    from deltabench.runner import Prompt

    assert domain.kind == "real" and domain.oracle is None and domain.resolution == RES
    assert (
        len(domain.templates) == 79 and domain.key.startswith("ffhq-toy-") and len(domain.key) == len("ffhq-toy-") + 16
    )
    assert domain.prompts == (Prompt("face", "face with smile"),)
    test = domain.test_images(4, seed=0)
    assert test.images.shape == (4, 3, RES, RES) and test.params is None
    assert test.images.min() >= -1 and test.images.max() <= 1
    G = domain.generator
    w = test.invert(domain)  # [4, 8, 32]: generated images carry their latents
    with torch.no_grad():
        start = G.synthesis(w)
        styles = G.styles(w)
        edited_styles = [s.clone() for s in styles]
        edited_styles[3] = edited_styles[3] + 3.0  # an S-space edit of one layer
        edited = G.synthesis_from_styles(edited_styles)
    suite = build_metrics(domain, Prompt("face", "face with smile"), kid_subset_size=4, kid_subsets=5)
    assert suite.labels()["fid"] == "FID (Inception pool3)"
    # FID's 2048 x 2048 sqrtm takes 10-40 s on a busy 2-core machine; its Inception features
    # are the ones KID scores here, and FID itself is tested in test_metrics.py.
    del suite.metrics["fid"]
    rows = suite.update(test.images, edited, start)
    for k in ("psnr", "ssim", "ids", "clip_score", "clip_direction"):
        assert rows[k].shape == (4,) and torch.isfinite(rows[k]).all(), k
    assert (rows["ids"] <= 1 + 1e-6).all() and (rows["clip_score"].abs() <= 1 + 1e-6).all()
    out = suite.compute()
    assert np.isfinite(out["kid"]) and suite.metrics["kid"].real_feats[0].shape == (4, 2048)
    # IDS of an image with itself is 1
    same = build_metrics(domain).metrics["ids"]
    assert torch.allclose(same.update(start, start), torch.ones(4, dtype=torch.float64), atol=1e-5)
    # the differentiable identity model gives gradients (StyleCLIP OP / LM id loss)
    x = start.clone().requires_grad_(True)
    (1 - (domain.identity_loss.embed(x) * domain.identity_loss.embed(start)).sum(-1)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:FID .*covariance is singular")
def test_styleclip_gd_runs_on_a_real_domain(domain, tmp_path, monkeypatch):
    import deltabench.metrics.fid as fid_mod
    from deltabench.runner import Prompt, RunConfig, run

    seen = []

    def cheap_frechet(mu1, s1, mu2, s2, eps=1e-6):  # the 2048-d sqrtm costs 10-40 s here
        seen.append(s1.shape)
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2))

    monkeypatch.setattr(fid_mod, "frechet_distance", cheap_frechet)

    cfg = RunConfig(
        methods=("styleclip-gd",),
        world="ffhq-toy",
        prompts=(Prompt("face", "face with smile"),),
        images=2,
        batch=2,
        sweep=(1.0,),
        method_options={"styleclip-gd": {"config": {"n_images": 2, "n_std": 64}}},
    )
    out = run(cfg, tmp_path / "run", domain=domain, work_dir=tmp_path / "work", log=lambda m: None)
    import csv

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 and all(r["method"] == "styleclip-gd" for r in rows)
    assert all(np.isfinite(float(r["psnr"])) and -1 <= float(r["ids"]) <= 1 for r in rows)
    assert seen and seen[0] == (2048, 2048)  # FID states are Inception pool3 statistics
    manifest = json.loads((out / "manifest.json").read_text())
    assert domain.config_hash in json.dumps(manifest)
    # the test folder and a hash of its contents are in the manifest (and in the world hash)
    test = manifest["domain"]["test"]
    assert test["source"] == "folder" and test["folder"] == str(domain.images_dir) and len(test["sha256"]) == 64
    assert manifest["config"]["world_hash"] == domain.config_hash and manifest["device"]["device"] == "cpu"
    # the tables name the feature network FID/KID were computed with (it read "oracle" here once)
    assert manifest["fid_features"] == "Inception pool3"
    table = (out / "reports" / "table.md").read_text()
    assert "FID (Inception pool3" in table and "KID (Inception pool3" in table and "oracle" not in table


def test_load_domain_dispatches_real_configs(weights, images_dir, tmp_path):
    from deltabench.domain import load_domain

    p = tmp_path / "toy.json"
    p.write_text(json.dumps(_config().to_dict()))
    d = load_domain(str(p), weights=str(weights), images=str(images_dir))
    assert isinstance(d, RealDomain) and d.name == "ffhq-toy"


# --- errors ---------------------------------------------------------------------------------


def test_wrong_kind_and_resolution_are_clear_errors(weights, images_dir, tmp_path):
    with pytest.raises(CheckpointError, match=r"no 'g_ema' key; found keys \['latent_avg', 'opts', 'state_dict'\]"):
        load_rosinality_checkpoint(weights / "e4e_test.pt")
    with pytest.raises(CheckpointError, match="StyleGAN2 generator checkpoint, not an e4e encoder"):
        load_e4e(weights / "stylegan2-test.pt")
    with pytest.raises(
        CheckpointError,
        match=r"e4e encoder for a 32 px generator \(8 W\+ entries\); the domain's "
        r"generator is 1024 px \(18 entries\)",
    ):
        load_e4e(weights / "e4e_test.pt", expect_resolution=1024)
    # networks load when first asked for (tests/test_real_lazy.py): the errors come then
    with pytest.raises(CheckpointError, match=r"a 32 px generator; domain 'ffhq-toy' expects 1024 px"):
        RealDomain(_config(resolution=1024), weights=weights, images=images_dir).generator
    with pytest.raises(CheckpointError, match=r"not a state dict of open_clip 'ViT-B-32-quickgelu'.*shape mismatches"):
        loaders.load_open_clip(weights / "clip-test.pt", "ViT-B-32-quickgelu")
    with pytest.raises(CheckpointError, match="not pytorch-fid's FID Inception state dict"):
        loaders.load_fid_inception(weights / "irse-test.pth")
    with pytest.raises(CheckpointError, match="not an IR-SE ArcFace backbone"):
        load_irse50(weights / "pt_inception-test.pth")
    with pytest.raises(
        CheckpointError, match=r"missing weight file 'stylegan2-nope.pt' \(not in the weights registry\)"
    ):
        RealDomain(_config(generator="stylegan2-nope.pt"), weights=weights, images=images_dir).generator
    empty = tmp_path / "no-weights"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="deltabench weights fetch stylegan2-ffhq-config-f.pt"):
        RealDomain(load_domain_config("ffhq"), weights=empty).generator
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="onnxruntime cannot load it"):
        loaders.OnnxArcFace(bad)
    # an e4e whose opts disagree with its weights
    ck = torch.load(weights / "e4e_test.pt", weights_only=True)
    ck["opts"]["stylegan_size"] = 1024
    torch.save(ck, tmp_path / "e4e_mixed.pt")
    with pytest.raises(CheckpointError, match=r"opts\['stylegan_size'\]=1024 but the weights are for a 32 px"):
        load_e4e(tmp_path / "e4e_mixed.pt")


class _Payload:
    """Unpickling it would create a marker file (a stand-in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("loader", ["e4e", "irse", "fid", "clip"])
def test_malicious_checkpoints_are_refused_by_every_loader(tmp_path, loader):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "opts": _Payload(marker)}, path)
    load = {
        "e4e": load_e4e,
        "irse": load_irse50,
        "fid": loaders.load_fid_inception,
        "clip": lambda p: loaders.load_open_clip(p, TINY_CLIP),
    }[loader]
    with pytest.raises(CheckpointError, match=r"refused by torch.load\(weights_only=True\)"):
        load(path)
    assert not marker.exists()


def test_test_image_folder_errors(domain, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="asked for 5 test images but .* holds 4"):
        domain.test_images(5, seed=0)
    a, b = domain.test_images(2, seed=0).images, domain.test_images(2, seed=1).images
    assert a.shape == b.shape == (2, 3, RES, RES)
    assert torch.equal(domain.test_images(4, 3).images, domain.test_images(4, 7).images)  # all of them, sorted
    empty = tmp_path / "empty"
    empty.mkdir()
    orig = domain.images_dir
    try:
        domain.images_dir = empty
        with pytest.raises(ValueError, match="holds no images"):
            domain.test_images(1, 0)
        domain.images_dir = tmp_path / "missing"
        with pytest.raises(ValueError, match="does not exist"):
            domain.test_images(1, 0)
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "0.png").write_bytes(b"\x89PNG garbage")
        domain.images_dir = broken
        with pytest.raises(ValueError, match=r"0\.png is not a readable image"):
            domain.test_images(1, 0)
        domain.images_dir = None
        with pytest.raises(
            ValueError, match=r"needs a folder of test images: pass images=DIR or set \$DELTABENCH_TOY_IMAGES"
        ):
            domain.test_images(1, 0)
    finally:
        domain.images_dir = orig


def test_domain_without_encoder_uses_generated_images(weights):
    d = RealDomain(
        _config(
            name="lsun-toy",
            encoder=None,
            identity=None,
            identity_loss=None,
            face_crop="none",
            neutral="cat",
            prompts=[{"source": "cat", "target": "black cat"}],
            images_env=None,
        ),
        weights=weights,
    )
    assert d.identity is None and d.identity_loss is None and d.encoder.encoder is None
    test = d.test_images(3, seed=5)
    w = test.invert(d)  # the latents the images were generated from: no encoder needed
    assert torch.equal(w, d.sample_w_plus(3, seed=5))
    assert torch.allclose(d.generator.synthesis(w), test.images, atol=1e-6)
    with pytest.raises(ValueError, match="has no inversion encoder"):
        d.invert(torch.zeros(1, 3, RES, RES))
    # truncation pulls samples towards the mean w
    t = RealDomain(_config(encoder=None, truncation=0.5, truncation_mean=256), weights=weights, images=None)
    w1, wt = d.sample_w_plus(8, 1)[:, 0], t.sample_w_plus(8, 1)[:, 0]
    mean = t._mean_w()
    assert torch.allclose(wt - mean, 0.5 * (w1 - mean), atol=1e-5)
    assert t.key != d.key
    # with an encoder (lsun-church, lsun-horse): generated test images still carry their exact
    # latents, any other image goes through e4e
    e = RealDomain(
        _config(name="lsun-toy", test_source="generated", identity=None, identity_loss=None), weights=weights
    )
    test = e.test_images(2, seed=9)
    assert torch.equal(test.invert(e), e.sample_w_plus(2, seed=9))
    assert torch.equal(test.invert(e, 1, 2), e.sample_w_plus(2, seed=9)[1:])
    other = torch.rand(1, 3, RES, RES) * 2 - 1
    assert torch.allclose(e.invert(other), e.encoder.encoder(other), atol=1e-6)
