"""Safe checkpoint loading: a malicious pickle is refused and its code never runs."""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path

import pytest
import torch

from deltabench.checkpoints import CheckpointError, safe_torch_load
from deltabench.models.stylegan2 import load_rosinality_checkpoint


class ExecPayload:
    """Unpickling calls ``exec`` on code that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class SystemPayload:
    """Unpickling runs a shell command that creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


PAYLOADS = {"exec": ExecPayload, "os.system": SystemPayload}
LAYOUTS = {
    # where the payload hides: top level, inside what looks like a rosinality checkpoint, and
    # inside an argparse.Namespace (the one class the rosinality loader allow-lists)
    "top": lambda p: p,
    "in_checkpoint": lambda p: {"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "latent_avg": p},
    "in_namespace": lambda p: {"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "args": argparse.Namespace(size=p)},
}
SAVERS = {
    "torch.save": lambda obj, f: torch.save(obj, f),
    "torch.save legacy": lambda obj, f: torch.save(obj, f, _use_new_zipfile_serialization=False),
    # a bare pickle at torch's protocol (2): the unpickler reaches the payload's GLOBAL
    "raw pickle": lambda obj, f: f.write_bytes(pickle.dumps(obj, protocol=2)),
}


def test_payload_is_real(tmp_path):
    """Control: without weights_only the payloads do run (so the tests below mean something)."""
    for name, cls in PAYLOADS.items():
        marker = tmp_path / f"ran-{name}"
        pickle.loads(pickle.dumps(cls(marker)))
        assert marker.exists(), name
    marker = tmp_path / "ran-torch"
    torch.save({"x": ExecPayload(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("saver", SAVERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path, payload, layout, saver):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    SAVERS[saver](LAYOUTS[layout](PAYLOADS[payload](marker)), path)
    with pytest.raises(CheckpointError) as e:
        safe_torch_load(path, "a test checkpoint", allow=[argparse.Namespace])
    msg = str(e.value)
    assert str(path) in msg and "weights_only=True" in msg and "refused" in msg and "arbitrary code" in msg
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*refused.*weights_only=True.*rosinality"):
        load_rosinality_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:.*pickle protocol")
def test_newer_pickle_protocol_is_refused_too(tmp_path):
    """Protocol 5 stops the weights-only unpickler at its first FRAME opcode, before any
    GLOBAL: refused as unreadable, and still nothing runs."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil5.pt"
    path.write_bytes(pickle.dumps({"g_ema": ExecPayload(marker)}, protocol=5))
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}.*not a torch checkpoint"):
        load_rosinality_checkpoint(path)
    assert not marker.exists()


def test_plain_tensor_dict_loads(tmp_path):
    sd = {"a": torch.randn(3, 4), "b": {"c": torch.arange(5)}, "n": 3, "s": "text", "t": (1.5, None)}
    torch.save(sd, tmp_path / "ok.pt")
    out = safe_torch_load(tmp_path / "ok.pt", "a test checkpoint")
    assert torch.equal(out["a"], sd["a"]) and torch.equal(out["b"]["c"], sd["b"]["c"])
    assert out["n"] == 3 and out["s"] == "text" and out["t"] == (1.5, None)


def test_allow_list_is_explicit(tmp_path):
    """argparse.Namespace loads only where a format allow-lists it."""
    torch.save({"args": argparse.Namespace(size=256, latent=512)}, tmp_path / "ns.pt")
    with pytest.raises(CheckpointError, match=r"ns\.pt.*refused.*Namespace"):
        safe_torch_load(tmp_path / "ns.pt", "a test checkpoint")
    out = safe_torch_load(tmp_path / "ns.pt", "a test checkpoint", allow=[argparse.Namespace])
    assert out["args"].size == 256 and out["args"].latent == 512


def test_truncated_and_missing_files(tmp_path):
    torch.save({"w": torch.randn(64, 64)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    for n in (len(data) // 2, 100, 0):
        (tmp_path / "cut.pt").write_bytes(data[:n])
        with pytest.raises(CheckpointError, match=r"cut\.pt.*corrupt.*a test checkpoint.*sha256"):
            safe_torch_load(tmp_path / "cut.pt", "a test checkpoint")
    with pytest.raises(CheckpointError, match=r"gone\.pt.*no such file.*deltabench weights fetch"):
        safe_torch_load(tmp_path / "gone.pt", "a test checkpoint")
