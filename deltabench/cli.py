"""deltabench: benchmark text-driven image editing (DeltaEdit beside the StyleCLIP baselines)
on a synthetic world or on real pretrained weights."""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path


class CliError(ValueError):
    """A bad command-line value: printed as one ``deltabench: error:`` line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one-line ``deltabench: error:`` every command uses."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"deltabench: error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {v}")
        return v

    parse.__name__ = f"whole number >= {low}"
    return parse


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def _feather(text: str) -> float:
    v = _finite_float(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return v


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not a text file (it holds binary data); give a UTF-8 JSON/CSV file") from None
    except OSError as e:
        raise CliError(f"{what} {path} cannot be read ({e.strerror})") from None


def _folders(args) -> dict:
    """A real domain's image folders given on the command line (``--images`` is the test folder
    only where the command's ``--images`` is not a count)."""
    from deltabench.api import _folders as folders

    return folders(None, getattr(args, "train_images", None))


def _device(args):
    from deltabench.utils import resolve_device

    return resolve_device(getattr(args, "device", "auto"))


def _json_option(value: str, what: str):
    """``--options``: JSON text, or the path of a JSON file."""
    src = Path(value)
    text = _read_text(src, "--options file") if src.is_file() else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"--options must be {what} or a JSON file ({e})") from None


def _check_world(world: str) -> None:
    """A --world value that is a file must be readable JSON text (before any model loads)."""
    p = Path(world)
    if p.suffix == ".json" or p.exists():
        if p.is_dir():
            raise CliError(f"--world {world} is a directory; give a built-in world name or a JSON config file")
        if p.is_file():
            _read_text(p, "--world config")


def _cmd_world_build(args) -> int:
    from deltabench.world.catalog import load_world_config
    from deltabench.world.build import build_world

    _check_world(args.world)
    cfg = load_world_config(args.world)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    only = tuple(args.only.split(",")) if args.only else None
    path = build_world(cfg, root=Path(args.root) if args.root else None, force=args.force,
                       log=lambda s: print(s, file=sys.stderr, flush=True), only=only)
    if path is not None:
        print(path)
    return 0


def _cmd_world_card(args) -> int:
    from deltabench.world.card import save_comparison_grid, world_card
    from deltabench.world.world import load_world

    _check_world(args.world)
    if args.grid:
        _check_out_file(Path(args.grid), "--grid")
    world = load_world(args.world, device=_device(args))
    card = world_card(world, n=args.n, seed=args.seed)
    if args.grid:
        card["grid"] = str(save_comparison_grid(world, Path(args.grid), seed=args.seed))
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        for k, v in card.items():
            if isinstance(v, dict):
                print(f"{k}:")
                for kk, vv in v.items():
                    print(f"  {kk:<16} {vv:.4f}" if isinstance(vv, float) else f"  {kk:<16} {vv}")
            else:
                print(f"{k:<18} {v:.4f}" if isinstance(v, float) else f"{k:<18} {v}")
    return 0


def _cmd_world_list(args) -> int:
    from deltabench.world.catalog import builtin_world_names, load_world_config
    from deltabench.world import store

    for name in builtin_world_names():
        cfg = load_world_config(name)
        try:
            where = str(store.find_world(cfg))
        except store.WorldCacheError:
            where = "not built"
        print(f"{name:<20} {cfg.hash}  {where}")
    # The real domains go through the same factory (deltabench.domain.load_domain): list them too.
    from deltabench.real.domain import domain_names

    for name in domain_names():
        print(f"{name:<20} {'real domain':<16}  official weights: deltabench weights list --domain {name}")
    return 0


def _method_dir(domain, root: str | None) -> Path:
    from deltabench.shipped import method_cache

    return method_cache(domain, root)


def _make_method(name: str, domain, args, **options):
    from deltabench.methods import get_method

    cls = get_method(name)
    cfg = _train_flags(args)
    if cfg:
        options.setdefault("config", cls.config_class.from_dict(cfg))
    return cls(domain, _method_dir(domain, getattr(args, "work_dir", None)), seed=args.seed, **options)


def _train_flags(args) -> dict:
    """The DeltaMapper settings given on the command line (a given 0 counts: it is checked)."""
    return {k: getattr(args, k) for k in ("steps", "n_generated", "n_inverted", "batch")
            if getattr(args, k, None) is not None}


