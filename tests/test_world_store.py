"""The world cache: verification, clear errors on damage, resume, never a silent rebuild."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from deltabench.world import store
from deltabench.world.build import build_world
from deltabench.world.catalog import load_world_config
from deltabench.world.world import load_world

CFG = load_world_config("synthfaces-micro")
HINT = "deltabench world build --world synthfaces-micro --force"


@pytest.fixture
def world_copy(micro_root, tmp_path):
    src = micro_root / store.world_dirname(CFG)
    dst = tmp_path / "worlds" / src.name
    shutil.copytree(src, dst)
    return dst


def test_manifest_records_provenance(micro_world):
    m = micro_world.manifest
    assert m["config_hash"] == CFG.hash and m["config"]["name"] == "synthfaces-micro"
    assert set(m["files"]) == {f"{c}.safetensors" for c in ("generator", "encoder", "clip", "identity", "oracle")}
    assert {"torch", "numpy", "deltabench"} <= set(m["versions"])
    assert m["build_seconds"]["total"] > 0


def test_truncated_file_is_named(world_copy):
    f = world_copy / "clip.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(store.WorldCacheError) as e:
        load_world(CFG, roots=[world_copy.parent])
    assert str(f) in str(e.value) and "truncated" in str(e.value) and HINT in str(e.value)


def test_wrong_sha256_is_named(world_copy):
    f = world_copy / "oracle.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    f.write_bytes(bytes(data))
    with pytest.raises(store.WorldCacheError) as e:
        load_world(CFG, roots=[world_copy.parent])
    assert str(f) in str(e.value) and "sha256" in str(e.value) and HINT in str(e.value)


def test_config_mismatch_is_refused(world_copy):
    mpath = world_copy / store.MANIFEST
    m = json.loads(mpath.read_text())
    m["config"]["seed"] += 1
    mpath.write_text(json.dumps(m))
    with pytest.raises(store.WorldCacheError) as e:
        load_world(CFG, roots=[world_copy.parent])
    assert "different config" in str(e.value) and str(mpath) in str(e.value) and HINT in str(e.value)


def test_missing_world_says_how_to_build(tmp_path):
    with pytest.raises(store.WorldCacheError) as e:
        load_world(CFG, roots=[tmp_path])
    assert "deltabench world build --world synthfaces-micro" in str(e.value)


def test_damaged_world_is_not_silently_rebuilt(world_copy, monkeypatch):
    from deltabench.world import components

    f = world_copy / "generator.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    before = {p.name: p.stat().st_mtime_ns for p in world_copy.iterdir()}
    # Any training call here would be a silent rebuild.
    for name, spec in list(components.COMPONENT_SPECS.items()):
        monkeypatch.setitem(components.COMPONENT_SPECS, name, dataclasses.replace(spec, train=_forbidden))
    with pytest.raises(store.WorldCacheError):
        build_world(CFG, root=world_copy.parent, log=lambda s: None)
    assert {p.name: p.stat().st_mtime_ns for p in world_copy.iterdir()} == before


def _forbidden(*a, **k):
    raise AssertionError("training was called")


@pytest.mark.slow
def test_interrupted_build_resumes_finished_stages(tmp_path, monkeypatch):
    from deltabench.world import components

    specs = components.COMPONENT_SPECS
    calls = []
    interrupted = []

    def counting(name, fn):
        def train(cfg, models):
            calls.append(name)
            if name == "clip" and not interrupted:
                interrupted.append(True)
                raise KeyboardInterrupt  # the user pressed Ctrl-C during the clip stage
            return fn(cfg, models)

        return train

    for name, spec in list(specs.items()):
        monkeypatch.setitem(specs, name, dataclasses.replace(spec, train=counting(name, spec.train)))
    with pytest.raises(KeyboardInterrupt):
        build_world(CFG, root=tmp_path, log=lambda s: None)
    stages = tmp_path / "stages"
    assert (stages / f"generator-{CFG.stage_hash('generator')}.safetensors").is_file()
    assert (stages / f"encoder-{CFG.stage_hash('encoder')}.safetensors").is_file()
    assert not (tmp_path / store.world_dirname(CFG)).exists()  # no half-built world under the final name
    calls.clear()
    d = build_world(CFG, root=tmp_path, log=lambda s: None)
    assert calls == ["clip", "identity", "oracle"]  # generator and encoder were not retrained
    assert (d / store.MANIFEST).is_file()
    load_world(CFG, roots=[tmp_path])  # and the result verifies


def test_stage_hash_tracks_only_what_a_component_depends_on():
    d = CFG.to_dict()
    d["oracle"] = {**d["oracle"], "steps": d["oracle"]["steps"] + 1}
    other = type(CFG).from_dict(d)
    assert other.hash != CFG.hash
    assert other.stage_hash("oracle") != CFG.stage_hash("oracle")
    for c in ("generator", "encoder", "clip", "identity"):
        assert other.stage_hash(c) == CFG.stage_hash(c)
    d = CFG.to_dict()
    d["generator"] = {**d["generator"], "train": {**d["generator"]["train"], "steps": 1}}
    g = type(CFG).from_dict(d)
    assert g.stage_hash("encoder") != CFG.stage_hash("encoder")  # the encoder inverts that generator


def test_generator_refine_phase_continues_the_cached_base(micro_root, tmp_path):
    from deltabench.world.components import resolve_sections
    from deltabench.world.train_generator import generator_psnr

    stages = tmp_path / "stages"
    shutil.copytree(micro_root / "stages", stages)  # the base stages are cached already
    d = CFG.to_dict()
    d["generator"] = {**d["generator"], "refine": {**d["generator"]["train"], "steps": 40, "lr": 2e-3, "eval_n": 64}}
    cfg = resolve_sections(type(CFG).from_dict(d))
    assert cfg.without_refine("generator").stage_hash("generator") == CFG.stage_hash("generator")
    assert cfg.stage_hash("generator") != CFG.stage_hash("generator")
    assert cfg.stage_hash("encoder") != CFG.stage_hash("encoder")  # it inverts the refined generator
    assert cfg.stage_hash("clip") == CFG.stage_hash("clip")
    base_file = stages / f"generator-{CFG.stage_hash('generator')}.safetensors"
    before = base_file.stat().st_mtime_ns
    logs = []
    world = load_world(cfg, roots=[build_world(cfg, root=tmp_path, log=logs.append).parent])
    assert base_file.stat().st_mtime_ns == before  # the base was loaded, not retrained
    assert any("refining generator-" in s for s in logs) and any("[clip] resumed" in s for s in logs)
    info = world.manifest["stages"]["generator"]
    assert info["stats"]["base_stage"] == CFG.stage_hash("generator")
    base = load_world(CFG, roots=[micro_root])
    # Refining moved the weights, and from where the base ended (not from a fresh init).
    assert abs(info["stats"]["psnr_init"] - generator_psnr(base.generator, 64, 12345)) < 0.05
    assert generator_psnr(world.generator, 64, 12345) != pytest.approx(generator_psnr(base.generator, 64, 12345))
    d["identity"] = {**d["identity"], "refine": {"steps": 1}}
    with pytest.raises(ValueError, match=r"unknown keys \['refine'\]"):
        build_world(resolve_sections(type(CFG).from_dict(d)), root=tmp_path / "x", log=lambda s: None)


def test_clip_refine_phase_continues_the_cached_clip(micro_root, tmp_path):
    import torch

    from deltabench.world.components import resolve_sections

    stages = tmp_path / "stages"
    shutil.copytree(micro_root / "stages", stages)
    d = CFG.to_dict()
    d["clip"] = {
        **d["clip"],
        "refine": {"steps": 3, "lr": 1e-4, "pool_groups": 16, "pair_frac": 1.0, "pair_attrs": ["eye_size"]},
    }
    cfg = resolve_sections(type(CFG).from_dict(d))
    # The refine phase is resolved as what it trains with: the base keys with its own laid over.
    r = cfg.refine("clip")
    assert r["steps"] == 3 and r["pair_attrs"] == ["eye_size"] and r["batch_size"] == CFG.section("clip")["batch_size"]
    assert cfg.without_refine("clip").stage_hash("clip") == CFG.stage_hash("clip")
    assert cfg.stage_hash("clip") != CFG.stage_hash("clip")
    assert cfg.stage_hash("generator") == CFG.stage_hash("generator")
    base_file = stages / f"clip-{CFG.stage_hash('clip')}.safetensors"
    before = base_file.stat().st_mtime_ns
    logs = []
    world = load_world(cfg, roots=[build_world(cfg, root=tmp_path, log=logs.append).parent])
    assert base_file.stat().st_mtime_ns == before and any("refining clip-" in s for s in logs)
    base = load_world(CFG, roots=[micro_root])
    assert world.clip.tokenizer.to_dict() == base.clip.tokenizer.to_dict()
    a, b = world.clip.state_dict(), base.clip.state_dict()
    assert a.keys() == b.keys()
    moved = [k for k in a if not torch.equal(a[k], b[k])]
    # Continued from the base: three small steps move the weights a little, not to a fresh init.
    assert moved and max(float((a[k] - b[k]).abs().max()) for k in moved) < 0.05
    d["clip"]["refine"] = {"steps": 1, "model": d["clip"]["model"]}
    with pytest.raises(ValueError, match="cannot change 'model'"):
        resolve_sections(type(CFG).from_dict(d))


def test_clip_refine_phases_chain_on_the_cached_stages(micro_root, tmp_path):
    """``refine: [a, b]`` is phase ``b`` trained on the cached ``refine: a`` stage, which is the
    same stage (same hash, same file) as a config with the single phase ``a``."""
    from deltabench.world.components import resolve_sections

    stages = tmp_path / "stages"
    shutil.copytree(micro_root / "stages", stages)
    a = {"steps": 2, "lr": 1e-4, "pool_groups": 16, "pair_frac": 1.0, "pair_attrs": ["eye_size"]}
    b = {"steps": 2, "lr": 1e-4, "pool_groups": 16}
    d = CFG.to_dict()
    d["clip"] = {**d["clip"], "refine": a}
    one = resolve_sections(type(CFG).from_dict(d))
    d["clip"] = {**d["clip"], "refine": [a, b]}
    two = resolve_sections(type(CFG).from_dict(d))
    assert len(two.refine_phases("clip")) == 2 and two.refine("clip")["pair_frac"] == CFG.section("clip")["pair_frac"]
    assert two.without_refine("clip").stage_hash("clip") == one.stage_hash("clip")
    assert two.without_refine("clip").without_refine("clip").stage_hash("clip") == CFG.stage_hash("clip")
    assert len({CFG.stage_hash("clip"), one.stage_hash("clip"), two.stage_hash("clip")}) == 3
    d["clip"]["refine"] = [a]  # a one-phase list is the phase itself
    assert resolve_sections(type(CFG).from_dict(d)).stage_hash("clip") == one.stage_hash("clip")
    logs = []
    build_world(one, root=tmp_path, log=logs.append)
    mid = stages / f"clip-{one.stage_hash('clip')}.safetensors"
    before = mid.stat().st_mtime_ns
    logs.clear()
    build_world(two, root=tmp_path, log=logs.append)
    assert mid.stat().st_mtime_ns == before
    assert any(f"refining clip-{one.stage_hash('clip')}" in s for s in logs)
    info = json.loads((stages / f"clip-{two.stage_hash('clip')}.json").read_text())
    assert info["stats"]["base_stage"] == one.stage_hash("clip")
    for bad in ([], [1], "x"):
        d["clip"]["refine"] = bad
        with pytest.raises(ValueError, match="non-empty list of phases"):
            resolve_sections(type(CFG).from_dict(d))


# The hashes of the shipped world and the micro world before world kinds existed (issue 24): a new
# config key ("kind") is left out at its default, so the shipped world and the method fits keyed
# by it stay valid. Read from `deltabench world list` before the change.
FROZEN = {
    "synthfaces": (
        "b742fd84ba6a71f3",
        {
            "generator": "1e1eb50ca0a57256",
            "encoder": "14ad920a5e735545",
            "clip": "e4783004d3cc5301",
            "identity": "bcbbe537c2326ced",
            "oracle": "0085269f5c86e108",
        },
    ),
    "synthfaces-micro": (
        "f1d9256f2720cb60",
        {
            "generator": "e6fbafa712e401e5",
            "encoder": "440dde93c7741bf9",
            "clip": "ea0462383a42387a",
            "identity": "c9950d40552d30b9",
            "oracle": "41a4691700e5a828",
        },
    ),
}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_synthfaces_config_and_stage_hashes_are_unchanged(name):
    cfg = load_world_config(name)
    want, stages = FROZEN[name]
    assert cfg.kind == "faces" and "kind" not in cfg.to_dict()
    assert cfg.hash == want
    assert {c: cfg.stage_hash(c) for c in cfg.components} == stages
    # Spelling the default kind out changes nothing either.
    from deltabench.config import WorldConfig

    assert WorldConfig.from_dict({**cfg.to_dict(), "kind": "faces"}).hash == want


def test_the_shipped_world_still_verifies_under_its_hash():
    cfg = load_world_config("synthfaces")
    d = store.shipped_root() / store.world_dirname(cfg)
    assert d.is_dir(), d
    assert store.verify_world(cfg, d)["config_hash"] == "b742fd84ba6a71f3"
