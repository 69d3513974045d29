"""``deltabench run``: fit methods, edit every test image with every prompt, score, report.

A run directory holds:

- ``manifest.json``: the run config, seeds, package versions, git commit, world hash;
- ``results.csv``: one row per method x image x prompt x strength;
- ``units/``: the metric states of each finished (method, prompt, strength) unit, so the
  summary merges exact metric states (FID, KID) instead of averaging per-row numbers, and the
  first :data:`GRID_POOL` edits (the report's grids);
- ``.deltabench-files``: every file the run wrote (:mod:`deltabench.rundir`): all ``--force``
  ever deletes;
- ``fits.json``: fit seconds and stats per method;
- ``summary.csv``: one row per method (default strength), one column per metric;
- ``reports/``: the tables and figures.

Work is done in units of (method, prompt, strength) over all images. A unit's metric state is
written first (atomically), then its rows are appended to ``results.csv`` in one write; on a
restart a unit counts as done only when its rows are there, and a torn last line left by a kill
is dropped. So a run killed at any moment and started again with the same command finishes
without recomputing or duplicating a finished unit.

Under ``torchrun`` (see :mod:`deltabench.distributed`) the *units* are dealt round-robin to
the ranks; each rank edits and scores its units over all images, writes their metric states
to ``units/`` and appends their rows to its own ``results.rank<r>.csv``. Rank 0 then merges
every shard into ``results.csv`` (sorted by method, prompt, strength, image: the order of a
single-process run; each row exactly once) and alone writes ``summary.csv`` and the report.
Units, not images, are sharded so that every per-row number is computed from the same
batches as in a single process and is bitwise identical; the test images' inversion and
starting images are split by whole batches across ranks and gathered, which is exact too. A
re-run (with any number of ranks) reads ``results.csv`` and every shard and computes only the
missing units.

The run lives in rooms of one concept each (:mod:`deltabench.harness`); this module keeps every
name it has always had importable from here.
"""

from deltabench.harness.config import (  # noqa: F401 - re-exported
    RUN_DEFAULTS,
    RunConfig,
    RunDefaults,
    check_sweep,
    default_prompts,
    resolve,
    validate_config,
    with_domain_defaults,
)
from deltabench.harness.loop import (  # noqa: F401 - re-exported
    FAIL_ENV,
    GRID_IMAGES,
    GRID_POOL,
    GRID_SIDE,
    INVERT_CHUNK,
    REFERENCE_RUN,
    describe_device,
    domain_notes,
    execute,
    plan,
    run,
)
from deltabench.harness.rundir import (  # noqa: F401 - re-exported
    LOCK,
    MARKER,
    RUN_ENTRIES,
    RunConfigError,
    check_out_dir,
    check_out_path,
    prepare_out_dir,
    read_manifest,
    run_lock,
)
from deltabench.harness.store import (  # noqa: F401 - re-exported
    ROW_KEYS,
    Frames,
    current_units,
    done_units,
    drop_stale_rows,
    merge_results,
    shard_files,
    unit_id,
    unit_key,
)
from deltabench.harness.summary import SET_METRICS, summarize  # noqa: F401 - re-exported
from deltabench.prompts import Prompt  # noqa: F401 - re-exported
from deltabench.stats import SET_BOOT, SET_BOOT_LARGE  # noqa: F401 - re-exported
