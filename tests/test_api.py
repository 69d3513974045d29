"""The Python API on a postcard: deltabench.run / edit / score, methods from outside the package."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import deltabench
from deltabench.world.attributes import sample_params
from deltabench.world.renderer import render

TINY = {"deltaedit": {"config": {"n_generated": 48, "n_inverted": 8, "steps": 10, "batch": 8}}}
W = "synthfaces-micro"


def test_run_returns_the_summary_with_its_rows_and_run_dir(cache, tmp_path):
    df = deltabench.run(
        methods="deltaedit,styleclip-gd",
        world=W,
        images=3,
        limit=2,
        sweep=(0.5, 2),
        options=TINY,
        out=tmp_path / "r",
        batch=3,
    )
    assert list(df["method"]) == ["deltaedit", "styleclip-gd", "inversion", "oracle-edit"]  # then the references
    assert df["reference"].tolist() == [False, False, True, True]
    assert (df["images"] == 2).all() and (df["prompts"] == 2).all()  # --limit 2 caps images and prompts
    # Peak memory of each method's edits (the process's resident set: torch alone is over 100 MiB).
    assert (df["peak_mb"] > 100).all() and (df["peak_mb"] < 24 * 1024).all()
    rows = df.attrs["results"]
    # methods x prompts x images x strengths (1 added to the sweep), references at x1 only
    assert len(rows) == 2 * 2 * 2 * 3 + 2 * 2 * 2
    assert sorted(rows["strength_scale"].unique()) == [0.5, 1.0, 2.0]
    assert df.attrs["run_dir"] == tmp_path / "r" and df.attrs["manifest"]["config"]["images"] == 2
    # The summary is the mean of the x1 rows (the metric state of the row metrics).
    one = rows[(rows["strength_scale"] == 1.0) & (rows["method"] == "deltaedit")]
    assert df.loc[0, "psnr"] == pytest.approx(one["psnr"].mean(), rel=1e-5)
    with pytest.raises(ValueError, match="--sweep"):
        deltabench.run(methods="deltaedit", world=W, sweep=(float("nan"),), out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_edit_returns_the_same_image_as_the_cli(cache, tmp_path):
    from deltabench.cli import main

    face = render(sample_params(1, np.random.default_rng(5)), 32)[0]
    f = tmp_path / "face.png"
    Image.fromarray(face).save(f)
    args = ["--steps", "10", "--n-generated", "48", "--n-inverted", "8", "--batch", "8"]
    assert (
        main(["edit", str(f), "--world", W, "--target", "face with glasses", *args, "--out", str(tmp_path / "cli.png")])
        == 0
    )
    img = deltabench.edit(face, "face with glasses", world=W, options=TINY["deltaedit"])
    assert isinstance(img, Image.Image) and img.size == (32, 32)
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(tmp_path / "cli.png")))
    again = deltabench.edit(str(f), "face with glasses", world=W, options=TINY["deltaedit"])
    assert np.array_equal(np.asarray(img), np.asarray(again))
    stronger = deltabench.edit(face, "face with glasses", world=W, strength=3.0, options=TINY["deltaedit"])
    assert not np.array_equal(np.asarray(img), np.asarray(stronger))


def test_score_of_inputs_against_themselves(cache):
    from deltabench.domain import load_domain

    domain = load_domain(W)
    test = domain.test_images(6, seed=7)
    df = deltabench.score(
        test.images, test.images, [("face", "face with glasses", "glasses", "glasses")], world=W, params=test.params
    )
    assert len(df) == 6 and (df["target"] == "face with glasses").all()
    assert (df["psnr"] == 60).all()  # identical images: PSNR at its cap
    assert df["ids"].to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert df["ssim"].to_numpy() == pytest.approx(1.0, abs=1e-6)
    assert df["disentanglement"].to_numpy() == pytest.approx(1.0)
    needed = test.params.attrs[:, 3] != 1  # faces without glasses: the edit was asked and not made
    assert (df["manipulation_accuracy"][needed] == 0).all() and df["manipulation_accuracy"][~needed].isna().all()
    s = df.attrs["summary"]
    assert len(s) == 1 and s.loc[0, "pairs"] == 6 and abs(s.loc[0, "fid"]) < 1e-3


def test_score_of_a_runs_edits_equals_its_results(cache, tmp_path):
    from deltabench.domain import load_domain

    df = deltabench.run(
        methods="deltaedit",
        world=W,
        images=5,
        limit=2,
        sweep=(1,),
        options=TINY,
        out=tmp_path / "r",
        batch=4,
        save_edits=True,
        seed=3,
    )
    run_dir, rows = df.attrs["run_dir"], df.attrs["results"]
    edits = run_dir / "edits"
    prompts = df.attrs["manifest"]["config"]["prompts"]
    params = load_domain(W).test_images(2, seed=3 + 1).params  # the run's test images: seed + 1
    for j, p in enumerate(prompts):
        got = deltabench.score(
            torch.from_numpy(np.load(edits / "inputs.npy")),
            torch.from_numpy(np.load(edits / f"deltaedit__{j}__1.0.npy")),
            p,
            world=W,
            starts=torch.from_numpy(np.load(edits / "start.npy")),
            params=params,
            batch=4,
            seed=3,
        )
        want = rows[(rows["prompt_index"] == j) & (rows["method"] == "deltaedit")].sort_values("image_index")
        for col in (
            "psnr",
            "ssim",
            "ids",
            "clip_score",
            "clip_direction",
            "manipulation_accuracy",
            "disentanglement",
            "identity_param_error",
        ):
            a, b = got[col].to_numpy(), want[col].to_numpy()
            assert np.allclose(a, b, rtol=1e-6, atol=1e-7, equal_nan=True), (col, a, b)


def test_score_cli_on_folders(cache, tmp_path, capsys):
    from deltabench.cli import main

    for d, seed in (("in", 1), ("ed", 2)):
        (tmp_path / d).mkdir()
        for i, face in enumerate(render(sample_params(3, np.random.default_rng(seed)), 32)):
            Image.fromarray(face).save(tmp_path / d / f"{i}.png")
    (tmp_path / "p.csv").write_text("face,smiling face\n")
    assert (
        main(
            [
                "score",
                str(tmp_path / "in"),
                str(tmp_path / "ed"),
                "--prompts",
                str(tmp_path / "p.csv"),
                "--world",
                W,
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        == 0
    )
    per = pd.read_csv(tmp_path / "s.csv")
    assert len(per) == 3 and per["psnr"].between(3, 60).all()
    # every pair names its files, and the summary carries each per-pair metric's interval
    assert per["input_file"].tolist() == ["0.png", "1.png", "2.png"] == per["edit_file"].tolist()
    summ = pd.read_csv(tmp_path / "s_summary.csv").iloc[0]
    assert summ["pairs"] == 3 and summ["psnr_lo"] <= summ["psnr"] <= summ["psnr_hi"] and summ["psnr_n"] == 3
    printed = capsys.readouterr().out
    assert "face -> smiling face (3 pairs)" in printed and f"psnr {summ['psnr']:.4g} [" in printed
    assert (
        main(
            ["score", str(tmp_path / "in"), str(tmp_path / "nope"), "--prompts", str(tmp_path / "p.csv"), "--world", W]
        )
        == 2
    )
    assert "EDITS" in capsys.readouterr().err


EXTERNAL = '''
from deltabench.methods import EditMethod


class Nudge(EditMethod):
    """A method from outside deltabench: moves every W+ entry along one fixed direction."""

    name = "nudge"
    space = "W+"
    default_strength = 0.5

    def fit(self):
        import torch
        g = torch.Generator().manual_seed(self.seed)
        self.direction = torch.randn(self.domain.generator.style_dim, generator=g)
        return {"fit_seconds": 0.0}

    def edit(self, w_plus, source, target, strength=None):
        a = self.default_strength if strength is None else strength
        return self.domain.generator.styles(w_plus + a * self.direction.to(w_plus))
'''


def _install_plugin(tmp_path, monkeypatch):
    """A package installed the way pip lays one out: its module plus a .dist-info with entry points."""
    site = tmp_path / "site"
    (site / "nudge_pkg").mkdir(parents=True)
    (site / "nudge_pkg" / "__init__.py").write_text(textwrap.dedent(EXTERNAL))
    info = site / "nudge_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nudge-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deltabench.methods]\nnudge = nudge_pkg:Nudge\n")
    monkeypatch.syspath_prepend(str(site))
    return site


def test_an_entry_point_method_runs_end_to_end(cache, tmp_path, monkeypatch):
    from deltabench.methods import method_names

    _install_plugin(tmp_path, monkeypatch)
    assert "nudge" in method_names()
    df = deltabench.run(
        methods=["nudge", "deltaedit"], world=W, images=3, limit=2, sweep=(1, 2), options=TINY, out=tmp_path / "r"
    )
    rows = df.attrs["results"]
    nudge = rows[rows["method"] == "nudge"]
    assert len(nudge) == 2 * 2 * 2 and list(df["method"]) == ["nudge", "deltaedit", "inversion", "oracle-edit"]
    assert sorted(nudge["strength"].unique()) == [0.5, 1.0]  # x1 and x2 of its default strength
    weak, strong = (nudge[nudge["strength_scale"] == s]["psnr"].mean() for s in (1.0, 2.0))
    assert strong < weak < 60  # a real edit: twice the nudge moves the face further


def test_register_method_and_the_cli_take_it(cache, tmp_path, monkeypatch, capsys):
    from deltabench import methods
    from deltabench.cli import main

    site = _install_plugin(tmp_path, monkeypatch)
    from deltabench.registry import METHODS

    monkeypatch.setattr(METHODS, "registered", {})  # this test's registrations end with it
    sys.modules.pop("nudge_pkg", None)
    import nudge_pkg  # noqa: E402

    deltabench.register_method("nudge2", nudge_pkg.Nudge)
    assert methods.get_method("nudge2") is nudge_pkg.Nudge
    assert (
        main(["run", "--methods", "nudge2", "--world", W, "--limit", "2", "--sweep", "1", "--out", str(tmp_path / "r")])
        == 0
    )
    with pytest.raises(ValueError, match="built-in"):
        deltabench.register_method("deltaedit", nudge_pkg.Nudge)
    with pytest.raises(ValueError, match="subclass"):
        deltabench.register_method("bad", object)
    (site / "nudge_pkg-0.1.dist-info" / "entry_points.txt").write_text("[deltabench.methods]\nbroken = nope:X\n")
    assert main(["run", "--methods", "broken", "--world", W, "--out", str(tmp_path / "b")]) == 2
    assert "could not be loaded" in capsys.readouterr().err


def _imports(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (the one walker, tests/importgraph.py)."""
    from importgraph import graph

    return graph(root)


