"""Bootstrap intervals on data whose true interval is known: coverage, width, seeds, pairing."""

from __future__ import annotations

import numpy as np
import pytest

from deltabench import stats


def _coverage(draw, truth, trials=300, n_boot=400):
    hits, widths = 0, []
    for t in range(trials):
        values, clusters = draw(np.random.default_rng(1000 + t))
        iv = stats.mean_interval(values, clusters, n_boot=n_boot, seed=t)
        hits += iv.lo <= truth <= iv.hi
        widths.append(iv.hi - iv.lo)
    return hits / trials, float(np.mean(widths))


def test_bernoulli_proportion_interval_covers_and_has_the_wald_width():
    p, n = 0.7, 100
    cover, width = _coverage(lambda r: ((r.random(n) < p).astype(float), np.arange(n)), p, trials=300)
    # 300 trials of a 95% interval: coverage within ~3 standard errors of 0.95 (percentile
    # bootstrap under-covers slightly at n=100).
    assert 0.90 <= cover <= 0.99
    wald = 2 * 1.96 * np.sqrt(p * (1 - p) / n)  # 0.180
    assert width == pytest.approx(wald, rel=0.1)


def test_normal_mean_with_clusters_is_wider_than_the_naive_interval():
    # 40 images x 5 prompts; an image effect (sd 1) shared by its prompts and noise (sd 1):
    # the mean's sd is sqrt(1/40 + 1/200) = 0.1732, so the true 95% half-width is 0.339.
    def draw(r):
        img = np.repeat(r.normal(0, 1, 40), 5)
        return 2.0 + img + r.normal(0, 1, 200), np.repeat(np.arange(40), 5)

    cover, width = _coverage(draw, 2.0, trials=300)
    assert 0.90 <= cover <= 0.99
    assert width / 2 == pytest.approx(1.96 * np.sqrt(1 / 40 + 1 / 200), rel=0.12)
    # Treating the 200 rows as independent would give a half-width of ~0.196: far too narrow.
    values, clusters = draw(np.random.default_rng(0))
    naive = stats.mean_interval(values, np.arange(200), seed=0)
    assert naive.half_width < 0.75 * stats.mean_interval(values, clusters, seed=0).half_width


def test_same_seed_same_interval_and_nan_rows_are_not_counted():
    r = np.random.default_rng(3)
    v, c = r.random(60), np.repeat(np.arange(12), 5)
    v[::7] = np.nan
    a, b = stats.mean_interval(v, c, seed=11), stats.mean_interval(v, c, seed=11)
    assert a == b and a.n == int(np.sum(~np.isnan(v))) and a.clusters == 12
    assert stats.mean_interval(v, c, seed=12) != a
    assert a.value == pytest.approx(np.nanmean(v))
    assert a.lo < a.value < a.hi


def test_paired_test_finds_a_small_shift_that_unpaired_intervals_miss():
    r = np.random.default_rng(5)
    clusters = np.repeat(np.arange(30), 4)
    base = np.repeat(r.normal(0, 1, 30), 4) + r.normal(0, 0.05, 120)  # large shared image effect
    a, b = base + 0.05, base
    t = stats.paired_test(a, b, clusters, seed=0)
    assert t.significant and t.lo > 0 and t.diff == pytest.approx(0.05)
    ia, ib = stats.mean_interval(a, clusters, seed=0), stats.mean_interval(b, clusters, seed=0)
    assert ia.lo < ib.hi  # the two intervals overlap: only the paired test sees the difference
    same = stats.paired_test(base + r.normal(0, 0.05, 120), base, clusters, seed=0)
    assert not same.significant and same.lo < 0 < same.hi


def test_statistic_interval_resamples_clusters():
    r = np.random.default_rng(0)
    x = r.normal(0, 1, 50)
    iv = stats.statistic_interval(lambda ix: float(np.std(x[ix])), 50, 50, n_boot=300, seed=0)
    assert iv.value == pytest.approx(np.std(x)) and iv.lo < iv.value < iv.hi
    # sd of the sample sd of 50 normals ~ 1/sqrt(100) = 0.1: the interval is about +-0.2.
    assert 0.25 < iv.hi - iv.lo < 0.55
    t = stats.paired_statistic_test(
        lambda ix: float(np.mean(x[ix] + 1)), lambda ix: float(np.mean(x[ix])), 50, 50, n_boot=200, seed=0
    )
    assert t.diff == pytest.approx(1.0) and t.lo == pytest.approx(1.0) and t.p == 0.0


def test_a_centred_interval_keeps_the_spread_on_the_value():
    draws = np.linspace(10.0, 20.0, 1001)  # median 15, percentiles 10.25 / 19.75
    plain = stats.interval_from_draws(9.0, draws, 5, 5)
    centred = stats.interval_from_draws(9.0, draws, 5, 5, centred=True)
    assert plain.lo > plain.value  # a biased resampling puts the value outside
    assert centred.lo == pytest.approx(4.25) and centred.hi == pytest.approx(13.75)
    assert centred.hi - centred.lo == pytest.approx(plain.hi - plain.lo)
