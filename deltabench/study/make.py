"""``deltabench study make``: a self-contained static study page from a run's saved edits.

The page (``STUDY/index.html``, its script and styles inline, the images as PNG files in
``STUDY/img/``) opens from ``file://`` or any static host. Every participant sees the same
``rounds`` items, each a (prompt, test image) edited by a pair of the study's methods, in an
order and with sides drawn from their participant id (:mod:`deltabench.study.schedule`), plus
attention checks: the unedited image against a clear edit from the run's results. Image files
are named by a hash, not by method, so a file name does not tell the participant which is which.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np

from deltabench.study import FORMAT, QUESTION_TITLES, QUESTIONS

EDITS_HINT = (
    "re-run it with `deltabench run ... --save-edits` (or deltabench.run(..., save_edits=True)) "
    "so its edited images are kept"
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_run(run: Path) -> tuple[dict, Path]:
    from deltabench.rundir import read_manifest

    if not run.is_dir():
        raise ValueError(f"RUN_DIR {run}: no such directory; give a deltabench run directory")
    manifest = read_manifest(run)
    if manifest is None:
        raise ValueError(f"RUN_DIR {run}: no manifest.json, not a deltabench run directory")
    edits = run / "edits"
    if not edits.is_dir() or not (edits / "start.npy").is_file() or not (edits / "inputs.npy").is_file():
        raise ValueError(
            f"RUN_DIR {run}: the run has no saved edits ({edits}/ with inputs.npy and start.npy); {EDITS_HINT}"
        )
    return manifest, edits


def _results(run: Path):
    import pandas as pd

    path = run / "results.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path)
    return df if {"method", "prompt_index", "image_index", "strength_scale"} <= set(df.columns) else None


def _png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    x = np.clip((np.asarray(arr, dtype=np.float32) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)
    Image.fromarray(x.transpose(1, 2, 0)).save(path, optimize=True)


def make_study(
    run: str | Path,
    methods,
    out: str | Path,
    rounds: int = 20,
    seed: int = 0,
    checks: int = 2,
    strength: float = 1.0,
    participants_hint: int = 40,
    title: str | None = None,
    force: bool = False,
    log=print,
) -> Path:
    """Write the study page, its images and ``study.json`` into ``out``; return ``out``."""
    import deltabench

    run, out = Path(run), Path(out)
    names = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(
            f"--methods {','.join(names)!r}: give two or more distinct methods of the run, e.g. "
            f"--methods deltaedit,styleclip"
        )
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"--rounds must be a whole number of at least 1, got {rounds!r}")
    if isinstance(checks, bool) or not isinstance(checks, int) or checks < 0:
        raise ValueError(f"--checks must be a whole number of at least 0, got {checks!r}")
    if not math.isfinite(strength):
        raise ValueError(f"--strength must be a finite number (a strength multiplier of the run), got {strength!r}")
    manifest, edits = _read_run(run)
    cfg = manifest["config"]
    scored = list(cfg.get("methods", [])) + list(cfg.get("references", []))
    unknown = [m for m in names if m not in scored]
    if unknown:
        raise ValueError(f"--methods: {unknown} not in run {run} (it has {scored})")
    prompts = cfg.get("prompts") or []
    n_prompts = len(prompts)

    def edit_file(m: str, j: int) -> Path:
        return edits / f"{m}__{j}__{float(strength)!r}.npy"

    missing = [f"{m}__{j}" for m in names for j in range(n_prompts) if not edit_file(m, j).is_file()]
    if n_prompts == 0 or len(missing) == n_prompts * len(names):
        raise ValueError(
            f"RUN_DIR {run}: no saved edits of {names} at strength {strength} in {edits}/; {EDITS_HINT}"
            + (f" (or give --strength, one of the run's sweep {cfg.get('sweep')})" if n_prompts else "")
        )
    if missing:
        raise ValueError(
            f"RUN_DIR {run}: saved edits missing for {missing[:4]}{' ...' if len(missing) > 4 else ''} "
            f"at strength {strength} (a resumed run keeps edits of the units it computed only); {EDITS_HINT}"
        )
    n_images = int(np.load(edits / "start.npy", mmap_mode="r").shape[0])
    if out.exists() and any(out.iterdir()):
        if not (out / "study.json").is_file():
            raise ValueError(f"--out {out} exists and is not a study directory; give a new or empty folder")
        if not force:
            raise ValueError(
                f"--out {out} already holds a study; give --force to replace it (responses made with "
                f"the old page will not match the new study id) or another folder"
            )

    df = _results(run)
    res = df[np.isclose(df["strength_scale"].astype(float), float(strength))] if df is not None else None

    def row(m: str, j: int, i: int) -> dict:
        if res is None:
            return {}
        r = res[(res["method"] == m) & (res["prompt_index"] == j) & (res["image_index"] == i)]
        if not len(r):
            return {}
        keep = ("manipulation_accuracy", "clip_direction", "psnr", "ssim", "ids")
        return {
            k: (None if not np.isfinite(float(r.iloc[0][k])) else float(r.iloc[0][k])) for k in keep if k in r.columns
        }

    rng = np.random.default_rng(seed)
    combos = [(j, i) for j in range(n_prompts) for i in range(n_images)]
    if rounds > len(combos):
        raise ValueError(
            f"--rounds {rounds}: run {run} has {n_prompts} prompts x {n_images} images = {len(combos)} "
            f"(prompt, image) pairs; give --rounds {len(combos)} or fewer, or a run with more --images"
        )

    def informative(j: int, i: int) -> bool:  # the image did not already have the target value
        return all(row(m, j, i).get("manipulation_accuracy", 0.0) is not None for m in names)

    # Prompts in turn (each image order shuffled), the informative pairs first.
    per_prompt = [[(j, int(i)) for i in rng.permutation(n_images)] for j in range(n_prompts)]
    interleaved = [c for group in itertools.zip_longest(*per_prompt) for c in group if c is not None]
    chosen = sorted(interleaved, key=lambda c: not informative(*c))[:rounds]
    pairs = list(itertools.combinations(range(len(names)), 2))
    pair_of = [int(p) for p in rng.permutation(np.resize(np.arange(len(pairs)), rounds))]

    # Attention checks: the clearest edits of the run (reached the target value, highest CLIP
    # direction), each on a different prompt where possible, against the unedited image.
    cands = []
    if res is not None:
        for r in res.itertuples(index=False):
            acc = getattr(r, "manipulation_accuracy", float("nan"))
            cdir = getattr(r, "clip_direction", float("nan"))
            if (np.isfinite(acc) and acc < 1) or not np.isfinite(cdir) or r.method == "inversion":
                continue
            if not edit_file(r.method, int(r.prompt_index)).is_file():
                continue
            cands.append(
                (0 if np.isfinite(acc) else 1, -float(cdir), r.method, int(r.prompt_index), int(r.image_index))
            )
    if checks and not cands:
        raise ValueError(
            f"--checks {checks}: run {run} has no scored edits to use as clear edits (results.csv with "
            f"clip_direction); give --checks 0 or a complete run"
        )
    cands.sort()
    first = {}
    for c in cands:  # the clearest edit of each prompt first, then the next clearest of any
        first.setdefault(c[3], c)
    picked = (sorted(first.values()) + [c for c in cands if c not in first.values()])[:checks]
    if checks and len(picked) < checks:
        raise ValueError(
            f"--checks {checks}: run {run} has only {len(picked)} clear edits; give --checks {len(picked)}"
        )

    # Image files, named by a hash of what they show.
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    for f in img.glob("*.png"):
        f.unlink()
    arrays: dict[str, np.ndarray] = {}

    def frames(key: str, path: Path) -> np.ndarray:
        if key not in arrays:
            arrays[key] = np.load(path, mmap_mode="r")
        return arrays[key]

    def image(kind: str, m: str | None, j: int | None, i: int) -> str:
        name = hashlib.sha256(f"{seed}/{kind}/{m}/{j}/{i}/{strength!r}".encode()).hexdigest()[:16] + ".png"
        if not (img / name).is_file():
            src = (
                frames(kind, edits / f"{kind}.npy")
                if kind in ("inputs", "start")
                else frames(f"{m}/{j}", edit_file(m, j))
            )
            _png(src[i], img / name)
        return f"img/{name}"

    def prompt_fields(j: int) -> dict:
        p = prompts[j]
        return {
            "prompt_index": j,
            "source": p.get("source"),
            "target": p.get("target"),
            "attribute": p.get("attribute"),
            "value": p.get("value"),
        }

    items = []
    for k, ((j, i), p) in enumerate(zip(chosen, pair_of)):
        a, b = names[pairs[p][0]], names[pairs[p][1]]
        items.append(
            {
                "id": k,
                **prompt_fields(j),
                "image_index": i,
                "pair": p,
                "methods": [a, b],
                "original": image("inputs", None, None, i),
                "images": [image("edit", a, j, i), image("edit", b, j, i)],
                "truth": {a: row(a, j, i), b: row(b, j, i)},
            }
        )
    check_items = []
    for c, (_, _negdir, m, j, i) in enumerate(picked):
        check_items.append(
            {
                "id": c,
                **prompt_fields(j),
                "image_index": i,
                "method": m,
                "original": image("inputs", None, None, i),
                "edit": image("edit", m, j, i),
                "unedited": image("start", None, None, i),
                "truth": row(m, j, i),
            }
        )
    run_hash = _sha256(run / "manifest.json")
    body = {
        "format": FORMAT,
        "deltabench_version": deltabench.__version__,
        "run_dir": str(run.resolve()),
        "run_manifest_sha256": run_hash,
        "world": cfg.get("world"),
        "methods": names,
        "pairs": [[names[a], names[b]] for a, b in pairs],
        "rounds": rounds,
        "checks": checks,
        "seed": seed,
        "strength_scale": float(strength),
        "participants_hint": participants_hint,
        "questions": QUESTIONS,
        "question_titles": QUESTION_TITLES,
        "images_sha256": {f.name: _sha256(f) for f in sorted(img.glob("*.png"))},
        "items": items,
        "attention_checks": check_items,
    }
    study_id = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    study = {"study_id": study_id, "title": title or f"Which edit is better? ({cfg.get('world')})", **body}
    (out / "study.json").write_text(json.dumps(study, indent=1) + "\n")
    (out / "index.html").write_text(render_page(study))
    log(
        f"study {study_id}: {rounds} rounds of {'/'.join(names)} + {checks} attention checks, "
        f"{len(list(img.glob('*.png')))} images; open {out / 'index.html'} or `deltabench study serve {out}`"
    )
    return out


def page_data(study: dict) -> dict:
    """What the page needs (no per-edit scores: a participant reading the source learns nothing of them)."""
    return {
        "study_id": study["study_id"],
        "title": study["title"],
        "methods": study["methods"],
        "questions": study["questions"],
        "rounds": study["rounds"],
        "checks": study["checks"],
        "items": [
            {
                "id": it["id"],
                "target": it["target"],
                "pair": it["pair"],
                "methods": it["methods"],
                "original": it["original"],
                "images": it["images"],
            }
            for it in study["items"]
        ],
        "attention_checks": [
            {
                "id": c["id"],
                "target": c["target"],
                "original": c["original"],
                "edit": c["edit"],
                "unedited": c["unedited"],
            }
            for c in study["attention_checks"]
        ],
    }


def render_page(study: dict) -> str:
    asset = resources.files("deltabench.study") / "assets"
    template = (asset / "study.html").read_text()
    data = json.dumps(page_data(study), separators=(",", ":")).replace("</", "<\\/")
    return (
        template.replace("{{TITLE}}", html.escape(study["title"]))
        .replace("{{STYLE}}", (asset / "study.css").read_text())
        .replace("{{SCRIPT}}", (asset / "study.js").read_text())
        .replace("{{DATA}}", data)
    )
