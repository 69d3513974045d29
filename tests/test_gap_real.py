"""``deltabench gap`` on a real domain: a toy ffhq (random weights in the official formats,
from :mod:`test_real_domains`) and a tiny folder in the MultiModal-CelebA-HQ layout
(``image/N.jpg``, ``text/N.txt`` with one caption a line)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from test_real_domains import _config, weights  # noqa: F401  (weights: the module fixture)

from deltabench.cli import main

N_IMAGES, N_CAPTIONS = 12, 3
COLORS = ("red", "green", "blue", "black")


def _mm_celeba(root, n=N_IMAGES, captions=True, uncaptioned=0):
    """``root/image/0.jpg ..`` (48 px: noise plus a coloured square) and ``root/text/N.txt``."""
    rng = np.random.default_rng(0)
    (root / "image").mkdir(parents=True)
    if captions:
        (root / "text").mkdir()
    rgb = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "black": (10, 10, 10)}
    for i in range(n + uncaptioned):
        c = COLORS[i % len(COLORS)]
        a = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
        a[8 + i % 8 : 32 + i % 8, 8:32] = rgb[c]
        Image.fromarray(a).save(root / "image" / f"{i}.jpg", quality=95)
        if captions and i < n:
            lines = [f"This person has {c} hair.", f"The person is smiling and has {c} hair.", f"She wears a {c} hat."][
                :N_CAPTIONS
            ]
            (root / "text" / f"{i}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def toy_world(weights, tmp_path, monkeypatch):  # noqa: F811
    """The toy ffhq as a domain config JSON, its weights found through $DELTABENCH_WEIGHTS."""
    p = tmp_path / "ffhq-toy.json"
    p.write_text(json.dumps(_config().to_dict()))
    monkeypatch.setenv("DELTABENCH_WEIGHTS", str(weights))
    return str(p)


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deltabench: error:"), err
    for s in needles:
        assert s in err[0], (s, err[0])
    return err[0]


@pytest.mark.slow  # training or a many-file end-to-end check: minutes on 2 cores
def test_gap_cli_on_mm_celeba_layout(toy_world, tmp_path, capsys):
    data = _mm_celeba(tmp_path / "mm-celeba", uncaptioned=1)
    out = tmp_path / "gap"
    rc = main(
        [
            "gap",
            "--world",
            toy_world,
            "--images",
            str(data),
            "--pairs",
            str(N_IMAGES),
            "--out",
            str(out),
            "--tsne-iter",
            "250",
            "--threads",
            "1",
        ]
    )
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "centroid distance" in cap.out and "1 of the 13 images" in cap.err
    for f in ("gap.json", "gap.md", "tsne.png", "tsne.pdf"):
        assert (out / f).stat().st_size > 0, f
    rec = json.loads((out / "gap.json").read_text())
    assert rec["world"] == "ffhq-toy" and rec["n_pairs"] == N_IMAGES and rec["embed_dim"] == 32
    assert rec["config"]["captions"] == "files" and rec["clip_model"] == _config().clip_model
    assert rec["images"]["n_images"] == N_IMAGES + 1 and rec["images"]["n_captioned"] == N_IMAGES
    assert rec["images"]["captions_per_image"] == [N_CAPTIONS, N_CAPTIONS]
    assert rec["images"]["image_dir"] == str(data / "image") and rec["images"]["text_dir"] == str(data / "text")
    assert len(rec["example_captions"]) == 5 and all(any(c in t for c in COLORS) for t in rec["example_captions"])
    m = rec["metrics"]
    assert set(m) == {"raw", "delta", "delta_unit"}
    for space, row in m.items():
        assert all(math.isfinite(v) for v in row.values()), (space, row)
        assert -1 <= row["paired_cosine"] <= 1 and -1 <= row["unpaired_cosine"] <= 1
        assert all(0 <= row[k] <= 1 for k in row if k.startswith(("recall", "probe")))
    assert 0 < m["raw"]["centroid_distance"] <= 2  # unit CLIP embeddings
    assert rec["chance"]["recall_i2t@1"] == pytest.approx(1 / N_IMAGES)
    assert "| probe, MLP |" in (out / "gap.md").read_text()


@pytest.mark.slow  # training or a many-file end-to-end check: minutes on 2 cores
def test_pairs_are_the_domains_clip_embeddings(weights, tmp_path):  # noqa: F811
    """Images are embedded as the real domain embeds its test images; captions are seeded."""
    from deltabench.gap.data import caption_folder, folder_pairs
    from deltabench.gap.run import load_domain_clip
    from deltabench.real.domain import RealDomain

    data = _mm_celeba(tmp_path / "mm", n=4)
    p = tmp_path / "toy.json"
    p.write_text(json.dumps(_config().to_dict()))
    dcfg, clip, _ = load_domain_clip(str(p), weights)
    folder = caption_folder(data / "image")  # the image folder itself: captions in ../text
    assert folder.text_dir == data / "text" and [f.name for f in folder.files] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    pairs, files = folder_pairs(clip, folder, dcfg.resolution, 4, seed=0)
    domain = RealDomain(_config(), weights=weights, images=data / "image")
    want = domain.clip_image(domain.test_images(4, seed=0).images)  # all 4, sorted by name
    assert torch.allclose(torch.from_numpy(pairs.image), want, atol=1e-5)
    assert all(t in folder.captions[i] for i, t in enumerate(pairs.captions))
    again, _ = folder_pairs(clip, folder, dcfg.resolution, 4, seed=0)
    assert again.captions == pairs.captions and np.array_equal(again.text, pairs.text)
    picks = {tuple(folder_pairs(clip, folder, dcfg.resolution, 4, seed=s)[0].captions) for s in range(4)}
    assert len(picks) > 1  # the seed chooses among each image's captions


@pytest.mark.parametrize(
    "over",
    [
        {},
        {
            "name": "lsun-toy",
            "encoder": None,
            "identity": None,
            "identity_loss": None,
            "face_crop": "none",
            "neutral": "cat",
            "test_source": "generated",
            "prompts": [{"source": "cat", "target": "black cat"}],
        },
    ],
)
def test_folder_without_captions_is_one_error_line(over, tmp_path, capsys):
    p = tmp_path / "domain.json"
    p.write_text(json.dumps(_config(**over).to_dict()))
    data = _mm_celeba(tmp_path / "plain", n=4, captions=False)
    rc = main(["gap", "--world", str(p), "--images", str(data), "--pairs", "10", "--out", str(tmp_path / "o")])
    assert rc == 2
    _one_error_line(capsys, "no captions for any of the 4 images", "text/N.txt")
    assert not (tmp_path / "o").exists()


def test_gap_argument_errors(tmp_path, capsys):
    p = tmp_path / "domain.json"
    p.write_text(json.dumps(_config().to_dict()))
    data = _mm_celeba(tmp_path / "mm", n=4)
    cases = [
        (["--world", str(p)], "needs --images DIR"),
        (["--world", str(p), "--images", str(data), "--captions", "mixed"], "--captions applies to synthfaces"),
        (["--world", str(p), "--images", str(data), "--pairs", "20"], "holds 4 captioned images; pass --pairs 4"),
        (["--world", str(p), "--images", str(tmp_path / "nope")], "no such folder"),
        (["--world", "synthfaces-micro", "--images", str(data)], "--images applies to real domains"),
    ]
    for args, needle in cases:
        assert main(["gap", *args, "--out", str(tmp_path / "o")]) == 2, args
        _one_error_line(capsys, needle)
