"""``deltabench run``: fit methods, edit every test image with every prompt, score, report.

A run directory holds:

- ``manifest.json``: the run config, seeds, package versions, git commit, world hash;
- ``results.csv``: one row per method x image x prompt x strength;
- ``units/``: the metric states of each finished (method, prompt, strength) unit, so the
  summary merges exact metric states (FID, KID) instead of averaging per-row numbers;
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
from deltabench.methods import expand_methods, get_method
from deltabench.utils import float_to_uint8, progress, seed_everything
from deltabench.world import store

ROW_KEYS = ("method", "prompt_index", "source", "target", "attribute", "value", "strength_scale",
            "strength", "image_index")


GRID_IMAGES = 4  # edited examples kept per (method, prompt) for the report's grids
# Images per inversion chunk across ranks: a multiple of the domains' own invert batches
# (synthfaces 128, real 16), so every encoder call sees the batch it sees in one process.
INVERT_CHUNK = 128
# Tests only: "R:K" makes rank R exit abruptly after finishing K units (a crashed rank).
FAIL_ENV = "DELTABENCH_FAIL_AFTER_UNITS"


class RunConfigError(ValueError):
    """The output directory holds a run of another config."""


@dataclass(frozen=True)
class Prompt:
    source: str
    target: str
    attribute: str | None = None
    value: str | None = None


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

    def to_dict(self) -> dict:
        """JSON-shaped (lists, not tuples), so it compares equal to what manifest.json holds."""
        d = asdict(self)
        d["prompts"] = [asdict(p) for p in self.prompts]
        return json.loads(json.dumps(d))


def load_prompts(path: str | Path) -> tuple[Prompt, ...]:
    """Prompts from a CSV (``source,target[,attribute,value]``, header optional) or JSON list."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompts file {p} does not exist")
    text = p.read_text().strip()
    if not text:
        raise ValueError(f"prompts file {p} is empty; give one 'source,target' pair per line")
    if p.suffix == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"prompts file {p}: not valid JSON ({e})") from None
        rows = [(it["source"], it["target"], it.get("attribute"), it.get("value")) for it in items]
    else:
        reader = list(csv.reader(io.StringIO(text)))
        if reader and [c.strip().lower() for c in reader[0][:2]] == ["source", "target"]:
            reader = reader[1:]
        rows = []
        for i, r in enumerate(reader, 1):
            if not r or not any(c.strip() for c in r):
                continue
            if len(r) < 2:
                raise ValueError(f"prompts file {p}, line {i}: expected 'source,target[,attribute,value]', got {r}")
            rows.append((r[0], r[1], r[2] if len(r) > 2 and r[2] else None, r[3] if len(r) > 3 and r[3] else None))
    out = []
    for i, (s, t, a, v) in enumerate(rows, 1):
        s, t = str(s).strip(), str(t).strip()
        if not s or not t:
            raise ValueError(f"prompts file {p}, prompt {i}: empty source or target text")
        if s.lower() == t.lower():
            raise ValueError(f"prompts file {p}, prompt {i}: source and target are the same ({s!r})")
        if a is not None:
            from deltabench.world.attributes import attribute

            attribute(a).index(v)  # clear error for an unknown attribute or value
        out.append(Prompt(s, t, a, v))
    if not out:
        raise ValueError(f"prompts file {p} holds no prompts")
    return tuple(out)


def default_prompts(domain, every: bool = False) -> tuple[Prompt, ...]:
    """The domain's benchmark prompts; ``every``: all of its edit prompts.

    synthfaces benchmarks one edit per attribute (``SynthfacesDomain.BENCHMARK_TARGETS``), so
    the default run fits its CPU budget; ``--prompts all`` runs all 23.
    """
    if getattr(domain, "prompts", None):  # a real domain's config names its prompts
        return tuple(domain.prompts)
    from deltabench.world.captions import EDIT_PROMPTS

    keep = None if every else set(getattr(domain, "BENCHMARK_TARGETS", ()) or ())
    return tuple(Prompt(p.source, p.target, p.attribute, p.value) for p in EDIT_PROMPTS
                 if not keep or p.target in keep)


def with_domain_defaults(options: dict, domain, methods) -> dict:
    """Per-method options: the domain's defaults (``domain.method_defaults``) under the user's."""
    out = {}
    for m in methods:
        base = dict(getattr(domain, "method_defaults", {}).get(m, {}))
        user = dict(options.get(m, {}))
        merged = {**base, **user}
        if isinstance(base.get("config"), dict) and isinstance(user.get("config"), dict):
            merged["config"] = {**base["config"], **user["config"]}
        if merged:
            out[m] = merged
    return out


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
    return list(csv.DictReader(io.StringIO(data.decode())))


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


