"""The run directory: its manifest read back with clear errors, the marker of a directory
deltabench created, the ledger of every file a run wrote (all that ``--force`` and the report's
swap ever remove), the lock one run holds, and the checks that can refuse an ``--out``.

The runner (which writes runs) and the report (which reads them) share it without importing
each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
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
        raise RunConfigError(
            f"{mpath} is not valid JSON ({e}): {out} is not a readable deltabench run; "
            f"give another --out, or move the directory away"
        ) from None
    if not (isinstance(m, dict) and isinstance(m.get("config"), dict) and "methods" in m["config"]):
        raise RunConfigError(
            f"{mpath} is not a deltabench run manifest: {out} is not a deltabench run "
            f"directory and is left untouched; give another --out"
        )
    return m


# --- what a run wrote ---------------------------------------------------------------------
# Every file a run (or its report) writes into its directory is recorded, by its path relative
# to the directory, in LEDGER; ``--force`` and the report's swap remove recorded files only, and
# a directory holding an unrecorded file is no new run's --out.

LEDGER = ".deltabench-files"
MARKER = ".deltabench-run"  # written when deltabench creates a run directory: only such a directory may be cleared
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
    return (
        rel in top
        or re.fullmatch(r"results\.rank\d+\.csv", rel) is not None
        or re.fullmatch(r"units/[^/]+__\d+__[^/]+\.pt", rel) is not None
        or re.fullmatch(r"edits/([^/]+__\d+__[^/]+|inputs|start)\.npy", rel) is not None
        or re.fullmatch(r"\.work/(inputs|w|start)\.npy|\.work/done\.json", rel) is not None
        or re.fullmatch(
            r"reports/(table\.(md|csv|tex)|table_paper\.tex|per_prompt\.csv|edit_grid(_\d+)?\.png|"
            r"edit_grid\w*\.png|edit_grid_columns\.json|index\.html|tradeoff\.(png|pdf)|"
            r"tradeoff_points\.csv)",
            rel,
        )
        is not None
    )


def files(out: Path) -> list[str]:
    """Every file under ``out`` (relative paths), bookkeeping files apart."""
    out = Path(out)
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if (p.is_file() or p.is_symlink()) and p.relative_to(out).as_posix() not in BOOKKEEPING
    )


def foreign_files(out: Path) -> list[str]:
    """Files under ``out`` that no deltabench run recorded writing (a temporary ``.tmp`` beside
    a recorded file, left by a kill, counts as the run's)."""
    out = Path(out)
    mine = owned(out)
    legacy = not (out / LEDGER).is_file() and ((out / MARKER).is_file() or (out / "manifest.json").is_file())

    def ours(rel: str) -> bool:
        base = rel.removesuffix(".tmp")
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
    return (
        f"run the run's `deltabench run ... --out {run}` command again (same flags): it recomputes only what is missing"
    )


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
        raise RunConfigError(
            f"{why}; it is this run's own output, damaged: delete it (rm '{path}') and "
            f"{rerun_hint(run)}; then `deltabench report {run}` redraws the report"
        ) from None


def load_unit(path: Path, run: Path | None = None):
    """A run's unit file (:func:`load_run_file`)."""
    path = Path(path)
    return load_run_file(path, run if run is not None else path.parent.parent)


# --- the --out checks, the manifest, the lock ----------------------------------------------

# What a run writes into its directory: all that --force ever removes (anything else is kept).
RUN_ENTRIES = (
    "manifest.json",
    "results.csv",
    "results.superseded.csv",
    "summary.csv",
    "fits.json",
    "units",
    "reports",
    "inputs.pt",
    ".work",
    "edits",
    MARKER,
)


def _is_run_entry(name: str) -> bool:
    return (
        name in RUN_ENTRIES
        or name == LOCK
        or (name.startswith("results.rank") and name.endswith(".csv"))
        or name.endswith(".tmp")
    )


def check_out_path(out: Path) -> dict | None:
    """What about ``--out`` can refuse any run, checked before a model is loaded: the path (a
    dangling link, a file, an unwritable parent) and a directory of someone else's files.
    Returns the manifest of the run it holds (None if none)."""
    dangling = next((p for p in (out, *out.parents) if p.is_symlink() and not p.exists()), None)
    if dangling is not None:
        raise RunConfigError(
            f"--out {out}: {dangling} is a symbolic link to {os.readlink(dangling)}, which does not "
            f"exist; remove the link or give another directory"
        )
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
        return None
    manifest = read_manifest(out)
    made_by = (manifest or {}).get("merged_by") or (manifest or {}).get("scored_by")
    if made_by:  # shaped like a run, but a report's merge or a suite's scores: a run would mix into it
        raise RunConfigError(
            f"--out {out} holds the output of `{made_by}`, not a run: a run can neither resume nor "
            f"replace it; give another --out"
        )
    if manifest is None:
        theirs = foreign_files(out)  # files no deltabench run wrote, in any subfolder
        if theirs:
            raise RunConfigError(
                f"--out {out} holds files deltabench did not write ({_names(theirs)}), so it "
                f"cannot hold a new run (a later --force could not tell them from the run's); "
                f"give a new or empty directory"
            )
    return manifest


def check_out_dir(out: Path, cfg, resume: bool, force: bool) -> None:
    """Everything about ``--out`` that can refuse the run of ``cfg`` (a :class:`RunConfig`),
    checked before any write: :func:`check_out_path`, then a run of another config there."""
    manifest = check_out_path(out)
    if manifest is None:
        return
    foreign = [n for n in sorted(p.name for p in out.iterdir()) if not _is_run_entry(n)]
    old, new = manifest["config"], cfg.to_dict()
    if old != new and not resume:
        if not force:
            diff = sorted(k for k in new if old.get(k) != new[k])
            raise RunConfigError(
                f"{out} holds a run with a different config (differs in: {diff}). Use --resume to "
                f"keep its finished rows and continue with the new config, --force to delete it and "
                f"start over, or another --out directory."
            )
        if not (out / MARKER).is_file() and foreign:
            raise RunConfigError(
                f"--force: {out} was not created by `deltabench run` (no {MARKER} marker) and "
                f"holds files that are not a run's ({_names(foreign)}); nothing was deleted. "
                f"Give another --out, or clear the directory yourself"
            )


def check_replaceable_out(out: Path, key: str, mark: str, command: str, error: type = RunConfigError) -> None:
    """``--out`` of a command that writes a folder and replaces its own earlier one (``deltabench
    score``, ``report --external``): a new or empty folder, or one whose ``manifest.json`` has
    ``key`` = ``mark`` (that command wrote it) and, where it keeps a ledger, no file deltabench did
    not write (the command then removes only what it recorded, :func:`remove_owned`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise error(f"--out {out} is a file; give a new folder")
    if not (out.is_dir() and any(out.iterdir())):
        return
    try:
        ours = json.loads((out / "manifest.json").read_text()).get(key) == mark
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        ours = False
    if not ours:
        raise error(f"--out {out} is not empty and holds no earlier `{command}`; give a new or empty folder")
    foreign = foreign_files(out) if (out / LEDGER).is_file() else []
    if foreign:
        raise error(
            f"--out {out} holds file(s) deltabench did not write ({_names(foreign, 3)}); move them away or "
            f"give another folder"
        )


def _names(names: list[str], k: int = 6) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")


def prepare_out_dir(out: Path, cfg, resume: bool, force: bool, log=print, extra: dict | None = None) -> dict:
    """Check (:func:`check_out_dir`), create or clear the run directory; return its manifest
    (``extra``: more entries for it, e.g. :func:`domain_notes`).

    ``--force`` removes only the files the run recorded writing (its ledger,
    :func:`remove_owned`), never another file."""
    from deltabench import env as store

    check_out_dir(out, cfg, resume, force)
    if out.is_dir():
        adopt_legacy(out)
    manifest_old = read_manifest(out) if out.is_dir() else None
    new = cfg.to_dict()
    if manifest_old is not None and manifest_old["config"] != new and not resume and force:
        kept = remove_owned(out)  # only the files the run recorded writing
        log(f"--force: cleared the run in {out}" + (f" (kept files it did not write: {_names(kept)})" if kept else ""))
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():
        store.write_json({"created_by": "deltabench run", "time": time.time()}, out / MARKER)
        if not (out / LEDGER).exists():
            (out / LEDGER).write_text("")
    manifest = {
        "config": new,
        "config_hash": hashlib.sha256(json.dumps(new, sort_keys=True).encode()).hexdigest()[:16],
        **store.describe_environment(),
        **(extra or {}),
    }
    if manifest_old is not None and manifest_old["config"] == new and "strength" in manifest_old:
        manifest["strength"] = manifest_old["strength"]  # a resumed run that fits nothing keeps them
    store.write_json(manifest, out / "manifest.json")
    record(out, out / "manifest.json")
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
        raise RunConfigError(
            f"--out {out}: another deltabench run is writing to this directory"
            + (f" ({who})" if who else "")
            + "; wait for it to finish, or give another --out"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    try:
        yield
    finally:
        f.close()  # releases the lock


def record_strength(out: Path, name: str, strength: dict) -> None:
    """Add method ``name``'s strength (its knob's name and ``strength_for(k)`` at every ×k of the
    run, :meth:`deltabench.methods.EditMethod.describe_strength`) to the run's manifest."""
    from deltabench import env

    manifest = read_manifest(out)
    if manifest is None or manifest.get("strength", {}).get(name) == strength:
        return
    manifest.setdefault("strength", {})[name] = strength
    env.write_json(manifest, out / "manifest.json")
