"""benchmarks/bench_official.py and the fs3 channel slice it times (random synthfaces-64 shapes)."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from baselines.gd import FS3Config, compute_fs3, compute_fs3_naive  # noqa: E402

pytestmark = pytest.mark.slow  # the official loops at the 1024 px layout


@pytest.fixture(scope="module")
def domain():
    from bench_styleclip import RandomDomain

    return RandomDomain("synthfaces-64", "cpu")


def test_fs3_channel_slice_matches_the_naive_loop_on_those_channels(domain):
    # (the full batched fs3 equals the full naive loop: tests/test_baselines.py)
    cfg = FS3Config(n_images=2, n_std=200, max_batch=8, torgb=False)
    chans = [900, 3, 0, 130, 131, 3]  # unsorted, repeated, across layers; 2 channels per pass
    part, std, info = compute_fs3(domain, cfg, channels=chans)
    idx = sorted(set(chans))
    assert part.shape[0] == info["channels"] == len(idx) and std.shape[0] == 928
    ref = compute_fs3_naive(domain, cfg, std, channels=chans)
    assert torch.allclose(part, ref, atol=2e-4), (part - ref).abs().max()
    one, _, _ = compute_fs3(domain, cfg, std=std, channels=[131])
    assert torch.allclose(one[0], part[idx.index(131)], atol=1e-5)
    with pytest.raises(ValueError, match="fs3 channels"):
        compute_fs3(domain, cfg, std=std, channels=[10_000])


def test_bench_official_runs_and_writes_json(tmp_path):
    import bench_official

    out = tmp_path / "b.json"
    assert (
        bench_official.main(
            [
                "--arch",
                "synthfaces-64",
                "--fs3-layers",
                "conv1,convs.5",
                "--fs3-channels",
                "2",
                "--n-std",
                "100",
                "--deltaedit-batches",
                "1,4",
                "--deltaedit-budget",
                "10",
                "--op-steps",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["fs3"]["channels"] == 4 and r["fs3"]["max_abs_diff"] < 2e-4
    assert r["fs3"]["extrapolated_full"]["channels"] == r["s_channels_fs3"]
    assert r["deltaedit"]["batch1"]["edits_per_second"] > 0 and r["deltaedit"]["batch_large"]["batch"] == 4
    assert len(r["op"]["step_seconds"]) == 2 and r["op"]["seconds_per_edit_300_steps"] > 0
    assert r["torch_threads"] >= 1 and r["cpu"]
