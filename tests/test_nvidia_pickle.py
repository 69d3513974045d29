"""NVIDIA network pickles read without running them, and converted exactly.

The fixtures (tests/fixtures/nvidia/, README.md there) are random-weight generators that NVIDIA's
own stylegan2-ada-pytorch and stylegan3 code built and pickled as their training loops do, with
NVIDIA's own images for fixed z at truncation 1.0 and 0.7 (noise_mode='const', fp32). deltabench's
converted generator must give the same images (max abs difference <= 1e-4).
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from deltabench.checkpoints import CheckpointError
from deltabench.models.stylegan2 import (
    GeneratorConfig,
    StyleGAN2,
    load_rosinality_checkpoint,
    save_rosinality_checkpoint,
)
from deltabench.real.nvidia import is_nvidia_pickle, load_nvidia_generator, load_stylegan2, read_network_pickle

FIX = Path(__file__).parent / "fixtures" / "nvidia"
SIZES = {"ada-32": 32, "ada-16-clamp": 16, "sg3-stylegan2-8": 8}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_same_images_as_nvidia(name):
    G, w_avg, info = load_nvidia_generator(FIX / f"{name}.pkl")
    ref = np.load(FIX / f"{name}.npz")
    z = torch.from_numpy(ref["z"])
    assert G.size == SIZES[name] == info["img_resolution"] and info["format"] == "nvidia" and info["w_avg"]
    assert G.n_latent == 2 * int(np.log2(G.size)) - 2 and len(G.slayout) == 3 * int(np.log2(G.size)) - 4
    for k, psi in enumerate(ref["psi"]):
        with torch.no_grad():
            img = G(z, truncation=float(psi), w_avg=w_avg[None])
        diff = float((img - torch.from_numpy(ref["images"][k])).abs().max())
        assert diff <= 1e-4, (name, psi, diff)
    # truncation moves the image (w_avg is real, not zeros), and the S-space path gives the same image
    assert float((torch.from_numpy(ref["images"][0] - ref["images"][1])).abs().max()) > 0.05
    with torch.no_grad():
        w = G.mapping(z)
        assert torch.allclose(G.synthesis_from_styles(G.styles(w)), G.synthesis(w), atol=1e-6)


def test_conv_clamp_is_read_and_matters():
    G, w_avg, info = load_nvidia_generator(FIX / "ada-16-clamp.pkl")
    assert G.cfg.conv_clamp == 1.0 == info["conv_clamp"] and info["num_fp16_res"] == 0
    ref = np.load(FIX / "ada-16-clamp.npz")
    z = torch.from_numpy(ref["z"])
    unclamped = StyleGAN2(GeneratorConfig(**{**G.cfg.__dict__, "conv_clamp": None}))
    unclamped.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert float((unclamped(z) - torch.from_numpy(ref["images"][0])).abs().max()) > 1e-2
    # no clamp leaves rosinality configs (and world config hashes) as they were
    assert "conv_clamp" not in GeneratorConfig(size=8).to_dict()
    assert GeneratorConfig.from_dict(G.cfg.to_dict()) == G.cfg


def test_full_snapshot_and_generic_loader(tmp_path):
    data = read_network_pickle(FIX / "ada-32.pkl")
    assert sorted(data) == ["D", "G", "G_ema", "augment_pipe", "training_set_kwargs"]
    assert data["G_ema"].class_name == "Generator" and data["D"].class_name == "Discriminator"
    G, latent_avg, info = load_stylegan2(FIX / "ada-32.pkl")
    assert info["format"] == "nvidia" and latent_avg.shape == (8,)
    assert torch.equal(
        latent_avg, read_network_pickle(FIX / "ada-32.pkl")["G_ema"].child("mapping").state["_buffers"]["w_avg"]
    )
    # 'G' (the training generator) converts too
    G_train, _, _ = load_nvidia_generator(FIX / "ada-32.pkl", key="G")
    assert G_train.size == 32
    with pytest.raises(CheckpointError, match=r"no 'G_nope' entry; found \['D', 'G', 'G_ema'"):
        load_nvidia_generator(FIX / "ada-32.pkl", key="G_nope")
    # rosinality files go the other way, unchanged
    torch.manual_seed(0)
    R = StyleGAN2(GeneratorConfig(size=8, style_dim=8, n_mlp=1, channels={4: 4, 8: 4})).eval()
    save_rosinality_checkpoint(tmp_path / "g.pt", R, torch.zeros(8))
    assert not is_nvidia_pickle(tmp_path / "g.pt") and is_nvidia_pickle(FIX / "ada-32.pkl")
    G2, _, info2 = load_stylegan2(tmp_path / "g.pt")
    G3, _ = load_rosinality_checkpoint(tmp_path / "g.pt")
    assert info2 == {"format": "rosinality"} and G2.cfg == G3.cfg and G2.cfg.conv_clamp is None
    z = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.equal(G2(z), R(z))


@pytest.mark.parametrize(
    "name, message",
    [
        ("conditional", r"conditional.pkl: a conditional generator \(c_dim=3"),
        ("stylegan3-t", r"stylegan3-t.pkl: a StyleGAN3 \(alias-free\) generator"),
        ("orig-architecture", r"synthesis architecture 'orig'"),
    ],
)
def test_generators_deltabench_cannot_represent_are_refused(name, message):
    with pytest.raises(CheckpointError, match=message) as e:
        load_nvidia_generator(FIX / f"{name}.pkl")
    assert "\n" not in str(e.value)


# -- nothing in a pickle runs --------------------------------------------------------------------


class _Evil:
    """Unpickling it calls ``fn(*args)``, which would create the marker file."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _payloads(marker: Path):
    import builtins
    import os

    return {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.open": _Evil(builtins.open, str(marker), "w"),
        "builtins.eval": _Evil(builtins.eval, f"open({str(marker)!r}, 'w')"),
        "builtins.exec": _Evil(builtins.exec, f"open({str(marker)!r}, 'w')"),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "builtins.eval", "builtins.exec"])
