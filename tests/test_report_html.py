"""The report page in a real browser: headless Chromium opens ``index.html`` over HTTP, every
image must load, the summary table must have one row per method, and a screenshot is saved.

Chromium is Debian's ``chromium`` package; ``.ci/run`` installs it where it is missing.
``DELTABENCH_CHROMIUM`` points the test at another binary.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from deltabench.cli import main

pytestmark = pytest.mark.slow  # headless Chromium

OPTS = json.dumps(
    {
        m: {"config": {"n_generated": 64, "n_inverted": 16, "steps": 20, "batch": 16}}
        for m in ("deltaedit", "deltaedit-naive")
    }
)
METHODS = ("deltaedit", "deltaedit-naive")


def chromium() -> str:
    exe = os.environ.get("DELTABENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail(
            "headless Chromium is needed for the report test: `apt-get install chromium` "
            "(.ci/run does this) or set DELTABENCH_CHROMIUM to a Chromium binary"
        )
    return exe


def browse(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    # Flags for a closed network: without the background-networking ones Chromium keeps trying
    # to reach Google's hosts.
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--virtual-time-budget=5000",
        *extra,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def served_run(micro_root, monkeypatch, tmp_path):
    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    run = tmp_path / "run"
    assert (
        main(
            [
                "run",
                "--methods",
                ",".join(METHODS),
                "--world",
                "synthfaces-micro",
                "--images",
                "4",
                "--limit",
                "2",
                "--sweep",
                "0.5,1",
                "--batch",
                "4",
                "--options",
                OPTS,
                "--out",
                str(run),
            ]
        )
        == 0
    )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(run / "reports"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield run, f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()


def test_report_page_loads_every_image_and_lists_every_method(served_run, tmp_path):
    run, url = served_run
    dom = browse(url, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    body = re.search(r"<body([^>]*)>", page)
    assert body, page[:500]
    loaded = re.search(r'data-images-loaded="(\d+)"', body.group(1))
    broken = re.search(r'data-images-broken="(\d+)"', body.group(1))
    assert loaded and broken, f"the page's load script did not run: {body.group(0)}"
    n_img = len(re.findall(r"<img ", (run / "reports" / "index.html").read_text()))
    assert n_img >= 2  # the edit grid and the trade-off curves
    assert (int(loaded.group(1)), int(broken.group(1))) == (n_img, 0)
    table = re.search(r'<table[^>]*id="summary".*?<tbody>(.*?)</tbody>', page, re.S)
    assert table, "no summary table in the page"
    rows = re.findall(r"<tr>\s*<td>([^<]+)</td>", table.group(1))
    assert sorted(rows) == sorted(METHODS)

    shot = run / "reports" / "screenshot.png"
    res = browse(url, tmp_path, f"--screenshot={shot}", "--window-size=1200,1600")
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_broken_image_is_reported(served_run, tmp_path):
    run, url = served_run
    (run / "reports" / "tradeoff.png").unlink()
    dom = browse(url, tmp_path, "--dump-dom")
    assert re.search(r'data-images-broken="1"', dom.stdout)
