"""``deltabench run``: fit methods, edit every test image with every prompt, score, report.

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
import csv
import hashlib
import io
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from deltabench import distributed as dist
from deltabench import integrity, references, rundir
from deltabench.methods import expand_methods, get_method
from deltabench.metrics.cost import PeakMemory, measure
from deltabench.prompts import Prompt
from deltabench.rundir import RunConfigError, read_manifest
from deltabench.stats import SET_BOOT, SET_BOOT_LARGE
from deltabench.utils import THREADS, cpu_name, float_to_uint8, progress, seed_everything, timed
from deltabench.world import store

ROW_KEYS = ("method", "prompt_index", "source", "target", "attribute", "value", "strength_scale",
            "strength", "image_index")


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


@dataclass(frozen=True)
class RunConfig:
    methods: tuple[str, ...]
    world: str = "synthfaces"
    world_hash: str = ""
    prompts: tuple[Prompt, ...] = ()
    prompts_file: str | None = None
    images: int = 100
    seed: int = 0
    sweep: tuple[float, ...] = (1.0,)
    batch: int = 50
    method_options: dict = field(default_factory=dict)
    # Reference rows (deltabench.references), scored at the default strength only; "auto":
    # every reference the domain has. The CLI and API default to "auto".
    references: tuple[str, ...] = ()

    @property
    def scored(self) -> tuple[str, ...]:
        """Methods, then references: every name with rows in the results."""
        return tuple(self.methods) + tuple(self.references)

    def scales(self, name: str) -> tuple[float, ...]:
        """The strength multipliers ``name`` is run at: the sweep, or x1 for a reference."""
        return (1.0,) if name in self.references else tuple(float(s) for s in self.sweep)

    def to_dict(self) -> dict:
        """JSON-shaped (lists, not tuples), so it compares equal to what manifest.json holds."""
        d = asdict(self)
        d["prompts"] = [asdict(p) for p in self.prompts]
        return json.loads(json.dumps(d))


def default_prompts(domain, every: bool = False) -> tuple[Prompt, ...]:
    """The domain's benchmark prompts; ``every``: all of its edit prompts.

    synthfaces benchmarks one edit per attribute (the world config's ``benchmark.prompts``), so
    the default run fits its CPU budget; ``--prompts all`` runs all 23.
    """
    return domain.all_edit_prompts() if every else tuple(domain.prompts)


def with_domain_defaults(options: dict, domain, methods) -> dict:
    """Per-method options: the domain's defaults under the user's (:func:`deltabench.settings.resolve_options`,
    the one resolution every entry point uses)."""
    from deltabench.settings import resolve_options

    return resolve_options(domain, methods, options)


# --- results file ------------------------------------------------------------------------

def _read_rows(path: Path) -> list[dict]:
    """Rows of ``results.csv``; a torn last line (a kill mid-write) is cut off the file."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)
        data = data[:cut]
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode())))
    except (UnicodeDecodeError, csv.Error) as e:
        raise RunConfigError(f"{path} is not a readable results file ({e}); move it away and run the same "
                             f"command again to recompute its units") from None
    for i, r in enumerate(rows, 2):
        try:
            _row_key(r)
        except (KeyError, TypeError, ValueError):
            raise RunConfigError(f"{path}, line {i}: not a deltabench results row (method, prompt_index, "
                                 f"strength_scale, image_index unreadable); remove that line or move the file "
                                 f"away, then run the same command again to recompute its units") from None
    return rows


def _append_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k)) for k in columns})
    with open(path, "ab") as f:
        f.write(buf.getvalue().encode())  # one write per unit
        f.flush()
        os.fsync(f.fileno())


def _fmt(v):
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else v


def _unit_key(method: str, prompt_index: int, scale: float) -> str:
    return f"{method}|{prompt_index}|{scale!r}"


def _unit_file(out: Path, key: str) -> Path:
    """The metric-state file of the unit ``method|prompt|strength``."""
    m, j, scale = key.rsplit("|", 2)
    return out / "units" / f"{m}__{int(j)}__{float(scale)!r}.pt"


def _row_key(r: dict) -> tuple[str, int, float, int]:
    return r["method"], int(r["prompt_index"]), float(r["strength_scale"]), int(r["image_index"])


def shard_files(out: Path) -> list[Path]:
    """The per-rank results files of a distributed run not yet merged into ``results.csv``."""
    return sorted(Path(out).glob("results.rank*.csv"), key=lambda p: int(p.name.split(".")[1][4:] or 0))


def _all_rows(out: Path) -> list[dict]:
    """Rows of ``results.csv`` then of every rank's shard (torn last lines cut off)."""
    rows = _read_rows(out / "results.csv")
    for f in shard_files(out):
        rows += _read_rows(f)
    return rows


