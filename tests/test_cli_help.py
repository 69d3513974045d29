"""The CLI explains itself: --version, a help line on every option, licences in weights list,
every dependency's version in a run manifest."""

from __future__ import annotations

import argparse

from deltabench import __version__
from deltabench.cli import build_parser, main


def _actions(parser, name="deltabench"):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for n, sp in a.choices.items():
                yield from _actions(sp, f"{name} {n}")
        else:
            yield name, a


def test_every_option_has_a_help_line_and_the_description_no_markup():
    missing = [
        f"{cmd} {a.option_strings or a.dest}" for cmd, a in _actions(build_parser()) if a.dest != "help" and not a.help
    ]
    assert not missing, missing
    desc = build_parser().description
    assert "``" not in desc and "\n" not in desc and desc.startswith("deltabench:")


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"deltabench {__version__}"


def test_weights_list_shows_each_licence(capsys, tmp_path):
    from deltabench.weights import registry

    assert main(["weights", "list", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for f in registry().files:
        assert f"{f.name}: {f.licence}" in out


def test_versions_cover_every_dependency():
    from deltabench.world.store import versions

    v = versions()
    for dist in (
        "torch",
        "torchvision",
        "numpy",
        "scipy",
        "pillow",
        "pytorch-fid",
        "onnxruntime",
        "open_clip",
        "safetensors",
        "scikit-image",
        "pandas",
    ):
        assert v.get(dist), dist
