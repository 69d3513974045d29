"""``deltabench edit``: a real image in, an edited image out; clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deltabench.cli import main
from deltabench.world.attributes import sample_params
from deltabench.world.renderer import render

ARGS = ["--world", "synthfaces-micro", "--steps", "20", "--n-generated", "64", "--n-inverted", "16", "--batch", "16"]


@pytest.fixture
def env(micro_root, tmp_path, monkeypatch):
    # The micro world lives in <root>; point the cache there so the CLI finds it.
    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    (micro_root.parent / "worlds").exists() or pytest.fail("fixture layout changed")
    return tmp_path


def _face(path, size):
    img = render(sample_params(1, np.random.default_rng(5)), size)[0]
    Image.fromarray(img).save(path)
    return path


def test_edit_writes_an_image(env, capsys):
    src = _face(env / "face.png", 32)
    assert main(["edit", str(src), "--target", "face with glasses", "--out", str(env / "out.png"), *ARGS]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out == str(env / "out.png")
    assert np.asarray(Image.open(out)).shape == (32, 32, 3)


def test_wrong_size_is_resized_with_a_warning(env):
    src = _face(env / "big.png", 64)
    with pytest.warns(UserWarning, match="resizing"):
        assert main(["edit", str(src), "--target", "smiling face", "--out", str(env / "o.png"), *ARGS]) == 0


def test_non_image_file_is_a_clear_error(env, capsys):
    bad = env / "notes.png"
    bad.write_text("not an image")
    assert main(["edit", str(bad), "--target", "smiling face", *ARGS]) == 2
    assert "is not a readable image" in capsys.readouterr().err


def test_empty_and_identical_prompts(env, capsys):
    src = _face(env / "f.png", 32)
    assert main(["edit", str(src), "--target", "  ", *ARGS]) == 2
    assert "target prompt is empty" in capsys.readouterr().err
    assert main(["edit", str(src), "--source", "face", "--target", "face", *ARGS]) == 2
    assert "the same" in capsys.readouterr().err


def test_unknown_method(env, capsys):
    src = _face(env / "f.png", 32)
    assert main(["edit", str(src), "--target", "smiling face", "--method", "nope", *ARGS]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
