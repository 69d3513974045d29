"""DeltaEdit and its naive text-free baseline as benchmark methods."""
from __future__ import annotations

import hashlib
import json

import torch

from deltabench import sspace
from deltabench.methods import EditMethod
from deltaedit.train import DeltaEditConfig, train_deltamapper


def check_prompts(source: str, target: str) -> tuple[str, str]:
    for what, t in (("source", source), ("target", target)):
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"the {what} prompt is empty ({t!r}); give a text such as 'face' or 'face with glasses'")
    s, t = " ".join(source.split()), " ".join(target.split())
    if s.lower() == t.lower():
        raise ValueError(f"source and target prompts are the same ({s!r}): there is no edit direction")
    return s, t


class DeltaEdit(EditMethod):
    """Text-free trained DeltaMapper; text deltas at inference (Lyu et al., CVPR 2023).

    ``strength`` is α in s' = s + α·Δs'. ``beta`` > 0 with a StyleCLIP-GD ``relevance``
    matrix (fs3, ``[S_edit, D]``) zeroes the channels whose |fs3·Δt| < β, as the official
    ``scripts/inference.py`` does.
    """

    name = "deltaedit"
    space = "S"
    naive = False
    config_class = DeltaEditConfig
    distributed_fit = True  # under torchrun, fit() trains with DDP on every rank (deltaedit.train)

    def __init__(self, domain, work_dir, seed: int = 0, config: DeltaEditConfig | dict | None = None,
                 beta: float = 0.0, relevance: torch.Tensor | None = None, **options):
        super().__init__(domain, work_dir, seed, **options)
        cfg = config if isinstance(config, DeltaEditConfig) else DeltaEditConfig.from_dict(dict(config or {}))
        if cfg.naive != self.naive:
            cfg = DeltaEditConfig.from_dict({**cfg.to_dict(), "naive": self.naive})
        self.cfg = cfg.resolve(domain)
        self.beta = float(beta)
        self.relevance = relevance
        self.mapper = None

    @property
    def run_dir(self):
        """Artifacts of this config and seed: ``<work_dir>/<hash>`` (a new config never clobbers an old one)."""
        blob = json.dumps({"config": self.cfg.to_dict(), "seed": self.seed}, sort_keys=True).encode()
        return self.work_dir / hashlib.sha256(blob).hexdigest()[:12]

    def fit(self) -> dict:
        self.mapper, info = train_deltamapper(self.domain, self.cfg, self.run_dir, self.seed,
                                              pool_dir=self.work_dir.parent / "deltaedit-pools")
        return info

    def condition(self, source: str, target: str) -> torch.Tensor:
        """The text condition that replaces the image one at inference: ``[D]``."""
        source, target = check_prompts(source, target)
        t_tgt = self.domain.text_embedding(target)
        if self.naive:
            return t_tgt
        dt = t_tgt - self.domain.text_embedding(source)  # official map_tool.GetDt: target - neutral
        return dt / dt.norm().clamp_min(1e-5)

    @torch.no_grad()
    def edit_batch(self, w_plus: torch.Tensor, prompts: list[tuple[str, str]],
                   strength: float | None = None) -> list[list[torch.Tensor]]:
        """Every image x every prompt in one mapper call; returns styles per prompt."""
        if self.mapper is None:
            raise RuntimeError(f"{self.name}: call fit() before edit()")
        alpha = self.default_strength if strength is None else float(strength)
        G = self.domain.generator
        styles = G.styles(w_plus.to(self.domain.device))
        s = sspace.gather(styles, G.slayout, self.cfg.torgb)  # [B, S]
        i1 = self.domain.clip.encode_image(G.synthesis_from_styles(styles))  # [B, D] unit
        conds = torch.stack([self.condition(src, tgt) for src, tgt in prompts])  # [P, D]
        B, P = s.shape[0], conds.shape[0]
        cond = torch.cat([i1[:, None].expand(B, P, -1), conds[None].expand(B, P, -1)], dim=2)
        ds = self.mapper(s[:, None].expand(B, P, -1).reshape(B * P, -1), cond.reshape(B * P, -1))
        ds = ds.reshape(B, P, -1)
        if self.beta > 0 and self.relevance is not None:
            # fs3 rows are in sspace.gather order: the non-toRGB channels, then (if GD computed
            # them, FS3Config.torgb) the toRGB ones.
            r = conds @ self.relevance.to(conds).T  # [P, S_fs3]
            keep = (r.abs() >= self.beta).to(ds.dtype)[:, : ds.shape[2]]
            if keep.shape[1] < ds.shape[2]:  # toRGB columns without a relevance: kept
                keep = torch.cat([keep, keep.new_ones(P, ds.shape[2] - keep.shape[1])], dim=1)
            ds = ds * keep[None]
        return [sspace.scatter(styles, s + alpha * ds[:, p], G.slayout, self.cfg.torgb) for p in range(P)]

    def edit(self, w_plus, source, target, strength=None):
        return self.edit_batch(w_plus, [(source, target)], strength)[0]


class DeltaEditNaive(DeltaEdit):
    """The paper's naive text-free baseline: the raw CLIP image embedding of the target as the
    pseudo text condition in training ([i1 ; i2]), the target text embedding at inference."""

    name = "deltaedit-naive"
    naive = True
