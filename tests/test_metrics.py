"""Metrics against reference values computed another way (closed forms, numpy, scikit-image)."""

import math
import mmap
import time
import warnings

import numpy as np
import pytest
import torch
from pytorch_fid.fid_score import calculate_frechet_distance
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deltabench.metrics.clip_score import ClipScore, DirectionalClipScore, directional_clip_score
from deltabench.metrics.cost import EditLatency, PeakMemory, measure
from deltabench.metrics.fid import (
    FrechetDistance,
    KernelDistance,
    SingularCovarianceWarning,
    covariance_rank,
    frechet_distance,
    frechet_distance_features,
)
from deltabench.metrics.identity import IdentitySimilarity
from deltabench.metrics.image import PSNR, SSIM, psnr, ssim


def gaussian(n, mu, cov, seed):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.multivariate_normal(mu, cov, size=n))


def rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


# ---------------------------------------------------------------- FID


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # pytorch-fid on new scipy
def test_fid_of_two_gaussians_matches_closed_form():
    d = 6
    q = rotation(d, 0)  # same eigenbasis: the covariances commute, sqrt(S1 S2) = Q sqrt(a b) Q^T
    a, b = np.linspace(0.5, 3.0, d), np.linspace(2.0, 0.2, d)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu1, mu2 = np.zeros(d), np.linspace(-1, 1, d)
    exact = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    fid = FrechetDistance()
    x, y = gaussian(40_000, mu1, s1, 1), gaussian(40_000, mu2, s2, 2)
    for i in range(0, 40_000, 10_000):  # streamed in batches
        fid.update(real=x[i : i + 10_000], fake=y[i : i + 10_000])
    got = fid.compute()
    assert exact == pytest.approx(5.94, abs=0.01)  # the test itself: a non-trivial distance
    assert got == pytest.approx(exact, rel=0.02)
    # the same number as pytorch-fid from np.cov of the full sample
    ref = calculate_frechet_distance(
        x.mean(0).numpy(), np.cov(x.numpy(), rowvar=False), y.mean(0).numpy(), np.cov(y.numpy(), rowvar=False)
    )
    assert got == pytest.approx(ref, rel=1e-9)


def test_fid_of_identical_sets_is_zero_and_symmetric():
    x = gaussian(500, np.ones(8), np.diag(np.arange(1.0, 9.0)), 0) * 10 + 5  # offset: no cancellation trouble
    fid = FrechetDistance(feature_dim=8)
    fid.update(real=x, fake=x)
    assert abs(fid.compute()) < 1e-6
    y = x + 0.3
    f1, f2 = FrechetDistance(), FrechetDistance()
    f1.update(real=x, fake=y)
    f2.update(real=y, fake=x)
    assert f1.compute() == pytest.approx(f2.compute(), rel=1e-9)
    assert f1.compute() == pytest.approx(8 * 0.09, rel=1e-6)  # pure mean shift: ||0.3 * 1||^2


def test_fid_merge_of_two_halves_equals_whole():
    x, y = gaussian(600, np.zeros(5), np.eye(5), 0), gaussian(600, np.ones(5), 2 * np.eye(5), 1)
    whole = FrechetDistance()
    whole.update(real=x, fake=y)
    h1, h2 = FrechetDistance(), FrechetDistance()
    h1.update(real=x[:250], fake=y[:400])
    h2.update_real(x[250:])
    h2.update_fake(y[400:])
    assert h1.merge(h2).compute() == pytest.approx(whole.compute(), rel=1e-10)
    empty = FrechetDistance()  # a rank that saw nothing merges as zeros
    assert empty.merge(whole).compute() == pytest.approx(whole.compute(), rel=1e-12)


