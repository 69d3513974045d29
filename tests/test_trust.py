"""Numbers you can trust: no silent wrong result, no lost file, one clear line for bad input."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from deltabench.cli import main
from deltabench.world.attributes import sample_params
from deltabench.world.renderer import render

W = ["--world", "synthfaces-micro"]
TINY = {"deltaedit": {"config": {"n_generated": 48, "n_inverted": 8, "steps": 10, "batch": 8}}}
RUN = [
    "run",
    "--methods",
    "deltaedit",
    *W,
    "--images",
    "3",
    "--sweep",
    "1",
    "--batch",
    "3",
    "--options",
    json.dumps(TINY),
]
GLASSES = "source,target,attribute,value\nface,face with glasses,glasses,glasses\n"
RED = "source,target,attribute,value\nface,face with red hair,hair_color,red\n"


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _numbers(rows, drop=("ms_per_edit", "unit")):
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def _call(argv, capsys):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def _face(path, seed=5, size=32):
    Image.fromarray(render(sample_params(1, np.random.default_rng(seed)), size)[0]).save(path)
    return path


# 1 ----------------------------------------------------------------------------------------
def test_force_never_deletes_a_directory_deltabench_did_not_make(cache, tmp_path, capsys):
    p = tmp_path / "p"
    p.mkdir()
    (p / "manifest.json").write_text('{"name": "app"}')
    (p / "thesis.tex").write_text("x")
    rc, err = _call([*RUN, "--prompts", _csv(tmp_path, GLASSES), "--out", p, "--force"], capsys)
    assert rc == 2 and "not a deltabench run" in err
    assert (p / "thesis.tex").read_text() == "x" and (p / "manifest.json").read_text() == '{"name": "app"}'
    # A run directory deltabench made: --force clears the run, and keeps a file the user put there.
    r = tmp_path / "r"
    assert main([*RUN, "--prompts", _csv(tmp_path, GLASSES), "--out", str(r)]) == 0
    assert (r / ".deltabench-run").is_file()
    (r / "notes.txt").write_text("mine")
    rc, err = _call([*RUN, "--prompts", _csv(tmp_path, RED, "red.csv"), "--out", r], capsys)
    assert rc == 2 and "different config" in err  # without --force: refused, nothing touched
    assert main([*RUN, "--prompts", _csv(tmp_path, RED, "red.csv"), "--out", str(r), "--force"]) == 0
    assert (r / "notes.txt").read_text() == "mine"
    assert {x["target"] for x in _rows(r / "results.csv")} == {"face with red hair"}
    # A legacy/unmarked run directory holding a foreign file: --force refuses and names it.
    (r / ".deltabench-run").unlink()
    rc, err = _call([*RUN, "--prompts", _csv(tmp_path, GLASSES), "--out", r, "--force"], capsys)
    assert rc == 2 and "notes.txt" in err and (r / "results.csv").is_file()


def _csv(tmp_path, text, name="prompts.csv"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


# 2 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("change", ["prompts", "seed", "images"])
def test_resume_recomputes_units_whose_config_changed(cache, tmp_path, capsys, change):
    first = [*RUN, "--prompts", _csv(tmp_path, GLASSES)]
    second = {
        "prompts": [*RUN, "--prompts", _csv(tmp_path, RED, "red.csv")],
        "seed": [*first, "--seed", "5"],
        "images": [a if a != "3" else "2" for a in first],
    }[change]
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert main([*first, "--out", str(out)]) == 0
    old = _rows(out / "results.csv")
    assert main([*second, "--out", str(out), "--resume"]) == 0
    assert "moved to results.superseded.csv" in capsys.readouterr().err
    assert main([*second, "--out", str(fresh)]) == 0
    got, want = _rows(out / "results.csv"), _rows(fresh / "results.csv")
    assert _numbers(got) == _numbers(want)  # every row recomputed for the new config
    assert _numbers(got) != _numbers(old)
    assert _numbers(_rows(out / "results.superseded.csv")) == _numbers(old)  # kept, not lost
    s_got, s_want = _rows(out / "summary.csv"), _rows(fresh / "summary.csv")
    timing = ("ms_per_edit", "fit_seconds", "peak_mb")
    assert _numbers(s_got, timing) == _numbers(s_want, timing)


# 3 ----------------------------------------------------------------------------------------
def _flip(path, at=None):
    data = bytearray(path.read_bytes())
    i = len(data) - 17 if at is None else at
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "method,pattern",
    [("deltaedit", "mapper.safetensors"), ("deltaedit", "pool-*.safetensors"), ("styleclip-gd", "fs3.safetensors")],
)
def test_a_corrupted_method_cache_is_an_error_naming_the_file(cache, tmp_path, capsys, method, pattern):
    work = tmp_path / "work"
    argv = [
        "run",
        "--methods",
        method,
        *W,
        "--images",
        "2",
        "--limit",
        "1",
        "--sweep",
        "1",
        "--options",
        json.dumps(TINY if method == "deltaedit" else {}),
        "--work-dir",
        work,
    ]
    assert main([*map(str, argv), "--out", str(tmp_path / "a")]) == 0
    (f,) = list(work.rglob(pattern))
    _flip(f)
    if pattern.startswith("pool"):  # the pool is read only to train: make the mapper a cache miss
        for m in work.rglob("mapper.safetensors*"):
            m.unlink()
    rc, err = _call([*argv, "--out", tmp_path / "b"], capsys)
    assert rc == 2 and str(f) in err and "rm '" in err and "Traceback" not in err
    # A truncated file is caught the same way.
    f.write_bytes(f.read_bytes()[:100])
    rc, err = _call([*argv, "--out", tmp_path / "c"], capsys)
    assert rc == 2 and str(f) in err and "bytes" in err


def test_a_corrupted_lm_mapper_is_an_error(cache, tmp_path, capsys):
    from baselines.lm import StyleCLIPMapper
    from deltabench.domain import SynthfacesDomain
    from deltabench.integrity import CacheIntegrityError
    from deltabench.world.world import load_world

    domain = SynthfacesDomain(load_world("synthfaces-micro"))
    m = StyleCLIPMapper(domain, tmp_path, config={"steps": 2, "batch": 2, "n_train": 4})
    m.fit()
    m.mapper_for("face with glasses")
    f, _ = m._files("face with glasses")
    _flip(f)
    again = StyleCLIPMapper(domain, tmp_path, config={"steps": 2, "batch": 2, "n_train": 4})
    again.fit()
    with pytest.raises(CacheIntegrityError, match="sha256"):
        again.mapper_for("face with glasses")


# 4 ----------------------------------------------------------------------------------------
def test_a_corrupted_world_stage_is_never_blessed_into_a_world(micro_root, tmp_path):
    from deltabench.integrity import CacheIntegrityError
    from deltabench.world.build import build_world
    from deltabench.world.catalog import load_world_config

    cfg = load_world_config("synthfaces-micro")
    root = tmp_path / "worlds"
    shutil.copytree(micro_root / "stages", root / "stages")
    (stage,) = list((root / "stages").glob(f"generator-{cfg.stage_hash('generator')}.safetensors"))
    _flip(stage)
    with pytest.raises(CacheIntegrityError, match="generator") as e:
        build_world(cfg, root=root, log=lambda s: None)
    assert "--only generator --force" in str(e.value)
    assert not any(p.name.startswith("synthfaces-micro-") for p in root.iterdir())


# 5 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_strengths_are_refused_before_any_work(cache, tmp_path, capsys, bad):
    img = _face(tmp_path / "f.png")
    rc, err = _call(["edit", img, "--target", "face with glasses", "--strength", bad, *W], capsys)
    assert rc == 2 and "--strength" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
    rc, err = _call([*RUN, "--sweep", f"1,{bad}", "--out", tmp_path / "r"], capsys)
    assert rc == 2 and "--sweep" in err and not (tmp_path / "r").exists()


# 6 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options,word",
    [
        ({"deltaedit": {"confg": {"steps": 5}}}, "confg"),
        ({"nosuch": {}}, "nosuch"),
        ({"deltaedit": {"config": {"stpes": 5}}}, "stpes"),
        ({"deltaedit": {"config": {"steps": "5"}}}, "steps"),
    ],
)
def test_misspelt_options_are_errors(cache, tmp_path, capsys, options, word):
    rc, err = _call([*RUN[:-2], "--options", json.dumps(options), "--out", tmp_path / "r"], capsys)
    assert rc == 2 and word in err and not (tmp_path / "r").exists()


# 7 ----------------------------------------------------------------------------------------
def test_train_steps_and_pool_sizes_are_checked_and_honoured(cache, tmp_path, capsys):
    base = ["train", "deltaedit", *W, "--work-dir", tmp_path, "--n-inverted", "8", "--batch", "4"]
    for steps in ("-5", "0"):
        rc, err = _call([*base, "--steps", steps], capsys)
        assert rc == 2 and "--steps" in err
    assert not tmp_path.joinpath("x").exists() and not any(tmp_path.iterdir())
    assert main([*map(str, base), "--steps", "3", "--n-generated", "0"]) == 0
    (info,) = list(tmp_path.rglob("train.json"))
    cfg = json.loads(info.read_text())["config"]
    assert cfg["n_generated"] == 0 and cfg["steps"] == 3 and cfg["n_inverted"] == 8


# 8 ----------------------------------------------------------------------------------------
def test_16_bit_images_are_scaled_not_saturated(tmp_path):
    from deltabench.imageio import load_image as _load_image

    ramp = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472
    f = tmp_path / "gray16.png"
    Image.fromarray(ramp).save(f)
    with Image.open(f) as im:
        assert im.mode.startswith("I")  # PIL reads it as a 16/32-bit integer image
    with pytest.warns(UserWarning, match="8 bits"):
        x = _load_image(f, 32)  # [1, 3, 32, 32] in [-1, 1]
    got = ((x[0, 0] + 1) * 127.5).round().numpy()
    want = np.round(ramp / 65535 * 255)
    assert np.array_equal(got, want)
    assert (got == 255).mean() < 0.01  # PIL's convert("RGB") clips 99.7 % of these to 255


# 9 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,text,word",
    [
        ("attr.csv", "face,face with glasses,glasses_type,glasses\n", "unknown attribute 'glasses_type'"),
        ("value.csv", "face,face with glasses,glasses,maybe\n", "has no value 'maybe'"),
        ("missing.json", '[{"source": "face"}]', "no text for ['target']"),
        ("object.json", '{"source": "face", "target": "smiling face"}', "holds a JSON dict"),
        ("strings.json", '["face", "smiling face"]', "is not an object"),
    ],
)
def test_prompt_files_give_clear_errors(cache, tmp_path, capsys, name, text, word):
    f = tmp_path / name
    f.write_text(text)
    rc, err = _call([*RUN, "--prompts", f, "--out", tmp_path / "r"], capsys)
    assert rc == 2 and word in err and str(f) in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# bad input: one line, exit 2, nothing created ----------------------------------------------
def _fixtures(d):
    d.mkdir()
    (d / "binary.csv").write_bytes(b"\x80\x81\xfe\xff\x00" * 20)
    (d / "binary.json").write_bytes(b"\x80\x81\xfe\xff\x00" * 20)
    (d / "file.txt").write_text("x")
    (d / "options.json").write_bytes(b"\xff\xfe\x00\x01")
    _face(d / "face.png")
    (d / "imgdir").mkdir()
    garbage = d / "garbage-run"
    garbage.mkdir()
    (garbage / "manifest.json").write_text("{not json")
    foreign = d / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    (d / "norun").mkdir()
    return d


def _bad_inputs(d):
    run = ["run", "--methods", "deltaedit", *W, "--limit", "1", "--out", str(d / "newrun")]
    edit = ["edit", str(d / "face.png"), *W, "--target", "face with glasses"]
    return {
        "sweep-abc": ([*run, "--sweep", "abc"], "--sweep"),
        "sweep-0": ([*run, "--sweep", "0"], "--sweep"),
        "sweep-nan": ([*run, "--sweep", "nan"], "--sweep"),
        "sweep-negative": ([*run, "--sweep", "1,-2"], "--sweep"),
        "seed-negative": ([*run, "--seed", "-1"], "--seed"),
        "batch-0": ([*run, "--batch", "0"], "--batch"),
        "images-0": ([*run, "--images", "0"], "--images"),
        "images-abc": ([*run, "--images", "abc"], "--images"),
        "limit-0": ([*run, "--limit", "0"], "--limit"),
        "options-misspelt": ([*run, "--options", '{"deltaedit": {"confg": {}}}'], "confg"),
        "options-unknown-method": ([*run, "--options", '{"nosuch": {}}'], "nosuch"),
        "options-wrong-type": ([*run, "--options", '{"deltaedit": {"config": {"steps": "five"}}}'], "steps"),
        "options-not-object": ([*run, "--options", "[1, 2]"], "--options"),
        "options-not-json": ([*run, "--options", "{steps: 5"], "--options"),
        "options-binary-file": ([*run, "--options", str(d / "options.json")], "options.json"),
        "options-negative-steps": ([*run, "--options", '{"deltaedit": {"config": {"steps": -5}}}'], "steps"),
        "prompts-binary": ([*run, "--prompts", str(d / "binary.csv")], "binary.csv"),
        "prompts-missing": ([*run, "--prompts", str(d / "nope.csv")], "nope.csv"),
        "methods-unknown": (["run", "--methods", "nosuch", *W, "--out", str(d / "newrun")], "nosuch"),
        "world-binary": ([*run[:3], "--world", str(d / "binary.json"), *run[5:]], "binary.json"),
        "world-unknown": ([*run[:3], "--world", "nosuchworld", *run[5:]], "nosuchworld"),
        "out-is-file": ([*run[:-1], str(d / "file.txt")], "file.txt"),
        "out-under-file": ([*run[:-1], str(d / "file.txt" / "sub")], "file.txt"),
        "out-garbage-manifest": ([*run[:-1], str(d / "garbage-run")], "manifest.json"),
        "out-foreign-dir": ([*run[:-1], str(d / "foreign")], "thesis.tex"),
        "eval-images-0": (["eval", *W, "--images", "0"], "--images"),
        "card-n-0": (["world", "card", *W, "--n", "0"], "--n"),
        "build-threads-negative": (["world", "build", *W, "--threads", "-1"], "--threads"),
        "build-world-binary": (["world", "build", "--world", str(d / "binary.json")], "binary.json"),
        "train-steps-negative": (["train", "deltaedit", *W, "--steps", "-5"], "--steps"),
        "train-steps-0": (["train", "deltaedit", *W, "--steps", "0"], "--steps"),
        "train-unknown-method": (["train", "nosuch", *W], "nosuch"),
        "edit-directory": (["edit", str(d / "imgdir"), *W, "--target", "smiling face"], "imgdir"),
        "edit-missing": (["edit", str(d / "nope.png"), *W, "--target", "smiling face"], "nope.png"),
        "edit-out-dir": ([*edit, "--out", str(d / "imgdir")], "--out"),
        "edit-out-missing-folder": ([*edit, "--out", str(d / "no" / "e.png")], "--out"),
        "edit-strength-nan": ([*edit, "--strength", "nan"], "--strength"),
        "edit-unknown-words": (["edit", str(d / "face.png"), *W, "--target", "xxxxqqq 123"], "xxxxqqq"),
        "edit-same-prompts": (["edit", str(d / "face.png"), *W, "--source", "face", "--target", "Face"], "same"),
        "edit-train-flags-on-gd": ([*edit, "--method", "styleclip-gd", "--steps", "5"], "styleclip-gd"),
        "weights-url-file": (
            ["weights", "fetch", "ViT-B-32.pt", "--url", "file:///etc/passwd", "--dir", str(d / "w")],
            "--url",
        ),
        "weights-dir-is-file": (["weights", "list", "--dir", str(d / "file.txt")], "--dir"),
        "report-not-a-run": (["report", str(d / "norun")], "norun"),
        "report-missing": (["report", str(d / "nosuchrun")], "nosuchrun"),
    }


BAD = sorted(_bad_inputs(__import__("pathlib").Path("/x")))


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_clear_line_before_any_work(cache, tmp_path, capsys, case):
    d = _fixtures(tmp_path / "in")
    argv, word = _bad_inputs(d)[case]
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    rc, err = _call(argv, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc == 2, err
    assert [x for x in lines if x.startswith("deltabench: error:")] == lines[-1:], err
    assert sum("deltabench: error:" in x for x in lines) == 1 and "Traceback" not in err, err
    assert word in lines[-1], err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing created, nothing removed


def test_at_least_thirty_bad_inputs():
    assert len(BAD) >= 30


def test_report_refuses_a_malicious_unit_file(cache, tmp_path, capsys):
    out = tmp_path / "r"
    assert main([*RUN, "--limit", "1", "--references", "none", "--out", str(out)]) == 0
    (unit,) = list((out / "units").glob("*.pt"))

    class Evil:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    torch.save({"suite": {}, "examples": Evil()}, unit)
    rc, err = _call(["report", out], capsys)
    assert rc == 2 and str(unit) in err and "allow-list" in err
    assert not (tmp_path / "PWNED").exists() and not __import__("pathlib").Path("PWNED").exists()
    # A garbage results row: a clear error naming the file and line.
    with open(out / "results.csv", "a") as f:
        f.write("deltaedit,notanumber\n")
    rc, err = _call([*RUN, "--limit", "1", "--out", out, "--resume"], capsys)
    assert rc == 2 and "results.csv, line" in err


def test_unknown_prompt_words_warn_loudly_in_a_run(cache, tmp_path, capsys):
    f = tmp_path / "p.csv"
    f.write_text("face,face with xxxxqqq\n")
    assert main([*RUN, "--prompts", str(f), "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "WARNING" in err and "xxxxqqq" in err


def test_a_long_prompt_says_it_was_cut(micro_world):
    from deltabench.domain import SynthfacesDomain

    domain = SynthfacesDomain(micro_world)
    n = domain.clip.tokenizer.context_length
    problems = domain.prompt_problems(" ".join(["face"] * n))
    assert any("is cut to the CLIP context" in p for p in problems)
    assert domain.prompt_problems("face with glasses") == []


# also --------------------------------------------------------------------------------------
def test_a_second_run_into_the_same_out_is_refused_while_the_first_holds_it(cache, tmp_path, capsys):
    from deltabench.runner import run_lock

    out = tmp_path / "r"
    with run_lock(out):
        rc, err = _call([*RUN, "--limit", "1", "--out", out], capsys)
        assert rc == 2 and "another deltabench run is writing" in err and "pid" in err
    assert main([*RUN, "--limit", "1", "--out", str(out)]) == 0  # the lock is released with its holder


def test_a_run_streams_its_test_images(cache, tmp_path, monkeypatch):
    """The run never holds every test image: it asks for them in chunks of at most 128."""
    from deltabench.domain import SynthfacesDomain, TestImages

    seen = []
    real_batch = TestImages.batch

    def batch(self, a, b):
        seen.append(b - a)
        return real_batch(self, a, b)

    monkeypatch.setattr(TestImages, "images", property(lambda self: pytest.fail("all images materialised")))
    monkeypatch.setattr(TestImages, "batch", batch)
    real_invert = SynthfacesDomain.invert
    sizes = []
    monkeypatch.setattr(
        SynthfacesDomain, "invert", lambda self, x, batch=128: sizes.append(len(x)) or real_invert(self, x)
    )
    argv = [
        "run",
        "--methods",
        "deltaedit",
        *W,
        "--images",
        "300",
        "--batch",
        "50",
        "--sweep",
        "1",
        "--prompts",
        _csv(tmp_path, GLASSES),
        "--options",
        json.dumps(TINY),
    ]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    assert max(seen) <= 128 and max(sizes) <= 128 and sum(s for s in sizes if s > 1) == 300
    assert not (tmp_path / "r" / ".work").exists()  # the on-disk batches go with the finished run


def test_streamed_batches_are_the_images(micro_world):
    from deltabench.domain import SynthfacesDomain

    test = SynthfacesDomain(micro_world).test_images(300, seed=3)
    full = torch.cat([micro_world.render(test.params[i : i + 256]) for i in range(0, 300, 256)])
    parts = torch.cat([test.batch(a, min(a + 128, 300)) for a in range(0, 300, 128)])
    assert torch.equal(full, parts) and torch.equal(test.images, full)


def test_fit_seconds_accumulate_over_an_interrupted_fit(micro_world, tmp_path, monkeypatch):
    import deltaedit.train as tr
    from deltabench.domain import SynthfacesDomain

    domain = SynthfacesDomain(micro_world)
    cfg = tr.DeltaEditConfig(n_generated=48, n_inverted=8, steps=8, batch=8, checkpoint_every=4)
    calls = {"n": 0}
    real = tr.pair_batch

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr, "pair_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tr.train_deltamapper(domain, cfg, tmp_path / "m", seed=0)
    state = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and state["seconds"] > 0  # the interruption happened after a checkpoint
    monkeypatch.setattr(tr, "pair_batch", real)
    _, info = tr.train_deltamapper(domain, cfg, tmp_path / "m", seed=0)
    assert info["resumed_seconds"] == pytest.approx(state["seconds"])
    assert info["fit_seconds"] == pytest.approx(state["seconds"] + info["pool_seconds"] + info["train_seconds"])


def test_a_damaged_cached_copy_of_a_shipped_world_says_which_to_delete(micro_root, tmp_path, monkeypatch):
    from deltabench.world import store
    from deltabench.world.catalog import load_world_config
    from deltabench.world.world import load_world

    cfg = load_world_config("synthfaces-micro")
    name = store.world_dirname(cfg)
    shipped, cached = tmp_path / "shipped", tmp_path / "cache" / "worlds"
    shutil.copytree(micro_root / name, shipped / name)
    shutil.copytree(micro_root / name, cached / name)
    _flip(cached / name / "clip.safetensors")
    monkeypatch.setattr(store, "shipped_root", lambda: shipped)
    with pytest.raises(store.WorldCacheError) as e:
        load_world("synthfaces-micro", roots=[cached, shipped])
    msg = str(e.value)
    assert f"rm -r '{cached / name}'" in msg and "shipped" in msg and "--force" not in msg
