"""Uncertainty for every number a run reports: seeded bootstrap intervals over test images.

A run edits every test image with every prompt, so the rows of one image are correlated (an
image that is hard to edit is hard for every prompt). Every interval here therefore resamples
*images* (clusters) with replacement, each with all of its rows, and takes the percentile
interval of the statistic (Efron & Tibshirani 1993, ch. 13; the cluster bootstrap of
Davison & Hinkley 1997, sec. 3.8). Between two methods the test is *paired*: one resample of
images is applied to both, so what the images share cancels.

- :func:`mean_interval`: a per-edit metric's mean (NaN rows, e.g. manipulation accuracy
  where the image already had the target value, are left out and not counted in ``n``).
- :func:`statistic_interval`: any statistic of a resampled image set, e.g. FID or KID
  recomputed from the resampled images' features.
- :func:`paired_test`: the mean difference of two methods on the same images and prompts,
  its interval and a two-sided bootstrap p-value.

The same ``seed`` gives the same intervals (tested), and the resampling indices depend only
on the seed and the number of images, so every method of a run is resampled alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
N_BOOT = 2000
# Bootstrap resamples of the set statistics FID and KID (each recomputes the statistic from the
# resampled images' features); fewer only where rows >= dimensions above 512 (a 2048-d
# eigendecomposition per resample). deltabench.runner.summarize uses them; its summary records
# the count per row (<key>_boot) for the tables' p-value resolution.
SET_BOOT = 100
SET_BOOT_LARGE = 25


@dataclass(frozen=True)
class Interval:
    """A point estimate, its percentile interval and the sample it came from."""

    value: float
    lo: float
    hi: float
    n: int  # rows (edits) that entered the estimate
    clusters: int  # distinct test images

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2


def resample_indices(n_clusters: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``int [n_boot, n_clusters]``: bootstrap draws of cluster positions (seeded)."""
    if n_clusters < 1:
        raise ValueError("a bootstrap needs at least one cluster (test image)")
    return np.random.default_rng(seed).integers(0, n_clusters, size=(n_boot, n_clusters))


