import pytest
import torch

from deltabench.models.encoder import EncoderConfig, build_encoder
from deltabench.models.stylegan2 import GeneratorConfig
from deltabench.world.train_encoder import EncoderTrainConfig, encoder_psnr, train_encoder
from deltabench.world.train_generator import DistillConfig, train_generator, world_latent_avg


@pytest.fixture(autouse=True)
def single_thread():
    # see tests/test_stylegan2.py: 2 OpenMP threads on a shared CPU can be 10x slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


G_MICRO = GeneratorConfig(style_dim=32, n_mlp=2, channels={4: 32, 8: 32, 16: 16, 32: 8})
E_MICRO = EncoderConfig(style_dim=32, channels=(8, 16, 16, 32, 32), fpn_dim=16)


def test_encoder_shape_and_e4e_parameterisation():
    torch.manual_seed(0)
    E = build_encoder(E_MICRO, 32).eval()
    assert E.n_latent == 8 and E.levels == (0, 0, 0, 1, 1, 1, 1, 2)
    w_avg = torch.randn(32)
    E.w_avg.copy_(w_avg)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        w_plus = E(x)
        assert w_plus.shape == (3, 8, 32)
        # entry 0 is w_avg + base exactly: no delta head for it
        base = E.styles[0](E.lat3(E.stages[3](E.stages[2](E.stages[1](E.stages[0](E.stem(x)))))))
        assert torch.allclose(w_plus[:, 0], w_avg + base, atol=1e-6)
        # outputs depend on the image and are per-sample
        assert not torch.allclose(w_plus[0], w_plus[1])
        assert torch.equal(E(x[:1]), w_plus[:1]) or torch.allclose(E(x[:1]), w_plus[:1], atol=1e-6)
    assert E.deltas(w_plus).shape == (3, 7, 32)
    # rebuildable from config + state dict
    E2 = build_encoder(EncoderConfig.from_dict(E_MICRO.to_dict()), 32)
    E2.load_state_dict(E.state_dict())
    with torch.no_grad():
        assert torch.equal(E2.eval()(x), w_plus)
    with pytest.raises(ValueError, match="unknown keys"):
        EncoderConfig.from_dict({"depth": 3})


@pytest.mark.slow
def test_short_training_reduces_latent_loss():
    # a generator that already depends on the face parameters, so images carry the latent
    G, _ = train_generator(G_MICRO, DistillConfig(steps=40, eval_n=0), 32, seed=0)
    tcfg = EncoderTrainConfig(steps=60, batch=8, gen_batch=8, lr=2e-3, image_weight=1.0, eval_n=16)
    E, stats = train_encoder(E_MICRO, tcfg, G, seed=0)
    assert not E.training
    assert stats["latent_loss_last"] < 0.9 * stats["latent_loss_first"]
    assert stats["image_l1_last"] is not None
    assert all(p.requires_grad for p in G.parameters())  # G's flags restored
    assert torch.allclose(E.w_avg, world_latent_avg(G, seed=0))
    assert stats["psnr"] == pytest.approx(encoder_psnr(E, G, 16, tcfg.eval_seed), abs=1e-4)
    with pytest.raises(ValueError, match="style_dim"):
        train_encoder(EncoderConfig(style_dim=64), tcfg, G, seed=0)
