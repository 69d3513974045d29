import numpy as np
import pytest
import torch
from open_clip.loss import ClipLoss

from deltabench.models.clip import IMAGENET_TEMPLATES, ClipConfig, WordTokenizer, build_clip
from deltabench.world.attributes import ATTRIBUTE_NAMES
from deltabench.world.captions import vocabulary
from deltabench.world.train_clip import (
    ClipTrainConfig,
    clip_zeroshot,
    group_params,
    multi_positive_loss,
    text_embedding,
    train_clip,
    world_tokenizer,
)

TINY = ClipConfig(
    embed_dim=32,
    patch_size=8,
    vision_width=32,
    vision_layers=1,
    vision_heads=2,
    text_width=32,
    text_layers=1,
    text_heads=2,
    context_length=32,
    vocab_size=64,
)


def test_imagenet_templates_are_the_79_of_styleclip():
    assert len(IMAGENET_TEMPLATES) == 79 and len(set(IMAGENET_TEMPLATES)) == 79
    assert all(t.count("{}") == 1 for t in IMAGENET_TEMPLATES)
    assert "a photo of many {}." not in IMAGENET_TEMPLATES  # the one StyleCLIP comments out
    assert IMAGENET_TEMPLATES[0] == "a bad photo of a {}." and IMAGENET_TEMPLATES[-1] == "a tattoo of the {}."


def test_tokenizer_round_trip_eot_and_unknown_words():
    tok = WordTokenizer(vocabulary(), 12)
    ids = tok.encode("A Face, with GLASSES!")
    assert ids[0] == tok.SOT and ids[-1] == tok.eot
    assert tok.decode(ids) == "a face with glasses"
    assert tok.eot == tok.vocab_size - 1 == len(vocabulary()) + 3
    assert tok.eot > max(tok.encode(" ".join(vocabulary()[:9]))[:-1])
    # Unknown words are reported, encode as <unk>, and never crash.
    assert tok.unknown_words("face with a moustache and a hat") == ["moustache", "hat"]
    assert tok.encode("face moustache")[2] == tok.UNK
    t = tok(["face", "face with glasses"])
    assert t.shape == (2, 12) and t.dtype == torch.long
    assert t[0, 3:].eq(0).all() and int(t[1].argmax()) == 4  # argmax pooling lands on <eot>
    # Too long: truncated, <eot> kept last.
    long = tok.encode(" ".join(["face"] * 40))
    assert len(long) == 12 and long[-1] == tok.eot
    again = WordTokenizer.from_dict(tok.to_dict())
    assert again.words == tok.words and again.encode("smiling face") == tok.encode("smiling face")
    with pytest.raises(ValueError, match="unknown keys"):
        WordTokenizer.from_dict({**tok.to_dict(), "lower": True})


def test_encode_shapes_norms_and_rebuild():
    torch.manual_seed(0)
    clip = build_clip(TINY, 32, world_tokenizer(TINY.context_length)).eval()
    img = torch.rand(3, 3, 32, 32) * 2 - 1
    e = clip.encode_image(img)
    assert e.shape == (3, 32)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    # Other sizes are resized (antialiased) to the model's image size.
    assert clip.encode_image(torch.rand(2, 3, 64, 64) * 2 - 1).shape == (2, 32)
    t = clip.encode_text(["face with glasses", "smiling face"])
    assert t.shape == (2, 32)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2))
    assert float(clip.logit_scale.detach()) == pytest.approx(1 / 0.07, rel=1e-4)
    with pytest.raises(ValueError, match="empty text"):
        clip.encode_text(["face", "   "])
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        clip.encode_image(torch.zeros(3, 32, 32))
    # A plain state dict without shared storage rebuilds the same model from the config.
    sd = clip.state_dict()
    assert len({v.untyped_storage().data_ptr() for v in sd.values()}) == len(sd)
    other = build_clip(TINY, 32, world_tokenizer(TINY.context_length))
    other.load_state_dict(sd)
    other.eval()
    torch.testing.assert_close(other.encode_image(img), e)
    with pytest.raises(ValueError, match="vocab_size"):
        build_clip(ClipConfig.from_dict({**TINY.to_dict(), "vocab_size": 16}), 32, world_tokenizer(TINY.context_length))