def done_units(out: Path, images: int) -> set[str]:
    """Keys of the units whose rows for all ``images`` images are written (in any file)."""
    seen: dict[str, set[int]] = {}
    for r in _all_rows(out):
        seen.setdefault(_unit_key(r["method"], int(r["prompt_index"]), float(r["strength_scale"])),
                        set()).add(int(r["image_index"]))
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
    m_order = {m: i for i, m in enumerate(cfg.methods)}
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
    tmp = results.with_name(results.name + ".tmp")
    tmp.unlink(missing_ok=True)
    _append_rows(tmp, ordered, columns)
    os.replace(tmp, results)
    for f in shards:
        f.unlink()
    return len(ordered)


# --- the run -----------------------------------------------------------------------------

def prepare_out_dir(out: Path, cfg: RunConfig, resume: bool, force: bool) -> dict:
    """Create or check the run directory; return its manifest."""
    mpath = out / "manifest.json"
    new = cfg.to_dict()
    old = json.loads(mpath.read_text()).get("config", {}) if mpath.is_file() else new
    # With --resume, finished units of the old config whose keys still match are kept.
    if old != new and not resume:
        if force:
            shutil.rmtree(out)
        else:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise RunConfigError(
                f"{out} holds a run with a different config (differs in: {diff}). Use --resume to "
                f"keep its finished rows and continue with the new config, --force to delete it and "
                f"start over, or another --out directory.")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"config": new, "config_hash": hashlib.sha256(json.dumps(new, sort_keys=True)
                                                                         .encode()).hexdigest()[:16],
                **store.describe_environment()}
    store.write_json(manifest, mpath)
    return manifest


