"""The user-study kit (``deltabench study``) in a real browser.

A tiny synthfaces-micro run with saved edits; a study of deltaedit against the run's reference
rows (oracle-edit: the renderer's perfect edit; inversion: no edit), so the three differ
clearly in manipulation accuracy. Simulated raters drive the page in headless Chromium
(Debian's ``chromium`` through Playwright, never a downloaded browser) with its keyboard
shortcuts, download their answers, and the analysis reads them:

- oracle raters (prefer the edit whose target attribute reached the target value, by the run's
  per-edit ``manipulation_accuracy``; ties broken to the pair's first method for even raters and
  its second for odd ones; realism: the higher PSNR) must give exactly the preference the run's
  numbers imply, per pair and per item: no sign, side or pairing error in page, schedule or
  analysis;
- "always left" raters must give exactly 50% (sides are balanced per participant);
- a rater who picks the unedited image in the attention checks is excluded;
- the page records the schedule its participant id implies (Python twin of the page's JS);
- bad response files get one line each; the server collects a posted response.

``DELTABENCH_STUDY_REPORT=DIR`` keeps the screenshot, the responses and the analysis in DIR.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deltabench.cli import main
from deltabench.study.analyze import bradley_terry, fleiss_kappa
from deltabench.study.schedule import schedule

pytestmark = pytest.mark.slow  # headless Chromium through Playwright

OPTS = {"deltaedit": {"config": {"n_generated": 64, "n_inverted": 16, "steps": 20, "batch": 16}}}
METHODS = ["deltaedit", "oracle-edit", "inversion"]
ROUNDS = 12  # 4 per method pair: every pair's sides balance exactly for each participant


def chromium() -> str:
    exe = os.environ.get("DELTABENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail(
            "headless Chromium is needed for the study test: `apt-get install chromium` "
            "(.ci/run does this) or set DELTABENCH_CHROMIUM to a Chromium binary"
        )
    return exe


@pytest.fixture(scope="module")
def run_dir(micro_root, tmp_path_factory):
    import torch

    import deltabench

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("study") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DELTABENCH_CACHE", str(micro_root.parent))
        deltabench.run(
            methods="deltaedit",
            world="synthfaces-micro",
            images=4,
            limit=4,
            sweep=(1,),
            batch=4,
            options=OPTS,
            out=out,
            save_edits=True,
            device="cpu",
        )
    torch.set_num_threads(n)
    return out


@pytest.fixture(scope="module")
def study(run_dir):
    out = run_dir.parent / "study"
    assert (
        main(
            [
                "study",
                "make",
                str(run_dir),
                "--methods",
                ",".join(METHODS),
                "--rounds",
                str(ROUNDS),
                "--out",
                str(out),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the study test drives Chromium with Playwright: pip install -e '.[test]' (or pip install playwright)"
        )
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium(),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


def truth(run_dir: Path, study_dir: Path):
    """image file -> (method, prompt, image) for rounds, -> "edit"/"unedited" for checks (a check may
    show an image a round shows too), and per-edit (accuracy, psnr) from results.csv."""
    s = json.loads((study_dir / "study.json").read_text())
    res = pd.read_csv(run_dir / "results.csv")
    res = res[res["strength_scale"] == 1.0].set_index(["method", "prompt_index", "image_index"])
    files, checks = {}, {}
    for it in s["items"]:
        for m, f in zip(it["methods"], it["images"]):
            files[f] = (m, it["prompt_index"], it["image_index"])
    for c in s["attention_checks"]:
        checks[c["edit"]] = "edit"
        checks[c["unedited"]] = "unedited"
    return s, files, checks, res


def oracle_answer(key, other, res, q: str, tie_first: bool, first: str):
    """+1 if the rater prefers ``key`` over ``other``."""
    col = "manipulation_accuracy" if q == "accuracy" else "psnr"
    a, b = (float(res.loc[k, col]) for k in (key, other))
    a, b = (0.0 if math.isnan(a) else a), (0.0 if math.isnan(b) else b)
    if a != b:
        return a > b
    return (key[0] == first) == tie_first


def drive(browser, url: str, pid: str, rater, shot: Path | None = None, download: bool = True) -> dict | None:
    """One participant: id, Enter, then per trial the rater's two keys and Enter; the download."""
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 720})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.fill("#pid", pid)
    page.keyboard.press("Enter")
    n = int(page.evaluate("document.querySelectorAll('#progress')[0].max"))
    for k in range(n):
        assert page.get_attribute("body", "data-trial") == str(k)
        assert page.text_content("#progress-text") == f"Pair {k + 1} of {n}"
        left, right = page.get_attribute("#img-left", "src"), page.get_attribute("#img-right", "src")
        kind = page.get_attribute("body", "data-kind")
        acc, real = rater(kind, left, right, page.text_content("#prompt"))
        assert page.is_disabled("#next")
        page.keyboard.press("ArrowLeft" if acc == "left" else "ArrowRight")
        page.keyboard.press("1" if real == "left" else "2")
        if shot is not None and k == 0:
            page.screenshot(path=str(shot))
        if k == n - 1 and download:
            with page.expect_download() as dl:
                page.keyboard.press("Enter")
        else:
            page.keyboard.press("Enter")
    page.wait_for_function("document.body.dataset.saved !== undefined")
    saved = page.get_attribute("body", "data-saved")
    r = None
    if download:
        assert saved == "download"
        r = json.loads(Path(dl.value.path()).read_text())
        assert dl.value.suggested_filename.endswith(f"-{pid}.json")
    ctx.close()
    assert not errors, errors
    return r if download else saved


