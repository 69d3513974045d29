"""torchrun: sharded runs, resume after a crashed rank, DDP training, sharded fs3, merged metrics.

The multi-process tests launch ``python -m torch.distributed.run --standalone --nproc_per_node 2``
(gloo on CPU, one thread per rank) and compare with the same work done in one process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import safetensors.torch
import torch

from deltabench import distributed as dist
from deltabench.cli import main
from deltabench.runner import (
    FAIL_ENV,
    RunConfig,
    done_units,
    merge_results,
    shard_files,
)

pytestmark = pytest.mark.slow  # torchrun subprocesses

OPTS = json.dumps({"deltaedit": {"config": {"n_generated": 64, "n_inverted": 16, "steps": 20, "batch": 16}}})
BASE = [
    "run",
    "--methods",
    "deltaedit",
    "--world",
    "synthfaces-micro",
    "--images",
    "6",
    "--limit",
    "4",
    "--sweep",
    "1,2",
    "--batch",
    "3",
    "--options",
    OPTS,
]
TIMING = ("ms_per_edit", "fit_seconds", "peak_mb")  # measurements, never reproducible


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _torchrun(args, cache, env=None, timeout=120):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {
        **{k: v for k, v in os.environ.items() if k != FAIL_ENV},
        "DELTABENCH_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "DELTABENCH_QUIET": "1",
        **(env or {}),
    }
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


# -- single process: the helpers are no-ops, the merge is exact ---------------------------------


def test_helpers_in_one_process():
    assert not dist.is_distributed() and dist.rank() == 0 and dist.world_size() == 1 and dist.is_main()
    assert dist.shard(list(range(7)), r=1, n=3) == [1, 4]
    assert dist.shard(list(range(7))) == list(range(7))
    assert dist.chunk_ranges(10, 4, r=0, n=2) == [(0, 4), (8, 10)]
    assert dist.chunk_ranges(10, 4, r=1, n=2) == [(4, 8)]
    x = torch.arange(10.0)
    assert torch.equal(dist.map_chunks(lambda a, b: x[a:b] * 2, 10, 3), x * 2)
    assert dist.on_rank0(lambda v: v + 1, 1) == 2 and dist.broadcast_object("a") == "a"
    assert dist.all_gather_object(3) == [3]
    assert dist.backend_for("cpu") == "gloo" and dist.backend_for("cuda:0") == "nccl"
    with dist.rank0_first():
        pass
    assert dist.init_from_env() is False  # no torchrun environment here


def test_init_without_torchrun_env_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for k in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(ValueError, match="torchrun --nproc_per_node 2"):
        dist.init_from_env()


def _write(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def test_merge_results_orders_dedups_and_removes_shards(tmp_path):
    cfg = RunConfig(methods=("b", "a"), sweep=(1.0, 0.5), images=2)
    h = ["method", "prompt_index", "strength_scale", "image_index", "psnr"]
    _write(tmp_path / "results.csv", h, [("a", 0, 1.0, 0, 1), ("a", 0, 1.0, 1, 2)])
    _write(tmp_path / "results.rank1.csv", h, [("b", 0, 0.5, 1, 3), ("b", 0, 0.5, 0, 4), ("a", 0, 1.0, 1, 9)])
    _write(tmp_path / "results.rank0.csv", h, [("b", 1, 1.0, 0, 5), ("b", 0, 1.0, 0, 6), ("b", 0, 1.0, 1, 7)])
    (tmp_path / "results.rank0.csv").open("a").write("b,1,1.0,1,")  # a torn last line (a kill)
    assert [p.name for p in shard_files(tmp_path)] == ["results.rank0.csv", "results.rank1.csv"]
    # (b, 1, 1.0) has one of its two rows: not done.
    assert done_units(tmp_path, 2) == {"a|0|1.0", "b|0|0.5", "b|0|1.0"}
    assert merge_results(tmp_path, cfg) == 7
    rows = _rows(tmp_path / "results.csv")
    # Methods in run order (b before a), then prompts, then strengths in sweep order, then images;
    # the row written last for a key wins.
    assert [(r["method"], r["prompt_index"], r["strength_scale"], r["image_index"], r["psnr"]) for r in rows] == [
        ("b", "0", "1.0", "0", "6"),
        ("b", "0", "1.0", "1", "7"),
        ("b", "0", "0.5", "0", "4"),
        ("b", "0", "0.5", "1", "3"),
        ("b", "1", "1.0", "0", "5"),
        ("a", "0", "1.0", "0", "1"),
        ("a", "0", "1.0", "1", "9"),
    ]
    assert shard_files(tmp_path) == []
    before = (tmp_path / "results.csv").read_bytes()
    assert merge_results(tmp_path, cfg) == 7 and (tmp_path / "results.csv").read_bytes() == before


# -- two ranks ------------------------------------------------------------------------------------


def test_torchrun_run_matches_one_process_and_a_crashed_rank_resumes(cache, tmp_path):
    work = tmp_path / "work"  # one method cache: the mapper trained by the first run is reused
    ref, two, crash = tmp_path / "ref", tmp_path / "two", tmp_path / "crash"
    assert main([*BASE, "--out", str(ref), "--work-dir", str(work)]) == 0

    r = _torchrun(["-m", "deltabench", *BASE, "--out", str(two), "--work-dir", str(work)], cache)
    assert r.returncode == 0, r.stderr[-3000:]
    assert shard_files(two) == []
    # Every per-row number identical, rows in the same order, each once; the summary's
    # merged FID/KID and means identical.
    assert _strip(_rows(two / "results.csv")) == _strip(_rows(ref / "results.csv"))
    assert _strip(_rows(two / "summary.csv")) == _strip(_rows(ref / "summary.csv"))
    assert sorted(p.name for p in (two / "units").glob("*.pt")) == sorted(p.name for p in (ref / "units").glob("*.pt"))
    assert (two / "reports" / "table.md").is_file()

    # Rank 1 dies after its first unit; torchrun stops rank 0 (mid-unit or at the last barrier).
    r = _torchrun(
        ["-m", "deltabench", *BASE, "--out", str(crash), "--work-dir", str(work)], cache, env={FAIL_ENV: "1:1"}
    )
    assert r.returncode != 0
    assert not (crash / "summary.csv").exists()
    shards = shard_files(crash)
    assert [p.name for p in shards][-1] == "results.rank1.csv"
    assert len(_rows(shards[-1])) == 4  # one unit: 4 images
    finished = {(x["method"], x["prompt_index"], x["strength_scale"]) for p in shards for x in _rows(p)}
    assert 1 <= len(finished) < 16  # 8 units of deltaedit, 4 of each reference
    mtimes = {p.name: p.stat().st_mtime_ns for p in (crash / "units").glob("*.pt")}

    # The same command again, here in one process (any number of ranks reads every shard).
    assert main([*BASE, "--out", str(crash), "--work-dir", str(work)]) == 0
    assert shard_files(crash) == []
    rows = _rows(crash / "results.csv")
    assert _strip(rows) == _strip(_rows(ref / "results.csv"))  # each row exactly once, same numbers
    for name, t in mtimes.items():  # finished units were not computed again
        m, j, scale = name[:-3].split("__")
        if (m, j, str(float(scale))) in finished:
            assert (crash / "units" / name).stat().st_mtime_ns == t
    assert len(finished) < len(list((crash / "units").glob("*.pt"))) == 16
    assert _strip(_rows(crash / "summary.csv")) == _strip(_rows(ref / "summary.csv"))


SCRIPT = r"""
import json, sys
from pathlib import Path
import safetensors.torch, torch
from deltabench import distributed as dist