def done_units(out: Path, images: int, ids: dict[str, str] | None = None) -> set[str]:
    """Keys of the units whose rows for all ``images`` images are written (in any file); with
    ``ids`` (key -> unit id, :func:`current_units`) only rows of those very units count."""
    seen: dict[str, set[int]] = {}
    for r in _all_rows(out):
        k = _unit_key(r["method"], int(r["prompt_index"]), float(r["strength_scale"]))
        if ids is not None and r.get("unit") != ids.get(k):
            continue
        seen.setdefault(k, set()).add(int(r["image_index"]))
    return {k for k, v in seen.items() if len(v) >= images}


def merge_results(out: Path, cfg: RunConfig) -> int:
    """Fold the rank shards into ``results.csv``: each (method, prompt, strength, image) row
    once (the last written wins), sorted in single-process order: methods as given, prompts,
    strengths as in the sweep, images. Rewritten atomically, then the shards are removed (a
    kill in between leaves rows that the next merge deduplicates). Returns the row count.

    Without shards and without duplicate rows ``results.csv`` is left as it is."""
    out = Path(out)
    results, shards = out / "results.csv", shard_files(out)
    base = _read_rows(results)
    rows = base + [r for f in shards for r in _read_rows(f)]
    unique: dict[tuple, dict] = {}
    for r in rows:
        unique[_row_key(r)] = r
    if not shards and len(unique) == len(rows):
        return len(rows)
    m_order = {m: i for i, m in enumerate(cfg.scored)}
    s_order = {float(s): i for i, s in enumerate(cfg.sweep)}

    def order(k):
        m, j, s, n = k
        return (m_order.get(m, len(m_order)), m, j, s_order.get(s, len(s_order)), s, n)

    ordered = [unique[k] for k in sorted(unique, key=order)]
    if not ordered:
        for f in shards:
            f.unlink()
        return 0
    # Columns: those of the file that holds the first row (as a single process would have
    # written them), then any other file's extra columns.
    headers = [list(base[0].keys())] if base else []
    headers += [list(_read_rows(f)[0].keys()) for f in shards if _read_rows(f)]
    first = next((list(r.keys()) for r in ordered[:1]), [])
    columns = list(first)
    for h in headers:
        columns += [c for c in h if c not in columns]
    integrity.atomic_write(results, lambda tmp: _append_rows(tmp, ordered, columns))
    rundir.record(out, results)
    for f in shards:
        f.unlink()
    return len(ordered)


# --- the run directory ----------------------------------------------------------------

MARKER = ".deltabench-run"  # written when deltabench creates a run directory: only such a directory may be cleared
LOCK = ".lock"
# What a run writes into its directory: all that --force ever removes (anything else is kept).
RUN_ENTRIES = ("manifest.json", "results.csv", "results.superseded.csv", "summary.csv", "fits.json", "units",
               "reports", "inputs.pt", ".work", "edits", MARKER)


def _is_run_entry(name: str) -> bool:
    return name in RUN_ENTRIES or name == LOCK or (name.startswith("results.rank") and name.endswith(".csv")) \
        or name.endswith(".tmp")


