"""Other benchmarks' layouts, read and written: PIE-Bench (``mapping_file.json``,
``annotation_images/``, RLE masks) and MagicBrush (``edit_sessions.json``, ``images/<id>/``).

Readers give :class:`~deltabench.interop.entries.BenchEntry` records of the shape of a deltabench
suite's ``edits.json`` entries (id, image, source, target, instruction, mask as a bool array), so
the suite scorer takes them as it takes an exported suite; :func:`write_pie_bench` writes a suite
or a run's edits in PIE-Bench's layout for other tools.
"""

from deltabench.interop.entries import BenchEntry
from deltabench.interop.magicbrush import load_magicbrush_pairs, magicbrush_edit_path, read_magicbrush
from deltabench.interop.pie_bench import (
    load_pie_bench_pairs,
    pie_bench_edit_image,
    read_pie_bench,
    rle_decode,
    rle_encode,
    write_pie_bench,
)

__all__ = [
    "BenchEntry",
    "read_pie_bench",
    "write_pie_bench",
    "rle_decode",
    "rle_encode",
    "pie_bench_edit_image",
    "read_magicbrush",
    "magicbrush_edit_path",
    "load_pie_bench_pairs",
    "load_magicbrush_pairs",
]
