"""The summary's FID bootstrap on a real domain, before and after (issue 22), in one process.

    python benchmarks/bench_summary.py --images 2 100 --json reports/bench/summary_fid.json

A real-domain run's summary recomputes FID on every bootstrap resample of its test images from
the 2048-d Inception pool3 features of every (prompt, image) row. Before: ``np.cov`` of the
resampled rows and ``scipy.linalg.sqrtm`` of the 2048 x 2048 product (pytorch-fid's way), 25
resamples above 512-d. After: :func:`deltabench.metrics.fid.frechet_distance_features` on the
distinct rows of each resample (an SVD in the sample space where rows < dimensions; exact), 100
resamples where rows < dimensions. The features are random (the cost does not depend on their
values); ``--prompts`` rows per image as on ffhq (16 prompts). The old path is timed on
``--old-resamples`` resamples and scaled to its 26 statistics (value + 25 resamples), said so in
the output. The difference of the two values on the same resamples is printed too.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deltabench import runner, stats  # noqa: E402
from deltabench.metrics.fid import frechet_distance_features  # noqa: E402


def old_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """The summary before: covariances, then pytorch-fid's sqrtm with its eps retry."""
    mu1, mu2, s1, s2 = x.mean(0), y.mean(0), np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(len(s1)) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = covmean.real
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def measure(images: int, prompts: int, dim: int, old_resamples: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    feats = [(rng.normal(size=(images, dim)), rng.normal(size=(images, dim)) + 0.1) for _ in range(prompts)]
    pick = lambda ix, side: np.concatenate([u[side][ix] for u in feats])  # noqa: E731
    rows = prompts * images
    new_boot = runner.SET_BOOT if dim <= 512 or rows < dim else runner.SET_BOOT_LARGE

    def new_stat(ix):
        distinct, counts = np.unique(ix, return_counts=True)
        w = np.tile(counts, prompts)
        return frechet_distance_features(pick(distinct, 0), pick(distinct, 1), w, w)

    t0 = time.perf_counter()
    value, draws = stats.statistic_draws(new_stat, images, new_boot, seed=0)
    new_s = time.perf_counter() - t0
    resamples = stats.resample_indices(images, 25, seed=0)[:old_resamples]
    t0 = time.perf_counter()
    old_vals = [old_frechet(pick(ix, 0), pick(ix, 1)) for ix in resamples]
    per_stat = (time.perf_counter() - t0) / len(resamples)
    new_same = [new_stat(ix) for ix in resamples]
    return {
        "images": images,
        "prompts": prompts,
        "rows": rows,
        "dim": dim,
        "after": {"resamples": new_boot, "seconds": round(new_s, 3)},
        "before": {
            "resamples": 25,
            "seconds_per_statistic": round(per_stat, 3),
            "seconds_26_statistics": round(per_stat * 26, 1),
            "timed_statistics": len(resamples),
            "extrapolated": len(resamples) < 26,
        },
        "max_rel_diff_same_resamples": float(max(abs(a - b) / abs(a) for a, b in zip(old_vals, new_same))),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[2, 100])
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--old-resamples", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args(argv)
    out = {"cpu": platform.processor() or platform.machine(), "results": []}
    for n in a.images:
        r = measure(n, a.prompts, a.dim, a.old_resamples)
        out["results"].append(r)
        print(json.dumps(r))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
