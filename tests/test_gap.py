"""``deltabench gap``: the gap numbers on constructed data with known answers, and one run."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from deltabench.gap import (
    GapConfig,
    add_parser,
    analyse,
    centroid_distance,
    format_table,
    linear_probe,
    modality_probe,
    paired_cosine,
    retrieval_recall,
    run_gap,
    unpaired_cosine,
)
from deltabench.gap.data import random_pairs, world_captions
from deltabench.gap.metrics import unit_rows


def _unit(n, d, seed=0):
    return unit_rows(np.random.default_rng(seed).standard_normal((n, d)))


def _shifted_on_sphere(n=300, d=16, theta=0.4, seed=0):
    """Unit image/text rows that differ by one constant vector: ``t_i = i_i + s``."""
    u = _unit(n, d, seed)
    img = np.concatenate([np.cos(theta) * u, np.full((n, 1), np.sin(theta))], 1)
    txt = np.concatenate([np.cos(theta) * u, np.full((n, 1), -np.sin(theta))], 1)
    return img, txt, 2 * np.sin(theta)


def test_identical_modalities_have_no_gap():
    x = _unit(200, 16)
    assert centroid_distance(x, x) == 0.0
    assert paired_cosine(x, x) == pytest.approx(1.0)
    r = retrieval_recall(x, x, ks=(1, 5))
    assert r == {"i2t@1": 1.0, "t2i@1": 1.0, "i2t@5": 1.0, "t2i@5": 1.0}
    # Each held-out vector appears with both labels: exactly chance, whatever the MLP learnt.
    assert modality_probe(x, x.copy(), seed=0) == 0.5
    assert modality_probe(x, x.copy(), seed=0, sign_invariant=True) == 0.5


def test_constant_shift_is_a_raw_gap_and_no_delta_gap():
    img, txt, shift = _shifted_on_sphere()
    assert np.allclose(np.linalg.norm(img, axis=1), 1) and np.allclose(np.linalg.norm(txt, axis=1), 1)
    assert centroid_distance(img, txt) == pytest.approx(shift, abs=1e-12)
    # Not on the sphere: any constant shift reads back as its norm.
    x = np.random.default_rng(1).standard_normal((50, 8))
    s = np.arange(8.0)
    assert centroid_distance(x, x + s) == pytest.approx(np.linalg.norm(s))
    res = analyse(img, txt, GapConfig(pairs=len(img), figure=False))
    m = res["metrics"]
    assert m["raw"]["centroid_distance"] == pytest.approx(shift)
    for space in ("delta", "delta_unit"):
        assert m[space]["centroid_distance"] == pytest.approx(0.0, abs=1e-12)
        assert m[space]["paired_cosine"] == pytest.approx(1.0)
        assert m[space]["recall_i2t@1"] == 1.0 and m[space]["recall_t2i@1"] == 1.0
        assert m[space]["probe_mlp"] == 0.5  # identical deltas: indistinguishable
    # The shift is the only difference, so a probe finds it in raw space.
    assert m["raw"]["probe_mlp"] > 0.95 and m["raw"]["probe_linear"] == 1.0


def test_cosines_against_brute_force_and_known_values():
    basis = np.eye(6)
    assert paired_cosine(basis, basis) == pytest.approx(1.0)
    assert unpaired_cosine(basis, basis) == pytest.approx(0.0)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 5)) * 3.0  # scale must not matter
    c = unit_rows(x) @ unit_rows(y).T
    off = c[~np.eye(40, dtype=bool)]
    assert paired_cosine(x, y) == pytest.approx(np.mean(np.diag(c)))
    assert unpaired_cosine(x, y) == pytest.approx(off.mean())


def test_retrieval_counts_swaps_and_ties():
    x = np.eye(10)
    y = x.copy()
    y[[0, 1]] = y[[1, 0]]  # texts 0 and 1 swapped: both of their images miss at 1, hit at 2
    r = retrieval_recall(x, y, ks=(1, 2))
    assert r["i2t@1"] == pytest.approx(0.8) and r["t2i@1"] == pytest.approx(0.8)
    assert r["i2t@2"] == 1.0
    # Two identical captions: the image ranks both first; a tie counts as a hit.
    y = x.copy()
    y[1] = y[0]
    x2 = x.copy()
    x2[1] = x2[0]
    assert retrieval_recall(x2, y, ks=(1,))["i2t@1"] == 1.0


def test_probe_sees_separable_deltas_that_a_linear_probe_misses():
    # Symmetric around zero like random-pair deltas, but living in different subspaces.
    rng = np.random.default_rng(0)
    n, d = 400, 16
    x, y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    x[:, : d // 2] *= 0.1
    y[:, d // 2 :] *= 0.1
    assert modality_probe(x, y, seed=0, sign_invariant=True) > 0.95
    assert 0.35 < linear_probe(x, y, seed=0) < 0.65


def test_probe_is_sign_invariant():
    # Text = -image: a linear probe separates them by the mean, but the sign is not a
    # property of a modality (a delta and its negation are the same pair read backwards).
    x = _unit(300, 12, seed=2) + 0.5
    assert linear_probe(x, -x, seed=0) > 0.95
    assert modality_probe(x, -x, seed=0) > 0.95  # raw protocol: the sign is information
    assert modality_probe(x, -x, seed=0, sign_invariant=True) == 0.5
    # Flipping the sign of random rows changes nothing that matters to the probe.
    rng = np.random.default_rng(1)
    y = _unit(300, 12, seed=3) * np.array([3.0] * 6 + [0.2] * 6)
    flip = np.where(rng.random((300, 1)) < 0.5, -1.0, 1.0)
    a = modality_probe(x, y, seed=0, sign_invariant=True)
    b = modality_probe(x * flip, y * flip[::-1], seed=0, sign_invariant=True)
    assert a > 0.9 and b > 0.9 and abs(a - b) < 0.05


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"same shape.*\(5, 4\).*\(6, 4\)"):
        paired_cosine(np.ones((5, 4)), np.ones((6, 4)))
    with pytest.raises(ValueError, match="NaN"):
        centroid_distance(np.full((3, 2), np.nan), np.ones((3, 2)))
    with pytest.raises(ValueError, match="unknown keys"):
        GapConfig.from_dict({"pairz": 10})
    with pytest.raises(ValueError, match="captions must be one of"):
        GapConfig(captions="short")
    with pytest.raises(ValueError, match="pairs must be >= 10"):
        GapConfig(pairs=3)
    cfg = GapConfig.from_dict({"pairs": 50, "probe_hidden": [32]})
    assert cfg.probe_hidden == (32,) and GapConfig.from_dict(cfg.to_dict()) == cfg


def test_random_pairs_and_captions_are_deterministic():
    a, b = random_pairs(7, 500, seed=4)
    assert np.all(a != b) and a.min() >= 0 and b.max() < 7
    a2, b2 = random_pairs(7, 500, seed=4)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    assert set(zip(a.tolist(), b.tolist())) == {(i, j) for i in range(7) for j in range(7) if i != j}
    from deltabench.world.attributes import sample_params

    p = sample_params(20, np.random.default_rng(0))
    full = world_captions(p, seed=1, mode="full")
    assert full == world_captions(p, seed=1, mode="full") and full != world_captions(p, seed=2, mode="full")
    assert all("face" in c and "eyes" in c and "hair" in c for c in full)  # names every attribute
    with pytest.raises(ValueError, match="captions must be one of"):
        world_captions(p, seed=1, mode="short")


def test_run_on_micro_world_writes_files(micro_world, micro_root, tmp_path, monkeypatch, capsys):
    cfg = GapConfig(pairs=120, seed=1, tsne_max_iter=250, probe_max_iter=50)
    rec = run_gap(micro_world, cfg, tmp_path / "gap")
    for f in ("gap.json", "gap.md", "tsne.png", "tsne.pdf"):
        assert (tmp_path / "gap" / f).stat().st_size > 0, f
    saved = json.loads((tmp_path / "gap" / "gap.json").read_text())
    assert saved["world"] == "synthfaces-micro" and saved["world_hash"] == micro_world.cfg.hash
    assert saved["n_pairs"] == 120 and saved["seed"] == 1 and saved["config_hash"] == cfg.hash
    assert {"torch", "scikit-learn"} <= set(saved["versions"])
    m = saved["metrics"]
    assert set(m) == {"raw", "delta", "delta_unit"}
    # CLIP embeddings are unit vectors: the raw gap is in [0, 2], every probe in [0, 1].
    assert 0.0 < m["raw"]["centroid_distance"] <= 2.0
    assert all(0.0 <= m[s][k] <= 1.0 for s in m for k in m[s] if k.startswith(("recall", "probe")))
    assert m == rec["metrics"]
    assert "| probe, MLP |" in format_table(saved)
    # The same run through the CLI subcommand.
    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "gap",
            "--world",
            "synthfaces-micro",
            "--pairs",
            "60",
            "--out",
            str(tmp_path / "cli"),
            "--tsne-iter",
            "250",
            "--no-figure",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "centroid distance" in out and str(tmp_path / "cli") in out
    assert json.loads((tmp_path / "cli" / "gap.json").read_text())["n_pairs"] == 60
    assert not (tmp_path / "cli" / "tsne.png").exists()
