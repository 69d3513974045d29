"""CLIP files as published (issue 22, item 4), identified by what they hold.

Random weights of a tiny open_clip model (QuickGELU, as ViT-B-32-quickgelu) saved in every
published format: open_clip's safetensors without and with metadata (the two differ in size and
sha256), OpenAI's TorchScript archive (fp16, what ``clip.load`` downloads and the official
DeltaEdit code uses) and a torch state dict. Each loads to the same embeddings; the TorchScript
archive is read as tensors only (``torch.jit.load`` is never called, and a ``data.pkl`` that asks
for anything else is refused without running it); ``deltabench weights verify`` accepts a copy
with other metadata by its tensor names and shapes, never by its size.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
import zipfile

import pytest
import torch
from test_real_domains import RES, TINY_CLIP, _OpenAIStyleHolder, _register_tiny_clip

from deltabench import weights as W
from deltabench.checkpoints import CheckpointError
from deltabench.real import loaders

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    import open_clip
    import safetensors.torch as st

    d = tmp_path_factory.mktemp("clip-formats")
    _register_tiny_clip(d)
    torch.manual_seed(2)
    m = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    sd = {k: v.contiguous() for k, v in m.state_dict().items()}
    st.save_file(sd, str(d / "plain.safetensors"))
    st.save_file(sd, str(d / "meta.safetensors"), metadata={"format": "pt", "source": "re-saved with metadata"})
    torch.save(sd, d / "state.pt")
    half = open_clip.create_model(TINY_CLIP, pretrained=None).eval()
    half.load_state_dict(sd)
    half.half()  # OpenAI's release holds fp16 weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(_OpenAIStyleHolder(half), torch.zeros(1, dtype=torch.float16)).save(str(d / "ViT-B-32.pt"))
    return d, m


def test_every_published_format_loads_the_same_weights(clip_files, monkeypatch):
    d, m = clip_files
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: pytest.fail("torch.jit.load must not run"))
    assert (d / "plain.safetensors").stat().st_size != (d / "meta.safetensors").stat().st_size
    x = torch.rand(2, 3, RES, RES, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = loaders.load_open_clip(d / "state.pt", TINY_CLIP).encode_image(x)
    for name in ("plain.safetensors", "meta.safetensors"):
        assert torch.equal(loaders.load_open_clip(d / name, TINY_CLIP).encode_image(x), ref), name
    ts = loaders.torchscript_tensors(d / "ViT-B-32.pt")
    assert {k for k in ts if k not in m.state_dict()} == {"input_resolution", "context_length", "vocab_size"}
    assert all(
        ts[k].dtype == torch.float16 and torch.equal(ts[k], v.half())
        for k, v in m.state_dict().items()
        if v.is_floating_point()
    )
    half_ref = m.state_dict()
    clip = loaders.load_open_clip(d / "ViT-B-32.pt", TINY_CLIP)
    assert all(torch.equal(clip.clip.state_dict()[k], v.half().float()) for k, v in half_ref.items())
    # a file's name or suffix does not decide how it is read: a safetensors file named .pt loads too
    (d / "renamed.pt").write_bytes((d / "meta.safetensors").read_bytes())
    assert torch.equal(loaders.load_open_clip(d / "renamed.pt", TINY_CLIP).encode_image(x), ref)


def test_torchscript_reader_runs_nothing_from_the_archive(clip_files, tmp_path):
    d, _ = clip_files
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    src = zipfile.ZipFile(d / "ViT-B-32.pt")
    bad = tmp_path / "evil.pt"
    with zipfile.ZipFile(bad, "w") as z:
        for n in src.namelist():
            z.writestr(n, pickle.dumps(Payload(), protocol=2) if n.endswith("/data.pkl") else src.read(n))
    with pytest.raises(CheckpointError, match=r"asks for '(posix|os)\.system'.*refused"):
        loaders.load_open_clip(bad, TINY_CLIP)
    assert not marker.exists()
    # a damaged archive: a tensor record cut short
    cut = tmp_path / "cut.pt"
    with zipfile.ZipFile(cut, "w") as z:
        for n in src.namelist():
            z.writestr(n, src.read(n)[:3] if n.endswith("/data/0") else src.read(n))
    with pytest.raises(CheckpointError, match="a damaged archive"):
        loaders.torchscript_tensors(cut)


def test_content_identifies_clip_files_by_tensor_names_and_shapes(clip_files):
    d, _ = clip_files
    for name in ("plain.safetensors", "meta.safetensors", "ViT-B-32.pt", "state.pt"):
        assert loaders.clip_content_mismatch(d / name, TINY_CLIP) == "", name
    why = loaders.clip_content_mismatch(d / "meta.safetensors", "ViT-B-32-quickgelu")
    assert "not a state dict of open_clip 'ViT-B-32-quickgelu'" in why and "missing keys" in why


def _registry(tmp_path, d, **extra):
    plain = d / "plain.safetensors"
    reg = {
        "format": 1,
        "files": [
            {
                "name": "clip.safetensors",
                "url": "https://example.invalid/clip.safetensors",
                "page": "https://example.invalid",
                "source": "test",
                "format": "safetensors",
                "licence": "MIT",
                "sha256": hashlib.sha256(plain.read_bytes()).hexdigest(),
                "size": plain.stat().st_size,
                "content": f"open_clip:{TINY_CLIP}",
                "alternatives": ["openai.pt"],
                "used_by": {"toy": "clip"},
                **extra,
            },
            {
                "name": "openai.pt",
                "url": "https://example.invalid/openai.pt",
                "page": "https://example.invalid",
                "source": "OpenAI: TorchScript",
                "format": "TorchScript",
                "licence": "MIT",
                "content": f"open_clip:{TINY_CLIP}",
            },
        ],
    }
    p = tmp_path / "registry.json"
    p.write_text(json.dumps(reg))
    return p


def test_verify_accepts_other_metadata_by_content_never_by_size(clip_files, tmp_path):
    d, _ = clip_files
    reg = _registry(tmp_path, d)
    w = tmp_path / "w"
    w.mkdir()
    (w / "clip.safetensors").write_bytes((d / "plain.safetensors").read_bytes())
    assert W.verify("clip.safetensors", w, reg).status == "ok"
    (w / "clip.safetensors.sha256").unlink()
    # the same weights with metadata: another size and sha256, the same tensors
    (w / "clip.safetensors").write_bytes((d / "meta.safetensors").read_bytes())
    assert W.path_of("clip.safetensors", w, reg) == w / "clip.safetensors"  # not refused by size
    res = W.verify("clip.safetensors", w, reg)
    assert res.ok and res.status == "same tensors" and "not the published bytes" in res.message
    assert (w / "clip.safetensors.sha256").read_text().split()[0] == hashlib.sha256(
        (d / "meta.safetensors").read_bytes()
    ).hexdigest()
    assert W.fetch("clip.safetensors", w, reg=reg, log=lambda m: None) == w / "clip.safetensors"  # kept, no download
    # changed after it was recorded: caught
    (w / "clip.safetensors").write_bytes((d / "meta.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    res = W.verify("clip.safetensors", w, reg)
    assert not res.ok and "differs from the one recorded" in res.message
    # another model's tensors: refused, saying why
    (w / "clip.safetensors.sha256").unlink()
    import safetensors.torch as st

    st.save_file({"visual.proj": torch.zeros(3, 3)}, str(w / "clip.safetensors"))
    res = W.verify("clip.safetensors", w, reg)
    assert res.status == "sha256 mismatch" and "nor does it hold the expected tensors" in res.message
    assert not (w / "clip.safetensors.sha256").exists()


def test_a_config_naming_the_safetensors_finds_openai_archive(clip_files, tmp_path):
    d, _ = clip_files
    reg = _registry(tmp_path, d)
    w = tmp_path / "w"
    w.mkdir()
    with pytest.raises(W.MissingWeightsError, match=r"clip\.safetensors not found.*or use openai\.pt \(OpenAI\)"):
        W.path_of("clip.safetensors", w, reg, alternatives=True)
    (w / "openai.pt").write_bytes((d / "ViT-B-32.pt").read_bytes())
    assert W.path_of("clip.safetensors", w, reg, alternatives=True) == w / "openai.pt"
    with pytest.raises(W.MissingWeightsError):
        W.path_of("clip.safetensors", w, reg)  # only where the caller reads alternatives
    with pytest.warns(UserWarning, match="no sha256 is published for openai.pt"):
        assert W.verify("openai.pt", w, reg).status == "recorded"  # none published in this toy registry


def test_packaged_registry_declares_clip_content_and_alternative():
    reg = W.registry()
    st, oa = reg["ViT-B-32-quickgelu-openai.safetensors"], reg["ViT-B-32.pt"]
    assert st.content == oa.content == "open_clip:ViT-B-32-quickgelu"
    assert st.alternatives == ("ViT-B-32.pt",) and oa.sha256 == oa.url.split("/")[-2]
    with pytest.raises(ValueError, match="alternatives that are not other registry files"):
        W.Registry.from_dict(
            {
                "format": 1,
                "files": [
                    {
                        "name": "a.pt",
                        "url": "https://h/a",
                        "page": "p",
                        "source": "s",
                        "format": "f",
                        "licence": "l",
                        "alternatives": ["b.pt"],
                    }
                ],
            }
        )


def test_domain_resolves_the_alternative(clip_files, tmp_path, monkeypatch):
    """ffhq's config names open_clip's safetensors; OpenAI's ViT-B-32.pt in the weights folder
    serves in its place."""
    from deltabench.real.domain import resolve_weight

    d, _ = clip_files
    w = tmp_path / "w"
    w.mkdir()
    with pytest.raises(
        CheckpointError,
        match=r"deltabench weights fetch ViT-B-32-quickgelu-openai\.safetensors.*"
        r"or use ViT-B-32\.pt.*deltabench weights fetch ViT-B-32\.pt",
    ):
        resolve_weight("ViT-B-32-quickgelu-openai.safetensors", w)
    (w / "ViT-B-32.pt").write_bytes((d / "ViT-B-32.pt").read_bytes())
    assert resolve_weight("ViT-B-32-quickgelu-openai.safetensors", w) == w / "ViT-B-32.pt"
