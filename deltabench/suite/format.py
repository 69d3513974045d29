"""The suite format: what ``deltabench suite export`` writes and every reader checks.

A suite folder::

    manifest.json      format + version, world and its config hash, deltabench version and git
                       commit, seed, counts, the mask rule, and the sha256 of every other file
    edits.json         one entry per (image, prompt): id, image, source, target, instruction,
                       attribute, value, mask (and the image's and prompt's index)
    params.json        the ground-truth parameters of every test image (the world kind's
                       discrete attributes by value index, its continuous parameters)
    images/00000.png   the test images (uint8 RGB, the world's resolution)
    masks/<id>.png     per edit, the region the asked attribute may change (L, 0 or 255)

Reading a suite (:func:`read_suite`) verifies every hash first: a changed, missing or added
file is one error line, never a silently different benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "deltabench-suite"
VERSION = 1
# The mask rule (recorded in every manifest): a pixel may change when the renderer's image of the
# scene with the asked attribute at its target value differs from the test image there by more
# than MASK_THRESHOLD levels (uint8, the largest of the three channels), dilated by MASK_DILATE px
# (a square (2r+1)-px max filter), so an editor's soft edge next to the region is not counted
# as a change outside it.
MASK_THRESHOLD = 0
MASK_DILATE = 2
MASK_RULE = (
    f"renderer(params with attribute = target value) vs renderer(params): a pixel whose largest "
    f"channel difference exceeds {MASK_THRESHOLD} uint8 levels is changed; the mask is the changed "
    f"pixels dilated by a {2 * MASK_DILATE + 1}x{2 * MASK_DILATE + 1} square ({MASK_DILATE} px). An image "
    f"that already has the target value has an empty mask (its edit is already satisfied)"
)


class SuiteError(ValueError):
    """A suite folder that is not one, or whose files do not match its manifest: one error line."""


def edit_id(image_index: int, prompt_index: int) -> str:
    """``"00000-p00"``: the id of image ``image_index`` edited with prompt ``prompt_index``."""
    return f"{image_index:05d}-p{prompt_index:02d}"


def instruction(source: str, target: str) -> str:
    """An instruction-editor phrasing of the edit ``source -> target``, derived from the target
    caption's shape alone (no per-attribute table), so it is the same rule for every world:

    - ``"<noun> with X"`` -> ``"give the <noun> X"`` ("give the face glasses");
    - ``"<noun> with no X"`` / ``"<noun> without X"`` -> ``"remove the X from the <noun>"``;
    - ``"<noun> <preposition> X"`` -> ``"show the <noun> <preposition> X"`` ("show the church at night");
    - ``"ADJ <noun>"`` -> ``"make the <noun> ADJ"`` ("make the face smiling");
    - anything else -> ``"make it a <target>"`` (``"make it <target>"`` where it starts with a/an).
    """
    noun, t = " ".join(source.split()), " ".join(target.split())
    if t.startswith(noun + " "):
        rest = t[len(noun) + 1 :]
        for neg in ("with no ", "without "):
            if rest.startswith(neg):
                thing = rest[len(neg) :]
                for art in ("a ", "an "):
                    if thing.startswith(art):
                        thing = thing[len(art) :]
                return f"remove the {thing} from the {noun}"
        if rest.startswith("with "):
            return f"give the {noun} {rest[5:]}"
        if rest.split(" ", 1)[0] in ("on", "in", "at", "under", "over", "by", "near", "against", "during"):
            return f"show the {noun} {rest}"
    if t.endswith(" " + noun):
        return f"make the {noun} {t[: -len(noun) - 1]}"
    return f"make it {t}" if t.startswith(("a ", "an ")) else f"make it a {t}"


def sha256(path: Path) -> str:
    from deltabench.integrity import sha256_file

    return sha256_file(path)


@dataclass(frozen=True)
class Suite:
    """A verified suite: its folder, manifest, entries (``edits.json``) and ground truth."""

    root: Path
    manifest: dict
    entries: list[dict]
    params: dict  # params.json: {"attributes": [...], "continuous": [...], "attrs": [[int]], "ident": [[float]]}

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.entries]

    @property
    def resolution(self) -> int:
        return int(self.manifest["resolution"])

    def image_paths(self) -> list[Path]:
        return [self.root / f"images/{i:05d}.png" for i in range(int(self.manifest["images"]))]

    def world_params(self):
        """The test images' ground truth as the world kind's ``Params`` (what the oracle metrics take)."""
        from deltabench.world.kind import get_kind

        kind = get_kind(self.manifest["world_kind"])
        return kind.params(
            np.asarray(self.params["attrs"], dtype=np.int64), np.asarray(self.params["ident"], dtype=np.float32)
        )


def is_suite(path) -> bool:
    """Whether ``path`` is a folder with a suite manifest (not a folder of images)."""
    f = Path(path) / "manifest.json"
    if not f.is_file():
        return False
    try:
        return json.loads(f.read_text()).get("format") == FORMAT
    except (ValueError, UnicodeDecodeError, OSError, AttributeError):
        return False


def read_suite(path, verify: bool = True) -> Suite:
    """Read the suite in ``path``; ``verify``: check every file against its sha256 in the manifest
    (and that no file was added under ``images/`` or ``masks/``) before anything else."""
    root = Path(path)
    f = root / "manifest.json"
    if not root.is_dir():
        raise SuiteError(f"SUITE {root} is not a folder; give a folder written by `deltabench suite export`")
    if not f.is_file():
        raise SuiteError(
            f"SUITE {root} is not a deltabench suite (no manifest.json); give a folder written by "
            f"`deltabench suite export`"
        )
    try:
        manifest = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise SuiteError(
            f"SUITE {root}: manifest.json is not valid JSON ({' '.join(str(e).split())}); export the suite again"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SuiteError(
            f"SUITE {root}: manifest.json is not a {FORMAT} manifest (format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}); give a folder written "
            f"by `deltabench suite export`"
        )
    if manifest.get("version") != VERSION:
        raise SuiteError(
            f"SUITE {root}: format version {manifest.get('version')!r}; this deltabench reads version "
            f"{VERSION}: export the suite again with this deltabench"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise SuiteError(f"SUITE {root}: manifest.json lists no files with their sha256; export the suite again")
    if verify:
        for rel, digest in files.items():
            p = root / rel
            if not p.is_file():
                raise SuiteError(f"SUITE {root}: {rel} is missing (manifest.json lists it); export the suite again")
            if sha256(p) != digest:
                raise SuiteError(
                    f"SUITE {root}: {rel} does not match its sha256 in manifest.json (changed after "
                    f"export); export the suite again"
                )
        for sub in ("images", "masks"):
            extra = (
                sorted(f"{sub}/{p.name}" for p in (root / sub).iterdir() if f"{sub}/{p.name}" not in files)
                if (root / sub).is_dir()
                else []
            )
            if extra:
                raise SuiteError(
                    f"SUITE {root}: {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''} not in "
                    f"manifest.json (added after export); remove it or export the suite again"
                )
    entries = json.loads((root / "edits.json").read_text())
    params = json.loads((root / "params.json").read_text())
    return Suite(root, manifest, entries, params)