def test_malicious_pickle_is_refused_and_leaves_no_trace(tmp_path, kind):
    marker = tmp_path / "pwned"
    evil = _payloads(marker)[kind]
    path = tmp_path / "network-snapshot-000000.pkl"
    # hidden in a real snapshot's dict, next to a genuine generator
    data = {"G_ema": None, "training_set_kwargs": {"x": evil}}
    path.write_bytes(pickle.dumps(data, protocol=3))
    with pytest.raises(CheckpointError) as e:
        load_stylegan2(path)
    msg = str(e.value)
    asked = {
        "os.system": ("posix.system", "nt.system"),
        "builtins.open": ("io.open", "builtins.open"),
        "builtins.eval": ("builtins.eval",),
        "builtins.exec": ("builtins.exec",),
    }[kind]
    assert "refused: the pickle asks for" in msg and any(a in msg for a in asked) and "\n" not in msg
    assert "nothing from the file was run" in msg
    assert not marker.exists()


def test_embedded_module_source_is_never_executed(tmp_path, monkeypatch):
    """A pickle in NVIDIA's persistence format whose module_src would create the marker: the
    record is read, the source ignored, and the file refused as not a generator."""
    marker = tmp_path / "pwned"

    def _reconstruct_persistent_obj(meta):  # stands in for NVIDIA's (never called here)
        raise AssertionError("not called when loading")

    fake = types.ModuleType("torch_utils.persistence")
    fake._reconstruct_persistent_obj = _reconstruct_persistent_obj
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    monkeypatch.setitem(sys.modules, "torch_utils", types.ModuleType("torch_utils"))
    monkeypatch.setitem(sys.modules, "torch_utils.persistence", fake)

    class Net:
        def __reduce__(self):
            meta = dict(
                type="class",
                version=6,
                class_name="Generator",
                module_src=f"open({str(marker)!r}, 'w')\nclass Generator: pass\n",
                state={"c_dim": 0, "_modules": {}, "_parameters": {}, "_buffers": {}},
            )
            return (_reconstruct_persistent_obj, (meta,))

    path = tmp_path / "evil-src.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Net()}))
    with pytest.raises(CheckpointError, match=r"G_ema.synthesis is a NoneType, expected StyleGAN2's SynthesisNetwork"):
        load_nvidia_generator(path)
    assert not marker.exists()


def test_real_snapshot_with_hostile_module_src_loads_without_running_it(tmp_path, monkeypatch):
    """The fixture's placeholder source swapped for code that would create the marker (NVIDIA's
    loader execs module_src): deltabench converts the generator and the code never runs."""
    monkeypatch.chdir(tmp_path)
    blob = (FIX / "ada-16-clamp.pkl").read_bytes()
    placeholder = "# NVIDIA module source removed from this deltabench test fixture (never read); see README.md\n"
    hostile = "open('pwned', 'w')\n"
    hostile = hostile + "#" * (len(placeholder) - len(hostile))
    assert blob.count(placeholder.encode()) == 1
    (tmp_path / "hostile.pkl").write_bytes(blob.replace(placeholder.encode(), hostile.encode()))
    G, w_avg, _ = load_nvidia_generator(tmp_path / "hostile.pkl")
    ref = np.load(FIX / "ada-16-clamp.npz")
    with torch.no_grad():
        img = G(torch.from_numpy(ref["z"]), truncation=0.7, w_avg=w_avg[None])
    assert float((img - torch.from_numpy(ref["images"][1])).abs().max()) <= 1e-4
    assert not (tmp_path / "pwned").exists()


def test_damaged_and_foreign_files(tmp_path):
    p = tmp_path / "cut.pkl"
    p.write_bytes((FIX / "sg3-stylegan2-8.pkl").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cut.pkl: cannot read it as an NVIDIA StyleGAN2 network pickle"):
        load_nvidia_generator(p)
    with pytest.raises(CheckpointError, match="no such file"):
        load_nvidia_generator(tmp_path / "missing.pkl")
    tf = tmp_path / "tf.pkl"  # what NVIDIA's TensorFlow pickles ask for first (legacy.py _LegacyUnpickler)
    tf.write_bytes(b"\x80\x02cdnnlib.tflib.network\nNetwork\n)\x81q\x00.")
    with pytest.raises(CheckpointError, match=r"a TensorFlow StyleGAN/StyleGAN2 pickle .* legacy.py"):
        load_nvidia_generator(tf)


def test_fixtures_hold_no_nvidia_source():
    for f in FIX.glob("*.pkl"):
        blob = f.read_bytes()
        assert b"Copyright" not in blob and b"def forward" not in blob and b"import torch" not in blob, f.name
        assert b"NVIDIA module source removed" in blob, f.name
