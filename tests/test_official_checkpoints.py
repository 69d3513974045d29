"""The released method files load and compute what the official code computes.

No real weights exist here: each test builds a state dict with the official key names and
shapes (from modules laid out as the official ones are) and random weights, saves it as the
official scripts do, loads it through deltabench and compares with an independent reference
forward written from the official source:

- DeltaEdit ``delta_mapper.py`` (``Mapper``, ``DeltaMapper``), saved bare by ``scripts/train.py``;
- StyleCLIP ``mapper/latent_mappers.py`` (``LevelsMapper``) inside ``StyleCLIPMapper``, saved
  as ``{'state_dict', 'opts': vars(opts)}`` by ``mapper/training/coach.py``;
- StyleCLIP ``global_directions`` ``fs3.npy`` (``np.save``, rows in non-toRGB layer order).

The reference ops follow the official ``models/stylegan2/model.py`` ``EqualLinear``
(``F.linear(x, w * lr_mul / sqrt(in))``, bias ``* lr_mul``), ``PixelNorm`` (mean over dim 1)
and ``op/fused_act.py`` (``leaky_relu(x + bias, 0.2) * sqrt(2)``, bias on the last axis of 3-D
input).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import deltaedit
from baselines import gd, lm
from deltabench import sspace
from deltabench.checkpoints import CheckpointError
from deltabench.domainbase import DomainBase
from deltabench.models.stylegan2 import GeneratorConfig, build_generator
from deltaedit.mapper import DeltaMapper
from deltaedit.official import (
    convert_official_state_dict,
    from_official_state_dict,
    official_keys,
    to_official_state_dict,
)

LR_MUL = 0.01
# 64 px, 9 non-toRGB layers: coarse 3 x 16, medium 4 x 16, fine 16 + 8 = 24 (official structure).
SMALL = GeneratorConfig(size=64, style_dim=32, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 16, 64: 8})


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


@pytest.fixture(scope="module")
def small_layout():
    return build_generator(SMALL).slayout


@pytest.fixture(scope="module")
def layout_1024():
    with torch.device("meta"):
        return build_generator(GeneratorConfig(size=1024)).slayout


# -- modules laid out as the official ones (parameters only; the maths is in ref_* below) ------
class PixelNormSlot(nn.Module):
    """Holds index 0 of ``mapping`` as the official PixelNorm does (no parameters)."""


class EqualLinearParams(nn.Module):
    def __init__(self, i: int, o: int):
        super().__init__()
        # official init: randn(out, in) / lr_mul; biases are trained, so random here too
        self.weight = nn.Parameter(torch.randn(o, i) / LR_MUL)
        self.bias = nn.Parameter(torch.randn(o) * 10)


class OfficialMapper(nn.Module):
    def __init__(self, i: int, o: int, norm: bool = True):
        super().__init__()
        layers = (
            ([PixelNormSlot()] if norm else [])
            + [EqualLinearParams(i, o)]
            + [EqualLinearParams(o, o) for _ in range(3)]
        )
        self.mapping = nn.Sequential(*layers)


class OfficialDeltaMapper(nn.Module):
    """delta_mapper.DeltaMapper with its widths as arguments (1024 px: 512, 512, 2464, 1024)."""

    def __init__(self, wc: int, wm: int, wf: int, cond: int):
        super().__init__()
        for g, w in (("coarse", wc), ("medium", wm), ("fine", wf)):
            setattr(self, f"sm_{g}", OfficialMapper(w, w))
            setattr(self, f"cm_{g}", OfficialMapper(cond, w))
            setattr(self, f"fm_{g}", OfficialMapper(2 * w, w, norm=False))


class OfficialLevelsMapper(nn.Module):
    def __init__(self, dim: int, coarse=True, medium=True, fine=True):
        super().__init__()
        if coarse:
            self.course_mapping = OfficialMapper(dim, dim)
        if medium:
            self.medium_mapping = OfficialMapper(dim, dim)
        if fine:
            self.fine_mapping = OfficialMapper(dim, dim)


class OfficialStyleCLIPMapper(nn.Module):
    def __init__(self, dim: int, n_rgb: int, **groups):
        super().__init__()
        self.mapper = OfficialLevelsMapper(dim, **groups)
        self.decoder = nn.Module()  # a stand-in: the real one is the full StyleGAN2
        self.decoder.to_rgbs = nn.ModuleList(nn.Linear(1, 1) for _ in range(n_rgb))


# -- reference forwards ------------------------------------------------------------------------
def ref_pixel_norm(x):
    return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


def ref_equal_linear_lrelu(x, w, b):
    out = F.linear(x, w * (1 / math.sqrt(w.shape[1])) * LR_MUL)
    return F.leaky_relu(out + b * LR_MUL, 0.2) * math.sqrt(2)


def ref_mapper(sd: dict, prefix: str, x, norm: bool):
    if norm:
        x = ref_pixel_norm(x)
    first = 1 if norm else 0
    for i in range(first, first + 4):
        x = ref_equal_linear_lrelu(x, sd[f"{prefix}.mapping.{i}.weight"], sd[f"{prefix}.mapping.{i}.bias"])
    return x


def ref_delta_mapper(sd: dict, s, c, wc: int, wm: int):
    """delta_mapper.DeltaMapper.forward(sspace_feat, clip_feat)."""
    s_coarse = s[:, : 3 * wc].view(-1, 3, wc)
    s_medium = s[:, 3 * wc : 3 * wc + 4 * wm].view(-1, 4, wm)
    s_fine = s[:, 3 * wc + 4 * wm :]
    s_coarse = ref_mapper(sd, "sm_coarse", s_coarse, True)
    s_medium = ref_mapper(sd, "sm_medium", s_medium, True)
    s_fine = ref_mapper(sd, "sm_fine", s_fine, True)
    c_coarse, c_medium, c_fine = (ref_mapper(sd, f"cm_{g}", c, True) for g in ("coarse", "medium", "fine"))
    x_coarse = torch.cat([s_coarse, torch.stack([c_coarse] * 3, dim=1)], dim=2)
    x_medium = torch.cat([s_medium, torch.stack([c_medium] * 4, dim=1)], dim=2)
    x_fine = torch.cat([s_fine, c_fine], dim=1)
    x_coarse = ref_mapper(sd, "fm_coarse", x_coarse, False).reshape(-1, 3 * wc)
    x_medium = ref_mapper(sd, "fm_medium", x_medium, False).reshape(-1, 4 * wm)
    x_fine = ref_mapper(sd, "fm_fine", x_fine, False)
    return torch.cat([x_coarse, x_medium, x_fine], dim=1)


def ref_levels_mapper(sd: dict, x):
    """latent_mappers.LevelsMapper.forward on w [B, L, D] (sd: the StyleCLIPMapper state dict)."""
    out = []
    for name, part in (("course_mapping", x[:, :4]), ("medium_mapping", x[:, 4:8]), ("fine_mapping", x[:, 8:])):
        if f"mapper.{name}.mapping.1.weight" in sd:
            out.append(ref_mapper(sd, f"mapper.{name}", part, True))
        else:
            out.append(torch.zeros_like(part))
    return torch.cat(out, dim=1)


def _opts(**over) -> dict:
    """vars() of the official train_options (the fields that matter, plus a few others)."""
    ns = argparse.Namespace(
        exp_dir="../results/x",
        mapper_type="LevelsMapper",
        no_coarse_mapper=False,
        no_medium_mapper=False,
        no_fine_mapper=False,
        work_in_stylespace=False,
        batch_size=2,
        learning_rate=0.5,
        clip_lambda=1.0,
        latent_l2_lambda=0.8,
        id_lambda=0.1,
        stylegan_size=1024,
        checkpoint_path=None,
        description="face with glasses",
        device="cuda:0",
    )
    for k, v in over.items():
        setattr(ns, k, v)
    return vars(ns)


def _save_lm(path, dim=512, n_rgb=8, opts=None, **groups):
    net = OfficialStyleCLIPMapper(dim, n_rgb, **groups)
    # coach.py __get_save_dict: {'state_dict': self.net.state_dict(), 'opts': vars(self.opts)}
    torch.save({"state_dict": net.state_dict(), "opts": _opts(**(opts or {}))}, path)
    return net.state_dict()


@pytest.fixture(scope="module")
def small_deltaedit(tmp_path_factory, small_layout):
    torch.manual_seed(0)
    net = OfficialDeltaMapper(16, 16, 24, 2 * 12)
    path = tmp_path_factory.mktemp("de") / "net_face.pth"
    torch.save(net.state_dict(), path)  # scripts/train.py: torch.save(net.state_dict(), ...)
    return path, net.state_dict()


# -- DeltaEdit ---------------------------------------------------------------------------------
def test_official_deltamapper_keys_are_the_official_ones():
    got = list(OfficialDeltaMapper(4, 4, 8, 6).state_dict())
    assert official_keys() == got  # same names, same order
    assert "sm_coarse.mapping.1.weight" in got and "sm_coarse.mapping.0.weight" not in got
    assert "fm_fine.mapping.0.weight" in got and "fm_fine.mapping.4.weight" not in got


def test_deltaedit_checkpoint_edits_as_the_official_forward(small_deltaedit, small_layout):
    path, sd = small_deltaedit
    m = deltaedit.load_official_checkpoint(path, small_layout)
    assert isinstance(m, DeltaMapper) and m.s_dim == small_layout.total_non_torgb == 3 * 16 + 4 * 16 + 24
    assert m.clip_dim == 12
    g = torch.Generator().manual_seed(1)
    s, c = torch.randn(5, m.s_dim, generator=g), torch.randn(5, 24, generator=g)
    with torch.no_grad():
        ours, ref = m(s, c), ref_delta_mapper(sd, s, c, 16, 16)
    assert ours.shape == (5, m.s_dim)
    assert (ours - ref).abs().max() < 1e-5
    assert ref.abs().mean() > 1e-2  # not a trivially small output
    # and back: the official state dict again (the official inference can load it)
    back = to_official_state_dict(m)
    assert list(back) == official_keys() and all(torch.equal(back[k], sd[k]) for k in sd)


@pytest.mark.slow  # training or a many-file end-to-end check: minutes on 2 cores
def test_deltaedit_at_1024_is_the_official_model(layout_1024):
    torch.manual_seed(8)
    with torch.no_grad():
        off = OfficialDeltaMapper(512, 512, 2464, 1024).state_dict()  # the released net_face.pth's shapes
    assert sum(v.numel() for v in off.values()) == 82_760_576
    with torch.device("meta"):
        ours = DeltaMapper(layout_1024, clip_dim=512).state_dict()
    conv, clip_dim = convert_official_state_dict(off, layout_1024)
    assert clip_dim == 512 and set(conv) == set(ours)
    assert all(conv[k].shape == ours[k].shape for k in ours)
    m = from_official_state_dict(off, layout_1024, copy=False)  # as load_official_checkpoint does
    s, c = torch.randn(2, 6048), torch.randn(2, 1024)
    with torch.no_grad():
        assert (m(s, c) - ref_delta_mapper(off, s, c, 512, 512)).abs().max() < 1e-5


def test_deltaedit_wrong_kinds_are_clear_errors(tmp_path, small_deltaedit, small_layout, layout_1024):
    path, _ = small_deltaedit
    with pytest.raises(
        CheckpointError,
        match=r"expected coarse per-layer width 512, .*fine width 2464 .*found coarse per-layer width 16, .*fine width 24$",
    ):
        deltaedit.load_official_checkpoint(path, layout_1024)  # a 64 px file for the 1024 px generator
    lm_file = tmp_path / "afro.pt"
    _save_lm(lm_file, dim=8, n_rgb=1)
    with pytest.raises(CheckpointError, match=r"expected keys 'sm_coarse.*found keys 'opts', 'state_dict'.*StyleCLIP"):
        deltaedit.load_official_checkpoint(lm_file, small_layout)
    g = tmp_path / "g.pt"
    torch.save({"g_ema": {"x": torch.zeros(1)}, "latent_avg": torch.zeros(512)}, g)
    with pytest.raises(CheckpointError, match="generator"):
        deltaedit.load_official_checkpoint(g, small_layout)
    sd = dict(torch.load(path, weights_only=True))
    del sd["fm_fine.mapping.3.bias"]
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \['fm_fine.mapping.3.bias'\]"):
        deltaedit.load_official_checkpoint(tmp_path / "cut.pth", small_layout)
    (tmp_path / "torn.pth").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        deltaedit.load_official_checkpoint(tmp_path / "torn.pth", small_layout)
    unequal = build_generator(
        GeneratorConfig(size=64, style_dim=32, n_mlp=2, channels={4: 16, 8: 8, 16: 8, 32: 8, 64: 8})
    ).slayout
    with pytest.raises(CheckpointError, match=r"equal coarse layer widths.*\[16, 16, 8\]"):
        deltaedit.load_official_checkpoint(path, unequal)


# -- StyleCLIP-LM ------------------------------------------------------------------------------
def test_released_mapper_edits_as_the_official_levels_mapper(tmp_path):
    torch.manual_seed(2)
    sd = _save_lm(tmp_path / "afro.pt")
    m = lm.load_official_mapper(tmp_path / "afro.pt")
    assert isinstance(m, lm.LevelsMapper) and m.n_latent == 18
    assert m.official_info == {
        "description": "face with glasses",
        "groups": ["coarse", "medium", "fine"],
        "stylegan_size": 1024,
        "n_latent": 18,
    }
    w = torch.randn(3, 18, 512, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours, ref = m(w), ref_levels_mapper(sd, w)
    assert (ours - ref).abs().max() < 1e-5 and ref.abs().mean() > 1e-2


def test_released_mapper_without_fine_mapper_and_other_sizes(tmp_path):
    torch.manual_seed(4)
    # --no_fine_mapper (the README's mohawk example), 64 px decoder: 10 W+ entries, official split 4 / 8
    sd = _save_lm(
        tmp_path / "mohawk.pt", dim=32, n_rgb=4, opts={"no_fine_mapper": True, "stylegan_size": 64}, fine=False
    )
    m = lm.load_official_mapper(tmp_path / "mohawk.pt")
    assert m.n_latent == 10 and m.official_info["groups"] == ["coarse", "medium"]
    assert lm.level_split(10) != m.split  # deltabench's own scaled split is not used for released files
    w = torch.randn(2, 10, 32)
    with torch.no_grad():
        out = m(w)
    assert (out - ref_levels_mapper(sd, w)).abs().max() < 1e-5
    assert torch.equal(out[:, 8:], torch.zeros_like(out[:, 8:]))
    # opts held as an argparse.Namespace (older pSp-style files) load too
    torch.save(
        {"state_dict": sd, "opts": argparse.Namespace(**_opts(no_fine_mapper=True, stylegan_size=64))},
        tmp_path / "ns.pt",
    )
    assert lm.load_official_mapper(tmp_path / "ns.pt").official_info["groups"] == ["coarse", "medium"]


def test_released_mapper_wrong_kinds_are_clear_errors(tmp_path, small_deltaedit):
    path, _ = small_deltaedit
    with pytest.raises(
        CheckpointError,
        match=r"expected keys 'opts', 'state_dict'; found 'cm_coarse.mapping.1.bias'.*a DeltaEdit checkpoint",
    ):
        lm.load_official_mapper(path)
    sd = {f"mapper.mapper_{c}.mapping.1.weight": torch.zeros(4, 4) for c in range(3)}
    torch.save({"state_dict": sd, "opts": _opts(work_in_stylespace=True)}, tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="StyleSpace mapper"):
        lm.load_official_mapper(tmp_path / "s.pt")
    full = _save_lm(tmp_path / "a.pt", dim=8, n_rgb=8)
    torch.save({"state_dict": full, "opts": _opts(no_fine_mapper=True)}, tmp_path / "liar.pt")
    with pytest.raises(CheckpointError, match="no_fine_mapper"):
        lm.load_official_mapper(tmp_path / "liar.pt")
    torch.save({"state_dict": full, "opts": _opts(stylegan_size=256)}, tmp_path / "size.pt")
    with pytest.raises(CheckpointError, match="stylegan_size 256.*1024 px"):
        lm.load_official_mapper(tmp_path / "size.pt")


class StubDomain(DomainBase):
    """What the methods touch: a generator, a device, sampled codes and text embeddings (the
    contract's optional members keep their defaults, deltabench.domainbase.DomainBase)."""

    edit_torgb = True  # as synthfaces: the official fs3 must still resolve to torgb=False

    def __init__(self, cfg: GeneratorConfig):
        torch.manual_seed(5)
        self.generator = build_generator(cfg).eval()
        self.device = torch.device("cpu")

    @torch.no_grad()
    def sample_w_plus(self, n: int, seed: int) -> torch.Tensor:
        z = torch.randn(n, self.generator.style_dim, generator=torch.Generator().manual_seed(seed))
        return self.generator.mapping(z)[:, None].expand(-1, self.generator.n_latent, -1).contiguous()

    def text_embedding(self, text: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(sum(map(ord, text)))
        return F.normalize(torch.randn(12, generator=g), dim=0)


def test_lm_method_uses_a_released_mapper_for_its_prompt(tmp_path, monkeypatch):
    dom = StubDomain(GeneratorConfig(size=64, style_dim=32, n_mlp=2, channels={4: 8, 8: 8, 16: 8, 32: 8, 64: 8}))
    torch.manual_seed(6)
    sd = _save_lm(tmp_path / "glasses.pt", dim=32, n_rgb=4, opts={"stylegan_size": 64})
    plain = lm.StyleCLIPMapper(dom, tmp_path / "work")
    m = lm.StyleCLIPMapper(
        dom, tmp_path / "work", config={"checkpoints": {"face  with glasses": str(tmp_path / "glasses.pt")}}
    )
    assert m.cfg.checkpoints == {"face with glasses": str(tmp_path / "glasses.pt")}
    assert m.run_dir == plain.run_dir  # trained mappers of other prompts stay valid
    assert "checkpoints" not in plain.cfg.to_dict()  # configs from before the option hash as before
    # a trained mapper cached for the same prompt must not be used instead of the released one
    f, meta = m._files("face with glasses")
    f.parent.mkdir(parents=True)
    f.write_bytes(b"a cached trained mapper: reading it would fail")
    meta.write_text("{}")
    monkeypatch.setattr(lm, "train_mapper", lambda *a, **k: pytest.fail("trained instead of loading"))
    assert m.fit_prompts([("face", "face with glasses")]) == {"face with glasses": 0.0}
    info = m.train_info["face with glasses"]
    assert info["checkpoint"] == str(tmp_path / "glasses.pt") and len(info["sha256"]) == 64
    w = dom.sample_w_plus(2, 7)
    styles = m.edit(w, "face", "face with glasses")
    with torch.no_grad():
        want = dom.generator.styles(w + 0.1 * ref_levels_mapper(sd, w))  # official run_on_batch
    assert all((a - b).abs().max() < 1e-5 for a, b in zip(styles, want))
    # a released mapper for another generator is refused, naming both
    _save_lm(tmp_path / "big.pt", dim=32, n_rgb=8)
    m2 = lm.StyleCLIPMapper(dom, tmp_path / "work", config={"checkpoints": {"x": str(tmp_path / "big.pt")}})
    with pytest.raises(CheckpointError, match=r"1024 px generator \(18 W\+ entries.*has 10"):
        m2.mapper_for("x")
    with pytest.raises(ValueError, match="checkpoints must map"):
        lm.LMConfig(checkpoints={"": "a.pt"})


# -- StyleCLIP-GD ------------------------------------------------------------------------------
def _unit_rows(n: int, d: int = 512, seed: int = 0, dtype=np.float32) -> np.ndarray:
    a = np.random.default_rng(seed).standard_normal((n, d))
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(dtype)


def test_fs3_loads_in_file_order_with_the_1024_shapes(tmp_path, layout_1024):
    assert layout_1024.total_non_torgb == 6048
    # the published SingleChannel.py's layers (mindexs <= 16: up to 128 px) are a prefix of 5376 rows
    up_to_128 = [i for i in layout_1024.non_torgb_indices if layout_1024.resolution[i] <= 128]
    assert sum(layout_1024.widths[i] for i in up_to_128) == 5376
    full = _unit_rows(6048, dtype=np.float16)
    np.save(tmp_path / "fs3", full)  # SingleChannel.py: np.save(file_path + 'fs3', fs3)
    t = gd.load_official_fs3(tmp_path / "fs3.npy", layout_1024)
    assert t.dtype == torch.float32 and t.shape == (6048, 512)
    assert torch.equal(t, torch.from_numpy(full.astype(np.float32)))  # same rows, same order
    part = _unit_rows(5376, seed=1)
    np.save(tmp_path / "short.npy", part)
    assert gd.load_official_fs3(tmp_path / "short.npy", layout_1024).shape == (5376, 512)
    padded = gd.load_official_fs3(tmp_path / "short.npy", layout_1024, pad=True)
    assert padded.shape == (6048, 512) and torch.equal(padded[:5376], torch.from_numpy(part))
    assert not padded[5376:].any()


def test_fs3_wrong_files_are_clear_errors(tmp_path, layout_1024, small_layout):
    def bad(arr, match, layout=layout_1024, allow_pickle=False):
        p = tmp_path / "bad.npy"
        np.save(p, arr, allow_pickle=allow_pickle)
        with pytest.raises(CheckpointError, match=match):
            gd.load_official_fs3(p, layout)

    bad(_unit_rows(5000), r"expected 6048 rows .*1024 px.*found 5000 rows")
    bad(_unit_rows(9088), r"found 9088 rows.*toRGB")
    bad(_unit_rows(6048), rf"expected {small_layout.total_non_torgb} rows .*64 px.*found 6048", layout=small_layout)
    bad(_unit_rows(6048)[:, 0], "float matrix")
    bad(np.array([{"a": 1}], dtype=object), "allow_pickle=False", allow_pickle=True)
    bad(_unit_rows(6048) * 3, "unit vectors")
    nan = _unit_rows(6048)
    nan[7] = np.nan
    bad(nan, r"non-finite values in 1 rows \(the first is row 7\)")
    with pytest.raises(CheckpointError, match="no such file"):
        gd.load_official_fs3(tmp_path / "missing.npy", layout_1024)


def test_gd_method_uses_the_released_fs3(tmp_path, small_layout):
    dom = StubDomain(SMALL)
    sl = dom.generator.slayout
    n = sl.total_non_torgb
    arr = _unit_rows(n - 8, d=12, seed=3)  # without the last (8-wide) layer, as a 'mindexs <=' file
    np.save(tmp_path / "fs3.npy", arr)
    with pytest.raises(ValueError, match="torgb must be false"):
        gd.FS3Config(official_fs3="x.npy", torgb=True)
    assert "official_fs3" not in gd.FS3Config().to_dict()  # old fs3 caches keep their key
    m = gd.StyleCLIPGlobal(dom, tmp_path / "work", config={"official_fs3": str(tmp_path / "fs3.npy"), "n_std": 300})
    assert m.cfg.torgb is False  # even on a domain that edits toRGB styles
    info = m.fit()
    assert info["official_fs3"] == str(tmp_path / "fs3.npy") and info["rows_in_file"] == n - 8
    assert m.fs3.shape == (n, 12) and torch.equal(m.fs3[: n - 8], torch.from_numpy(arr)) and not m.fs3[n - 8 :].any()
    assert torch.allclose(m.std, gd.channel_std(dom, m.cfg))
    assert not (m.work_dir / "fs3.safetensors").exists()  # nothing cached: the file is the fs3
    w = dom.sample_w_plus(2, 9)
    styles = m.edit(w, "face", "face with glasses", strength=2.0)
    dt = F.normalize(dom.text_embedding("face with glasses") - dom.text_embedding("face"), dim=0)
    ds, _ = gd.gd_delta_s(m.fs3, m.std, dt[None], m.beta)
    s0 = sspace.gather(dom.generator.styles(w), sl)
    assert torch.allclose(sspace.gather(styles, sl), s0 + 2.0 * ds, atol=1e-6)
    assert not (sspace.gather(styles, sl) - s0)[:, n - 8 :].any()  # layers the file lacks: Δs = 0
