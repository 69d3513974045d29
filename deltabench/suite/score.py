"""``deltabench score SUITE EDITS [EDITS ...]``: score edits of a suite made by any tool, with its
ground truth, into a folder shaped like a run's.

Each EDITS folder holds ``<id>.png`` for every edit of the suite (ids in ``SUITE/edits.json``)
and is one row of the table, marked external, named by its folder. The scoring is the run's:
:func:`deltabench.api.score` per editor (the metric suite of :mod:`deltabench.metrics.suite`,
with the suite's ground-truth parameters), its metric states written as a run's unit files,
then the runner's summary (:func:`deltabench.runner.summarize`: merged states, 95% intervals,
paired tests against the best editor) and the report (:func:`deltabench.report.write_report`).
Beside them, the field's columns (:mod:`deltabench.suite.field`: ``field.csv``,
``field_summary.csv``) of every row, with the suite's masks and target captions and the
domain's CLIP.
The references a run scores (the inversion and, with ground truth, the renderer's perfect edit)
are scored beside them unless ``--references none``.

What an edit is compared with: the test image (PSNR, SSIM, IDS, FID, KID) and its starting image
for CLIP direction and the oracle's source readings (disentanglement, identity parameters): the
test image itself, unless ``--starts`` gives the image the editor started from (for a GAN
editor, its reconstruction of the test image), one ``<image>.png`` per test image
(``00000.png``), as a run compares against its inversion.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deltabench.suite.format import Suite, SuiteError, read_suite, sha256

ID_PATTERN = re.compile(r"\d{5}-p\d{2}\.png")
IMAGE_PATTERN = re.compile(r"\d{5}\.png")
SCORED_BY = "deltabench score SUITE EDITS"  # a folder this wrote (its manifest's "scored_by"): replaced on --force


def _list(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def check_folder(folder, want: list[str], resolution: int, flag: str, pattern: re.Pattern, what: str) -> list[Path]:
    """The files ``<name>.png`` of ``folder`` for every name in ``want``, in that order: a missing,
    extra, misnamed, unreadable or wrongly sized file is one error naming the first few."""
    from PIL import Image, UnidentifiedImageError

    d = Path(folder)
    if not d.is_dir():
        raise SuiteError(
            f"{flag} {d} {'is a file' if d.exists() else 'does not exist'}; give a folder with one "
            f"<{what}>.png per {'suite edit' if what == 'id' else 'test image'}"
        )
    names = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    misnamed = [n for n in names if not pattern.fullmatch(n)]
    example = f"{want[0]}.png" if want else "<name>.png"
    if misnamed:
        raise SuiteError(
            f"{flag} {d}: misnamed file(s) {_list(misnamed)}; every file must be <{what}>.png with the "
            f"{what}s of the suite's edits.json (e.g. {example}, lossless PNG)"
        )
    have = set(names)
    missing = [w for w in want if f"{w}.png" not in have]
    if missing:
        raise SuiteError(
            f"{flag} {d} lacks {len(missing)} of the suite's {len(want)} "
            f"{'edits' if what == 'id' else 'images'}: {_list([m + '.png' for m in missing])}"
        )
    extra = sorted(have - {f"{w}.png" for w in want})
    if extra:
        raise SuiteError(
            f"{flag} {d}: extra file(s) {_list(extra)} that are no {what} of the suite's edits.json; remove them"
        )
    paths = [d / f"{w}.png" for w in want]
    for p in paths:
        try:
            with Image.open(p) as im:
                size, fmt = im.size, im.format
        except (UnidentifiedImageError, OSError):
            raise SuiteError(f"{flag} {p} is not a readable image; write each edit as a PNG") from None
        if fmt != "PNG":
            raise SuiteError(f"{flag} {p} is a {fmt} file named .png; write each edit as a (lossless) PNG")
        if size != (resolution, resolution):
            raise SuiteError(
                f"{flag} {p} is {size[0]}x{size[1]} px; the suite's images are {resolution}x{resolution}: "
                f"write each edit at the size of its test image"
            )
    return paths


def _check_out(out: Path) -> None:
    from deltabench.harness.rundir import check_replaceable_out

    check_replaceable_out(out, "scored_by", SCORED_BY, "deltabench score SUITE EDITS", SuiteError)


def mark_external(summary: pd.DataFrame, external: dict) -> None:
    """The summary's columns on editors scored from files (``external``: name -> its record, with
    ``edits`` and ``starts``): ``external``, ``scored_from`` (the EDITS folder) and ``starts``."""
    summary.insert(2, "external", [m in external for m in summary["method"]])
    summary.insert(3, "scored_from", [external.get(m, {}).get("edits", "") for m in summary["method"]])
    summary.insert(4, "starts", [external.get(m, {}).get("starts", "") for m in summary["method"]])


def _thumbs(x: torch.Tensor) -> np.ndarray:
    """The report's example images: uint8, at most the runner's GRID_SIDE px a side."""
    from deltabench.runner import GRID_SIDE
    from deltabench.utils import float_to_uint8

    if x.shape[-1] > GRID_SIDE:
        x = torch.nn.functional.interpolate(
            x.float(), size=(GRID_SIDE, GRID_SIDE), mode="bilinear", antialias=True, align_corners=False
        )
    return float_to_uint8(x)


def score_suite(
    suite,
    edits: dict,
    out=None,
    starts=None,
    references: str = "auto",
    batch: int = 50,
    device: str = "auto",
    seed: int | None = None,
    log=print,
) -> pd.DataFrame:
    """Score ``edits`` (``{name: folder of <id>.png, or float [E, 3, R, R] in [-1, 1] in the
    order of edits.json}``) of the suite in ``suite`` into ``out`` (default: a new temporary
    folder), shaped like a run: manifest.json, results.csv, units/, summary.csv, reports/.
    ``starts``: None (the test images), a folder of ``<image>.png`` or ``[N, 3, R, R]``. Returns
    the summary (one row per editor, then the references); ``attrs["out"]``, ``attrs["results"]``.
    Every input is checked before any model loads."""
    import tempfile

    from deltabench import references as refs_mod
    from deltabench import rundir
    from deltabench.api import score as api_score
    from deltabench.domain import load_domain
    from deltabench.imageio import as_images
    from deltabench.prompts import Prompt
    from deltabench.runner import GRID_POOL, RunConfig, domain_notes, summarize, unit_id
    from deltabench.utils import resolve_device
    from deltabench.world import store

    s: Suite = suite if isinstance(suite, Suite) else read_suite(suite)
    if not edits:
        raise SuiteError("give at least one EDITS folder")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch must be a whole number of at least 1, got {batch!r}")
    R, ids, N = s.resolution, s.ids, int(s.manifest["images"])
    names = list(edits)
    if len(set(names)) != len(names):
        raise SuiteError(f"EDITS: two folders have the same name {names}; each editor is named by its folder")
    reserved = [n for n in names if n in refs_mod.reference_names()]
    if reserved:
        raise SuiteError(f"EDITS {reserved[0]}: the name of a reference row; rename the folder")
    given: dict[str, object] = {}
    for name, e in edits.items():
        if isinstance(e, torch.Tensor):
            if tuple(e.shape) != (len(ids), 3, R, R):
                raise SuiteError(f"edits of {name}: shape {tuple(e.shape)}, expected {(len(ids), 3, R, R)}")
            given[name] = e
        else:
            given[name] = check_folder(e, ids, R, "EDITS", ID_PATTERN, "id")
    start_files = None
    if starts is not None and not isinstance(starts, torch.Tensor):
        start_files = check_folder(starts, [f"{i:05d}" for i in range(N)], R, "--starts", IMAGE_PATTERN, "image")
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="deltabench-score-"))
    _check_out(out)
    if seed is None:
        seed = int(s.manifest["seed"])

    domain = load_domain(str(s.manifest["world"]), device=resolve_device(device))
    if domain.config_hash != s.manifest["world_config_hash"]:
        raise SuiteError(
            f"SUITE {s.root} was exported from world {s.manifest['world']!r} with config hash "
            f"{s.manifest['world_config_hash']}, but that world here has {domain.config_hash}; score with "
            f"the world it was exported from, or export the suite again"
        )
    refs = refs_mod.parse(references, domain)
    plist = tuple(Prompt(p["source"], p["target"], p["attribute"], p["value"]) for p in s.manifest["prompts"])
    cfg = RunConfig(
        methods=tuple(names),
        world=str(s.manifest["world"]),
        world_hash=domain.config_hash,
        prompts=plist,
        images=N,
        seed=seed,
        sweep=(1.0,),
        batch=batch,
        references=refs,
        unjudged=tuple(sorted(domain.unjudged)),
    )
    inputs = as_images([str(p) for p in s.image_paths()], R, "suite images")  # [N, 3, R, R]
    params = s.world_params()
    img = np.asarray([e["image_index"] for e in s.entries])
    pj = np.asarray([e["prompt_index"] for e in s.entries])
    pair_prompts = [plist[j] for j in pj]
    G = domain.generator
    with torch.no_grad():  # the inversion, as a run computes it (every GAN method's starting image)
        w = domain.invert(inputs.to(domain.device))
        inv = torch.cat([G.synthesis(w[a : a + batch]) for a in range(0, N, batch)]).cpu()
    start_imgs = None
    if start_files is not None:
        start_imgs = as_images([str(p) for p in start_files], R, "--starts")
    elif isinstance(starts, torch.Tensor):
        start_imgs = starts.float().cpu()

    # The field's columns (deltabench.metrics.field) beside: the suite's masks, target captions, the domain's CLIP.
    from deltabench.metrics.field import field_backbones
    from deltabench.suite.field import score_editor, suite_masks, write_field

    masks, targets = suite_masks(s), [e["target"] for e in s.entries]
    backbones = field_backbones(domain, device=domain.device)
    field_scores = {}

    results, states, examples, external = [], {}, {}, {}
    for name in cfg.scored:
        if name in refs:
            ys, ss = torch.empty(len(ids), 3, R, R), torch.empty(len(ids), 3, R, R)
            with torch.no_grad():
                for j, p in enumerate(plist):
                    k = np.flatnonzero(pj == j)
                    for a in range(0, len(k), batch):
                        sel = k[a : a + batch]
                        ii = torch.as_tensor(img[sel])
                        y, st = refs_mod.render(
                            name, domain, p, inputs[ii].to(domain.device), inv[ii].to(domain.device), params[img[sel]]
                        )
                        ys[torch.as_tensor(sel)], ss[torch.as_tensor(sel)] = y.cpu(), st.cpu()
            y, st = ys, ss
        else:
            e = given[name]
            y = e if isinstance(e, torch.Tensor) else [str(p) for p in e]
            st = start_imgs[torch.as_tensor(img)] if start_imgs is not None else None
            if not isinstance(e, torch.Tensor):
                external[name] = {"edits": str(Path(edits[name]).resolve()), "files": {p.name: sha256(p) for p in e}}
            else:
                external[name] = {"edits": "(tensor given to deltabench.suite.score_suite)"}
        log(f"scoring {name} ({len(ids)} edits)")
        df = api_score(
            inputs[torch.as_tensor(img)],
            y,
            pair_prompts,
            world=domain,
            starts=st,
            params=params[img],
            batch=batch,
            seed=seed,
        )
        yt = as_images(y, R, "edits") if not isinstance(y, torch.Tensor) else y
        field_scores[name] = score_editor(
            domain, backbones, inputs[torch.as_tensor(img)], yt, masks, targets, batch=batch
        )
        for j, p in enumerate(plist):
            states[(name, j)] = df.attrs["states"][p]
            first = np.flatnonzero(pj == j)[:GRID_POOL]
            examples[(name, j)] = _thumbs(yt[torch.as_tensor(first)])
        for k, r in df.iterrows():
            e = s.entries[k]
            row = {
                "method": name,
                "prompt_index": int(e["prompt_index"]),
                "source": e["source"],
                "target": e["target"],
                "attribute": e["attribute"],
                "value": e["value"],
                "strength_scale": 1.0,
                "strength": float("nan"),
                "image_index": int(e["image_index"]),
                "edit_id": e["id"],
                "ms_per_edit": float("nan"),
            }
            row.update(
                {
                    c: r[c]
                    for c in df.columns
                    if c not in ("pair", "input_file", "edit_file", "source", "target", "attribute", "value")
                }
            )
            row["unit"] = unit_id(cfg, name, int(e["prompt_index"]), 1.0)
            results.append(row)

    # The folder, shaped like a run's (so the runner's summary and the report read it as one).
    if out.is_dir():
        rundir.remove_owned(out)  # an earlier scoring into out: its recorded files only (_check_out)
    (out / "units").mkdir(parents=True, exist_ok=True)
    (out / rundir.LEDGER).write_text("")
    manifest = {
        "config": cfg.to_dict(),
        **store.describe_environment(),
        **domain_notes(domain),
        "warnings": [],
        "scored_by": SCORED_BY,
        "suite": {
            "path": str(s.root.resolve()),
            "format": s.manifest["format"],
            "version": s.manifest["version"],
            "manifest_sha256": sha256(s.root / "manifest.json"),
            "seed": s.manifest["seed"],
        },
        "starts": str(Path(starts).resolve())
        if start_files is not None
        else ("given as a tensor" if starts is not None else "the test images"),
        "external": external,
        "field": {"clip": domain.clip_name, "notes": backbones.notes, "files": ["field.csv", "field_summary.csv"]},
    }
    store.write_json(manifest, out / "manifest.json")
    res = pd.DataFrame(results).sort_values(
        ["method", "prompt_index", "image_index"],
        key=lambda c: c.map({m: i for i, m in enumerate(cfg.scored)}) if c.name == "method" else c,
    )
    res.to_csv(out / "results.csv", index=False)
    for (name, j), st in states.items():
        f = out / "units" / f"{name}__{j}__{1.0!r}.pt"
        torch.save(
            {
                "suite": st,
                "ms_per_edit": float("nan"),
                "unit": unit_id(cfg, name, j, 1.0),
                "examples": torch.from_numpy(examples[(name, j)]),
            },
            f,
        )
        rundir.record(out, f)
    k = min(GRID_POOL, N)
    torch.save(
        {"inputs": torch.from_numpy(_thumbs(inputs[:k])), "start": torch.from_numpy(_thumbs(inv[:k]))},
        out / "inputs.pt",
    )
    rundir.record(out, out / "manifest.json", out / "results.csv", out / "inputs.pt")
    summary = summarize(out, domain, cfg)
    mark_external(summary, {m: {**e, "starts": manifest["starts"]} for m, e in external.items()})
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    rundir.record(out, out / "summary.csv")
    _, field_summary = write_field(out, field_scores, {n: ids for n in field_scores})
    rundir.record(out, out / "field.csv", out / "field_summary.csv")
    from deltabench.report import write_report

    write_report(out)
    summary.attrs.update(
        {"out": out, "results": res, "manifest": manifest, "field": field_summary, "field_scores": field_scores}
    )
    return summary
