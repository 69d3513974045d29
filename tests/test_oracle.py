import numpy as np
import pytest
import torch
from torch import nn

from deltabench.models.oracle import Oracle, OracleConfig, OracleOutput
from deltabench.world.attributes import ATTRIBUTES, IDENTITY_PARAMS, sample_params
from deltabench.world.train_oracle import ident_error, oracle_accuracy, train_oracle, world_oracle

MICRO = OracleConfig(stem_width=8, widths=(16, 32), feature_dim=64, pool_size=256, steps=30, batch_size=32, lr=3e-3)


@pytest.mark.parametrize("res", [32, 64])
def test_output_shapes_and_features(res):
    oracle = world_oracle(MICRO, res).eval()
    x = torch.rand(6, 3, res, res) * 2 - 1
    out = oracle(x)
    assert isinstance(out, OracleOutput)
    assert list(out.logits) == [a.name for a in ATTRIBUTES]
    for a in ATTRIBUTES:
        assert out.logits[a.name].shape == (6, a.n)
    assert out.ident.shape == (6, len(IDENTITY_PARAMS))
    assert oracle.features(x).shape == (6, MICRO.feature_dim)
    attrs, ident = oracle.predict(x)
    assert attrs.dtype == torch.int64 and attrs.shape == (6, len(ATTRIBUTES))
    assert torch.equal(ident, out.ident)


def test_predict_columns_follow_attribute_order():
    oracle = world_oracle(MICRO, 32).eval()
    want = []
    with torch.no_grad():
        for j, a in enumerate(ATTRIBUTES):
            head = oracle.heads[a.name]
            head.weight.zero_()
            head.bias.zero_()
            v = (j + 1) % a.n  # a value pattern that differs between neighbouring columns
            head.bias[v] = 5.0
            want.append(v)
    attrs, _ = oracle.predict(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert attrs.tolist() == [want] * 3


def test_rebuild_from_config_and_state_dict():
    oracle = world_oracle(MICRO, 32).eval()
    sd = oracle.state_dict()
    ptrs = [v.untyped_storage().data_ptr() for v in sd.values()]
    assert len(set(ptrs)) == len(ptrs)
    other = world_oracle(OracleConfig.from_dict(MICRO.to_dict()), 32).eval()
    other.load_state_dict(sd)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(other.features(x), oracle.features(x))
    with pytest.raises(ValueError, match="unknown keys"):
        OracleConfig.from_dict({"feature_dims": 3})


class _PerfectOracle(nn.Module):
    """Reads attributes and identity params written into the pixels by :func:`_encode`."""

    def predict(self, img):
        attrs = torch.round((img[:, 0, 0, : len(ATTRIBUTES)] + 1) * 10).long()
        return attrs, img[:, 1, 0, : len(IDENTITY_PARAMS)]


def _encode(params) -> torch.Tensor:
    img = torch.zeros(len(params), 3, 16, 16)
    img[:, 0, 0, : len(ATTRIBUTES)] = torch.from_numpy(params.attrs).float() / 10 - 1
    img[:, 1, 0, : len(IDENTITY_PARAMS)] = torch.from_numpy(params.ident)
    return img


def test_oracle_accuracy_and_ident_error_on_a_perfect_oracle():
    params = sample_params(300, np.random.default_rng(0))
    images = _encode(params)
    acc = oracle_accuracy(_PerfectOracle(), images, params)
    assert acc == {a.name: 1.0 for a in ATTRIBUTES}
    err = ident_error(_PerfectOracle(), images, params)
    assert list(err) == list(IDENTITY_PARAMS) and max(err.values()) < 1e-6
    # corrupt the ground truth of one attribute on the first 75 faces: only its accuracy drops
    flipped = params.attrs.copy()
    j = [a.name for a in ATTRIBUTES].index("glasses")
    flipped[:75, j] = 1 - flipped[:75, j]
    wrong = type(params)(flipped, params.ident)
    acc = oracle_accuracy(_PerfectOracle(), images, wrong)
    assert acc["glasses"] == pytest.approx(225 / 300)
    assert all(v == 1.0 for k, v in acc.items() if k != "glasses")
    shifted = type(params)(params.attrs, params.ident + np.float32(0.25))
    assert all(v == pytest.approx(0.25, abs=1e-6) for v in ident_error(_PerfectOracle(), images, shifted).values())


@pytest.mark.slow  # training or a many-file end-to-end check: minutes on 2 cores
def test_train_oracle_reduces_loss_and_is_deterministic():
    oracle, stats = train_oracle(MICRO, 32, seed=0)
    assert isinstance(oracle, Oracle) and not oracle.training
    assert stats["loss_last"] < 0.7 * stats["loss_first"]
    cfg = OracleConfig.from_dict({**MICRO.to_dict(), "steps": 3, "pool_size": 64})
    o1, _ = train_oracle(cfg, 32, seed=5)
    o2, _ = train_oracle(cfg, 32, seed=5)
    for k, v in o1.state_dict().items():
        assert torch.equal(v, o2.state_dict()[k]), k
