"""DeltaEdit and its naive text-free baseline as benchmark methods."""

from __future__ import annotations

import hashlib
import json

import torch

from deltabench import sspace
from deltabench.methods import EditMethod
from deltabench.prompts import check_prompts
from deltaedit.train import DeltaEditConfig, train_deltamapper


class DeltaEdit(EditMethod):
    """Text-free trained DeltaMapper; text deltas at inference (Lyu et al., CVPR 2023).

    ``strength`` is α in s' = s + α·Δs'. ``beta`` > 0 zeroes the channels whose
    |fs3·Δt_raw| < β, as the official inference does (``scripts/inference.py`` lines 26-35 and
    80-84, ``scripts/inference_real.py`` lines 94-103 and 158-162): Δt_raw is the *raw*
    ``map_tool.GetDt`` difference t_target - t_neutral (``utils/map_tool.py`` lines 103-106),
    normalised only afterwards for the mapper's condition. ``beta=None``: the domain's default
    (``domain.method_defaults["deltaedit"]["beta"]``: 0.03, official ``options/test_options.py``
    line 18, on the real domains and on the shipped synthfaces world; 0 (off) where a world
    config sets none). ``relevance_dt``: threshold the raw Δt (``"raw"``, official) or the unit
    one (``"unit"``); ``None``: the domain's default, else ``"raw"`` on the real domains and
    ``"unit"`` on a world that names none.

    fs3 (``[S_edit, D]``, ``sspace.gather`` order), in this order: ``relevance`` (a tensor);
    ``relevance_file`` (a released ``fs3.npy``, ``baselines.gd.load_official_fs3``: a path or a
    registry name such as ``styleclip-fs3-ffhq.npy``, the file DeltaEdit ships as
    ``models/stylegan2/npy_ffhq/fs3.npy``); the domain's released one (``domain.released_fs3``:
    on ffhq ``styleclip-fs3-ffhq.npy`` when it lies next to the generator, as the official
    inference reads it); else the domain's own StyleCLIP-GD fs3, the one
    ``deltabench fit styleclip-gd`` caches in ``<work_dir>/styleclip-gd`` (computed there with the
    domain's styleclip-gd defaults when missing).

    ``checkpoint``: a released DeltaEdit ``net_face.pth`` (``deltaedit.official``) used instead
    of training. ``edit(..., images=x)``: on a domain with the official CLIP feed, the image
    embedding i1 of the condition comes from the input photos ``x`` (official
    ``scripts/inference_real.py`` lines 119 and 176-182: the photo at 256 px, Upsample(x7) +
    AvgPool(8), no mean/std) instead of the reconstruction G(s) (``scripts/inference.py``, whose
    ``delta_c`` holds the CLIP features of generated images).
    """

    name = "deltaedit"
    space = "S"
    naive = False
    config_class = DeltaEditConfig
    distributed_fit = True  # under torchrun, fit() trains with DDP on every rank (deltaedit.train)
    # inference_real.py line 42 / 119: Imagedataset(image_size=256) (transforms.Resize(256))
    PHOTO_SIZE = 256

    # edit(..., images=x): i1 from the input photo on real domains (official). Without a released
    # fs3, the β filter reads StyleCLIP-GD's: its domain defaults and its cache (_load_relevance).
    requires = {"styleclip-gd": "fs3 (the relevance matrix of the beta filter)"}

    def __init__(
        self,
        domain,
        work_dir,
        seed: int = 0,
        config: DeltaEditConfig | dict | None = None,
        beta: float | None = None,
        relevance: torch.Tensor | None = None,
        relevance_file: str | None = None,
        checkpoint: str | None = None,
        relevance_dt: str | None = None,
        **options,
    ):
        super().__init__(domain, work_dir, seed, **options)
        cfg = config if isinstance(config, DeltaEditConfig) else DeltaEditConfig.from_dict(dict(config or {}))
        if cfg.naive != self.naive:
            cfg = DeltaEditConfig.from_dict({**cfg.to_dict(), "naive": self.naive})
        self.cfg = cfg.resolve(domain)
        if beta is None:
            beta = dict(domain.method_defaults.get(self.name, {})).get("beta", 0.0)
        self.beta = float(beta)
        if self.beta < 0:
            raise ValueError(f"{self.name}: beta must be >= 0 (0: no relevance filter), got {self.beta}")
        if relevance_dt is None:  # the domain's default (as for beta), else the official raw Δt where
            # the domain follows the official code: edit, eval and run then filter alike
            relevance_dt = dict(domain.method_defaults.get(self.name, {})).get(
                "relevance_dt", "raw" if domain.official_clip_input else "unit"
            )
        if relevance_dt not in ("raw", "unit"):
            raise ValueError(f"{self.name}: relevance_dt must be 'raw' (official) or 'unit', got {relevance_dt!r}")
        self.relevance_dt = relevance_dt
        self.relevance = relevance
        self.relevance_file = None if relevance_file is None else str(relevance_file)
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        if self.checkpoint and (self.cfg.torgb or self.naive):
            raise ValueError(
                f"{self.name}: a released DeltaEdit checkpoint maps the non-toRGB channels with "
                f"the [i ; delta t] condition; it needs torgb=false and the deltaedit method"
            )
        self.relevance_info: dict | None = None
        self.mapper = None

    @property
    def run_dir(self):
        """Artifacts of this config and seed: ``<work_dir>/<hash>`` (a new config never clobbers an old one)."""
        blob = json.dumps({"config": self.cfg.to_dict(), "seed": self.seed}, sort_keys=True).encode()
        return self.work_dir / hashlib.sha256(blob).hexdigest()[:12]

    def fit(self) -> dict:
        if self.checkpoint:
            from deltabench.weights import sha256_file
            from deltaedit.official import load_official_checkpoint

            path = _resolve_file(self.checkpoint)
            self.mapper = load_official_checkpoint(
                path, self.domain.generator.slayout, map_location=self.domain.device
            ).to(self.domain.device)
            info = {"checkpoint": str(path), "sha256": sha256_file(path), "fit_seconds": 0.0}
        else:
            self.mapper, info = train_deltamapper(
                self.domain, self.cfg, self.run_dir, self.seed, pool_dir=self.work_dir.parent / "deltaedit-pools"
            )
        if self.beta > 0 and self.relevance is None:
            self.relevance, self.relevance_info = self._load_relevance()
        if self.beta > 0:
            info = {**info, "beta": self.beta, "relevance": self.relevance_info or {"source": "given"}}
        return info

    def _load_relevance(self) -> tuple[torch.Tensor, dict]:
        """fs3 for the β filter: the released file, else the domain's StyleCLIP-GD fs3."""
        from baselines.gd import FS3Config, fit_fs3, load_official_fs3

        G = self.domain.generator
        released = self.domain.released_fs3  # ffhq: the file the official inference reads
        if self.relevance_file or released is not None:
            path = _resolve_file(self.relevance_file) if self.relevance_file else released
            # pad=True: layers the file lacks get zero rows, so |fs3·Δt| = 0 < β zeroes them
            fs3 = load_official_fs3(path, G.slayout, pad=True)
            return fs3.to(self.domain.device), {
                "source": "relevance_file" if self.relevance_file else "released fs3",
                "path": str(path),
            }
        gd = self.defaults_of("styleclip-gd")
        cfg = FS3Config.from_dict(dict(gd.get("config", {})))
        if cfg.resolve(self.domain).torgb != self.cfg.torgb:
            cfg = FS3Config.from_dict({**cfg.to_dict(), "torgb": self.cfg.torgb})
        fs3, _, info = fit_fs3(self.domain, self.artefact_dir("styleclip-gd"), cfg)
        return fs3, {"source": "styleclip-gd fs3", "config": info.get("config"), "cached": info.get("cached")}

    def text_delta(self, source: str, target: str) -> torch.Tensor:
        """The raw text direction: ``[D]``, t_target - t_source (official ``map_tool.GetDt``,
        not normalised); the naive baseline's is the target embedding itself."""
        source, target = check_prompts(source, target)
        t_tgt = self.domain.text_embedding(target)
        if self.naive:
            return t_tgt
        return t_tgt - self.domain.text_embedding(source)  # official map_tool.GetDt: target - neutral

    def condition(self, source: str, target: str) -> torch.Tensor:
        """The text condition that replaces the image one at inference: ``[D]``."""
        dt = self.text_delta(source, target)
        if self.naive:
            return dt
        return dt / dt.norm().clamp_min(1e-5)  # official inference.py line 84

    def image_condition(self, styles: list[torch.Tensor], images: torch.Tensor | None = None) -> torch.Tensor:
        """i1 ``[B, D]`` (unit): of the input photos where given and the domain has the official
        CLIP feed (``inference_real.py``: photo resized to 256 px, no mean/std), else of the
        reconstruction G(s) (official feed on real domains, ``generate_codes.py`` lines 66-68)."""
        d = self.domain
        if images is not None and d.official_clip_input:
            x = images.to(d.device, torch.float32)
            if x.shape[-1] != self.PHOTO_SIZE or x.shape[-2] != self.PHOTO_SIZE:
                # transforms.Resize(256) of the uint8 photo (PIL bilinear), ToTensor, Normalize(0.5)
                from deltabench.imageio import official_resize

                x = official_resize(x, self.PHOTO_SIZE)
            e = d.encode_clip(x, official_input=True)
        else:
            x = d.generator.synthesis_from_styles(styles)
            if not self.cfg.official_clip:
                return d.clip.encode_image(x)  # unit already (synthfaces: bitwise as before)
            e = d.encode_clip(x, official_input=True)
        return e / e.norm(dim=-1, keepdim=True)  # inference_real.py line 182

    @torch.no_grad()
    def edit_batch(
        self,
        w_plus: torch.Tensor,
        prompts: list[tuple[str, str]],
        strength: float | None = None,
        images: torch.Tensor | None = None,
    ) -> list[list[torch.Tensor]]:
        """Every image x every prompt in one mapper call; returns styles per prompt. ``images``:
        the input photos ``w_plus`` was inverted from (``[B, 3, H, W]`` in [-1, 1]), for i1."""
        if self.mapper is None:
            raise RuntimeError(f"{self.name}: call fit() before edit()")
        alpha = self.default_strength if strength is None else float(strength)
        G = self.domain.generator
        styles = G.styles(w_plus.to(self.domain.device))
        s = sspace.gather(styles, G.slayout, self.cfg.torgb)  # [B, S]
        if images is not None and len(images) != len(s):
            raise ValueError(f"{self.name}: {len(images)} images for {len(s)} latents")
        i1 = self.image_condition(styles, images)  # [B, D] unit
        raw = torch.stack([self.text_delta(src, tgt) for src, tgt in prompts])  # [P, D]
        conds = torch.stack([self.condition(src, tgt) for src, tgt in prompts])  # [P, D], normalised
        B, P = s.shape[0], conds.shape[0]
        cond = torch.cat([i1[:, None].expand(B, P, -1), conds[None].expand(B, P, -1)], dim=2)
        ds = self.mapper(s[:, None].expand(B, P, -1).reshape(B * P, -1), cond.reshape(B * P, -1))
        ds = ds.reshape(B, P, -1)
        if self.beta > 0:
            if self.relevance is None:
                raise RuntimeError(
                    f"{self.name}: beta={self.beta} needs an fs3 relevance matrix; call fit() "
                    f"(it loads one) or pass relevance="
                )
            # fs3 rows are in sspace.gather order: the non-toRGB channels, then (if GD computed
            # them, FS3Config.torgb) the toRGB ones. The threshold is on the raw Δt
            # (inference.py lines 81-82: GetBoundary(fs3, GetDt(...)) before line 84 normalises).
            r = (raw if self.relevance_dt == "raw" else conds) @ self.relevance.to(raw).T  # [P, S_fs3]
            keep = (r.abs() >= self.beta).to(ds.dtype)[:, : ds.shape[2]]
            if keep.shape[1] < ds.shape[2]:  # toRGB columns without a relevance: kept
                keep = torch.cat([keep, keep.new_ones(P, ds.shape[2] - keep.shape[1])], dim=1)
            ds = ds * keep[None]
        return [sspace.scatter(styles, s + alpha * ds[:, p], G.slayout, self.cfg.torgb) for p in range(P)]

    def edit(self, w_plus, source, target, strength=None, images=None):
        return self.edit_batch(w_plus, [(source, target)], strength, images=images)[0]


def _resolve_file(name: str):
    """A path, or a weights-registry name (``deltabench weights fetch``)."""
    from pathlib import Path

    p = Path(name).expanduser()
    if p.exists():
        return p
    from deltabench.real.domain import resolve_weight

    return resolve_weight(name)


class DeltaEditNaive(DeltaEdit):
    """The paper's naive text-free baseline: the raw CLIP image embedding of the target as the
    pseudo text condition in training ([i1 ; i2]), the target text embedding at inference."""

    name = "deltaedit-naive"
    naive = True
