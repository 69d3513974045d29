"""Versioned configs (deltabench.confighash): every existing cache hash unchanged, a new option
with a default changes none, a changed default changes them, a forgotten declaration is loud."""

from __future__ import annotations

import dataclasses
import json
import types
from importlib import resources

import pytest

from baselines.gd import FS3_SCHEMA, FS3Config
from baselines.lm import LMConfig, StyleCLIPMapper
from deltabench import confighash
from deltabench.config import STAGE_SCHEMA, WORLD_SCHEMA, WorldConfig
from deltabench.confighash import ABSENT, Schema, either, versioned
from deltabench.world.catalog import load_world_config
from deltabench.world.components import SECTION_SCHEMAS, schema_versions
from deltaedit.method import DeltaEdit
from deltaedit.train import POOL_SCHEMA, DeltaEditConfig

# Computed with the code before the declared schemas (issue 23), from `deltabench world list`
# and the shipped files' names: the shipped world, its method fits and every world stage.
WORLDS = {
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
    "church": (
        "9ce85555e1d2947a",
        {
            "generator": "ac92a0ff2baa130d",
            "encoder": "cb3815d8535dc769",
            "clip": "81c0d77ed2aed17b",
            "oracle": "c7ff8a91c917dc6a",
        },
    ),
    "church-micro": (
        "7ae97fc51ec5fa82",
        {
            "generator": "fa776f42591c0b6d",
            "encoder": "9b9cce48c4907828",
            "clip": "ef2ecbc8caab1414",
            "oracle": "038084bcee10f940",
        },
    ),
}
SHIPPED = resources.files("deltabench") / "assets" / "methods" / "synthfaces-b742fd84ba6a71f3"


def _synthfaces_domain():
    """What the method cache keys read of the synthfaces domain (its world config's benchmark
    section), without loading a model."""
    bench = load_world_config("synthfaces").to_dict()["benchmark"]
    return types.SimpleNamespace(
        name="synthfaces",
        edit_torgb=True,
        official_clip_input=False,
        method_defaults=bench["method_defaults"],
        released_fs3=None,
        generator=types.SimpleNamespace(n_latent=10, style_dim=128),
    )


# --- (a) every existing hash is unchanged -----------------------------------------------------


@pytest.mark.parametrize("name", sorted(WORLDS))
def test_world_and_stage_hashes_are_unchanged(name):
    cfg = load_world_config(name)
    want, stages = WORLDS[name]
    assert cfg.hash == want
    assert {c: cfg.stage_hash(c) for c in cfg.components} == stages


def test_the_shipped_method_fits_keep_their_keys(tmp_path):
    dom = _synthfaces_domain()
    de = DeltaEdit(dom, tmp_path)
    assert de.run_dir.name == "eae81d5bdaab"
    record = json.loads((SHIPPED / "deltaedit" / "eae81d5bdaab" / "train.json").read_text())
    assert de.cfg.to_dict() == record["config"]  # what train_deltamapper compares
    lm = StyleCLIPMapper(dom, tmp_path, config=dom.method_defaults["styleclip-lm"]["config"])
    assert lm.run_dir.name == "9d2d5bf05182"
    fs3 = json.loads((SHIPPED / "styleclip-gd" / "fs3.json").read_text())
    assert FS3Config().resolve(dom).to_dict() == fs3["config"]  # what fit_fs3 compares


def test_the_legacy_omissions_are_reproduced():
    """The hand-written rules the schemas replace, value by value."""
    assert "max_batch" not in FS3Config(max_batch=3).to_dict()
    for kw, gone in (
        ({"torgb": None}, "torgb"),
        ({"torgb": False}, "torgb"),
        ({}, "official_fs3"),
        ({"protocol": "per-image"}, "protocol"),
    ):
        assert gone not in FS3Config(**kw).to_dict()
    assert FS3Config(torgb=True, protocol="official").to_dict()["protocol"] == "official"
    for kw in ({}, {"checkpoints": {}}, {"optimizer": "adam"}):
        assert not {"checkpoints", "optimizer"} & set(LMConfig.from_dict(kw).to_dict())
    for v in (None, "domain"):
        assert "clip_input" not in DeltaEditConfig(clip_input=v).to_dict()
    assert DeltaEditConfig(clip_input="official").to_dict()["clip_input"] == "official"
    pool = {"n_generated": 10, "n_inverted": 2, "seed": 0}
    assert POOL_SCHEMA.hashed({**pool, "torgb": False, "clip_input": "domain"}) == pool
    assert POOL_SCHEMA.hashed({**pool, "torgb": True, "clip_input": "official"}) == {
        **pool,
        "torgb": True,
        "clip_input": "official",
    }
    from deltabench.world.train_clip import ClipTrainConfig

    # identity_share only acts through identity_weight: hashed exactly when that one is.
    assert not {"identity_weight", "identity_share"} & set(ClipTrainConfig(identity_share=0.5).to_dict())
    on = ClipTrainConfig(identity_weight=2.0).to_dict()
    assert (on["identity_weight"], on["identity_share"]) == (2.0, 0.35)
    assert "kind" not in load_world_config("synthfaces").to_dict()
    assert load_world_config("church").to_dict()["kind"] == "church"


