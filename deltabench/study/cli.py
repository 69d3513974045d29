"""The ``deltabench study`` subcommands: make, serve, analyze."""

from __future__ import annotations


def _cmd_make(args) -> int:
    from deltabench.study.make import make_study

    make_study(
        args.run_dir,
        args.methods,
        args.out,
        rounds=args.rounds,
        seed=args.seed,
        checks=args.checks,
        strength=args.strength,
        participants_hint=args.participants_hint,
        title=args.title,
        force=args.force,
    )
    return 0


def _cmd_serve(args) -> int:
    from deltabench.study.serve import serve

    serve(args.study, port=args.port, host=args.host, responses=args.responses)
    return 0


def _cmd_analyze(args) -> int:
    from deltabench.study.analyze import analyze_files

    analyze_files(
        args.responses, args.out, study=args.study, max_check_failures=args.max_check_failures, seed=args.seed
    )
    return 0


def add_parser(subparsers) -> None:
    from deltabench.parse import int_at_least as _int_at_least

    s = subparsers.add_parser(
        "study",
        help="a user study (the paper's Figure 6) as a kit: make a page from a run's "
        "saved edits, serve it, analyse the responses",
    )
    ss = s.add_subparsers(dest="study_command", required=True, metavar="{make,serve,analyze}")
    m = ss.add_parser("make", help="a self-contained static study page from a run made with --save-edits")
    m.add_argument("run_dir", metavar="RUN_DIR", help="a run directory with saved edits (run --save-edits)")
    m.add_argument(
        "--methods", required=True, help="two or more of the run's methods, comma-separated, e.g. deltaedit,styleclip"
    )
    m.add_argument(
        "--rounds", type=_int_at_least(1), default=20, help="pairs per participant (default 20, as the paper)"
    )
    m.add_argument("--out", required=True, metavar="STUDY", help="folder for index.html, img/ and study.json")
    m.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the items chosen (participants' order and sides come from their id)",
    )
    m.add_argument(
        "--checks",
        type=_int_at_least(0),
        default=2,
        help="attention checks: the unedited image against a clear edit (default 2)",
    )
    m.add_argument("--strength", type=float, default=1.0, help="which of the run's strength multipliers (default 1)")
    m.add_argument(
        "--participants-hint",
        dest="participants_hint",
        type=_int_at_least(1),
        default=40,
        help="participants planned (recorded in study.json; the paper had 40)",
    )
    m.add_argument("--title", help="the page's title")
    m.add_argument("--force", action="store_true", help="replace a study already in --out")
    m.set_defaults(func=_cmd_make)
    v = ss.add_parser("serve", help="serve a study page and collect the responses it posts (localhost by default)")
    v.add_argument("study", metavar="STUDY", help="a folder made by `study make`")
    v.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    v.add_argument("--responses", help="folder the responses go to (default STUDY/responses)")
    v.set_defaults(func=_cmd_serve)
    a = ss.add_parser("analyze", help="preference rates with intervals, Bradley–Terry, exclusions, agreement, figure")
    a.add_argument("responses", nargs="+", metavar="RESPONSES", help="response files, or folders of them")
    a.add_argument("--out", required=True, help="folder for the figure, tables and index.html")
    a.add_argument(
        "--study",
        help="the study folder (or its study.json): files of another study, or whose trials "
        "do not match it, are left out",
    )
    a.add_argument(
        "--max-check-failures",
        dest="max_check_failures",
        type=_int_at_least(0),
        default=0,
        help="attention checks a participant may fail and still be included (default 0)",
    )
    a.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    a.set_defaults(func=_cmd_analyze)
