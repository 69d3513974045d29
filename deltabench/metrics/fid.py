"""Fréchet distance (FID) and kernel distance (KID) on a pluggable feature network.

The feature function maps images ``[N, 3, H, W]`` in [-1, 1] to features ``[N, F]``: in
``synthfaces`` the world oracle's penultimate features, in ``ffhq`` pytorch-fid's InceptionV3
pool3 (2048-d). ``name`` says which, for the table header ("FID (oracle)").

FID keeps sufficient statistics (count, sum, sum of outer products) in float64, so two shards
merge by addition and memory is O(F^2) whatever N. KID needs the features themselves.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from deltabench.metrics.base import Metric

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


# The resize before a feature network that takes a fixed size (Inception's 299 px), pinned and
# recorded (run manifests' "fid_resize"). clean-fid (Parmar et al. 2022) found that non-antialiased
# resizes (pytorch-fid's bilinear F.interpolate, TensorFlow's) move FID by 6 or more on FFHQ; its
# "clean" mode resizes each channel as a float32 PIL image with PIL's (antialiased) bicubic filter
# and clips to [0, 255] (cleanfid/resize.py make_resizer("PIL", False, "bicubic", (299, 299))).
CLEAN_RESIZE = "clean-fid 'clean': PIL bicubic per channel on float32 [0, 255], clipped"


def clean_resize(x255: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's resize: ``x255 [N, 3, H, W]`` float in [0, 255] -> ``[N, 3, size, size]`` float32,
    each channel resized as a PIL ``'F'`` image with ``Image.BICUBIC`` and clipped to [0, 255]."""
    from PIL import Image

    arr = x255.detach().to("cpu", torch.float32).numpy()
    out = np.empty((arr.shape[0], arr.shape[1], size, size), dtype=np.float32)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            im = Image.fromarray(arr[i, c], mode="F").resize((size, size), resample=Image.BICUBIC)
            out[i, c] = np.asarray(im, dtype=np.float32).clip(0, 255)
    return torch.from_numpy(out)


class SingularCovarianceWarning(UserWarning):
    """Fewer samples than feature dimensions: the covariance estimate is rank-deficient."""


