"""The Python API on a postcard: ``deltabench.run``, ``deltabench.edit``, ``deltabench.score``.

The command line is a thin layer over these three functions; each takes the same values as its
command and checks them the same way (a bad value is a ``ValueError`` naming it).
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deltabench.prompts import Prompt, as_prompts, check_prompts
from deltabench.utils import resolve_device  # noqa: F401 - part of the API (deltabench.api.resolve_device)


def run(methods: str | Sequence[str] = ("deltaedit", "styleclip"), world: str = "synthfaces", images: int = 32,
        prompts=None, limit: int | None = None, sweep: Sequence[float] = (0.5, 1, 2), seed: int = 0,
        device: str = "auto", out: str | Path | None = None, options: dict | None = None, batch: int = 50,
        resume: bool = False, force: bool = False, work_dir: str | Path | None = None, save_edits: bool = False,
        test_images: str | Path | None = None, train_images: str | Path | None = None, precision: str = "fp32",
        references: str | Sequence[str] = "auto", log=None) -> pd.DataFrame:
    """Fit ``methods``, edit ``images`` test images of ``world`` with every prompt at every
    strength multiplier of ``sweep`` (1 is always added), score and report; return the summary.

    ``prompts``: None (the domain's benchmark prompts), ``"all"``, a CSV/JSON file, or a list of
    ``(source, target)`` pairs / ``{"source", "target", ...}`` dicts. ``limit`` caps images (never
    under 2) and prompts. ``out``: the run directory (default: a new temporary one). The returned
    DataFrame has one row per method; ``df.attrs`` holds ``run_dir``, ``results`` (every row) and
    ``manifest``. ``save_edits`` also keeps every edited image as float32 arrays in
    ``<run_dir>/edits/`` (for :func:`score` or your own analysis). ``test_images`` /
    ``train_images``: a real domain's folders of test images and of the images methods train on.
    ``precision``: ``"fp32"`` or ``"official"`` (CLIP in fp16 on CUDA on the real domains, as the
    official DeltaEdit runs it); the manifest records the device by name and the precision.
    ``references``: reference rows scored beside the methods (:mod:`deltabench.references`):
    ``"auto"`` (inversion, and on synthfaces oracle-edit), ``"none"`` or a list of names.
    """
    import json

    from deltabench.domain import load_domain
    from deltabench.runner import RunConfig, check_sweep, default_prompts
    from deltabench.runner import run as run_benchmark

    names = methods.split(",") if isinstance(methods, str) else list(methods)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"--limit must be a whole number of at least 1, got {limit!r}")
    every = isinstance(prompts, str) and prompts == "all"
    plist = () if prompts is None or every else as_prompts(prompts)
    if limit is not None:
        images = min(images, max(limit, 2))
        plist = plist[:limit]
    sweep = check_sweep(sweep)
    if 1.0 not in sweep:
        sweep = (1.0, *sweep)
    dev = resolve_device(device)
    cfg = RunConfig(methods=tuple(names), world=str(world), prompts=plist,
                    prompts_file=str(prompts) if isinstance(prompts, (str, Path)) and not every else None,
                    images=images, seed=seed, sweep=sweep, batch=batch,
                    method_options={} if options is None else options,
                    references=tuple(references.split(",")) if isinstance(references, str) else tuple(references))
    from deltabench.runner import validate_config

    validate_config(cfg)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="deltabench-run-"))
    if precision not in ("fp32", "official"):
        raise ValueError(f"--precision {precision!r}: give fp32 or official")
    domain = load_domain(str(world), device=dev, **_folders(test_images, train_images))
    domain.set_precision(precision)
    if not plist and (every or limit is not None):
        cfg = RunConfig(**{**cfg.__dict__, "prompts": default_prompts(domain, every)[:limit]})
    run_benchmark(cfg, out, domain=domain, resume=resume, force=force,
                  work_dir=Path(work_dir) if work_dir else None, log=log or (lambda m: None),
                  save_edits=save_edits)
    summary = pd.read_csv(out / "summary.csv")
    summary.attrs["run_dir"] = out
    summary.attrs["results"] = pd.read_csv(out / "results.csv")
    summary.attrs["manifest"] = json.loads((out / "manifest.json").read_text())
    return summary


def edit(image, target: str, source: str = "face", method: str = "deltaedit", world: str = "synthfaces",
         strength: float | None = None, device: str = "auto", options: dict | None = None, seed: int = 0,
         work_dir: str | Path | None = None, train_images: str | Path | None = None):
    """Invert ``image`` (a path, a PIL image or an ``uint8 [H, W, 3]`` array) with the world's
    encoder, edit it from ``source`` to ``target`` text with ``method`` and return the edit as a
    PIL image. The method is fitted (or loaded from the cache) first."""
    from PIL import Image

    from deltabench.domain import load_domain
    from deltabench.methods import get_method, validate_options
    from deltabench.utils import float_to_uint8

    source, target = check_prompts(source, target)
    if strength is not None and not np.isfinite(float(strength)):
        raise ValueError(f"--strength must be a finite number, got {strength!r}")
    opts = {method: dict(options)} if options else {}
    validate_options(opts, [method])
    domain = load_domain(str(world), device=resolve_device(device), **_folders(None, train_images))
    problems = [m for t in (source, target) for m in domain.prompt_problems(t)]
    if problems:
        raise ValueError(problems[0] + "; rephrase the prompt in words the CLIP knows")
    x = _as_images([image], domain.resolution, "image")  # [1, 3, R, R]
    from deltabench.shipped import method_cache

    m = get_method(method)(domain, method_cache(domain, work_dir), seed=seed, **opts.get(method, {}))
    m.fit()
    with torch.no_grad():
        w = domain.invert(x.to(domain.device))
        styles = m.edit(w, source, target, strength, images=x.to(domain.device)) if m.takes_images else \
            m.edit(w, source, target, strength)
        out = domain.generator.synthesis_from_styles(styles)
    return Image.fromarray(float_to_uint8(out)[0])


def score(inputs, edits, prompts, world: str = "synthfaces", starts=None, params=None, batch: int = 50,
          device: str = "auto", seed: int = 0) -> pd.DataFrame:
    """Score edits made by any code: ``inputs`` and ``edits`` are paired images (two folders,
    two lists of paths / PIL images / arrays, or tensors ``[N, 3, H, W]`` in [-1, 1]); ``prompts``
    one ``(source, target)`` for every pair or one per pair (or a CSV/JSON prompts file).

    Every metric the domain has: PSNR, SSIM, IDS, CLIP score and direction per pair; FID and KID
    per prompt (``df.attrs["summary"]``). On synthfaces with ``params`` (the inputs' FaceParams,
    e.g. from a run's test images) and prompts that name their attribute, also manipulation
    accuracy, disentanglement and identity-parameter error. ``starts``: the images an edit
    method started from (its inversion; default: the inputs), which CLIP direction and the
    attribute readings compare against, as :func:`run` does. Returns one row per pair.
    """
    from deltabench.domain import load_domain
    from deltabench.metrics.suite import build_metrics

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch must be a whole number of at least 1, got {batch!r}")
    domain = load_domain(str(world), device=resolve_device(device))
    x = _as_images(inputs, domain.resolution, "inputs")
    y = _as_images(edits, domain.resolution, "edits")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} edits: give one edit per input image")
    s = _as_images(starts, domain.resolution, "starts") if starts is not None else None
    if s is not None and len(s) != len(x):
        raise ValueError(f"{len(x)} inputs but {len(s)} starts: give one starting image per input image")
    plist = as_prompts(prompts)
    if len(plist) == 1:
        plist = plist * len(x)
    if len(plist) != len(x):
        raise ValueError(f"{len(plist)} prompts for {len(x)} pairs: give one prompt for all or one per pair")
    if params is not None and len(params) != len(x):
        raise ValueError(f"params describe {len(params)} faces, but there are {len(x)} inputs")
    groups: dict[Prompt, list[int]] = {}
    for i, p in enumerate(plist):
        groups.setdefault(p, []).append(i)
    rows, summary = [None] * len(x), []
    dev = domain.device
    for p, idx in groups.items():
        suite = build_metrics(domain, p, seed=seed)
        for a in range(0, len(idx), batch):
            sel = idx[a : a + batch]
            ii = torch.as_tensor(sel)
            got = suite.update(x[ii].to(dev), y[ii].to(dev), s[ii].to(dev) if s is not None else None,
                               params=params[np.asarray(sel)] if params is not None else None)
            for k, i in enumerate(sel):
                rows[i] = {"pair": i, "source": p.source, "target": p.target, "attribute": p.attribute,
                           "value": p.value, **{m: float(v[k]) for m, v in got.items()}}
        summary.append({"source": p.source, "target": p.target, "pairs": len(idx), **suite.compute()})
    df = pd.DataFrame(rows)
    df.attrs["summary"] = pd.DataFrame(summary)
    return df


def _folders(test_images, train_images) -> dict:
    """``load_domain`` keywords for a real domain's image folders (only those given)."""
    out = {}
    if test_images is not None:
        out["images"] = str(test_images)
    if train_images is not None:
        out["train_images"] = str(train_images)
    return out


_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".npy")


def _as_images(images, resolution: int, what: str) -> torch.Tensor:
    """Images in any of the accepted forms -> ``float32 [N, 3, R, R]`` in [-1, 1]."""
    from PIL import Image

    from deltabench.utils import uint8_to_float

    if isinstance(images, torch.Tensor):
        t = images.detach().float().cpu()
        if t.ndim == 3:
            t = t[None]
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"{what}: a tensor must be [N, 3, H, W] in [-1, 1], got {tuple(t.shape)}")
        return _resize(t, resolution, what)
    if isinstance(images, (str, Path)):
        p = Path(images)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file())
            if not files:
                raise ValueError(f"{what}: the folder {p} holds no images ({', '.join(_IMAGE_SUFFIXES)})")
            images = files
        elif p.is_file():
            images = [p]
        else:
            raise ValueError(f"{what}: {p} does not exist")
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    out = []
    for im in images:
        if isinstance(im, (str, Path)):
            f = Path(im)
            if f.suffix.lower() == ".npy":
                out.append(_as_images(torch.from_numpy(np.load(f, allow_pickle=False)), resolution, what))
                continue
            from deltabench.imageio import load_image

            out.append(load_image(f, resolution))
        elif isinstance(im, Image.Image):
            from deltabench.imageio import to_rgb8

            out.append(_resize(uint8_to_float(np.asarray(to_rgb8(im, what), dtype=np.uint8)[None]), resolution, what))
        elif isinstance(im, torch.Tensor):
            out.append(_as_images(im, resolution, what))
        else:
            a = np.asarray(im)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"{what}: an array must be uint8 [H, W, 3], got {a.dtype} {a.shape}")
            out.append(_resize(uint8_to_float(a[None]), resolution, what))
    if not out:
        raise ValueError(f"{what}: no images given")
    return torch.cat(out)


def _resize(t: torch.Tensor, resolution: int, what: str) -> torch.Tensor:
    if t.shape[-2:] == (resolution, resolution):
        return t
    import warnings

    warnings.warn(f"{what}: {t.shape[-1]}x{t.shape[-2]} images resized to the domain's {resolution}x{resolution}",
                  stacklevel=3)
    return torch.nn.functional.interpolate(t, size=(resolution, resolution), mode="bicubic",
                                           align_corners=False).clamp(-1, 1)
