"""``deltabench world card``: measure a loaded world against the ground truth it knows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deltabench.pixels import psnr
from deltabench.utils import float_to_uint8
from deltabench.world.kind import Params
from deltabench.world.world import World


def _batched(fn, params: Params, batch: int = 64) -> torch.Tensor:
    return torch.cat([fn(params[i : i + batch]) for i in range(0, len(params), batch)])


@torch.no_grad()
def world_card(world: World, n: int = 512, seed: int = 10_000) -> dict:
    """The world card: held-out quality of every model, on fresh scenes drawn from ``seed``.

    ``seed`` is far from the build seeds so nothing here was seen in training.
    """
    from deltabench.world.train_clip import clip_identity, clip_zeroshot
    from deltabench.world.train_identity import identity_auc
    from deltabench.world.train_oracle import oracle_accuracy

    params = world.sample_params(n, seed)
    real = _batched(world.render, params)  # [n, 3, H, W]
    fake = _batched(world.generate, params)  # [n, 3, H, W]
    recon = _batched(lambda p: world.generator.synthesis(world.encoder(world.render(p))), params)

    def oracle_agreement(images: torch.Tensor) -> dict:
        return oracle_accuracy(world.oracle, images, params)

    card = {
        "world": world.cfg.name,
        "config_hash": world.cfg.hash,
        "path": str(world.path),
        "n": n,
        "seed": seed,
        "generator_psnr": float(psnr(fake, real).mean()),
        "encoder_psnr": float(psnr(recon, real).mean()),
        "oracle_on_generated": oracle_agreement(fake),
        "oracle_on_rendered": oracle_agreement(real),
        "clip_zeroshot": clip_zeroshot(world.clip, n=n, seed=seed + 1, resolution=world.resolution, kind=world.kind),
        # The same with short edit-style prompts ("face with glasses"), what editing feeds CLIP.
        "clip_zeroshot_short": clip_zeroshot(
            world.clip, n=n, seed=seed + 1, resolution=world.resolution, style="short", kind=world.kind
        ),
        # Only where the world has an identity model (faces); a kind without one has no IDS.
        **(
            {
                "identity_auc": float(
                    identity_auc(world.identity, n_pairs=n, seed=seed + 2, resolution=world.resolution, kind=world.kind)
                )
            }
            if world.identity is not None
            else {}
        ),
        # Who a face is, as the CLIP image embedding sees it: held-out R^2 of a ridge read-out of
        # each identity parameter (2,500 train / 500 test renderer faces), and the mean cosine of
        # faces with identical attributes and independent identity (1.0: identity-blind).
        # (in a kind without identity: its continuous, caption-free parameters, e.g. building width)
        **{
            f"clip_identity_{k}": v
            for k, v in clip_identity(world.clip, seed=seed + 3, resolution=world.resolution, kind=world.kind).items()
        },
        "build_seconds": world.manifest["build_seconds"]["total"],
        "build_seconds_per_stage": {
            k: v for k, v in world.manifest["build_seconds"].items() if k not in ("total", "wall_this_invocation")
        },
        "files_bytes": sum(f["bytes"] for f in world.manifest["files"].values()),
    }
    return card


CARD_ROWS = ("renderer", "generator", "encoder (recon.)")


@torch.no_grad()
def comparison_grid(world: World, n: int = 8, seed: int = 10_000, scale: int | None = None) -> np.ndarray:
    """Rows: renderer faces, generator faces for the same parameters, encoder reconstructions;
    each row labelled (:data:`CARD_ROWS`) in a margin on the left. ``scale``: the integer
    nearest-neighbour enlargement of every face (None: up to 128 px, so 64 px faces are 2x)."""
    from deltabench.viz import label_grid, upscale

    params = world.sample_params(n, seed)
    real = world.render(params)
    rows = [real, world.generate(params), world.generator.synthesis(world.encoder(real))]
    tiles = float_to_uint8(torch.cat(rows))  # [3n, H, W, 3]
    scale = scale or max(1, 128 // tiles.shape[1])
    if scale > 1:
        tiles = np.stack([upscale(t, scale) for t in tiles])
    return label_grid(tiles, nrow=n, row_labels=list(CARD_ROWS), pad=min(2 * scale, 4), font_size=14)


def save_comparison_grid(world: World, path: Path, n: int = 8, seed: int = 10_000, scale: int | None = None) -> Path:
    """:func:`comparison_grid` written as a PNG at ``path``."""
    from deltabench.viz import save_png

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(comparison_grid(world, n, seed, scale), path)
    return path