def check_out_dir(out: Path, cfg: RunConfig, resume: bool, force: bool) -> None:
    """Everything about ``--out`` that can refuse the run, checked before any work or write."""
    dangling = next((p for p in (out, *out.parents) if p.is_symlink() and not p.exists()), None)
    if dangling is not None:
        raise RunConfigError(f"--out {out}: {dangling} is a symbolic link to {os.readlink(dangling)}, which does not "
                             f"exist; remove the link or give another directory")
    if out.exists() and not out.is_dir():
        raise RunConfigError(f"--out {out} is a file, not a directory; give a directory path")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunConfigError(f"--out {out}: {parent} is a file, not a directory; give a directory path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RunConfigError(f"--out {out}: {parent} is not writable; give a directory you can write to")
    if not out.is_dir():
        return
    entries = sorted(p.name for p in out.iterdir())
    manifest = read_manifest(out)
    foreign = [n for n in entries if not _is_run_entry(n)]
    if manifest is None:
        theirs = rundir.foreign_files(out)  # files no deltabench run wrote, in any subfolder
        if theirs:
            raise RunConfigError(f"--out {out} holds files deltabench did not write ({_names(theirs)}), so it "
                                 f"cannot hold a new run (a later --force could not tell them from the run's); "
                                 f"give a new or empty directory")
        return
    old, new = manifest["config"], cfg.to_dict()
    if old != new and not resume:
        if not force:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise RunConfigError(
                f"{out} holds a run with a different config (differs in: {diff}). Use --resume to "
                f"keep its finished rows and continue with the new config, --force to delete it and "
                f"start over, or another --out directory.")
        if not (out / MARKER).is_file() and foreign:
            raise RunConfigError(f"--force: {out} was not created by `deltabench run` (no {MARKER} marker) and "
                                 f"holds files that are not a run's ({_names(foreign)}); nothing was deleted. "
                                 f"Give another --out, or clear the directory yourself")


def _names(names: list[str], k: int = 6) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def describe_device(device: torch.device, clip_precision: str) -> dict:
    """The device a run computed on, by name, and the precision its CLIP ran in."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": str(device), "name": name, "clip_precision": clip_precision,
            "torch_threads": torch.get_num_threads(),
            "threads_from": THREADS.get("threads_from", "torch's default (not set through deltabench)")}


def domain_notes(domain) -> dict:
    """What a run manifest records about the domain beyond its config hash: where its training
    and test images come from, with their content hashes (``describe()``), and the identity
    model's backend (insightface, or the fallback and its warning)."""
    notes = {"domain": domain.describe(), "device": describe_device(domain.device, domain.clip.precision),
             # the FID/KID feature network, which the table's headers name (Inception on real domains)
             "fid_features": domain.fid_feature_name}
    info = domain.identity_info
    return {**notes, "identity": info} if info else notes


def prepare_out_dir(out: Path, cfg: RunConfig, resume: bool, force: bool, log=print,
                    extra: dict | None = None) -> dict:
    """Check (:func:`check_out_dir`), create or clear the run directory; return its manifest
    (``extra``: more entries for it, e.g. :func:`domain_notes`).

    ``--force`` removes only the files the run recorded writing (its ledger,
    :func:`deltabench.rundir.remove_owned`), never another file."""
    check_out_dir(out, cfg, resume, force)
    if out.is_dir():
        rundir.adopt_legacy(out)
    manifest_old = read_manifest(out) if out.is_dir() else None
    new = cfg.to_dict()
    if manifest_old is not None and manifest_old["config"] != new and not resume and force:
        kept = rundir.remove_owned(out)  # only the files the run recorded writing
        log(f"--force: cleared the run in {out}" + (f" (kept files it did not write: {_names(kept)})" if kept else ""))
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        store.write_json({"created_by": "deltabench run", "time": time.time()}, out / MARKER)
        if not (out / rundir.LEDGER).exists():
            (out / rundir.LEDGER).write_text("")
    manifest = {"config": new, "config_hash": hashlib.sha256(json.dumps(new, sort_keys=True)
                                                                         .encode()).hexdigest()[:16],
                **store.describe_environment(), **(extra or {})}
    store.write_json(manifest, out / "manifest.json")
    rundir.record(out, out / "manifest.json")
    return manifest


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``<out>/.lock`` for the whole run: a second run into the same directory is refused."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        who = f.read().strip()
        f.close()
        raise RunConfigError(f"--out {out}: another deltabench run is writing to this directory"
                             + (f" ({who})" if who else "") + "; wait for it to finish, or give another --out") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    try:
        yield
    finally:
        f.close()  # releases the lock


def unit_id(cfg: RunConfig, method: str, j: int, scale: float) -> str:
    """What fixes a unit's numbers: method and its options, the prompt's text, the strength, the
    seed (which draws the test images), their number, the batch and the world's weights. Rows and
    metric states carry it, so a resumed run never takes a unit of another config for its own."""
    key = {"method": method, "options": cfg.method_options.get(method, {}), "prompt": asdict(cfg.prompts[j]),
           "strength_scale": float(scale), "seed": cfg.seed, "images": cfg.images, "batch": cfg.batch,
           "world": cfg.world, "world_hash": cfg.world_hash,
           # x-k means k times the edit for every method (StyleCLIP-OP's L2 weight / k since this
           # contract): units of runs made before it are recomputed, never mixed in.
           "strength_contract": 2}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def current_units(cfg: RunConfig) -> dict[str, str]:
    """``method|prompt|strength`` -> unit id, for every unit of ``cfg``."""
    return {_unit_key(m, j, s): unit_id(cfg, m, j, s)
            for m in cfg.scored for j in range(len(cfg.prompts)) for s in cfg.scales(m)}


def drop_stale_rows(out: Path, cfg: RunConfig, log=print) -> int:
    """Move every row that is not of a current unit (another prompt text, seed, image set, method
    config ... under the same labels) from ``results.csv`` and the shards to
    ``results.superseded.csv``; return how many moved. Nothing is rewritten when none is stale."""
    ids = set(current_units(cfg).values())
    rows = _all_rows(out)
    stale = [r for r in rows if r.get("unit") not in ids]
    if not stale:
        return 0
    keep = [r for r in rows if r.get("unit") in ids]
    sup = out / "results.superseded.csv"
    cols = list(dict.fromkeys(k for r in stale for k in r))
    old_sup = _read_rows(sup)
    if old_sup:
        cols = list(dict.fromkeys(list(old_sup[0].keys()) + cols))
        integrity.atomic_write(sup, lambda tmp: _append_rows(tmp, old_sup + stale, cols))
    else:
        _append_rows(sup, stale, cols)
    rundir.record(out, sup)
    results = out / "results.csv"
    if keep:
        integrity.atomic_write(results, lambda tmp: _append_rows(tmp, keep, list(dict.fromkeys(k for r in keep for k in r))))
    else:
        results.unlink(missing_ok=True)
    for f in shard_files(out):
        f.unlink()
    log(f"{len(stale)} rows of units that no longer match the config moved to {sup.name}; those units are recomputed")
    return len(stale)


class _Frames:
    """A float32 array ``[N, ...]`` on disk (``.npy``), written and read a batch at a time, so
    that a run's memory does not grow with its number of images."""

    def __init__(self, path: Path, shape: tuple[int, ...] | None = None):
        self.path = path
        if shape is not None:
            np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape).flush()

    def write(self, a: int, x: torch.Tensor) -> None:
        mm = np.load(self.path, mmap_mode="r+")
        mm[a : a + len(x)] = x.detach().float().cpu().numpy()
        mm.flush()
        del mm

    def read(self, a: int, b: int, device=None) -> torch.Tensor:
        mm = np.load(self.path, mmap_mode="r")
        t = torch.from_numpy(np.array(mm[a:b]))
        del mm  # unmapped: what was read does not stay resident
        return t.to(device) if device is not None else t


