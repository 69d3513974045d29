"""One set of settings from every entry point (issue 22).

- Every entry point (`run`, `edit`, `fit`, `train`, `eval`, `deltabench.edit`) builds a method
  with the settings the runner resolves: the domain's defaults, then the user's options, then
  flags. Checked on synthfaces-micro and on a real domain (official-format random weights).
- End to end against the official inference: DeltaEdit with a `net_face.pth` and StyleCLIP-GD
  with a released-format `fs3.npy`, through the CLI `deltabench edit` and `deltabench.edit`,
  each equal to an independent re-implementation of the official code within 1 uint8 level.
- `--work-dir` means one thing: `edit` after `run` with the same folder trains nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_official_checkpoints import OfficialDeltaMapper
from test_official_defaults import CHANNELS, RES, _fs3_around, _get_dt, _official_clip, _official_inference
from test_real_domains import TINY_CLIP, TINY_IRSE, _register_tiny_clip

from deltabench.cli import main
from deltabench.models.e4e import E4EConfig, Encoder4Editing, save_e4e_checkpoint
from deltabench.models.stylegan2 import GeneratorConfig, StyleGAN2, save_rosinality_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
MICRO = "synthfaces-micro"
TARGET = "face with smile"


class _Stop(Exception):
    """Raised by the spy once it has seen the options a method is built with."""


@pytest.fixture
def spy(monkeypatch):
    """Record (name, options) of every method built through deltabench.settings, then stop."""
    import deltabench.settings as settings

    seen = []

    def build_method(name, domain, options=None, work_dir=None, seed=0, cache=None):
        seen.append((name, json.loads(json.dumps(options or {}, default=str))))
        raise _Stop(name)

    monkeypatch.setattr(settings, "build_method", build_method)
    return seen


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A 64 px real domain in official formats (random weights): generator, e4e, CLIP, a
    DeltaEdit net_face.pth and a released-format fs3.npy; the JSON config naming only those."""
    import open_clip

    d = tmp_path_factory.mktemp("entry-toy")
    torch.manual_seed(0)
    G = StyleGAN2(GeneratorConfig(size=RES, style_dim=32, n_mlp=2, channels=CHANNELS)).eval()
    avg = G.mean_latent(500)
    save_rosinality_checkpoint(d / "g.pt", G, avg)
    torch.manual_seed(1)
    enc = Encoder4Editing(
        E4EConfig(backbone=TINY_IRSE, n_styles=G.n_latent, style_dim=32, input_size=RES, convs=(2, 3, 4))
    ).eval()
    save_e4e_checkpoint(
        d / "e4e.pt",
        enc,
        G.state_dict(),
        avg.reshape(-1),
        {
            "stylegan_size": RES,
            "encoder_type": "Encoder4Editing",
            "start_from_latent_avg": True,
            "checkpoint_path": None,
            "lpips_lambda": 0.8,
        },
    )
    _register_tiny_clip(d)
    torch.manual_seed(2)
    torch.save(open_clip.create_model(TINY_CLIP, pretrained=None).state_dict(), d / "clip.pt")
    torch.manual_seed(7)
    torch.save(OfficialDeltaMapper(16, 16, 24, 2 * 32).state_dict(), d / "net_face.pth")
    cfg = {
        "name": "ffhq-entry64",
        "resolution": RES,
        "generator": str(d / "g.pt"),
        "encoder": str(d / "e4e.pt"),
        "clip": str(d / "clip.pt"),
        "clip_model": TINY_CLIP,
        "neutral": "face",
        "test_source": "generated",
        "prompts": [{"source": "face", "target": TARGET}],
    }
    (d / "toy.json").write_text(json.dumps(cfg))
    # what `run` also needs: FID/KID features (pytorch-fid's Inception, random weights)
    from deltabench.real import loaders

    torch.manual_seed(5)
    torch.save(loaders.fid_inception_net(None).state_dict(), d / "fid.pth")
    (d / "toy_run.json").write_text(json.dumps({**cfg, "name": "ffhq-entry64-run", "fid": str(d / "fid.pth")}))
    clip, tok = _official_clip(d / "clip.pt")
    from deltabench.domain import load_domain

    domain = load_domain(str(d / "toy.json"))
    dt_raw = _get_dt(clip, tok, TARGET, "face", domain.templates)
    np.save(d / "fs3.npy", _fs3_around(dt_raw, domain.generator.slayout.total_non_torgb))
    # a smooth photo at the domain's size (no resize anywhere: the paths differ only in settings)
    yy, xx = np.mgrid[0:RES, 0:RES] / RES
    photo = np.stack([128 + 100 * np.sin(6 * xx), 128 + 90 * np.cos(5 * yy), 100 + 80 * xx * yy], -1)
    Image.fromarray(photo.clip(0, 255).astype(np.uint8)).save(d / "photo.png")
    return d, domain, clip, tok


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _uint8(img: torch.Tensor) -> np.ndarray:
    from deltabench.utils import float_to_uint8

    return float_to_uint8(img)[0]


