"""Ground-truth evaluation of edit methods on the synthetic world, per prompt.

Every test image is a renderer face with known parameters. It is inverted with the world's
encoder; each method edits the inverted latent; the oracle reads the attributes of the
method's starting image (G of the inversion) and of the edit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deltabench.metrics.suite import build_metrics
from deltabench.utils import progress


@dataclass(frozen=True)
class PromptResult:
    method: str
    source: str
    target: str
    attribute: str
    value: str
    manipulation_accuracy: float
    disentanglement: float
    identity_param_error: float
    identity_regression: float
    n_needed: int
    n: int
    ms_per_edit: float


GROUND_TRUTH = ("manipulation_accuracy", "disentanglement", "identity_param_error", "identity_regression")


@torch.no_grad()
def evaluate_prompts(
    method, domain, prompts, n_images: int = 200, seed: int = 0, strength: float | None = None, batch: int = 100
) -> list[PromptResult]:
    """Edit ``n_images`` held-out faces with every prompt; one result per prompt.

    The scores are the run's own metric suite (``build_metrics``) restricted to the ground-truth
    metrics, fed batch by batch; the starts' oracle readings are shared by every prompt."""
    G = domain.generator
    test = domain.test_images(n_images, seed)
    pairs = [(p.source, p.target) for p in prompts]
    suites = [build_metrics(domain, p, seed=seed, only=GROUND_TRUTH) for p in prompts]
    t_edit = 0.0
    for i in progress(range(0, n_images, batch), desc=f"edit {method.name}"):
        b = min(i + batch, n_images)
        x = test.batch(i, b)
        w = test.invert(domain, i, b)  # [B, L, D]
        start = G.synthesis(w)
        t0 = time.perf_counter()
        styles_per_prompt = method.edit_batch(w, pairs, strength)
        edited = [G.synthesis_from_styles(styles) for styles in styles_per_prompt]
        t_edit += time.perf_counter() - t0
        shared: dict = {}
        for suite, e in zip(suites, edited):
            suite.update(x, e, start, params=test.params[i:b], cache=shared)
    ms = t_edit * 1000 / max(1, n_images * len(prompts))
    out = []
    for prompt, suite in zip(prompts, suites):
        a, v = domain.attribute_code(prompt.attribute, prompt.value)
        needed = int((test.params.attrs[:, a] != v).sum())
        r = suite.compute()
        out.append(
            PromptResult(
                method.name,
                prompt.source,
                prompt.target,
                prompt.attribute,
                prompt.value,
                r["manipulation_accuracy"],
                r["disentanglement"],
                r["identity_param_error"],
                r["identity_regression"],
                needed,
                n_images,
                ms,
            )
        )
    return out
