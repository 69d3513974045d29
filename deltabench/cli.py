"""deltabench: benchmark text-driven image editing (DeltaEdit beside the StyleCLIP baselines)
on a synthetic world or on real pretrained weights."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


class CliError(ValueError):
    """A bad command-line value: printed as one ``deltabench: error:`` line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as the one-line ``deltabench: error:`` every command uses."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        print(f"deltabench: error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


from deltabench.parse import finite_float as _finite_float  # noqa: E402 - argument types every command shares
from deltabench.parse import int_at_least as _int_at_least  # noqa: E402


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
    if src.is_dir():
        raise CliError(f"--options {value} is a directory; give JSON text or a JSON file")
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
    from deltabench.world.build import build_world
    from deltabench.world.catalog import load_world_config

    _check_world(args.world)
    cfg = load_world_config(args.world)
    if args.root:
        root = Path(args.root)
        _check_no_dangling_link(root, "--root")
        hit = next((p for p in (root, *root.parents) if p.exists()), None)
        if hit is not None and not hit.is_dir():
            raise CliError(f"--root {root}: {hit} is a file, not a directory; give the folder built worlds go in")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    only = tuple(args.only.split(",")) if args.only else None
    path = build_world(
        cfg,
        root=Path(args.root) if args.root else None,
        force=args.force,
        log=lambda s: print(s, file=sys.stderr, flush=True),
        only=only,
    )
    if path is not None:
        print(path)
    return 0


def _cmd_world_card(args) -> int:
    from deltabench.world.card import save_comparison_grid, world_card
    from deltabench.world.world import load_world

    _check_world(args.world)
    if args.grid:
        _check_out_file(Path(args.grid), "--grid")
    from deltabench.utils import timed

    world = load_world(args.world, device=_device(args))
    with timed(f"world card of {args.world} ({args.n} held-out images)"):  # minutes on the full world
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


def _cmd_world_describe(args) -> int:
    """What a world (or real domain) knows, without loading a model: its attributes and values,
    the continuous parameters no caption names, its edit prompts (benchmark ones marked) and
    the words its CLIP reads."""
    from deltabench.real.domain import domain_names, is_real_domain_config, load_domain_config

    _check_world(args.world)
    if args.world in domain_names() or is_real_domain_config(args.world):
        cfg = load_domain_config(args.world)
        out = {
            "world": cfg.name,
            "kind": "real",
            "neutral": cfg.neutral,
            "attributes": {},
            "prompts": [{"source": s, "target": t, "benchmark": True} for s, t in cfg.prompts],
            "words": "the CLIP's own BPE vocabulary (open_clip): any English text",
        }
    else:
        from deltabench.world.catalog import load_world_config
        from deltabench.world.kind import get_kind

        cfg = load_world_config(args.world)
        kind = get_kind(cfg.kind)
        bench = set(dict(cfg.benchmark).get("prompts", ()))
        out = {
            "world": cfg.name,
            "kind": kind.name,
            "neutral": kind.noun,
            "attributes": {a.name: list(a.values) for a in kind.attributes},
            "continuous": list(kind.continuous),
            "prompts": [
                {
                    "source": p.source,
                    "target": p.target,
                    "attribute": p.attribute,
                    "value": p.value,
                    "benchmark": p.target in bench,
                }
                for p in kind.edit_prompts("train")
            ],
            "heldout_prompts": [p.target for p in kind.edit_prompts("heldout")],
            "words": kind.vocabulary(),
        }
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"{out['world']} ({out['kind']}); neutral prompt {out['neutral']!r}")
    if out["attributes"]:
        print("attributes (a prompt file's attribute,value columns):")
        for a, vals in out["attributes"].items():
            print(f"  {a:<14} {', '.join(vals)}")
        print(f"continuous (no caption names them): {', '.join(out['continuous']) or '-'}")
    print("edit prompts (* = the default run's benchmark prompts):")
    for p in out["prompts"]:
        tag = f"  [{p['attribute']}={p['value']}]" if p.get("attribute") else ""
        print(f"  {'*' if p['benchmark'] else ' '} {p['source']} -> {p['target']}{tag}")
    words = out["words"]
    print("words the CLIP reads: " + (", ".join(words) if isinstance(words, list) else words))
    return 0


def _cmd_world_list(args) -> int:
    from deltabench.world import store
    from deltabench.world.catalog import builtin_world_names, load_world_config

    store.cache_root()  # a bad $DELTABENCH_CACHE is an error, not "not built"
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