def test_fid_uses_the_feature_function_and_checks_it():
    proj = torch.randn(3 * 4 * 4, 7, generator=torch.Generator().manual_seed(0))
    feats = lambda img: img.flatten(1) @ proj  # noqa: E731
    imgs = torch.rand(64, 3, 4, 4) * 2 - 1
    fid, ref = FrechetDistance(feats, name="proj"), FrechetDistance()
    fid.update(real=imgs, fake=imgs.flip(0) * 0.5)
    ref.update(real=feats(imgs), fake=feats(imgs.flip(0) * 0.5))
    assert fid.label == "FID (proj)"
    assert fid.compute() == pytest.approx(ref.compute(), rel=1e-9)
    with pytest.raises(ValueError, match=r"\[N, F\]"):
        FrechetDistance().update(real=imgs)  # images without a feature function
    with pytest.raises(ValueError, match="4-d features after 7-d"):
        raw = FrechetDistance()
        raw.update(real=torch.zeros(3, 7))
        raw.update(fake=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="at least 2"):
        f = FrechetDistance()
        f.update(real=torch.zeros(5, 2), fake=torch.zeros(1, 2))
        f.compute()


def test_fid_warns_when_fewer_samples_than_dimensions():
    x, y = gaussian(20, np.zeros(32), np.eye(32), 0), gaussian(20, np.ones(32), np.eye(32), 1)
    fid = FrechetDistance()
    fid.update(real=x, fake=y)
    with pytest.warns(SingularCovarianceWarning, match="20 samples for 32-d"):
        v = fid.compute()
    assert math.isfinite(v) and v > 0
    big = FrechetDistance()
    big.update(real=gaussian(100, np.zeros(4), np.eye(4), 0), fake=gaussian(100, np.ones(4), np.eye(4), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when n > d
        big.compute()


def test_frechet_distance_singular_product_is_exact_and_bad_input_errors():
    # rank-1 covariances: a singular product; the eigendecomposition route needs no eps
    u = np.array([1.0, 0.0, 0.0])
    v = float(frechet_distance(np.zeros(3), np.outer(u, u), np.zeros(3), np.outer(u, u)))
    assert abs(v) < 1e-12
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))  # not PSD
    with pytest.raises(ValueError, match="NaN or inf"):
        frechet_distance(np.zeros(2), np.diag([1.0, np.nan]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_frechet_distance_equals_pytorch_fid_where_it_is_well_posed():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    for n, f in ((500, 16), (400, 64)):
        x, y = rng.normal(size=(n, f)), rng.normal(size=(n, f)) * 1.2 + 0.3
        stats = (x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
        ref = calculate_frechet_distance(*stats)
        assert abs(frechet_distance(*stats) - ref) < 1e-8 * ref
        assert abs(frechet_distance_features(x, y) - ref) < 1e-8 * ref


@pytest.mark.slow
def test_fid_from_few_samples_is_exact_and_never_crashes():
    """4 samples of 256-d features: scipy's sqrtm aborted the interpreter here (a 2-image run's
    summary). The sample-space route (an SVD of [4, 4]) equals the covariance route."""
    rng = np.random.default_rng(1)
    for n, f in ((4, 256), (2, 2048), (3, 64)):
        x, y = rng.normal(size=(n, f)), rng.normal(size=(n, f)) + 0.5
        a = frechet_distance_features(x, y)
        b = frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
        assert np.isfinite(a) and abs(a - b) < 1e-6 * abs(b), (n, f, a, b)
        assert abs(frechet_distance_features(x, x)) < 1e-9 * f  # a set against itself: 0
    dup = np.repeat(rng.normal(size=(3, 32)), 2, axis=0)  # rows repeated, as a bootstrap resample has them
    assert covariance_rank(dup) == 2 and covariance_rank(dup[:1]) == 0


# ---------------------------------------------------------------- KID


def kid_naive(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2, polynomial kernel, all samples, written out with loops over pairs."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_the_formula_written_out():
    x, y = gaussian(40, np.zeros(3), np.eye(3), 0), gaussian(40, 0.5 * np.ones(3), np.eye(3), 1)
    kid = KernelDistance(subset_size=40, n_subsets=3)  # one subset = the whole set, any order
    kid.update(real=x, fake=y)
    mean, std = kid.compute_std()
    assert mean == pytest.approx(kid_naive(x.numpy(), y.numpy()), rel=1e-9)
    assert std < 1e-12


def test_kid_near_zero_for_identical_sets_and_positive_for_shifted():
    x = gaussian(600, np.zeros(16), np.eye(16), 0)
    kids = {}
    for name, y in {
        "same set": x,
        "same law": gaussian(600, np.zeros(16), np.eye(16), 1),
        "shifted": gaussian(600, 0.5 * np.ones(16), np.eye(16), 1),
    }.items():
        kids[name] = KernelDistance(subset_size=200, n_subsets=50)
        kids[name].update(real=x, fake=y)
        kids[name] = kids[name].compute_std()
    (m_same, _), (m_law, s_law), (m_shift, _) = kids["same set"], kids["same law"], kids["shifted"]
    # Independent subsets of one set share samples, whose k(x, x) enter the cross term: a
    # slightly negative estimate, as in clean-fid.
    assert -0.05 < m_same < 0 and abs(m_same) < 0.03 * m_shift
    assert abs(m_law) < 0.02 and abs(m_law) < 3 * s_law  # an independent sample of the same law
    assert m_shift > 0.8  # clearly apart


def test_kid_merge_and_seed_determinism():
    x, y = gaussian(300, np.zeros(4), np.eye(4), 0), gaussian(300, np.ones(4), np.eye(4), 1)
    whole = KernelDistance(subset_size=100, n_subsets=20, seed=3)
    whole.update(real=x, fake=y)
    a, b = KernelDistance(subset_size=100, n_subsets=20, seed=3), KernelDistance(subset_size=100, n_subsets=20, seed=3)
    a.update(real=x[:100], fake=y[:200])
    b.update(real=x[100:], fake=y[200:])
    assert a.merge(b).compute_std() == whole.compute_std()
    with pytest.raises(ValueError, match="both sets"):
        KernelDistance().compute()


# ---------------------------------------------------------------- PSNR, SSIM


def image_pair(seed, n=3, size=24):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    b = (a + 0.15 * torch.randn(n, 3, size, size, generator=g)).clamp(-1, 1)
    return a, b


def hwc01(x):  # [3, H, W] in [-1, 1] -> [H, W, 3] in [0, 1]
    return ((x.double() + 1) / 2).permute(1, 2, 0).numpy()


def test_psnr_matches_skimage_and_numpy():
    a, b = image_pair(0)
    got = psnr(a, b).numpy()
    ref = [peak_signal_noise_ratio(hwc01(x), hwc01(y), data_range=1.0) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    u8 = lambda x: ((x.double() + 1) * 127.5).permute(1, 2, 0).numpy()  # noqa: E731
    mse = [np.mean((u8(x) - u8(y)) ** 2) for x, y in zip(a, b)]  # the same in uint8 units
    np.testing.assert_allclose(got, [10 * np.log10(255.0**2 / e) for e in mse], atol=1e-6)
    assert psnr(a, a)[0] == float("inf")
    m = PSNR()
    scores = m.update(a, b)
    assert m.compute() == pytest.approx(float(np.mean(ref)), abs=1e-9) and scores.shape == (3,)


def test_ssim_matches_skimage():
    a, b = image_pair(1, size=32)
    ref = [structural_similarity(hwc01(x), hwc01(y), data_range=1.0, channel_axis=-1) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(a, b).numpy(), ref, rtol=0, atol=1e-6)
    assert 0.3 < min(ref) < max(ref) < 0.99  # a non-trivial reference
    np.testing.assert_allclose(ssim(a, a).numpy(), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="win_size"):
        ssim(a[:, :, :5, :5], b[:, :, :5, :5])
    with pytest.raises(ValueError, match="one shape"):
        ssim(a, b[:2])


def test_mean_metrics_merge_exactly():
    a, b = image_pair(2, n=6)
    whole, h1, h2 = SSIM(), SSIM(), SSIM()
    scores = whole.update(a, b)
    h1.update(a[:2], b[:2])
    h2.update(a[2:], b[2:])
    h1.merge(h2)
    assert h1.compute() == pytest.approx(whole.compute(), abs=1e-12)
    assert h1.std() == pytest.approx(float(scores.std(unbiased=False)), abs=1e-9)


# ---------------------------------------------------------------- IDS, CLIP scores


def test_ids_is_one_for_identical_images_and_lower_otherwise():
    proj = torch.randn(3 * 8 * 8, 16, generator=torch.Generator().manual_seed(0))
    embed = lambda img: img.flatten(1) @ proj  # noqa: E731  (un-normalised on purpose)
    a, b = image_pair(3, n=4, size=8)
    ids = IdentitySimilarity(embed)
    np.testing.assert_allclose(ids.update(a, a).numpy(), 1.0, atol=1e-12)
    other = ids.update(a, torch.rand(4, 3, 8, 8) * 2 - 1)
    assert (other < 0.9).all()
    assert ids.compute() == pytest.approx((4 + float(other.sum())) / 8, abs=1e-12)


def test_directional_clip_score_flips_sign_and_matches_cosine():
    g = torch.Generator().manual_seed(0)
    e_in, e_ed = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    s, t = torch.randn(8, generator=g), torch.randn(8, generator=g)
    fwd, back = directional_clip_score(e_in, e_ed, s, t), directional_clip_score(e_in, e_ed, t, s)
    np.testing.assert_allclose(fwd.numpy(), -back.numpy(), atol=1e-12)
    n = lambda v: v / v.norm(dim=-1, keepdim=True)  # noqa: E731
    di, dt = n(e_ed.double()) - n(e_in.double()), n(t.double()) - n(s.double())
    ref = torch.nn.functional.cosine_similarity(di, dt[None], dim=1)
    np.testing.assert_allclose(fwd.numpy(), ref.numpy(), atol=1e-12)
    # an edit that moved exactly along the text direction scores 1
    np.testing.assert_allclose(directional_clip_score(n(s)[None], n(t)[None], s, t).numpy(), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match="same embedding"):
        DirectionalClipScore(lambda x: x, s, s)


# ---------------------------------------------------------------- cost


def _rss_now() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def test_measure_times_and_sees_peak_memory():
    before = _rss_now()
    with measure("cpu") as c:
        # 80 MB of fresh anonymous pages, touched: a tensor of that size may be served from memory
        # the process already holds (freed heap of earlier tests) and then not raise the RSS at all.
        x = mmap.mmap(-1, 80 * 2**20)
        x.write(b"\x01" * (80 * 2**20))
        time.sleep(0.05)
        x.close()
    assert 0.05 <= c.seconds < 5
    assert c.peak_bytes >= before + 70 * 2**20
    lat, lat2, peak = EditLatency(), EditLatency(), PeakMemory()
    lat.update(0.5, 100)
    lat2.update(1.5, 100)
    assert lat.merge(lat2).compute() == pytest.approx(10.0)  # 2 s over 200 edits
    peak.update(c.peak_bytes)
    other = PeakMemory()
    other.update(3 * 2**30)
    assert peak.merge(other).compute() == pytest.approx(3 * 1024)


# ---------------------------------------------------------------- the suite on the micro world


@pytest.fixture(scope="module")
def domain(micro_world):
    from deltabench.domain import SynthfacesDomain

    return SynthfacesDomain(micro_world)


def test_suite_scores_a_micro_world_cell(domain):
    from deltabench.metrics.suite import build_metrics
    from deltabench.world.captions import EDIT_PROMPTS

    torch.manual_seed(0)
    prompt = next(p for p in EDIT_PROMPTS if p.attribute == "glasses" and p.value != "none")
    test = domain.test_images(80, seed=5)
    start = domain.generator.synthesis(domain.invert(test.images))
    edited = domain.generator.synthesis(domain.sample_w_plus(80, seed=9))  # stand-in edits: other faces
    suite = build_metrics(domain, prompt, kid_subset_size=16, kid_subsets=10)
    assert list(suite.metrics) == [
        "fid",
        "kid",
        "psnr",
        "ssim",
        "ids",
        "clip_score",
        "clip_direction",
        "manipulation_accuracy",
        "disentanglement",
        "identity_param_error",
        "identity_regression",
    ]
    assert suite.labels()["fid"] == "FID (oracle)"
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularCovarianceWarning)  # 80 images > 64-d features
        rows = suite.update(test.images, edited, start=start, params=test.params)
        summary = suite.compute()
    assert all(v.shape == (80,) for v in rows.values()) and "fid" not in rows
    assert all(math.isfinite(v) for v in summary.values())
    # per-image rows average to the summary (NaN rows are the images that already had the value)
    assert summary["psnr"] == pytest.approx(float(rows["psnr"].mean()), abs=1e-9)
    hit = rows["manipulation_accuracy"]
    assert summary["manipulation_accuracy"] == pytest.approx(float(hit[~hit.isnan()].mean()), abs=1e-9)
    # IDS and CLIP by hand
    ids = (domain.identity.embed(test.images) * domain.identity.embed(edited)).sum(1)
    assert summary["ids"] == pytest.approx(float(ids.mean()), abs=1e-5)
    cs = domain.clip_image(edited) @ domain.text_embedding(prompt.target)
    assert summary["clip_score"] == pytest.approx(float(cs.mean()), abs=1e-5)
    # two halves through a shared input cache, merged, equal the whole
    halves = [build_metrics(domain, prompt, kid_subset_size=16, kid_subsets=10) for _ in range(2)]
    for h, sl in zip(halves, (slice(0, 32), slice(32, 80))):
        cache = {}
        h.update(test.images[sl], edited[sl], start=start[sl], params=test.params[sl], cache=cache)
        assert {"feat_inputs", "clip_start", "ident_inputs", "oracle_start"} <= set(cache)
    merged = halves[0].merge(halves[1]).compute()
    for k in summary:
        if k != "kid":  # KID draws its subsets from the concatenated features in another order
            assert merged[k] == pytest.approx(summary[k], rel=1e-6, abs=1e-9), k


def test_suite_no_edit_is_perfect_and_swapped_prompt_flips_direction(domain):
    from deltabench.metrics.suite import build_metrics
    from deltabench.world.captions import EDIT_PROMPTS

    prompt = EDIT_PROMPTS[0]
    test = domain.test_images(16, seed=1)
    start = domain.generator.synthesis(domain.invert(test.images))
    edited = domain.generator.synthesis(domain.sample_w_plus(16, seed=2))
    suite = build_metrics(domain, prompt, kid_subset_size=12, kid_subsets=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularCovarianceWarning)  # 16 images, 32-d oracle features
        rows = suite.update(test.images, test.images, start=start, params=test.params)
        same = suite.compute()
    assert same["ids"] == pytest.approx(1.0, abs=1e-6) and same["ssim"] == pytest.approx(1.0)
    assert same["psnr"] == PSNR.CAP and abs(same["fid"]) < 1e-3  # identical images: PSNR at its cap
    src, tgt = domain.text_embedding(prompt.source), domain.text_embedding(prompt.target)
    fwd = build_metrics(domain, None, src, tgt)
    back = build_metrics(domain, None, tgt, src)
    assert "manipulation_accuracy" not in fwd.metrics  # no prompt record: no ground-truth metrics
    a = fwd.update(test.images, edited, start=start)["clip_direction"]
    b = back.update(test.images, edited, start=start)["clip_direction"]
    np.testing.assert_allclose(a.numpy(), -b.numpy(), atol=1e-9)
    assert rows["clip_direction"].shape == (16,)
    assert ClipScore(domain.clip_image, tgt, scale=100).update(edited).mean() == pytest.approx(
        100 * float((domain.clip_image(edited) @ tgt).mean()), abs=1e-3
    )


def test_fid_of_weighted_distinct_rows_equals_the_repeated_rows():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 40)), rng.normal(size=(6, 40)) + 1
    counts = np.array([1, 3, 1, 2, 1, 4])
    rep = frechet_distance_features(np.repeat(x, counts, 0), np.repeat(y, counts, 0))
    assert abs(frechet_distance_features(x, y, counts, counts) - rep) < 1e-9 * rep