def _prepare_frames(out: Path, cfg: RunConfig, domain, test) -> dict[str, _Frames]:
    """Test images, their inversions and the generator's reconstructions, in ``<out>/.work/``,
    computed by chunks (split over the ranks, exact) unless a complete set for this config is there."""
    work = out / ".work"
    key = {"seed": cfg.seed, "images": cfg.images, "world_hash": cfg.world_hash, "world": cfg.world,
           "batch": cfg.batch}
    done = work / "done.json"
    names = ("inputs", "w", "start")
    if done.is_file() and all((work / f"{n}.npy").is_file() for n in names):
        try:
            ok = json.loads(done.read_text()) == key
        except ValueError:
            ok = False
        if ok:
            return {n: _Frames(work / f"{n}.npy") for n in names}
    G = domain.generator
    N, R = cfg.images, domain.resolution

    def create() -> None:
        work.mkdir(exist_ok=True)
        done.unlink(missing_ok=True)
        with torch.no_grad():
            w0 = test.invert(domain, 0, 1)
        _Frames(work / "inputs.npy", (N, 3, R, R))
        _Frames(work / "w.npy", (N, *w0.shape[1:]))
        _Frames(work / "start.npy", (N, 3, R, R))
        rundir.record(out, *(work / f"{n}.npy" for n in names), done)

    dist.on_rank0(create)
    frames = {n: _Frames(work / f"{n}.npy") for n in names}
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
    dist.on_rank0(lambda: store.write_json(key, done))
    return frames


def validate_config(cfg: RunConfig) -> None:
    """Every value of ``cfg`` that can be wrong, checked before any work (clear errors)."""
    from deltabench.methods import validate_options

    if isinstance(cfg.images, bool) or not isinstance(cfg.images, int) or cfg.images < 2:
        raise ValueError(f"--images must be a whole number of at least 2 (FID and KID compare sets of at "
                         f"least two images), got {cfg.images!r}")
    if isinstance(cfg.batch, bool) or not isinstance(cfg.batch, int) or cfg.batch < 1:
        raise ValueError(f"--batch must be a whole number of at least 1, got {cfg.batch!r}")
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ValueError(f"--seed must be a whole number >= 0, got {cfg.seed!r}")
    check_sweep(cfg.sweep)
    validate_options(cfg.method_options, expand_methods(list(cfg.methods)))
    if any(p.attribute is not None for p in cfg.prompts):  # against the domain's own schema, before any model loads
        from deltabench.domain import domain_attributes
        from deltabench.prompts import check_attributes

        check_attributes(cfg.prompts, domain_attributes(cfg.world), cfg.prompts_file, f"world {cfg.world!r}")


def check_sweep(sweep) -> tuple[float, ...]:
    """Strength multipliers: finite and > 0 (x0 is no edit; a negative one reverses it)."""
    out = []
    for x in sweep:
        v = float(x)
        if not np.isfinite(v) or v <= 0:
            raise ValueError(f"--sweep: every strength multiplier must be a finite number > 0, got {x!r}")
        out.append(v)
    if not out:
        raise ValueError("--sweep: give at least one strength multiplier, e.g. 0.5,1,2")
    return tuple(out)


REFERENCE_RUN = Path(__file__).resolve().parents[1] / "reports" / "default-run"  # a checkout's measured default run


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
                key = _unit_key(m, j, sc)
                rows.append({"method": m, "prompt_index": j, "target": p.target, "strength_scale": sc,
                             "images": cfg.images, "done": key in done,
                             "est_seconds": cfg.images * ms.get(m, float("nan")) / 1000})
    df = pd.DataFrame(rows)
    todo = df[~df["done"]] if len(df) else df
    df.attrs["eta_seconds"] = float(todo["est_seconds"].sum(min_count=1)) if len(todo) else 0.0
    df.attrs["timings_from"] = sources
    df.attrs["unknown"] = sorted(set(todo.loc[todo["est_seconds"].isna(), "method"])) if len(todo) else []
    return df


