"""Defaults of ``deltabench run``: the domain's benchmark prompts and per-method budget options."""

from __future__ import annotations

from deltabench.domainbase import DomainBase
from deltabench.runner import default_prompts, with_domain_defaults
from deltabench.world.attributes import ATTRIBUTE_NAMES
from deltabench.world.captions import EDIT_PROMPTS


class _Domain(DomainBase):
    method_defaults = {"styleclip-op": {"config": {"steps": 100, "lr": 0.1}}}


def test_default_prompts_are_one_edit_per_attribute_and_all_means_all(micro_world):
    from deltabench.domain import WorldDomain

    domain = WorldDomain(micro_world)  # synthfaces-micro: the same benchmark prompts as synthfaces
    bench = default_prompts(domain)
    assert sorted(p.attribute for p in bench) == sorted(ATTRIBUTE_NAMES)
    assert len(default_prompts(domain, every=True)) == len(EDIT_PROMPTS) == 23


def test_user_options_override_domain_defaults_key_by_key():
    d = _Domain()
    assert with_domain_defaults({}, d, ["deltaedit", "styleclip-op"]) == {
        "styleclip-op": {"config": {"steps": 100, "lr": 0.1}}
    }
    got = with_domain_defaults(
        {"styleclip-op": {"config": {"steps": 300}}, "deltaedit": {"beta": 0.1}}, d, ["deltaedit", "styleclip-op"]
    )
    assert got == {"styleclip-op": {"config": {"steps": 300, "lr": 0.1}}, "deltaedit": {"beta": 0.1}}
    assert with_domain_defaults({}, DomainBase(), ["styleclip-op"]) == {}  # the contract's default: none
