import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from deltabench.models.identity import ArcFaceHead, IdentityConfig, arcface_loss, build_identity
from deltabench.world.attributes import IDENTITY_PARAMS, FaceParams
from deltabench.world.train_identity import (
    gaussian_blur,
    identity_auc,
    pair_auc,
    robust_augment,
    train_identity,
    verification_pairs,
)

MICRO = IdentityConfig(
    stem_width=8,
    widths=(16, 32),
    embed_dim=32,
    n_identities=40,
    images_per_identity=4,
    steps=30,
    batch_size=32,
    lr=3e-3,
    scale=16.0,
    margin=0.2,
)


def test_arcface_margin_makes_loss_larger_than_softmax():
    g = torch.Generator().manual_seed(0)
    cos = torch.rand(64, 10, generator=g) * 2 - 1
    labels = torch.randint(0, 10, (64,), generator=g)
    plain = F.cross_entropy(30.0 * cos, labels)
    assert torch.allclose(arcface_loss(cos, labels, 30.0, 0.0), plain, atol=1e-4)
    l1, l2 = arcface_loss(cos, labels, 30.0, 0.3), arcface_loss(cos, labels, 30.0, 0.5)
    assert plain < l1 < l2


def test_arcface_loss_near_minimum_when_aligned():
    k = 20
    labels = torch.arange(k)
    aligned = torch.zeros(k, k)
    aligned[labels, labels] = 1.0  # each feature on its own centre, orthogonal to the others
    loss = arcface_loss(aligned, labels, 30.0, 0.5)
    assert loss < 1e-6
    # any other configuration of the same class is worse
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        other = torch.rand(k, k, generator=g) * 2 - 1
        assert arcface_loss(other, labels, 30.0, 0.5) > loss


def test_arcface_head_returns_cosines():
    head = ArcFaceHead(8, 5)
    feat = torch.randn(4, 8) * 7
    cos = head(feat)
    assert cos.shape == (4, 5)
    want = F.normalize(feat, dim=1) @ F.normalize(head.weight, dim=1).T
    assert torch.allclose(cos, want, atol=1e-6)


@pytest.mark.parametrize("res", [32, 64])
def test_embed_is_l2_normalised_and_rebuildable(res):
    net = build_identity(MICRO, res).eval()
    x = torch.rand(5, 3, res, res) * 2 - 1
    e = net.embed(x)
    assert e.shape == (5, MICRO.embed_dim)
    assert torch.allclose(e.norm(dim=1), torch.ones(5), atol=1e-5)
    sd = net.state_dict()
    ptrs = [v.untyped_storage().data_ptr() for v in sd.values()]
    assert len(set(ptrs)) == len(ptrs), "state_dict tensors must not share storage (safetensors)"
    net2 = build_identity(IdentityConfig.from_dict(MICRO.to_dict()), res).eval()
    net2.load_state_dict(sd)
    assert torch.equal(net2.embed(x), e)


def test_config_rejects_unknown_keys_and_roundtrips():
    with pytest.raises(ValueError, match="unknown keys.*'widht'"):
        IdentityConfig.from_dict({"widht": 3})
    assert IdentityConfig.from_dict(MICRO.to_dict()) == MICRO
    with pytest.raises(ValueError, match="not divisible"):
        build_identity(IdentityConfig(widths=(8, 8, 8, 8, 8)), 32)


def test_gaussian_blur_preserves_mean_and_smooths():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    assert torch.equal(gaussian_blur(x, 0.0), x)
    y = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]))
    assert torch.allclose(y[0], x[0], atol=1e-5)  # sigma 0 -> untouched
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=2e-2)
    tv = lambda t: (t[..., 1:, :] - t[..., :-1, :]).abs().mean().item()  # noqa: E731
    assert tv(x[1]) > tv(y[1]) > tv(y[2])
    z = robust_augment(x, g, 1.0, 0.05, 0.1)
    assert z.shape == x.shape and z.min() >= -1 and z.max() <= 1 and not torch.equal(z, x)


def test_verification_pairs_pairing():
    a, b, same = verification_pairs(50, seed=3)
    assert len(a) == len(b) == 100 and same.sum() == 50
    assert np.array_equal(a.ident[same], b.ident[same])
    assert (np.abs(a.ident[~same] - b.ident[~same]).max(1) > 0).all()
    # genuine pairs vary the attributes, not only the impostors
    assert (a.attrs[same] != b.attrs[same]).any(1).mean() > 0.9
    a2, _, _ = verification_pairs(50, seed=3)
    assert np.array_equal(a.attrs, a2.attrs)


def _fake_render(params: FaceParams, size: int) -> np.ndarray:
    # ident written into the first pixels of row 0 (uint8), attrs into row 1
    img = np.zeros((len(params), size, size, 3), np.uint8)
    img[:, 0, : len(IDENTITY_PARAMS), 0] = np.round((params.ident + 1) * 127.5).astype(np.uint8)
    img[:, 1, : params.attrs.shape[1], 0] = params.attrs.astype(np.uint8)
    return img


class _PixelIdentity(nn.Module):
    """Embeds the ident pixels plus a fixed attribute-dependent nuisance (so the AUC is < 1)."""

    def __init__(self, nuisance: float):
        super().__init__()
        self.nuisance = nuisance
        self.dummy = nn.Parameter(torch.zeros(1))

    def embed(self, img):
        ident = img[:, 0, 0, : len(IDENTITY_PARAMS)]  # [N, P] in [-1, 1]
        attrs = torch.round((img[:, 0, 1, :9] + 1) * 127.5)  # [N, A]
        return F.normalize(_constructed(ident, attrs, self.nuisance), dim=1)


def _constructed(ident: torch.Tensor, attrs: torch.Tensor, nuisance: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(attrs.shape[1], ident.shape[1], generator=g)
    return ident + nuisance * torch.sin(attrs @ proj)


def test_identity_auc_matches_sklearn_on_constructed_embeddings():
    n, seed = 300, 11
    assert identity_auc(_PixelIdentity(0.0), n, seed, 16, render_fn=_fake_render) > 0.999
    got = identity_auc(_PixelIdentity(0.8), n, seed, 16, render_fn=_fake_render)
    # the expected value, computed straight from the parameters of the same pairs
    a, b, same = verification_pairs(n, seed)
    emb = [
        _constructed(
            torch.from_numpy(np.round((p.ident + 1) * 127.5) / 127.5 - 1).float(),
            torch.from_numpy(p.attrs).float(),
            0.8,
        )
        for p in (a, b)
    ]
    want = roc_auc_score(same, F.cosine_similarity(emb[0], emb[1], dim=1).numpy())
    assert 0.6 < want < 0.99
    assert got == pytest.approx(want, abs=1e-9)
    assert pair_auc(emb[0], emb[1], same) == pytest.approx(want, abs=1e-12)


@pytest.mark.slow  # training or a many-file end-to-end check: minutes on 2 cores
def test_train_identity_reduces_loss_and_is_deterministic():
    net, stats = train_identity(MICRO, 32, seed=0)
    assert not net.training
    assert stats["loss_last"] < 0.8 * stats["loss_first"]
    cfg = IdentityConfig.from_dict({**MICRO.to_dict(), "steps": 3})
    n1, _ = train_identity(cfg, 32, seed=5)
    n2, _ = train_identity(cfg, 32, seed=5)
    n3, _ = train_identity(cfg, 32, seed=6)
    for k, v in n1.state_dict().items():
        assert torch.equal(v, n2.state_dict()[k]), k
    assert not torch.equal(n1.fc.weight, n3.fc.weight)