def _features(fn: FeatureFn | None, x, what: str) -> torch.Tensor:
    """Images through ``fn`` (or features as given when ``fn`` is None) -> float64 CPU ``[N, F]``."""
    if fn is not None:
        with torch.no_grad():
            x = fn(x)
    x = torch.as_tensor(x)
    if x.ndim != 2:
        hint = "pass features [N, F]" if fn is None else "the feature function must return [N, F]"
        raise ValueError(f"{what}: expected features of shape [N, F], got {tuple(x.shape)}; {hint}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: features hold NaN or inf; check the images and the feature network")
    return x.detach().to("cpu", torch.float64)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((S1 S2)^(1/2))`` of two covariance matrices, from two symmetric eigendecompositions.

    S1 S2 is similar to ``S1^(1/2) S2 S1^(1/2)`` (symmetric, positive semi-definite), so its
    square root's trace is the sum of the square roots of that matrix's eigenvalues: exact in
    exact arithmetic, no general ``sqrtm``. ``scipy.linalg.sqrtm`` of the non-symmetric product
    (pytorch-fid's way) aborted the interpreter on rank-deficient covariances (256-d features
    from 4 samples); ``numpy.linalg.eigh`` has no such failure. Round-off negatives are clipped."""
    w, v = np.linalg.eigh(sigma1)
    w2 = np.linalg.eigvalsh(sigma2)
    for name, e in (("S1", w), ("S2", w2)):
        if e.min(initial=0.0) < -1e-6 * max(abs(e).max(initial=0.0), 1e-12):
            raise ValueError(
                f"Fréchet distance: covariance {name} is not positive semi-definite (eigenvalue "
                f"{e.min():.3g}); check the statistics (a covariance of features never is)"
            )
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # S1^(1/2)
    m = root @ sigma2 @ root
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64.

    The formula of pytorch-fid ``fid_score.calculate_frechet_distance``; the trace of the matrix
    square root comes from :func:`trace_sqrt_product` (symmetric eigendecompositions), which is
    exact where pytorch-fid's ``sqrtm`` needs an ``eps`` on singular products and can crash.
    ``eps`` is kept for the signature and unused. Non-finite statistics are an error."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"Fréchet distance: mismatched statistics mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}; both sets need the same feature network"
        )
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("Fréchet distance: the statistics hold NaN or inf; check the features")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_features(
    x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, wy: np.ndarray | None = None
) -> float:
    """FID between feature sets ``x [n1, F]`` and ``y [n2, F]`` (unbiased covariances), exactly.

    With fewer samples than dimensions the covariances ``Xc^T Xc`` and ``Yc^T Yc`` (centred,
    scaled by 1/sqrt(n-1)) have rank < n, and ``tr((S1 S2)^(1/2))`` equals the sum of the
    singular values of the small ``Xc Yc^T`` [n1, n2]: the nonzero eigenvalues of
    ``Xc^T Xc Yc^T Yc`` are those of ``(Xc Yc^T)(Xc Yc^T)^T``. So a bootstrap resample of a
    2-image run costs a 2x2 SVD, not a 2048-d matrix square root. Otherwise
    :func:`frechet_distance` on the covariances.

    ``wx``/``wy``: how many times each row counts (a bootstrap resample repeats images): the
    same value as the rows repeated, from the distinct rows only (a resample holds about 63%
    distinct images, so its SVD costs a quarter)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    wx = np.ones(len(x)) if wx is None else np.asarray(wx, np.float64)
    wy = np.ones(len(y)) if wy is None else np.asarray(wy, np.float64)
    n1, n2, f = wx.sum(), wy.sum(), x.shape[1]
    if min(n1, n2) < 2:
        raise ValueError(f"Fréchet distance needs at least 2 samples on each side, got {n1:g} and {n2:g}")
    mu1, mu2 = wx @ x / n1, wy @ y / n2
    xc = np.sqrt(wx)[:, None] * (x - mu1) / np.sqrt(n1 - 1)  # S1 = xc^T xc
    yc = np.sqrt(wy)[:, None] * (y - mu2) / np.sqrt(n2 - 1)
    if min(len(xc), len(yc)) >= f:
        return frechet_distance(mu1, xc.T @ xc, mu2, yc.T @ yc)
    if not (np.isfinite(xc).all() and np.isfinite(yc).all()):
        raise ValueError("Fréchet distance: the features hold NaN or inf; check the features")
    diff = mu1 - mu2
    nuclear = float(np.linalg.svd(xc @ yc.T, compute_uv=False).sum())
    return float(diff @ diff + (xc * xc).sum() + (yc * yc).sum() - 2 * nuclear)


def covariance_rank(x: np.ndarray, rtol: float = 1e-9) -> int:
    """The numerical rank of the sample covariance of ``x [n, F]`` (at most distinct rows - 1)."""
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return 0
    sv = np.linalg.svd(x - x.mean(0), compute_uv=False)
    return int((sv > rtol * max(sv.max(initial=0.0), 1e-300)).sum())


