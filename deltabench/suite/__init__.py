"""A self-describing ground-truth test set, and scoring any editor's edits of it.

- :mod:`deltabench.suite.format`: the folder format (manifest with hashes, edits.json, params,
  images, masks), its reader that verifies every hash, the mask rule and the instruction phrasing.
- :mod:`deltabench.suite.export`: ``deltabench suite export`` (the run's test set, with its ground truth).
- :mod:`deltabench.suite.score`: ``deltabench score SUITE EDITS``: every metric of the domain,
  with ground truth, through the run's own scoring, summary and report, and the field's columns
  beside (:mod:`deltabench.suite.field`).
- :mod:`deltabench.suite.pie`: ``deltabench suite to-pie-bench SUITE OUT``: the suite in PIE-Bench's layout.
"""

from __future__ import annotations

from deltabench.suite.format import FORMAT, VERSION, SuiteError, is_suite, read_suite  # noqa: F401


def _cmd_export(args) -> int:
    from deltabench.suite.export import export_suite

    prompts = args.prompts
    if prompts is not None and prompts != "all":
        from pathlib import Path

        if not Path(prompts).is_file():
            raise ValueError(
                f"--prompts {prompts} does not exist; give 'all' or a CSV/JSON prompts file (default: the "
                f"world's benchmark prompts, as `deltabench run` uses)"
            )
    export_suite(
        world=args.world,
        out=args.out,
        images=args.images,
        prompts=prompts,
        seed=args.seed,
        device=args.device,
        force=args.force,
    )
    print(args.out)
    return 0


def _cmd_to_pie_bench(args) -> int:
    from deltabench.suite.pie import to_pie_bench

    if args.method is not None and args.edits is None:
        raise ValueError("--method names the editor of --edits; give --edits EDITS or drop --method")
    print(to_pie_bench(args.suite, args.out, edits=args.edits, method=args.method))
    return 0


def add_parser(subparsers) -> None:
    """Register ``deltabench suite export`` on the CLI's subparsers (``score SUITE EDITS`` is the
    ``score`` command's, :mod:`deltabench.cli`)."""
    from deltabench.parse import int_at_least

    s = subparsers.add_parser(
        "suite",
        help="a self-describing ground-truth test set for any editor (export it; "
        "score its edits with `deltabench score SUITE EDITS`)",
    )
    ss = s.add_subparsers(dest="suite_command", required=True, metavar="{export,to-pie-bench}")
    e = ss.add_parser(
        "export",
        help="write a world's test images, prompts with instructions, ground-truth "
        "parameters, per-edit masks and a hashed manifest",
    )
    e.add_argument(
        "--world",
        default="synthfaces",
        help="a synthetic world (synthfaces, church, their -micro variants) or a world JSON config",
    )
    e.add_argument("--images", type=int_at_least(2), default=32, help="test images (as run --images; default 32)")
    e.add_argument(
        "--prompts", help="'all' or a CSV/JSON prompts file (default: the world's benchmark prompts, as run uses)"
    )
    e.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="the run's seed: the same test images as `deltabench run --seed S` (default 0)",
    )
    e.add_argument("--out", required=True, metavar="SUITE", help="new folder to write the suite to")
    e.add_argument("--force", action="store_true", help="replace a suite already in --out")
    e.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    e.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads (0: what the process may use)")
    e.set_defaults(func=_cmd_export)
    t = ss.add_parser(
        "to-pie-bench",
        help="write a suite in PIE-Bench's layout (mapping_file.json with RLE masks, "
        "annotation_images/), optionally with one editor's edits",
    )
    t.add_argument("suite", metavar="SUITE", help="a folder written by `deltabench suite export`")
    t.add_argument("out", metavar="OUT", help="new (or empty) folder for the PIE-Bench layout")
    t.add_argument(
        "--edits",
        help="a folder of <id>.png (as `deltabench score SUITE EDITS` reads), written to "
        "OUT/output/<method>/annotation_images/ for PIE-Bench's evaluator",
    )
    t.add_argument("--method", help="the editor's name under OUT/output/ (default: the --edits folder's name)")
    t.set_defaults(func=_cmd_to_pie_bench)
