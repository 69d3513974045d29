"""The results store of a run directory: rows of ``results.csv`` and the ranks' shards (read with
a torn last line cut off, appended one unit per write, merged and deduplicated), unit ids (what
fixes a unit's numbers), the done units of a resume, rows superseded by a config change, the
unit files (metric states), ``fits.json``, and the disk-backed image arrays of ``.work/``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from deltabench import integrity
from deltabench.confighash import Schema
from deltabench.harness import rundir
from deltabench.harness.config import RunConfig
from deltabench.harness.rundir import RunConfigError

ROW_KEYS = (
    "method",
    "prompt_index",
    "source",
    "target",
    "attribute",
    "value",
    "strength_scale",
    "strength",
    "image_index",
)


def read_rows(path: Path) -> list[dict]:
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
        raise RunConfigError(
            f"{path} is not a readable results file ({e}); move it away and run the same "
            f"command again to recompute its units"
        ) from None
    for i, r in enumerate(rows, 2):
        try:
            _row_key(r)
        except (KeyError, TypeError, ValueError):
            raise RunConfigError(
                f"{path}, line {i}: not a deltabench results row (method, prompt_index, "
                f"strength_scale, image_index unreadable); remove that line or move the file "
                f"away, then run the same command again to recompute its units"
            ) from None
    return rows


def append_rows(path: Path, rows: list[dict], columns: list[str]) -> None:
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


def unit_key(method: str, prompt_index: int, scale: float) -> str:
    """``method|prompt|strength``: a unit's name in a run."""
    return f"{method}|{prompt_index}|{scale!r}"


def unit_file(out: Path, key: str) -> Path:
    """The metric-state file of the unit ``method|prompt|strength``."""
    m, j, scale = key.rsplit("|", 2)
    return out / "units" / f"{m}__{int(j)}__{float(scale)!r}.pt"


def _row_key(r: dict) -> tuple[str, int, float, int]:
    return r["method"], int(r["prompt_index"]), float(r["strength_scale"]), int(r["image_index"])


def shard_files(out: Path) -> list[Path]:
    """The per-rank results files of a distributed run not yet merged into ``results.csv``."""
    return sorted(Path(out).glob("results.rank*.csv"), key=lambda p: int(p.name.split(".")[1][4:] or 0))


def all_rows(out: Path) -> list[dict]:
    """Rows of ``results.csv`` then of every rank's shard (torn last lines cut off)."""
    rows = read_rows(out / "results.csv")
    for f in shard_files(out):
        rows += read_rows(f)
    return rows


def done_units(out: Path, images: int, ids: dict[str, str] | None = None) -> set[str]:
    """Keys of the units whose rows for all ``images`` images are written (in any file); with
    ``ids`` (key -> unit id, :func:`current_units`) only rows of those very units count."""
    seen: dict[str, set[int]] = {}
    for r in all_rows(out):
        k = unit_key(r["method"], int(r["prompt_index"]), float(r["strength_scale"]))
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
    base = read_rows(results)
    rows = base + [r for f in shards for r in read_rows(f)]
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
    headers += [list(read_rows(f)[0].keys()) for f in shards if read_rows(f)]
    first = next((list(r.keys()) for r in ordered[:1]), [])
    columns = list(first)
    for h in headers:
        columns += [c for c in h if c not in columns]
    integrity.atomic_write(results, lambda tmp: append_rows(tmp, ordered, columns))
    rundir.record(out, results)
    for f in shards:
        f.unlink()
    return len(ordered)


# A unit's key, versioned like every cached config (deltabench.confighash). Version 2 added the
# strength contract (x-k means k times the edit for every method: StyleCLIP-OP's L2 weight / k):
# units of runs made before it (contract 1, no key) are recomputed, never mixed in.
UNIT_SCHEMA = Schema(
    "run.unit",
    first=("method", "options", "prompt", "strength_scale", "seed", "images", "batch", "world", "world_hash"),
    added=[{"strength_contract": 1}, {"unjudged": ()}],  # 3: disentanglement leaves the unjudged attributes out
)
STRENGTH_CONTRACT = 2