def _method_options(name: str, args, target: str | None = None) -> tuple[dict, dict]:
    """``(options, flags)`` of method ``name`` from the command line, checked before any model
    loads: ``--options`` (the method's own JSON object) and what the short flags stand for."""
    from deltabench.methods import validate_options
    from deltabench.settings import flag_options

    options = {}
    if getattr(args, "options", None):
        options = _json_option(args.options, f"a JSON object of {name}'s options")
        if not isinstance(options, dict):
            raise CliError(f"--options must be a JSON object of {name}'s options, got {options!r}")
        validate_options({name: options}, [name])
    flags = flag_options(
        name,
        checkpoint=getattr(args, "checkpoint", None),
        fs3=getattr(args, "fs3", None),
        target=target,
        train=_train_flags(args),
    )
    try:
        validate_options({name: flags} if flags else {}, [name])
    except ValueError as e:
        raise CliError(str(e).replace("--options: ", "")) from None
    return options, flags


def _make_method(name: str, domain, args, options: dict | None = None, flags: dict | None = None):
    """Method ``name`` with the settings every entry point resolves the same way
    (:mod:`deltabench.settings`: domain defaults, then ``--options``, then the short flags)."""
    from deltabench.settings import build_method, resolve_options

    if options is None and flags is None:
        options, flags = _method_options(name, args)
    resolved = resolve_options(domain, [name], {name: options or {}}, {name: flags or {}}).get(name, {})
    return build_method(name, domain, resolved, work_dir=getattr(args, "work_dir", None), seed=args.seed)


def _train_flags(args) -> dict:
    """The DeltaMapper settings given on the command line (a given 0 counts: it is checked)."""
    return {
        k: getattr(args, k)
        for k in ("steps", "n_generated", "n_inverted", "batch")
        if getattr(args, k, None) is not None
    }


def _check_method_args(name: str, args, target: str | None = None) -> tuple[dict, dict]:
    """The method exists and its options and flags make a valid config, before any model loads;
    returns them (see :func:`_method_options`)."""
    from deltabench.methods import get_method

    get_method(name)
    try:
        return _method_options(name, args, target)
    except CliError:
        raise
    except ValueError as e:
        raise CliError(str(e)) from None


def _cmd_train(args) -> int:
    from deltabench import api

    _check_world(args.world)
    options, flags = _check_method_args(args.method, args)
    info = api.fit(
        args.method,
        world=args.world,
        options=_with_flags(options, flags),
        seed=args.seed,
        device=args.device,
        work_dir=args.work_dir,
        train_images=args.train_images,
    )
    where = info.pop("work_dir")
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=2, default=str))
    print(where)
    return 0


def _with_flags(options: dict, flags: dict) -> dict | None:
    """``--options`` under the short flags (a ``config`` merged key by key): the API's ``options``."""
    from deltabench.settings import resolve_options

    class _NoDefaults:
        method_defaults = {}

    merged = resolve_options(_NoDefaults(), ["m"], {"m": options or {}}, {"m": flags or {}}).get("m")
    return merged or None


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
        raise A.NoFaceError(
            f"{path}: no face found (dlib's frontal face detector needs a roughly frontal "
            "face at least about 40 px wide); give another photo, or --no-align if it is "
            "already aligned the FFHQ way"
        )
    if len(faces) > 1:
        l, t, r, b = faces[0].box
        print(
            f"deltabench: {path}: {len(faces)} faces found; editing the largest "
            f"({r - l + 1}x{b - t + 1} px at ({l}, {t}))",
            file=sys.stderr,
        )
    res = A.align_face(photo, size, face=faces[0])
    res.n_faces = len(faces)
    return photo, res


def _check_no_dangling_link(path: Path, flag: str) -> None:
    """A path (or a folder on it) that is a symbolic link to nothing cannot be written: say so."""
    bad = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
    if bad is not None:
        import os

        raise CliError(
            f"{flag} {path}: {bad} is a symbolic link to {os.readlink(bad)}, which does not exist; "
            f"remove the link or give another path"
        )