def run(cfg: RunConfig, out: Path, domain=None, resume: bool = False, force: bool = False,
        work_dir: Path | None = None, log=print, save_edits: bool = False, dry_run: bool = False):
    """Run the benchmark described by ``cfg`` into ``out``; return ``out``.

    ``save_edits``: also write every edited image of the units computed now, and the inputs and
    starting images, as float32 ``.npy`` arrays ``[N, 3, H, W]`` in ``<out>/edits/``."""
    from deltabench.domain import load_domain
    from deltabench.metrics.suite import build_metrics

    out = Path(out)
    dist.init_from_env()  # launched by torchrun but not through `python -m deltabench`: join the group
    methods = expand_methods(list(cfg.methods))
    for m in methods:
        get_method(m)  # an unregistered method is an error before any work
    validate_config(cfg)
    # --out is checked before a model is loaded (its config check waits for the world hash).
    dist.on_rank0(check_out_dir, out, cfg, resume=True, force=force)
    domain = domain or load_domain(cfg.world)
    asked = tuple(cfg.references)
    resolved = [n for r in cfg.references for n in references.parse(r if r == "auto" else [r], domain)]
    cfg = RunConfig(**{**cfg.__dict__, "references": tuple(dict.fromkeys(resolved))})
    clash = set(cfg.references) & set(methods)
    if clash:
        raise ValueError(f"--methods: {sorted(clash)} is a reference row, not a method; it is added by --references")
    if not cfg.prompts:
        cfg = RunConfig(**{**cfg.__dict__, "prompts": default_prompts(domain)})
    if "oracle-edit" in cfg.references and not all(p.attribute and p.value for p in cfg.prompts):
        unnamed = next(p.target for p in cfg.prompts if not (p.attribute and p.value))
        if "oracle-edit" in asked:
            raise ValueError(f"--references oracle-edit: prompt {unnamed!r} names no attribute and value, so the "
                             f"renderer cannot draw its perfect edit; give attribute,value columns in the prompts "
                             f"file or leave oracle-edit out")
        log(f"oracle-edit reference left out: prompt {unnamed!r} names no attribute and value, so the renderer "
            f"cannot draw its perfect edit (give attribute,value columns in the prompts file)")
        cfg = RunConfig(**{**cfg.__dict__, "references": tuple(r for r in cfg.references if r != "oracle-edit")})
    cfg = RunConfig(**{**cfg.__dict__, "world_hash": domain.config_hash, "methods": tuple(methods),
                       "method_options": with_domain_defaults(cfg.method_options, domain, methods)})
    dist.on_rank0(check_out_dir, out, cfg, resume, force)
    # every file the run will read (real domains load each network when first used): before any work
    domain.check_files({m: cfg.method_options.get(m, {}) for m in methods}, metrics=True, test_images=True,
                       purpose="run")
    problems = list(dict.fromkeys(m for p in cfg.prompts
                                  for m in domain.prompt_problems(p.source) + domain.prompt_problems(p.target)))
    if dist.is_main():
        for problem in problems:
            log(f"WARNING: {problem}")
    if dry_run:  # the units and an estimate, nothing written
        return plan(cfg, out)
    with (run_lock(out) if dist.is_main() else contextlib.nullcontext()):
        return _run_locked(cfg, out, domain, resume, force, work_dir, log, build_metrics, save_edits, problems)