def unit_id(cfg: RunConfig, method: str, j: int, scale: float) -> str:
    """What fixes a unit's numbers: method and its options, the prompt's text, the strength, the
    seed (which draws the test images), their number, the batch and the world's weights. Rows and
    metric states carry it, so a resumed run never takes a unit of another config for its own."""
    key = UNIT_SCHEMA.hashed(
        {
            "method": method,
            "options": cfg.method_options.get(method, {}),
            "prompt": asdict(cfg.prompts[j]),
            "strength_scale": float(scale),
            "seed": cfg.seed,
            "images": cfg.images,
            "batch": cfg.batch,
            "world": cfg.world,
            "world_hash": cfg.world_hash,
            "strength_contract": STRENGTH_CONTRACT,
            "unjudged": tuple(cfg.unjudged),
        }
    )
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def current_units(cfg: RunConfig) -> dict[str, str]:
    """``method|prompt|strength`` -> unit id, for every unit of ``cfg``."""
    return {
        unit_key(m, j, s): unit_id(cfg, m, j, s)
        for m in cfg.scored
        for j in range(len(cfg.prompts))
        for s in cfg.scales(m)
    }


def drop_stale_rows(out: Path, cfg: RunConfig, log=print) -> int:
    """Move every row that is not of a current unit (another prompt text, seed, image set, method
    config ... under the same labels) from ``results.csv`` and the shards to
    ``results.superseded.csv``; return how many moved. Nothing is rewritten when none is stale."""
    ids = set(current_units(cfg).values())
    rows = all_rows(out)
    stale = [r for r in rows if r.get("unit") not in ids]
    if not stale:
        return 0
    keep = [r for r in rows if r.get("unit") in ids]
    sup = out / "results.superseded.csv"
    cols = list(dict.fromkeys(k for r in stale for k in r))
    old_sup = read_rows(sup)
    if old_sup:
        cols = list(dict.fromkeys(list(old_sup[0].keys()) + cols))
        integrity.atomic_write(sup, lambda tmp: append_rows(tmp, old_sup + stale, cols))
    else:
        append_rows(sup, stale, cols)
    rundir.record(out, sup)
    results = out / "results.csv"
    if keep:
        integrity.atomic_write(
            results, lambda tmp: append_rows(tmp, keep, list(dict.fromkeys(k for r in keep for k in r)))
        )
    else:
        results.unlink(missing_ok=True)
    for f in shard_files(out):
        f.unlink()
    log(f"{len(stale)} rows of units that no longer match the config moved to {sup.name}; those units are recomputed")
    return len(stale)


class Frames:
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


def write_unit(
    out: Path,
    results: Path,
    cfg: RunConfig,
    name: str,
    j: int,
    scale: float,
    uid: str,
    strength: float,
    suite,
    per_image: dict,
    examples: list,
    t_edit: float,
    peak_bytes,
    columns: list[str],
) -> None:
    """The unit's metric states (``units/``), then its rows (appended to ``results``)."""
    p = cfg.prompts[j]
    ms = 1000 * t_edit / cfg.images
    path = unit_file(out, unit_key(name, j, scale))
    state = {
        "suite": suite.state_dict(),
        "ms_per_edit": ms,
        "unit": uid,
        "peak_bytes": peak_bytes,
        "examples": torch.from_numpy(np.concatenate(examples)) if examples else None,
    }
    integrity.atomic_write(path, lambda tmp: torch.save(state, tmp))
    rundir.record(out, path, results)
    rows = []
    for n in range(cfg.images):
        row = {
            "method": name,
            "prompt_index": j,
            "source": p.source,
            "target": p.target,
            "attribute": p.attribute,
            "value": p.value,
            "strength_scale": float(scale),
            "strength": strength,
            "image_index": n,
            "ms_per_edit": ms,
        }
        row.update({k: float(v[n]) for k, v in per_image.items()})
        row["unit"] = uid
        rows.append(row)
    if not columns:
        existing = read_rows(results) or read_rows(out / "results.csv")
        columns.extend(existing[0].keys() if existing else rows[0].keys())
    append_rows(results, rows, columns)


def read_fits(out: Path) -> dict:
    """``fits.json``: fit seconds and stats per method ({} before the first fit)."""
    f = out / "fits.json"
    if not f.is_file():
        return {}
    try:
        fits = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        fits = None
    if not isinstance(fits, dict):
        raise RunConfigError(
            f"{f} is not valid JSON: the run's fit record is damaged; delete it (rm '{f}') and "
            f"run the same command again (cached methods load in seconds)"
        )
    return fits