def _check_out_file(dest: Path, flag: str) -> None:
    _check_no_dangling_link(dest, flag)
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

    from deltabench import api
    from deltabench.prompts import check_prompts
    from deltabench.viz import save_png

    if args.source is None:  # the domain's neutral prompt ("face", "church"), without loading a model
        from deltabench.domain import neutral_prompt

        _check_world(args.world)
        args.source = neutral_prompt(args.world)
    source, target = check_prompts(args.source, args.target)
    image = Path(args.image)
    if image.is_dir():
        raise CliError(f"image {image} is a directory; give one PNG or JPEG file")
    if not image.is_file():
        raise CliError(f"image {image} does not exist")
    dest = _edit_dest(args, target)
    _check_out_file(dest, "--out")
    _check_world(args.world)
    options, flags = _check_method_args(args.method, args, target=target)
    face_cfg = _photo_domain(args.world)
    if args.paste_back and face_cfg is None:
        raise CliError(
            f"--paste-back puts an edited face back into its photo, but --world {args.world} does "
            "not align photos (only real face domains such as ffhq do); drop --paste-back"
        )
    if args.paste_back and args.no_align:
        raise CliError("--paste-back needs the alignment transform, which --no-align skips; drop one of them")
    aligned_png = dest.with_name(dest.stem + "_aligned.png")
    pasted_png = dest.with_name(dest.stem + "_pasted.png")
    photo = aligned = None
    if face_cfg is not None and not args.no_align:
        photo, aligned = _align_photo(image, face_cfg.resolution)  # before any model loads
    # The CLI is a thin layer over the API: the same settings, the same edit.
    edited = api.edit(
        aligned.image if aligned is not None else image,
        target,
        source=source,
        method=args.method,
        world=args.world,
        strength=args.strength,
        device=args.device,
        options=options or None,
        seed=args.seed,
        work_dir=args.work_dir,
        train_images=args.train_images,
        checkpoint=args.checkpoint,
        fs3=args.fs3,
        precision=args.precision,
        train=_train_flags(args) or None,
    )
    edit = np.asarray(edited, dtype=np.uint8)
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

    names = expand_methods(args.methods)
    all_options = _json_option(args.options, "a JSON object mapping methods to options") if args.options else {}
    try:
        from deltabench.methods import validate_options

        validate_options(all_options, names)
    except ValueError as e:
        raise CliError(str(e)) from None
    per_method = {}
    for name in names:
        _, flags = _check_method_args(name, argparse.Namespace(**{**vars(args), "options": None}))
        per_method[name] = (all_options.get(name, {}), flags)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a file; give a directory")
    if args.out:
        _check_no_dangling_link(Path(args.out), "--out")
    _check_world(args.world)
    domain = load_domain(args.world, device=_device(args), **_folders(args))
    if not domain.has("ground_truth"):
        raise CliError(
            f"--world {args.world}: deltabench eval needs a domain with ground truth (a synthetic "
            f"world); use deltabench run on {domain.name}"
        )
    prompts = {"edit": domain.all_edit_prompts(), "heldout": domain.heldout_prompts}[args.prompts]
    rows = []
    for name in names:
        method = _make_method(name, domain, args, *per_method[name])
        said = method.strength_warning(args.strength)  # outside the calibrated range: say what it does
        if said:
            import warnings

            from deltabench.methods import StrengthWarning

            warnings.warn(said, StrengthWarning, stacklevel=1)
        method.fit()
        rows += [
            dataclasses.asdict(r)
            for r in evaluate_prompts(method, domain, prompts, args.images, args.seed + 1, args.strength)
        ]
    df = pd.DataFrame(rows)
    summary = df.groupby("method", sort=False)[
        ["manipulation_accuracy", "disentanglement", "identity_param_error", "identity_regression", "ms_per_edit"]
    ].mean()
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
    from deltabench.utils import log_line

    if not args.sweep.strip():
        raise CliError(
            "--sweep '' gives no strength multiplier; give some, e.g. --sweep 0.5,1,2 (x1 is always "
            "run), or --sweep 1 for the default strength only"
        )
    try:
        sweep = tuple(float(x) for x in args.sweep.split(","))
    except ValueError:
        raise CliError(f"--sweep takes comma-separated numbers such as 0.5,1,2, got {args.sweep!r}") from None
    options = _json_option(args.options, "a JSON object") if args.options else {}
    _check_world(args.world)
    summary = api.run(
        methods=args.methods,
        world=args.world,
        images=args.images,
        prompts=args.prompts,
        limit=args.limit,
        sweep=sweep,
        seed=args.seed,
        device=args.device,
        out=args.out,
        options=options,
        batch=args.batch,
        resume=args.resume,
        force=args.force,
        work_dir=args.work_dir,
        test_images=args.test_images,
        train_images=args.train_images,
        precision=args.precision,
        references=args.references,
        save_edits=args.save_edits,
        log=log_line,
        dry_run=args.dry_run,
    )
    if args.dry_run:
        return _print_plan(summary, Path(args.out))
    out = summary.attrs["run_dir"]
    from deltabench.report import short_table

    if args.json:  # for machines: every summary.csv column, NaN as null
        rows = json.loads(summary.to_json(orient="records"))
        print(json.dumps({"run_dir": str(out), "summary": rows}, indent=1))
    else:  # for people: the key columns with their intervals (every column: summary.csv, reports/)
        print(short_table(summary, summary.attrs["manifest"].get("fid_features", "oracle")))
        print(f"full table: {out / 'reports' / 'table.md'}; every number: {out / 'summary.csv'}")
        print(out)
    return 0


