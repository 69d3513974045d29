"""``deltabench domain new``: a domain config for your own StyleGAN2 generator, then ``fit``,
``edit``, ``run`` and ``gap`` on it, end to end on CPU.

The generator is one of NVIDIA's random-weight network pickles (tests/fixtures/nvidia/), the
CLIP and Inception files are the toy official-format ones of :mod:`test_real_domains`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_gap_real import _mm_celeba
from test_real_domains import TINY_CLIP, weights  # noqa: F401  (weights: the module fixture)

from deltabench.cli import main

FIX = Path(__file__).parent / "fixtures" / "nvidia"
PKL = FIX / "ada-32.pkl"
SMALL = {"config": {"steps": 20, "n_generated": 64, "batch": 16}, "beta": 0.0}  # beta 0: no fs3 precompute


def _new(tmp_path, weights, *extra, name="mine"):  # noqa: F811
    out = tmp_path / f"{name}.json"
    argv = [
        "domain",
        "new",
        name,
        "--generator",
        str(PKL),
        "--out",
        str(out),
        "--clip",
        str(weights / "clip-test.pt"),
        "--clip-model",
        TINY_CLIP,
        "--fid",
        str(weights / "pt_inception-test.pth"),
        *extra,
    ]
    return main(argv), out


def _one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deltabench: error:"), err
    for s in needles:
        assert s in err[0], (s, err[0])


@pytest.fixture()
def cheap_fid(monkeypatch):
    import deltabench.metrics.fid as fid_mod

    # the 2048-d sqrtm costs 10-40 s on a busy 2-core machine; FID itself is tested in test_metrics.py
    monkeypatch.setattr(
        fid_mod,
        "frechet_distance",
        lambda mu1, s1, mu2, s2, eps=1e-6: float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2)),
    )


def test_domain_new_reads_the_checkpoint(weights, tmp_path, capsys):  # noqa: F811
    from deltabench.domain import load_domain
    from deltabench.real.nvidia import load_nvidia_generator

    rc, out = _new(tmp_path, weights, "--truncation", "0.7", "--neutral", "cat", "--prompt", "black cat")
    assert rc == 0, capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed == {
        "config": str(out),
        "name": "mine",
        "test_images": "generated",
        "format": "nvidia",
        "resolution": 32,
        "style_dim": 8,
        "n_latent": 8,
        "s_layers": 11,
        "s_channels": 80,
        "s_channels_non_torgb": 52,
        "conv_clamp": 256.0,
    }
    cfg = json.loads(out.read_text())
    assert cfg["resolution"] == 32 and cfg["generator"] == str(PKL.resolve()) and cfg["encoder"] is None
    assert cfg["test_source"] == "generated" and cfg["prompts"] == [{"source": "cat", "target": "black cat"}]
    d = load_domain(str(out))
    G_ref, w_avg, _ = load_nvidia_generator(PKL)
    assert d.generator.slayout == G_ref.slayout and d.generator_format == "nvidia"
    # no encoder: DeltaEdit trains on generated codes only; test images are seeded generator samples
    assert d.method_defaults["deltaedit"]["config"]["n_inverted"] == 0
    test = d.test_images(2, seed=3)
    assert torch.equal(test.invert(d), d.sample_w_plus(2, seed=3))
    # NVIDIA's truncation centre is its w_avg: w = w_avg + 0.7 (mapping(z) - w_avg)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = w_avg + 0.7 * (G_ref.mapping(z) - w_avg)
    assert torch.allclose(test.latents[:, 0], want, atol=1e-6)


def test_domain_new_errors_are_one_line_and_write_nothing(weights, tmp_path, capsys):  # noqa: F811
    cases = [
        (["--generator", str(FIX / "conditional.pkl")], ["conditional.pkl: a conditional generator (c_dim=3"]),
        (["--generator", str(FIX / "stylegan3-t.pkl")], ["a StyleGAN3 (alias-free) generator"]),
        (["--generator", str(tmp_path / "none.pkl")], ["--generator", "no such file"]),
        (["--generator", str(PKL), "--images", str(tmp_path)], ["--images", "holds no images"]),
        (["--generator", str(PKL), "--truncation", "1.5"], ["--truncation must be in (0, 1]"]),
    ]
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img_dir / "a.png")
    cases.append((["--generator", str(PKL), "--images", str(img_dir)], ["has no encoder; give --encoder FILE"]))
    for extra, needles in cases:
        out = tmp_path / "x.json"
        assert main(["domain", "new", "x", "--out", str(out), *extra]) == 2, extra
        _one_error_line(capsys, *needles)
        assert not out.exists()
    assert main(["domain", "new", "bad/name", "--generator", str(PKL)]) == 2
    _one_error_line(capsys, "domain name 'bad/name'")
    rc, out = _new(tmp_path, weights)
    assert rc == 0
    capsys.readouterr()
    assert _new(tmp_path, weights)[0] == 2
    _one_error_line(capsys, "exists; give another --out or --force")


@pytest.mark.slow
def test_run_on_a_new_domain_without_encoder(weights, tmp_path, capsys, cheap_fid):  # noqa: F811
    """The issue's end to end: ``domain new mine --generator random.pkl``, then ``run --limit 2``."""
    rc, out = _new(tmp_path, weights)
    assert rc == 0
    run_dir = tmp_path / "run"
    rc = main(
        [
            "run",
            "--world",
            str(out),
            "--methods",
            "deltaedit",
            "--limit",
            "2",
            "--sweep",
            "1",
            "--options",
            json.dumps({"deltaedit": SMALL}),
            "--out",
            str(run_dir),
            "--work-dir",
            str(tmp_path / "work"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["domain"]["name"] == "mine" and manifest["domain"]["test"]["source"] == "generated"
    assert manifest["domain"]["train"]["source"] == "generated"
    assert json.dumps(manifest).count('"n_inverted": 0') >= 1
    import csv

    rows = list(csv.DictReader((run_dir / "results.csv").open()))
    de = [r for r in rows if r["method"] == "deltaedit"]
    assert len(de) == 4 and all(np.isfinite(float(r["psnr"])) for r in de)  # 2 images x 2 prompts
    assert {r["target"] for r in de} == {"black and white photo", "photo at night"}


@pytest.mark.slow
def test_fit_edit_gap_on_a_new_domain_with_encoder(weights, tmp_path, capsys):  # noqa: F811
    from deltabench.models.e4e import E4EConfig, Encoder4Editing, save_e4e_checkpoint
    from deltabench.models.irse import IRSEConfig
    from deltabench.real.nvidia import load_nvidia_generator

    G, w_avg, _ = load_nvidia_generator(PKL)
    torch.manual_seed(1)
    irse = IRSEConfig(units=(1, 1, 1, 1), widths=(4, 6, 7, 8), stem_width=4, se=True, se_reduction=2)
    enc = Encoder4Editing(
        E4EConfig(backbone=irse, n_styles=G.n_latent, style_dim=8, input_size=64, convs=(2, 3, 4))
    ).eval()
    save_e4e_checkpoint(
        tmp_path / "e4e_mine.pt",
        enc,
        G.state_dict(),
        w_avg,
        {"stylegan_size": 32, "encoder_type": "Encoder4Editing", "start_from_latent_avg": True},
    )
    rc, out = _new(tmp_path, weights, "--encoder", str(tmp_path / "e4e_mine.pt"), name="mine-e4e")
    assert rc == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["encoder"] == str((tmp_path / "e4e_mine.pt").resolve())
    work = str(tmp_path / "work")
    opts = json.dumps({**SMALL, "config": {**SMALL["config"], "n_inverted": 16}})  # default with an encoder: 58,000
    assert (
        main(["fit", "deltaedit", "--world", str(out), "--options", opts, "--work-dir", work, "--device", "cpu"]) == 0
    ), capsys.readouterr().err
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photo)
    edited = tmp_path / "edited.png"
    rc = main(
        [
            "edit",
            str(photo),
            "--world",
            str(out),
            "--source",
            "photo",
            "--target",
            "black and white photo",
            "--options",
            opts,
            "--work-dir",
            work,
            "--out",
            str(edited),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert Image.open(edited).size == (32, 32)
    data = _mm_celeba(tmp_path / "mm", n=12)
    rc = main(
        [
            "gap",
            "--world",
            str(out),
            "--images",
            str(data),
            "--pairs",
            "12",
            "--out",
            str(tmp_path / "gap"),
            "--no-figure",
            "--threads",
            "1",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "gap" / "gap.json").read_text())["world"] == "mine-e4e"
