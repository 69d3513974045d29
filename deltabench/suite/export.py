"""``deltabench suite export``: a run's test set, with its ground truth, as files any tool reads.

The images and parameters are those a ``deltabench run`` with the same world, seed and number of
images edits and scores (the domain's ``test_images`` at the run's test seed); the prompts are
the run's default (the domain's benchmark prompts) unless given. See :mod:`deltabench.suite.format`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from deltabench.suite.format import (
    FORMAT,
    MASK_DILATE,
    MASK_RULE,
    MASK_THRESHOLD,
    VERSION,
    edit_id,
    instruction,
    sha256,
)

# The run's test images are drawn at seed + 1 (deltabench.runner: ``domain.test_images(cfg.images,
# seed=cfg.seed + 1)``); the suite takes the same ones (tests/test_suite.py checks it against a run).
TEST_SEED_OFFSET = 1


def change_mask(
    before: torch.Tensor, after: torch.Tensor, threshold: int = MASK_THRESHOLD, dilate: int = MASK_DILATE
) -> np.ndarray:
    """``bool [N, H, W]``: the mask rule (:data:`deltabench.suite.format.MASK_RULE`) for renders
    ``before, after: [N, 3, H, W]`` in [-1, 1] (uint8 images, so compared in uint8 levels)."""
    from deltabench.utils import float_to_uint8

    diff = np.abs(float_to_uint8(after).astype(np.int16) - float_to_uint8(before).astype(np.int16)).max(-1)
    changed = torch.from_numpy(diff > threshold).float()[:, None]  # [N, 1, H, W]
    if dilate > 0:
        changed = torch.nn.functional.max_pool2d(changed, 2 * dilate + 1, stride=1, padding=dilate)
    return changed[:, 0].numpy() > 0


def _check_prompts(prompts, domain) -> tuple:
    """Every prompt names its ground-truth attribute and value (masks and accuracy need them); one
    without them takes them from the domain's edit prompt with the same target text."""
    from deltabench.prompts import Prompt

    known = {p.target: p for p in domain.all_edit_prompts()}
    out = []
    for p in prompts:
        if not (p.attribute and p.value):
            if p.target not in known:
                raise ValueError(
                    f"--prompts: {p.target!r} names no attribute and value and is not an edit prompt of "
                    f"{domain.name}; a suite needs each edit's ground truth: give attribute,value "
                    f"columns (see `deltabench world describe --world {domain.name}`)"
                )
            k = known[p.target]
            p = Prompt(p.source, p.target, k.attribute, k.value)
        domain.attribute_code(p.attribute, p.value)  # an unknown attribute or value: an error naming the known ones
        out.append(p)
    seen = set()
    for p in out:
        if (p.source, p.target) in seen:
            raise ValueError(f"--prompts: {p.source!r} -> {p.target!r} is given twice; give each edit once")
        seen.add((p.source, p.target))
    return tuple(out)


