"""Ground-truth evaluation of edit methods on the synthetic world, per prompt.

Every test image is a renderer face with known parameters. It is inverted with the world's
encoder; each method edits the inverted latent; the oracle reads the attributes of the
method's starting image (G of the inversion) and of the edit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from deltabench.metrics.attributes import Disentanglement, IdentityParamError, ManipulationAccuracy
from deltabench.utils import progress
from deltabench.world.attributes import attribute, attribute_index
from deltabench.world.train_oracle import oracle_predict


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
    n_needed: int
    n: int
    ms_per_edit: float


@torch.no_grad()
def evaluate_prompts(method, domain, prompts, n_images: int = 200, seed: int = 0,
                     strength: float | None = None, batch: int = 100) -> list[PromptResult]:
    """Edit ``n_images`` held-out faces with every prompt; one result per prompt."""
    G = domain.generator
    test = domain.test_images(n_images, seed)
    w = domain.invert(test.images)  # [N, L, D]
    src_attrs, src_ident = oracle_predict(domain.oracle, G.synthesis(w))
    src_attrs, src_ident = torch.from_numpy(src_attrs), torch.from_numpy(src_ident)
    pairs = [(p.source, p.target) for p in prompts]
    edited = [[] for _ in prompts]
    t0 = time.perf_counter()
    for i in progress(range(0, n_images, batch), desc=f"edit {method.name}"):
        wb = w[i : i + batch]
        styles_per_prompt = (method.edit_batch(wb, pairs, strength) if hasattr(method, "edit_batch")
                             else [method.edit(wb, s, t, strength) for s, t in pairs])
        for p, styles in enumerate(styles_per_prompt):
            edited[p].append(G.synthesis_from_styles(styles))
    ms = (time.perf_counter() - t0) * 1000 / max(1, n_images * len(prompts))
    out = []
    for p, prompt in enumerate(prompts):
        imgs = torch.cat(edited[p])
        e_attrs, e_ident = (torch.from_numpy(x) for x in oracle_predict(domain.oracle, imgs))
        a = attribute_index(prompt.attribute)
        v = attribute(prompt.attribute).index(prompt.value)
        needed = torch.from_numpy(test.params.attrs[:, a] != v)
        acc, dis, ide = ManipulationAccuracy(), Disentanglement(), IdentityParamError()
        acc.update(e_attrs, a, v, needed)
        dis.update(e_attrs, src_attrs, a)
        ide.update(e_ident, src_ident)
        out.append(PromptResult(method.name, prompt.source, prompt.target, prompt.attribute, prompt.value,
                                acc.compute(), dis.compute(), ide.compute(), int(needed.sum()), n_images, ms))
    return out