@torch.no_grad()
def _official_deltaedit(toy) -> np.ndarray:
    """scripts/inference_real.py on the photo, re-implemented (test_official_defaults)."""
    from deltabench import sspace
    from deltabench.utils import uint8_to_float

    d, domain, clip, tok = toy
    G = domain.generator
    x = uint8_to_float(np.asarray(Image.open(d / "photo.png"))[None])
    w = domain.invert(x)
    sd = torch.load(d / "net_face.pth", weights_only=True)
    s_new, _, _ = _official_inference(G, clip, tok, domain.templates, np.load(d / "fs3.npy"), sd, w, x, TARGET)
    styles = sspace.scatter(G.styles(w), s_new, G.slayout, False)
    return _uint8(G.synthesis_from_styles(styles))


@torch.no_grad()
def _official_gd(toy, alpha: float = 4.1, beta: float = 0.15, n_codes: int = 100_000) -> np.ndarray:
    """StyleCLIP global_directions on the photo, re-implemented: Δt = norm(t - t_neutral) (MapTS
    GetDt), r = fs3·Δt, r[|r| < β] = 0, r /= max|r| (GetBoundary), Δs = r·σ with σ the numpy
    std (ddof 0) of S over 100,000 codes truncated by 0.7 towards w_avg (GetCode.py), s + αΔs
    (manipulate.py). The codes z are the domain's own draws (``sample_w_plus`` with the seeds
    deltabench uses, FS3Config seed 0 + 1 + i per 1,024), so Monte-Carlo noise in σ, which the
    official code has from run to run too (independent draws put this toy 3 levels, 53 dB, off),
    does not hide a difference in the statistic itself."""
    from deltabench import sspace
    from deltabench.utils import uint8_to_float

    d, domain, clip, tok = toy
    G = domain.generator
    dt = torch.from_numpy(_get_dt(clip, tok, TARGET, "face", domain.templates))
    dt = dt / dt.norm()
    r = torch.from_numpy(np.load(d / "fs3.npy")) @ dt
    r[r.abs() < beta] = 0
    r = r / r.abs().max()
    avg = domain.latent_avg.reshape(-1)
    chunks = []
    for i in range(0, n_codes, 1024):
        w = domain.sample_w_plus(min(1024, n_codes - i), 1 + i)  # [n, L, D], every entry the same w
        w = avg + 0.7 * (w - avg)  # GetCode.py: lerp(dlatent_avg, w, 0.7)
        chunks.append(sspace.gather(G.styles(w), G.slayout, False).double())
    sigma = torch.cat(chunks).numpy().std(0, ddof=0)
    x = uint8_to_float(np.asarray(Image.open(d / "photo.png"))[None])
    styles = G.styles(domain.invert(x))
    s = sspace.gather(styles, G.slayout, False)
    s_new = s + alpha * (r * torch.from_numpy(sigma).float())[None]
    return _uint8(G.synthesis_from_styles(sspace.scatter(styles, s_new, G.slayout, False)))


@pytest.mark.parametrize("method,flag", [("deltaedit", "--checkpoint"), ("styleclip-gd", "--fs3")])
def test_cli_and_api_edit_equal_the_official_inference(toy, tmp_path, method, flag):
    import deltabench

    d, domain, _, _ = toy
    want = _official_deltaedit(toy) if method == "deltaedit" else _official_gd(toy)
    files = (
        {"checkpoint": str(d / "net_face.pth"), "fs3": str(d / "fs3.npy")}
        if method == "deltaedit"
        else {"fs3": str(d / "fs3.npy")}
    )
    out = tmp_path / "cli.png"
    args = [
        "edit",
        str(d / "photo.png"),
        "--world",
        str(d / "toy.json"),
        "--method",
        method,
        "--target",
        TARGET,
        "--out",
        str(out),
        "--work-dir",
        str(tmp_path / "work"),
        "--no-align",
    ]
    for k, v in files.items():
        args += [f"--{k}", v]
    assert main(args) == 0
    cli = np.asarray(Image.open(out))
    api = np.asarray(
        deltabench.edit(
            str(d / "photo.png"),
            TARGET,
            source="face",
            method=method,
            world=str(d / "toy.json"),
            work_dir=tmp_path / "work",
            **files,
        )
    )
    moved = np.abs(want.astype(int) - _official_unedited(toy).astype(int)).max()
    assert moved > 10  # the edit does something, so equality below means something
    for name, got in (("cli", cli), ("api", api)):
        diff = np.abs(got.astype(int) - want.astype(int)).max()
        assert diff <= 1, f"{method} via {name}: {diff} levels off the official edit (PSNR {_psnr(got, want):.1f} dB)"


