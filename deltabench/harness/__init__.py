"""The benchmark run, in rooms of one concept each (``deltabench.runner`` re-exports them):

- :mod:`~deltabench.harness.config`: the run's settings, their one set of defaults, validated once;
- :mod:`~deltabench.harness.rundir`: the run directory (manifest, marker, ledger, lock, ``--force``);
- :mod:`~deltabench.harness.store`: results rows, unit ids, resume, supersede, disk-backed images;
- :mod:`~deltabench.harness.loop`: fit, edit, score, unit by unit, over the ranks;
- :mod:`~deltabench.harness.summary`: statistics from the saved metric states, no model loaded.

Not ``deltabench/run/``: a subpackage named ``run`` would replace the API function
``deltabench.run`` on the package the moment it is imported.
"""
