"""Time DeltaEdit: training-pool generation, mapper training, editing.

    python benchmarks/bench_deltaedit.py --world synthfaces [--device cuda] [--threads 2]

Prints samples/s for the pool (generator + CLIP image encoder), steps/s for DeltaMapper
training at batch 64, and edits/s and ms per edit at batch 1 and 64 (mapper + synthesis).
A benchmark, not a test: run it on an idle machine and report the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from deltabench.domain import load_domain
from deltaedit.data import build_pool, pair_batch
from deltaedit.mapper import DeltaMapper
from deltaedit.method import DeltaEdit
from deltaedit.train import DeltaEditConfig, delta_loss


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default="synthfaces")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--pool", type=int, default=1024, help="samples generated for the pool timing")
    ap.add_argument("--steps", type=int, default=200, help="training steps timed")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    domain = load_domain(args.world, device=device)
    out = {
        "world": args.world,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name()

    torgb = DeltaEditConfig().resolve(domain).torgb  # the domain's layer set (synthfaces: with toRGB)
    out["torgb"] = torgb
    t = time.perf_counter()
    pool = build_pool(domain, args.pool, 0, seed=0, torgb=torgb)
    _sync(device)
    out["pool_samples_per_s"] = args.pool / (time.perf_counter() - t)

    pool.s, pool.clip = pool.s.to(device), pool.clip.to(device)
    mapper = DeltaMapper(domain.generator.slayout, clip_dim=pool.clip.shape[1], torgb=torgb).to(device)
    opt = torch.optim.Adam(mapper.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(0)
    for i in range(args.steps + 10):
        if i == 10:  # warm-up excluded
            _sync(device)
            t = time.perf_counter()
        s1, cond, ds = pair_batch(pool, 64, gen)
        loss = delta_loss(mapper(s1, cond), ds)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    out["train_steps_per_s_batch64"] = args.steps / (time.perf_counter() - t)
    out["mapper_parameters"] = sum(p.numel() for p in mapper.parameters())

    with tempfile.TemporaryDirectory() as tmp:
        m = DeltaEdit(domain, tmp, config=DeltaEditConfig())
        m.mapper = mapper.eval()
        G = domain.generator
        for b in (1, 64):
            w = domain.sample_w_plus(b, seed=1)
            reps = max(3, 256 // b)
            with torch.no_grad():
                G.synthesis_from_styles(m.edit(w, "face", "face with glasses"))  # warm-up, text cached
                _sync(device)
                t = time.perf_counter()
                for _ in range(reps):
                    G.synthesis_from_styles(m.edit(w, "face", "face with glasses"))
                _sync(device)
            dt = (time.perf_counter() - t) / reps
            out[f"ms_per_edit_batch{b}"] = 1000 * dt / b
            out[f"edits_per_s_batch{b}"] = b / dt
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
