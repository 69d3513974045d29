"""What methods train on vs what the benchmark scores (issue 14 part 4).

Real folder domains take a training folder (``train_images=DIR``) apart from the test folder:
methods fit on ``domain.train_images`` (DeltaEdit's inverted pool codes, StyleCLIP-LM's training
latents), a training file with a test file's bytes is refused, and both folders' content
hashes enter ``config_hash`` (the run's ``world_hash``). Synthfaces keeps its numbers.
On the toy ``ffhq`` of ``test_real_domains.py`` (random weights, CPU).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from test_real_domains import _config, images_dir, weights  # noqa: F401 - `images_dir`, `weights` are fixtures

from baselines.lm import StyleCLIPMapper
from deltabench.domain import SynthfacesDomain
from deltabench.real.domain import RealDomain
from deltaedit import data as de_data


def _write_images(d, seed: int, n: int, size: int = 48) -> list:
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = d / f"train_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(f)
        out.append(f)
    return out


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("celebahq-train")
    _write_images(d, seed=11, n=5)
    return d


@pytest.fixture(scope="module")
def dom(weights, images_dir, train_dir):  # noqa: F811
    return RealDomain(
        _config(train_images_env="DELTABENCH_TOY_TRAIN_IMAGES"),
        weights=weights,
        images=images_dir,
        train_images=train_dir,
    )


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    """The folders' file hashes are cached under $DELTABENCH_CACHE/image-sha256: a temp one."""
    monkeypatch.setenv("DELTABENCH_CACHE", str(tmp_path_factory.getbasetemp() / "split-cache"))


@pytest.fixture
def folders(dom):
    """Restores the domain's folders after a test that points it elsewhere."""
    saved = dom.images_dir, dom.train_dir
    yield dom
    dom.images_dir, dom.train_dir = saved


def _rows(images: torch.Tensor) -> set[bytes]:
    return {im.contiguous().numpy().tobytes() for im in images.cpu()}


class _Spy:
    """Records every batch of images handed to ``domain.invert``."""

    def __init__(self, domain, monkeypatch):
        self.seen: list[torch.Tensor] = []
        real = domain.invert

        def invert(images, *a, **k):
            self.seen.append(images.detach().cpu().clone())
            return real(images, *a, **k)

        monkeypatch.setattr(domain, "invert", invert)

    @property
    def images(self) -> torch.Tensor:
        return torch.cat(self.seen)


# --- the folders ---------------------------------------------------------------------------


def test_overlapping_training_folder_is_refused(folders, images_dir, tmp_path):  # noqa: F811
    dom = folders
    train = tmp_path / "train"
    _write_images(train, seed=3, n=2)
    shutil.copyfile(images_dir / "00002.png", train / "renamed_copy.png")  # same bytes, another name
    dom.train_dir = train
    for touch in (lambda: dom.config_hash, lambda: dom.describe(), lambda: dom.train_images(1, seed=0)):
        with pytest.raises(
            ValueError,
            match=r"training image .*renamed_copy\.png has the same bytes \(sha256\) as "
            r"test image .*00002\.png.*must not share images.*Remove the shared "
            r"files from the training folder.*DELTABENCH_TOY_TRAIN_IMAGES",
        ):
            touch()
    dom.train_dir = images_dir
    with pytest.raises(ValueError, match=r"the training folder and the test folder are both"):
        dom.config_hash


def test_content_hashes_follow_the_bytes(folders, images_dir, train_dir, tmp_path):  # noqa: F811
    dom = folders
    before = dom.describe()
    assert before["train"]["source"] == before["test"]["source"] == "folder"
    assert before["train"]["n_images"] == 5 and before["test"]["n_images"] == 4
    assert before["train"]["folder"] == str(train_dir.resolve()) and before["test"]["folder"] == str(
        images_dir.resolve()
    )
    assert before["config_hash"] == dom.config_hash and json.loads(json.dumps(before)) == before
    h0, k0 = dom.config_hash, dom.key
    train, test = tmp_path / "train", tmp_path / "test"
    shutil.copytree(train_dir, train)
    shutil.copytree(images_dir, test)
    dom.train_dir, dom.images_dir = train, test
    # the same contents elsewhere: the method caches (key) stay, the run's hash names the folders
    assert dom.key == k0 and dom.config_hash != h0
    h1 = dom.config_hash
    d1 = dom.describe()
    assert d1["train"]["sha256"] == before["train"]["sha256"] and d1["test"]["sha256"] == before["test"]["sha256"]
    # one training file changes (another size, so no mtime tick can hide it): both hashes move
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(train / "train_001.png")
    assert dom.describe()["train"]["sha256"] != d1["train"]["sha256"]
    assert dom.config_hash != h1 and dom.key != k0
    h2, k2 = dom.config_hash, dom.key
    # one test file changes: the run's hash moves, the method caches do not (nothing fits on it)
    Image.fromarray(np.full((40, 40, 3), 7, np.uint8)).save(test / "00001.png")
    assert dom.describe()["test"]["sha256"] != d1["test"]["sha256"]
    assert dom.config_hash != h2 and dom.key == k2
    # a file added or renamed counts too (it changes which image a seed draws)
    (train / "train_004.png").rename(train / "train_zzz.png")
    assert dom.key != k2


