"""A run's summary (``summary.csv``) from what the run saved: the merged metric states of its
units, its rows, ``fits.json``; no model is loaded (the metric states are rebuilt through the
metric registry, :meth:`deltabench.metrics.suite.MetricSuite.from_state`). Intervals are seeded
cluster bootstraps over test images and ``<m>_p`` paired tests against each column's best
method (:mod:`deltabench.stats`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deltabench import stats
from deltabench.harness import rundir
from deltabench.harness.config import RunConfig
from deltabench.harness.rundir import RunConfigError
from deltabench.harness.store import read_fits, unit_file, unit_id, unit_key
from deltabench.metrics.cost import PeakMemory
from deltabench.stats import SET_BOOT, SET_BOOT_LARGE

# Bootstrap resamples of FID/KID: deltabench.stats.SET_BOOT (100), SET_BOOT_LARGE (25) only where
# rows >= dims above 512. FID is computed from the features (metrics.fid.frechet_distance_features):
# exact, and in the small sample space where rows < dimensions, on the distinct rows of a resample.
SET_METRICS = ("fid", "kid")


def summarize(out: Path, domain, cfg: RunConfig):
    """``summary.csv``: per method (then reference) at the default strength, the merged metric
    states, the cost, and per metric ``n``, a 95% interval and a paired test against the best.

    Per-edit metrics: ``<m>_lo``/``<m>_hi`` is a seeded cluster bootstrap over test images of
    the rows in ``results.csv`` (:mod:`deltabench.stats`), ``<m>_n`` the rows counted. FID and
    KID: the same resampling of images, the statistic recomputed from the resampled images'
    features (those the KID state keeps), ``<m>_n`` the edited samples and ``<m>_dim`` the
    feature dimension. ``<m>_p``: two-sided paired bootstrap p-value of the difference to the
    column's best method on the same images and prompts (empty for the best itself and for
    references). ``reference`` marks the reference rows. ``domain`` is not used (no model is
    needed); it is kept for callers that pass it.
    """
    import pandas as pd

    from deltabench.metrics.suite import HIGHER_IS_BETTER

    fits = read_fits(out)
    results = pd.read_csv(out / "results.csv")
    rows, per_edit, set_draws = [], {}, {}
    for name in cfg.scored:
        merged, ms, peak, feats = _merged_units(out, cfg, name)
        if merged is None:
            continue
        values = merged.compute()
        row = {
            "method": name,
            "reference": name in cfg.references,
            **values,
            "ms_per_edit": sum(ms) / len(ms),
            "peak_mb": peak.compute(),
            "fit_seconds": 0.0 if name in cfg.references else fits.get(name, {}).get("fit_seconds", float("nan")),
            "prompts": len(ms),
            "images": cfg.images,
        }
        mine = results[(results["method"] == name) & (results["strength_scale"] == 1.0)]
        mine = mine.sort_values(["prompt_index", "image_index"])
        per_edit[name] = mine
        for key in values:
            if key in SET_METRICS or key not in mine.columns:
                continue
            iv = stats.mean_interval(mine[key].to_numpy(float), mine["image_index"].to_numpy(), seed=cfg.seed)
            row.update({f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n": iv.n})
        if feats and all(len(r) == len(fk) == cfg.images for r, fk in feats):
            _set_statistics(name, values, row, feats, cfg, set_draws)
        rows.append(row)
    df = pd.DataFrame(rows)
    _paired_tests(df, per_edit, set_draws, cfg, HIGHER_IS_BETTER)
    df.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    return df


def _merged_units(out: Path, cfg: RunConfig, name: str):
    """``name``'s units at x1 merged: ``(suite or None, ms per edit per unit, peak memory,
    [(input features, edited features)] per unit)``, from the unit files alone."""
    from deltabench.metrics.suite import MetricSuite

    merged, ms, peak, feats = None, [], PeakMemory(), []
    feature_name = (rundir.read_manifest(out) or {}).get("fid_features", "features")
    for j, _ in enumerate(cfg.prompts):
        f = unit_file(out, unit_key(name, j, 1.0))
        if not f.is_file():
            continue
        state = rundir.load_unit(f, out)
        if not isinstance(state, dict) or state.get("unit") != unit_id(cfg, name, j, 1.0):
            raise RunConfigError(
                f"{f} holds the metric states of another config's unit; run the same "
                f"command again with --resume to recompute it"
            )
        suite = MetricSuite.from_state(state["suite"], seed=cfg.seed, feature_name=feature_name)
        kid = suite.metrics.get("kid")
        if kid is not None and kid.real_feats and kid.fake_feats:
            feats.append((torch.cat(kid.real_feats).double().numpy(), torch.cat(kid.fake_feats).double().numpy()))
        ms.append(state["ms_per_edit"])
        if "peak_bytes" in state:
            peak.update(state["peak_bytes"])
        if merged is None:
            merged = suite
        elif set(suite.metrics) == set(merged.metrics):
            merged.merge(suite)
    return merged, ms, peak, feats


def _set_statistics(name: str, values: dict, row: dict, feats: list, cfg: RunConfig, set_draws: dict) -> None:
    """FID and KID of ``name`` with their bootstrap intervals (into ``row``, the draws into
    ``set_draws`` for the paired tests), resampling test images with all their prompts."""
    from deltabench.metrics.fid import (
        cluster_kernel_distance,
        covariance_rank,
        frechet_distance_features,
    )

    dim = feats[0][0].shape[1]
    n_rows = len(feats) * cfg.images
    n_boot = SET_BOOT if dim <= 512 or n_rows < dim else SET_BOOT_LARGE

    def pick(ix, side):
        return np.concatenate([u[side][ix] for u in feats])

    def fid_of(ix):
        distinct, counts = np.unique(ix, return_counts=True)  # rows once, weighted by repeats
        w = np.tile(counts, len(feats))
        return frechet_distance_features(pick(distinct, 0), pick(distinct, 1), w, w)

    def kid_of(ix):
        if len(np.unique(ix)) < 2:  # a resample of one image has no pair of different images
            return float("nan")
        origin = np.tile(ix, len(feats))  # the test image of every row
        return cluster_kernel_distance(torch.from_numpy(pick(ix, 0)), torch.from_numpy(pick(ix, 1)), origin, origin)

    if "kid" in values:  # the run's KID: over pairs of different images (inputs repeat per prompt)
        values["kid"] = row["kid"] = kid_of(np.arange(cfg.images))
    for key, fn in (("fid", fid_of), ("kid", kid_of)):
        if key not in values:
            continue
        _, draws = stats.statistic_draws(fn, cfg.images, n_boot, seed=cfg.seed)
        set_draws[(name, key)] = draws
        # Resampled duplicates bias FID up: the draws' spread, centred on the value.
        iv = stats.interval_from_draws(values[key], draws, len(feats) * cfg.images, cfg.images, centred=True)
        row.update({f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n": iv.n, f"{key}_dim": dim, f"{key}_boot": n_boot})
    if "fid" in values:
        # What the covariances can hold: the reference side repeats each input once per
        # prompt, so it has cfg.images distinct samples however many rows; the rank of
        # each side's covariance (at most distinct - 1) is what FID's reliability rests on.
        everything = np.arange(cfg.images)
        row.update(
            {
                "fid_distinct": min(cfg.images, len(np.unique(pick(everything, 1), axis=0))),
                "fid_rank": min(covariance_rank(pick(everything, 0)), covariance_rank(pick(everything, 1))),
            }
        )


def _paired_tests(df, per_edit: dict, set_draws: dict, cfg: RunConfig, higher: dict) -> None:
    """Fill ``<m>_p`` in ``df``: each method against the column's best method (references apart)."""
    if df.empty:
        return
    methods = df[~df["reference"]]
    for key, up in higher.items():
        if key not in df.columns or methods[key].isna().all():
            continue
        best = methods.loc[methods[key].idxmax() if up else methods[key].idxmin(), "method"]
        col = np.full(len(df), np.nan)
        for i, r in df.iterrows():
            if r["reference"] or r["method"] == best:
                continue
            if key in SET_METRICS:
                if (best, key) not in set_draws or (r["method"], key) not in set_draws:
                    continue
                t = stats.paired_from_draws(
                    r[key] - methods.loc[methods["method"] == best, key].iloc[0],
                    set_draws[(r["method"], key)] - set_draws[(best, key)],
                    0,
                )
            else:
                a, b = per_edit[r["method"]], per_edit[best]
                m = a.merge(b, on=["prompt_index", "image_index"], suffixes=("", "_best"))
                if key not in m or m.empty:
                    continue
                t = stats.paired_test(
                    m[key].to_numpy(float), m[f"{key}_best"].to_numpy(float), m["image_index"].to_numpy(), seed=cfg.seed
                )
            col[i] = t.p
        df[f"{key}_p"] = col
