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

from deltabench.harness.config import RUN_DEFAULTS
from deltabench.imageio import as_images as _as_images
from deltabench.prompts import Prompt, as_prompts, check_prompts
from deltabench.utils import resolve_device  # noqa: F401 - part of the API (deltabench.api.resolve_device)


def run(
    methods: str | Sequence[str] = tuple(RUN_DEFAULTS.methods.split(",")),
    world: str = RUN_DEFAULTS.world,
    images: int = RUN_DEFAULTS.images,
    prompts=None,
    limit: int | None = None,
    sweep: Sequence[float] = RUN_DEFAULTS.sweep,
    seed: int = RUN_DEFAULTS.seed,
    device: str = "auto",
    out: str | Path | None = None,
    options: dict | None = None,
    batch: int = RUN_DEFAULTS.batch,
    resume: bool = False,
    force: bool = False,
    work_dir: str | Path | None = None,
    save_edits: bool = False,
    test_images: str | Path | None = None,
    train_images: str | Path | None = None,
    precision: str = "fp32",
    references: str | Sequence[str] = RUN_DEFAULTS.references,
    log=None,
    dry_run: bool = False,
) -> pd.DataFrame:
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
    from dataclasses import replace

    from deltabench.domain import load_domain
    from deltabench.harness.config import RunConfig, check_sweep, default_prompts, validate_config
    from deltabench.harness.loop import execute

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
    cfg = RunConfig(
        methods=tuple(names),
        world=str(world),
        prompts=plist,
        prompts_file=str(prompts) if isinstance(prompts, (str, Path)) and not every else None,
        images=images,
        seed=seed,
        sweep=sweep,
        batch=batch,
        method_options={} if options is None else options,
        references=tuple(references.split(",")) if isinstance(references, str) else tuple(references),
    )
    cfg = validate_config(cfg)  # once, before any model loads
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="deltabench-run-"))
    if precision not in ("fp32", "official"):
        raise ValueError(f"--precision {precision!r}: give fp32 or official")
    _check_real_only(world, test_images=test_images, train_images=train_images, precision=precision)
    domain = load_domain(str(world), device=dev, **_folders(test_images, train_images))
    domain.set_precision(precision)
    if not plist and (every or limit is not None):
        cfg = replace(cfg, prompts=default_prompts(domain, every)[:limit])
    planned = execute(
        cfg,
        out,
        domain=domain,
        resume=resume,
        force=force,
        work_dir=Path(work_dir) if work_dir else None,
        log=log or (lambda m: None),
        save_edits=save_edits,
        dry_run=dry_run,
    )
    if dry_run:  # ``dry_run``: the units (``deltabench.runner.plan``), nothing run or written
        return planned
    summary = pd.read_csv(out / "summary.csv")
    summary.attrs["run_dir"] = out
    summary.attrs["results"] = pd.read_csv(out / "results.csv")
    summary.attrs["manifest"] = json.loads((out / "manifest.json").read_text())
    return summary