def _check_method_args(name: str, args) -> None:
    """The method exists and the training flags make a valid config, before any model loads."""
    from deltabench.methods import get_method

    cls = get_method(name)
    cfg = _train_flags(args)
    if not cfg:
        return
    if cls.config_class is None or not set(cfg) <= {f.name for f in dataclasses.fields(cls.config_class)}:
        raise CliError(f"--steps/--n-generated/--n-inverted/--batch set a DeltaMapper's training; "
                       f"{name} has no such settings")
    try:
        cls.config_class.from_dict(cfg)
    except ValueError as e:
        raise CliError(f"{e} (--steps/--n-generated/--n-inverted/--batch)") from None


def _cmd_train(args) -> int:
    from deltabench.domain import load_domain
    from deltabench.utils import timed

    _check_world(args.world)
    _check_method_args(args.method, args)
    domain = load_domain(args.world, device=_device(args), **_folders(args))
    method = _make_method(args.method, domain, args)
    with timed(f"train {args.method}"):
        info = method.fit()
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=2))
    print(getattr(method, "run_dir", method.work_dir))
    return 0


def _photo_domain(world: str):
    """The real-domain config of ``--world`` when its images are FFHQ-aligned faces
    (``face_crop: "ffhq"``), else None (synthfaces, LSUN). Reads the config only: no weights."""
    from deltabench.real.domain import domain_names, is_real_domain_config, load_domain_config

    if world in domain_names() or is_real_domain_config(world):
        cfg = load_domain_config(world)
        return cfg if cfg.face_crop == "ffhq" else None
    return None


def _align_photo(path: Path, size: int):
    """FFHQ alignment of the photo ``path`` at ``size`` px: ``(photo, Aligned)``; every failure
    (unreadable file, no face, dlib missing) is an ``AlignError`` before any model loads."""
    from deltabench.real import align as A

    photo = A.load_photo(path)
    faces = A.detect_faces(photo)
    if not faces:
        raise A.NoFaceError(f"{path}: no face found (dlib's frontal face detector needs a roughly frontal "
                            "face at least about 40 px wide); give another photo, or --no-align if it is "
                            "already aligned the FFHQ way")
    if len(faces) > 1:
        l, t, r, b = faces[0].box
        print(f"deltabench: {path}: {len(faces)} faces found; editing the largest "
              f"({r - l + 1}x{b - t + 1} px at ({l}, {t}))", file=sys.stderr)
    res = A.align_face(photo, size, face=faces[0])
    res.n_faces = len(faces)
    return photo, res


def _check_out_file(dest: Path, flag: str) -> None:
    if dest.is_dir():
        raise CliError(f"{flag} {dest} is a directory; give a file path such as {dest / 'edit.png'}")
    parent = dest.parent
    if not parent.is_dir():
        raise CliError(f"{flag} {dest}: the folder {parent} does not exist; create it or give another path")


def _edit_dest(args, target: str) -> Path:
    import re

    if args.out:
        return Path(args.out)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", target).strip("_") or "edit"
    return Path(args.image).with_name(Path(args.image).stem + f"_{args.method}_{slug}.png")


