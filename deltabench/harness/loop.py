"""The run loop of ``deltabench run``: fit methods, edit every test image with every prompt, score, report.

A run directory holds:

- ``manifest.json``: the run config, seeds, package versions, git commit, world hash;
- ``results.csv``: one row per method x image x prompt x strength;
- ``units/``: the metric states of each finished (method, prompt, strength) unit, so the
  summary merges exact metric states (FID, KID) instead of averaging per-row numbers, and the
  first :data:`GRID_POOL` edits (the report's grids);
- ``.deltabench-files``: every file the run wrote (:mod:`deltabench.rundir`): all ``--force``
  ever deletes;
- ``fits.json``: fit seconds and stats per method;
- ``summary.csv``: one row per method (default strength), one column per metric;
- ``reports/``: the tables and figures.

Work is done in units of (method, prompt, strength) over all images. A unit's metric state is
written first (atomically), then its rows are appended to ``results.csv`` in one write; on a
restart a unit counts as done only when its rows are there, and a torn last line left by a kill
is dropped. So a run killed at any moment and started again with the same command finishes
without recomputing or duplicating a finished unit.

Under ``torchrun`` (see :mod:`deltabench.distributed`) the *units* are dealt round-robin to
the ranks; each rank edits and scores its units over all images, writes their metric states
to ``units/`` and appends their rows to its own ``results.rank<r>.csv``. Rank 0 then merges
every shard into ``results.csv`` (sorted by method, prompt, strength, image: the order of a
single-process run; each row exactly once) and alone writes ``summary.csv`` and the report.
Units, not images, are sharded so that every per-row number is computed from the same
batches as in a single process and is bitwise identical; the test images' inversion and
starting images are split by whole batches across ranks and gathered, which is exact too. A
re-run (with any number of ranks) reads ``results.csv`` and every shard and computes only the
missing units.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from deltabench import distributed as dist
from deltabench.env import write_json
from deltabench.harness import rundir
from deltabench.harness.config import RunConfig, resolve, validate_config
from deltabench.harness.rundir import (
    check_out_dir,
    check_out_path,
    prepare_out_dir,
    record_strength,
    run_lock,
)
from deltabench.harness.store import (
    Frames,
    current_units,
    done_units,
    drop_stale_rows,
    merge_results,
    read_fits,
    unit_file,
    unit_key,
    write_unit,
)
from deltabench.harness.summary import summarize
from deltabench.metrics.cost import measure
from deltabench.utils import (
    THREADS,
    cpu_name,
    float_to_uint8,
    progress,
    seed_everything,
    timed,
)

GRID_IMAGES = 4  # edited examples per prompt in the report's grids
# Edited examples kept per unit (every strength), so the grids can pick, per prompt, faces that
# lack the target; stored at most GRID_SIDE px a side.
GRID_POOL = 16
GRID_SIDE = 256
# Images per inversion chunk across ranks: a multiple of the domains' own invert batches
# (synthfaces 128, real 16), so every encoder call sees the batch it sees in one process.
INVERT_CHUNK = 128
# Tests only: "R:K" makes rank R exit abruptly after finishing K units (a crashed rank).
FAIL_ENV = "DELTABENCH_FAIL_AFTER_UNITS"


def describe_device(device: torch.device, clip_precision: str) -> dict:
    """The device a run computed on, by name, and the precision its CLIP ran in."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "device": str(device),
        "name": name,
        "clip_precision": clip_precision,
        "torch_threads": torch.get_num_threads(),
        "threads_from": THREADS.get("threads_from", "torch's default (not set through deltabench)"),
    }


def domain_notes(domain) -> dict:
    """What a run manifest records about the domain beyond its config hash: where its training
    and test images come from, with their content hashes (``describe()``), and the identity
    model's backend (insightface, or the fallback and its warning)."""
    notes = {
        "domain": domain.describe(),
        "device": describe_device(domain.device, domain.clip.precision),
        # the FID/KID feature network, which the table's headers name (Inception on real domains)
        "fid_features": domain.fid_feature_name,
        # the resize before the FID network (clean-fid's PIL bicubic on real domains; none on a world)
        "fid_resize": domain.fid_resize,
    }
    if domain.unjudged:  # attributes left out of disentanglement, with the measurement behind each
        notes["unjudged"] = dict(domain.unjudged)
    info = domain.identity_info
    return {**notes, "identity": info} if info else notes


