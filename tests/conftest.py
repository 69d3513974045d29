"""Shared fixtures: one micro world, built once per test session in a temporary cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("DELTABENCH_QUIET", "1")
# One thread for every command the tests run, in this process (the CLI's default thread count reads
# it) and in the subprocesses they start (torchrun ranks, killed runs): the tiny models are faster
# so, and runs compared bit for bit (one process vs torchrun, killed vs uninterrupted) then use the
# same thread count, as the same command on one machine does.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# A test that needs a built micro world (the session fixtures below: minutes to build from nothing,
# and what needs one runs the benchmark) is slow: `pytest -m "not slow"` leaves it out. Tests that
# are slow for other reasons (subprocesses, a browser, training) carry the marker themselves.
WORLD_FIXTURES = frozenset({"micro_root", "church_micro_root"})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if WORLD_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def micro_root(tmp_path_factory):
    """A built ``synthfaces-micro`` world (under a session temp dir): its root directory."""
    from deltabench.world.build import build_world
    from deltabench.world.catalog import load_world_config

    torch.set_num_threads(1)  # tiny models: one thread is faster and immune to a busy machine
    # Developers may keep one built micro world between sessions (built if missing).
    keep = os.environ.get("DELTABENCH_TEST_ROOT")
    root = Path(keep) / "worlds" if keep else tmp_path_factory.mktemp("cache") / "worlds"
    build_world(load_world_config("synthfaces-micro"), root=root, log=lambda s: None)
    return root


@pytest.fixture(scope="session")
def church_micro_root(tmp_path_factory):
    """A built ``church-micro`` world (the non-face world kind): its root directory, like ``micro_root``."""
    from deltabench.world.build import build_world
    from deltabench.world.catalog import load_world_config

    torch.set_num_threads(1)
    keep = os.environ.get("DELTABENCH_TEST_ROOT")
    root = Path(keep) / "worlds" if keep else tmp_path_factory.mktemp("church-cache") / "worlds"
    build_world(load_world_config("church-micro"), root=root, log=lambda s: None)
    return root


@pytest.fixture(scope="session")
def micro_world(micro_root):
    from deltabench.world.world import load_world

    return load_world("synthfaces-micro", roots=[micro_root])


@pytest.fixture
def cache(micro_root, monkeypatch):
    """``$DELTABENCH_CACHE`` pointed at the session's micro world, so the CLI and API find it."""
    monkeypatch.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    return micro_root.parent


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module of tiny models (faster, immune to a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