@torch.no_grad()
def _official_unedited(toy) -> np.ndarray:
    from deltabench.utils import uint8_to_float

    d, domain, _, _ = toy
    x = uint8_to_float(np.asarray(Image.open(d / "photo.png"))[None])
    return _uint8(domain.generator.synthesis(domain.invert(x)))


def test_edit_runs_with_only_the_files_deltaedit_needs(toy, tmp_path):
    """The toy JSON names no identity network and no Inception: `edit` still runs."""
    d, _, _, _ = toy
    cfg = json.loads((d / "toy.json").read_text())
    assert not {"identity", "identity_loss", "fid"} & set(cfg)
    assert (
        main(
            [
                "edit",
                str(d / "photo.png"),
                "--world",
                str(d / "toy.json"),
                "--target",
                TARGET,
                "--checkpoint",
                str(d / "net_face.pth"),
                "--fs3",
                str(d / "fs3.npy"),
                "--no-align",
                "--out",
                str(tmp_path / "e.png"),
                "--work-dir",
                str(tmp_path / "w"),
            ]
        )
        == 0
    )
    assert (tmp_path / "e.png").is_file()


# --- the same resolved settings from every entry point -----------------------------------------


def _expected(domain, name, options=None, flags=None):
    from deltabench.settings import resolve_options

    return json.loads(
        json.dumps(resolve_options(domain, [name], options or {}, flags or {}).get(name, {}), default=str)
    )


def _entry_points(world: str, image: str, tmp_path, method: str, target: str, run_world: str | None = None):
    """Each entry point, called so that it builds ``method`` on ``world`` (the spy stops it);
    ``run_world``: the same domain with the files a run needs beyond an edit (FID features)."""
    import deltabench

    W = ["--world", world, "--work-dir", str(tmp_path / "w")]
    yield (
        "run",
        lambda: deltabench.run(
            methods=[method],
            world=run_world or world,
            images=2,
            limit=1,
            sweep=(1,),
            out=tmp_path / "run",
            work_dir=tmp_path / "w",
            references="none",
        ),
    )
    yield "api.edit", lambda: deltabench.edit(image, target, method=method, world=world, work_dir=tmp_path / "w")
    yield (
        "cli edit",
        lambda: main(
            ["edit", image, "--target", target, "--method", method, "--no-align", "--out", str(tmp_path / "e.png"), *W]
        ),
    )
    yield "cli fit", lambda: main(["fit", method, *W])
    yield "cli eval", lambda: main(["eval", "--methods", method, "--images", "2", *W])
    if method.startswith("deltaedit"):
        yield "cli train", lambda: main(["train", method, *W])


@pytest.mark.parametrize("method", ["deltaedit", "styleclip-op", "styleclip-lm", "styleclip-gd"])
def test_every_entry_point_resolves_the_runners_settings_on_synthfaces(cache, micro_world, spy, tmp_path, method):
    from deltabench.domain import SynthfacesDomain
    from deltabench.utils import float_to_uint8

    domain = SynthfacesDomain(micro_world)
    want = _expected(domain, method)
    if method in ("styleclip-op", "styleclip-lm"):
        assert want["config"]  # the world's benchmark settings (100 OP steps, 150 LM steps ...)
    img = tmp_path / "face.png"
    Image.fromarray(float_to_uint8(domain.test_images(1, 3).images)[0]).save(img)
    for where, call in _entry_points(MICRO, str(img), tmp_path, method, "face with glasses"):
        if where == "cli eval" and method != "deltaedit":
            continue  # eval scores the world's ground truth; one method is enough for its path
        spy.clear()
        with pytest.raises(_Stop):
            call()
        assert spy == [(method, want)], where