def _prepare_frames(out: Path, cfg: RunConfig, domain, test) -> dict[str, Frames]:
    """Test images, their inversions and the generator's reconstructions, in ``<out>/.work/``,
    computed by chunks (split over the ranks, exact) unless a complete set for this config is there."""
    work = out / ".work"
    key = {"seed": cfg.seed, "images": cfg.images, "world_hash": cfg.world_hash, "world": cfg.world, "batch": cfg.batch}
    done = work / "done.json"
    names = ("inputs", "w", "start")
    if done.is_file() and all((work / f"{n}.npy").is_file() for n in names):
        try:
            ok = json.loads(done.read_text()) == key
        except ValueError:
            ok = False
        if ok:
            return {n: Frames(work / f"{n}.npy") for n in names}
    G = domain.generator
    N, R = cfg.images, domain.resolution

    def create() -> None:
        work.mkdir(exist_ok=True)
        done.unlink(missing_ok=True)
        with torch.no_grad():
            w0 = test.invert(domain, 0, 1)
        Frames(work / "inputs.npy", (N, 3, R, R))
        Frames(work / "w.npy", (N, *w0.shape[1:]))
        Frames(work / "start.npy", (N, 3, R, R))
        rundir.record(out, *(work / f"{n}.npy" for n in names), done)

    dist.on_rank0(create)
    frames = {n: Frames(work / f"{n}.npy") for n in names}
    with torch.no_grad():
        for a, b in dist.chunk_ranges(N, INVERT_CHUNK):
            x = test.batch(a, b)
            w = test.invert(domain, a, b).to(domain.device)
            frames["inputs"].write(a, x)
            frames["w"].write(a, w)
        dist.barrier()
        for a, b in dist.chunk_ranges(N, cfg.batch):  # in the run's batches, as the edits are made
            frames["start"].write(a, G.synthesis(frames["w"].read(a, b, domain.device)))
    dist.barrier()
    dist.on_rank0(lambda: write_json(key, done))
    return frames


REFERENCE_RUN = Path(__file__).resolve().parents[2] / "reports" / "default-run"  # a checkout's measured default run


def plan(cfg: RunConfig, out: Path):
    """``run --dry-run``: every unit of ``cfg`` (method, prompt, strength), whether ``out``
    already holds it, and an estimate of its edit seconds: ms per edit measured by this --out's
    finished units, else by the committed default run (``reports/default-run``: 2 CPU cores),
    else unknown (NaN). ``attrs["eta_seconds"]``: the sum over the units still to do, a lower bound
    (scoring, inversion and fits come on top; a method cached by no run fits first)."""
    import pandas as pd

    out = Path(out)
    done = done_units(out, cfg.images, current_units(cfg)) if out.is_dir() else set()
    ms: dict[str, float] = {}
    sources = []
    for src in (REFERENCE_RUN / "summary.csv", out / "summary.csv"):  # this --out's own timings win
        try:
            ref = pd.read_csv(src)
            ms.update({m: float(v) for m, v in zip(ref["method"], ref["ms_per_edit"]) if np.isfinite(v)})
            sources.append(str(src.parent))
        except (OSError, ValueError, KeyError, pd.errors.ParserError):
            pass
    rows = []
    for m in cfg.scored:
        for j, p in enumerate(cfg.prompts):
            for sc in cfg.scales(m):
                key = unit_key(m, j, sc)
                rows.append(
                    {
                        "method": m,
                        "prompt_index": j,
                        "target": p.target,
                        "strength_scale": sc,
                        "images": cfg.images,
                        "done": key in done,
                        "est_seconds": cfg.images * ms.get(m, float("nan")) / 1000,
                    }
                )
    df = pd.DataFrame(rows)
    todo = df[~df["done"]] if len(df) else df
    df.attrs["eta_seconds"] = float(todo["est_seconds"].sum(min_count=1)) if len(todo) else 0.0
    df.attrs["timings_from"] = sources
    df.attrs["unknown"] = sorted(set(todo.loc[todo["est_seconds"].isna(), "method"])) if len(todo) else []
    return df


