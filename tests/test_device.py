"""--device: every command runs where the user asks; a missing GPU is an error before any work."""

from __future__ import annotations

import json

import pytest
import torch

import deltabench
from deltabench.cli import main
from deltabench.utils import resolve_device

W = "synthfaces-micro"
TINY = {"deltaedit": {"config": {"n_generated": 48, "n_inverted": 8, "steps": 10, "batch": 8}}}


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device("CPU ") == torch.device("cpu")
    for bad in ("tpu", "gpu", "cuda:x"):
        with pytest.raises(ValueError, match="--device"):
            resolve_device(bad)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")  # under torchrun: each rank its local GPU
    assert resolve_device("auto") == torch.device("cuda", 1) == resolve_device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--methods", "deltaedit"],
        ["edit", "x.png", "--target", "smiling face"],
        ["train", "deltaedit"],
        ["fit", "styleclip-gd"],
        ["eval"],
        ["world", "card"],
        ["gap"],
    ],
)
def test_cuda_without_cuda_is_one_line_before_any_work(cache, tmp_path, capsys, monkeypatch, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.chdir(tmp_path)
    if command[0] == "edit":
        from PIL import Image

        Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(
        [*command, "--world", W, "--device", "cuda", *(["--out", str(tmp_path / "r")] if command[0] == "run" else [])]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "deltabench: error:" in err and "--device cuda" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_cpu_run_keeps_every_model_and_state_on_the_cpu(cache, tmp_path, monkeypatch):
    from deltabench.checkpoints import safe_torch_load
    from deltabench.domain import load_domain

    domain = load_domain(W, device=resolve_device("cpu"))
    models = [domain.generator, domain.encoder, domain.clip, domain.identity, domain.oracle]
    assert {p.device.type for m in models for p in [*m.parameters(), *m.buffers()]} == {"cpu"}
    df = deltabench.run(
        methods="deltaedit",
        world=W,
        images=2,
        limit=1,
        sweep=(1,),
        options=TINY,
        device="cpu",
        out=tmp_path / "r",
        references="none",
    )
    dev = df.attrs["manifest"]["device"]
    assert dev["device"] == "cpu" and dev["clip_precision"] == "fp32" and dev["name"] and dev["torch_threads"] >= 1
    (unit,) = list((tmp_path / "r" / "units").glob("*.pt"))
    state = safe_torch_load(unit, "a unit")

    def devices(x):
        if isinstance(x, torch.Tensor):
            return {x.device.type}
        if isinstance(x, dict):
            return set().union(*map(devices, x.values())) if x else set()
        if isinstance(x, (list, tuple)):
            return set().union(*map(devices, x)) if x else set()
        return set()

    assert devices(state["suite"]) == {"cpu"}
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["device"] == dev


def test_official_precision_is_fp16_clip_only_where_the_official_code_runs_it(micro_world):
    from deltabench.domain import SynthfacesDomain

    domain = SynthfacesDomain(micro_world)
    assert domain.set_precision("official") == "fp32"  # a world CLIP was trained in fp32; and this is a CPU
    with pytest.raises(ValueError, match="--precision"):
        domain.set_precision("bf16")
    x = micro_world.render(micro_world.sample_params(4, 1))
    ref = domain.clip.encode_image(x)
    domain.clip.half_precision()  # what "official" does to a real domain's CLIP on CUDA
    try:
        assert domain.clip.precision == "fp16"
        got = domain.clip.encode_image(x)
        assert got.dtype == torch.float32 and torch.allclose(got, ref, atol=2e-2)
        assert not torch.equal(got, ref)  # it really computed in fp16
    finally:
        domain.clip.clip.float()
    assert domain.clip.precision == "fp32"