def edit(
    image,
    target: str,
    source: str | None = None,
    method: str = "deltaedit",
    world: str = "synthfaces",
    strength: float | None = None,
    device: str = "auto",
    options: dict | None = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    train_images: str | Path | None = None,
    checkpoint: str | Path | None = None,
    fs3: str | Path | None = None,
    precision: str = "fp32",
    train: dict | None = None,
    log=None,
):
    """Invert ``image`` (a path, a PIL image or an ``uint8 [H, W, 3]`` array) with the world's
    encoder, edit it from ``source`` to ``target`` text with ``method`` and return the edit as a
    PIL image. The method is fitted (or loaded from the cache) first, with the settings a run
    would use (:mod:`deltabench.settings`: the domain's defaults, then ``options``, then
    ``checkpoint`` / ``fs3`` / ``train``). ``checkpoint``: a released DeltaEdit ``net_face.pth``
    or StyleCLIP-LM mapper (for ``target``); ``fs3``: a released ``fs3.npy`` (StyleCLIP-GD's
    matrix, DeltaEdit's relevance filter); ``train``: DeltaMapper settings (``{"steps": 500}``);
    ``precision``: ``"fp32"`` or ``"official"`` (fp16 CLIP on CUDA on the real domains).
    ``source``: default the domain's neutral prompt ("face", "church")."""
    from PIL import Image

    from deltabench.domain import load_domain, neutral_prompt
    from deltabench.methods import validate_options
    from deltabench.settings import build_method, flag_options, resolve_options
    from deltabench.utils import float_to_uint8, timed

    if source is None:
        source = neutral_prompt(str(world))
    source, target = check_prompts(source, target)
    if strength is not None and not np.isfinite(float(strength)):
        raise ValueError(f"--strength must be a finite number, got {strength!r}")
    if precision not in ("fp32", "official"):
        raise ValueError(f"--precision {precision!r}: give fp32 or official")
    if isinstance(image, (str, Path)) and Path(image).is_file():
        from deltabench.imageio import check_image_size

        check_image_size(Path(image))  # a 1x1 image holds no face: refused before any model loads
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"--options must be a JSON object of {method}'s options, got {options!r}")
    opts = {method: dict(options)} if options else {}
    validate_options(opts, [method])
    flags = {method: flag_options(method, checkpoint=checkpoint, fs3=fs3, target=target, train=train)}
    domain = load_domain(str(world), device=resolve_device(device), **_folders(None, train_images))
    domain.set_precision(precision)
    problems = [m for t in (source, target) for m in domain.prompt_problems(t)]
    if problems:
        raise ValueError(problems[0] + "; rephrase the prompt in words the CLIP knows")
    resolved = resolve_options(domain, [method], opts, flags).get(method, {})
    domain.check_files({method: resolved}, invert=True, purpose=f"edit --method {method}")  # before any work
    x = _as_images([image], domain.resolution, "image")  # [1, 3, R, R]: what the method sees, as in a run
    # what the encoder inverts: the official photo path on real domains (PIL Resize(256) of the uint8 photo)
    photo = x if isinstance(image, torch.Tensor) else domain.photo_input(image)
    m = build_method(method, domain, resolved, work_dir=work_dir, seed=seed)
    said = m.strength_warning(strength)  # outside the calibrated range: say what it will do
    if said:
        import warnings

        from deltabench.methods import StrengthWarning

        warnings.warn(said, StrengthWarning, stacklevel=2)
    with timed(f"fit {method}", log=log):  # the first edit of a method trains (or fits) it
        m.fit()
        m.fit_prompts([(source, target)])
    with timed(f"edit {method}", log=log), torch.no_grad():
        w = domain.invert(photo.to(domain.device))
        styles = m.edit(w, source, target, strength, images=x.to(domain.device))
        out = domain.generator.synthesis_from_styles(styles)
    return Image.fromarray(float_to_uint8(out)[0])


def fit(
    method: str,
    world: str = "synthfaces",
    options: dict | None = None,
    seed: int = 0,
    device: str = "auto",
    work_dir: str | Path | None = None,
    train_images: str | Path | None = None,
    checkpoint: str | Path | None = None,
    fs3: str | Path | None = None,
    train: dict | None = None,
    force: bool = False,
    log=None,
) -> dict:
    """Fit ``method`` on ``world`` into the method cache (or load it from there) with the settings
    a run would use (:mod:`deltabench.settings`); ``force`` fits again. Returns the method's fit
    record (``fit_seconds``, ...) with ``work_dir``: where the fit lies."""
    from deltabench.domain import load_domain
    from deltabench.methods import validate_options
    from deltabench.settings import build_method, flag_options, resolve_options
    from deltabench.utils import timed

    if options is not None and not isinstance(options, dict):
        raise ValueError(f"--options must be a JSON object of {method}'s options, got {options!r}")
    opts = {method: dict(options)} if options else {}
    validate_options(opts, [method])
    flags = {method: flag_options(method, checkpoint=checkpoint, fs3=fs3, train=train)}
    validate_options({k: v for k, v in flags.items() if v}, [method])
    domain = load_domain(str(world), device=resolve_device(device), **_folders(None, train_images))
    resolved = resolve_options(domain, [method], opts, flags).get(method, {})
    domain.check_files({method: resolved}, purpose=f"fit {method}")  # a missing file: now, not mid-fit
    m = build_method(method, domain, resolved, work_dir=work_dir, seed=seed)
    with timed(f"fit {method}", log=log):
        info = (m.refit() if force else m.fit()) or {}
    return {**info, "work_dir": str(getattr(m, "run_dir", m.work_dir))}


