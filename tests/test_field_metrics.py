"""The field's metrics (LPIPS, structure distance, MagicBrush's DINO-I, CLIP-I/T, unedited-region
PSNR/SSIM/MSE/LPIPS) against their reference implementations on random weights, and the PIE-Bench /
MagicBrush layouts on samples built by hand from each benchmark's README and code."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deltabench.interop import (
    BenchEntry,
    magicbrush_edit_path,
    pie_bench_edit_image,
    read_magicbrush,
    read_pie_bench,
    rle_decode,
    rle_encode,
    write_pie_bench,
)
from deltabench.metrics import field as fm


def _pair(n=3, s=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, s, s, generator=g) * 2 - 1
    return a, (a + 0.3 * torch.randn(n, 3, s, s, generator=g)).clamp(-1, 1)


def _lpips_reference(net):
    lpips = pytest.importorskip("lpips")
    from unittest import mock

    torch.manual_seed(0)
    # lpips builds the whole torchvision model and uses its features only: leave the classifier's
    # Linear layers (54M values in AlexNet, 120M in VGG16) uninitialised, which makes this fast
    with (
        warnings.catch_warnings(),
        mock.patch.object(torch.nn.Linear, "reset_parameters", lambda self: None),
        mock.patch.object(torch.nn.init, "normal_", lambda t, *a, **k: t),
    ):
        warnings.simplefilter("ignore")
        ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    trunk = {}  # the reference's random trunk, under torchvision's features.* names
    for k, v in ref.state_dict().items():
        if k.startswith("net.slice"):
            _, _, idx, *rest = k.split(".")
            trunk[".".join(["features", idx, *rest])] = v
    return ref, trunk


@pytest.mark.parametrize("net", ["alex", "squeeze", "vgg"])
def test_lpips_equals_the_lpips_package(net, one_thread):
    ref, trunk = _lpips_reference(net)
    lin, _ = fm.lpips_linear_weights(net)
    ours = fm.LPIPS(net, trunk, lin)
    a, b = _pair(s=48)
    want = ref(a, b).detach().flatten().double()  # lpips takes [-1, 1] (normalize=False)
    got = ours(a, b)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()
    assert torch.equal(ours(a, a), torch.zeros(3, dtype=torch.float64))
    # the input range is [-1, 1]: [0, 1] images are another input and give another number
    assert not torch.allclose(ours((a + 1) / 2, (b + 1) / 2), got)


def test_lpips_loads_its_trunk_through_the_weights_registry(tmp_path, one_thread):
    ref, trunk = _lpips_reference("alex")
    torch.save(trunk, tmp_path / "alexnet-owt-7be5be79.pth")  # features.* only: all the loader reads
    m = fm.load_lpips("alex", tmp_path)
    a, b = _pair(n=2, s=64, seed=3)
    assert torch.allclose(m(a, b), ref(a, b).detach().flatten().double(), rtol=1e-6, atol=0)
    bb = fm.field_backbones(None, tmp_path / "empty")
    assert bb.lpips is None and bb.structure is None
    assert "absent" in bb.notes["lpips"] and "deltabench weights fetch alexnet-owt-7be5be79.pth" in bb.notes["lpips"]
    torch.save({"features.0.weight": torch.zeros(2)}, tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(ValueError, match=r"features\.0\.weight must be a tensor of shape \[64, 3, 11, 11\]"):
        fm.load_lpips("alex", tmp_path)


def _tiny_vit():
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(4)
    vit = VisionTransformer(
        img_size=32,
        patch_size=8,
        embed_dim=48,
        depth=3,
        num_heads=4,
        num_classes=0,
        qkv_bias=True,
        norm_layer=lambda d, **kw: torch.nn.LayerNorm(d, eps=1e-6, **kw),
    )
    with torch.no_grad():  # non-trivial pos/cls embeddings
        vit.pos_embed.normal_(0, 0.5)
        vit.cls_token.normal_(0, 0.5)
    return vit.eval()


def _reference_tokens(sd, x):
    """Patch embedding, CLS token and position embeddings of a DINO ViT written out from its state dict."""
    p = sd["patch_embed.proj.weight"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p).flatten(2).transpose(1, 2)
    return torch.cat([sd["cls_token"].expand(len(x), -1, -1), t], 1) + sd["pos_embed"]


def _ln(sd, t, k):
    return F.layer_norm(t, (t.shape[-1],), sd[k + ".weight"], sd[k + ".bias"], 1e-6)


def _reference_block(sd, t, i, heads):
    """Block i of DINO's vision_transformer.py (pre-norm attention and GELU MLP), written out."""
    b, dim = f"blocks.{i}.", t.shape[-1]
    qkv = F.linear(_ln(sd, t, b + "norm1"), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
    q, k, v = qkv.reshape(len(t), -1, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    att = ((q @ k.transpose(-1, -2)) * (dim // heads) ** -0.5).softmax(-1)
    t = t + F.linear(
        (att @ v).transpose(1, 2).reshape(len(t), -1, dim), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"]
    )
    hdn = F.gelu(F.linear(_ln(sd, t, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
    return t + F.linear(hdn, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])


def _reference_keys_self_sim(sd, x, heads, depth):
    """A DINO ViT written out from its state dict, then PIE-Bench's recipe for the last layer's keys:
    qkv [T, 3D] -> reshape(T, 3, H, D/H) -> permute(1, 2, 0, 3)[1] -> [H, T, d] -> transpose -> [T, H*d],
    cosine self-similarity with the norm product clamped at 1e-8."""
    t = _reference_tokens(sd, x)
    for i in range(depth - 1):
        t = _reference_block(sd, t, i, heads)
    dim, b, out = t.shape[-1], f"blocks.{depth - 1}.", []
    qkv = F.linear(_ln(sd, t, b + "norm1"), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
    for n in range(len(x)):
        k = qkv[n].reshape(qkv.shape[1], 3, heads, dim // heads).permute(1, 2, 0, 3)[1]
        h_, tt, d = k.shape
        cat = k.transpose(0, 1).reshape(tt, h_ * d)
        nrm = cat.norm(dim=1, keepdim=True)
        out.append((cat @ cat.T) / (nrm @ nrm.T).clamp(min=1e-8))
    return torch.stack(out)


def _reference_dino_cls(sd, x, heads, depth):
    """DINO's VisionTransformer.forward (vision_transformer.py lines 209-214): every block, the final
    LayerNorm, the CLS token."""
    t = _reference_tokens(sd, x)
    for i in range(depth):
        t = _reference_block(sd, t, i, heads)
    return _ln(sd, t, "norm")[:, 0]


def test_structure_distance_equals_an_independent_computation(one_thread):
    vit = _tiny_vit()
    sd_metric = fm.StructureDistance(vit, size=32, name="tiny ViT")
    a, b = _pair(n=2, s=64, seed=5)  # resized 64 -> 32 as PIE-Bench resizes 512 -> 224
    mean, std = torch.tensor(fm.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(fm.IMAGENET_STD).view(1, 3, 1, 1)
    prep = lambda x: (
        (
            F.interpolate(
                (x + 1) / 2,
                size=(32, 32),
                mode="bilinear",
                antialias=False,  # noqa: E731
                align_corners=False,
            )
            - mean
        )
        / std
    )
    sd = vit.state_dict()
    with torch.no_grad():
        sa, sb = _reference_keys_self_sim(sd, prep(a), 4, 3), _reference_keys_self_sim(sd, prep(b), 4, 3)
    want = ((sa - sb) ** 2).mean((1, 2)).double()
    got = sd_metric(a, b)
    assert sa.shape == (2, 17, 17)  # CLS + 4x4 patches
    assert (got - want).abs().max() < 1e-6 * want.abs().max() and (want > 0).all()
    assert torch.equal(sd_metric(a, a), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="square images"):
        sd_metric(a[..., :32], b[..., :32])


def test_dino_vit_has_the_official_dino_tensor_names(tmp_path, one_thread):
    with torch.device("meta"):
        names = {k: tuple(v.shape) for k, v in fm.dino_vit().state_dict().items()}
    assert names["pos_embed"] == (1, 785, 768) and names["patch_embed.proj.weight"] == (768, 3, 8, 8)
    assert names["blocks.11.attn.qkv.weight"] == (2304, 768) and "norm.weight" in names and len(names) == 150
    torch.save({"cls_token": torch.zeros(1, 1, 768)}, tmp_path / "dino_vitb8_pretrain.pth")
    with pytest.raises(ValueError, match="not DINO ViT-B/8 weights"):
        fm.load_structure_distance(tmp_path)
    # a file with every tensor (here read through a stand-in for torch.load) is assigned as it is
    import deltabench.checkpoints as ck

    sd = {k: torch.full(v, 0.5) for k, v in names.items()}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ck, "safe_torch_load", lambda *a, **k: sd)
        m = fm.load_structure_distance(tmp_path)
    assert m.vit.pos_embed.data_ptr() == sd["pos_embed"].data_ptr() and m.name == "DINO ViT-B/8"


# ------------------------------------------------------------------------- DINO-I (MagicBrush)


def _magicbrush_dino_transform(resize=256, crop=224):
    """MagicBrush's DINO transform as its evaluation/image_eval.py lines 403-408 write it (torchvision, PIL)."""
    import torchvision.transforms as T

    with warnings.catch_warnings():  # an int interpolation (3: bicubic) is deprecated in newer torchvision
        warnings.simplefilter("ignore")
        return T.Compose(
            [
                T.Resize(resize, interpolation=3),
                T.CenterCrop(crop),
                T.ToTensor(),
                T.Normalize(fm.IMAGENET_MEAN, fm.IMAGENET_STD),
            ]
        )


def _u8_images(n, h, w, seed):
    """uint8 images [N, H, W, 3] and the same as deltabench reads them ([N, 3, H, W] in [-1, 1])."""
    u8 = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    return u8, torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1


def _mb_reference(sd, u8a, u8b, heads, depth, resize=256, crop=224):
    """MagicBrush's DINO score per pair: its transform on PIL images, DINO's forward written out,
    1 - scipy's cosine distance (image_eval.py lines 86-90)."""
    from PIL import Image
    from scipy.spatial.distance import cosine

    tf = _magicbrush_dino_transform(resize, crop)
    with torch.no_grad():
        ea, eb = (
            _reference_dino_cls(sd, torch.stack([tf(Image.fromarray(a)) for a in u8]), heads, depth)
            for u8 in (u8a, u8b)
        )
    return torch.tensor([1 - cosine(x.numpy(), y.numpy()) for x, y in zip(ea, eb)], dtype=torch.float64)


def test_dino_i_input_is_magicbrushs_transform_to_the_bit():
    from PIL import Image

    from deltabench.metrics.dino import magicbrush_dino_input

    # 512 px (MagicBrush's), other sizes, upsampling, and 40x51 -> 45x36 -> crop offset round(6.5) = 6
    for (h, w), (resize, crop) in {
        (512, 512): (256, 224),
        (300, 200): (256, 224),
        (8, 8): (256, 224),
        (40, 51): (36, 32),
    }.items():
        u8, x = _u8_images(2, h, w, seed=h)
        got = magicbrush_dino_input(x, resize, crop)
        tf = _magicbrush_dino_transform(resize, crop)
        assert got.shape == (2, 3, crop, crop)
        assert torch.equal(got, torch.stack([tf(Image.fromarray(a)) for a in u8])), (h, w)
    with pytest.raises(ValueError, match="smaller than the 32-px crop"):
        magicbrush_dino_input(x, 30, 32)


def test_dino_i_equals_magicbrushs_recipe_on_a_small_vit(one_thread):
    from deltabench.metrics.dino import magicbrush_dino_input

    vit = _tiny_vit()  # 32 px, patch 8: MagicBrush's 256 / 224 scaled to 36 / 32
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # timm's init leaves the CLS token almost image-blind (cosines 0.9999)
        for n, p in vit.named_parameters():
            if n.startswith("blocks") and n.endswith("weight") and "norm" not in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    sim = fm.DinoSimilarity(vit, resize=36, crop=32, name="tiny ViT")
    (ua, a), (ub, b) = _u8_images(3, 40, 51, seed=11), _u8_images(3, 40, 51, seed=12)
    want = _mb_reference(vit.state_dict(), ua, ub, 4, 3, 36, 32)
    got = sim(a, b)
    assert got.dtype == torch.float64 and (got - want).abs().max() < 1e-6 and (want < 0.9).all()
    assert torch.allclose(sim(a, a), torch.ones(3, dtype=torch.float64), atol=1e-12, rtol=0)
    # the CLS token, not the patch tokens' mean: another number
    with torch.no_grad():
        feats = [vit.forward_features(magicbrush_dino_input(x, 36, 32))[:, 1:].mean(1) for x in (a, b)]
    assert (F.cosine_similarity(*feats).double() - got).abs().max() > 1e-3


@pytest.fixture(scope="module")
def dino_vits16_dir(tmp_path_factory):
    """A weights folder with dino_deitsmall16_pretrain.pth of random weights, in DINO's key format."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in fm.dino_vit("vits16").state_dict().items()}
    g = torch.Generator().manual_seed(16)
    sd = {}
    for k, shape in shapes.items():
        std = 0.1 if k in ("cls_token", "pos_embed") else 0.2 if k.startswith("patch_embed") else 0.05
        v = torch.randn(shape, generator=g) * std
        sd[k] = v + 1 if "norm" in k and k.endswith("weight") else v
    d = tmp_path_factory.mktemp("dino-weights")
    torch.save(sd, d / "dino_deitsmall16_pretrain.pth")
    return d, sd


def test_dino_vits16_is_dinos_hub_model_and_loads_from_the_registry(dino_vits16_dir, tmp_path, one_thread):
    with torch.device("meta"):
        names = {k: tuple(v.shape) for k, v in fm.dino_vit("vits16").state_dict().items()}
    assert names["pos_embed"] == (1, 197, 384) and names["patch_embed.proj.weight"] == (384, 3, 16, 16)
    assert names["blocks.11.attn.qkv.weight"] == (1152, 384) and "norm.weight" in names and len(names) == 150
    assert not [k for k in names if k.startswith("head")]  # the hub model has num_classes=0
    d, sd = dino_vits16_dir
    sim = fm.load_dino_similarity(d)
    assert sim.name == "DINO ViT-S/16" and (sim.resize, sim.crop) == (256, 224)
    (ua, a), (ub, b) = _u8_images(2, 64, 64, seed=13), _u8_images(2, 64, 64, seed=14)
    want, got = _mb_reference(sd, ua, ub, 6, 12), sim(a, b)
    assert (got - want).abs().max() < 1e-6 and (want < 0.95).all()
    # absent: the column is left out, the note names the fetch command; asked for only with targets
    bb = fm.field_backbones(None, tmp_path, dino_i=True)
    assert bb.dino is None and bb.notes["dino_i_ref"].startswith("absent: dino_deitsmall16_pretrain.pth not found")
    assert "deltabench weights fetch dino_deitsmall16_pretrain.pth" in bb.notes["dino_i_ref"]
    assert "dino_i_ref" not in fm.field_backbones(None, tmp_path).notes
    # a file of other tensors is refused by name, before anything is computed
    torch.save({"cls_token": torch.zeros(1, 1, 768), "pos_embed": torch.zeros(1, 785, 768)}, tmp_path / fm.DINO_I_FILE)
    with pytest.raises(ValueError, match=r"not DINO ViT-S/16 weights: 150 tensors missing or misshapen"):
        fm.field_backbones(None, tmp_path, dino_i=True)
    import deltabench.checkpoints as ck

    bad = {**sd, "patch_embed.proj.weight": torch.zeros(384, 3, 8, 8)}  # a ViT-S/8's patch embedding
    with pytest.MonkeyPatch.context() as mp, pytest.raises(ValueError, match=r"1 tensors .*patch_embed\.proj\.weight"):
        mp.setattr(ck, "safe_torch_load", lambda *a, **k: bad)
        fm.load_dino_similarity(d)


def test_gaussian_ssim_equals_scikit_image_with_torchmetrics_settings():
    from skimage.metrics import structural_similarity

    a, b = _pair(n=2, s=32, seed=7)
    a01, b01 = (a + 1) / 2, (b + 1) / 2
    got = fm.ssim_gaussian01(a01, b01)
    for i in range(2):
        want = structural_similarity(
            a01[i].permute(1, 2, 0).double().numpy(),
            b01[i].permute(1, 2, 0).double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1,
            channel_axis=-1,
        )
        assert abs(float(got[i]) - want) < 1e-12


class _ToyClip:
    """A fixed linear 'CLIP' (pooled pixels -> 8-d), enough to check what CLIP-I/T are cosines of."""

    def __init__(self):
        self.w = torch.randn(3 * 4 * 4, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def image(self, x):
        return F.normalize(F.adaptive_avg_pool2d(x.double(), 4).flatten(1) @ self.w, dim=1)

    def text(self, texts):
        return F.normalize(
            torch.stack([torch.tensor([float(len(t)), 1.0] * 4, dtype=torch.float64) for t in texts]), dim=1
        )


def test_unedited_region_metrics_follow_pie_bench_and_count_exclusions(one_thread):
    ref, trunk = _lpips_reference("squeeze")
    lp = fm.LPIPS("squeeze", trunk, fm.lpips_linear_weights("squeeze")[0])
    a, b = _pair(n=3, s=32, seed=9)
    masks = np.zeros((3, 32, 32), bool)
    masks[0, 8:20, 4:30] = True  # an ordinary edit region
    masks[1] = True  # no unedited pixel: excluded from the unedited columns
    # masks[2] empty: the whole image is unedited; excluded from the edited-region CLIP-T
    toy = _ToyClip()
    clip = fm.FieldClip("toy CLIP", toy.image, toy.text)
    s = fm.score_field(a, b, masks, ["face with glasses"] * 3, clip, lpips=lp)
    keep = torch.as_tensor(~masks, dtype=torch.float32)[:, None]
    pa, pb = (a + 1) / 2 * keep, (b + 1) / 2 * keep  # PIE-Bench: [0, 1] images times (1 - mask)
    mse = ((pa - pb) ** 2).flatten(1).mean(1).double()
    for i in (0, 2):
        assert abs(s.columns["mse_unedited"][i] - float(mse[i])) < 1e-7
        assert abs(s.columns["psnr_unedited"][i] - float(10 * torch.log10(1 / mse[i]))) < 1e-5
        want_lp = float(ref(pa[i : i + 1] * 2 - 1, pb[i : i + 1] * 2 - 1).detach())
        assert abs(s.columns["lpips_unedited[squeeze]"][i] - want_lp) < 1e-6
    for k in ("psnr_unedited", "ssim_unedited", "mse_unedited", "lpips_unedited[squeeze]"):
        assert np.isnan(s.columns[k][1]) and s.excluded[k]["n"] == 1 and "no unedited region" in s.excluded[k]["reason"]
    k = "clip_t_edit_region[toy CLIP]"
    assert np.isnan(s.columns[k][2]) and s.excluded[k] == {"n": 1, "reason": "the mask is empty: no edited region"}
    summ = s.summary()
    assert summ["psnr_unedited"]["n"] == 2 and summ["psnr_unedited"]["excluded"] == 1
    assert all(v["mean"] is not None and np.isfinite(v["mean"]) for v in summ.values())
    # CLIP-I / CLIP-T are plain cosines, named with the CLIP
    ea, eb = toy.image(a), toy.image(b)
    assert np.allclose(s.columns["clip_i[toy CLIP]"], (ea * eb).sum(1).numpy(), atol=1e-12)
    assert np.allclose(s.columns["clip_t[toy CLIP]"], (eb @ toy.text(["face with glasses"])[0]).numpy(), atol=1e-12)
    # identical unedited regions: PSNR at the cap, never inf
    same = fm.score_field(a, a.clone(), masks)
    assert same.columns["psnr_unedited"][0] == fm.PSNR_CAP and same.columns["mse_unedited"][0] == 0
    with pytest.raises(ValueError, match="one .* mask per image"):
        fm.score_field(a, b, masks[:2])


def test_clean_resize_is_pil_bicubic_per_channel_and_leaves_native_size_alone():
    from PIL import Image

    from deltabench.metrics.fid import clean_resize

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, 64, 64, generator=g) * 255).round()
    got = clean_resize(x, 299)
    ch = np.asarray(Image.fromarray(x[0, 1].numpy().astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
    assert np.array_equal(got[0, 1].numpy(), ch.clip(0, 255)) and got.shape == (1, 3, 299, 299)
    # pytorch-fid's own bilinear resize of a 299-px input (what follows clean_resize) is a copy
    y = torch.rand(1, 3, 299, 299, generator=g)
    assert torch.equal(F.interpolate(y, size=(299, 299), mode="bilinear", align_corners=False), y)


def test_world_fid_path_does_not_resize(micro_world):
    from deltabench.domain import WorldDomain

    d = WorldDomain(micro_world)
    assert d.world.oracle.resolution == d.resolution  # oracle._prep interpolates only off its resolution
    assert d.fid_resize.startswith("none")
    # CLIP-I / CLIP-T with the world's CLIP, named in the columns; LPIPS / DINO absent with the reason
    clip = fm.domain_clip(d)
    assert clip.name == "synthfaces-micro CLIP"
    x = d.test_images(2, 0).images
    s = fm.score_field(x, x.flip(0), None, ["face with glasses", "smiling face"], clip)
    e, t = d.clip_image(x).double(), d.clip.encode_text(["face with glasses", "smiling face"]).double()
    assert np.allclose(s.columns["clip_t[synthfaces-micro CLIP]"], (e.flip(0) * t).sum(1).numpy(), atol=1e-6)
    assert np.allclose(s.columns["clip_i[synthfaces-micro CLIP]"], (e * e.flip(0)).sum(1).numpy(), atol=1e-6)


# ------------------------------------------------------------------------------- PIE-Bench


def _png(path, arr):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8)).save(path)


def _pie_sample(root):
    """Two items in PIE-Bench's layout (README 'Benchmark Download' and the mapping-file example)."""
    g = np.random.default_rng(0)
    _png(root / "annotation_images/0_random_140/000000000000.png", g.integers(0, 256, (16, 16, 3)))
    _png(
        root / "annotation_images/1_change_object_80/1_artificial/1_animal/111000000000.png",
        g.integers(0, 256, (16, 16, 3)),
    )
    mapping = {
        "000000000000": {
            "image_path": "0_random_140/000000000000.png",
            "original_prompt": "a slanted mountain bicycle on the road",
            "editing_prompt": "a slanted [rusty] mountain bicycle on the road",
            "editing_instruction": "Make the frame of the bike rusty",
            "editing_type_id": "0",
            "blended_word": "bicycle bicycle",
            "mask": [10, 3, 27, 2, 250, 9],
        },
        "111000000000": {
            "image_path": "1_change_object_80/1_artificial/1_animal/111000000000.png",
            "original_prompt": "a [dog] on the grass",
            "editing_prompt": "a [cat] on the grass",
            "editing_instruction": "Turn the dog into a cat",
            "editing_type_id": "1",
            "blended_word": "dog cat",
            "mask": [],
        },
    }
    (root / "mapping_file.json").write_text(json.dumps(mapping))
    return mapping


def test_pie_bench_sample_reads_as_the_benchmark_decodes_it(tmp_path):
    _pie_sample(tmp_path)
    raw = read_pie_bench(tmp_path, border=False)
    want = np.zeros(256, bool)
    want[10:13] = want[27:29] = want[250:256] = True  # run 250+9 overruns the 256 pixels: cut, as mask_decode does
    assert [e.id for e in raw] == ["000000000000", "111000000000"]
    assert np.array_equal(raw[0].mask, want.reshape(16, 16)) and not raw[1].mask.any()
    e = read_pie_bench(tmp_path)[0]  # the evaluator's border rule
    assert e.mask[0].all() and e.mask[-1].all() and e.mask[:, 0].all() and e.mask[:, -1].all()
    assert (
        e.source == "a slanted mountain bicycle on the road"
        and e.target == "a slanted rusty mountain bicycle on the road"
    )
    assert e.instruction == "Make the frame of the bike rusty" and e.meta["editing_type_id"] == "0"


def test_pie_bench_round_trip_is_bit_exact(tmp_path):
    _pie_sample(tmp_path / "in")
    first = read_pie_bench(tmp_path / "in", border=False)
    edits = {}
    for e in first:  # a method's edits, saved as the PnPInversion editors do
        _png(tmp_path / "ed" / f"{e.id}.png", np.full((16, 16, 3), 7))
        edits[e.id] = tmp_path / "ed" / f"{e.id}.png"
    write_pie_bench(tmp_path / "out", first, edits, method="toy")
    again = read_pie_bench(tmp_path / "out", border=False)
    for x, y in zip(first, again):
        assert (x.id, x.source, x.target, x.instruction, x.meta) == (y.id, y.source, y.target, y.instruction, y.meta)
        assert np.array_equal(x.mask, y.mask) and x.image.read_bytes() == y.image.read_bytes()
        assert pie_bench_edit_image(tmp_path / "out/output/toy", y).read_bytes() == edits[x.id].read_bytes()
    # a deltabench suite (masks of any shape, new ids) in PIE-Bench's layout, and back
    g = np.random.default_rng(1)
    ours = []
    for i in range(3):
        _png(tmp_path / f"suite/images/{i:05d}.png", g.integers(0, 256, (16, 16, 3)))
        ours.append(
            BenchEntry(
                f"{i:05d}-p00",
                tmp_path / f"suite/images/{i:05d}.png",
                "face",
                "face with glasses",
                "give the face glasses",
                g.random((16, 16)) < 0.3,
            )
        )
    write_pie_bench(tmp_path / "pie", ours)
    back = read_pie_bench(tmp_path / "pie", border=False)
    assert [b.id for b in back] == [o.id for o in ours]
    assert all(
        np.array_equal(o.mask, b.mask) and o.image.read_bytes() == b.image.read_bytes() for o, b in zip(ours, back)
    )
    assert all(rle_decode(rle_encode(o.mask), (16, 16)).tolist() == o.mask.tolist() for o in ours)


def test_pie_bench_bad_inputs_name_the_file_and_key(tmp_path):
    m = _pie_sample(tmp_path)
    mf = tmp_path / "mapping_file.json"
    cases = [
        ({**m, "000000000000": {**m["000000000000"], "mask": [10, 3, 27]}}, r"key '000000000000' mask: .*odd count"),
        (
            {**m, "000000000000": {**m["000000000000"], "mask": [999, 1]}},
            r"starts at pixel 999, past the end of the 16x16",
        ),
        (
            {**m, "000000000000": {**m["000000000000"], "image_path": "0_random_140/missing.jpg"}},
            r"key '000000000000': its image .*missing.jpg does not exist",
        ),
        (
            {**m, "111000000000": {k: v for k, v in m["111000000000"].items() if k != "editing_prompt"}},
            r"key '111000000000': missing editing_prompt",
        ),
    ]
    for bad, msg in cases:
        mf.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=msg):
            read_pie_bench(tmp_path)
    mf.write_text("{not json")
    with pytest.raises(ValueError, match="mapping_file.json is not valid JSON"):
        read_pie_bench(tmp_path)
    with pytest.raises(ValueError, match="is not a PIE-Bench folder"):
        read_pie_bench(tmp_path / "nowhere")


def test_pie_bench_sample_is_scored(tmp_path, one_thread):
    from PIL import Image

    from deltabench.interop import load_pie_bench_pairs

    _pie_sample(tmp_path / "data")
    for e in read_pie_bench(tmp_path / "data"):
        src = np.asarray(Image.open(e.image).convert("RGB"))
        ed = src.copy()
        ed[5:8, 5:8] = 255  # a change outside both masks: the unedited-region error is > 0
        # saved as PnPInversion's editors do: source and edit side by side, under annotation_images/
        _png(tmp_path / "out/annotation_images" / e.meta["image_path"], np.concatenate([src, ed], 1))
    entries, src, edit, masks = load_pie_bench_pairs(tmp_path / "data", tmp_path / "out")
    assert src.shape == edit.shape == (2, 3, 16, 16) and masks.shape == (2, 16, 16)
    assert torch.equal(edit[:, :, 5:8, 5:8], torch.ones(2, 3, 3, 3)) and torch.equal(edit[:, :, :4], src[:, :, :4])
    s = fm.score_field(src, edit, masks)
    assert (s.columns["mse_unedited"] > 0).all() and not s.excluded
    _png(tmp_path / "out/annotation_images" / entries[1].meta["image_path"], np.zeros((8, 8, 3)))
    with pytest.raises(
        ValueError,
        match=r"the edit .*111000000000.png of PIE-Bench key '111000000000' is 8x8, "
        r"its source 16x16",
    ):
        load_pie_bench_pairs(tmp_path / "data", tmp_path / "out")


# ------------------------------------------------------------------------------- MagicBrush


def _magicbrush_sample(root):
    """One image, two turns, as the MagicBrush test split is laid out (edit_cli_single_multi_turn.py,
    evaluation/image_eval.py naming)."""
    g = np.random.default_rng(2)
    for name in ("139-input.png", "139-output1.png", "139-output2.png", "139-mask1.png"):
        _png(root / "images/139" / name, g.integers(0, 256, (8, 8, 3)))
    (root / "edit_sessions.json").write_text(
        json.dumps(
            {
                "139": [
                    {
                        "input": "139-input.png",
                        "mask": "139-mask1.png",
                        "output": "139-output1.png",
                        "instruction": "let him wear sunglasses",
                    },
                    {"input": "139-output1.png", "instruction": "make the sky pink"},
                ]
            }
        )
    )
    (root / "local_captions.json").write_text(
        json.dumps({"139": {"139-output1.png": "a man with sunglasses", "139-output2.png": "a man under a pink sky"}})
    )


def test_magicbrush_sample_reads_as_its_scripts_do(tmp_path):
    _magicbrush_sample(tmp_path)
    es = read_magicbrush(tmp_path, tmp_path / "local_captions.json")
    assert [e.id for e in es] == ["139_1", "139_inde_2"]
    assert es[1].image == tmp_path / "images/139/139-output1.png" and es[1].reference.name == "139-output2.png"
    assert es[0].instruction == "let him wear sunglasses" and es[1].target == "a man under a pink sky"
    assert es[0].mask is None
    _png(tmp_path / "edits/139/139_inde_2.png", np.zeros((8, 8, 3)))
    assert magicbrush_edit_path(tmp_path / "edits", es[1]).name == "139_inde_2.png"
    with pytest.raises(ValueError, match=r"no edit for MagicBrush item '139_1': .*139_1.png does not exist"):
        magicbrush_edit_path(tmp_path / "edits", es[0])
    (tmp_path / "images/139/139-output2.png").unlink()
    with pytest.raises(ValueError, match=r"image '139' turn 2: its target image .*139-output2.png does not exist"):
        read_magicbrush(tmp_path)
    with pytest.raises(ValueError, match="is not a MagicBrush split folder"):
        read_magicbrush(tmp_path / "images")


def test_magicbrush_sample_is_scored_against_its_targets(tmp_path, dino_vits16_dir, one_thread):
    from PIL import Image

    from deltabench.interop import load_magicbrush_pairs

    _magicbrush_sample(tmp_path)
    for e in read_magicbrush(tmp_path):  # an editor that returns the ground-truth target exactly
        _png(tmp_path / "edits/139" / f"{e.id}.png", np.asarray(Image.open(e.reference)))
    entries, src, edit, ref = load_magicbrush_pairs(tmp_path, tmp_path / "edits")
    toy = _ToyClip()
    s = fm.score_field(
        src, edit, None, [e.target or "x" for e in entries], fm.FieldClip("toy", toy.image, toy.text), references=ref
    )
    assert np.array_equal(s.columns["l1_ref"], [0, 0]) and np.array_equal(s.columns["l2_ref"], [0, 0])
    assert np.allclose(s.columns["clip_i_ref[toy]"], 1) and "psnr_unedited" not in s.columns
    assert not [k for k in s.columns if k.startswith("dino")]  # no DINO ViT-S/16 given
    # MagicBrush's DINO with a dino_deitsmall16_pretrain.pth (random weights, DINO's keys): edit against target
    bb = fm.field_backbones(None, dino_vits16_dir[0], dino_i=True)
    assert bb.notes["dino_i_ref"].startswith("DINO ViT-S/16 (dino_deitsmall16_pretrain.pth)")
    s = fm.score_field(src, edit, None, references=ref, dino=bb.dino, notes=bb.notes)
    k = "dino_i_ref[dino_vits16]"
    assert np.allclose(s.columns[k], 1, rtol=0, atol=1e-12) and s.higher_is_better[k]
    assert s.labels[k] == "DINO-I edit-target (DINO ViT-S/16)"
    s = fm.score_field(src, src, None, references=ref, dino=bb.dino, batch=1)  # an editor that changes nothing
    assert np.allclose(s.columns[k], bb.dino(src, ref).numpy(), rtol=0, atol=1e-12) and (s.columns[k] < 0.99).all()
    assert k not in fm.score_field(src, edit, None, dino=bb.dino).columns  # DINO-I needs the targets


def test_score_suite_magicbrush_has_the_dino_column(micro_root, dino_vits16_dir, tmp_path, monkeypatch):
    """`deltabench score --suite magicbrush` (deltabench.interop.score) scores DINO-I with the registry's
    ViT-S/16 where the file is present, and leaves the column out with the fetch command where it is not."""
    import shutil

    import pandas as pd

    from deltabench.interop.score import score_bench

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    _magicbrush_sample(tmp_path / "mb")
    for e in read_magicbrush(tmp_path / "mb"):  # the ground-truth targets as the edits
        (tmp_path / "perfect/139").mkdir(parents=True, exist_ok=True)
        shutil.copy(e.reference, tmp_path / "perfect/139" / f"{e.id}.png")
    k = "dino_i_ref[dino_vits16]"
    for weights, present in ((dino_vits16_dir[0], True), (tmp_path / "no-weights", False)):
        weights.mkdir(exist_ok=True)
        monkeypatch.setenv("DELTABENCH_WEIGHTS", str(weights))
        out = tmp_path / f"out-{present}"
        score_bench("magicbrush", tmp_path / "mb", {"perfect": tmp_path / "perfect"}, out, "synthfaces-micro", log=str)
        per, summ = pd.read_csv(out / "field.csv"), pd.read_csv(out / "field_summary.csv")
        note = summ[summ["column"] == ("dino_i_ref" if not present else k)]["note"].item()
        assert (k in per.columns) == present and ("absent" in note) != present
        if present:
            assert np.allclose(per[k], 1, atol=1e-12) and note.startswith("DINO ViT-S/16")
        else:
            assert "deltabench weights fetch dino_deitsmall16_pretrain.pth" in note
