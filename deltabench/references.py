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

import torch

from deltabench.methods import EditMethod
from deltabench.registry import REFERENCES


class Reference(EditMethod):
    """A reference row: a method of kind ``"reference"``. It is not fitted and edits no latent:
    it draws the images a perfect (or an absent) edit would give, scored at x1 only."""

    kind = "reference"
    description = ""
    needs: tuple[str, ...] = ()  # domain capabilities (deltabench.domainbase.CAPABILITIES)
    starts_from = "inversion"  # its starting image: "inversion" (G of the inverted latent) or "input"

    def __init__(self, domain, work_dir=".", seed: int = 0):
        super().__init__(domain, work_dir, seed)

    @classmethod
    def applies(cls, domain) -> bool:
        return all(domain.has(c) for c in cls.needs)

    def prompt_problem(self, prompts) -> tuple[str, str] | None:
        """Why this reference cannot score ``prompts`` and what would let it, or None."""
        return None

    def strength_for(self, scale: float) -> float:
        return float("nan")  # nothing to sweep

    def edit(self, w_plus, source, target, strength=None, images=None):
        raise TypeError(f"{self.name} is a reference: it draws images (edit_images), it edits no latent")

    def draw(self, prompt, inputs: torch.Tensor, start: torch.Tensor, params) -> torch.Tensor:
        raise NotImplementedError

    def edit_images(self, domain, prompt, w_plus, inputs, start, params, strength):
        with torch.no_grad():
            edited = self.draw(prompt, inputs, start, params)
        return edited, (inputs if self.starts_from == "input" else start)


class Inversion(Reference):
    name = "inversion"
    description = "the encoder's reconstruction, no edit"

    def draw(self, prompt, inputs, start, params):
        return start


class OracleEdit(Reference):
    # It edits the input itself, so its CLIP direction, disentanglement and identity readings are
    # taken from the input: the inversion's error is no part of a perfect edit.
    name = "oracle-edit"
    description = "the renderer with the target attribute set: a perfect edit"
    needs = ("renderer", "ground_truth")
    starts_from = "input"

    def prompt_problem(self, prompts):
        unnamed = next((p.target for p in prompts if not (p.attribute and p.value)), None)
        if unnamed is None:
            return None
        return (
            f"prompt {unnamed!r} names no attribute and value, so the renderer cannot draw its perfect edit",
            "give attribute,value columns in the prompts file",
        )

    def draw(self, prompt, inputs, start, params):
        if params is None:
            raise ValueError("the oracle-edit reference needs the test images' parameters (a synthetic world)")
        return self.domain.render_edit(params, prompt.attribute, prompt.value).to(inputs.device)


def reference_names() -> list[str]:
    return REFERENCES.names()


def get_reference(name: str) -> type[Reference]:
    return REFERENCES.get(name)


def for_domain(domain) -> tuple[str, ...]:
    """The references that apply to ``domain`` (oracle-edit needs a renderer and ground truth)."""
    return tuple(n for n in REFERENCES.names() if REFERENCES.get(n).applies(domain))


def parse(spec, domain) -> tuple[str, ...]:
    """``"auto"`` (every reference the domain has), ``"none"``, or a comma-separated list."""
    if spec is None or spec == "auto":
        return for_domain(domain)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        raise ValueError(
            f"--references: unknown reference(s) {unknown}; choose from {reference_names()}, 'auto' or 'none'"
        )
    missing = [n for n in names if n not in for_domain(domain)]
    if missing:
        needs = REFERENCES.get(missing[0]).needs
        lacks = [c for c in needs if not domain.has(c)]
        raise ValueError(
            f"--references: {missing} need a domain with {list(needs)}; {domain.name} ({domain.kind}) has no {lacks}"
        )
    return tuple(dict.fromkeys(names))


def render(
    name: str, domain, prompt, inputs: torch.Tensor, start: torch.Tensor, params
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edited, the starting image the edit is scored from)``."""
    return REFERENCES.get(name)(domain).edit_images(domain, prompt, None, inputs, start, params, float("nan"))
