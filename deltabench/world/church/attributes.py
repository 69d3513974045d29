"""The church world's parameter schema: an LSUN-church analogue (a procedural building scene).

Nine caption-nameable attributes, global (sky, season, light) and local (roof colour and shape,
tower, walls, windows, door), and five continuous parameters no caption names (building width,
position and height, tower height, horizon): they play the part identity plays for faces in the
disentanglement metrics (an edit should keep them). There is no identity model (LSUN has none).
"""

from __future__ import annotations

from typing import ClassVar

from deltabench.world.kind import Attribute, Params

ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("sky", ("clear", "cloudy", "sunset", "night")),
    Attribute("season", ("summer", "autumn", "winter")),
    Attribute("light", ("day", "dusk")),
    Attribute("roof_color", ("red", "blue", "green", "black")),
    Attribute("roof_shape", ("pointed", "dome")),
    Attribute("tower", ("none", "tower")),
    Attribute("walls", ("white", "yellow", "brick")),
    Attribute("windows", ("two", "four")),
    Attribute("door", ("brown", "blue")),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)

CONTINUOUS_PARAMS: tuple[str, ...] = (
    "width",  # half-width of the nave
    "position",  # horizontal offset of the building
    "height",  # wall height
    "tower_height",  # height of the tower (drawn only with a tower)
    "horizon",  # where the ground meets the sky
)


class ChurchParams(Params):
    """A batch of church scenes. ``attrs: int64 [N, 9]``, ``ident: float32 [N, 5]`` in [-1, 1]."""

    ATTRIBUTES: ClassVar[tuple[Attribute, ...]] = ATTRIBUTES
    CONTINUOUS: ClassVar[tuple[str, ...]] = CONTINUOUS_PARAMS