def score(
    inputs,
    edits,
    prompts,
    world: str = "synthfaces",
    starts=None,
    params=None,
    batch: int = 50,
    device: str = "auto",
    seed: int = 0,
) -> pd.DataFrame:
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
    from deltabench.domainbase import DomainBase

    # ``world``: a name, or a domain already loaded (deltabench.suite scores several editors with one)
    domain = world if isinstance(world, DomainBase) else load_domain(str(world), device=resolve_device(device))
    domain.check_files(metrics=True, purpose="score")
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
    rows, summary, states = [None] * len(x), [], {}
    dev = domain.device
    names = {"input_file": image_names(inputs), "edit_file": image_names(edits)}  # None where not files
    names = {c: n if n is not None and len(n) == len(x) else None for c, n in names.items()}
    for p, idx in groups.items():
        suite = build_metrics(domain, p, seed=seed)
        for a in range(0, len(idx), batch):
            sel = idx[a : a + batch]
            ii = torch.as_tensor(sel)
            got = suite.update(
                x[ii].to(dev),
                y[ii].to(dev),
                s[ii].to(dev) if s is not None else None,
                params=params[np.asarray(sel)] if params is not None else None,
            )
            for k, i in enumerate(sel):
                rows[i] = {
                    "pair": i,
                    **{c: n[i] for c, n in names.items() if n is not None},
                    "source": p.source,
                    "target": p.target,
                    "attribute": p.attribute,
                    "value": p.value,
                    **{m: float(v[k]) for m, v in got.items()},
                }
        values = suite.compute()
        states[p] = suite.state_dict()
        summary.append(
            {
                "source": p.source,
                "target": p.target,
                "pairs": len(idx),
                **values,
                **_pair_intervals([rows[i] for i in idx], values, seed),
                **_negative_set_distances(values, p.target),
            }
        )
    df = pd.DataFrame(rows)
    df.attrs["summary"] = pd.DataFrame(summary)
    df.attrs["states"] = states  # Prompt -> its metric states (a run's unit files hold the same)
    return df


def _pair_intervals(rows: list[dict], values: dict, seed: int) -> dict:
    """``<m>_lo``, ``<m>_hi``, ``<m>_n``: the 95% bootstrap interval of each per-pair metric's
    mean over the prompt's pairs (FID and KID are set statistics: their value only)."""
    from deltabench import stats

    out = {}
    for key in values:
        col = np.asarray([r.get(key, np.nan) for r in rows], dtype=float)
        col = col[np.isfinite(col)]
        if len(rows) == 0 or key not in rows[0] or len(col) == 0:
            continue
        iv = stats.mean_interval(col, np.arange(len(col)), seed=seed)
        out.update({f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n": iv.n})
    return out


def image_names(images) -> list[str] | None:
    """The file names ``as_images`` reads ``images`` from, in its order (a folder: sorted), or None
    where they are not files (PIL images, arrays, tensors)."""
    from deltabench.imageio import IMAGE_SUFFIXES

    if isinstance(images, (str, Path)):
        p = Path(images)
        if p.is_dir():
            return [f.name for f in sorted(p.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()]
        return [p.name]
    if isinstance(images, (list, tuple)) and images and all(isinstance(i, (str, Path)) for i in images):
        return [Path(i).name for i in images]
    return None


def _negative_set_distances(values: dict, target: str) -> dict:
    """Flag (``fid_negative``/``kid_negative``) and explain a FID or KID below 0, never silently.

    FID is a squared distance: below 0 only by round-off, where the two sets are (nearly) the
    same. KID is an unbiased estimator of MMD^2: it goes below 0 when the sets are closer than
    two independent samples of one distribution would be, e.g. edits that equal their inputs."""
    import warnings

    out = {}
    for key, why in (
        ("fid", "FID is a squared distance and is below 0 only by round-off: the two sets are (nearly) identical"),
        (
            "kid",
            "KID is an unbiased estimate of MMD^2, which goes below 0 when the two sets are "
            "closer than independent samples would be (e.g. edits equal to their inputs); "
            "read it as 0 within its spread",
        ),
    ):
        v = values.get(key)
        if v is not None and np.isfinite(v) and v < 0:
            out[f"{key}_negative"] = True
            warnings.warn(f"{key.upper()} = {v:.3g} < 0 for {target!r}: {why}", UserWarning, stacklevel=3)
    return out


def _folders(test_images, train_images) -> dict:
    """``load_domain`` keywords for a real domain's image folders (only those given)."""
    out = {}
    if test_images is not None:
        out["images"] = str(test_images)
    if train_images is not None:
        out["train_images"] = str(train_images)
    return out


def _check_real_only(world, test_images=None, train_images=None, precision: str = "fp32") -> None:
    """Flags that only a real domain reads are an error on a synthetic world (never ignored)."""
    from deltabench.real.domain import domain_names, is_real_domain_config

    if str(world) in domain_names() or is_real_domain_config(str(world)):
        return
    given = [f for f, v in (("--test-images", test_images), ("--train-images", train_images)) if v is not None]
    if given:
        raise ValueError(
            f"{' and '.join(given)}: --world {world} is a synthetic world, which renders its own test "
            f"and training images; image folders apply to real domains (ffhq, lsun-*) only: drop "
            f"{' and '.join(given)}"
        )
    if precision == "official":
        raise ValueError(
            f"--precision official runs CLIP in fp16 on CUDA, as the official code does on real "
            f"domains; --world {world} is a synthetic world whose CLIP runs in fp32 only: drop "
            f"--precision official"
        )