def test_no_import_cycle_among_the_packages_modules():
    graph = _imports(Path(deltabench.__file__).resolve().parents[1])
    assert {"deltabench.runner", "deltabench.api", "deltaedit.method"} <= set(graph)
    state, stack, cycles = {}, [], []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                cycles.append(stack[stack.index(w) :] + [w])
            elif w not in state:
                visit(w)
        stack.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            visit(v)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    for pkg in ("deltabench", "deltaedit", "baselines"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "deltabench" / "a.py").write_text("def f():\n    from deltabench.b import g\n")
    (tmp_path / "deltabench" / "b.py").write_text("from deltabench import a\n")
    g = _imports(tmp_path)
    assert g["deltabench.a"] == {"deltabench.b"} and g["deltabench.b"] == {"deltabench.a"}
    assert math.isfinite(len(g))


def test_fit_is_one_command_for_every_method(cache, tmp_path, capsys):
    from deltabench.cli import main

    work = tmp_path / "work"
    base = ["fit", "styleclip-gd", "--world", W, "--work-dir", str(work), "--n-images", "2"]
    assert main(base) == 0
    (fs3,) = list(work.rglob("fs3.safetensors"))
    assert str(fs3.parent) == capsys.readouterr().out.strip().splitlines()[-1]
    before = fs3.stat().st_mtime_ns
    assert main(base) == 0 and fs3.stat().st_mtime_ns == before  # cached: loaded, not recomputed
    assert main([*base, "--force"]) == 0 and fs3.stat().st_mtime_ns != before
    tiny = json.dumps(TINY["deltaedit"])
    assert main(["fit", "deltaedit", "--world", W, "--work-dir", str(work), "--options", tiny]) == 0
    assert list(work.rglob("mapper.safetensors"))
    assert main(["fit", "deltaedit", "--world", W, "--n-images", "2"]) == 2
    assert "no such settings" in capsys.readouterr().err
    assert main(["fit", "nosuch", "--world", W]) == 2