def _cmd_edit(args) -> int:
    """Invert, edit, save. On a real face domain (config ``face_crop: "ffhq"``) the photo is
    first aligned the FFHQ way (``--no-align``: it already is); the aligned input is written as
    ``<out stem>_aligned.png`` with its transform in ``<out stem>_aligned.json``, and
    ``--paste-back`` writes the edited face blended back into the photo as ``<out stem>_pasted.png``.
    ``--out`` is always the edit itself (the domain's resolution). Every written path is printed,
    the edit last."""
    import numpy as np
    import torch

    from deltabench.domain import load_domain
    from deltabench.imageio import load_image
    from deltabench.prompts import check_prompts
    from deltabench.utils import float_to_uint8, timed, uint8_to_float
    from deltabench.viz import save_png

    source, target = check_prompts(args.source, args.target)
    image = Path(args.image)
    if image.is_dir():
        raise CliError(f"image {image} is a directory; give one PNG or JPEG file")
    if not image.is_file():
        raise CliError(f"image {image} does not exist")
    dest = _edit_dest(args, target)
    _check_out_file(dest, "--out")
    _check_world(args.world)
    _check_method_args(args.method, args)
    face_cfg = _photo_domain(args.world)
    if args.paste_back and face_cfg is None:
        raise CliError(f"--paste-back puts an edited face back into its photo, but --world {args.world} does "
                       "not align photos (only real face domains such as ffhq do); drop --paste-back")
    if args.paste_back and args.no_align:
        raise CliError("--paste-back needs the alignment transform, which --no-align skips; drop one of them")
    aligned_png = dest.with_name(dest.stem + "_aligned.png")
    pasted_png = dest.with_name(dest.stem + "_pasted.png")
    photo = aligned = None
    if face_cfg is not None and not args.no_align:
        photo, aligned = _align_photo(image, face_cfg.resolution)  # before any model loads
    domain = load_domain(args.world, device=_device(args), **_folders(args))
    problems = [m for t in (source, target) for m in domain.prompt_problems(t)]
    if problems:
        raise CliError(problems[0] + "; rephrase the prompt in words the CLIP knows")
    if aligned is not None:
        img = uint8_to_float(np.asarray(aligned.image, dtype=np.uint8)[None])
    else:
        img = load_image(image, domain.resolution)
    method = _make_method(args.method, domain, args)
    with timed(f"fit {args.method}"):  # the first edit trains (or fits) the method: minutes
        method.fit()
    with timed(f"edit {args.method}"), torch.no_grad():
        w = domain.invert(img)
        styles = method.edit(w, source, target, args.strength, images=img.to(domain.device)) if method.takes_images \
            else method.edit(w, source, target, args.strength)
        out = domain.generator.synthesis_from_styles(styles)
    edit = float_to_uint8(out)[0]
    written = []
    if aligned is not None:
        from deltabench.real import align as A

        aligned.image.save(aligned_png)
        aligned_png.with_suffix(".json").write_text(A._record_json(aligned.record(str(image))))
        written.append(aligned_png)
        if args.paste_back:
            A.paste_back(photo, edit, aligned.quad, feather=args.feather).save(pasted_png)
            written.append(pasted_png)
    save_png(edit, dest)
    for p in (*written, dest):
        print(p)
    return 0


def _cmd_eval(args) -> int:
    import pandas as pd

    from deltabench.domain import load_domain
    from deltabench.evaluate import evaluate_prompts
    from deltabench.methods import expand_methods
    from deltabench.world.captions import EDIT_PROMPTS, HELDOUT_EDIT_PROMPTS

    names = expand_methods(args.methods)
    for name in names:
        _check_method_args(name, args)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file; give a directory")
    _check_world(args.world)
    domain = load_domain(args.world, device=_device(args), **_folders(args))
    prompts = {"edit": EDIT_PROMPTS, "heldout": HELDOUT_EDIT_PROMPTS}[args.prompts]
    rows = []
    for name in names:
        method = _make_method(name, domain, args)
        method.fit()
        rows += [dataclasses.asdict(r) for r in evaluate_prompts(method, domain, prompts, args.images,
                                                                 args.seed + 1, args.strength)]
    df = pd.DataFrame(rows)
    summary = df.groupby("method", sort=False)[["manipulation_accuracy", "disentanglement",
                                                 "identity_param_error", "identity_regression",
                                                 "ms_per_edit"]].mean()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / "per_prompt.csv", index=False)
        summary.to_csv(out / "summary.csv")
    pd.set_option("display.width", 200)
    print(df[["method", "target", "manipulation_accuracy", "disentanglement", "n_needed"]].to_string(index=False))
    print(summary.to_string())
    return 0