def _run_locked(cfg: RunConfig, out: Path, domain, resume: bool, force: bool, work_dir, log, build_metrics,
                save_edits: bool, warnings: list[str] = ()) -> Path:
    ids = current_units(cfg)

    def prepare() -> set[str]:
        prepare_out_dir(out, cfg, resume, force, log=log, extra={**domain_notes(domain), "warnings": list(warnings)})
        (out / "units").mkdir(exist_ok=True)
        drop_stale_rows(out, cfg, log=log)
        # A unit whose rows are written but whose unit file is gone (deleted as damaged) is redone.
        return {k for k in done_units(out, cfg.images, ids) if _unit_file(out, k).is_file()}

    # Rank 0 checks the directory and reads what is done (cutting torn lines) before any rank
    # writes; every rank gets the same set, so they deal the same remaining units.
    done = dist.on_rank0(prepare)
    rank, n_ranks = dist.rank(), dist.world_size()
    results = out / ("results.csv" if n_ranks == 1 else f"results.rank{rank}.csv")
    say = log if dist.is_main() else (lambda *a, **k: None)
    fail_after = _fail_after(rank)
    # The one method cache of every command: <work_dir or <cache>/methods>/<domain key>, with the
    # world's shipped fits copied in (deltabench.settings.method_cache), so `edit` finds what a run fitted.
    from deltabench.settings import method_cache

    work_dir = dist.on_rank0(method_cache, domain, work_dir)

    seed_everything(cfg.seed)
    test = domain.test_images(cfg.images, seed=cfg.seed + 1)
    frames = _prepare_frames(out, cfg, domain, test)
    G = domain.generator
    fits = _read_fits(out)
    # Every (method, prompt, strength) unit not yet done, in single-process order, dealt
    # round-robin over the ranks.
    todo_all = [(name, j, s) for name in cfg.scored for j, _ in enumerate(cfg.prompts) for s in cfg.scales(name)
                if _unit_key(name, j, s) not in done]
    mine = dist.shard(todo_all)
    columns: list[str] = []  # the results file's columns, fixed by its first row
    finished = 0
    for name in cfg.scored:
        todo = [(j, s) for m, j, s in mine if m == name]
        if name in cfg.references:
            method = None
        else:
            with timed(f"[{name}] fit", log=say):
                method = _fit_method(name, cfg, domain, work_dir, fits, out)
        if not any(m == name for m, _, _ in todo_all):
            say(f"[{name}] all {len(cfg.prompts) * len(cfg.scales(name))} units done")
            continue
        with timed(f"[{name}] {len(todo)} units of {cfg.images} edits", log=say):
            for j, scale in progress(todo, desc=f"run {name}" + (f" [rank {rank}]" if n_ranks > 1 else "")):
                p = cfg.prompts[j]
                uid = ids[_unit_key(name, j, scale)]
                strength = method.strength_for(scale) if method is not None else float("nan")
                suite = build_metrics(domain, p, seed=cfg.seed)
                per_image: dict[str, list] = {}
                examples = []
                cache_by_batch: dict[int, dict] = {}
                t_edit = 0.0
                if save_edits:
                    (out / "edits").mkdir(exist_ok=True)
                    kept = _Frames(out / "edits" / f"{name}__{j}__{scale!r}.npy",
                                   (cfg.images, 3, domain.resolution, domain.resolution))
                    rundir.record(out, kept.path)
                with measure(domain.device) as edit_cost:  # the unit's peak memory: its edits and their scoring
                    for i in range(0, cfg.images, cfg.batch):
                        b = min(i + cfg.batch, cfg.images)
                        w = frames["w"].read(i, b, domain.device)
                        x = frames["inputs"].read(i, b, domain.device)
                        start = frames["start"].read(i, b, domain.device)
                        params = test.params[i:b] if test.params is not None else None
                        t1 = time.perf_counter()
                        if method is None:
                            with torch.no_grad():
                                edited, start = references.render(name, domain, p, x, start, params)
                        else:
                            styles = (method.edit(w, p.source, p.target, strength, images=x) if method.takes_images
                                      else method.edit(w, p.source, p.target, strength))
                            with torch.no_grad():
                                edited = G.synthesis_from_styles(styles)
                        t_edit += time.perf_counter() - t1
                        if i < GRID_POOL:
                            examples.append(_thumbnails(edited[: GRID_POOL - i]))
                        if save_edits:
                            kept.write(i, edited)
                        scores = suite.update(x, edited, start, params=params, cache=cache_by_batch.setdefault(i, {}))
                        for k, v in scores.items():
                            per_image.setdefault(k, []).extend(v.tolist())
                _write_unit(out, results, cfg, name, j, scale, uid, strength, suite, per_image, examples, t_edit,
                            edit_cost.peak_bytes, columns)
                finished += 1
                if fail_after is not None and finished >= fail_after:
                    os._exit(3)  # tests only: a rank that dies mid-run, without any clean-up


    def finish() -> None:
        merge_results(out, cfg)
        k = min(GRID_POOL, cfg.images)
        torch.save({"inputs": torch.from_numpy(_thumbnails(frames["inputs"].read(0, k))),
                    "start": torch.from_numpy(_thumbnails(frames["start"].read(0, k)))}, out / "inputs.pt")
        rundir.record(out, out / "inputs.pt")
        if save_edits:
            for n in ("inputs", "start"):
                shutil.copyfile(out / ".work" / f"{n}.npy", out / "edits" / f"{n}.npy")
                rundir.record(out, out / "edits" / f"{n}.npy")
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


def _thumbnails(x: torch.Tensor) -> np.ndarray:
    """Images for the report's grids: uint8, at most :data:`GRID_SIDE` px a side (antialiased)."""
    if x.shape[-1] > GRID_SIDE:
        x = torch.nn.functional.interpolate(x.float(), size=(GRID_SIDE, GRID_SIDE), mode="bilinear",
                                            antialias=True, align_corners=False)
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
    with (contextlib.nullcontext() if method.distributed_fit else dist.rank0_first()), \
            measure(domain.device) as fit_cost:
        stats = method.fit() or {}
        per_prompt = method.fit_prompts([(p.source, p.target) for p in cfg.prompts])
        if per_prompt:  # per-prompt training (StyleCLIP-LM) is fit cost too
            stats = {**stats, "fit_seconds": float(stats.get("fit_seconds", 0.0)) + sum(per_prompt.values()),
                     "per_prompt_seconds": per_prompt}
    fit_s = time.perf_counter() - t0
    opts_key = json.loads(json.dumps(options, default=str))
    if fits.get(name, {}).get("options", opts_key) != opts_key or name not in fits:
        if dist.is_main():  # the first fit of this run (config) is the one that trained
            # A method cached by an earlier run loads in a moment; report what fitting cost then.
            fits[name] = {"fit_seconds": float(stats.get("fit_seconds", fit_s)), "loaded_seconds": fit_s,
                          "fit_peak_mb": fit_cost.peak_mb, "peak_is_lifetime": fit_cost.peak_is_lifetime,
                          "options": opts_key, "stats": {k: v for k, v in stats.items() if k != "history"}}
            store.write_json(fits, out / "fits.json")
            rundir.record(out, out / "fits.json")
    return method