def test_file_hashes_are_read_once(folders, train_dir, tmp_path, monkeypatch):
    import deltabench.real.domain as real

    dom = folders
    train = tmp_path / "train"
    shutil.copytree(train_dir, train)
    dom.train_dir = train
    h = dom.config_hash
    dom._file_sha.clear()  # a new process: the hashes come from <cache>/image-sha256/
    calls = []
    digest = real.hashlib.file_digest

    def counted(fh, name):
        calls.append(fh.name)
        return digest(fh, name)

    monkeypatch.setattr(real.hashlib, "file_digest", counted)
    assert dom.config_hash == h and not calls
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(train / "train_002.png")  # another size
    assert dom.config_hash != h and [p.rsplit("/", 1)[-1] for p in calls] == ["train_002.png"]
    dom._file_sha.clear()
    (real._sha_cache_file(str(train.resolve()))).write_text("{not json")  # a torn cache: hashed again
    calls.clear()
    h2 = dom.config_hash
    assert len(calls) == 5 and dom.config_hash == h2


def test_folder_domain_without_training_folder_never_trains_on_test_images(folders, tmp_path, monkeypatch):
    dom = folders
    dom.train_dir = None
    assert dom.describe()["train"] == {"source": "none"}
    msg = (
        r"domain 'ffhq-toy' has no training images, and methods never train on the test images: pass "
        r"train_images=DIR or set \$DELTABENCH_TOY_TRAIN_IMAGES.*n_inverted\": 0"
    )
    with pytest.raises(ValueError, match=msg):
        dom.train_images(2, seed=0)
    with pytest.raises(ValueError, match=msg):  # before any generated code is made
        de_data.build_pool(dom, n_generated=2, n_inverted=2, seed=0, batch=2)
    with pytest.raises(ValueError, match=msg):
        StyleCLIPMapper(dom, tmp_path / "lm", config={"n_train": 2}).training_latents()
    spy = _Spy(dom, monkeypatch)
    pool = de_data.build_pool(dom, n_generated=3, n_inverted=0, seed=0, batch=2)  # generated codes only
    assert len(pool) == 3 and not spy.seen


def test_training_draws_from_the_train_folder_only(dom, monkeypatch, tmp_path):
    train_all, test_all = _rows(dom.train_images(5, seed=0).images), _rows(dom.test_images(4, seed=0).images)
    assert not train_all & test_all
    spy = _Spy(dom, monkeypatch)
    pool = de_data.build_pool(dom, n_generated=2, n_inverted=3, seed=0, batch=2)
    assert len(pool) == 5 and pool.n_generated == 2
    seen = _rows(spy.images)
    assert spy.images.shape[0] >= 3 and seen <= train_all and not seen & test_all
    spy.seen.clear()
    lm = StyleCLIPMapper(dom, tmp_path / "lm", config={"n_train": 4})
    w = lm.training_latents()
    assert w.shape[0] == 4
    seen = _rows(spy.images)
    assert len(seen) == 4 and seen <= train_all and not seen & test_all
    # the latents are those of the training images the config's seed draws
    drawn = dom.train_images(4, lm.cfg.train_seed + lm.seed).images
    assert _rows(drawn) == seen and torch.allclose(w, RealDomain.invert(dom, drawn), atol=1e-6)


def test_generated_domain_trains_on_samples_of_other_seeds(weights):  # noqa: F811
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
            test_source="generated",
        ),
        weights=weights,
    )
    src = d.describe()
    assert src["train"]["source"] == src["test"]["source"] == "generated"
    for seed in (0, 1, 7):
        train = d.train_images(3, seed)
        tr, te = train.images, d.test_images(3, seed).images
        assert not _rows(tr) & _rows(te)
        assert torch.allclose(d.generator.synthesis(train.invert(d)), tr, atol=1e-6)  # their own latents: exact
    # the DeltaEdit pool at seed 0 drew its "inverted" codes from test seed 1 before the split
    assert not _rows(d.train_images(4, seed=1).images) & _rows(d.test_images(2, seed=1).images)
    assert torch.equal(d.train_images(2, 5).images, d.train_images(2, 5).images)


# --- synthfaces: the same numbers as before the split -----------------------------------


@pytest.fixture(scope="module")
def synth(micro_world):
    return SynthfacesDomain(micro_world)


def test_synthfaces_training_data_is_unchanged(synth, tmp_path):
    for n, seed in ((3, 90_001), (5, 1), (2, 104_730)):
        a, b = synth.train_images(n, seed), synth.test_images(n, seed)
        assert torch.equal(a.images, b.images) and np.array_equal(a.params.attrs, b.params.attrs)
    # StyleCLIP-LM: what training_latents inverted before (test_images at train_seed + seed)
    lm = StyleCLIPMapper(synth, tmp_path / "lm", seed=2, config={"n_train": 6})
    old = synth.invert(synth.test_images(6, lm.cfg.train_seed + 2).images)
    assert torch.equal(lm.training_latents(), old)
    # DeltaEdit's pool: the old build_pool, inline
    n_gen, n_inv, seed, batch = 3, 5, 1, 2
    s_parts, c_parts = [], []
    for i in range(0, n_gen, batch):
        s, c = de_data.encode_wplus(synth, synth.sample_w_plus(min(batch, n_gen - i), seed=seed * 7919 + i), batch)
        s_parts.append(s)
        c_parts.append(c)
    for i in range(0, n_inv, batch):
        real = synth.test_images(min(batch, n_inv - i), seed=seed * 104729 + 1 + i).images
        s, c = de_data.encode_wplus(synth, synth.invert(real), batch)
        s_parts.append(s)
        c_parts.append(c)
    pool = de_data.build_pool(synth, n_gen, n_inv, seed, batch=batch)
    assert torch.equal(pool.s, torch.cat(s_parts)) and torch.equal(pool.clip, torch.cat(c_parts))
    d = synth.describe()
    assert d["config_hash"] == synth.config_hash and d["train"]["source"] == d["test"]["source"] == "renderer"
