"""Safe loading of third-party torch checkpoints.

Every ``.pt``/``.pth`` file the project reads goes through :func:`safe_torch_load`:
``torch.load(..., weights_only=True)`` with an explicit allow-list of the few non-tensor
classes a given format is known to hold (e.g. ``argparse.Namespace`` in rosinality's
``train.py`` checkpoints). A pickle that asks for anything else is refused before any of its
code runs, with an error that names the file and the class it asked for.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, unsafe, or not of the expected kind."""


def safe_torch_load(
    path: str | Path, what: str, allow: Iterable[type] = (), map_location: str | torch.device = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)`` allowing only the classes in ``allow``.

    ``what`` names the expected content in error messages ("a rosinality StyleGAN2
    checkpoint", "an e4e checkpoint", ...). Raises :class:`CheckpointError` for a missing,
    truncated, corrupt or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such file (expected {what}); check the path or run `deltabench weights fetch`"
        )
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "global" not in msg.lower():  # not an allow-list refusal: a damaged file
            raise CheckpointError(
                f"{path}: cannot read the file, it looks corrupt or is not a torch "
                f"checkpoint (expected {what}); download it again and check its sha256"
            ) from e
        # torch words this two ways ("Unsupported global: GLOBAL builtins.exec ..." and "Trying
        # to load unsupported GLOBAL posix.system whose module posix is blocked"): name the global.
        asked = re.search(r"GLOBAL ([\w.]+)", msg)
        detail = (
            f"it asks for {asked.group(1)}"
            if asked
            else msg.split("WeightsUnpickler error:")[-1].strip().split("\n")[0].split(". Please")[0]
        )
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True): it holds Python objects outside "
            f"the allow-list for {what} "
            f"({detail}). Loading it could run arbitrary code. If you trust the file, re-save "
            "only its tensors (a dict of state dicts) and load that instead."
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(
            f"{path}: cannot read the file, it looks corrupt or truncated ({e}); "
            f"expected {what}; download it again and check its sha256"
        ) from e


def load_prefixed(module: torch.nn.Module, state_dict: dict, prefix: str, where: str, expected: str) -> None:
    """Load ``module`` from the ``<prefix>.*`` tensors of a larger state dict (e.g. the
    ``features.*`` of a torchvision network; the rest is ignored). A missing or misshapen tensor
    is a ``ValueError`` naming it, ``where`` it was read and what was ``expected``."""
    got = {}
    for k, v in module.state_dict().items():
        src = state_dict.get(f"{prefix}.{k}")
        if not isinstance(src, torch.Tensor) or tuple(src.shape) != tuple(v.shape):
            found = list(src.shape) if isinstance(src, torch.Tensor) else type(src).__name__
            raise ValueError(
                f"{where}: {prefix}.{k} must be a tensor of shape {list(v.shape)}, got {found} (expected {expected})"
            )
        got[k] = src
    module.load_state_dict(got)