@pytest.mark.parametrize("name", ["ffhq", "lsun-church"])
@pytest.mark.parametrize("fs3", [None, "styleclip-fs3-ffhq.npy"])
def test_real_domain_configs_hash_as_before(name, fs3):
    """RealDomain._identity's config: the old rule dropped the image folders, the description and
    an unset fs3 (the real domains' config_hash and method-cache key are made from it)."""
    from deltabench.real.domain import REAL_DOMAIN_SCHEMA, RealDomainConfig

    d = json.loads((resources.files("deltabench") / "configs" / "domains" / f"{name}.json").read_text())
    cfg = RealDomainConfig.from_dict({**d, "fs3": fs3})
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("images", "train_images", "description")}
    if old.get("fs3") is None:
        old.pop("fs3")
    assert REAL_DOMAIN_SCHEMA.hashed(cfg.to_dict()) == old


# --- (b) a new option with a default changes no hash; (c) a changed default does ----------------


def _extended(cls, schema: Schema, name: str, default, introduced):
    """``cls`` with one more option ``name`` (default ``default``), declared as introduced with
    ``introduced``: what a developer adding an option writes."""
    new_schema = Schema(
        f"{schema.name}+{name}+{default!r}",
        first=schema.first,
        added=[*schema.added, {name: introduced}],
        not_hashed=schema.not_hashed,
        follows=schema.follows,
    )
    fields = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(cls)]
    new = dataclasses.make_dataclass(
        cls.__name__, [*fields, (name, "int", dataclasses.field(default=default))], frozen=True
    )
    return versioned(new_schema)(new)


def _fs3_key(cfg) -> str:
    return confighash.digest(confighash.to_dict(cfg), 16)


def test_a_new_option_with_a_default_changes_no_hash():
    shipped = json.loads((SHIPPED / "styleclip-gd" / "fs3.json").read_text())["config"]
    new = _extended(FS3Config, FS3_SCHEMA, "new_knob", 7, 7)
    assert new.SCHEMA.version == FS3_SCHEMA.version + 1
    for kw in ({}, {"torgb": True}, {"n_images": 100, "protocol": "official"}):
        assert confighash.to_dict(new(**kw)) == FS3Config(**kw).to_dict()
        assert _fs3_key(new(**kw)) == _fs3_key(FS3Config(**kw))
    assert confighash.to_dict(new(torgb=True)) == shipped
    # A mapping config (the world's top level) likewise: the key is left out at its introduction value.
    s = Schema(
        "world+extra",
        first=WORLD_SCHEMA.first,
        added=[*WORLD_SCHEMA.added, {"extra": 0}],
        not_hashed=WORLD_SCHEMA.not_hashed,
    )
    d = load_world_config("synthfaces").to_dict()
    assert confighash.digest(s.hashed({**d, "extra": 0}), 16) == "b742fd84ba6a71f3"


def test_a_changed_default_or_a_set_value_changes_the_hash():
    # The option arrives with the old behaviour (7) but a new default (8): configs that take the
    # default now compute something else, so their hash must move.
    moved = _extended(FS3Config, FS3_SCHEMA, "moved_knob", 8, 7)
    assert _fs3_key(moved()) != _fs3_key(FS3Config())
    same = _extended(FS3Config, FS3_SCHEMA, "set_knob", 7, 7)
    assert _fs3_key(same(set_knob=9)) != _fs3_key(same())
    # A first-version option's default changed: hashed always, so the hash moves too.
    assert FS3Config(sigma=4.0).to_dict() != FS3Config().to_dict()
    # A world whose kind is set to another than the introduction value is another world.
    d = load_world_config("synthfaces-micro").to_dict()
    assert WorldConfig.from_dict({**d, "kind": "faces"}).hash == "f1d9256f2720cb60"
    assert WorldConfig.from_dict({**d, "kind": "church"}).hash != "f1d9256f2720cb60"


# --- (d) a forgotten declaration fails loudly ----------------------------------------------------


def test_an_undeclared_field_is_an_error_at_import():
    schema = Schema("test.undeclared", first=("a",))

    with pytest.raises(TypeError, match=r"\['b'\] are not declared in schema 'test.undeclared'"):

        @versioned(schema)
        @dataclasses.dataclass(frozen=True)
        class Config:
            a: int = 1
            b: int = 2

    with pytest.raises(TypeError, match=r"declares \['a'\], which are not fields"):

        @versioned(schema)
        @dataclasses.dataclass(frozen=True)
        class Other:
            pass


