"""DeltaEdit (Lyu et al., CVPR 2023): text-free training in CLIP delta space."""