@pytest.mark.parametrize("method", ["deltaedit", "styleclip-gd", "styleclip-op"])
def test_every_entry_point_resolves_the_runners_settings_on_a_real_domain(toy, spy, tmp_path, method):
    d, domain, _, _ = toy
    want = _expected(domain, method)
    assert want  # the official settings of the real domains
    if method == "styleclip-gd":
        assert want["config"]["protocol"] == "official" and want["config"]["n_std"] == 100_000
    for where, call in _entry_points(
        str(d / "toy.json"), str(d / "photo.png"), tmp_path, method, TARGET, run_world=str(d / "toy_run.json")
    ):
        if where in ("cli eval",):
            continue  # eval is the synthetic world's ground-truth evaluation
        spy.clear()
        with pytest.raises(_Stop):
            call()
        assert spy == [(method, want)], where


def test_options_then_flags_override_the_domain_defaults(toy, spy, tmp_path):
    d, domain, _, _ = toy
    with pytest.raises(_Stop):
        main(
            [
                "edit",
                str(d / "photo.png"),
                "--world",
                str(d / "toy.json"),
                "--target",
                TARGET,
                "--no-align",
                "--options",
                '{"beta": 0.1, "config": {"steps": 7}}',
                "--steps",
                "9",
                "--checkpoint",
                str(d / "net_face.pth"),
                "--out",
                str(tmp_path / "e.png"),
            ]
        )
    ((name, got),) = spy
    assert got["beta"] == 0.1 and got["checkpoint"] == str(d / "net_face.pth")
    # domain defaults under --options under --steps, key by key
    assert got["config"] == {**domain.method_defaults["deltaedit"]["config"], "steps": 9}


def test_flags_a_method_has_no_use_for_are_one_line_errors(toy, tmp_path, capsys):
    d, _, _, _ = toy
    base = ["edit", str(d / "photo.png"), "--world", str(d / "toy.json"), "--target", TARGET, "--no-align"]
    cases = [
        (["--method", "styleclip-op", "--checkpoint", str(d / "net_face.pth")], "--checkpoint: styleclip-op"),
        (["--method", "styleclip-lm", "--fs3", str(d / "fs3.npy")], "--fs3: styleclip-lm"),
        (["--checkpoint", str(tmp_path / "none.pth")], "--checkpoint .*none.pth does not exist"),
        (["--options", '{"bogus": 1}'], "deltaedit has no options \\['bogus'\\]"),
    ]
    import re

    for extra, pattern in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deltabench: error:") and re.search(pattern, err[0]), err


# --- one method cache -----------------------------------------------------------------------------

TINY = {"config": {"steps": 3, "n_generated": 16, "n_inverted": 8, "batch": 4}}


def test_edit_after_run_with_the_same_work_dir_trains_nothing(cache, micro_world, tmp_path, monkeypatch):
    import deltabench

    work = tmp_path / "work"
    deltabench.run(
        methods=["deltaedit"],
        world=MICRO,
        images=2,
        limit=1,
        sweep=(1,),
        out=tmp_path / "run",
        work_dir=work,
        options={"deltaedit": TINY},
        references="none",
    )

    import deltaedit.train as de_train

    def no_training(*a, **k):
        raise AssertionError("edit retrained what the run fitted (it built a training pool)")

    # a cached mapper loads before any pool is built; training starts by building its pool
    monkeypatch.setattr(de_train, "load_or_build_pool", no_training)
    files = {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()}
    from deltabench.domain import SynthfacesDomain
    from deltabench.utils import float_to_uint8

    img = tmp_path / "face.png"
    Image.fromarray(float_to_uint8(SynthfacesDomain(micro_world).test_images(1, 3).images)[0]).save(img)
    assert (
        main(
            [
                "edit",
                str(img),
                "--world",
                MICRO,
                "--target",
                "face with glasses",
                "--work-dir",
                str(work),
                "--options",
                json.dumps(TINY),
                "--out",
                str(tmp_path / "e.png"),
            ]
        )
        == 0
    )
    got = deltabench.edit(str(img), "face with glasses", world=MICRO, work_dir=work, options=TINY)
    assert np.array_equal(np.asarray(got), np.asarray(Image.open(tmp_path / "e.png")))
    assert {p: p.stat().st_mtime_ns for p in work.rglob("*") if p.is_file()} == files  # nothing written


# --- bad paths and variables: one line, exit 2, before any work --------------------------------


def _one_line(capsys, pattern: str) -> None:
    import re

    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln]
    assert len(err) == 1 and err[0].startswith("deltabench: error:") and re.search(pattern, err[0]), err