def test_config_from_dict():
    cfg = ClipTrainConfig.from_dict({"model": TINY.to_dict(), "steps": 3, "fine_attrs": ["smile"]})
    assert cfg.model == TINY and cfg.fine_attrs == ("smile",)
    assert ClipTrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        ClipTrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="unknown keys"):
        ClipTrainConfig.from_dict({"model": {"width": 3}})
    with pytest.raises(ValueError, match="multiple of group_size"):
        ClipTrainConfig.from_dict({"batch_size": 30, "group_size": 4})


def test_multi_positive_loss_is_clip_loss_with_one_positive_and_counts_duplicates():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    ours = multi_positive_loss(img, txt, torch.eye(6, dtype=torch.bool), scale)
    torch.testing.assert_close(ours, ClipLoss()(img, txt, scale))
    # Captions 0 and 1 are both true of images 0 and 1 (say the same faces with synonyms or
    # other templates). Caption 0 sitting on image 1 and caption 1 on image 0 is right under
    # the multi-positive target; a one-positive target punishes it. (Textually identical
    # captions get identical embeddings, where both targets give the same loss.)
    txt2 = txt.clone()
    txt2[0], txt2[1] = img[1], img[0]
    pos = torch.eye(6, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True
    multi = multi_positive_loss(img, txt2, pos, scale)
    assert multi < multi_positive_loss(img, txt2, torch.eye(6, dtype=torch.bool), scale) - 0.5
    # And it is exactly the mean cross-entropy against uniform targets over the positives.
    lsm = torch.log_softmax(scale * txt2 @ img.t(), 1)
    lsm_t = torch.log_softmax(scale * img @ txt2.t(), 1)
    t2i = torch.stack([-(lsm[0, 0] + lsm[0, 1]) / 2, -(lsm[1, 0] + lsm[1, 1]) / 2, *[-lsm[i, i] for i in range(2, 6)]])
    i2t = torch.stack(
        [-(lsm_t[0, 0] + lsm_t[0, 1]) / 2, -(lsm_t[1, 0] + lsm_t[1, 1]) / 2, *[-lsm_t[i, i] for i in range(2, 6)]]
    )
    torch.testing.assert_close(multi, (t2i.mean() + i2t.mean()) / 2)


def test_groups_share_all_but_the_fine_attributes():
    fine = ("smile", "beard")
    p = group_params(50, 4, fine, np.random.default_rng(0))
    a = p.attrs.reshape(50, 4, -1)
    coarse = [j for j, n in enumerate(ATTRIBUTE_NAMES) if n not in fine]
    assert (a[:, :, coarse] == a[:, :1, coarse]).all()
    assert (p.ident.reshape(50, 4, -1) == p.ident.reshape(50, 4, -1)[:, :1]).all()
    j = ATTRIBUTE_NAMES.index("smile")
    assert (a[:, :, j] != a[:, :1, j]).any()


def _fake_render(params, size):
    # Colour from three attributes: enough signal for a tiny model, no renderer needed.
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(8, 3))
    img = np.zeros((len(params), size, size, 3), np.uint8)
    a = params.attrs
    img[:, : size // 2] = base[a[:, 0]][:, None, None]
    img[:, size // 2 :] = base[4 + a[:, 5]][:, None, None]
    img[:, :, : size // 4] = (a[:, 3] * 255)[:, None, None, None]
    return img


def test_training_reduces_the_loss_and_is_seeded():
    cfg = ClipTrainConfig(model=TINY, steps=30, batch_size=16, pool_groups=32, lr=3e-3, p_full=0.5)
    clip, stats = train_clip(cfg, 32, seed=3, render_fn=_fake_render)
    assert not clip.training
    assert stats["loss_last"] < stats["loss_first"] - 0.2, stats
    again, _ = train_clip(
        ClipTrainConfig(model=TINY, steps=2, batch_size=8, pool_groups=4), 32, seed=5, render_fn=_fake_render
    )
    again2, _ = train_clip(
        ClipTrainConfig(model=TINY, steps=2, batch_size=8, pool_groups=4), 32, seed=5, render_fn=_fake_render
    )
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, again2.state_dict()[k])
    acc = clip_zeroshot(clip, 32, 0, 32, render_fn=_fake_render)
    assert set(acc) == set(ATTRIBUTE_NAMES) and all(0 <= v <= 1 for v in acc.values())
    e = text_embedding(clip, "face with glasses", ["{}", "a photo of a {}"])
    assert e.shape == (32,) and float(e.norm()) == pytest.approx(1.0, abs=1e-5)