def run(
    cfg: RunConfig,
    out: Path,
    domain=None,
    resume: bool = False,
    force: bool = False,
    work_dir: Path | None = None,
    log=print,
    save_edits: bool = False,
    dry_run: bool = False,
):
    """Run the benchmark described by ``cfg`` into ``out``; return ``out`` (``dry_run``: the
    plan, :func:`plan`). ``cfg`` is validated here, before any model loads; ``domain``: the
    loaded domain (default: ``cfg.world`` on the CPU).

    ``save_edits``: also write every edited image of the units computed now, and the inputs and
    starting images, as float32 ``.npy`` arrays ``[N, 3, H, W]`` in ``<out>/edits/``."""
    return execute(
        validate_config(cfg),
        out,
        domain,
        resume=resume,
        force=force,
        work_dir=work_dir,
        log=log,
        save_edits=save_edits,
        dry_run=dry_run,
    )


def execute(
    cfg: RunConfig,
    out: Path,
    domain=None,
    resume: bool = False,
    force: bool = False,
    work_dir: Path | None = None,
    log=print,
    save_edits: bool = False,
    dry_run: bool = False,
):
    """:func:`run` of a config :func:`validate_config` returned (the API validates before it
    loads the domain, so that a bad value costs no model load)."""
    from deltabench.domain import load_domain

    out = Path(out)
    dist.init_from_env()  # launched by torchrun but not through `python -m deltabench`: join the group
    # --out is checked before a model is loaded (its config check waits for the world hash).
    dist.on_rank0(check_out_path, out)
    domain = domain or load_domain(cfg.world)
    cfg = resolve(cfg, domain, log=log if dist.is_main() else (lambda *a, **k: None))
    # every file the run will read (real domains load each network when first used): before any work
    domain.check_files(
        {m: cfg.method_options.get(m, {}) for m in cfg.methods}, metrics=True, test_images=True, purpose="run"
    )
    problems = list(
        dict.fromkeys(
            m for p in cfg.prompts for m in domain.prompt_problems(p.source) + domain.prompt_problems(p.target)
        )
    )
    if dist.is_main():
        for problem in problems:
            log(f"WARNING: {problem}")
    if dry_run:  # the units and an estimate, nothing written
        dist.on_rank0(check_out_dir, out, cfg, resume, force)
        return plan(cfg, out)
    with run_lock(out) if dist.is_main() else contextlib.nullcontext():
        return _run_locked(cfg, out, domain, resume, force, work_dir, log, save_edits, problems)


def _run_locked(
    cfg: RunConfig,
    out: Path,
    domain,
    resume: bool,
    force: bool,
    work_dir,
    log,
    save_edits: bool,
    warnings: list[str] = (),
) -> Path:
    ids = current_units(cfg)

    def prepare() -> set[str]:
        prepare_out_dir(out, cfg, resume, force, log=log, extra={**domain_notes(domain), "warnings": list(warnings)})
        (out / "units").mkdir(exist_ok=True)
        drop_stale_rows(out, cfg, log=log)
        # A unit whose rows are written but whose unit file is gone (deleted as damaged) is redone.
        return {k for k in done_units(out, cfg.images, ids) if unit_file(out, k).is_file()}

    # Rank 0 checks the directory and reads what is done (cutting torn lines) before any rank
    # writes; every rank gets the same set, so they deal the same remaining units.
    done = dist.on_rank0(prepare)
    say = log if dist.is_main() else (lambda *a, **k: None)
    # Every (method, prompt, strength) unit not yet done, in single-process order.
    todo_all = [
        (name, j, s)
        for name in cfg.scored
        for j, _ in enumerate(cfg.prompts)
        for s in cfg.scales(name)
        if unit_key(name, j, s) not in done
    ]
    kept = ("inputs.pt",) + (("edits/inputs.npy", "edits/start.npy") if save_edits else ())
    frames = None
    if todo_all or not all((out / f).is_file() for f in kept):
        frames = _compute_units(cfg, out, domain, work_dir, todo_all, ids, say, save_edits)
    else:  # a finished run resumed: nothing to fit, invert or edit
        for name in cfg.scored:
            say(f"[{name}] all {len(cfg.prompts) * len(cfg.scales(name))} units done")

    def finish() -> None:
        merge_results(out, cfg)
        if frames is not None:
            _write_inputs(out, cfg, frames, save_edits)
        with timed("summary (merged metric states, bootstrap intervals and tests)", log=log):
            summarize(out, domain, cfg)
        rundir.record(out, out / "summary.csv")
        from deltabench.report import write_report

        with timed("report (tables, grids, plots)", log=log):
            write_report(out)
        shutil.rmtree(out / ".work", ignore_errors=True)  # recomputed (exactly) by a later resume

    dist.barrier()  # every rank's units are written
    dist.on_rank0(finish)  # and the others wait for the summary and report
    return out


