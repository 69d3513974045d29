"""Fréchet distance (FID) and kernel distance (KID) on a pluggable feature network.

The feature function maps images ``[N, 3, H, W]`` in [-1, 1] to features ``[N, F]``: in
``synthfaces`` the world oracle's penultimate features, in ``ffhq`` pytorch-fid's InceptionV3
pool3 (2048-d). ``name`` says which, for the table header ("FID (oracle)").

FID keeps sufficient statistics (count, sum, sum of outer products) in float64, so two shards
merge by addition and memory is O(F^2) whatever N. KID needs the features themselves.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import scipy.linalg
import torch

from deltabench.metrics.base import Metric

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


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


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """d^2 = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64.

    Follows pytorch-fid ``fid_score.calculate_frechet_distance`` (the stable version by
    D. J. Sutherland): ``scipy.linalg.sqrtm`` of S1 S2; if that is not finite (a singular
    product), retry with ``eps`` added to both diagonals; imaginary parts from round-off are
    dropped when the diagonal's are below 1e-3, otherwise it is an error.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"Fréchet distance: mismatched statistics mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}; both sets need the same feature network")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's own "singular matrix" chatter
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            warnings.warn(f"Fréchet distance: S1 S2 is singular; adding {eps} to the covariance diagonals",
                          SingularCovarianceWarning, stacklevel=2)
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Fréchet distance: matrix square root has a large imaginary component "
                             f"({np.abs(covmean.imag).max():.3g}); the covariances are not positive "
                             f"semi-definite, use more samples or check the features")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


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

    def __init__(self, features: FeatureFn | None = None, name: str = "features",
                 feature_dim: int | None = None, eps: float = 1e-6):
        super().__init__()
        self.features, self.name, self.feature_dim, self.eps = features, name, feature_dim, eps
        f = feature_dim
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.tensor(0.0, dtype=torch.float64), "sum")
            self.add_state(f"{side}_sum", torch.zeros(f, dtype=torch.float64) if f else
                           torch.tensor(0.0, dtype=torch.float64), "sum")  # [F]
            self.add_state(f"{side}_outer", torch.zeros(f, f, dtype=torch.float64) if f else
                           torch.tensor(0.0, dtype=torch.float64), "sum")  # [F, F]

    @property
    def label(self) -> str:
        return f"FID ({self.name})"

    def _add(self, side: str, x) -> None:
        feats = _features(self.features, x, f"{self.label} {side}")  # [N, F]
        have = getattr(self, f"{side}_sum")
        known = self.feature_dim or next((t.shape[0] for t in (self.real_sum, self.fake_sum) if t.ndim), None)
        if known is not None and feats.shape[1] != known:
            raise ValueError(f"{self.label}: got {feats.shape[1]}-d features after {known}-d ones; "
                             f"one metric, one feature network")
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

    def set_real_statistics(self, mu: np.ndarray, sigma: np.ndarray, n: int) -> None:
        """Use precomputed reference statistics (e.g. a pytorch-fid ``.npz``: ``mu``, ``sigma``)."""
        mu = torch.as_tensor(np.asarray(mu), dtype=torch.float64)
        sigma = torch.as_tensor(np.asarray(sigma), dtype=torch.float64)
        if n < 2:
            raise ValueError(f"{self.label}: reference statistics need n >= 2 samples, got {n}")
        self.real_n = torch.tensor(float(n), dtype=torch.float64)
        self.real_sum = mu * n
        self.real_outer = sigma * (n - 1) + n * torch.outer(mu, mu)

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
            warnings.warn(f"{self.label}: {min(n1, n2)} samples for {f}-d features (real {n1}, fake {n2}); "
                          f"the covariance is singular (rank <= n - 1) and FID is biased and unstable. "
                          f"Use more than {f} images, or read KID, which is sane at small n.",
                          SingularCovarianceWarning, stacklevel=2)
        return frechet_distance(mu1, s1, mu2, s2, self.eps)


def kernel_distance(x: torch.Tensor, y: torch.Tensor, subset_size: int = 1000, n_subsets: int = 100,
                    seed: int = 0) -> tuple[float, float]:
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


def cluster_kernel_distance(x: torch.Tensor, y: torch.Tensor, cx: np.ndarray, cy: np.ndarray,
                            block: int = 2048) -> float:
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

    def __init__(self, features: FeatureFn | None = None, name: str = "features", subset_size: int = 1000,
                 n_subsets: int = 100, seed: int = 0):
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
            raise ValueError(f"{self.label}: both sets need samples before compute() "
                             f"(real {len(self.real_feats)} batches, fake {len(self.fake_feats)})")
        x, y = torch.cat(self.real_feats), torch.cat(self.fake_feats)
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"{self.label}: real features are {x.shape[1]}-d, fake {y.shape[1]}-d")
        return kernel_distance(x, y, self.subset_size, self.n_subsets, self.seed)

    def compute(self) -> float:
        return self.compute_std()[0]
