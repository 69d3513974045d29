"""The house's structure (issue 23): layers with no import running back up, no import circle
(tests/test_api.py), no room over 600 lines, no function over 80, each exception listed with
its reason. ``farm-studio look`` draws the same house."""

from __future__ import annotations

import ast

from importgraph import ROOT, graph, imported, modules

# Lowest first. A module may import its own layer and the ones below, never one above.
LAYERS = (
    (
        "generic",
        (
            "deltabench",
            "deltabench.utils",
            "deltabench.integrity",
            "deltabench.parse",
            "deltabench.env",
            "deltabench.registry",
            "deltabench.confighash",
            "deltabench.config",
            "deltabench.checkpoints",
            "deltabench.stats",
            "deltabench.prompts",
            "deltabench.distributed",
            "deltabench.imageio",
            "deltabench.sspace",
            "deltabench.weights",
            "deltabench.pixels",
            "deltabench.viz",
        ),
    ),
    ("models", ("deltabench.models",)),
    ("metrics, world", ("deltabench.metrics", "deltabench.world")),
    ("domain", ("deltabench.domainbase", "deltabench.domain", "deltabench.real")),
    (
        "methods",
        (
            "deltabench.methods",
            "deltabench.references",
            "deltabench.settings",
            "deltabench.shipped",
            "deltabench.evaluate",
            "deltaedit",
            "baselines",
        ),
    ),
    # what reads a finished run directory: its files, the tables and figures
    (
        "run directory, report",
        (
            "deltabench.harness.rundir",
            "deltabench.rundir",
            "deltabench.report",
            "deltabench.figures",
            "deltabench.tradeoff",
            "deltabench.study",
        ),
    ),
    ("run", ("deltabench.harness", "deltabench.runner", "deltabench.gap", "deltabench.suite", "deltabench.interop")),
    ("front", ("deltabench.api", "deltabench.cli", "deltabench.__main__")),
)
# Arrows up, each with its reason (all lazy: inside a function).
UPWARD = {
    ("deltabench", "deltabench.api"): "the package's lazy __getattr__: deltabench.run/edit/fit/score",
    ("deltabench", "deltabench.methods"): "the package's lazy __getattr__: register_method, EditMethod",
    (
        "deltabench.real.domain",
        "baselines.op",
    ): "a real domain config's method defaults parse with the method's config class",
    (
        "deltabench.real.domain",
        "baselines.lm",
    ): "a real domain config's method defaults parse with the method's config class",
    ("deltabench.weights", "deltabench.real.loaders"): "verifying a CLIP weight file reads it with the real loader",
    ("deltabench.suite.score", "deltabench.api"): "issue 26's score suite (in progress): scores through the API",
}
MAX_LINES, MAX_FUNCTION = 600, 80
LONG_MODULES = {
    "deltabench.cli": "every command's argparse declaration in one file (a parser per command is the split)",
    "deltabench.real.domain": "the real domain: config, test/train folders, official-format weights",
    "deltabench.real.loaders": "every official checkpoint format's loader",
    "deltabench.weights": "the weight-file registry, downloads and verification",
    # grew past 600 when ruff format put one argument per line (issue 23's formatting commit)
    "deltabench.study.analyze": "the study's analysis and its report writers (633 lines formatted)",
    "baselines.gd": "StyleCLIP-GD: the fs3 protocol, the released fs3.npy reader and the method; the next split",
}
LONG_FUNCTIONS = {
    ("deltabench.cli", "build_parser"): "one declaration of every command and flag",
    ("deltabench.figures", "edit_grids"): "matplotlib drawing, step by step",
    ("deltabench.tradeoff", "tradeoff_plot"): "matplotlib drawing, step by step",
    ("deltabench.real.nvidia", "generator_from_record"): "maps the official StyleGAN2-ADA pickle layout, key by key",
    ("deltabench.report", "table_cells"): "every column's cells, intervals and p-values",
    ("deltabench.study.analyze", "analyze"): "the study's analysis, in the order of its report",
    ("deltabench.study.make", "make_study"): "the study page, built in order",
    ("deltabench.suite.export", "export_suite"): "writes the suite's files in order, each with its record",
    ("deltabench.suite.score", "score_suite"): "checks, scores, summarises and reports a suite's editors in order",
    ("deltabench.interop.score", "score_bench"): "one benchmark layout from its reader to its table",
    # past 80 only with ruff format's one-argument-per-line layout
    ("deltabench.api", "run"): "the public API's signature and docstring, one keyword per line",
    ("deltabench.api", "score"): "the public API's signature and docstring, one keyword per line",
    ("deltabench.real.newdomain", "new_domain_config"): "writes a domain config field by field",
    ("deltabench.weights", "_download"): "a resumable, verified download and each of its error cases",
    ("deltabench.world.church.renderer", "_labels"): "a table of label positions",
    ("deltaedit.official", "convert_official_state_dict"): "maps the official checkpoint, key by key",
    ("baselines.gd", "load_official_fs3"): "reads the released fs3.npy layout, layer by layer",
    ("deltabench.world.faces.renderer", "_labels"): "a table of label positions",
    ("deltabench.world.train_clip", "train_clip"): "a training loop",
    ("deltaedit.train", "train_deltamapper"): "the official training loop, step by step",
    ("baselines.gd", "compute_fs3"): "the official fs3 computation, step by step",
    ("baselines.lm", "load_official_mapper"): "maps the official mapper checkpoint, key by key",
}


def layer(mod: str) -> int | None:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    return None if best is None else best[0]


def upward_imports(root=ROOT) -> set[tuple[str, str]]:
    """Every arrow (importer, imported) that runs from a layer to a higher one."""
    return {(m, d) for m, deps in graph(root).items() for d in deps if layer(d) > layer(m)}


def test_every_module_has_a_layer():
    assert [m for m, _ in modules() if layer(m) is None] == []


def test_no_import_runs_back_up_the_layers():
    bad = {(m, d): f"{LAYERS[layer(m)][0]} -> {LAYERS[layer(d)][0]}" for m, d in upward_imports()}
    assert not {k: v for k, v in bad.items() if k not in UPWARD}, bad


def test_metrics_and_worlds_do_not_import_each_other():
    mods = dict(modules())
    bad = [
        (m, name)
        for m, f in mods.items()
        for name, _ in imported(m, f)
        if (m.startswith("deltabench.metrics") and name.startswith("deltabench.world"))
        or (m.startswith("deltabench.world") and name.startswith("deltabench.metrics"))
    ]
    assert bad == []


def test_no_room_over_600_lines_and_no_function_over_80():
    long_modules, long_functions = {}, {}
    for m, f in modules():
        src = f.read_text()
        if len(src.splitlines()) > MAX_LINES:
            long_modules[m] = len(src.splitlines())
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long_functions[(m, node.name)] = n
    assert set(long_modules) <= set(LONG_MODULES), long_modules
    assert set(long_functions) <= set(LONG_FUNCTIONS), long_functions


def test_the_layer_check_catches_an_arrow_up(tmp_path):
    for pkg in ("deltabench", "deltaedit", "baselines"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "deltabench" / "utils.py").write_text("def f():\n    from deltabench.runner import run\n")
    (tmp_path / "deltabench" / "runner.py").write_text("from deltabench import utils\n")
    assert upward_imports(tmp_path) == {("deltabench.utils", "deltabench.runner")}
