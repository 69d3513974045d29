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

    def merge(self, other: Metric) -> Metric:
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

    @classmethod
    def from_state(cls, d: dict, **settings) -> Metric:
        """A metric of this kind holding the saved states ``d``, built without the models that
        only ``update`` uses (feature networks, encoders, text embeddings): enough to merge and
        compute. ``settings``: constructor values that ``compute`` reads (KID's ``seed``); every
        other constructor argument takes its default (None where it has none)."""
        import inspect

        m = cls.__new__(cls)
        Metric.__init__(m)
        for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                setattr(m, p.name, settings.get(p.name, None if p.default is p.empty else p.default))
        for name, value in d.items():  # a list state is gathered ("cat"), a tensor summed
            m._defaults[name] = (
                type(value)() if isinstance(value, list) else value,
                "cat" if isinstance(value, list) else "sum",
            )
            setattr(m, name, value)
        return m
