"""The world CLIP's identity: the card's read-out, the identity term, and the identity-regression metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deltabench.metrics.attributes import IdentityRegression
from deltabench.world import train_clip
from deltabench.world.attributes import IDENTITY_PARAMS
from deltabench.world.train_clip import ClipTrainConfig, clip_identity, identity_basis, identity_loss


class _Clip(torch.nn.Module):
    """Reads the parameters a patched renderer wrote into the pixels; ``sees``: identity or not."""

    def __init__(self, sees_identity: bool):
        super().__init__()
        self.sees = sees_identity

    def encode_image(self, x):
        attrs, ident = x[:, 0, 0, :9], x[:, 0, 1, :6]
        e = torch.cat([attrs, ident if self.sees else torch.zeros_like(ident), torch.ones(len(x), 1)], 1)
        return e / e.norm(dim=1, keepdim=True)


def _fake_render(params, resolution, render_fn):
    x = torch.zeros(len(params), 3, 4, 16)
    x[:, 0, 0, :9] = torch.from_numpy(params.attrs).float()
    x[:, 0, 1, :6] = torch.from_numpy(params.ident).float()
    return x


def test_clip_identity_reads_an_identity_aware_embedding_and_not_a_blind_one(monkeypatch):
    monkeypatch.setattr(train_clip, "_render", _fake_render)
    aware = clip_identity(_Clip(True), seed=0, resolution=4, n_train=400, n_test=200, n_pairs=200)
    blind = clip_identity(_Clip(False), seed=0, resolution=4, n_train=400, n_test=200, n_pairs=200)
    assert set(aware["r2"]) == set(IDENTITY_PARAMS)
    # The aware embedding holds identity up to a per-face normalisation: linear R^2 well above 0.8.
    assert min(aware["r2"].values()) > 0.8 and aware["cos"] < 0.95
    assert max(blind["r2"].values()) < 0.05 and blind["cos"] == pytest.approx(1.0)


def test_identity_loss_is_zero_for_the_target_and_about_one_for_a_blind_embedding():
    g = torch.Generator().manual_seed(0)
    ident = torch.rand(512, 6, generator=g) * 2 - 1
    basis = identity_basis(32)
    assert torch.allclose(basis.T @ basis, torch.eye(6), atol=1e-5)
    target = 0.35 * ident / np.sqrt(2.0)
    rest = torch.randn(512, 32, generator=g)
    rest = rest - (rest @ basis) @ basis.T  # orthogonal to the identity subspace
    rest = rest / rest.norm(dim=1, keepdim=True) * (1 - (target**2).sum(1, keepdim=True)).sqrt()
    e = rest + target @ basis.T
    assert torch.allclose(e.norm(dim=1), torch.ones(512), atol=1e-5)
    assert identity_loss(e, ident, basis, 0.35) < 1e-8
    blind = rest / rest.norm(dim=1, keepdim=True)
    assert identity_loss(blind, ident, basis, 0.35) == pytest.approx(1.0, abs=0.1)


def test_identity_keys_are_absent_when_off_so_old_stage_hashes_stay():
    d = ClipTrainConfig().to_dict()
    assert "identity_weight" not in d and "identity_share" not in d
    on = ClipTrainConfig.from_dict({"identity_weight": 2.0}).to_dict()
    assert on["identity_weight"] == 2.0 and on["identity_share"] == 0.35
    with pytest.raises(ValueError, match="identity_share"):
        ClipTrainConfig.from_dict({"identity_weight": 1.0, "identity_share": 1.5})


def test_identity_regression_metric():
    m = IdentityRegression()
    start = torch.tensor([[0.8, -0.4, 0.2, 0.0, 0.5, -0.6], [0.3, 0.3, 0.3, 0.3, 0.3, 0.3]], dtype=torch.float64)
    toward_mean = start * 0.5  # halfway to the mean face (0): cosine 1
    cos = m.update(toward_mean, start)
    assert torch.allclose(cos, torch.ones(2, dtype=torch.float64))
    sideways = start.clone()
    sideways[0] += torch.tensor([0.4, 0.8, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # orthogonal to start[0]
    cos = m.update(sideways, start)
    assert cos[0] == pytest.approx(0.0, abs=1e-12) and torch.isnan(cos[1])  # no change: not counted
    assert m.compute() == pytest.approx(2 / 3) and float(m.count) == 3