def _print_plan(units, out: Path) -> int:
    """``run --dry-run``: the units to do (grouped), those already done, and the estimate."""
    from deltabench.utils import _duration

    todo, done = units[~units["done"]], units[units["done"]]
    print(
        f"--dry-run: {len(units)} units (method x prompt x strength), {len(done)} already in {out}, "
        f"{len(todo)} to do; nothing was run or written"
    )
    for (m, sc), g in todo.groupby(["method", "strength_scale"], sort=False):
        print(
            f"  {m:<16} x{sc:<5g} {len(g)} prompt(s) x {int(g['images'].iloc[0])} images: "
            + ", ".join(g["target"].astype(str).tolist()[:4])
            + (" ..." if len(g) > 4 else "")
        )
    eta = units.attrs.get("eta_seconds", float("nan"))
    unknown = units.attrs.get("unknown", [])
    src = units.attrs.get("timings_from") or ["nowhere"]
    print(
        f"ETA: about {_duration(eta)} of editing, a lower bound (ms/edit measured by {' and '.join(src)}, on "
        f"its world and machine; scoring, inversion and any fit come on top)"
        + (f"; no timing yet for {', '.join(unknown)}" if unknown else "")
    )
    return 0


def _cmd_score(args) -> int:
    from deltabench import api
    from deltabench.suite import is_suite

    if args.captions is not None and args.suite != "magicbrush":
        raise CliError(
            "--captions applies to --suite magicbrush (its captions file, e.g. local_captions.json); "
            "drop --captions or add --suite magicbrush"
        )
    if args.suite is not None:  # deltabench score --suite pie-bench|magicbrush DIR EDITS ... (deltabench.interop.score)
        return _cmd_score_bench(args)
    if is_suite(args.inputs):  # deltabench score SUITE EDITS [EDITS ...] (deltabench.suite.score)
        return _cmd_score_suite(args)
    if len(args.edits) != 1:
        raise CliError(
            f"score INPUTS EDITS takes one EDITS folder, got {len(args.edits)}; several EDITS folders "
            f"are scored against a suite (deltabench score SUITE EDITS ...; see `deltabench suite export`)"
        )
    if args.prompts is None:
        raise CliError(
            f"--prompts is required: {args.inputs} is no suite (no suite manifest.json), so give a CSV/JSON "
            f"prompts file for its pairs"
        )
    for flag, v in (("--starts", args.starts), ("--references", None if args.references == "auto" else 1)):
        if v is not None:
            raise CliError(
                f"{flag} applies to a suite (deltabench score SUITE EDITS); {args.inputs} is a folder of "
                f"images: drop {flag}"
            )
    args.edits, args.world = args.edits[0], args.world or "synthfaces"
    args.seed = 0 if args.seed is None else args.seed
    for flag, p in (("INPUTS", args.inputs), ("EDITS", args.edits)):
        if not Path(p).exists():
            raise CliError(f"{flag} {p} does not exist; give a folder of images (or one image)")
    if not Path(args.prompts).is_file():
        raise CliError(
            f"--prompts {args.prompts} does not exist; give a CSV/JSON prompts file (one prompt for "
            f"all pairs, or one per pair)"
        )
    if args.out:
        _check_out_file(Path(args.out), "--out")
    _check_world(args.world)
    df = api.score(
        args.inputs, args.edits, args.prompts, world=args.world, batch=args.batch, device=args.device, seed=args.seed
    )
    summary = df.attrs["summary"]
    if args.out:
        df.to_csv(args.out, index=False)
        summary.to_csv(Path(args.out).with_name(Path(args.out).stem + "_summary.csv"), index=False)
    print(_score_table(summary))
    return 0


