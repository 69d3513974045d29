"""``deltabench run``: fit methods, edit every test image with every prompt, score, report.

The run lives in rooms of one concept each (:mod:`deltabench.harness`: ``config``, ``rundir``,
``store``, ``loop``, ``summary``; the run directory's layout and the resume and ``torchrun``
rules are described in :mod:`deltabench.harness.loop`); this module keeps every name it has
always had importable from here.
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
