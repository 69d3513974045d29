"""Cost of a method: fit seconds, milliseconds per edit, peak memory.

``measure()`` times a block and reads its peak memory:
- CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (tensors only,
  not the caching allocator's reserve or the CUDA context).
- CPU: the process's peak resident set (``VmHWM``). On Linux the peak is reset at the start
  of the block through ``/proc/self/clear_refs``, so it is the block's own peak (including the
  memory the process already held); where that is not allowed it is the process-lifetime peak
  (``resource.getrusage`` ``ru_maxrss``) and ``peak_is_lifetime`` says so. Python's
  ``tracemalloc`` would miss torch's C++ allocations, so it is not used.

``EditLatency`` and ``PeakMemory`` are metric-shaped (mergeable across processes): total
seconds over total edits, and the max of the peaks.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from deltabench.metrics.base import Metric


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # "reset the peak resident set size" (Linux >= 4.0, proc(5))
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb if sys.platform == "darwin" else kb * 1024  # bytes on macOS, KiB on Linux


@dataclass
class Cost:
    """What one ``measure()`` block cost."""

    device: str
    seconds: float = float("nan")
    peak_bytes: int = 0
    peak_is_lifetime: bool = False
    _t0: float = field(default=0.0, repr=False)

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / 2**20

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["peak_mb"] = self.peak_mb
        return d


class measure:
    """``with measure(device) as c: ...`` then ``c.seconds``, ``c.peak_mb``.

    Wall-clock seconds (``time.perf_counter``), with CUDA synchronised at both ends.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.cost = Cost(str(self.device))

    def __enter__(self) -> Cost:
        _sync(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.cost.peak_is_lifetime = not _reset_peak_rss()
        self.cost._t0 = time.perf_counter()
        return self.cost

    def __exit__(self, *exc) -> bool:
        _sync(self.device)
        self.cost.seconds = time.perf_counter() - self.cost._t0
        if self.device.type == "cuda":
            self.cost.peak_bytes = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self.cost.peak_bytes = _peak_rss_bytes()
        return False


class EditLatency(Metric):
    """Milliseconds per edit: total measured seconds over the number of edits they covered."""

    key, label, higher_is_better = "ms_per_edit", "ms / edit", False

    def __init__(self):
        super().__init__()
        self.add_state("seconds", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("edits", torch.tensor(0.0, dtype=torch.float64), "sum")

    def update(self, seconds: float, n_edits: int) -> None:
        if n_edits < 0 or not seconds >= 0:
            raise ValueError(f"EditLatency.update: need seconds >= 0 and n_edits >= 0, got {seconds}, {n_edits}")
        self.seconds = self.seconds + float(seconds)
        self.edits = self.edits + float(n_edits)

    def compute(self) -> float:
        return float(1000 * self.seconds / self.edits) if self.edits > 0 else float("nan")


class PeakMemory(Metric):
    """Peak memory in MiB: the max over every measured block (and every process when merged)."""

    key, label, higher_is_better = "peak_mb", "process peak MiB", False

    def __init__(self):
        super().__init__()
        self.add_state("peaks", [], "cat")  # list of float64 [1] in bytes

    def update(self, peak_bytes: int) -> None:
        self.peaks.append(torch.tensor([float(peak_bytes)], dtype=torch.float64))

    def compute(self) -> float:
        return float(torch.cat(self.peaks).max() / 2**20) if self.peaks else float("nan")
