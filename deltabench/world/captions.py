"""Compatibility name of :mod:`deltabench.world.faces.captions` (face-only; generic code uses
:func:`deltabench.world.kind.get_kind`). The same module object, private names included."""

import sys

from deltabench.world.faces import captions as _module

sys.modules[__name__] = _module