def _write_unit(out: Path, results: Path, cfg: RunConfig, name: str, j: int, scale: float, uid: str,
                strength: float, suite, per_image: dict, examples: list, t_edit: float, peak_bytes,
                columns: list[str]) -> None:
    """The unit's metric states (``units/``), then its rows (appended to ``results``)."""
    p = cfg.prompts[j]
    ms = 1000 * t_edit / cfg.images
    unit_file = out / "units" / f"{name}__{j}__{scale!r}.pt"
    state = {"suite": suite.state_dict(), "ms_per_edit": ms, "unit": uid, "peak_bytes": peak_bytes,
             "examples": torch.from_numpy(np.concatenate(examples)) if examples else None}
    integrity.atomic_write(unit_file, lambda tmp: torch.save(state, tmp))
    rundir.record(out, unit_file, results)
    rows = []
    for n in range(cfg.images):
        row = {"method": name, "prompt_index": j, "source": p.source, "target": p.target,
               "attribute": p.attribute, "value": p.value, "strength_scale": float(scale),
               "strength": strength, "image_index": n, "ms_per_edit": ms}
        row.update({k: float(v[n]) for k, v in per_image.items()})
        row["unit"] = uid
        rows.append(row)
    if not columns:
        existing = _read_rows(results) or _read_rows(out / "results.csv")
        columns.extend(existing[0].keys() if existing else rows[0].keys())
    _append_rows(results, rows, columns)


def _read_fits(out: Path) -> dict:
    f = out / "fits.json"
    if not f.is_file():
        return {}
    try:
        fits = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        fits = None
    if not isinstance(fits, dict):
        raise RunConfigError(f"{f} is not valid JSON: the run's fit record is damaged; delete it (rm '{f}') and "
                             f"run the same command again (cached methods load in seconds)")
    return fits


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


# Bootstrap resamples of FID/KID: deltabench.stats.SET_BOOT (100), SET_BOOT_LARGE (25) only where
# rows >= dims above 512. FID is computed from the features (metrics.fid.frechet_distance_features):
# exact, and in the small sample space where rows < dimensions, on the distinct rows of a resample.
SET_METRICS = ("fid", "kid")


