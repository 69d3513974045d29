"""MagicBrush's layout (Zhang et al. 2023, OSU-NLP-Group/MagicBrush), read.

The test split, as the official scripts read it::

    DIR/edit_sessions.json     {image_id: [{"input": "<id>-input.png", "instruction": ..., ...}, ...]}
    DIR/images/<id>/<id>-input.png, <id>-output1.png, <id>-output2.png, ...

- ``edit_sessions.json`` sits beside ``images/`` and holds, per image, one turn per edit with
  its ``input`` file name and ``instruction``; the image's folder is the input name's part before
  the first ``-`` (``edit_cli_single_multi_turn.py`` lines 87, 182-186).
- Turn k's ground-truth target is ``<id>-output<k>.png`` ("'output' + str(i) + '.png' for i-th
  edit", ``evaluation/image_eval.py`` lines 174-175; a turn's own ``output`` name is used where
  the session gives one). Masks are not read: MagicBrush's metrics (L1, L2, CLIP-I, DINO, CLIP-T,
  ``image_eval.py``) compare whole images, the edit against the target (its DINO:
  :class:`deltabench.metrics.dino.DinoSimilarity`).
- Single-turn ("all-turn") edits are saved as ``<edits>/<id>/<id>_1.png`` for the first turn and
  ``<id>_inde_<k>.png`` for turn k (``evaluation/README.md`` lines 29-45,
  ``edit_cli_single_multi_turn.py`` lines 190-196); an entry's ``id`` is that file's stem.
- CLIP-T's caption of a target is ``captions[<id>][<target file name>]`` from an optional
  captions file such as ``local_captions.json`` (``image_eval.py`` line 147); without one the
  entries' ``target`` is empty.
"""

from __future__ import annotations

import json
from pathlib import Path

from deltabench.interop.entries import BenchEntry

SESSIONS = "edit_sessions.json"


def _load_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); it should be MagicBrush's {what}") from None


def read_magicbrush(root: str | Path, captions: str | Path | None = None) -> list[BenchEntry]:
    """Single-turn entries of a MagicBrush split folder (``edit_sessions.json`` + ``images/``).

    Turn k of image ``<id>`` edits ``images/<id>/<input>`` (turn 1: ``<id>-input.png``; later
    turns: the previous ground-truth output, MagicBrush's independent setting) by ``instruction``;
    its ``reference`` is ``images/<id>/<id>-output<k>.png``. Problems are one ``ValueError`` each."""
    root = Path(root)
    sfile = root / SESSIONS
    if not sfile.is_file():
        raise ValueError(
            f"{root} is not a MagicBrush split folder: {sfile} does not exist; give the folder that "
            f"holds {SESSIONS} and images/ (e.g. the unzipped test/)"
        )
    sessions = _load_json(sfile, "edit sessions")
    if not isinstance(sessions, dict) or not sessions:
        raise ValueError(f"{sfile}: expected a non-empty object {{image id: [turns]}}")
    caps = None
    if captions is not None:
        cfile = Path(captions)
        if not cfile.is_file():
            raise ValueError(
                f"MagicBrush captions file {cfile} does not exist; give e.g. local_captions.json or "
                f"leave it out (no CLIP-T)"
            )
        caps = _load_json(cfile, "captions ({image id: {output file name: caption}})")
    out = []
    for key, turns in sessions.items():
        where = f"{sfile} image {key!r}"
        if not isinstance(turns, list) or not turns:
            raise ValueError(f"{where}: expected a non-empty list of turns")
        for k, turn in enumerate(turns, start=1):
            tw = f"{where} turn {k}"
            if (
                not isinstance(turn, dict)
                or not isinstance(turn.get("input"), str)
                or not isinstance(turn.get("instruction"), str)
            ):
                raise ValueError(f"{tw}: each turn needs 'input' (a file name) and 'instruction' (text)")
            folder = turn["input"].split("-")[0]
            img = root / "images" / folder / turn["input"]
            ref_name = turn["output"] if isinstance(turn.get("output"), str) else f"{folder}-output{k}.png"
            ref = root / "images" / folder / ref_name
            for p, what in ((img, "input"), (ref, "target")):
                if not p.is_file():
                    raise ValueError(
                        f"{tw}: its {what} image {p} does not exist; restore it from the MagicBrush download"
                    )
            target = ""
            if caps is not None:
                try:
                    target = caps[folder][ref_name]
                except (KeyError, TypeError):
                    raise ValueError(
                        f"{tw}: the captions file has no caption for {folder!r} / {ref_name!r}; "
                        f"give the captions file of this split"
                    ) from None
            eid = f"{folder}_1" if k == 1 else f"{folder}_inde_{k}"
            out.append(
                BenchEntry(eid, img, "", str(target), turn["instruction"], None, ref, {"image_id": str(key), "turn": k})
            )
    return out


def magicbrush_edit_path(edits: str | Path, entry: BenchEntry) -> Path:
    """``<edits>/<image id>/<entry id>.png``, where MagicBrush's evaluation reads a single-turn
    edit; a missing one is a ``ValueError`` naming it."""
    folder = entry.id.split("_")[0]
    p = Path(edits) / folder / f"{entry.id}.png"
    if not p.is_file():
        raise ValueError(
            f"no edit for MagicBrush item {entry.id!r}: {p} does not exist; save the edit there "
            f"(MagicBrush evaluation/README.md layout)"
        )
    return p


def load_magicbrush_pairs(root: str | Path, edits: str | Path, captions: str | Path | None = None):
    """A MagicBrush split and one editor's single-turn edits, ready for
    :func:`deltabench.metrics.field.score_field`: ``(entries, inputs, edited, references)``, each
    ``[N, 3, H, W]`` in [-1, 1]. An edit of another size than its target is a ``ValueError`` (MagicBrush's
    L1/L2 resize the edit to the target's size; here the edit must be saved at it)."""
    from deltabench.interop.pie_bench import _read_rgb, stack_images

    entries = read_magicbrush(root, captions)
    ins, outs, refs = [], [], []
    for e in entries:
        where = f"MagicBrush item {e.id!r}"
        src, ref = _read_rgb(e.image, where), _read_rgb(e.reference, where)
        p = magicbrush_edit_path(edits, e)
        ed = _read_rgb(p, where)
        if ed.shape != ref.shape or src.shape != ref.shape:
            raise ValueError(
                f"{where}: edit {p} is {ed.shape[1]}x{ed.shape[0]}, input {src.shape[1]}x{src.shape[0]}, "
                f"target {ref.shape[1]}x{ref.shape[0]}; save the edit at the target's size"
            )
        ins.append(src)
        outs.append(ed)
        refs.append(ref)
    paths = [e.image for e in entries]
    return (
        entries,
        stack_images(ins, paths, f"MagicBrush {root}"),
        stack_images(outs, paths, f"edits {edits}"),
        stack_images(refs, paths, f"MagicBrush {root} targets"),
    )
