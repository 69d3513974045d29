"""Progress in a batch job: ``deltabench.utils.progress`` prints throttled plain lines when stderr
is not a terminal (what, done/total, rate, ETA, postfix; a final line with the total time), a
kept tqdm bar on a terminal, and nothing under ``DELTABENCH_QUIET=1``; ``timed`` says when a
block starts and how long it took."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

import pytest

from deltabench import utils

LOOP = r"""
import time
from deltabench.utils import progress
t0 = time.monotonic()
bar = progress(range(40), desc="demo loop")
for i in bar:
    time.sleep(0.05)
    bar.set_postfix(loss=f"{2.0 - i / 40:.3f}")
elapsed = time.monotonic() - t0
for x in progress((j for j in range(8)), desc="no len"):  # an iterable without len
    time.sleep(0.05)
with progress(total=30, desc="by update") as b:  # the fs3 / download style: total= and update(n)
    for _ in range(6):
        time.sleep(0.05)
        b.update(5)
for i in progress(range(100), desc="quick"):  # done within a second: says nothing
    pass
print(elapsed)
"""

PROGRESS = re.compile(r"^deltabench: demo loop (\d+)/40 \((\d+)%\) ([\d.]+) (it/s|s/it), ETA (.+?), loss=(\d\.\d{3})$")
FINAL = re.compile(r"^deltabench: demo loop 40/40 \(100%\) done in ([\d.]+) s \(([\d.]+) it/s\), loss=1\.025$")


def _run(**env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DELTABENCH_QUIET"}
    env.update({"DELTABENCH_LOG_EVERY": "0.2", "OMP_NUM_THREADS": "1", **env_extra})
    r = subprocess.run([sys.executable, "-c", LOOP], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.slow
def test_progress_lines_when_stderr_is_a_pipe():
    r = _run()
    elapsed = float(r.stdout.strip().splitlines()[-1])
    lines = r.stderr.splitlines()
    demo = [ln for ln in lines if ln.startswith("deltabench: demo loop")]
    assert demo, r.stderr
    prog, final = demo[:-1], demo[-1]
    assert FINAL.match(final), final
    assert abs(float(FINAL.match(final).group(1)) - elapsed) < 0.5
    # throttled: about one line per 0.2 s, far fewer than the 40 items
    assert 3 <= len(prog) <= elapsed / 0.2 + 2, demo
    done_prev = 0
    for ln in prog:
        m = PROGRESS.match(ln)
        assert m, ln
        done, pct, rate, unit, eta = int(m.group(1)), int(m.group(2)), float(m.group(3)), m.group(4), m.group(5)
        assert done_prev < done < 40 and pct == round(100 * done / 40)
        assert unit == "it/s" and 2 < rate < 25  # ~20 it/s on an idle machine, slower on a busy one
        assert re.fullmatch(r"[\d.]+ s|\d+m\d\ds", eta)
        assert float(m.group(6)) == pytest.approx(2.0 - (done - 1) / 40, abs=1e-3)  # the latest postfix
        done_prev = done
    assert not any("\r" in ln or "|" in ln for ln in lines), "no tqdm bar in a log"
    # an iterable without len: a count and a rate, no ETA; total= + update(n): done/total and ETA
    nolen = [ln for ln in lines if ln.startswith("deltabench: no len")]
    assert nolen and all(re.match(r"^deltabench: no len \d+ it [\d.]+ it/s$", ln) for ln in nolen[:-1]), nolen
    assert re.match(r"^deltabench: no len 8 it done in [\d.]+ s \([\d.]+ it/s\)$", nolen[-1]), nolen
    upd = [ln for ln in lines if ln.startswith("deltabench: by update")]
    assert any(re.match(r"^deltabench: by update \d+/30 \(\d+%\) [\d.]+ it/s, ETA ", ln) for ln in upd), upd
    assert re.match(r"^deltabench: by update 30/30 \(100%\) done in ", upd[-1]), upd
    assert not any("quick" in ln for ln in lines), lines
    assert len(lines) == len(demo) + len(nolen) + len(upd), lines


@pytest.mark.slow
def test_log_every_throttles():
    r = _run(DELTABENCH_LOG_EVERY="100")  # one line at the first item after 1 s, then only the final line
    demo = [ln for ln in r.stderr.splitlines() if ln.startswith("deltabench: demo loop")]
    assert len(demo) == 2 and PROGRESS.match(demo[0]) and FINAL.match(demo[1]), demo


def test_quiet_prints_nothing():
    r = _run(DELTABENCH_QUIET="1")
    assert r.stderr == ""


def test_early_stop_says_so(monkeypatch, capsys):
    monkeypatch.delenv("DELTABENCH_QUIET", raising=False)
    monkeypatch.setenv("DELTABENCH_LOG_EVERY", "0.05")
    for i in utils.progress(range(10), desc="cut"):
        time.sleep(0.06)
        if i == 3:
            break
    err = capsys.readouterr().err.splitlines()
    assert re.match(r"^deltabench: cut 3/10 \(30%\) stopped after [\d.]+ s \([\d.]+ it/s\)$", err[-1]), err


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_keeps_the_tqdm_bar(monkeypatch):
    from tqdm import tqdm

    monkeypatch.delenv("DELTABENCH_QUIET", raising=False)
    fake = _Tty()
    monkeypatch.setattr(sys, "stderr", fake)
    bar = utils.progress(range(5), desc="tty loop")
    assert isinstance(bar, tqdm) and bar.leave and not bar.disable
    for _ in bar:
        bar.set_postfix(loss="1.50")
    out = fake.getvalue()
    assert "tty loop" in out and "5/5" in out and "loss=1.50" in out and not out.startswith("deltabench:")


def test_timed(monkeypatch, capsys):
    monkeypatch.delenv("DELTABENCH_QUIET", raising=False)
    with utils.timed("fit demo") as t:
        time.sleep(0.1)
    assert 0.1 <= t.seconds < 5
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "deltabench: fit demo started"
    assert re.fullmatch(r"deltabench: fit demo done in \d+\.\d s", err[1]) and len(err) == 2, err
    with pytest.raises(KeyError):
        with utils.timed("broken"):
            raise KeyError("x")
    assert re.fullmatch(
        r"deltabench: broken started\ndeltabench: broken failed after \d+\.\d s\n", capsys.readouterr().err
    )
    got = []
    with utils.timed("stage", log=got.append):
        pass
    assert got[0] == "stage started" and re.fullmatch(r"stage done in \d+\.\d s", got[1])
    monkeypatch.setenv("DELTABENCH_QUIET", "1")
    with utils.timed("silent"):
        pass
    assert capsys.readouterr().err == ""
    assert utils._duration(12.34) == "12.3 s" and utils._duration(700) == "11m40s"
    assert utils._duration(3725) == "1h02m05s"