def export_suite(
    world: str = "synthfaces",
    out=None,
    images: int = 32,
    prompts=None,
    seed: int = 0,
    device: str = "auto",
    force: bool = False,
    log=print,
) -> Path:
    """Write the suite of ``world`` (``images`` test images at ``seed``, ``prompts`` as
    :func:`deltabench.run` takes them: None for the domain's benchmark prompts, ``"all"``, a file
    or a list) into ``out``; return ``out``. ``force``: replace a suite already there."""
    from deltabench import __version__
    from deltabench.domain import load_domain
    from deltabench.prompts import as_prompts
    from deltabench.utils import float_to_uint8, resolve_device, seed_everything
    from deltabench.world import store

    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise ValueError(f"--images must be a whole number of at least 2 (as a run's), got {images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a whole number >= 0, got {seed!r}")
    if out is None:
        raise ValueError("--out: give the folder to write the suite to")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a new folder")
    if out.is_dir() and any(out.iterdir()):
        from deltabench.suite.format import is_suite

        if not (force and is_suite(out)):
            raise ValueError(
                f"--out {out} is not empty"
                + ("; add --force to replace the suite in it" if is_suite(out) else "; give a new or empty folder")
            )
    every = isinstance(prompts, str) and prompts == "all"
    plist = () if prompts is None or every else as_prompts(prompts)
    domain = load_domain(str(world), device=resolve_device(device))
    if not (domain.has("ground_truth") and domain.has("renderer")):
        raise ValueError(
            f"--world {world}: a suite carries ground truth (parameters, masks), which only a synthetic "
            f"world has; {domain.name} ({domain.kind}) has none"
        )
    if not plist:
        from deltabench.runner import default_prompts

        plist = default_prompts(domain, every)
    plist = _check_prompts(plist, domain)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    from PIL import Image

    seed_everything(seed)  # as the runner does before it draws the test images
    test = domain.test_images(images, seed=seed + TEST_SEED_OFFSET)
    params = test.params
    entries, batch = [], 64
    with torch.no_grad():
        for a in range(0, images, batch):
            b = min(a + batch, images)
            x = test.batch(a, b)  # [n, 3, R, R] in [-1, 1]
            for k, img in enumerate(float_to_uint8(x)):
                Image.fromarray(img).save(tmp / f"images/{a + k:05d}.png")
            for j, p in enumerate(plist):
                col, val = domain.attribute_code(p.attribute, p.value)
                after = domain.render_edit(params[a:b], p.attribute, p.value).to(x.device)
                masks = change_mask(x, after)
                for k, m in enumerate(masks):
                    i = a + k
                    eid = edit_id(i, j)
                    Image.fromarray((m * 255).astype(np.uint8)).save(tmp / f"masks/{eid}.png")
                    entries.append(
                        {
                            "id": eid,
                            "image": f"images/{i:05d}.png",
                            "image_index": i,
                            "prompt_index": j,
                            "source": p.source,
                            "target": p.target,
                            "instruction": instruction(p.source, p.target),
                            "attribute": p.attribute,
                            "value": p.value,
                            "mask": f"masks/{eid}.png",
                            "mask_pixels": int(m.sum()),
                            "already_satisfied": bool(params.attrs[i, col] == val),
                        }
                    )
    entries.sort(key=lambda e: (e["image_index"], e["prompt_index"]))
    store.write_json(entries, tmp / "edits.json")
    store.write_json(
        {
            "attributes": [{"name": a.name, "values": list(a.values)} for a in domain.attributes],
            "continuous": list(type(params).CONTINUOUS),
            "attrs": params.attrs.tolist(),
            "ident": [[float(v) for v in r] for r in params.ident],
        },
        tmp / "params.json",
    )
    files = {p.relative_to(tmp).as_posix(): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "world": str(world),
        "world_name": domain.name,
        "world_kind": _kind_name(world),
        "world_config_hash": domain.config_hash,
        "resolution": int(domain.resolution),
        "deltabench": __version__,
        "git_commit": store.git_commit(),
        "seed": seed,
        "test_seed": seed + TEST_SEED_OFFSET,
        "images": images,
        "prompts": [
            {
                "source": p.source,
                "target": p.target,
                "attribute": p.attribute,
                "value": p.value,
                "instruction": instruction(p.source, p.target),
            }
            for p in plist
        ],
        "edits": len(entries),
        "empty_masks": sum(e["mask_pixels"] == 0 for e in entries),
        "mask_rule": {"text": MASK_RULE, "threshold_uint8_levels": MASK_THRESHOLD, "dilate_px": MASK_DILATE},
        "instruction_rule": " ".join((instruction.__doc__ or "").split()),
        "files": files,
    }
    store.write_json(manifest, tmp / "manifest.json")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    log(
        f"suite of {images} images x {len(plist)} prompts ({len(entries)} edits, {manifest['empty_masks']} empty "
        f"masks) written to {out}"
    )
    return out


def _kind_name(world: str) -> str:
    from deltabench.world.catalog import load_world_config

    return load_world_config(str(world)).kind
