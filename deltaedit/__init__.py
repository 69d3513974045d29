"""DeltaEdit (Lyu et al., CVPR 2023): text-free training in CLIP delta space."""

from deltaedit.official import load_official_checkpoint

__all__ = ["load_official_checkpoint"]
