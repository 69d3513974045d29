"""Small shared helpers: seeding, progress bars, devices, image conversions."""
from __future__ import annotations

import os
import random
import sys

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


def progress(iterable=None, **kw):
    """A tqdm bar that is quiet when stderr is not a terminal (CI, logs, tests)."""
    kw.setdefault("disable", not sys.stderr.isatty() or os.environ.get("DELTABENCH_QUIET") == "1")
    kw.setdefault("dynamic_ncols", True)
    kw.setdefault("leave", False)
    return tqdm(iterable, **kw)


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
            raise ValueError(f"--device {device}: this machine has no CUDA GPU torch can use; give --device cpu "
                             f"(or auto)")
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