torch.set_num_threads(1)
out = Path(sys.argv[1])
assert dist.init_from_env() and dist.world_size() == 2
r = dist.rank()

# Metric states of two ranks merged through Metric.merge: contiguous halves of the data.
from deltabench.metrics.fid import FrechetDistance, KernelDistance
g = torch.Generator().manual_seed(0)
real, fake = torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g) + 0.5
fid, kid = FrechetDistance(None, "x", feature_dim=4), KernelDistance(None, "x", 10, 5, 0)
for m in (fid, kid):
    m.update(real=real[20 * r : 20 * (r + 1)], fake=fake[20 * r : 20 * (r + 1)])
    dist.merge_metric(m)
chunks = dist.map_chunks(lambda a, b: torch.arange(a, b), 11, 3)
try:
    dist.on_rank0(lambda: (_ for _ in ()).throw(ValueError("rank 0 failed")))
    raised = False
except ValueError as e:
    raised = str(e) == "rank 0 failed"
# What rank 0 runs alone acts as one process: a collective inside it must not wait for rank 1.
solo = dist.on_rank0(lambda: (dist.barrier(), dist.world_size(), dist.shard([0, 1, 2]))[1:])
res = {"fid": fid.compute(), "kid": kid.compute(), "chunks": chunks.tolist(), "raised": raised,
       "gathered": dist.all_gather_object(r), "mine": dist.chunk_ranges(11, 3), "solo": solo}

