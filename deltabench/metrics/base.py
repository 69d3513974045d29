"""The metric shape (torchmetrics): declared states, ``update()``, ``compute()``, ``merge()``.

A state is a tensor reduced by ``"sum"`` or a list of tensors reduced by ``"cat"``; two
metrics of the same kind merge state by state, which is all that sharding across processes
needs (gather every rank's states, merge, compute once).
"""
from __future__ import annotations

import copy


class Metric:
    """A metric: declared states, ``update(...)`` on its own arguments, ``compute()``, and
    ``update_from(batch)`` taking the one :class:`deltabench.metrics.record.EditBatch` record
    every metric of a suite gets, so the suite loops over metrics without naming them.

    ``key`` names its column, ``label`` its header, ``higher_is_better`` its direction (None:
    neither, e.g. a cost).
    """

    key: str = ""
    label: str = ""
    higher_is_better: bool | None = None

    def update_from(self, batch):
        """Update from an edit batch; return per-image scores ``[N]`` (or None: none per image)."""
        raise NotImplementedError(f"{type(self).__name__} does not take an EditBatch")

    def __init__(self):
        self._defaults: dict[str, tuple[object, str]] = {}

    def add_state(self, name: str, default, reduce: str) -> None:
        if reduce not in ("sum", "cat"):
            raise ValueError(f"state {name!r}: reduce must be 'sum' or 'cat', got {reduce!r}")
        self._defaults[name] = (default, reduce)
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        for name, (default, _) in self._defaults.items():
            setattr(self, name, copy.deepcopy(default))

    def update(self, *args, **kwargs) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def merge(self, other: "Metric") -> "Metric":
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        return self.merge_state_dict(other.state_dict())

    def merge_state_dict(self, d: dict) -> Metric:
        """Merge a ``state_dict()`` of a metric of this kind (another rank's, for instance)."""
        for name, (_, reduce) in self._defaults.items():
            a, b = getattr(self, name), d[name]
            setattr(self, name, a + b if reduce == "sum" else list(a) + list(b))
        return self

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._defaults}

    def load_state_dict(self, d: dict) -> None:
        for name in self._defaults:
            setattr(self, name, d[name])
