"""Attributes the oracle cannot read on a world's generated images (the world config's
``benchmark.unjudged``) are left out of disentanglement, and a run records it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from deltabench.metrics.attributes import Disentanglement


def test_disentanglement_leaves_out_the_unjudged_columns():
    src = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    ed = torch.tensor([[5, 1, 9, 3], [5, 7, 2, 3]])  # column 0 is the edited attribute
    every = Disentanglement()
    assert every.update(ed, src, 0).tolist() == pytest.approx([2 / 3, 2 / 3])
    skip2 = Disentanglement()
    assert skip2.update(ed, src, 0, skip=[2]).tolist() == pytest.approx([1.0, 0.5])
    assert skip2.compute() == pytest.approx(0.75) and every.compute() == pytest.approx(2 / 3)


def test_church_declares_roof_shape_and_windows_unjudged():
    """The shipped church config names them with the card's numbers; the world hash ignores it."""
    from pathlib import Path

    import deltabench
    from deltabench.world.catalog import load_world_config

    church = json.loads((Path(deltabench.__file__).parent / "configs" / "worlds" / "church.json").read_text())
    assert set(church["benchmark"]["unjudged"]) == {"roof_shape", "windows"}
    assert "0.55" in church["benchmark"]["unjudged"]["roof_shape"]
    assert load_world_config("church").hash == "9ce85555e1d2947a"  # the shipped world's hash, unchanged


def test_a_run_leaves_them_out_and_says_so(micro_root, monkeypatch, tmp_path):
    """On synthfaces-micro with hair colour declared unjudged: every row's disentanglement is over
    the other attributes only, the unit ids change (a resumed run recomputes), the manifest and the
    table say which attribute was left out."""
    import deltabench
    from deltabench import domain as domain_mod
    from deltabench.harness.config import RunConfig
    from deltabench.harness.store import unit_id

    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    real = domain_mod.load_domain

    def with_unjudged(*a, **k):
        d = real(*a, **k)
        d.unjudged = {"hair_color": "a stated measurement"}
        return d

    opts = {"deltaedit": {"config": {"n_generated": 48, "n_inverted": 8, "steps": 10, "batch": 8}}}
    common = dict(methods="deltaedit", world="synthfaces-micro", images=4, sweep=(1,), options=opts, batch=4)
    torch.set_num_threads(1)
    deltabench.run(**common, out=tmp_path / "plain", references="none", limit=2)
    monkeypatch.setattr(domain_mod, "load_domain", with_unjudged)
    deltabench.run(**common, out=tmp_path / "skip", references="none", limit=2)
    man = json.loads((tmp_path / "skip" / "manifest.json").read_text())
    assert man["config"]["unjudged"] == ["hair_color"] and man["unjudged"] == {"hair_color": "a stated measurement"}
    assert "unjudged" not in json.loads((tmp_path / "plain" / "manifest.json").read_text())["config"]
    import pandas as pd

    a = pd.read_csv(tmp_path / "plain" / "results.csv").sort_values(["prompt_index", "image_index"])
    b = pd.read_csv(tmp_path / "skip" / "results.csv").sort_values(["prompt_index", "image_index"])
    assert a["manipulation_accuracy"].equals(b["manipulation_accuracy"])  # the same edits
    n_attr = len(real("synthfaces-micro").attributes)
    # Prompt 0 edits hair colour itself: nothing more is left out. Prompt 1 (hair length): the kept
    # fraction is over the n - 2 attributes other than hair length and hair colour.
    p0, p1 = (b["prompt_index"] == 0).to_numpy(), (b["prompt_index"] == 1).to_numpy()
    assert (a["disentanglement"].to_numpy()[p0] == b["disentanglement"].to_numpy()[p0]).all()
    assert ((b["disentanglement"].to_numpy()[p1] * (n_attr - 2)).round(9) % 1 == 0).all()
    assert (
        "left out as unjudged (world card): hair_color (a stated measurement)"
        in (tmp_path / "skip" / "reports" / "table.md").read_text()
    )
    assert "unjudged" not in (tmp_path / "plain" / "reports" / "table.md").read_text()
    from deltabench.prompts import Prompt

    cfg = RunConfig(methods=("deltaedit",), world="synthfaces-micro", prompts=(Prompt("face", "face with glasses"),))
    assert unit_id(cfg, "deltaedit", 0, 1.0) != unit_id(replace(cfg, unjudged=("hair_color",)), "deltaedit", 0, 1.0)
