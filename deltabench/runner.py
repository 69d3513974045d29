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
"""
from __future__ import annotations

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

from deltabench.methods import expand_methods, get_method
from deltabench.utils import float_to_uint8, progress, seed_everything
from deltabench.world import store

ROW_KEYS = ("method", "prompt_index", "source", "target", "attribute", "value", "strength_scale",
            "strength", "image_index")


GRID_IMAGES = 4  # edited examples kept per (method, prompt) for the report's grids


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


def default_prompts(domain) -> tuple[Prompt, ...]:
    from deltabench.world.captions import EDIT_PROMPTS

    return tuple(Prompt(p.source, p.target, p.attribute, p.value) for p in EDIT_PROMPTS)


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
    methods = expand_methods(list(cfg.methods))
    for m in methods:
        get_method(m)  # an unregistered method is an error before any work
    if cfg.images < 1:
        raise ValueError(f"--images must be at least 1, got {cfg.images}")
    domain = domain or load_domain(cfg.world)
    if not cfg.prompts:
        cfg = RunConfig(**{**cfg.__dict__, "prompts": default_prompts(domain)})
    cfg = RunConfig(**{**cfg.__dict__, "world_hash": domain.config_hash, "methods": tuple(methods)})
    prepare_out_dir(out, cfg, resume, force)
    (out / "units").mkdir(exist_ok=True)
    results = out / "results.csv"
    done = {_unit_key(r["method"], int(r["prompt_index"]), float(r["strength_scale"]))
            for r in _read_rows(results)}
    work_dir = Path(work_dir) if work_dir else store.cache_root() / "methods" / domain.key

    seed_everything(cfg.seed)
    test = domain.test_images(cfg.images, seed=cfg.seed + 1)
    inputs = test.images  # [N, 3, H, W]
    w = domain.invert(inputs)  # [N, L, D]
    G = domain.generator
    with torch.no_grad():
        start = torch.cat([G.synthesis(w[i : i + cfg.batch]) for i in range(0, len(w), cfg.batch)])
    fits = json.loads((out / "fits.json").read_text()) if (out / "fits.json").is_file() else {}
    columns: list[str] | None = None
    for name in methods:
        cls = get_method(name)
        method = cls(domain, work_dir, seed=cfg.seed, **cfg.method_options.get(name, {}))
        todo = [(j, s) for j, _ in enumerate(cfg.prompts) for s in cfg.sweep
                if _unit_key(name, j, float(s)) not in done]
        t0 = time.perf_counter()
        stats = method.fit() or {}
        if hasattr(method, "fit_prompts"):  # per-prompt training (StyleCLIP-LM) is fit cost too
            per_prompt = method.fit_prompts([(p.source, p.target) for p in cfg.prompts])
            stats = {**stats, "fit_seconds": float(stats.get("fit_seconds", 0.0)) + sum(per_prompt.values()),
                     "per_prompt_seconds": per_prompt}
        fit_s = time.perf_counter() - t0
        if name not in fits:  # the first fit of this run is the one that trained (later ones load)
            # A method cached by an earlier run loads in a moment; report what fitting cost then.
            fits[name] = {"fit_seconds": float(stats.get("fit_seconds", fit_s)), "loaded_seconds": fit_s,
                          "stats": {k: v for k, v in stats.items() if k != "history"}}
            store.write_json(fits, out / "fits.json")
        if not todo:
            log(f"[{name}] all {len(cfg.prompts) * len(cfg.sweep)} units done")
            continue
        for j, scale in progress(todo, desc=f"run {name}"):
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
                existing = _read_rows(results)
                columns = list(existing[0].keys()) if existing else list(rows[0].keys())
            _append_rows(results, rows, columns)
    if not (out / "inputs.pt").is_file():
        k = min(GRID_IMAGES, cfg.images)
        torch.save({"inputs": torch.from_numpy(float_to_uint8(inputs[:k])),
                    "start": torch.from_numpy(float_to_uint8(start[:k]))}, out / "inputs.pt")
    summarize(out, domain, cfg)
    from deltabench.report import write_report

    write_report(out)
    return out


def summarize(out: Path, domain, cfg: RunConfig):
    """``summary.csv``: per method at the default strength, merged metric states + cost."""
    import pandas as pd

    from deltabench.metrics.suite import build_metrics

    fits = json.loads((out / "fits.json").read_text()) if (out / "fits.json").is_file() else {}
    rows = []
    for name in cfg.methods:
        merged, ms = None, []
        for j, p in enumerate(cfg.prompts):
            f = out / "units" / f"{name}__{j}__{1.0!r}.pt"
            if not f.is_file():
                continue
            state = torch.load(f, map_location="cpu", weights_only=True)
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