def _cmd_run(args) -> int:
    from deltabench import api

    try:
        sweep = tuple(float(x) for x in args.sweep.split(",")) if args.sweep else (1.0,)
    except ValueError:
        raise CliError(f"--sweep takes comma-separated numbers such as 0.5,1,2, got {args.sweep!r}") from None
    options = _json_option(args.options, "a JSON object") if args.options else {}
    _check_world(args.world)
    summary = api.run(methods=args.methods, world=args.world, images=args.images, prompts=args.prompts,
                      limit=args.limit, sweep=sweep, seed=args.seed, device=args.device, out=args.out,
                      options=options, batch=args.batch, resume=args.resume, force=args.force,
                      work_dir=args.work_dir, test_images=args.test_images, train_images=args.train_images,
                      precision=args.precision, references=args.references,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    out = summary.attrs["run_dir"]
    print((out / "summary.csv").read_text())
    print(out)
    return 0


def _cmd_score(args) -> int:
    from deltabench import api

    for flag, p in (("INPUTS", args.inputs), ("EDITS", args.edits)):
        if not Path(p).exists():
            raise CliError(f"{flag} {p} does not exist; give a folder of images (or one image)")
    if not Path(args.prompts).is_file():
        raise CliError(f"--prompts {args.prompts} does not exist; give a CSV/JSON prompts file (one prompt for "
                       f"all pairs, or one per pair)")
    if args.out and Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a directory; give a CSV file path")
    _check_world(args.world)
    df = api.score(args.inputs, args.edits, args.prompts, world=args.world, batch=args.batch, device=args.device,
                   seed=args.seed)
    summary = df.attrs["summary"]
    if args.out:
        df.to_csv(args.out, index=False)
        summary.to_csv(Path(args.out).with_name(Path(args.out).stem + "_summary.csv"), index=False)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(summary.to_string(index=False))
    return 0


def _cmd_fit(args) -> int:
    """Fit (or load) a method into the method cache and print what it cost and where it lies."""
    import torch

    from deltabench.domain import load_domain
    from deltabench.methods import get_method, validate_options
    from deltabench.utils import timed

    cls = get_method(args.method)
    config = {k: v for k, v in (("n_images", args.n_images), ("seed", args.fs3_seed),
                                ("max_batch", args.max_batch)) if v is not None}
    options = {}
    if args.options:
        options = _json_option(args.options, f"a JSON object of {args.method}'s options")
        if not isinstance(options, dict):
            raise CliError(f"--options must be a JSON object of {args.method}'s options, got {options!r}")
    if config:
        known = {f.name for f in dataclasses.fields(cls.config_class)} if cls.config_class else set()
        if not set(config) <= known:
            raise CliError(f"--n-images/--fs3-seed/--max-batch set the fs3 precompute; {args.method} has no such "
                           f"settings (use --options)")
        options["config"] = {**dict(options.get("config") or {}), **config}
    validate_options({args.method: options} if options else {}, [args.method])
    _check_world(args.world)
    if args.threads:
        torch.set_num_threads(args.threads)
    domain = load_domain(args.world, device=_device(args), **_folders(args))
    m = cls(domain, _method_dir(domain, args.work_dir), seed=args.seed, **options)
    with timed(f"fit {args.method}"):
        info = m.refit() if args.force else m.fit()
    print(json.dumps({k: v for k, v in (info or {}).items() if k not in ("history",)}, indent=1, default=str))
    print(m.work_dir)
    return 0


def _cmd_report(args) -> int:
    from deltabench.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise CliError(f"{run_dir} is not a deltabench run directory (no manifest.json); give the --out of a run")
    print(write_report(run_dir) / "index.html")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="deltabench", description=" ".join(__doc__.split()))
    from deltabench import __version__

    p.add_argument("--version", action="version", version=f"deltabench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="build, inspect and measure synthetic worlds")
    wsub = world.add_subparsers(dest="world_command", required=True)
    b = wsub.add_parser("build", help="train every model of a world (cached by config hash, resumable)")
    b.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
    b.add_argument("--force", action="store_true", help="rebuild even if a built world exists")
    b.add_argument("--root", help="directory for built worlds (default: the user cache)")
    b.add_argument("--threads", type=_int_at_least(0), default=0, help="torch CPU threads (default: torch's choice)")
    b.add_argument("--only", help="comma-separated stages to train into the stage cache, without "
                   "assembling the world (e.g. clip,identity)")
    b.set_defaults(func=_cmd_world_build)
    c = wsub.add_parser("card", help="measure a built world against its ground truth")
    c.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.add_argument("--n", type=_int_at_least(2), default=512, help="held-out faces per measurement")
    c.add_argument("--seed", type=_int_at_least(0), default=10_000, help="seed of the held-out faces")
    c.add_argument("--grid", help="also write a PNG: renderer / generator / encoder rows")
    c.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    c.set_defaults(func=_cmd_world_card)
    ls = wsub.add_parser("list", help="built-in worlds, their config hash and where they are built")
    ls.set_defaults(func=_cmd_world_list)

    def method_opts(q, default_method="deltaedit"):
        q.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
        q.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
        q.add_argument("--train-images", dest="train_images", help="a real domain's folder of images methods train "
                       "on (default: $DELTABENCH_<DOMAIN>_TRAIN_IMAGES), kept apart from its test images")
        q.add_argument("--seed", type=_int_at_least(0), default=0, help="the method's seed (training and its pool)")
        q.add_argument("--work-dir", dest="work_dir", help="where trained methods are cached "
                       "(default: <cache>/methods)")
        q.add_argument("--steps", type=_int_at_least(1), help="DeltaMapper training steps")
        q.add_argument("--n-generated", dest="n_generated", type=_int_at_least(0), help="generated samples in the pool")
        q.add_argument("--n-inverted", dest="n_inverted", type=_int_at_least(0), help="inverted real images in the pool")
        q.add_argument("--batch", type=_int_at_least(1), help="training batch size")

    t = sub.add_parser("train", help="train a method (text-free for deltaedit); cached and resumable")
    t.add_argument("method", help="deltaedit or deltaedit-naive")
    method_opts(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("edit", help="invert IMAGE and edit it from --source to --target text")
    e.add_argument("image", help="the image (or photo, on a real face domain) to edit")
    e.add_argument("--source", default="face", help="the neutral text the edit starts from")
    e.add_argument("--target", required=True, help="the text to edit towards, e.g. 'face with glasses'")
    e.add_argument("--method", default="deltaedit", help="a registered method")
    e.add_argument("--strength", type=_finite_float, default=None,
                   help="the method's own strength value (default: its default): DeltaEdit/GD alpha, "
                        "LM multiplier, OP latent L2 weight (smaller = stronger)")
    e.add_argument("--out", help="output PNG (default: next to IMAGE)")
    e.add_argument("--no-align", dest="no_align", action="store_true",
                   help="real face domains: IMAGE is already FFHQ-aligned (no dlib alignment)")
    e.add_argument("--paste-back", dest="paste_back", action="store_true",
                   help="real face domains: also write <out stem>_pasted.png, the edited face blended "
                        "back into the photo")
    e.add_argument("--feather", type=_feather, default=0.15,
                   help="--paste-back: fraction of the face mask's radius that fades out (default 0.15)")
    method_opts(e)
    e.set_defaults(func=_cmd_edit)

    r = sub.add_parser("run", help="fit methods, edit every test image with every prompt, score, report")
    r.add_argument("--methods", default="deltaedit,styleclip",
                   help="comma-separated methods; 'styleclip' means styleclip-op,-lm,-gd")
    r.add_argument("--world", default="synthfaces", help="built-in world name, real domain (ffhq, lsun-*) or JSON config")
    r.add_argument("--prompts", help="CSV (source,target[,attribute,value]) or JSON prompts file, or 'all' "
                   "(default: the domain's benchmark prompts; synthfaces: one edit per attribute; "
                   "'all': its 23 edit prompts)")
    r.add_argument("--images", type=_int_at_least(2), default=32,
                   help="test images (32: every method's manipulation-accuracy interval within +-0.10 and the "
                        "default run under 30 min on 2 CPU cores; FID needs more edits than feature dimensions)")
    r.add_argument("--limit", type=_int_at_least(1), help="cap images and prompts at N: a run small enough to try in seconds")
    r.add_argument("--seed", type=_int_at_least(0), default=0, help="the run's seed (draws the test images, seed + 1)")
    r.add_argument("--sweep", default="0.5,1,2", help="strength multipliers for the trade-off curves")
    r.add_argument("--batch", type=_int_at_least(1), default=50, help="images per edit and metric batch")
    r.add_argument("--references", default="auto",
                   help="reference rows scored beside the methods: 'auto' (inversion, and on synthfaces "
                        "oracle-edit), 'none', or a comma-separated list")
    r.add_argument("--options", help="per-method options as JSON (or a JSON file), e.g. "
                   '\'{"deltaedit": {"config": {"steps": 500}}}\'')
    r.add_argument("--out", default="runs/latest", help="the run directory")
    r.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    r.add_argument("--precision", choices=["fp32", "official"], default="fp32",
                   help="official: CLIP in fp16 on CUDA on the real domains, as the official DeltaEdit runs it")
    r.add_argument("--test-images", dest="test_images", help="a real domain's folder of test images "
                   "(default: $DELTABENCH_<DOMAIN>_IMAGES)")
    r.add_argument("--train-images", dest="train_images", help="a real domain's folder of images methods train "
                   "on (default: $DELTABENCH_<DOMAIN>_TRAIN_IMAGES), kept apart from the test images")
    r.add_argument("--work-dir", dest="work_dir", help="where fitted methods are cached (default: <cache>/methods)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue a run whose config differs, keeping its rows")
    g.add_argument("--force", action="store_true", help="delete a run with a different config and start over")
    r.set_defaults(func=_cmd_run)

    sc = sub.add_parser("score", help="score edits made by any code: paired INPUTS and EDITS images and their prompts")
    sc.add_argument("inputs", help="folder of input images (paired with EDITS by sorted file name)")
    sc.add_argument("edits", help="folder of edited images, one per input")
    sc.add_argument("--prompts", required=True, help="CSV/JSON prompts file: one prompt for all pairs, or one per pair")
    sc.add_argument("--world", default="synthfaces", help="the domain whose metrics score them")
    sc.add_argument("--batch", type=_int_at_least(1), default=50, help="images per metric batch")
    sc.add_argument("--seed", type=_int_at_least(0), default=0, help="seed of KID's subsets")
    sc.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    sc.add_argument("--out", help="CSV of the per-pair scores (and <stem>_summary.csv per prompt)")
    sc.set_defaults(func=_cmd_score)

    rp = sub.add_parser("report", help="tables (md/csv/tex), edit grid, trade-off curves and index.html of a run")
    rp.add_argument("run_dir", help="the --out directory of a run")
    rp.set_defaults(func=_cmd_report)

    f = sub.add_parser("fit", help="fit (or precompute) what a method needs into the method cache: styleclip-gd's "
                       "fs3, deltaedit's mapper, ...")
    f.add_argument("method", help="a registered method, e.g. styleclip-gd")
    f.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
    f.add_argument("--work-dir", dest="work_dir", help="method cache (default: <cache>/methods)")
    f.add_argument("--seed", type=_int_at_least(0), default=0, help="the method's seed")
    f.add_argument("--options", help="the method's options as JSON (or a JSON file), e.g. '{\"config\": {...}}'")
    f.add_argument("--n-images", dest="n_images", type=_int_at_least(1), help="styleclip-gd: images per channel")
    f.add_argument("--fs3-seed", dest="fs3_seed", type=_int_at_least(0), help="styleclip-gd: seed of the sampled images")
    f.add_argument("--max-batch", dest="max_batch", type=_int_at_least(1), help="styleclip-gd: images per forward pass")
    f.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    f.add_argument("--train-images", dest="train_images", help="a real domain's folder of images methods train on")
    f.add_argument("--threads", type=_int_at_least(0), default=0, help="torch CPU threads (default: torch's choice)")
    f.add_argument("--force", action="store_true", help="fit again even if the cache holds a matching fit")
    f.set_defaults(func=_cmd_fit)

    from deltabench.gap.run import add_parser as add_gap_parser
    from deltabench.real.align import add_parser as add_align_parser
    from deltabench.weights import add_parser as add_weights_parser

    add_gap_parser(sub)
    add_weights_parser(sub)
    add_align_parser(sub)

    v = sub.add_parser("eval", help="per-prompt manipulation accuracy and disentanglement on the world")
    v.add_argument("--methods", default="deltaedit,deltaedit-naive", help="comma-separated methods")
    v.add_argument("--prompts", choices=["edit", "heldout"], default="edit",
                   help="the world's edit prompts, or phrasings its CLIP never saw in training")
    v.add_argument("--images", type=_int_at_least(1), default=200, help="held-out faces per prompt")
    v.add_argument("--strength", type=_finite_float, default=None,
                   help="each method's own strength value (default: each method's; see edit --strength)")
    v.add_argument("--out", help="directory for per_prompt.csv and summary.csv")
    method_opts(v)
    v.set_defaults(func=_cmd_eval)
    return p


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad input or a damaged file, never a bug: one line, exit 2."""
    from deltabench.integrity import CacheIntegrityError
    from deltabench.weights import WeightsError
    from deltabench.world.store import WorldCacheError

    return (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError,
            WorldCacheError, CacheIntegrityError, WeightsError)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; finished stages are kept and the same command resumes", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - sorted below: user errors get one line, bugs a traceback
        if isinstance(e, _user_errors()):
            msg = " ".join(str(e).split()) if str(e) else type(e).__name__
            print(f"deltabench: error: {msg}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
