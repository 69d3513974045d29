"""The run's rooms (deltabench.harness), the one registry, the method contract and the one set
of run defaults (issue 23)."""

from __future__ import annotations

import json

import pytest
import torch
from test_runner import BASE

from deltabench.cli import build_parser, main


def test_a_finished_run_resumed_does_no_work_and_its_summary_needs_no_model(cache, tmp_path, monkeypatch):
    import deltabench.domain as domain_mod
    from deltabench import settings
    from deltabench.harness.summary import summarize
    from deltabench.methods import EditMethod
    from deltabench.prompts import Prompt
    from deltabench.runner import RunConfig

    out = tmp_path / "r"
    assert main([*BASE, "--out", str(out)]) == 0
    kept = [out / "results.csv", out / "summary.csv", out / "inputs.pt", *sorted((out / "units").iterdir())]
    before = {p: p.read_bytes() for p in kept}

    def refuse(*a, **k):
        raise AssertionError("a finished run resumed did work")

    calls = []
    monkeypatch.setattr(settings, "build_method", lambda *a, **k: calls.append(a) or refuse())
    monkeypatch.setattr(EditMethod, "fit", refuse)
    monkeypatch.setattr(domain_mod.WorldDomain, "test_images", refuse)
    assert main([*BASE, "--out", str(out)]) == 0
    assert calls == [] and {p: p.read_bytes() for p in kept} == before
    # the manifest records each method's strength knob and its value at every x k (kept on resume)
    strength = json.loads((out / "manifest.json").read_text())["strength"]["deltaedit"]
    assert strength["strength_name"] == "alpha" and set(strength["strength_for"]) == {"1.0", "2.0"}
    assert strength["strength_for"]["2.0"] == 2 * strength["strength_for"]["1.0"]

    # the summary from the saved states alone: no domain, no model
    monkeypatch.setattr(domain_mod, "load_domain", refuse)
    c = json.loads((out / "manifest.json").read_text())["config"]
    cfg = RunConfig(
        **{
            **c,
            "prompts": tuple(Prompt(**p) for p in c["prompts"]),
            "methods": tuple(c["methods"]),
            "sweep": tuple(c["sweep"]),
            "references": tuple(c["references"]),
        }
    )
    (out / "summary.csv").unlink()
    summarize(out, None, cfg)
    assert (out / "summary.csv").read_bytes() == before[out / "summary.csv"]


def test_one_registry_suggests_names_and_checks_base_classes():
    from deltabench.metrics.base import Metric
    from deltabench.registry import DOMAINS, METHODS, METRICS, REFERENCES, Registry

    with pytest.raises(ValueError, match=r"unknown method 'deltaedt' \(did you mean 'deltaedit'"):
        METHODS.expand("deltaedt")
    with pytest.raises(ValueError, match="did you mean 'psnr'"):
        METRICS.get("psnrr")
    with pytest.raises(ValueError, match="not a subclass of deltabench.metrics.base.Metric"):
        Registry("metric", "deltabench.metrics.base:Metric", None, {"x": "deltabench.registry:Registry"}).get("x")
    assert all(issubclass(METRICS.get(k), Metric) and METRICS.get(k).key == k for k in METRICS.names())
    assert [REFERENCES.get(n).kind for n in REFERENCES.names()] == ["reference", "reference"]
    assert METHODS.get("deltaedit").kind == "method" and DOMAINS.names()[-1] == "world"
    assert METHODS.group == "deltabench.methods" and METRICS.group == "deltabench.metrics"


def test_metric_states_merge_and_compute_without_their_models():
    from deltabench.metrics.fid import KernelDistance
    from deltabench.metrics.suite import MetricSuite

    torch.manual_seed(0)
    k = KernelDistance(lambda x: x, "f", subset_size=5, n_subsets=7, seed=3)
    k.update(real=torch.randn(6, 4), fake=torch.randn(6, 4) + 1)
    saved = MetricSuite.__new__(MetricSuite)
    saved.metrics = {"kid": k}
    back = MetricSuite.from_state(saved.state_dict(), seed=3)
    assert back.metrics["kid"].features is None  # no feature network
    # KID's own subset settings come from its defaults; the seed from the run
    ref = KernelDistance(None, "f", seed=3)
    ref.load_state_dict(k.state_dict())
    assert back.compute() == {"kid": ref.compute()}
    assert back.merge(MetricSuite.from_state(saved.state_dict(), seed=3)).metrics["kid"].real_feats.__len__() == 2


def test_edit_takes_images_in_the_contract_and_old_methods_still_work():
    from deltabench.methods import EditMethod

    class Old(EditMethod):  # a plugin written before images= was in the contract
        name = "old"

        def edit(self, w_plus, source, target, strength=None):
            return [w_plus * 2]

    m = Old(None, ".")
    assert m.edit(torch.ones(1), "a", "b", 1.0, images=torch.zeros(1))[0].item() == 2
    assert m.describe_strength((0.5, 1.0)) == {
        "space": "S",
        "strength_name": "alpha",
        "strength_for": {"0.5": 0.5, "1.0": 1.0},
    }
    from deltaedit.method import DeltaEdit

    assert "styleclip-gd" in DeltaEdit.requires  # it reads StyleCLIP-GD's fs3: declared
    with pytest.raises(ValueError, match="does not declare it in requires"):
        m.artefact_dir("styleclip-gd")


def test_one_default_for_every_run_setting():
    import inspect

    import deltabench
    from deltabench import api
    from deltabench.harness.config import RUN_DEFAULTS, RunConfig

    args = build_parser().parse_args(["run"])
    sig = inspect.signature(api.run).parameters
    for key in ("images", "seed", "batch", "world", "references"):
        assert getattr(args, key) == sig[key].default == getattr(RUN_DEFAULTS, key), key
    assert RunConfig(methods=("x",)).images == RUN_DEFAULTS.images
    assert tuple(float(s) for s in args.sweep.split(",")) == tuple(sig["sweep"].default) == RunConfig(("x",)).sweep
    assert args.methods == RUN_DEFAULTS.methods and ",".join(sig["methods"].default) == RUN_DEFAULTS.methods
    import deltabench.harness

    assert callable(deltabench.run)