# DDP DeltaMapper training, sharded fs3: rank 0 writes the files.
from baselines.gd import FS3Config, fit_fs3
from deltabench.domain import load_domain
from deltaedit.train import DeltaEditConfig, train_deltamapper
domain = load_domain("synthfaces-micro")
cfg = DeltaEditConfig(n_generated=64, n_inverted=16, steps=20, batch=16)
_, info = train_deltamapper(domain, cfg, out / "de", seed=0, pool_dir=out / "pool")
fit_fs3(domain, out / "gd", FS3Config(n_images=2, n_std=200, max_batch=8))
res["history"] = info["history"]
(out / f"rank{r}.json").write_text(json.dumps(res))
dist.shutdown()
"""


def test_ddp_training_sharded_fs3_and_merged_metrics_match_one_process(cache, micro_world, tmp_path):
    from baselines.gd import FS3Config, compute_fs3
    from deltabench.domain import SynthfacesDomain
    from deltabench.metrics.fid import FrechetDistance, KernelDistance
    from deltaedit.train import DeltaEditConfig, train_deltamapper

    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    r = _torchrun([str(script), str(tmp_path)], cache)
    assert r.returncode == 0, r.stderr[-3000:]
    res = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(40, 4, generator=g), torch.randn(40, 4, generator=g) + 0.5
    fid, kid = FrechetDistance(None, "x", feature_dim=4), KernelDistance(None, "x", 10, 5, 0)
    for m in (fid, kid):
        m.update(real=real, fake=fake)
    for x in res:
        assert x["fid"] == pytest.approx(fid.compute(), rel=1e-9) and x["fid"] > 0.1
        assert x["kid"] == pytest.approx(kid.compute(), rel=1e-9, abs=1e-12)
        assert x["chunks"] == list(range(11)) and x["raised"] and x["gathered"] == [0, 1]
        assert x["solo"] == [1, [0, 1, 2]]
    assert res[0]["mine"] == [[0, 3], [6, 9]] and res[1]["mine"] == [[3, 6], [9, 11]]

    domain = SynthfacesDomain(micro_world)
    cfg = DeltaEditConfig(n_generated=64, n_inverted=16, steps=20, batch=16)
    _, info = train_deltamapper(domain, cfg, tmp_path / "de1", seed=0, pool_dir=tmp_path / "pool1")
    p1, p2 = (
        safetensors.torch.load_file(str(next(d.glob("pool-*.safetensors"))))
        for d in (tmp_path / "pool1", tmp_path / "pool")
    )
    assert all(torch.equal(p1[k], p2[k]) for k in p1)  # rank 0 built the same pool
    # DDP: the same global-batch steps, up to float rounding of the gradient all-reduce.
    w1 = safetensors.torch.load_file(str(tmp_path / "de1" / "mapper.safetensors"))
    w2 = safetensors.torch.load_file(str(tmp_path / "de" / "mapper.safetensors"))
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-3)
    init = DeltaEditConfig(n_generated=64, n_inverted=16, steps=1, batch=16)
    _, info0 = train_deltamapper(domain, init, tmp_path / "de0", seed=0, pool_dir=tmp_path / "pool1")
    assert info0["history"][-1][1] > info["history"][-1][1] + 0.1  # 20 steps moved the loss
    for a, b in zip(info["history"], res[0]["history"]):
        assert a[0] == b[0] and a[1:] == pytest.approx(b[1:], rel=1e-5)
    assert json.loads((tmp_path / "de" / "train.json").read_text())["world_size"] == 2

    # fs3 over channel chunks split across ranks: bitwise the single-process matrix.
    cfg3 = FS3Config(n_images=2, n_std=200, max_batch=8)
    fs3, std, _ = compute_fs3(domain, cfg3)
    got = safetensors.torch.load_file(str(tmp_path / "gd" / "fs3.safetensors"))
    assert torch.equal(got["fs3"], fs3.cpu()) and torch.equal(got["std"], std.cpu())
    assert json.loads((tmp_path / "gd" / "fs3.json").read_text())["ranks"] == 2