def _write_inputs(out: Path, cfg: RunConfig, frames: dict, save_edits: bool) -> None:
    """``inputs.pt`` (the grids' inputs and starting images); with ``save_edits`` every input and start."""
    k = min(GRID_POOL, cfg.images)
    torch.save(
        {
            "inputs": torch.from_numpy(_thumbnails(frames["inputs"].read(0, k))),
            "start": torch.from_numpy(_thumbnails(frames["start"].read(0, k))),
        },
        out / "inputs.pt",
    )
    rundir.record(out, out / "inputs.pt")
    if save_edits:
        for n in ("inputs", "start"):
            shutil.copyfile(out / ".work" / f"{n}.npy", out / "edits" / f"{n}.npy")
            rundir.record(out, out / "edits" / f"{n}.npy")


def _compute_units(
    cfg: RunConfig, out: Path, domain, work_dir, todo_all: list, ids: dict, say, save_edits: bool
) -> dict:
    """Fit every row's method and compute this rank's share of ``todo_all``; return the frames."""
    rank, n_ranks = dist.rank(), dist.world_size()
    results = out / ("results.csv" if n_ranks == 1 else f"results.rank{rank}.csv")
    # The one method cache of every command: <work_dir or <cache>/methods>/<domain key>, with the
    # world's shipped fits copied in (deltabench.settings.method_cache), so `edit` finds what a run fitted.
    from deltabench.settings import method_cache

    work_dir = dist.on_rank0(method_cache, domain, work_dir)
    seed_everything(cfg.seed)
    test = domain.test_images(cfg.images, seed=cfg.seed + 1)
    frames = _prepare_frames(out, cfg, domain, test)
    fits = read_fits(out)
    mine = dist.shard(todo_all)  # dealt round-robin over the ranks
    columns: list[str] = []  # the results file's columns, fixed by its first row
    state = {"finished": 0, "fail_after": _fail_after(rank)}
    for name in cfg.scored:
        todo = [(j, s) for m, j, s in mine if m == name]
        if name in cfg.references:
            method = _reference(name, domain)
        else:
            with timed(f"[{name}] fit", log=say):
                method = _fit_method(name, cfg, domain, work_dir, fits, out)
            dist.on_rank0(record_strength, out, name, method.describe_strength(cfg.scales(name)))
        if not any(m == name for m, _, _ in todo_all):
            say(f"[{name}] all {len(cfg.prompts) * len(cfg.scales(name))} units done")
            continue
        with timed(f"[{name}] {len(todo)} units of {cfg.images} edits", log=say):
            for j, scale in progress(todo, desc=f"run {name}" + (f" [rank {rank}]" if n_ranks > 1 else "")):
                _run_unit(
                    cfg,
                    out,
                    domain,
                    results,
                    columns,
                    frames,
                    test,
                    method,
                    name,
                    j,
                    scale,
                    ids[unit_key(name, j, scale)],
                    save_edits,
                )
                state["finished"] += 1
                if state["fail_after"] is not None and state["finished"] >= state["fail_after"]:
                    os._exit(3)  # tests only: a rank that dies mid-run, without any clean-up
    return frames


def _reference(name: str, domain):
    from deltabench.references import get_reference

    return get_reference(name)(domain)


