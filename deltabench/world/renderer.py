"""Compatibility name of :mod:`deltabench.world.faces.renderer` (face-only; generic code uses
:func:`deltabench.world.kind.get_kind`). The same module object, private names included."""

import sys

from deltabench.world.faces import renderer as _module

sys.modules[__name__] = _module
