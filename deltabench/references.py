"""Reference rows of a run: what doing nothing and what a perfect edit score.

- ``inversion``: the encoder's reconstruction with no edit (G of the inverted latent, every
  method's starting image). Its PSNR, IDS and FID are the floor that inversion alone costs;
  no edit method can keep more of the input than this.
- ``oracle-edit`` (domains with a renderer and ground truth: the synthetic worlds): the renderer
  drawing the same scene with the prompt's target attribute set and everything else, identity
  (the continuous parameters) included, unchanged: what a perfect edit scores on PSNR, IDS, FID,
  manipulation accuracy and disentanglement.

A reference is scored by the same metric suite as the methods, at the default strength only
(there is nothing to sweep), and every table and plot marks it as a reference.
"""
from __future__ import annotations

from typing import Callable

import torch

# name -> (description, domain capabilities it needs (deltabench.domainbase.CAPABILITIES),
#          render(domain, prompt, inputs, start, params),
#          its starting image: "inversion" (G of the inverted latent, as every method) or "input")
Render = Callable[[object, object, torch.Tensor, torch.Tensor, object], torch.Tensor]


def _inversion(domain, prompt, inputs: torch.Tensor, start: torch.Tensor, params) -> torch.Tensor:
    return start


def _oracle_edit(domain, prompt, inputs: torch.Tensor, start: torch.Tensor, params) -> torch.Tensor:
    if params is None:
        raise ValueError("the oracle-edit reference needs the test images' parameters (a synthetic world)")
    return domain.render_edit(params, prompt.attribute, prompt.value).to(inputs.device)


REFERENCES: dict[str, tuple[str, tuple[str, ...], Render, str]] = {
    "inversion": ("the encoder's reconstruction, no edit", (), _inversion, "inversion"),
    # It edits the input itself, so its CLIP direction, disentanglement and identity readings are
    # taken from the input: the inversion's error is no part of a perfect edit.
    "oracle-edit": ("the renderer with the target attribute set: a perfect edit", ("renderer", "ground_truth"),
                    _oracle_edit, "input"),
}


def reference_names() -> list[str]:
    return list(REFERENCES)


def for_domain(domain) -> tuple[str, ...]:
    """The references that apply to ``domain`` (oracle-edit needs a renderer and ground truth)."""
    return tuple(n for n, (_, needs, _, _) in REFERENCES.items() if all(domain.has(c) for c in needs))


def parse(spec, domain) -> tuple[str, ...]:
    """``"auto"`` (every reference the domain has), ``"none"``, or a comma-separated list."""
    if spec is None or spec == "auto":
        return for_domain(domain)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        raise ValueError(f"--references: unknown reference(s) {unknown}; choose from {reference_names()}, "
                         f"'auto' or 'none'")
    missing = [n for n in names if n not in for_domain(domain)]
    if missing:
        lacks = [c for c in REFERENCES[missing[0]][1] if not domain.has(c)]
        raise ValueError(f"--references: {missing} need a domain with {list(REFERENCES[missing[0]][1])}; "
                         f"{domain.name} ({domain.kind}) has no {lacks}")
    return tuple(dict.fromkeys(names))


def render(name: str, domain, prompt, inputs: torch.Tensor, start: torch.Tensor, params) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edited, the starting image the edit is scored from)``."""
    _, _, fn, starts_from = REFERENCES[name]
    return fn(domain, prompt, inputs, start, params), (inputs if starts_from == "input" else start)