def summarize(out: Path, domain, cfg: RunConfig):
    """``summary.csv``: per method (then reference) at the default strength, the merged metric
    states, the cost, and per metric ``n``, a 95% interval and a paired test against the best.

    Per-edit metrics: ``<m>_lo``/``<m>_hi`` is a seeded cluster bootstrap over test images of
    the rows in ``results.csv`` (:mod:`deltabench.stats`), ``<m>_n`` the rows counted. FID and
    KID: the same resampling of images, the statistic recomputed from the resampled images'
    features (those the KID state keeps), ``<m>_n`` the edited samples and ``<m>_dim`` the
    feature dimension. ``<m>_p``: two-sided paired bootstrap p-value of the difference to the
    column's best method on the same images and prompts (empty for the best itself and for
    references). ``reference`` marks the reference rows.
    """
    import pandas as pd

    from deltabench import stats
    from deltabench.metrics.fid import cluster_kernel_distance, covariance_rank, frechet_distance_features
    from deltabench.metrics.suite import HIGHER_IS_BETTER, build_metrics

    fits = _read_fits(out)
    results = pd.read_csv(out / "results.csv")
    rows, per_edit, set_draws = [], {}, {}
    for name in cfg.scored:
        merged, ms, peak, feats = None, [], PeakMemory(), []
        for j, p in enumerate(cfg.prompts):
            f = out / "units" / f"{name}__{j}__{1.0!r}.pt"
            if not f.is_file():
                continue
            state = rundir.load_unit(f, out)
            if not isinstance(state, dict) or state.get("unit") != unit_id(cfg, name, j, 1.0):
                raise RunConfigError(f"{f} holds the metric states of another config's unit; run the same "
                                     f"command again with --resume to recompute it")
            suite = build_metrics(domain, p, seed=cfg.seed)
            suite.load_state_dict(state["suite"])
            kid = suite.metrics.get("kid")
            if kid is not None and kid.real_feats and kid.fake_feats:
                feats.append((torch.cat(kid.real_feats).double().numpy(), torch.cat(kid.fake_feats).double().numpy()))
            ms.append(state["ms_per_edit"])
            if "peak_bytes" in state:
                peak.update(state["peak_bytes"])
            if merged is None:
                merged = suite
            elif set(suite.metrics) == set(merged.metrics):
                merged.merge(suite)
        if merged is None:
            continue
        values = merged.compute()
        row = {"method": name, "reference": name in cfg.references, **values,
               "ms_per_edit": sum(ms) / len(ms), "peak_mb": peak.compute(),
               "fit_seconds": 0.0 if name in cfg.references else fits.get(name, {}).get("fit_seconds", float("nan")),
               "prompts": len(ms), "images": cfg.images}
        mine = results[(results["method"] == name) & (results["strength_scale"] == 1.0)]
        mine = mine.sort_values(["prompt_index", "image_index"])
        per_edit[name] = mine
        for key in values:
            if key in SET_METRICS or key not in mine.columns:
                continue
            iv = stats.mean_interval(mine[key].to_numpy(float), mine["image_index"].to_numpy(), seed=cfg.seed)
            row.update({f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n": iv.n})
        if feats and all(len(r) == len(fk) == cfg.images for r, fk in feats):
            dim = feats[0][0].shape[1]
            n_rows = len(feats) * cfg.images
            n_boot = SET_BOOT if dim <= 512 or n_rows < dim else SET_BOOT_LARGE

            def pick(ix, side):
                return np.concatenate([u[side][ix] for u in feats])

            def fid_of(ix):
                distinct, counts = np.unique(ix, return_counts=True)  # rows once, weighted by repeats
                w = np.tile(counts, len(feats))
                return frechet_distance_features(pick(distinct, 0), pick(distinct, 1), w, w)

            def kid_of(ix):
                if len(np.unique(ix)) < 2:  # a resample of one image has no pair of different images
                    return float("nan")
                origin = np.tile(ix, len(feats))  # the test image of every row
                return cluster_kernel_distance(torch.from_numpy(pick(ix, 0)), torch.from_numpy(pick(ix, 1)),
                                               origin, origin)

            if "kid" in values:  # the run's KID: over pairs of different images (inputs repeat per prompt)
                values["kid"] = row["kid"] = kid_of(np.arange(cfg.images))
            for key, fn in (("fid", fid_of), ("kid", kid_of)):
                if key not in values:
                    continue
                _, draws = stats.statistic_draws(fn, cfg.images, n_boot, seed=cfg.seed)
                set_draws[(name, key)] = draws
                # Resampled duplicates bias FID up: the draws' spread, centred on the value.
                iv = stats.interval_from_draws(values[key], draws, len(feats) * cfg.images, cfg.images, centred=True)
                row.update({f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n": iv.n, f"{key}_dim": dim,
                            f"{key}_boot": n_boot})
            if "fid" in values:
                # What the covariances can hold: the reference side repeats each input once per
                # prompt, so it has cfg.images distinct samples however many rows; the rank of
                # each side's covariance (at most distinct - 1) is what FID's reliability rests on.
                everything = np.arange(cfg.images)
                row.update({"fid_distinct": min(cfg.images, len(np.unique(pick(everything, 1), axis=0))),
                            "fid_rank": min(covariance_rank(pick(everything, 0)),
                                            covariance_rank(pick(everything, 1)))})
        rows.append(row)
    df = pd.DataFrame(rows)
    _paired_tests(df, per_edit, set_draws, cfg, HIGHER_IS_BETTER)
    df.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    return df


def _paired_tests(df, per_edit: dict, set_draws: dict, cfg: RunConfig, higher: dict) -> None:
    """Fill ``<m>_p`` in ``df``: each method against the column's best method (references apart)."""
    from deltabench import stats

    if df.empty:
        return
    methods = df[~df["reference"]]
    for key, up in higher.items():
        if key not in df.columns or methods[key].isna().all():
            continue
        best = methods.loc[methods[key].idxmax() if up else methods[key].idxmin(), "method"]
        col = np.full(len(df), np.nan)
        for i, r in df.iterrows():
            if r["reference"] or r["method"] == best:
                continue
            if key in SET_METRICS:
                if (best, key) not in set_draws or (r["method"], key) not in set_draws:
                    continue
                t = stats.paired_from_draws(r[key] - methods.loc[methods["method"] == best, key].iloc[0],
                                            set_draws[(r["method"], key)] - set_draws[(best, key)], 0)
            else:
                a, b = per_edit[r["method"]], per_edit[best]
                m = a.merge(b, on=["prompt_index", "image_index"], suffixes=("", "_best"))
                if key not in m or m.empty:
                    continue
                t = stats.paired_test(m[key].to_numpy(float), m[f"{key}_best"].to_numpy(float),
                                      m["image_index"].to_numpy(), seed=cfg.seed)
            col[i] = t.p
        df[f"{key}_p"] = col
