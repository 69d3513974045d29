"""Small shared helpers: seeding, progress bars, devices, image conversions."""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def _quiet() -> bool:
    return os.environ.get("DELTABENCH_QUIET") == "1"


def _log_every() -> float:
    """Seconds between two plain progress lines (``DELTABENCH_LOG_EVERY``, default 10)."""
    try:
        every = float(os.environ.get("DELTABENCH_LOG_EVERY", "10"))
    except ValueError:
        return 10.0
    return every if every >= 0 and math.isfinite(every) else 10.0


def stamp(line: str) -> str:
    """``line``, after the wall-clock time (``[2026-12-07 17:04:05] ...``) when ``DELTABENCH_LOG_TIME=1``."""
    if os.environ.get("DELTABENCH_LOG_TIME") == "1":
        return time.strftime("[%Y-%m-%d %H:%M:%S] ") + line
    return line


def log_line(line: str) -> None:
    """A run's log line to stderr (time-stamped under ``DELTABENCH_LOG_TIME=1``)."""
    print(stamp(line), file=sys.stderr, flush=True)


def _say(line: str) -> None:
    """One ``deltabench: ...`` line to stderr now (silent under ``DELTABENCH_QUIET=1``)."""
    if not _quiet():
        print(stamp(f"deltabench: {line}"), file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    """``12.3 s``, ``11m40s``, ``1h02m05s``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress(iterable=None, **kw):
    """Progress of a long loop, for a terminal and for a log alike (tqdm's interface).

    - stderr is a terminal: a tqdm bar, kept in the scrollback when it finishes.
    - stderr is not a terminal (``2>log``, CI, slurm, notebooks): no bar; plain lines such as
      ``deltabench: clip 120/1100 (11%) 1.4 it/s, ETA 11m40s, loss=1.823`` at most every
      ``DELTABENCH_LOG_EVERY`` seconds (default 10; the first once the loop has run a second),
      and one line when the loop ends with its total time. A loop that ends within its first
      second says nothing.
    - ``DELTABENCH_QUIET=1``: nothing at all.

    Takes an iterable (with or without ``len``) and/or ``total=``, ``initial=``, ``desc=``,
    ``unit=``, ``unit_scale=``, ``unit_divisor=``; the result iterates, is a context manager,
    and has ``update``, ``set_postfix``, ``set_postfix_str``, ``set_description``, ``close``.
    """
    if kw.get("disable") is True or _quiet():
        kw["disable"] = True
        return tqdm(iterable, **kw)
    kw.pop("disable", None)
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        tty = False
    if tty:
        kw.setdefault("dynamic_ncols", True)
        kw.setdefault("leave", True)
        return tqdm(iterable, **kw)
    return LogProgress(iterable, **kw)


class LogProgress:
    """The non-terminal face of :func:`progress`: tqdm's interface, throttled plain lines."""

    def __init__(
        self,
        iterable=None,
        desc: str | None = None,
        total: float | None = None,
        initial: float = 0,
        unit: str = "it",
        unit_scale: bool = False,
        unit_divisor: int = 1000,
        **_ignored,
    ):
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except (TypeError, AttributeError):
                total = None
        self.total = total
        self.desc = desc or ""
        self.n = self.initial = initial
        self.unit, self.unit_scale, self.unit_divisor = unit, bool(unit_scale), unit_divisor
        self.postfix = ""
        self.disable = False
        self.every = _log_every()
        self.start_t = time.monotonic()
        self._next_t = self.start_t + min(1.0, self.every)  # a loop under a second stays silent
        self._printed = False
        self._closed = False
        self._iterating = False
        self._warm: tuple[float, float] | None = None  # (time, count) when the first item finished

    # --- tqdm's interface -------------------------------------------------------------
    def __iter__(self):
        if self.iterable is None:
            raise TypeError("progress() was given no iterable to iterate")
        self._iterating = True  # the loop's end closes the bar: its last line is the final one
        try:
            for x in self.iterable:
                yield x
                self.update(1)
        finally:
            self.close()

    def __len__(self):
        if self.total is not None:
            return int(self.total)
        return len(self.iterable)

    def __bool__(self):
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._warm is None:  # the first item carries the warm-up (loading, first allocations)
            self._warm = (time.monotonic(), self.n)
        if self._closed or (self._iterating and self.total is not None and self.n >= self.total):
            return
        now = time.monotonic()
        if now >= self._next_t:
            self._next_t = now + self.every
            self._printed = True
            _say(self._line(now))

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    set_description_str = set_description

    def refresh(self, *a, **k) -> None:
        pass

    def clear(self, *a, **k) -> None:
        pass

    def reset(self, total: float | None = None) -> None:
        self.n = self.initial = 0
        if total is not None:
            self.total = total
        self.start_t = time.monotonic()
        self._next_t = self.start_t + min(1.0, self.every)
        self._warm = None

    @staticmethod
    def write(s: str, file=None, end: str = "\n", nolock: bool = False) -> None:
        print(s, file=file or sys.stderr, end=end, flush=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        if self._printed or now - self.start_t >= min(1.0, self.every):
            _say(self._line(now, final=True))

    # --- the line ---------------------------------------------------------------------
    def _count(self, x: float) -> str:
        if self.unit_scale:
            from tqdm import tqdm as _tqdm

            return _tqdm.format_sizeof(x, divisor=self.unit_divisor)
        return f"{x:g}" if isinstance(x, float) else str(x)

    def _rate(self, rate: float) -> str:
        if self.unit_scale:
            return f"{self._count(rate)}{self.unit}/s"
        if rate >= 1 or rate == 0:
            return f"{rate:.{2 if rate < 10 else 1 if rate < 100 else 0}f} {self.unit}/s"
        return f"{1 / rate:.{2 if rate > 0.1 else 1 if rate > 0.01 else 0}f} s/{self.unit}"

    def _line(self, now: float, final: bool = False) -> str:
        elapsed = max(now - self.start_t, 1e-9)
        rate = (self.n - self.initial) / elapsed
        what = self.desc or "progress"
        if self.total is not None:
            count = f"{self._count(self.n)}/{self._count(self.total)}"
            if self.total:
                count += f" ({100 * self.n / self.total:.0f}%)"
        else:
            count = f"{self._count(self.n)} {self.unit}"
        if final:
            done = self.total is None or self.n >= self.total
            parts = [
                f"{what} {count} {'done in' if done else 'stopped after'} {_duration(elapsed)} ({self._rate(rate)})"
            ]
        else:
            parts = [f"{what} {count} {self._rate(rate)}"]
            # ETA from the items after the first only (its warm-up would inflate it), once there is one.
            if self.total is not None and self._warm is not None and self.n > self._warm[1] and now > self._warm[0]:
                warm_rate = (self.n - self._warm[1]) / (now - self._warm[0])
                parts.append(f"ETA {_duration(max(self.total - self.n, 0) / warm_rate)}")
            elif self.total is not None:
                parts.append("ETA after the first item (warm-up)")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)


class Timed:
    """What :func:`timed` yields: ``seconds`` is set when the block ends."""

    seconds: float | None = None


@contextlib.contextmanager
def timed(what: str, log=None):
    """Time a block and say so: ``deltabench: <what> started`` and ``deltabench: <what> done in
    12.3 s`` (or ``... failed after 12.3 s`` when it raises) on stderr, silent under
    ``DELTABENCH_QUIET=1``. ``log``: a callable that takes the message instead (``<what> started``,
    ``<what> done in 12.3 s``, without the prefix); it is always called. Yields a :class:`Timed`
    whose ``seconds`` holds the block's wall time afterwards."""
    say = _say if log is None else log
    t = Timed()
    say(f"{what} started")
    t0 = time.perf_counter()
    try:
        yield t
    except BaseException:
        t.seconds = time.perf_counter() - t0
        say(f"{what} failed after {_duration(t.seconds)}")
        raise
    t.seconds = time.perf_counter() - t0
    say(f"{what} done in {_duration(t.seconds)}")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; clear errors."""
    if isinstance(device, torch.device):
        device = str(device)
    d = "auto" if device is None else str(device).strip().lower()
    if d in ("auto", "cuda") and os.environ.get("LOCAL_RANK") is not None and torch.cuda.is_available():
        # under torchrun each rank takes its local GPU (cuda:LOCAL_RANK)
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count())
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(d)
    except RuntimeError:
        raise ValueError(f"--device {device!r}: give auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r}: give auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"--device {device}: this machine has no CUDA GPU torch can use; give --device cpu (or auto)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return dev


def uint8_to_float(img: np.ndarray) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` -> ``float32 [N, 3, H, W]`` in [-1, 1]."""
    t = torch.from_numpy(np.require(img, requirements=["C", "W"])).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


def float_to_uint8(img: torch.Tensor) -> np.ndarray:
    """``float [N, 3, H, W]`` in [-1, 1] -> ``uint8 [N, H, W, 3]`` (rounded, clamped)."""
    x = ((img.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# --- CPU threads -----------------------------------------------------------------------------

THREADS: dict = {}  # what set_threads chose, and why (the run manifest records it)


def _cgroup_cpus() -> float | None:
    """The CPUs the cgroup's quota allows (cgroup v2 ``cpu.max``, v1 ``cfs_quota_us``), None if unlimited."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> tuple[int, str]:
    """The CPU threads this process may really use, and why: ``OMP_NUM_THREADS`` when set; else
    the CPUs of its affinity mask, capped by the cgroup's CPU quota.

    Never the machine's momentary load: torch's results depend on its thread count in the last
    bits, so a default that followed load would give a run different numbers on a busy machine
    (a one-process run and its torchrun twin, or a killed run and its resume, stopped matching
    bit for bit when it did). On a machine shared with other work, give ``--threads 1`` (or
    ``OMP_NUM_THREADS=1``): threads that wait for a shared core spin and stall each other."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        try:
            if int(env) >= 1:
                return int(env), "OMP_NUM_THREADS"
        except ValueError:
            pass
    try:
        n, why = len(os.sched_getaffinity(0)), "CPU affinity"
    except (AttributeError, OSError):
        n, why = os.cpu_count() or 1, "CPU count"
    quota = _cgroup_cpus()
    if quota is not None and int(quota) < n:
        n, why = max(1, int(quota)), f"cgroup CPU quota {quota:g}"
    return n, why


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op (and, where still possible, inter-op) CPU threads: ``n``, or
    :func:`usable_cpus` when ``n`` is None or 0. Returns the count; :data:`THREADS` says why."""
    why = "--threads"
    if n is not None and n < 0:
        raise ValueError(f"--threads must be a whole number >= 0 (0: what the process may use), got {n}")
    if not n:
        n, why = usable_cpus()
    torch.set_num_threads(int(n))
    try:
        torch.set_num_interop_threads(int(n))
    except RuntimeError:  # only before the first inter-op work; intra-op is what matters here
        pass
    THREADS.update({"threads": int(n), "threads_from": why})
    return int(n)