def _run_unit(
    cfg: RunConfig,
    out: Path,
    domain,
    results: Path,
    columns: list,
    frames: dict,
    test,
    method,
    name: str,
    j: int,
    scale: float,
    uid: str,
    save_edits: bool,
) -> None:
    """One (method, prompt, strength) unit over all images: edit, score, write its states and rows."""
    from deltabench.metrics.suite import build_metrics

    p = cfg.prompts[j]
    strength = method.strength_for(scale)
    suite = build_metrics(domain, p, seed=cfg.seed)
    per_image: dict[str, list] = {}
    examples = []
    cache_by_batch: dict[int, dict] = {}
    t_edit = 0.0
    if save_edits:
        (out / "edits").mkdir(exist_ok=True)
        kept = Frames(
            out / "edits" / f"{name}__{j}__{scale!r}.npy", (cfg.images, 3, domain.resolution, domain.resolution)
        )
        rundir.record(out, kept.path)
    with measure(domain.device) as edit_cost:  # the unit's peak memory: its edits and their scoring
        for i in range(0, cfg.images, cfg.batch):
            b = min(i + cfg.batch, cfg.images)
            w = frames["w"].read(i, b, domain.device)
            x = frames["inputs"].read(i, b, domain.device)
            start = frames["start"].read(i, b, domain.device)
            params = test.params[i:b] if test.params is not None else None
            t1 = time.perf_counter()
            edited, start = method.edit_images(domain, p, w, x, start, params, strength)
            t_edit += time.perf_counter() - t1
            if i < GRID_POOL:
                examples.append(_thumbnails(edited[: GRID_POOL - i]))
            if save_edits:
                kept.write(i, edited)
            scores = suite.update(x, edited, start, params=params, cache=cache_by_batch.setdefault(i, {}))
            for k, v in scores.items():
                per_image.setdefault(k, []).extend(v.tolist())
    write_unit(
        out,
        results,
        cfg,
        name,
        j,
        scale,
        uid,
        strength,
        suite,
        per_image,
        examples,
        t_edit,
        edit_cost.peak_bytes,
        columns,
    )


def _thumbnails(x: torch.Tensor) -> np.ndarray:
    """Images for the report's grids: uint8, at most :data:`GRID_SIDE` px a side (antialiased)."""
    if x.shape[-1] > GRID_SIDE:
        x = torch.nn.functional.interpolate(
            x.float(), size=(GRID_SIDE, GRID_SIDE), mode="bilinear", antialias=True, align_corners=False
        )
    return float_to_uint8(x)


def _fit_method(name: str, cfg: RunConfig, domain, work_dir: Path, fits: dict, out: Path):
    """Build method ``name`` with the run's options and fit it (cached); record the fit in fits.json."""
    from deltabench.settings import build_method

    options = cfg.method_options.get(name, {})
    method = build_method(name, domain, options, seed=cfg.seed, cache=work_dir)
    t0 = time.perf_counter()
    # A method that splits its own fitting across ranks (DDP training, sharded
    # precompute) is fitted by all ranks together; any other is fitted by rank 0 into the
    # method cache first, then loaded from it by the others.
    with contextlib.nullcontext() if method.distributed_fit else dist.rank0_first(), measure(domain.device) as fit_cost:
        stats = method.fit() or {}
        per_prompt = method.fit_prompts([(p.source, p.target) for p in cfg.prompts])
        if per_prompt:  # per-prompt training (StyleCLIP-LM) is fit cost too
            stats = {
                **stats,
                "fit_seconds": float(stats.get("fit_seconds", 0.0)) + sum(per_prompt.values()),
                "per_prompt_seconds": per_prompt,
            }
    fit_s = time.perf_counter() - t0
    opts_key = json.loads(json.dumps(options, default=str))
    if fits.get(name, {}).get("options", opts_key) != opts_key or name not in fits:
        if dist.is_main():  # the first fit of this run (config) is the one that trained
            # A method cached by an earlier run loads in a moment; report what fitting cost then.
            fits[name] = {
                "fit_seconds": float(stats.get("fit_seconds", fit_s)),
                "loaded_seconds": fit_s,
                "fit_peak_mb": fit_cost.peak_mb,
                "peak_is_lifetime": fit_cost.peak_is_lifetime,
                "options": opts_key,
                "stats": {k: v for k, v in stats.items() if k != "history"},
            }
            write_json(fits, out / "fits.json")
            rundir.record(out, out / "fits.json")
    return method


def _fail_after(rank: int) -> int | None:
    """``$DELTABENCH_FAIL_AFTER_UNITS`` = ``"R:K"``: rank R exits after K units (tests only)."""
    spec = os.environ.get(FAIL_ENV)
    if not spec:
        return None
    try:
        r, k = (int(x) for x in spec.split(":"))
    except ValueError:
        raise ValueError(f"{FAIL_ENV}={spec!r}: expected 'RANK:UNITS', e.g. '1:2'") from None
    return k if r == rank else None