def run(cfg: RunConfig, out: Path, domain=None, resume: bool = False, force: bool = False,
        work_dir: Path | None = None, log=print) -> Path:
    """Run the benchmark described by ``cfg`` into ``out``; return ``out``."""
    from deltabench.domain import load_domain
    from deltabench.metrics.suite import build_metrics

    out = Path(out)
    dist.init_from_env()  # launched by torchrun but not through `python -m deltabench`: join the group
    methods = expand_methods(list(cfg.methods))
    for m in methods:
        get_method(m)  # an unregistered method is an error before any work
    if cfg.images < 1:
        raise ValueError(f"--images must be at least 1, got {cfg.images}")
    domain = domain or load_domain(cfg.world)
    if not cfg.prompts:
        cfg = RunConfig(**{**cfg.__dict__, "prompts": default_prompts(domain)})
    cfg = RunConfig(**{**cfg.__dict__, "world_hash": domain.config_hash, "methods": tuple(methods),
                       "method_options": with_domain_defaults(cfg.method_options, domain, methods)})

    def prepare() -> set[str]:
        prepare_out_dir(out, cfg, resume, force)
        (out / "units").mkdir(exist_ok=True)
        return done_units(out, cfg.images)

    # Rank 0 checks the directory and reads what is done (cutting torn lines) before any rank
    # writes; every rank gets the same set, so they deal the same remaining units.
    done = dist.on_rank0(prepare)
    rank, n_ranks = dist.rank(), dist.world_size()
    results = out / ("results.csv" if n_ranks == 1 else f"results.rank{rank}.csv")
    say = log if dist.is_main() else (lambda *a, **k: None)
    fail_after = _fail_after(rank)
    work_dir = Path(work_dir) if work_dir else store.cache_root() / "methods" / domain.key

    seed_everything(cfg.seed)
    test = domain.test_images(cfg.images, seed=cfg.seed + 1)
    inputs = test.images  # [N, 3, H, W]
    G = domain.generator
    with torch.no_grad():
        w = dist.map_chunks(lambda a, b: domain.invert(inputs[a:b]), cfg.images, INVERT_CHUNK)  # [N, L, D]
        w = w.to(domain.device)
        start = dist.map_chunks(lambda a, b: G.synthesis(w[a:b]), cfg.images, cfg.batch)  # [N, 3, H, W]
    start = start.to(domain.device)
    fits = json.loads((out / "fits.json").read_text()) if (out / "fits.json").is_file() else {}
    # Every (method, prompt, strength) unit not yet done, in single-process order, dealt
    # round-robin over the ranks.
    todo_all = [(name, j, float(s)) for name in methods for j, _ in enumerate(cfg.prompts) for s in cfg.sweep
                if _unit_key(name, j, float(s)) not in done]
    mine = dist.shard(todo_all)
    columns: list[str] | None = None
    finished = 0
    for name in methods:
        cls = get_method(name)
        method = cls(domain, work_dir, seed=cfg.seed, **cfg.method_options.get(name, {}))
        todo = [(j, s) for m, j, s in mine if m == name]
        t0 = time.perf_counter()
        # A method that splits its own fitting across ranks (DDP training, sharded
        # precompute) is fitted by all ranks together; any other is fitted by rank 0 into the
        # method cache first, then loaded from it by the others.
        with (contextlib.nullcontext() if getattr(method, "distributed_fit", False) else dist.rank0_first()):
            stats = method.fit() or {}
            if hasattr(method, "fit_prompts"):  # per-prompt training (StyleCLIP-LM) is fit cost too
                per_prompt = method.fit_prompts([(p.source, p.target) for p in cfg.prompts])
                stats = {**stats, "fit_seconds": float(stats.get("fit_seconds", 0.0)) + sum(per_prompt.values()),
                         "per_prompt_seconds": per_prompt}
        fit_s = time.perf_counter() - t0
        if name not in fits and dist.is_main():  # the first fit of this run is the one that trained
            # A method cached by an earlier run loads in a moment; report what fitting cost then.
            fits[name] = {"fit_seconds": float(stats.get("fit_seconds", fit_s)), "loaded_seconds": fit_s,
                          "stats": {k: v for k, v in stats.items() if k != "history"}}
            store.write_json(fits, out / "fits.json")
        if not any(m == name for m, _, _ in todo_all):
            say(f"[{name}] all {len(cfg.prompts) * len(cfg.sweep)} units done")
            continue
        for j, scale in progress(todo, desc=f"run {name}" + (f" [rank {rank}]" if n_ranks > 1 else "")):
            p = cfg.prompts[j]
            strength = method.default_strength * float(scale)
            suite = build_metrics(domain, p, seed=cfg.seed)
            per_image: dict[str, list] = {}
            examples = []
            cache_by_batch: dict[int, dict] = {}
            t_edit = 0.0
            for i in range(0, cfg.images, cfg.batch):
                sl = slice(i, i + cfg.batch)
                t1 = time.perf_counter()
                styles = method.edit(w[sl], p.source, p.target, strength)
                with torch.no_grad():
                    edited = G.synthesis_from_styles(styles)
                t_edit += time.perf_counter() - t1
                if scale == 1.0 and i < GRID_IMAGES:
                    examples.append(float_to_uint8(edited[: GRID_IMAGES - i]))
                scores = suite.update(inputs[sl], edited, start[sl],
                                      params=test.params[sl] if test.params is not None else None,
                                      cache=cache_by_batch.setdefault(i, {}))
                for k, v in scores.items():
                    per_image.setdefault(k, []).extend(v.tolist())
            ms = 1000 * t_edit / cfg.images
            unit_file = out / "units" / f"{name}__{j}__{scale!r}.pt"
            tmp = unit_file.with_name(unit_file.name + ".tmp")
            torch.save({"suite": suite.state_dict(), "ms_per_edit": ms,
                        "examples": torch.from_numpy(np.concatenate(examples)) if examples else None}, tmp)
            os.replace(tmp, unit_file)
            rows = []
            for n in range(cfg.images):
                row = {"method": name, "prompt_index": j, "source": p.source, "target": p.target,
                       "attribute": p.attribute, "value": p.value, "strength_scale": float(scale),
                       "strength": strength, "image_index": n, "ms_per_edit": ms}
                row.update({k: float(v[n]) for k, v in per_image.items()})
                rows.append(row)
            if columns is None:
                existing = _read_rows(results) or _read_rows(out / "results.csv")
                columns = list(existing[0].keys()) if existing else list(rows[0].keys())
            _append_rows(results, rows, columns)
            finished += 1
            if fail_after is not None and finished >= fail_after:
                os._exit(3)  # tests only: a rank that dies mid-run, without any clean-up

    def finish() -> None:
        merge_results(out, cfg)
        if not (out / "inputs.pt").is_file():
            k = min(GRID_IMAGES, cfg.images)
            torch.save({"inputs": torch.from_numpy(float_to_uint8(inputs[:k])),
                        "start": torch.from_numpy(float_to_uint8(start[:k]))}, out / "inputs.pt")
        summarize(out, domain, cfg)
        from deltabench.report import write_report

        write_report(out)

    dist.barrier()  # every rank's units are written
    dist.on_rank0(finish)  # and the others wait for the summary and report
    return out


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


def summarize(out: Path, domain, cfg: RunConfig):
    """``summary.csv``: per method at the default strength, merged metric states + cost."""
    import pandas as pd

    from deltabench.checkpoints import safe_torch_load
    from deltabench.metrics.suite import build_metrics

    fits = json.loads((out / "fits.json").read_text()) if (out / "fits.json").is_file() else {}
    rows = []
    for name in cfg.methods:
        merged, ms = None, []
        for j, p in enumerate(cfg.prompts):
            f = out / "units" / f"{name}__{j}__{1.0!r}.pt"
            if not f.is_file():
                continue
            state = safe_torch_load(f, "a deltabench run unit (metric states)")
            suite = build_metrics(domain, p, seed=cfg.seed)
            suite.load_state_dict(state["suite"])
            ms.append(state["ms_per_edit"])
            if merged is None:
                merged = suite
            elif set(suite.metrics) == set(merged.metrics):
                merged.merge(suite)
        if merged is None:
            continue
        row = {"method": name, **merged.compute(), "ms_per_edit": sum(ms) / len(ms),
               "fit_seconds": fits.get(name, {}).get("fit_seconds", float("nan")), "prompts": len(ms),
               "images": cfg.images}
        rows.append(row)
    df = pd.DataFrame(rows)
    df.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    return df
