"""The modality-gap analysis (DeltaEdit, CVPR 2023, Figure 2) with numbers.

Paired CLIP image and text embeddings sit in separate regions (the modality gap, Liang et
al. 2022); DeltaEdit's claim is that differences of paired embeddings, ``i_b - i_a`` and
``t_b - t_a``, are far better aligned. :func:`run_gap` measures both spaces with the same
numbers (:mod:`deltabench.gap.metrics`) and draws the paper's t-SNE picture;
:func:`run_gap_real` does the same on a real domain's CLIP and captioned images
(MultiModal-CelebA-HQ, the paper's data).
"""

from deltabench.gap.metrics import (
    centroid_distance,
    gap_metrics,
    linear_probe,
    modality_probe,
    paired_cosine,
    retrieval_recall,
    unpaired_cosine,
)
from deltabench.gap.run import GapConfig, add_parser, analyse, format_table, run_gap, run_gap_real

__all__ = [
    "GapConfig",
    "add_parser",
    "analyse",
    "centroid_distance",
    "format_table",
    "gap_metrics",
    "linear_probe",
    "modality_probe",
    "paired_cosine",
    "retrieval_recall",
    "run_gap",
    "run_gap_real",
    "unpaired_cosine",
]