class FrechetDistance(Metric):
    """FID between a reference ("real") and a test ("fake") image set.

    ``features``: images ``[N, 3, H, W]`` in [-1, 1] -> ``[N, F]``; ``None`` means updates
    pass features directly. ``feature_dim`` pre-allocates the states (equal shapes on every
    rank, needed for ``all_reduce``); without it they are scalars until the first update.
    Covariances are unbiased (divide by n - 1), like ``np.cov`` in pytorch-fid.
    """

    key, higher_is_better = "fid", False

    def update_from(self, batch) -> None:
        """The batch's inputs are the reference set, its edits the test set (the paper's convention)."""
        self.update(real=batch.features_inputs(), fake=batch.features_edited())

    def __init__(
        self,
        features: FeatureFn | None = None,
        name: str = "features",
        feature_dim: int | None = None,
        eps: float = 1e-6,
    ):
        super().__init__()
        self.features, self.name, self.feature_dim, self.eps = features, name, feature_dim, eps
        f = feature_dim
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.tensor(0.0, dtype=torch.float64), "sum")
            self.add_state(
                f"{side}_sum",
                torch.zeros(f, dtype=torch.float64) if f else torch.tensor(0.0, dtype=torch.float64),
                "sum",
            )  # [F]
            self.add_state(
                f"{side}_outer",
                torch.zeros(f, f, dtype=torch.float64) if f else torch.tensor(0.0, dtype=torch.float64),
                "sum",
            )  # [F, F]

    @property
    def label(self) -> str:
        return f"FID ({self.name})"

    def _add(self, side: str, x) -> None:
        feats = _features(self.features, x, f"{self.label} {side}")  # [N, F]
        have = getattr(self, f"{side}_sum")
        known = self.feature_dim or next((t.shape[0] for t in (self.real_sum, self.fake_sum) if t.ndim), None)
        if known is not None and feats.shape[1] != known:
            raise ValueError(
                f"{self.label}: got {feats.shape[1]}-d features after {known}-d ones; one metric, one feature network"
            )
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + feats.shape[0])
        setattr(self, f"{side}_sum", have + feats.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + feats.T @ feats)

    def update(self, real=None, fake=None) -> None:
        """Add a batch to either or both sets (images, or features when ``features`` is None)."""
        if real is None and fake is None:
            raise ValueError(f"{self.label}.update needs real=... and/or fake=...")
        if real is not None:
            self._add("real", real)
        if fake is not None:
            self._add("fake", fake)

    def update_real(self, real) -> None:
        self._add("real", real)

    def update_fake(self, fake) -> None:
        self._add("fake", fake)

    def statistics(self, side: str) -> tuple[np.ndarray, np.ndarray, int]:
        """``(mu [F], sigma [F, F], n)`` of ``"real"`` or ``"fake"``."""
        n = int(getattr(self, f"{side}_n"))
        if n < 2:
            raise ValueError(f"{self.label}: the {side} set has {n} sample(s); a covariance needs at least 2")
        s, o = getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer")
        mu = s / n
        sigma = (o - n * torch.outer(mu, mu)) / (n - 1)
        sigma = (sigma + sigma.T) / 2  # exact symmetry; round-off in the sums can break it
        return mu.numpy(), sigma.numpy(), n

    def compute(self) -> float:
        (mu1, s1, n1), (mu2, s2, n2) = self.statistics("real"), self.statistics("fake")
        f = mu1.shape[0]
        if min(n1, n2) <= f:
            warnings.warn(
                f"{self.label}: {min(n1, n2)} samples for {f}-d features (real {n1}, fake {n2}); "
                f"the covariance is singular (rank <= n - 1) and FID is biased and unstable. "
                f"Use more than {f} images, or read KID, which is sane at small n.",
                SingularCovarianceWarning,
                stacklevel=2,
            )
        return frechet_distance(mu1, s1, mu2, s2, self.eps)


