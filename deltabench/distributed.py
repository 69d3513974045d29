"""torch.distributed for deltabench: the same commands under ``torchrun``, no home-made scheduler.

``torchrun --nproc_per_node N -m deltabench run ...`` starts N processes with the standard
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
:func:`init_from_env` joins them into one process group, with the backend chosen by device:
``nccl`` when the process drives a GPU, ``gloo`` on CPU. Every helper here is a no-op in a
single process (``rank() == 0``, ``world_size() == 1``, ``barrier()`` returns at once,
``shard(x) == x``), so code written with them runs unchanged without torchrun.

What is split, and why it keeps results exact:

- work items are dealt round-robin (:func:`shard`): item k goes to rank ``k % world_size``;
- batched computations are split by whole chunks (:func:`chunk_ranges`, :func:`map_chunks`):
  a rank runs exactly the batches the single process would run, on the same tensors, so the
  gathered result is bitwise identical (re-batching would change floating-point rounding);
- metric states are merged with the metrics' own ``merge`` (:func:`merge_metric`): sum states
  add, cat states concatenate in rank order.
"""

from __future__ import annotations

import contextvars
import datetime
import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

# A rank that waits for another rank's long fit (a world build, a DeltaMapper training on one
# rank) must not time out: the default process-group timeout (30 min) is too short. A crashed
# rank does not leave the others hanging: torchrun stops the whole group when one rank fails.
DEFAULT_TIMEOUT_S = 24 * 3600

# Set inside a block that one rank runs alone (on_rank0, rank0_first): there every helper acts
# as in a single process, so code that would split its work over the ranks (DDP training, a
# sharded precompute) runs whole instead of waiting forever for ranks that are not there.
_SOLO: contextvars.ContextVar[bool] = contextvars.ContextVar("deltabench_solo", default=False)


@contextmanager
def solo():
    """Within the block this rank acts as a single process (``world_size() == 1``)."""
    token = _SOLO.set(True)
    try:
        yield
    finally:
        _SOLO.reset(token)


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer; launch with torchrun --nproc_per_node N"
        ) from None


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank (and not in :func:`solo`)."""
    return not _SOLO.get() and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0 (or the single process): the one that writes shared files."""
    return rank() == 0


def local_device() -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when GPUs exist, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def backend_for(device: torch.device | str) -> str:
    """``nccl`` on GPUs, ``gloo`` on CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_from_env(device: torch.device | str | None = None, timeout_s: float | None = None) -> bool:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; return whether one was joined.

    ``device`` picks the backend (default :func:`local_device`); on CUDA it also becomes the
    current device, which NCCL collectives need. ``timeout_s`` (default
    ``$DELTABENCH_DIST_TIMEOUT`` or 24 h) bounds how long a rank waits at a collective.
    """
    n = env_world_size()
    if n <= 1 or (dist.is_available() and dist.is_initialized()):
        return is_distributed()
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={n} but {missing} are not set; launch with `torchrun --nproc_per_node {n} -m deltabench ...`"
        )
    device = torch.device(device) if device is not None else local_device()
    backend = backend_for(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # NCCL carries CUDA tensors only; models a command keeps on the CPU (DDP of a CPU
        # module, CPU metric states) go through gloo in the same process group.
        backend = "cpu:gloo,cuda:nccl"
    if timeout_s is None:
        raw = os.environ.get("DELTABENCH_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)
        try:
            timeout_s = float(raw)
        except ValueError:
            raise ValueError(
                f"DELTABENCH_DIST_TIMEOUT={raw!r} is not a number of seconds; unset it or give e.g. 1800"
            ) from None
        if not timeout_s > 0:
            raise ValueError(f"DELTABENCH_DIST_TIMEOUT={raw!r}: give a number of seconds > 0")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def shutdown(together: bool = True) -> None:
    """Leave the process group. ``together``: every rank waits at a barrier first, so no rank
    tears down its gloo connections while another still uses them (torch can then abort the
    other process with "terminate called without an active exception"). Pass ``False`` on
    an error path, where the other ranks may never reach the barrier."""
    if dist.is_available() and dist.is_initialized():
        if together and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (a one-item list in a single process)."""
    if not is_distributed():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks, as a new tensor (``x`` itself in a single process)."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()


def on_rank0(fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` on rank 0 only (as a single process, :func:`solo`) and hand its result to
    every rank; an exception raised on rank 0 is raised on every rank (so no rank waits
    forever for a rank that failed)."""
    if not is_distributed():
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            with solo():
                result = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
    result, error = broadcast_object((result, error))
    if error is not None:
        raise error
    return result


@contextmanager
def rank0_first():
    """Rank 0 runs the block first (filling a cache), then the other ranks run it (loading
    that cache); each as a single process (:func:`solo`). For steps that are not split across
    ranks but write shared files."""
    if not is_distributed():
        yield
        return
    main = is_main()
    if not main:
        dist.barrier()
    try:
        with solo():
            yield
    finally:
        if main:
            dist.barrier()


def shard(items: Sequence[T], r: int | None = None, n: int | None = None) -> list[T]:
    """This rank's items, dealt round-robin: item k goes to rank ``k % world_size``."""
    r = rank() if r is None else r
    n = world_size() if n is None else n
    return list(items[r::n])


def chunk_ranges(total: int, chunk: int, r: int | None = None, n: int | None = None) -> list[tuple[int, int]]:
    """This rank's ``[start, stop)`` ranges when ``range(total)`` is cut into ``chunk``-sized
    pieces from 0 (as a batched loop cuts it) and the pieces are dealt round-robin."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    pieces = [(i, min(i + chunk, total)) for i in range(0, total, chunk)]
    return shard(pieces, r, n)


def map_chunks(fn: Callable[[int, int], torch.Tensor], total: int, chunk: int) -> torch.Tensor:
    """``torch.cat([fn(i, j) for (i, j) in chunks of range(total)])``, the chunks split across
    ranks and the results gathered in order, on CPU, on every rank.

    ``fn(start, stop)`` must return a tensor whose first axis has ``stop - start`` entries
    and depend only on its range: each chunk is then computed exactly as the single process
    computes it, so the result is bitwise the same whatever the number of ranks.
    """
    mine = {a: fn(a, b).cpu() for a, b in chunk_ranges(total, chunk)}
    if not is_distributed():
        return torch.cat([mine[a] for a in sorted(mine)]) if mine else torch.empty(0)
    parts: dict[int, torch.Tensor] = {}
    for d in all_gather_object(mine):
        parts.update(d)
    return torch.cat([parts[a] for a in sorted(parts)])


def _cpu(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, dict):
        return {k: _cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu(v) for v in x)
    return x


def merge_metric(metric):
    """Merge a metric's (or a ``MetricSuite``'s) states over all ranks, in place, in rank
    order through the metrics' own ``merge`` rules; return it. Then ``compute()`` on any
    rank gives the value over every rank's data. A no-op in a single process."""
    if not is_distributed():
        return metric
    states = all_gather_object(_cpu(metric.state_dict()))
    metric.load_state_dict(states[0])
    members = metric.metrics if hasattr(metric, "metrics") else {None: metric}
    for st in states[1:]:
        for k, m in members.items():
            m.merge_state_dict(st if k is None else st[k])
    return metric
