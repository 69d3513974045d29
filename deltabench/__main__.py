"""``python -m deltabench`` and ``torchrun --nproc_per_node N -m deltabench ...``.

Under torchrun (``WORLD_SIZE > 1``) the ranks join one process group first (nccl on GPUs,
gloo on CPU; :mod:`deltabench.distributed`). ``run``, ``train`` and ``fit`` split their work
across the ranks; any other command runs on rank 0 alone while the others wait for it.
"""

import sys

from deltabench import distributed as dist
from deltabench.cli import main

# Commands that split their own work across ranks.
SHARDED = ("run", "train", "fit")


def entry(argv: list[str] | None = None) -> int:
    """The CLI, inside the torchrun process group when launched by torchrun."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not dist.init_from_env():
        return main(argv)
    try:
        command = next((a for a in argv if not a.startswith("-")), None)
        rc = main(argv) if command in SHARDED else dist.on_rank0(main, argv)
    except BaseException:
        dist.shutdown(together=False)
        raise
    dist.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(entry())