def kernel_distance(
    x: torch.Tensor, y: torch.Tensor, subset_size: int = 1000, n_subsets: int = 100, seed: int = 0
) -> tuple[float, float]:
    """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3 over random subsets: ``(mean, std)``.

    Bińkowski et al. 2018. Subset size min(n_x, n_y, ``subset_size``) drawn without
    replacement, ``n_subsets`` times (clean-fid ``kernel_distance`` / torch-fidelity
    ``kid_subset_size=1000, kid_subsets=100`` defaults). Per subset of size m:
    sum_{i!=j}(k(x_i,x_j) + k(y_i,y_j)) / (m (m-1)) - 2 sum_{i,j} k(x_i,y_j) / m^2.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    m = min(len(x), len(y), subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples in each set, got {len(x)} and {len(y)}")
    d = x.shape[1]
    g = torch.Generator().manual_seed(seed)
    ix = torch.stack([torch.randperm(len(x), generator=g)[:m] for _ in range(n_subsets)])  # [S, m]
    iy = torch.stack([torch.randperm(len(y), generator=g)[:m] for _ in range(n_subsets)])
    # Kernels batched over chunks of subsets: about 64 MB of gathered features and of each
    # [c, m, m] kernel at a time (100 subsets of 1,000 at once took 3.3 GB).
    chunk = max(1, int(2**23 // (m * max(d, m))))
    off = lambda k: k.sum((1, 2)) - k.diagonal(dim1=1, dim2=2).sum(1)  # noqa: E731
    mmd = []
    for s in range(0, n_subsets, chunk):
        xs, ys = x[ix[s : s + chunk]], y[iy[s : s + chunk]]  # [c, m, d]
        kxx = (xs @ xs.transpose(1, 2) / d + 1) ** 3  # [c, m, m]
        kyy = (ys @ ys.transpose(1, 2) / d + 1) ** 3
        kxy = (xs @ ys.transpose(1, 2) / d + 1) ** 3
        mmd.append((off(kxx) + off(kyy)) / (m * (m - 1)) - 2 * kxy.sum((1, 2)) / (m * m))  # [c]
    mmd = torch.cat(mmd)  # [S]
    return float(mmd.mean()), float(mmd.std(unbiased=False)) if n_subsets > 1 else 0.0


def cluster_kernel_distance(
    x: torch.Tensor, y: torch.Tensor, cx: np.ndarray, cy: np.ndarray, block: int = 2048
) -> float:
    """KID's MMD^2 (same cubic kernel) for samples that come in clusters: ``x [n, d]`` reference
    features, ``y [m, d]`` test features, ``cx [n]``/``cy [m]`` the test image each row belongs to.

    A run's reference set holds each input once per prompt and its test set several edits of
    each input, so the plain unbiased estimator (which drops only i = j) would count identical
    or paired samples as independent ones. Here every kernel mean runs over the pairs from
    *different* images only, which keeps the estimator unbiased for cluster-sampled data, and
    a bootstrap resample that repeats an image stays unbiased too.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    cx, cy = torch.as_tensor(np.asarray(cx)), torch.as_tensor(np.asarray(cy))
    if len(torch.unique(cx)) < 2 or len(torch.unique(cy)) < 2:
        raise ValueError("KID over clusters needs samples from at least 2 images on each side")
    d = x.shape[1]

    def mean_k(a, b, ca, cb):
        total, count = 0.0, 0
        for i in range(0, len(a), block):
            k = (a[i : i + block] @ b.T / d + 1) ** 3
            keep = ca[i : i + block, None] != cb[None, :]
            total += float(k[keep].sum())
            count += int(keep.sum())
        return total / count

    return mean_k(x, x, cx, cx) + mean_k(y, y, cy, cy) - 2 * mean_k(x, y, cx, cy)


class KernelDistance(Metric):
    """KID between a reference ("real") and a test ("fake") set; unbiased, sane at small n.

    Keeps the features (``"cat"`` states). ``compute()`` is the mean over subsets;
    ``compute_std()`` gives ``(mean, std)`` (torch-fidelity reports both).
    """

    key, higher_is_better = "kid", False

    def update_from(self, batch) -> None:
        self.update(real=batch.features_inputs(), fake=batch.features_edited())

    def __init__(
        self,
        features: FeatureFn | None = None,
        name: str = "features",
        subset_size: int = 1000,
        n_subsets: int = 100,
        seed: int = 0,
    ):
        super().__init__()
        if subset_size < 2 or n_subsets < 1:
            raise ValueError(f"KID: subset_size must be >= 2 and n_subsets >= 1, got {subset_size}, {n_subsets}")
        self.features, self.name = features, name
        self.subset_size, self.n_subsets, self.seed = subset_size, n_subsets, seed
        self.add_state("real_feats", [], "cat")  # list of [n_i, F]
        self.add_state("fake_feats", [], "cat")

    @property
    def label(self) -> str:
        return f"KID ({self.name})"

    def update(self, real=None, fake=None) -> None:
        if real is None and fake is None:
            raise ValueError(f"{self.label}.update needs real=... and/or fake=...")
        if real is not None:
            self.real_feats.append(_features(self.features, real, f"{self.label} real"))
        if fake is not None:
            self.fake_feats.append(_features(self.features, fake, f"{self.label} fake"))

    def update_real(self, real) -> None:
        self.update(real=real)

    def update_fake(self, fake) -> None:
        self.update(fake=fake)

    def compute_std(self) -> tuple[float, float]:
        if not self.real_feats or not self.fake_feats:
            raise ValueError(
                f"{self.label}: both sets need samples before compute() "
                f"(real {len(self.real_feats)} batches, fake {len(self.fake_feats)})"
            )
        x, y = torch.cat(self.real_feats), torch.cat(self.fake_feats)
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"{self.label}: real features are {x.shape[1]}-d, fake {y.shape[1]}-d")
        return kernel_distance(x, y, self.subset_size, self.n_subsets, self.seed)

    def compute(self) -> float:
        return self.compute_std()[0]
