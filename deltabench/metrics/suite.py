"""The metric set of one (method, prompt) cell of a benchmark run.

``build_metrics(domain, prompt)`` gives a :class:`MetricSuite`: every metric of the paper's
table (FID, PSNR, IDS where the domain has identity) and ours (KID, SSIM, CLIP score, CLIP
direction and, in a domain with ground truth (the synthetic worlds), manipulation accuracy,
disentanglement, identity-parameter error, identity regression), fed from one
``update(inputs, edited, ...)`` per batch. ``update`` returns the batch's per-image scores
(one results row per image); ``compute()`` gives the cell's summary; suites merge like
metrics (per rank, or per prompt into per method).

What is compared with what:
- ``inputs`` (the test images the user gave) vs ``edited``: PSNR, SSIM, IDS, and FID/KID with
  the inputs as the reference set (the paper's convention).
- ``start`` (the method's starting image, G of the inversion; ``inputs`` when not given) vs
  ``edited``: CLIP direction and the oracle's source readings for disentanglement and
  identity-parameter error, so the inversion's own error, the same for every method, is
  not counted as part of the edit (``deltabench.evaluate`` does the same).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from deltabench.metrics.attributes import Disentanglement, IdentityParamError, IdentityRegression, ManipulationAccuracy
from deltabench.metrics.base import Metric
from deltabench.metrics.clip_score import ClipScore, DirectionalClipScore
from deltabench.metrics.fid import FrechetDistance, KernelDistance
from deltabench.metrics.identity import IdentitySimilarity
from deltabench.metrics.image import PSNR, SSIM
from deltabench.metrics.record import EditBatch
from deltabench.registry import METRICS

# The table's metrics, in column order (the registry's): each class declares its key, label and
# direction, and is registered under its key.
METRIC_CLASSES = tuple(METRICS.get(k) for k in METRICS.builtins)
HIGHER_IS_BETTER: dict[str, bool] = {c.key: c.higher_is_better for c in METRIC_CLASSES}
assert all(k == c.key for k, c in zip(METRICS.builtins, METRIC_CLASSES)), "a metric registered under another key"


def fid_features(domain) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """The domain's Fréchet-distance feature network and its name for the column header.

    Every domain declares its own (the contract's ``fid_features``, ``fid_feature_name``:
    pytorch-fid InceptionV3 pool3 in ``ffhq``, the oracle's penultimate features in a synthetic
    world).
    """
    if domain.fid_features is None:
        raise ValueError(f"domain {domain.name!r} has no feature network for FID (its fid_features is None)")
    return domain.fid_features, domain.fid_feature_name


class MetricSuite:
    """Named metrics of one cell, updated together; see the module docstring."""

    def __init__(
        self,
        domain,
        metrics: dict[str, Metric],
        features: Callable | None = None,
        attribute: int | None = None,
        value: int | None = None,
    ):
        self.domain, self.metrics, self.features = domain, metrics, features
        self.attribute, self.value = attribute, value
        if ("fid" in metrics or "kid" in metrics) and features is None:
            raise ValueError("MetricSuite: FID/KID need a feature function (features=...)")

    def labels(self) -> dict[str, str]:
        """Column headers, e.g. ``{"fid": "FID (oracle)", "psnr": "PSNR", ...}``."""
        return {k: m.label for k, m in self.metrics.items()}

    @torch.no_grad()
    def update(
        self,
        inputs: torch.Tensor,
        edited: torch.Tensor,
        start: torch.Tensor | None = None,
        params=None,
        cache: dict | None = None,
    ) -> dict[str, torch.Tensor]:
        """Score a batch. ``inputs, edited, start: [N, 3, H, W]`` in [-1, 1]; ``params``: the
        inputs' ground-truth ``FaceParams`` (synthfaces; images that already have the target
        value are left out of manipulation accuracy). ``cache``: a dict the caller keeps per
        input batch and passes to every (method, prompt) cell, so the inputs' and starts'
        embeddings, features and oracle readings are computed once.

        Every metric is updated from one :class:`EditBatch` record. Returns per-image scores
        ``{name: float64 [N]}`` (NaN where an image is not counted).
        """
        if inputs.shape != edited.shape:
            raise ValueError(f"inputs {tuple(inputs.shape)} and edits {tuple(edited.shape)} differ in shape")
        batch = EditBatch(
            self.domain,
            inputs,
            edited,
            inputs if start is None else start,
            self.features,
            params,
            self.attribute,
            self.value,
            {} if cache is None else cache,
        )
        out: dict[str, torch.Tensor] = {}
        for k, m in self.metrics.items():
            scores = m.update_from(batch)
            if scores is not None:
                out[k] = scores
        return out

    def compute(self) -> dict[str, float]:
        return {k: float(m.compute()) for k, m in self.metrics.items()}

    def merge(self, other: MetricSuite) -> MetricSuite:
        if set(other.metrics) != set(self.metrics):
            raise ValueError(
                f"cannot merge metric suites with different metrics: {sorted(self.metrics)} vs {sorted(other.metrics)}"
            )
        for k, met in self.metrics.items():
            met.merge(other.metrics[k])
        return self

    def state_dict(self) -> dict:
        return {k: m.state_dict() for k, m in self.metrics.items()}

    def load_state_dict(self, d: dict) -> None:
        for k, m in self.metrics.items():
            m.load_state_dict(d[k])

    @classmethod
    def from_state(cls, d: dict, seed: int = 0, feature_name: str = "features") -> MetricSuite:
        """The suite a ``state_dict()`` was saved from, rebuilt from the metric registry without
        any model (no domain, no feature network, no text embedding): it merges and computes,
        and cannot ``update``. ``seed``: the seed the suite was built with (KID's subsets);
        ``feature_name``: the FID/KID feature network's name, for their labels."""
        suite = cls.__new__(cls)
        suite.domain = suite.features = suite.attribute = suite.value = None
        suite.metrics = {k: METRICS.get(k).from_state(state, seed=seed, name=feature_name) for k, state in d.items()}
        return suite


def build_metrics(
    domain,
    prompt=None,
    source_emb: torch.Tensor | None = None,
    target_emb: torch.Tensor | None = None,
    kid_subset_size: int = 1000,
    kid_subsets: int = 100,
    seed: int = 0,
    only: tuple[str, ...] | None = None,
) -> MetricSuite:
    """The metric set of one (method, prompt) cell.

    ``prompt``: an ``EditPrompt`` (``source``, ``target``, and in synthfaces ``attribute``,
    ``value`` for the ground-truth metrics); ``source_emb``/``target_emb`` (``[D]``) override its
    text embeddings, which default to ``domain.text_embedding`` (template-averaged). Without a
    prompt and embeddings, only the text-free metrics are built.
    """
    feat, feat_name = fid_features(domain)
    # Pre-allocated FID states have one shape on every rank (all_reduce needs that).
    feat_dim = domain.fid_feature_dim
    # The suite extracts FID/KID features itself (once per input batch through the cache),
    # so the metrics take features directly.
    metrics: dict[str, Metric] = {
        FrechetDistance.key: FrechetDistance(None, feat_name, feature_dim=feat_dim),
        KernelDistance.key: KernelDistance(None, feat_name, kid_subset_size, kid_subsets, seed),
        PSNR.key: PSNR(),
        SSIM.key: SSIM(),
    }
    if domain.identity is not None:  # IDS exactly where the domain declares identity (none on LSUN, church)
        metrics[IdentitySimilarity.key] = IdentitySimilarity(domain.identity.embed)
    if source_emb is None and prompt is not None:
        source_emb = domain.text_embedding(prompt.source)
    if target_emb is None and prompt is not None:
        target_emb = domain.text_embedding(prompt.target)
    if target_emb is not None:
        metrics[ClipScore.key] = ClipScore(domain.clip_image, target_emb)
    if source_emb is not None and target_emb is not None:
        metrics[DirectionalClipScore.key] = DirectionalClipScore(domain.clip_image, source_emb, target_emb)
    attr = value = None
    if prompt is not None and prompt.attribute and domain.has("ground_truth"):
        attr, value = domain.attribute_code(prompt.attribute, prompt.value)
        for c in (ManipulationAccuracy, Disentanglement, IdentityParamError, IdentityRegression):
            metrics[c.key] = c()
    order = list(HIGHER_IS_BETTER)
    metrics = dict(sorted(metrics.items(), key=lambda kv: order.index(kv[0])))
    if only is not None:  # a subset, e.g. the ground-truth metrics alone (deltabench.evaluate)
        metrics = {k: m for k, m in metrics.items() if k in only}
    return MetricSuite(domain, metrics, feat, attr, value)
