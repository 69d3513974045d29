"""``deltabench report RUN --external SCORED [SCORED ...] --out DIR``: a run's methods and editors
scored from files (``deltabench score SUITE EDITS``) in one table, each external editor marked as
such with the folder it was scored from.

A scored suite joins a run only when its test set is the run's: the same world (name and config
hash), the suite exported with the run's seed and number of images (the suite's images are then
pixel-equal to the run's inputs, :mod:`deltabench.suite.export`; the thumbnails both folders keep
are compared as a check), and every one of the run's prompts among the suite's (prompts are
matched by their text; a suite's extra prompts are left out, and said so). Every mismatch is one
``deltabench: error:`` line before anything is written.

``DIR`` is a folder shaped like a run (manifest.json, results.csv, units/, summary.csv,
reports/): the run's rows and metric states are copied, the external editors' rows and metric
states are added under the run's prompt numbers, and the summary is computed again from all of
them (:func:`deltabench.harness.summary.summarize`), so the intervals and the paired tests against
each column's best are over the same images and prompts for every row. The run and the scored
folders are only read. The external editors' field columns (``field_summary.csv``) come along.

An external editor is compared with its starting images as it was scored (``--starts``, else the
test images themselves), the run's methods with their inversion; the table's note says which.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from deltabench.harness.config import RunConfig
from deltabench.suite.format import SuiteError

MERGED_BY = "deltabench report RUN --external SCORED"  # a folder this wrote (its manifest's "merged_by")


@dataclass
class _Scored:
    """One scored folder, checked: its editors (name there -> name in the merged table) and the
    suite's prompt numbers mapped to the run's."""

    root: Path
    manifest: dict
    cfg: RunConfig
    names: dict  # name in the scored folder -> name in the merged table
    prompt_map: dict  # the suite's prompt index -> the run's
    dropped: list = field(default_factory=list)  # targets of the suite's prompts the run lacks
    rows: pd.DataFrame | None = None  # results.csv's rows at the run's prompts
    states: dict = field(default_factory=dict)  # (name, the suite's prompt index) -> unit state


def _manifest(d: Path, flag: str) -> dict:
    f = d / "manifest.json"
    if not d.is_dir():
        raise SuiteError(f"{flag} {d} {'is a file' if d.exists() else 'does not exist'}; give a folder")
    try:
        m = json.loads(f.read_text())
    except FileNotFoundError:
        raise SuiteError(f"{flag} {d} has no manifest.json: it is not a deltabench folder") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SuiteError(f"{flag} {d}: manifest.json is not readable JSON ({e})") from None
    if not isinstance(m, dict) or not isinstance(m.get("config"), dict):
        raise SuiteError(f"{flag} {d}: manifest.json is not a deltabench manifest")
    for need in ("results.csv", "summary.csv", "units"):
        if not (d / need).exists():
            raise SuiteError(f"{flag} {d} lacks {need}: it is not finished; run its command again")
    return m


def _key(p) -> tuple:
    return (p.source, p.target, p.attribute, p.value)


def _thumbs_differ(run: Path, scored: Path) -> str | None:
    """Where the test-image thumbnails of the run and a scored suite differ by more than one uint8
    level (8-bit rounding of the suite's PNGs), or None."""
    from deltabench.harness.rundir import load_run_file

    a, b = run / "inputs.pt", scored / "inputs.pt"
    if not (a.is_file() and b.is_file()):
        return None
    x = load_run_file(a, run, "a deltabench run's input images (inputs.pt)")["inputs"].numpy().astype(int)
    y = load_run_file(b, scored, "a deltabench run's input images (inputs.pt)")["inputs"].numpy().astype(int)
    k = min(len(x), len(y))
    if x.shape[1:] != y.shape[1:]:
        return f"thumbnails of {x.shape[1]} px and {y.shape[1]} px"
    for i in range(k):
        d = int(np.abs(x[i] - y[i]).max())
        if d > 1:
            return f"test image {i:05d} differs by up to {d} of 255"
    return None


def check_merge(run, scored: list, out) -> tuple[dict, list[_Scored]]:
    """Everything about ``RUN --external SCORED... --out DIR`` that can refuse the merge, checked
    before anything is read in bulk or written: returns the run's manifest and the checked folders."""
    from deltabench import references as refs_mod

    run, out = Path(run), Path(out)
    rm = _manifest(run, "RUN")
    if rm.get("merged_by") == MERGED_BY:
        raise SuiteError(
            f"RUN {run} is itself a merged report (deltabench report --external); give the run it was made from"
        )
    if rm.get("scored_by"):
        raise SuiteError(
            f"RUN {run} is a `deltabench score` folder, not a run; give the --out of a `deltabench run`, "
            f"and this folder to --external"
        )
    rcfg = RunConfig.from_dict(rm["config"])
    taken = set(rcfg.scored) | set(refs_mod.reference_names())
    checked: list[_Scored] = []
    for d in map(Path, scored):
        s = _check_scored(d, run, rm, rcfg)
        for n in s.cfg.methods:
            if any(n in c.names for c in checked):
                raise SuiteError(
                    f"two --external folders each have an editor named {n!r}; rename one EDITS folder and "
                    f"score it again (an editor is named by its EDITS folder)"
                )
            new, k = n, 1
            while new in taken:  # a name of the run (e.g. its own method's edits, scored as external)
                new, k = (f"{n}-external" if k == 1 else f"{n}-external-{k}"), k + 1
            s.names[n] = new
            taken.add(new)
        checked.append(s)
    _check_out(out, run, [s.root for s in checked])
    return rm, checked


def _check_scored(d: Path, run: Path, rm: dict, rcfg: RunConfig) -> _Scored:
    """One ``--external`` folder: a suite's scores of the run's test set (world, seed, images,
    every prompt, the thumbnails, the FID features), or one clear error."""
    from deltabench.suite.score import SCORED_BY

    sm = _manifest(d, "--external")
    by = sm.get("scored_by")
    if by != SCORED_BY:
        what = (
            "a benchmark's own layout (PIE-Bench, MagicBrush), whose images are not a run's test images"
            if by
            else "no `deltabench score SUITE EDITS` folder"
        )
        raise SuiteError(
            f"--external {d} is {what}; give the --out of `deltabench score SUITE EDITS` on a suite "
            f"exported with the run's world, seed and images"
        )
    scfg = RunConfig.from_dict(sm["config"])
    suite = sm.get("suite") or {}
    fix = (
        f"export the suite with `deltabench suite export --world {rcfg.world} --images {rcfg.images} "
        f"--seed {rcfg.seed}` (and the run's prompts), and score the edits of that"
    )
    if (scfg.world, scfg.world_hash) != (rcfg.world, rcfg.world_hash):
        raise SuiteError(
            f"--external {d} was scored on world {scfg.world!r} (config hash {scfg.world_hash}), RUN {run} "
            f"ran on {rcfg.world!r} ({rcfg.world_hash}): not the same test set; {fix}"
        )
    if (int(suite.get("seed", -1)), scfg.images) != (rcfg.seed, rcfg.images):
        raise SuiteError(
            f"--external {d}: its suite has {scfg.images} test images drawn with seed {suite.get('seed')}, "
            f"RUN {run} has {rcfg.images} with seed {rcfg.seed}: not the run's test images; {fix}"
        )
    run_prompts = {_key(p): j for j, p in enumerate(rcfg.prompts)}
    smap = {_key(p): j for j, p in enumerate(scfg.prompts)}
    missing = [k for k in run_prompts if k not in smap]
    if missing:
        raise SuiteError(
            f"--external {d} lacks {len(missing)} of RUN's {len(run_prompts)} prompts (by text): "
            + ", ".join(repr(k[1]) for k in missing[:3])
            + (" ..." if len(missing) > 3 else "")
            + f"; {fix}"
        )
    why = _thumbs_differ(run, d)
    if why:
        raise SuiteError(f"--external {d}: its test images are not RUN {run}'s ({why}); {fix}")
    if scfg.unjudged != rcfg.unjudged:
        raise SuiteError(
            f"--external {d} counted disentanglement without {list(scfg.unjudged) or 'no attribute'}, RUN {run} "
            f"without {list(rcfg.unjudged) or 'no attribute'}; score the edits again with this deltabench"
        )
    if sm.get("fid_features") != rm.get("fid_features"):
        raise SuiteError(
            f"--external {d} computed FID/KID on {sm.get('fid_features')!r} features, RUN {run} on "
            f"{rm.get('fid_features')!r}; score the edits again with this deltabench"
        )
    s = _Scored(
        root=d,
        manifest=sm,
        cfg=scfg,
        names={},
        prompt_map={smap[k]: j for k, j in run_prompts.items()},
        dropped=[p.target for p in scfg.prompts if _key(p) not in run_prompts],
    )
    _load_scores(s)
    return s


def _load_scores(s: _Scored) -> None:
    """The folder's rows and unit states of its editors at the run's prompts, each checked to be
    this folder's own (its unit ids), into ``s.rows`` and ``s.states``."""
    from deltabench.harness import rundir
    from deltabench.harness.store import unit_file, unit_id, unit_key

    try:
        rows = pd.read_csv(s.root / "results.csv")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SuiteError(f"--external {s.root}: results.csv is not readable ({e}); score the edits again") from None
    s.rows = rows[rows["prompt_index"].isin(list(s.prompt_map))]
    for n in s.cfg.methods:
        for js in s.prompt_map:
            f = unit_file(s.root, unit_key(n, js, 1.0))
            want = unit_id(s.cfg, n, js, 1.0)
            state = rundir.load_unit(f, s.root) if f.is_file() else None
            mine = s.rows[(s.rows["method"] == n) & (s.rows["prompt_index"] == js)]
            if not isinstance(state, dict) or state.get("unit") != want:
                raise SuiteError(
                    f"--external {s.root}: units/{f.name} is missing or not this folder's; score the edits again"
                )
            if len(mine) != s.cfg.images or set(mine["unit"]) != {want}:
                raise SuiteError(
                    f"--external {s.root}: results.csv lacks rows of {n!r} on prompt {js} or holds another "
                    f"config's; score the edits again"
                )
            s.states[(n, js)] = state


def _check_out(out: Path, run: Path, scored: list[Path]) -> None:
    for src, flag in [(run, "RUN"), *((s, "--external") for s in scored)]:
        o, s = out.resolve(), src.resolve()
        if o == s or s in o.parents:
            raise SuiteError(f"--out {out} is inside {flag} {src}, which is only read; give a folder outside it")
    from deltabench.harness.rundir import check_replaceable_out

    check_replaceable_out(out, "merged_by", MERGED_BY, "deltabench report --external", SuiteError)


def merge_external(run, scored: list, out, log=print) -> Path:
    """Write ``out``: the run's methods and the scored folders' editors in one run-shaped folder with
    one summary and report (see the module docstring). Returns ``out/reports``."""
    from deltabench import env
    from deltabench.harness import rundir
    from deltabench.harness.summary import summarize
    from deltabench.report import write_report
    from deltabench.suite.field import FIELD_SUMMARY_CSV
    from deltabench.suite.score import mark_external

    run, out = Path(run), Path(out)
    rm, checked = check_merge(run, scored, out)
    rcfg = RunConfig.from_dict(rm["config"])
    cfg = replace(rcfg, methods=(*rcfg.methods, *(n for s in checked for n in s.names.values())))
    for s in checked:
        for n, new in s.names.items():
            if new != n:
                log(f"{s.root}: editor {n!r} is named {new!r} here ({n!r} is a name of the run)")
        if s.dropped:
            log(f"{s.root}: {len(s.dropped)} prompt(s) not in the run left out: {', '.join(s.dropped)}")

    if out.is_dir():
        rundir.remove_owned(out)  # an earlier merge into out (check_merge refused anything else)
    (out / "units").mkdir(parents=True, exist_ok=True)
    (out / rundir.LEDGER).write_text("")
    _copy_run(run, out, rcfg)
    frames, fields, external = [pd.read_csv(run / "results.csv")], [], {}
    warnings = list(rm.get("warnings", []))
    for s in checked:
        frames += _add_external(s, out, cfg, external, warnings)
        if (s.root / FIELD_SUMMARY_CSV).is_file():
            f = pd.read_csv(s.root / FIELD_SUMMARY_CSV)
            f = f[f["editor"].isin(list(s.names))].copy()
            f["editor"] = f["editor"].map(s.names)
            fields.append(f)

    pd.concat(frames, ignore_index=True, sort=False).to_csv(out / "results.csv", index=False)
    manifest = {
        **rm,
        "config": cfg.to_dict(),
        "merged_by": MERGED_BY,
        "run": {"path": str(run.resolve()), "git_commit": rm.get("git_commit")},
        "external": external,
        "warnings": warnings,
        "merged_with": env.describe_environment(),
    }
    env.write_json(manifest, out / "manifest.json")
    rundir.record(out, out / "manifest.json", out / "results.csv")
    if fields:
        pd.concat(fields, ignore_index=True).to_csv(out / FIELD_SUMMARY_CSV, index=False, float_format="%.9g")
        rundir.record(out, out / FIELD_SUMMARY_CSV)

    summary = summarize(out, None, cfg)
    mark_external(summary, external)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g")
    rundir.record(out, out / "summary.csv")
    return write_report(out)


def _copy_run(run: Path, out: Path, rcfg) -> None:
    """The run's unit files (every strength, for the grids), inputs and fits, copied as they are."""
    from deltabench.harness import rundir
    from deltabench.harness.store import unit_file, unit_key

    for m in rcfg.scored:
        for j in range(len(rcfg.prompts)):
            for sc in rcfg.scales(m):
                src = unit_file(run, unit_key(m, j, sc))
                if src.is_file():
                    dst = unit_file(out, unit_key(m, j, sc))
                    shutil.copyfile(src, dst)
                    rundir.record(out, dst)
    for f in ("inputs.pt", "fits.json"):
        if (run / f).is_file():
            shutil.copyfile(run / f, out / f)
            rundir.record(out, out / f)


def _add_external(s: _Scored, out: Path, cfg, external: dict, warnings: list) -> list[pd.DataFrame]:
    """``s``'s editors into ``out``: their unit states and rows under the run's prompt numbers and
    the merged config's unit ids; what they were scored from into ``external``. Returns the rows."""
    from deltabench.harness import rundir
    from deltabench.harness.store import unit_file, unit_id, unit_key

    frames = []
    starts = s.manifest.get("starts", "the test images")
    for n, new in s.names.items():
        for js, j in s.prompt_map.items():
            dst = unit_file(out, unit_key(new, j, 1.0))
            torch.save({**s.states[(n, js)], "unit": unit_id(cfg, new, j, 1.0)}, dst)
            rundir.record(out, dst)
        mine = s.rows[s.rows["method"] == n].copy()
        mine["method"] = new
        mine["prompt_index"] = mine["prompt_index"].map(s.prompt_map).astype(int)
        mine["unit"] = [unit_id(cfg, new, int(j), 1.0) for j in mine["prompt_index"]]
        frames.append(mine)
        external[new] = {
            **s.manifest.get("external", {}).get(n, {}),
            "name_when_scored": n,
            "scored": str(s.root.resolve()),
            "suite": s.manifest.get("suite"),
            "starts": starts,
            "scored_with": {k: s.manifest[k] for k in ("deltabench_version", "git_commit") if k in s.manifest},
            "prompts_left_out": s.dropped,
        }
        if starts == "the test images":
            warnings.append(
                f"{new} (external) was scored against the test images themselves (no --starts), the run's "
                f"methods against their inversion: its CLIP direction and disentanglement read from another start"
            )
    return frames
