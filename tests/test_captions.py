import numpy as np
import pytest

from deltabench.models.clip import ClipConfig, WordTokenizer
from deltabench.world.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, FaceParams, sample_params
from deltabench.world.captions import (
    EDIT_PROMPTS,
    HELDOUT_EDIT_PROMPTS,
    attribute_prompts,
    caption,
    captions_with_mentions,
    positive_matrix,
    templates,
    vocabulary,
)


def _tok():
    return WordTokenizer(vocabulary(), 32)


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_caption_word_is_in_the_vocabulary(split):
    tok = _tok()
    rng = np.random.default_rng(0)
    texts = caption(sample_params(3000, rng), rng, split=split)
    unknown = {w for t in texts for w in tok.unknown_words(t)}
    assert not unknown
    # The longest caption still fits the default context with <sot>/<eot>.
    assert max(len(WordTokenizer.split(t)) for t in texts) + 2 <= ClipConfig().context_length


def test_prompts_templates_and_edit_prompts_are_in_the_vocabulary():
    tok = _tok()
    texts = [t.format("face") for s in ("train", "heldout") for t in templates(s)]
    texts += [x for e in EDIT_PROMPTS + HELDOUT_EDIT_PROMPTS for x in (e.source, e.target)]
    for a in ATTRIBUTES:
        for style in ("full", "short"):
            for v, ps in attribute_prompts(a.name, style=style).items():
                assert ps, (a.name, v, style)
                texts += ps
    assert all(tok.unknown_words(t) == [] for t in texts)


def test_heldout_phrasings_never_appear_in_training_captions():
    rng = np.random.default_rng(1)
    p = sample_params(4000, rng)
    train = set(caption(p, rng, "train")) | set(caption(p, rng, "train"))
    held = set(caption(p, rng, "heldout"))
    assert len(held) > 1000 and not (train & held)
    # Held-out edit targets are not training phrasings either (short training phrasings are
    # enumerated by attribute_prompts(style='short'), over every template).
    short_train = {
        t.format(s)
        for a in ATTRIBUTES
        for ps in attribute_prompts(a.name, "short").values()
        for s in ps
        for t in templates("train")
    }
    assert {e.target for e in EDIT_PROMPTS} <= short_train
    assert not ({e.target for e in HELDOUT_EDIT_PROMPTS} & (short_train | train))
    assert not set(templates("train")) & set(templates("heldout"))


def test_edit_prompts_cover_every_attribute_value():
    want = {(a.name, v) for a in ATTRIBUTES for v in a.values}
    assert {(e.attribute, e.value) for e in EDIT_PROMPTS} == want
    assert {(e.attribute, e.value) for e in HELDOUT_EDIT_PROMPTS} == want
    by = {(e.attribute, e.value): e for e in EDIT_PROMPTS}
    assert by["glasses", "glasses"].source == "face" and by["glasses", "glasses"].target == "face with glasses"
    assert by["smile", "smiling"].target == "smiling face"
    assert by["beard", "beard"].target == "face with a beard"
    assert by["hair_color", "blond"].target == "face with blond hair"
    assert by["hair_length", "long"].target == "face with long hair"


def test_captions_say_the_right_values():
    rng = np.random.default_rng(2)
    p = sample_params(2000, rng)
    texts, mentioned = captions_with_mentions(p, rng, "train", p_full=1.0)
    assert mentioned.all()
    beard, glasses = p.get("beard"), p.get("glasses")
    for t, b, g in zip(texts, beard, glasses):
        words = set(WordTokenizer.split(t))
        assert bool(words & {"beard", "bearded"}) == (b == 1), t
        assert bool(words & {"shaven", "beardless"}) == (b == 0), t
        assert ("no" in words) == (g == 0), t
    # Short captions name 0..max_short attributes, and the mentions say which.
    texts, mentioned = captions_with_mentions(p, rng, "train", p_full=0.0, max_short=2)
    assert mentioned.sum(1).max() == 2 and (mentioned.sum(1) == 0).any()
    j = ATTRIBUTE_NAMES.index("hair_color")
    for t, m, a in zip(texts, mentioned, p.attrs):
        if m[j]:
            words = set(WordTokenizer.split(t))
            assert ATTRIBUTES[j].values[a[j]] in words or (a[j] == 2 and "blonde" in words), t


def test_captions_are_seeded():
    p = sample_params(50, np.random.default_rng(3))
    assert caption(p, np.random.default_rng(7)) == caption(p, np.random.default_rng(7))
    assert caption(p, np.random.default_rng(7)) != caption(p, np.random.default_rng(8))


def test_positive_matrix_identical_and_partial_captions():
    attrs = np.zeros((4, len(ATTRIBUTES)), dtype=np.int64)
    attrs[1, ATTRIBUTE_NAMES.index("glasses")] = 1
    attrs[2, ATTRIBUTE_NAMES.index("glasses")] = 1
    attrs[2, ATTRIBUTE_NAMES.index("smile")] = 1
    full = np.ones_like(attrs, dtype=bool)
    # Full captions: faces 0 and 3 are identical -> their captions are positives of each other.
    pos = positive_matrix(attrs, full, attrs)
    np.testing.assert_array_equal(pos, [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])
    # "face with glasses" (only glasses named) is true of faces 1 and 2; "face" of all.
    only = np.zeros_like(full)
    only[1, ATTRIBUTE_NAMES.index("glasses")] = True
    pos = positive_matrix(attrs, only, attrs)
    np.testing.assert_array_equal(pos[1], [0, 1, 1, 0])
    assert pos[0].all() and pos[2].all() and pos[3].all()


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split"):
        caption(
            FaceParams(np.zeros((1, len(ATTRIBUTES)), np.int64), np.zeros((1, 6), np.float32)),
            np.random.default_rng(0),
            split="test",
        )