def test_oracle_raters_in_a_browser_agree_with_the_run(run_dir, study, browser, tmp_path, capsys):
    s, files, checks, res = truth(run_dir, study)
    keep = Path(os.environ["DELTABENCH_STUDY_REPORT"]) if os.environ.get("DELTABENCH_STUDY_REPORT") else None
    url = (study / "index.html").as_uri()
    items_by_images = {tuple(sorted(it["images"])): it for it in s["items"]}

    def oracle(parity: int):
        def rate(kind, left, right, prompt):
            if kind == "check":
                return ("left" if checks[left] == "edit" else "right"), "left"
            it = items_by_images[tuple(sorted([left, right]))]
            assert prompt == it["target"]
            out = []
            for q in ("accuracy", "realism"):
                pref = oracle_answer(files[left], files[right], res, q, parity == 0, it["methods"][0])
                out.append("left" if pref else "right")
            return tuple(out)

        return rate

    def always_left(kind, left, right, prompt):
        return "left", "left"

    def inattentive(kind, left, right, prompt):  # picks the unedited image in the checks
        if kind == "check":
            return ("left" if checks[left] == "unedited" else "right"), "left"
        return "right", "right"

    resp = tmp_path / "responses"
    resp.mkdir()
    shot = (keep or tmp_path) / "study_page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    raters = {f"O{k}": oracle(k % 2) for k in range(4)} | {"L0": always_left, "L1": always_left, "X0": inattentive}
    got = {}
    for pid, rater in raters.items():
        got[pid] = drive(browser, url, pid, rater, shot=shot if pid == "O0" else None)
        (resp / f"{pid}.json").write_text(json.dumps(got[pid]))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

    # The page's randomisation is the one its participant id implies, balanced per participant.
    pairs = [it["pair"] for it in s["items"]]
    for pid, r in got.items():
        assert [{k: t[k] for k in ("kind", "item", "first_left")} for t in r["trials"]] == schedule(
            s["study_id"], pid, pairs, len(s["attention_checks"])
        )
        for p in set(pairs):
            lefts = [t["first_left"] for t in r["trials"] if t["kind"] == "round" and pairs[t["item"]] == p]
            assert sum(lefts) * 2 == len(lefts)
    assert got["O0"]["schedule"] != got["O1"]["schedule"]

    # Oracle raters (and the inattentive one, who must be excluded): exactly the run's numbers.
    out = tmp_path / "oracle"
    oracle_files = [str(resp / f"{p}.json") for p in ("O0", "O1", "O2", "O3", "X0")]
    assert main(["study", "analyze", *oracle_files, "--out", str(out), "--study", str(study)]) == 0
    a = json.loads((out / "analysis.json").read_text())
    assert [x["participant"] for x in a["excluded"]] == ["X0"] and a["included"] == 4 and not a["skipped"]
    lines = []
    for q, col in (("accuracy", "manipulation_accuracy"), ("realism", "psnr")):
        for it in s["items"]:
            m0, m1 = it["methods"]
            v = [float(res.loc[(m, it["prompt_index"], it["image_index"]), col]) for m in (m0, m1)]
            v = [0.0 if math.isnan(x) else x for x in v]
            row = next(r for r in a["per_item"] if r["question"] == q and r["item"] == it["id"])
            # 4 oracle raters: all on the better edit, or split 2:2 on a tie
            assert (row["first_chosen"], row["second_chosen"]) == (
                (4, 0) if v[0] > v[1] else (0, 4) if v[0] < v[1] else (2, 2)
            ), (q, it, row)
        for m0, m1 in s["pairs"]:
            its = [it for it in s["items"] if it["methods"] == [m0, m1]]
            acc = {m: [float(res.loc[(m, it["prompt_index"], it["image_index"]), col]) for it in its] for m in (m0, m1)}
            sc = [(0.0 if math.isnan(x) else x, 0.0 if math.isnan(y) else y) for x, y in zip(acc[m0], acc[m1])]
            implied = np.mean([1.0 if x > y else 0.0 if x < y else 0.5 for x, y in sc])
            r = next(r for r in a["pairs"] if r["question"] == q and r["method"] == m0 and r["versus"] == m1)
            assert r["rate"] == pytest.approx(implied, abs=1e-12) and r["participants"] == 4
            assert r["lo"] <= r["rate"] <= r["hi"]
            lines.append(
                f"{q:<9} {m0:>12} vs {m1:<12} oracle raters {100 * r['rate']:5.1f}% "
                f"[{100 * r['lo']:.1f}, {100 * r['hi']:.1f}]  run-implied {100 * implied:5.1f}%  "
                f"run {col} {np.nanmean(acc[m0]):.2f} vs {np.nanmean(acc[m1]):.2f} ({len(its)} items)"
            )
        # Bradley-Terry ranks as the methods' implied win rates do
        bt = [r["method"] for r in a["bradley_terry"] if r["question"] == q]
        wins = {
            m: next(r["rate"] for r in a["methods_rates"] if r["question"] == q and r["method"] == m) for m in METHODS
        }
        for m1 in METHODS:  # every two methods with different win rates in the same order
            for m2 in METHODS:
                if wins[m1] > wins[m2] + 1e-9:
                    assert bt.index(m1) < bt.index(m2), (q, bt, wins)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert (out / "figure.png").stat().st_size > 5_000 and (out / "table.tex").read_text().count("\\\\") == 7
    assert "Bradley" in (out / "index.html").read_text() and len(a["agreement"]) == 2

    # Always-left raters: exactly 50% for every pair and question (sides balanced per participant).
    out_l = tmp_path / "left"
    assert (
        main(
            [
                "study",
                "analyze",
                str(resp / "L0.json"),
                str(resp / "L1.json"),
                "--out",
                str(out_l),
                "--max-check-failures",
                "1",
            ]
        )
        == 0
    )  # "left" fails the checks whose edit is on the right
    al = json.loads((out_l / "analysis.json").read_text())
    assert al["included"] == 2 and [al["attention"][p]["passed"] for p in ("L0", "L1")] == [1, 1]
    assert {r["rate"] for r in al["pairs"]} == {0.5}
    if keep:
        for f in out.iterdir():
            shutil.copy(f, keep / f.name)
        shutil.copytree(resp, keep / "responses", dirs_exist_ok=True)
        shutil.copytree(study, keep / "page", dirs_exist_ok=True)

    # Bad response files: one line each, the good ones still analysed.
    bad = tmp_path / "bad"
    bad.mkdir()
    text = (resp / "O1.json").read_text()
    (bad / "truncated.json").write_text(text[: len(text) // 2])
    (bad / "other_study.json").write_text(json.dumps({**got["O2"], "study_id": "0123456789abcdef"}))
    (bad / "dup.json").write_text(json.dumps({**got["O0"]}))
    (bad / "missing.json").write_text(
        json.dumps({**got["O3"], "participant": "O9", "trials": got["O3"]["trials"][:-3]})
    )
    swapped = [dict(t) for t in got["L0"]["trials"]]
    swapped[0]["first_left"] = not swapped[0]["first_left"]
    (bad / "sides.json").write_text(json.dumps({**got["L0"], "participant": "L9", "trials": swapped}))
    capsys.readouterr()
    names = ["truncated", "other_study", "dup", "missing", "sides"]
    assert (
        main(
            [
                "study",
                "analyze",
                str(resp / "O0.json"),
                *(str(bad / f"{n}.json") for n in names),
                "--out",
                str(tmp_path / "bad_out"),
                "--study",
                str(study),
            ]
        )
        == 0
    )
    err = [x for x in capsys.readouterr().err.splitlines() if x.startswith("deltabench: warning:")]
    assert len(err) == 5, err
    expect = {
        "truncated": "not valid JSON",
        "other_study": "not this study",
        "dup": "already answered",
        "missing": "answered 9 of 12 rounds",
        "sides": "differ from what the participant id implies",
    }
    for n, line in zip(names, err):
        assert f"{n}.json" in line and expect[n] in line, (n, line)
    with capsys.disabled():
        print("\n".join(err))
    assert main(["study", "analyze", str(bad / "truncated.json"), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.count("deltabench: error:") == 1


def test_served_page_posts_its_responses(study, browser, tmp_path):
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from deltabench.study.serve import make_server

    server = make_server(study, port=0, responses=tmp_path / "collected", log=lambda s: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        saved = drive(browser, f"{base}/index.html", "S1", lambda *a: ("right", "left"), download=False)
        assert saved == "server"
        r = json.loads((tmp_path / "collected" / "S1.json").read_text())
        assert r["participant"] == "S1" and len(r["trials"]) == ROUNDS + 2
        for hidden in ("study.json", "responses/S1.json"):
            with pytest.raises(HTTPError) as e:
                urlopen(f"{base}/{hidden}")
            assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_make_refuses_a_run_without_saved_edits(run_dir, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "manifest.json", bare / "manifest.json")
    assert main(["study", "make", str(bare), "--methods", "deltaedit,inversion", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deltabench: error:") and "--save-edits" in err[0]
    for args, word in (
        (["--methods", "deltaedit"], "two or more"),
        (["--methods", "deltaedit,nope"], "nope"),
        (["--methods", "deltaedit,inversion", "--rounds", "17"], "--rounds 16 or fewer"),
    ):
        assert main(["study", "make", str(run_dir), *args, "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], err
    assert not (tmp_path / "s").exists()


def test_schedule_is_balanced_and_reproducible():
    pairs = [0, 1, 2] * 4 + [0]
    for pid in ("a", "b", "P07", "ü"):
        t = schedule("abc", pid, pairs, 3)
        assert t == schedule("abc", pid, pairs, 3)
        assert sorted(x["item"] for x in t if x["kind"] == "round") == list(range(len(pairs)))
        assert [x["item"] for x in t if x["kind"] == "check"] == [0, 1, 2]
        for p in (1, 2):
            assert sum(x["first_left"] for x in t if x["kind"] == "round" and pairs[x["item"]] == p) == 2
        assert abs(sum(x["first_left"] for x in t if x["kind"] == "round" and pairs[x["item"]] == 0) - 2.5) == 0.5
    assert len({json.dumps(schedule("abc", str(k), pairs, 2)) for k in range(20)}) == 20


def test_fleiss_kappa_and_bradley_terry_against_references():
    # Fleiss' kappa: the worked example of Wikipedia's "Fleiss' kappa" (10 items, 14 raters): 0.210
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    kappa, agree = fleiss_kappa(counts)
    assert kappa == pytest.approx(0.210, abs=5e-4) and agree == pytest.approx(0.378, abs=5e-4)
    # Bradley-Terry by MM = the maximum-likelihood fit (scipy) of the same wins
    from scipy.optimize import minimize

    wins = np.array([[0, 7, 9, 4], [3, 0, 6, 5], [1, 4, 0, 2], [6, 5, 8, 0]], dtype=float)
    p = bradley_terry(wins, prior=0.0)

    def nll(b):
        b = np.concatenate([[0.0], b])
        d = b[:, None] - b[None, :]
        return -(wins * (d - np.logaddexp(0, d))).sum()

    b = np.concatenate([[0.0], minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x])
    assert p == pytest.approx(np.exp(b) / np.exp(b).sum(), abs=1e-6)
    # a method that never wins: finite with the prior, and still last
    wins[2] = 0
    q = bradley_terry(wins)
    assert np.all(q > 0) and np.argmin(q) == 2 and abs(q.sum() - 1) < 1e-12


def test_two_method_study_as_the_paper(run_dir, tmp_path):
    """The paper's design (two methods, no Bradley–Terry): responses built with the Python twin of
    the page's schedule, every participant preferring oracle-edit for accuracy and deltaedit for
    realism in all but their first round; the figure is the stacked two-method bar."""
    out = tmp_path / "s2"
    assert (
        main(
            [
                "study",
                "make",
                str(run_dir),
                "--methods",
                "oracle-edit,deltaedit",
                "--rounds",
                "8",
                "--checks",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    s = json.loads((out / "study.json").read_text())
    assert s["pairs"] == [["oracle-edit", "deltaedit"]] and not s["attention_checks"]
    for pid in ("p1", "p2", "p3"):
        trials = []
        for pos, t in enumerate(schedule(s["study_id"], pid, [it["pair"] for it in s["items"]], 0)):
            it = s["items"][t["item"]]
            a = 0 if t["first_left"] else 1
            left, right = it["methods"][a], it["methods"][1 - a]
            side = {left: "left", right: "right"}
            flip = pos == 0
            trials.append(
                {
                    **t,
                    "position": pos,
                    "left": left,
                    "right": right,
                    "left_image": it["images"][a],
                    "right_image": it["images"][1 - a],
                    "accuracy": side["deltaedit" if flip else "oracle-edit"],
                    "realism": side["oracle-edit" if flip else "deltaedit"],
                }
            )
        (tmp_path / f"{pid}.json").write_text(
            json.dumps(
                {
                    "format": "deltabench-study-responses/1",
                    "study_id": s["study_id"],
                    "participant": pid,
                    "methods": s["methods"],
                    "rounds": 8,
                    "checks": 0,
                    "trials": trials,
                }
            )
        )
    assert main(["study", "analyze", str(tmp_path), "--out", str(tmp_path / "a"), "--study", str(out)]) == 0
    a = json.loads((tmp_path / "a" / "analysis.json").read_text())
    rate = {(r["question"], r["method"]): r["rate"] for r in a["methods_rates"]}
    assert rate[("accuracy", "oracle-edit")] == pytest.approx(7 / 8) and rate[
        ("realism", "deltaedit")
    ] == pytest.approx(7 / 8)
    assert rate[("accuracy", "deltaedit")] == pytest.approx(1 / 8) and not a["bradley_terry"]
    assert (tmp_path / "a" / "figure.png").stat().st_size > 5_000
