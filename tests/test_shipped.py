"""Fitted methods shipped with a world: packed with checksums, copied into the cache verified."""

from __future__ import annotations

import json

import pytest
import torch

from deltabench import integrity
from deltabench.shipped import pack, seed_method_cache


def _fit(work):
    integrity.save_tensors({"w": torch.arange(6.0)}, work / "deltaedit" / "abc" / "mapper.safetensors")
    (work / "deltaedit" / "abc" / "train.json").write_text('{"steps": 3}')
    (work / "deltaedit-pools").mkdir(parents=True)
    (work / "deltaedit-pools" / "pool.safetensors").write_bytes(b"big")
    return ["deltaedit/abc/mapper.safetensors", "deltaedit/abc/mapper.safetensors.sha256", "deltaedit/abc/train.json"]


def test_pack_then_seed_copies_verified_files_and_keeps_the_users(tmp_path):
    work, root, user = tmp_path / "fit", tmp_path / "assets", tmp_path / "cache"
    rels = _fit(work)
    dst = pack("w-1", work, rels, root=root)
    manifest = json.loads((dst / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(rels) and not (dst / "deltaedit-pools").exists()
    assert seed_method_cache("w-1", user, root=root) == sorted(rels)
    # The copy is a cache entry like a trained one: its checksum record verifies.
    assert torch.equal(
        integrity.load_tensors(user / "deltaedit" / "abc" / "mapper.safetensors")["w"], torch.arange(6.0)
    )
    assert seed_method_cache("w-1", user, root=root) == []  # nothing missing: nothing copied
    (user / "deltaedit" / "abc" / "train.json").write_text('{"mine": 1}')
    (user / "deltaedit" / "abc" / "mapper.safetensors").unlink()
    assert seed_method_cache("w-1", user, root=root) == ["deltaedit/abc/mapper.safetensors"]
    assert json.loads((user / "deltaedit" / "abc" / "train.json").read_text()) == {"mine": 1}
    assert seed_method_cache("other-world", user, root=root) == []


def test_a_damaged_shipped_file_is_an_error_and_never_copied(tmp_path):
    work, root, user = tmp_path / "fit", tmp_path / "assets", tmp_path / "cache"
    dst = pack("w-1", work, _fit(work), root=root)
    f = dst / "deltaedit" / "abc" / "train.json"
    f.write_text('{"steps": 4}')
    with pytest.raises(integrity.CacheIntegrityError, match="train.json does not match .*reinstall"):
        seed_method_cache("w-1", user, root=root)
    assert not user.exists()  # verified before anything is copied: not even the intact mapper


def test_the_shipped_worlds_fits_are_the_ones_its_default_run_looks_for(tmp_path):
    """If a method's defaults or cache key drift, the shipped fits would silently stop being
    used (and a fresh install would train for half an hour): the shipped files must sit exactly
    where the world's default run and `deltabench edit` look, and verify."""
    from deltabench.domain import load_domain
    from deltabench.methods import get_method
    from deltabench.runner import default_prompts, with_domain_defaults
    from deltabench.shipped import shipped_methods_root

    domain = load_domain("synthfaces")
    root = shipped_methods_root() / domain.key
    files = json.loads((root / "manifest.json").read_text())["files"]
    for rel, rec in files.items():
        assert integrity.file_record(root / rel) == rec, rel
    opts = with_domain_defaults({}, domain, ["deltaedit", "styleclip-lm"])
    de = get_method("deltaedit")(domain, tmp_path, seed=0, **opts["deltaedit"])
    assert f"deltaedit/{de.run_dir.name}/mapper.safetensors" in files
    lm = get_method("styleclip-lm")(domain, tmp_path, seed=0, **opts["styleclip-lm"])
    for p in default_prompts(domain):
        f = lm._files(p.target)[0]
        assert f"styleclip-lm/{lm.run_dir.name}/{f.name}" in files, p.target
    assert "styleclip-gd/fs3.safetensors" in files
