"""A run directory as files: its manifest, read back with clear errors. A leaf module, so the
runner (which writes runs) and the report (which reads them) share it without importing each other.
"""
from __future__ import annotations

import json
from pathlib import Path


class RunConfigError(ValueError):
    """The output directory holds a run of another config."""


def read_manifest(out: Path) -> dict | None:
    """The run manifest of ``out`` (None if there is none); anything else is a clear error."""
    mpath = out / "manifest.json"
    if not mpath.is_file():
        return None
    try:
        m = json.loads(mpath.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise RunConfigError(f"{mpath} is not valid JSON ({e}): {out} is not a readable deltabench run; "
                             f"give another --out, or move the directory away") from None
    if not (isinstance(m, dict) and isinstance(m.get("config"), dict) and "methods" in m["config"]):
        raise RunConfigError(f"{mpath} is not a deltabench run manifest: {out} is not a deltabench run "
                             f"directory and is left untouched; give another --out")
    return m


# --- what a run wrote ---------------------------------------------------------------------
# Every file a run (or its report) writes into its directory is recorded, by its path relative
# to the directory, in LEDGER; ``--force`` and the report's swap remove recorded files only, and
# a directory holding an unrecorded file is no new run's --out.

LEDGER = ".deltabench-files"
MARKER = ".deltabench-run"
LOCK = ".lock"
BOOKKEEPING = (LEDGER, MARKER, LOCK)
# Directories a run makes; left empty by a clean-up they are removed too.
RUN_DIRS = ("units", "reports", "edits", ".work", ".reports.tmp")


def record(out: Path, *paths) -> None:
    """Add ``paths`` (files under ``out``) to the run's ledger: one append, safe from several ranks."""
    out = Path(out)
    lines = "".join(Path(p).resolve().relative_to(out.resolve()).as_posix() + "\n" for p in paths)
    if not lines:
        return
    import os

    fd = os.open(out / LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, lines.encode())
    finally:
        os.close(fd)


def owned(out: Path) -> set[str]:
    """The files the run recorded (relative paths), whether or not they still exist."""
    f = Path(out) / LEDGER
    if not f.is_file():
        return set()
    return {ln for ln in f.read_text(errors="replace").splitlines() if ln.strip()}


def _legacy_owned(rel: str) -> bool:
    """A run of a deltabench without a ledger: the names such a run writes, strictly."""
    import re

    top = ("manifest.json", "results.csv", "results.superseded.csv", "summary.csv", "fits.json", "inputs.pt")
    return (rel in top or re.fullmatch(r"results\.rank\d+\.csv", rel) is not None
            or re.fullmatch(r"units/[^/]+__\d+__[^/]+\.pt", rel) is not None
            or re.fullmatch(r"edits/([^/]+__\d+__[^/]+|inputs|start)\.npy", rel) is not None
            or re.fullmatch(r"\.work/(inputs|w|start)\.npy|\.work/done\.json", rel) is not None
            or re.fullmatch(r"reports/(table\.(md|csv|tex)|table_paper\.tex|per_prompt\.csv|edit_grid(_\d+)?\.png|"
                            r"edit_grid\w*\.png|edit_grid_columns\.json|index\.html|tradeoff\.(png|pdf)|"
                            r"tradeoff_points\.csv)", rel) is not None)


def files(out: Path) -> list[str]:
    """Every file under ``out`` (relative paths), bookkeeping files apart."""
    out = Path(out)
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.relative_to(out).as_posix() not in BOOKKEEPING)


def foreign_files(out: Path) -> list[str]:
    """Files under ``out`` that no deltabench run recorded writing (a temporary ``.tmp`` beside
    a recorded file, left by a kill, counts as the run's)."""
    out = Path(out)
    mine = owned(out)
    legacy = not (out / LEDGER).is_file() and ((out / MARKER).is_file() or (out / "manifest.json").is_file())

    def ours(rel: str) -> bool:
        base = rel[:-4] if rel.endswith(".tmp") else rel
        return base in mine or (legacy and _legacy_owned(base)) or rel.startswith(".reports.tmp/")

    return [rel for rel in files(out) if not ours(rel)]


def adopt_legacy(out: Path) -> None:
    """A run made before the ledger: record the files such a run writes, so the ledger is complete."""
    out = Path(out)
    if (out / LEDGER).is_file() or not ((out / MARKER).is_file() or (out / "manifest.json").is_file()):
        return
    mine = [out / rel for rel in files(out) if rel not in foreign_files(out)]
    (out / LEDGER).write_text("")
    record(out, *mine)


def remove_owned(out: Path) -> list[str]:
    """Delete every file the run recorded (and the run directories left empty); return the
    files kept: those it did not write."""
    import contextlib
    import shutil

    out = Path(out)
    foreign = set(foreign_files(out))
    for rel in files(out):
        if rel not in foreign:
            (out / rel).unlink(missing_ok=True)
    shutil.rmtree(out / ".reports.tmp", ignore_errors=True)
    for d in RUN_DIRS:
        p = out / d
        if p.is_dir() and not p.is_symlink():
            for sub in sorted((q for q in p.rglob("*") if q.is_dir()), key=lambda q: -len(q.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                p.rmdir()
    if (out / LEDGER).is_file():  # emptied, not removed: the leftovers were never recorded and stay foreign
        (out / LEDGER).write_text("")
    return sorted(foreign)


def rerun_hint(run: Path) -> str:
    return (f"run the run's `deltabench run ... --out {run}` command again (same flags): it recomputes only "
            f"what is missing")


def load_run_file(path: Path, run: Path, what: str = "a deltabench run unit (metric states)"):
    """A ``.pt`` file the run wrote (a unit's metric states, ``inputs.pt``), read safely; a damaged
    one is an error naming the command that recomputes it (never "download it again")."""
    from deltabench.checkpoints import CheckpointError, safe_torch_load

    path, run = Path(path), Path(run)
    try:
        return safe_torch_load(path, what)
    except CheckpointError as e:
        if "refused by torch.load" in str(e):  # not damage: a file that asks to run code
            raise
        why = str(e).split(";")[0]
        raise RunConfigError(f"{why}; it is this run's own output, damaged: delete it (rm '{path}') and "
                             f"{rerun_hint(run)}; then `deltabench report {run}` redraws the report") from None


def load_unit(path: Path, run: Path | None = None):
    """A run's unit file (:func:`load_run_file`)."""
    path = Path(path)
    return load_run_file(path, run if run is not None else path.parent.parent)
