"""The domain contract (deltabench.domainbase): declared once, checked at load, never probed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import deltabench
from deltabench.domainbase import (
    CAPABILITIES,
    OPTIONAL,
    REQUIRED,
    ClipTextImage,
    DomainBase,
    DomainContractError,
    check_domain,
)

ROOT = Path(deltabench.__file__).resolve().parents[1]
PACKAGES = ("deltabench", "deltaedit", "baselines")


class _Complete(DomainBase):
    """Every required member, as a plain value or method: what a third-party domain writes."""

    name, kind, resolution, generator, encoder, clip, templates = "x", "test", 32, None, None, None, ("{}",)
    key = config_hash = "0"
    device = "cpu"

    def text_embedding(self, text): ...
    def encode_clip(self, images, official_input=False): ...
    def clip_image(self, images, batch=None): ...
    def sample_w_plus(self, n, seed): ...
    def test_images(self, n, seed): ...
    def train_images(self, n, seed): ...
    def invert(self, images, batch=1): ...
    def prompt_problems(self, text): ...
    def describe(self): ...


def test_a_complete_domain_passes_and_has_every_optional_default():
    d = check_domain(_Complete())
    for m in OPTIONAL:
        assert hasattr(DomainBase, m), m  # each optional member has its default on the base
    assert not any(hasattr(DomainBase, m) for m in REQUIRED)  # a required one has none to fall back on
    assert d.identity is None and d.oracle is None and d.attributes == () and dict(d.method_defaults) == {}
    assert d.capabilities == frozenset() and not d.has("identity")
    assert d.all_edit_prompts() == () and d.loss_identity() is None
    with pytest.raises(ValueError, match="unknown domain capability 'ids'"):
        d.has("ids")


@pytest.mark.parametrize("member", ["invert", "describe", "key", "encoder"])
def test_a_domain_lacking_a_required_member_fails_naming_it(member):
    ns = {k: v for k, v in vars(_Complete).items() if k != member}
    broken = type("Broken", (DomainBase,), ns)()
    with pytest.raises(DomainContractError, match=rf"lacks the required member\(s\) \['{member}'\]"):
        check_domain(broken)


def test_not_a_domain_at_all_is_refused():
    with pytest.raises(DomainContractError, match="must subclass deltabench.domainbase.DomainBase"):
        check_domain(object())


def test_load_domain_checks_the_contract(micro_root, monkeypatch):
    from deltabench.domain import WorldDomain, load_domain

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    assert load_domain("synthfaces-micro").has("identity")
    monkeypatch.delattr(WorldDomain, "describe")
    monkeypatch.delattr(ClipTextImage, "describe", raising=False)
    with pytest.raises(DomainContractError, match=r"\['describe'\]"):
        load_domain("synthfaces-micro")


def test_capabilities_of_a_faces_world(micro_world):
    from deltabench.domain import WorldDomain

    d = check_domain(WorldDomain(micro_world))
    assert d.capabilities == set(CAPABILITIES)  # identity, ground truth, renderer, FID, defaults, prompts
    assert d.kind == "synthfaces" and d.neutral == "face" and d.fid_feature_name == "oracle"
    assert d.loss_identity() is d.identity is micro_world.identity


def _modules():
    from importgraph import modules

    yield from modules(ROOT, PACKAGES)


def _imported(mod: str, f: Path):
    """Every module name ``f`` imports (the one walker, tests/importgraph.py)."""
    from importgraph import imported

    yield from (name for name, _ in imported(mod, f))


# A world kind's own modules, and the compatibility names of the faces ones.
KIND_PACKAGES = ("deltabench.world.faces", "deltabench.world.church")
FACE_ALIASES = ("deltabench.world.attributes", "deltabench.world.renderer", "deltabench.world.captions")


def _owner(name: str) -> str | None:
    for p in KIND_PACKAGES:
        if name == p or name.startswith(p + "."):
            return p
    return "deltabench.world.faces" if name in FACE_ALIASES else None


def test_no_generic_module_imports_a_world_kinds_own_modules():
    """Generic code reaches a kind through deltabench.world.kind.get_kind only."""
    seen, bad = 0, []
    for mod, f in _modules():
        mine = _owner(mod)
        for name in _imported(mod, f):
            owner = _owner(name)
            if owner is not None:
                seen += 1
                if owner != mine:
                    bad.append(f"{mod} imports {name}")
    assert seen > 5  # the walk finds the kinds' own imports, so it would find a stray one
    assert not bad, bad


def test_the_import_walk_catches_a_stray_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from deltabench.world import captions\n    from .faces.renderer import render\n")
    names = set(_imported("deltabench.world.x", f))
    assert {"deltabench.world.captions", "deltabench.world.faces.renderer"} <= names
    assert _owner("deltabench.world.captions") == _owner("deltabench.world.faces.renderer") == "deltabench.world.faces"


def test_nothing_outside_a_domain_probes_it_with_getattr_or_hasattr():
    """The contract's members are read as members: no getattr(domain, X, default) / hasattr(domain, X)."""
    domainish = {"domain", "dom", "d"}
    bad = []
    for mod, f in _modules():
        if mod in ("deltabench.domainbase",):
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
            ):
                a = node.args[0] if node.args else None
                name = a.id if isinstance(a, ast.Name) else (a.attr if isinstance(a, ast.Attribute) else None)
                if name in domainish:
                    bad.append(f"{mod}:{node.lineno} {ast.unparse(node)}")
    assert not bad, bad