def test_an_undeclared_key_of_a_mapping_config_is_an_error():
    with pytest.raises(TypeError, match="not declared in schema 'world.stage'"):
        STAGE_SCHEMA.hashed({"component": "clip", "colour": 1})
    d = load_world_config("synthfaces-micro").to_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        WorldConfig.from_dict({**d, "colour": 1})


def test_bad_declarations_are_refused():
    with pytest.raises(TypeError, match="declared twice"):
        Schema("test.twice", first=("a",), added=[{"a": 0}])
    with pytest.raises(TypeError, match="adds no option"):
        Schema("test.empty", first=("a",), added=[{}])
    with pytest.raises(TypeError, match="both must be added options"):
        Schema("test.follows", first=("a",), added=[{"b": 0}], follows={"b": "a"})
    with pytest.raises(TypeError, match="schema 'deltaedit' is declared twice"):
        Schema("deltaedit", first=("a",))


def test_every_hashed_config_is_versioned():
    from deltabench.models.clip import ClipConfig
    from deltabench.models.encoder import EncoderConfig
    from deltabench.models.identity import IdentityConfig
    from deltabench.models.oracle import OracleConfig
    from deltabench.models.stylegan2 import GeneratorConfig
    from deltabench.world.train_clip import ClipTrainConfig
    from deltabench.world.train_encoder import EncoderTrainConfig
    from deltabench.world.train_generator import DistillConfig

    classes = (
        GeneratorConfig,
        DistillConfig,
        EncoderConfig,
        EncoderTrainConfig,
        ClipTrainConfig,
        ClipConfig,
        IdentityConfig,
        OracleConfig,
        FS3Config,
        LMConfig,
        DeltaEditConfig,
    )
    assert {c.SCHEMA.name for c in classes[:8]} == set(SECTION_SCHEMAS)
    for c in classes:
        assert isinstance(c.SCHEMA, Schema), c


# --- records carry their versions ----------------------------------------------------------------


def test_records_carry_versions_and_a_newer_one_is_refused():
    v = schema_versions()
    assert v["world"] == 2 and v["world.clip"] == 3 and v["world.generator.train"] == 2 and v["world.oracle"] == 1
    rec = confighash.stamp({"config": {"n_images": 6}}, FS3_SCHEMA.name)
    assert rec["schema"] == {"styleclip-gd.fs3": 4} and confighash.unstamped(rec) == {"config": {"n_images": 6}}
    confighash.check_record(rec, "fs3.json")
    confighash.check_record({"config": {}}, "fs3.json")  # written before versions: the config decides
    confighash.check_record({"schema": {"not-declared-here": 9}}, "fs3.json")
    with pytest.raises(ValueError, match=r"fs3.json was written by a newer deltabench .*styleclip-gd.fs3"):
        confighash.check_record({"schema": {"styleclip-gd.fs3": 5}}, "fs3.json")


def test_introduction_values_compare_by_kind():
    s = Schema(
        "test.values",
        first=(),
        added=[{"flag": False}, {"n": 0}, {"xs": ()}, {"opt": either(None, "a")}, {"extra": ABSENT}],
    )
    assert s.hashed({"flag": False, "n": 0.0, "xs": [], "opt": "a"}) == {}
    assert s.hashed({"flag": 0, "n": False, "xs": [1], "opt": "b", "extra": None}) == {
        "flag": 0,
        "n": False,
        "xs": [1],
        "opt": "b",
        "extra": None,
    }


def test_unit_ids_are_unchanged_by_the_unit_schema():
    """The run's unit id through UNIT_SCHEMA equals the literal key it replaced (strength contract 2)."""
    import hashlib
    import json
    from dataclasses import asdict
    from types import SimpleNamespace

    from deltabench.harness.store import unit_id
    from deltabench.prompts import Prompt

    cfg = SimpleNamespace(
        method_options={"deltaedit": {"beta": 0.03}},
        prompts=(Prompt("face", "smiling face"),),
        seed=3,
        images=8,
        batch=4,
        world="synthfaces-micro",
        world_hash="f1d9256f2720cb60",
        unjudged=(),  # no unjudged attribute (every world but church): the key is as before
    )
    old = {
        "method": "deltaedit",
        "options": {"beta": 0.03},
        "prompt": asdict(cfg.prompts[0]),
        "strength_scale": 2.0,
        "seed": 3,
        "images": 8,
        "batch": 4,
        "world": "synthfaces-micro",
        "world_hash": "f1d9256f2720cb60",
        "strength_contract": 2,
    }
    want = hashlib.sha256(json.dumps(old, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert unit_id(cfg, "deltaedit", 0, 2.0) == want
    assert unit_id(cfg, "deltaedit", 0, 1.0) != want
