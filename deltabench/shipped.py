"""Fitted methods shipped with a world: a fresh install edits in seconds instead of training.

``deltabench/assets/methods/<world key>/`` mirrors the user's method cache
(``<cache>/methods/<world key>/``) for the default options and seed 0 of the world's methods
(DeltaEdit's mapper, StyleCLIP-GD's fs3, StyleCLIP-LM's mappers of the benchmark prompts), with
a ``manifest.json`` recording every file's sha256 and size. Before a method fits, missing files
are copied from there into the cache (:func:`seed_method_cache`), each verified first; from then
on the method finds them as if it had trained them, with their own checksum records. A run with
other options or another seed misses and trains as always; ``--refit`` retrains in place.

Maintainers write the directory with ``python benchmarks/ship_fits.py`` after fitting.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import torch

from deltabench import integrity

MANIFEST = "manifest.json"


def shipped_methods_root() -> Path:
    return Path(str(resources.files("deltabench") / "assets" / "methods"))


def seed_method_cache(domain_key: str, work_dir: Path, root: Path | None = None, log=None) -> list[str]:
    """Copy the shipped fitted files of world ``domain_key`` that ``work_dir`` lacks; return them.

    A shipped file that does not match its manifest is an error naming it (a damaged install),
    never copied. Files already in ``work_dir`` are left as they are (the user's own fits win).
    """
    src = (root or shipped_methods_root()) / domain_key
    mf = src / MANIFEST
    if not mf.is_file():
        return []
    files = integrity.read_json(mf, "the shipped fitted methods' manifest", "reinstall deltabench")["files"]
    work_dir = Path(work_dir)
    missing = [rel for rel in files if not (work_dir / rel).exists()]
    for rel in missing:  # every file verified before any is copied: a fit is never half shipped
        f, rec = src / rel, files[rel]
        if not f.is_file() or integrity.file_record(f) != rec:
            raise integrity.CacheIntegrityError(
                f"{f} does not match {mf} (sha256 {rec['sha256'][:12]}..., {rec['bytes']} bytes): the installed "
                f"package is damaged; reinstall deltabench (`pip install --force-reinstall deltabench`)"
            )
    copied = []
    for rel in missing:
        dst = work_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        integrity.atomic_write(dst, lambda tmp: shutil.copyfile(src / rel, tmp))
        copied.append(rel)
    if copied and log:
        log(f"fitted methods of {domain_key} taken from the package: {len(copied)} files into {work_dir}")
    return copied


def method_cache(domain, root: str | Path | None = None) -> Path:
    """The method cache of ``domain`` (``<root or cache>/methods/<world key>``), with the world's
    shipped fits copied in (:func:`seed_method_cache`): what ``edit``, ``fit`` and ``train`` fit into."""
    from deltabench.world import store

    d = (Path(root) if root else store.cache_root() / "methods") / domain.key
    seed_method_cache(domain.key, d)
    return d


def pack(
    domain_key: str, work_dir: Path, rels: list[str], root: Path | None = None, half: tuple[str, ...] = ()
) -> Path:
    """Write ``<root>/<domain_key>/``: the files ``rels`` (relative to ``work_dir``) and the manifest.

    Safetensors files whose name is in ``half`` are stored in fp16 (with a new checksum record),
    as the world's own weights are: model weights load into fp32 modules unchanged in shape."""
    dst = (root or shipped_methods_root()) / domain_key
    if dst.exists():
        shutil.rmtree(dst)
    files = {}
    halved = {r for r in rels if Path(r).name in half and r.endswith(".safetensors")}
    rels = [r for r in rels if not any(r == h + integrity.RECORD_SUFFIX for h in halved)]
    for rel in sorted(rels):
        f = Path(work_dir) / rel
        if not f.is_file():
            raise FileNotFoundError(f"{f} is not a file: fit the methods first")
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if rel in halved:
            integrity.save_tensors(integrity.load_tensors(f), out, torch.float16)
            sidecar = rel + integrity.RECORD_SUFFIX
            files[sidecar] = integrity.file_record(dst / sidecar)
        else:
            shutil.copyfile(f, out)
        files[rel] = integrity.file_record(out)
    (dst / MANIFEST).write_text(json.dumps({"world": domain_key, "files": files}, indent=1) + "\n")
    return dst