def _cmd_score_bench(args) -> int:
    from deltabench.interop.score import score_bench
    from deltabench.suite.field import field_table

    for flag, v in (
        ("--prompts", args.prompts),
        ("--starts", args.starts),
        ("--references", None if args.references == "auto" else args.references),
    ):
        if v is not None:
            raise CliError(
                f"{flag} does not apply to --suite {args.suite}, whose items name their own captions and "
                f"have no ground-truth scene: drop {flag}"
            )
    edits = {Path(e).name: e for e in args.edits}
    if len(edits) != len(args.edits):
        raise CliError(
            f"EDITS: two folders share a name ({', '.join(args.edits)}); each editor is named by its "
            f"folder, so give folders with different names"
        )
    world = args.world or "synthfaces"
    _check_world(world)
    summ = score_bench(
        args.suite,
        args.inputs,
        edits,
        out=args.out,
        world=world,
        captions=args.captions,
        batch=args.batch,
        device=args.device,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(field_table(summ))
    print(Path(summ.attrs["out"]) / "field_summary.csv")
    return 0


def _cmd_score_suite(args) -> int:
    from deltabench.report import short_table
    from deltabench.suite.score import score_suite

    for flag, v in (("--prompts", args.prompts), ("--world", args.world)):
        if v is not None:
            raise CliError(f"{flag}: {args.inputs} is a suite, which names its own prompts and world; drop {flag}")
    edits = {Path(e).name: e for e in args.edits}
    if len(edits) != len(args.edits):
        raise CliError(
            f"EDITS: two folders share a name ({', '.join(args.edits)}); each editor is named by its "
            f"folder, so give folders with different names"
        )
    summary = score_suite(
        args.inputs,
        edits,
        out=args.out,
        starts=args.starts,
        references=args.references,
        batch=args.batch,
        device=args.device,
        seed=args.seed,
        log=lambda m: print(m, file=sys.stderr),
    )
    print(short_table(summary, summary.attrs["manifest"].get("fid_features", "oracle")))
    from deltabench.suite.field import field_table

    print(field_table(summary.attrs["field"]))
    print(Path(summary.attrs["out"]) / "reports" / "index.html")
    return 0


def _score_table(summary) -> str:
    """``score``'s summary as a short table: per prompt, each metric with its 95% interval."""
    import math

    keys = [
        c
        for c in summary.columns
        if c not in ("source", "target", "pairs") and not c.endswith(("_lo", "_hi", "_n", "_negative"))
    ]
    lines = []
    for _, r in summary.iterrows():
        cells = []
        for k in keys:
            v = r[k]
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                continue
            lo, hi = r.get(f"{k}_lo"), r.get(f"{k}_hi")
            iv = f" [{lo:.3g}, {hi:.3g}]" if isinstance(lo, float) and math.isfinite(lo) else ""
            flag = " (<0: see the warning)" if bool(r.get(f"{k}_negative", False) is True) else ""
            cells.append(f"{k} {v:.4g}{iv}{flag}")
        lines.append(f"{r['source']} -> {r['target']} ({int(r['pairs'])} pairs): " + "; ".join(cells))
    return "\n".join(lines)


def _cmd_fit(args) -> int:
    """Fit (or load) a method into the method cache and print what it cost and where it lies."""
    import torch

    from deltabench import api
    from deltabench.methods import get_method, validate_options

    cls = get_method(args.method)
    config = {
        k: v
        for k, v in (("n_images", args.n_images), ("seed", args.fs3_seed), ("max_batch", args.max_batch))
        if v is not None
    }
    options, flags = _check_method_args(args.method, args)
    if config:
        known = {f.name for f in dataclasses.fields(cls.config_class)} if cls.config_class else set()
        if not set(config) <= known:
            raise CliError(
                f"--n-images/--fs3-seed/--max-batch set the fs3 precompute; {args.method} has no such "
                f"settings (use --options)"
            )
        flags["config"] = {**dict(flags.get("config") or {}), **config}
        validate_options({args.method: flags}, [args.method])
    _check_world(args.world)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = api.fit(
        args.method,
        world=args.world,
        options=_with_flags(options, flags),
        seed=args.seed,
        device=args.device,
        work_dir=args.work_dir,
        train_images=args.train_images,
        force=args.force,
    )
    where = info.pop("work_dir")
    print(json.dumps({k: v for k, v in info.items() if k not in ("history",)}, indent=1, default=str))
    print(where)
    return 0


def _cmd_report(args) -> int:
    from deltabench.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "manifest.json").is_file():
        raise CliError(f"{run_dir} is not a deltabench run directory (no manifest.json); give the --out of a run")
    if args.external:  # the run's methods and editors scored from files, in one table (deltabench.suite.merge)
        if args.out is None:
            raise CliError(
                "--external needs --out DIR: the merged table is written to a new folder (RUN and the "
                "scored folders are only read)"
            )
        from deltabench.suite.merge import merge_external

        print(merge_external(run_dir, args.external, args.out) / "index.html")
        return 0
    if args.out is not None:
        raise CliError(f"--out applies with --external; `deltabench report {run_dir}` writes {run_dir}/reports")
    print(write_report(run_dir) / "index.html")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from deltabench.harness.config import RUN_DEFAULTS
    from deltabench.settings import FLAG_HELP

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
    b.add_argument("--threads", type=_int_at_least(0), default=0, help=THREADS_HELP)
    b.add_argument(
        "--only",
        help="comma-separated stages to train into the stage cache, without assembling the world (e.g. clip,identity)",
    )
    b.set_defaults(func=_cmd_world_build)
    c = wsub.add_parser("card", help="measure a built world against its ground truth")
    c.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.add_argument("--n", type=_int_at_least(2), default=512, help="held-out images per measurement")
    c.add_argument("--seed", type=_int_at_least(0), default=10_000, help="seed of the held-out images")
    c.add_argument("--grid", help="also write a PNG: renderer / generator / encoder rows")
    c.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    c.set_defaults(func=_cmd_world_card)
    ds = wsub.add_parser(
        "describe", help="a world's attributes, edit prompts and the words its CLIP reads (no model is loaded)"
    )
    ds.add_argument("--world", default="synthfaces", help="built-in world name, real domain or JSON config path")
    ds.add_argument("--json", action="store_true", help="print JSON")
    ds.set_defaults(func=_cmd_world_describe)
    ls = wsub.add_parser("list", help="built-in worlds, their config hash and where they are built")
    ls.set_defaults(func=_cmd_world_list)

    def method_opts(q, default_method="deltaedit"):
        q.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
        q.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
        q.add_argument("--threads", type=_int_at_least(0), default=0, help=THREADS_HELP)
        q.add_argument(
            "--train-images",
            dest="train_images",
            help="a real domain's folder of images methods train "
            "on (default: $DELTABENCH_<DOMAIN>_TRAIN_IMAGES), kept apart from its test images",
        )
        q.add_argument("--seed", type=_int_at_least(0), default=0, help="the method's seed (training and its pool)")
        q.add_argument(
            "--work-dir", dest="work_dir", help="where trained methods are cached (default: <cache>/methods)"
        )
        q.add_argument("--steps", type=_int_at_least(1), help="DeltaMapper training steps")
        q.add_argument("--n-generated", dest="n_generated", type=_int_at_least(0), help="generated samples in the pool")
        q.add_argument(
            "--n-inverted", dest="n_inverted", type=_int_at_least(0), help="inverted real images in the pool"
        )
        q.add_argument("--batch", type=_int_at_least(1), help="training batch size")
        q.add_argument("--checkpoint", help=FLAG_HELP["checkpoint"])
        q.add_argument("--fs3", help=FLAG_HELP["fs3"])

    t = sub.add_parser("train", help="train a method (text-free for deltaedit); cached and resumable")
    t.add_argument("method", help="deltaedit or deltaedit-naive")
    method_opts(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("edit", help="invert IMAGE and edit it from --source to --target text")
    e.add_argument("image", help="the image (or photo, on a real face domain) to edit")
    e.add_argument(
        "--source", help="the neutral text the edit starts from (default: the domain's, e.g. 'face', 'church')"
    )
    e.add_argument("--target", required=True, help="the text to edit towards, e.g. 'face with glasses'")
    e.add_argument("--method", default="deltaedit", help="a registered method")
    e.add_argument(
        "--strength",
        type=_finite_float,
        default=None,
        help="the method's own strength value (default: its default): DeltaEdit/GD alpha, "
        "LM multiplier, OP latent L2 weight (smaller = stronger)",
    )
    e.add_argument("--out", help="output PNG (default: next to IMAGE)")
    e.add_argument(
        "--no-align",
        dest="no_align",
        action="store_true",
        help="real face domains: IMAGE is already FFHQ-aligned (no dlib alignment)",
    )
    e.add_argument(
        "--paste-back",
        dest="paste_back",
        action="store_true",
        help="real face domains: also write <out stem>_pasted.png, the edited face blended back into the photo",
    )
    e.add_argument(
        "--feather",
        type=_feather,
        default=0.15,
        help="--paste-back: fraction of the face mask's radius that fades out (default 0.15)",
    )
    e.add_argument(
        "--options",
        help="the method's options as JSON (or a JSON file), as run's --options gives "
        "them for one method, e.g. '{\"beta\": 0.03}'",
    )
    e.add_argument(
        "--precision",
        choices=["fp32", "official"],
        default="fp32",
        help="official: CLIP in fp16 on CUDA on the real domains, as the official DeltaEdit runs it",
    )
    method_opts(e)
    e.set_defaults(func=_cmd_edit)

    r = sub.add_parser("run", help="fit methods, edit every test image with every prompt, score, report")
    r.add_argument(
        "--methods",
        default=RUN_DEFAULTS.methods,
        help="comma-separated methods; 'styleclip' means styleclip-op,-lm,-gd",
    )
    r.add_argument(
        "--world", default=RUN_DEFAULTS.world, help="built-in world name, real domain (ffhq, lsun-*) or JSON config"
    )
    r.add_argument(
        "--prompts",
        help="CSV (source,target[,attribute,value]) or JSON prompts file, or 'all' "
        "(default: the domain's benchmark prompts; synthfaces: one edit per attribute; "
        "'all': its 23 edit prompts)",
    )
    r.add_argument(
        "--images",
        type=_int_at_least(2),
        default=RUN_DEFAULTS.images,
        help=f"test images ({RUN_DEFAULTS.images}: every method's manipulation-accuracy interval within +-0.10 and the "
        "default run in 20-38 min on 2 CPU cores; FID needs more distinct images than feature dimensions)",
    )
    r.add_argument(
        "--limit", type=_int_at_least(1), help="cap images and prompts at N: a run small enough to try in seconds"
    )
    r.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=RUN_DEFAULTS.seed,
        help="the run's seed (draws the test images, seed + 1)",
    )
    r.add_argument(
        "--sweep",
        default=",".join(f"{s:g}" for s in RUN_DEFAULTS.sweep),
        help="strength multipliers for the trade-off curves",
    )
    r.add_argument(
        "--batch", type=_int_at_least(1), default=RUN_DEFAULTS.batch, help="images per edit and metric batch"
    )
    r.add_argument(
        "--references",
        default=RUN_DEFAULTS.references,
        help="reference rows scored beside the methods: 'auto' (inversion, and on synthfaces "
        "oracle-edit), 'none', or a comma-separated list",
    )
    r.add_argument(
        "--options",
        help='per-method options as JSON (or a JSON file), e.g. \'{"deltaedit": {"config": {"steps": 500}}}\'',
    )
    r.add_argument("--out", default=RUN_DEFAULTS.out, help="the run directory")
    r.add_argument(
        "--save-edits",
        dest="save_edits",
        action="store_true",
        help="also keep every edited image (and the inputs) as float32 .npy arrays in <out>/edits/",
    )
    r.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="list the units the run would compute, with an ETA; run and write nothing",
    )
    r.add_argument("--json", action="store_true", help="print the summary as JSON (every column) instead of a table")
    r.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    r.add_argument("--threads", type=_int_at_least(0), default=0, help=THREADS_HELP)
    r.add_argument(
        "--precision",
        choices=["fp32", "official"],
        default="fp32",
        help="official: CLIP in fp16 on CUDA on the real domains, as the official DeltaEdit runs it",
    )
    r.add_argument(
        "--test-images",
        dest="test_images",
        help="a real domain's folder of test images (default: $DELTABENCH_<DOMAIN>_IMAGES)",
    )
    r.add_argument(
        "--train-images",
        dest="train_images",
        help="a real domain's folder of images methods train "
        "on (default: $DELTABENCH_<DOMAIN>_TRAIN_IMAGES), kept apart from the test images",
    )
    r.add_argument("--work-dir", dest="work_dir", help="where fitted methods are cached (default: <cache>/methods)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue a run whose config differs, keeping its rows")
    g.add_argument("--force", action="store_true", help="delete a run with a different config and start over")
    r.set_defaults(func=_cmd_run)

    sc = sub.add_parser(
        "score",
        help="score edits made by any code: paired INPUTS and EDITS images and their "
        "prompts, or a suite's edits with its ground truth (SUITE EDITS ...)",
    )
    sc.add_argument(
        "inputs",
        metavar="INPUTS|SUITE",
        help="folder of input images (paired with EDITS by sorted file "
        "name), a suite folder (`deltabench suite export`), or with --suite a PIE-Bench/MagicBrush folder",
    )
    sc.add_argument(
        "edits",
        nargs="+",
        metavar="EDITS",
        help="folder of edited images, one per input; with a SUITE, "
        "one or more folders of <id>.png (ids in SUITE/edits.json), each an editor named by its folder",
    )
    sc.add_argument(
        "--prompts",
        help="CSV/JSON prompts file: one prompt for all pairs, or one per pair (not with a SUITE, which has its own)",
    )
    sc.add_argument("--world", help="the domain whose metrics score them (default synthfaces; a SUITE names its own)")
    sc.add_argument("--batch", type=_int_at_least(1), default=50, help="images per metric batch")
    sc.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=None,
        help="seed of KID's subsets and the intervals (default 0; with a SUITE, the suite's seed)",
    )
    sc.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    sc.add_argument("--threads", type=_int_at_least(0), default=0, help=THREADS_HELP)
    sc.add_argument(
        "--out",
        help="CSV of the per-pair scores (and <stem>_summary.csv per prompt); with a SUITE, the "
        "folder for a run-shaped result (results.csv, summary.csv, field.csv, reports/; "
        "default: a new temporary folder); with --suite, the folder for field.csv and "
        "field_summary.csv",
    )
    sc.add_argument(
        "--starts",
        help="SUITE only: folder of <image>.png (00000.png ...), the image each editor started "
        "from (e.g. its reconstruction), read for CLIP direction and disentanglement "
        "(default: the test images)",
    )
    sc.add_argument(
        "--references",
        default="auto",
        help="SUITE only: reference rows scored beside the editors: 'auto' (inversion, oracle-edit), 'none' or a list",
    )
    sc.add_argument(
        "--suite",
        choices=("pie-bench", "magicbrush"),
        help="INPUTS is another benchmark's folder in "
        "its own layout (PIE-Bench: mapping_file.json + annotation_images/; MagicBrush: edit_sessions.json "
        "+ images/), each EDITS folder one editor's edits laid out as it reads them: scored with the "
        "benchmark's own columns (field.csv, field_summary.csv in --out)",
    )
    sc.add_argument(
        "--captions", help="--suite magicbrush only: its captions file (e.g. local_captions.json), for CLIP-T"
    )
    sc.set_defaults(func=_cmd_score)

    rp = sub.add_parser("report", help="tables (md/csv/tex), edit grid, trade-off curves and index.html of a run")
    rp.add_argument("run_dir", help="the --out directory of a run")
    rp.add_argument(
        "--external",
        nargs="+",
        metavar="SCORED",
        help="folders written by `deltabench score SUITE EDITS` on a suite of the run's world, seed, images "
        "and prompts: their editors join the run's table, marked external (needs --out)",
    )
    rp.add_argument("--out", metavar="DIR", help="with --external: a new folder for the merged table and report")
    rp.set_defaults(func=_cmd_report)

    f = sub.add_parser(
        "fit",
        help="fit (or precompute) what a method needs into the method cache: styleclip-gd's "
        "fs3, deltaedit's mapper, ...",
    )
    f.add_argument("method", help="a registered method, e.g. styleclip-gd")
    f.add_argument("--world", default="synthfaces", help="built-in world name or JSON config path")
    f.add_argument("--work-dir", dest="work_dir", help="method cache (default: <cache>/methods)")
    f.add_argument("--seed", type=_int_at_least(0), default=0, help="the method's seed")
    f.add_argument("--options", help="the method's options as JSON (or a JSON file), e.g. '{\"config\": {...}}'")
    f.add_argument("--n-images", dest="n_images", type=_int_at_least(1), help="styleclip-gd: images per channel")
    f.add_argument(
        "--fs3-seed", dest="fs3_seed", type=_int_at_least(0), help="styleclip-gd: seed of the sampled images"
    )
    f.add_argument("--max-batch", dest="max_batch", type=_int_at_least(1), help="styleclip-gd: images per forward pass")
    f.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    f.add_argument("--train-images", dest="train_images", help="a real domain's folder of images methods train on")
    f.add_argument("--threads", type=_int_at_least(0), default=0, help=THREADS_HELP)
    f.add_argument("--force", action="store_true", help="fit again even if the cache holds a matching fit")
    f.add_argument("--checkpoint", help=FLAG_HELP["checkpoint"])
    f.add_argument("--fs3", help=FLAG_HELP["fs3"])
    f.set_defaults(func=_cmd_fit)

    from deltabench.gap.run import add_parser as add_gap_parser
    from deltabench.real.align import add_parser as add_align_parser
    from deltabench.real.newdomain import add_parser as add_domain_parser
    from deltabench.weights import add_parser as add_weights_parser

    add_gap_parser(sub)
    add_weights_parser(sub)
    add_align_parser(sub)
    add_domain_parser(sub)
    from deltabench.study import add_parser as add_study_parser

    add_study_parser(sub)
    from deltabench.suite import add_parser as add_suite_parser

    add_suite_parser(sub)

    v = sub.add_parser("eval", help="per-prompt manipulation accuracy and disentanglement on the world")
    v.add_argument("--methods", default="deltaedit,deltaedit-naive", help="comma-separated methods")
    v.add_argument(
        "--prompts",
        choices=["edit", "heldout"],
        default="edit",
        help="the world's edit prompts, or phrasings its CLIP never saw in training",
    )
    v.add_argument("--images", type=_int_at_least(1), default=200, help="held-out images per prompt")
    v.add_argument(
        "--strength",
        type=_finite_float,
        default=None,
        help="each method's own strength value (default: each method's; see edit --strength)",
    )
    v.add_argument("--out", help="directory for per_prompt.csv and summary.csv")
    v.add_argument("--options", help="per-method options as JSON (or a JSON file), as run takes them")
    method_opts(v)
    v.set_defaults(func=_cmd_eval)
    return p