def _cluster_sums(values: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    values, clusters = np.asarray(values, dtype=np.float64), np.asarray(clusters)
    if values.shape != clusters.shape or values.ndim != 1:
        raise ValueError(f"values and clusters must be equal 1-d arrays, got {values.shape} and {clusters.shape}")
    ok = ~np.isnan(values)
    ids, pos = np.unique(clusters, return_inverse=True)
    sums = np.bincount(pos[ok], weights=values[ok], minlength=len(ids))
    counts = np.bincount(pos[ok], minlength=len(ids)).astype(np.float64)
    return ids, sums, counts


def _percentiles(draws: np.ndarray, level: float) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(draws, [a, 1 - a])
    return float(lo), float(hi)


def mean_interval(values, clusters, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """The mean of ``values`` (NaN left out) with a cluster-bootstrap percentile interval."""
    ids, sums, counts = _cluster_sums(values, clusters)
    n = int(counts.sum())
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, len(ids))
    idx = resample_indices(len(ids), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = sums[idx].sum(1) / counts[idx].sum(1)
    lo, hi = _percentiles(draws, level)
    return Interval(float(sums.sum() / n), lo, hi, n, len(ids))


def statistic_interval(
    stat: Callable[[np.ndarray], float],
    n_clusters: int,
    n: int,
    n_boot: int = 200,
    seed: int = 0,
    level: float = LEVEL,
    centred: bool = False,
) -> Interval:
    """``stat(cluster_positions)`` on all clusters, and its bootstrap percentile interval.

    ``stat`` gets ``int [n_clusters]`` positions (with repeats in a resample) and computes the
    statistic on those clusters' rows, e.g. FID from the resampled images' features. A resample
    repeats images, which biases a set statistic such as FID or KID (its covariance or kernel
    sees identical samples): FID's resamples run about a third above the full-sample value at
    a run's sizes. ``centred`` (:func:`interval_from_draws`) keeps the draws' spread and moves
    it onto the full-sample value, i.e. it assumes that bias is the same across resamples.
    """
    value, draws = statistic_draws(stat, n_clusters, n_boot, seed)
    return interval_from_draws(value, draws, n, n_clusters, level, centred)


def statistic_draws(
    stat: Callable[[np.ndarray], float], n_clusters: int, n_boot: int = 200, seed: int = 0
) -> tuple[float, np.ndarray]:
    """``(stat on all clusters, [n_boot] stat on each resample)``. The resamples depend only on
    ``n_clusters`` and ``seed``, so two methods' draws pair up: their difference is the paired
    bootstrap of the difference (:func:`paired_from_draws`)."""
    value = float(stat(np.arange(n_clusters)))
    draws = np.array([stat(ix) for ix in resample_indices(n_clusters, n_boot, seed)], dtype=np.float64)
    return value, draws


def interval_from_draws(
    value: float, draws: np.ndarray, n: int, n_clusters: int, level: float = LEVEL, centred: bool = False
) -> Interval:
    """The percentile interval of ``draws``; ``centred``: moved by the draws' median offset from
    ``value`` (their spread kept), for a set statistic whose resamples are biased."""
    draws = np.asarray(draws, dtype=np.float64)
    lo, hi = _percentiles(draws, level)
    if centred and np.isfinite(draws).any():
        shift = float(value) - float(np.median(draws[np.isfinite(draws)]))
        lo, hi = lo + shift, hi + shift
    return Interval(float(value), lo, hi, n, n_clusters)


@dataclass(frozen=True)
class PairedTest:
    diff: float  # mean of a - b over the rows both have
    lo: float
    hi: float
    p: float  # two-sided bootstrap p-value of "no difference"
    n: int

    @property
    def significant(self) -> bool:
        return self.p < 1 - LEVEL


def _p_value(draws: np.ndarray) -> float:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return float("nan")
    # Two-sided: twice the smaller tail mass at zero (ties count half), at most 1.
    below = (np.sum(draws < 0) + 0.5 * np.sum(draws == 0)) / len(draws)
    return float(min(1.0, 2 * min(below, 1 - below)))


def paired_test(a, b, clusters, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> PairedTest:
    """Paired cluster bootstrap of ``mean(a - b)``: ``a``, ``b`` are two methods' values on
    the same rows (same images and prompts, same order), ``clusters`` the rows' images."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired test needs the same rows for both methods, got {a.shape} and {b.shape}")
    d = a - b  # NaN where either is NaN
    ids, sums, counts = _cluster_sums(d, clusters)
    n = int(counts.sum())
    if n == 0:
        return PairedTest(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    idx = resample_indices(len(ids), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = sums[idx].sum(1) / counts[idx].sum(1)
    lo, hi = _percentiles(draws, level)
    return PairedTest(float(sums.sum() / n), lo, hi, _p_value(draws), n)


def paired_statistic_test(
    stat_a: Callable[[np.ndarray], float],
    stat_b: Callable[[np.ndarray], float],
    n_clusters: int,
    n: int,
    n_boot: int = 200,
    seed: int = 0,
    level: float = LEVEL,
) -> PairedTest:
    """:func:`paired_test` for set statistics (FID, KID): both recomputed on one resample."""
    va, da = statistic_draws(stat_a, n_clusters, n_boot, seed)
    vb, db = statistic_draws(stat_b, n_clusters, n_boot, seed)
    return paired_from_draws(va - vb, da - db, n, level)


def paired_from_draws(diff: float, draws: np.ndarray, n: int, level: float = LEVEL) -> PairedTest:
    """A paired test from the difference of two methods' :func:`statistic_draws` (same seed)."""
    draws = np.asarray(draws, dtype=np.float64)
    lo, hi = _percentiles(draws, level)
    return PairedTest(float(diff), lo, hi, _p_value(draws), n)


# --- printing -------------------------------------------------------------------------------


def is_symmetric(
    value: float, lo: float, hi: float, decimals: int, bounds: tuple[float, float] | None = None, tol: float = 0.2
) -> bool:
    """Whether ``value ± half-width`` says what ``[lo, hi]`` says: both arms equal within ``tol``
    of the half-width (and within the printed precision), the interval holds the value and does
    not touch a bound of the metric (0 or 1 for a rate)."""
    if not all(np.isfinite([value, lo, hi])) or hi <= lo or not lo <= value <= hi:
        return False
    if bounds is not None and (lo <= bounds[0] or hi >= bounds[1]):
        return False
    below, above = value - lo, hi - value
    hw = (hi - lo) / 2
    return abs(above - below) <= tol * hw or f"{below:.{decimals}f}" == f"{above:.{decimals}f}"


def format_interval(
    value: float, lo: float, hi: float, decimals: int, bounds: tuple[float, float] | None = None
) -> str:
    """``"v ± h"`` where the interval is symmetric (:func:`is_symmetric`), else ``"v [lo, hi]"``;
    ``"v"`` alone without a finite interval."""
    if not np.isfinite(value):
        return "–"
    v = f"{value:.{decimals}f}"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return v
    if is_symmetric(value, lo, hi, decimals, bounds):
        return f"{v} ± {(hi - lo) / 2:.{decimals}f}"
    return f"{v} [{lo:.{decimals}f}, {hi:.{decimals}f}]"


def format_p(p: float, n_boot: int | None) -> str:
    """A bootstrap p-value as printed: ``"< 1/B"`` below the resolution of ``n_boot`` resamples
    (a bootstrap never says exactly 0), else two significant digits."""
    if not np.isfinite(p):
        return "–"
    if n_boot and p < 1 / n_boot:
        return f"< {1 / n_boot:.2g}"
    return f"{p:.2g}"