def test_dangling_symlink_outputs_are_one_line_errors(cache, tmp_path, capsys):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere" / "run")
    assert main(["run", "--world", MICRO, "--methods", "deltaedit", "--limit", "2", "--out", str(link)]) == 2
    _one_line(capsys, r"--out .*symbolic link to .*nowhere/run, which does not exist")
    assert not (tmp_path / "nowhere").exists()
    png = tmp_path / "e.png"
    png.symlink_to(tmp_path / "gone" / "e.png")
    assert (
        main(["edit", str(tmp_path / "x.png"), "--world", MICRO, "--target", "face with glasses", "--out", str(png)])
        == 2
    )  # the image is missing too: the first problem is named
    capsys.readouterr()
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    assert (
        main(["edit", str(tmp_path / "x.png"), "--world", MICRO, "--target", "face with glasses", "--out", str(png)])
        == 2
    )
    _one_line(capsys, r"--out .*e.png.* symbolic link to .*gone/e.png, which does not exist")


@pytest.mark.parametrize("var", ["DELTABENCH_CACHE", "DELTABENCH_WEIGHTS"])
def test_cache_variables_naming_a_file_are_one_line_errors(tmp_path, monkeypatch, capsys, var):
    f = tmp_path / "afile"
    f.write_text("not a folder")
    monkeypatch.setenv(var, str(f))
    cmd = ["world", "list"] if var == "DELTABENCH_CACHE" else ["weights", "verify", "--domain", "ffhq"]
    assert main(cmd) == 2
    _one_line(capsys, rf"\${var}=.*afile is a file, not a folder; point {var} at a folder")


def test_world_config_with_negative_sizes_is_one_line_error(tmp_path, capsys):
    from importlib import resources

    from deltabench.world.catalog import builtin_world_names  # noqa: F401 - the configs ship as data

    d = json.loads((resources.files("deltabench") / "configs" / "worlds" / f"{MICRO}.json").read_text())
    d["generator"]["model"]["channels"]["8"] = -16
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(d))
    for cmd in (
        ["world", "build", "--world", str(bad), "--root", str(tmp_path / "r")],
        ["edit", str(bad), "--world", str(bad), "--target", "face with glasses"],
    ):
        assert main(cmd) == 2
        _one_line(capsys, r"generator\.model\.channels\.8 = -16 is negative")
    assert not (tmp_path / "r").exists()


def test_every_output_path_and_input_file_is_checked_before_work(cache, tmp_path, capsys):
    """Paths the CLI reads or writes, each wrong in a way a user meets: one line each, naming it."""
    dl = tmp_path / "dl"
    dl.symlink_to(tmp_path / "nowhere" / "x")
    afile, adir = tmp_path / "afile", tmp_path / "adir"
    afile.write_text("x")
    adir.mkdir()
    cases = [
        (["gap", "--world", MICRO, "--out", str(dl)], r"--out .*symbolic link to .*nowhere/x"),
        (["gap", "--world", MICRO, "--out", str(afile / "sub")], r"--out .*afile is a file, not a directory"),
        (["world", "build", "--world", MICRO, "--root", str(afile)], r"--root .*afile is a file, not a directory"),
        (
            ["run", "--world", MICRO, "--prompts", str(adir), "--limit", "2", "--out", str(tmp_path / "r")],
            r"prompts file .*adir is a directory",
        ),
        (
            ["run", "--world", MICRO, "--options", str(adir), "--limit", "2", "--out", str(tmp_path / "r")],
            r"--options .*adir is a directory",
        ),
    ]
    for cmd, pattern in cases:
        assert main(cmd) == 2, cmd
        _one_line(capsys, pattern)
    assert not (tmp_path / "r").exists() and not (tmp_path / "nowhere").exists()


def test_score_of_a_folder_against_itself_flags_negative_set_distances(cache, micro_world, tmp_path):
    """KID (unbiased) goes below 0 for identical sets: flagged and explained, never silent."""
    import warnings

    import deltabench
    from deltabench.domain import SynthfacesDomain
    from deltabench.utils import float_to_uint8

    imgs = float_to_uint8(SynthfacesDomain(micro_world).test_images(6, 3).images)
    d = tmp_path / "same"
    d.mkdir()
    for i, a in enumerate(imgs):
        Image.fromarray(a).save(d / f"{i}.png")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        df = deltabench.score(str(d), str(d), [("face", "face with glasses")], world=MICRO)
    s = df.attrs["summary"].iloc[0]
    assert s["kid"] < 0 and bool(s["kid_negative"])
    assert any("KID" in str(w.message) and "unbiased" in str(w.message) for w in seen)
    assert abs(s["fid"]) < 1e-3  # 0 up to round-off in the streamed covariance sums ...
    assert s["fid"] >= 0 or bool(s["fid_negative"])  # ... and flagged where that round-off goes below 0