THREADS_HELP = (
    "torch CPU threads (default 0: what this process may really use: its CPU affinity, the cgroup's "
    "CPU quota and OMP_NUM_THREADS if set; not the machine's momentary load, so results are reproducible; "
    "--threads 1 on a shared machine)"
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean bad input or a damaged file, never a bug: one line, exit 2."""
    from deltabench.integrity import CacheIntegrityError
    from deltabench.weights import WeightsError
    from deltabench.world.store import WorldCacheError

    return (
        ValueError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        PermissionError,
        WorldCacheError,
        CacheIntegrityError,
        WeightsError,
    )


def _plain_warnings() -> None:
    """deltabench's own warnings to the user (a strength outside the calibrated range) as one
    ``deltabench: warning: ...`` line, not Python's file:line form (unless warnings are being
    recorded, as under pytest)."""
    import warnings

    recording = getattr(getattr(warnings, "_showwarnmsg_impl", None), "__name__", "") != "_showwarnmsg_impl"
    if (
        recording
        or getattr(warnings.showwarning, "_deltabench", False)
        or warnings.showwarning is not getattr(warnings, "_showwarning_orig", warnings.showwarning)
    ):
        return
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "StrengthWarning":
            print(f"deltabench: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    show._deltabench = True
    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, already printed)
        return e.code if isinstance(e.code, int) else 2
    try:
        _plain_warnings()
        if hasattr(args, "threads"):  # every command that computes: --threads, else what the process may use
            from deltabench.utils import set_threads

            set_threads(args.threads or None)
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
