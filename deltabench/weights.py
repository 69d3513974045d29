"""Pretrained weights of the real domains: registry, download with resume, verification.

The registry is data (``deltabench/configs/weights.json``): every file the ``ffhq`` and
``lsun-*`` domains use, where it is published, its size and sha256 where the source publishes
them, its licence and what uses it. Nothing is downloaded at import time; loaders call
:func:`path_of` and get a clear error naming the fetch command when a file is missing.

The weights directory is ``--dir``, else ``$DELTABENCH_WEIGHTS``, else
``<cache>/weights`` where ``<cache>`` is ``$DELTABENCH_CACHE``, ``$XDG_CACHE_HOME/deltabench``
or ``~/.cache/deltabench`` (the same cache root as built worlds).

Downloads go to ``<name>.part``, resume with an HTTP Range request after a dropped
connection, are verified (size, sha256 or sha256 prefix) and only then renamed to the final
name, so a file under its final name is always complete.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType

from deltabench.integrity import sha256_file  # noqa: F401 - the one sha256 of the package (weights.sha256_file)
from deltabench.parse import config_from_dict, thaw

ENV_DIR = "DELTABENCH_WEIGHTS"
REGISTRY_FORMAT = 1
CHUNK = 1 << 20  # bytes per read while downloading and hashing
_HEX = re.compile(r"[0-9a-f]{8,64}")


class WeightsError(RuntimeError):
    """A weight file cannot be found, fetched or verified."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """A weight file is not in the weights directory."""


@dataclass(frozen=True)
class WeightFile:
    """One registry entry. ``name`` is the file's name in the weights directory."""

    name: str
    url: str | None
    page: str
    source: str
    format: str
    licence: str
    used_by: Mapping[str, str] = field(default_factory=dict)  # domain -> what it is used as
    sha256: str | None = None  # full hex digest or a prefix (>= 8 hex digits); None: unpublished
    size: int | None = None  # exact bytes, checked; None: unpublished
    approx_mb: float | None = None  # an estimate for planning disk space only
    size_note: str = ""
    sha256_source: str = ""
    members: tuple[str, ...] = ()  # for a .zip: the members extracted next to it
    manual: str = ""  # instructions when there is no direct URL; "{path}" is filled in
    # What the file holds, checked by tensor names and shapes where its bytes are not the
    # published ones (other metadata, a re-save): "open_clip:<model name>". Empty: bytes only.
    content: str = ""
    # Other registry files with the same weights in another published format, which the loaders
    # read in this one's place (a domain config naming this file finds them when it is absent).
    alternatives: tuple[str, ...] = ()

    @staticmethod
    def from_dict(d: dict) -> WeightFile:
        e = config_from_dict(
            WeightFile, d, f"weights registry entry {d.get('name')!r}", tuples=("members", "alternatives")
        )
        where = f"weights registry entry {e.name!r}"
        if not e.name or "/" in e.name or "\\" in e.name or e.name.startswith("."):
            raise ValueError(f"{where}: name must be a plain file name")
        if e.sha256 is not None and not _HEX.fullmatch(e.sha256):
            raise ValueError(f"{where}: sha256 must be 8 to 64 lowercase hex digits or null, got {e.sha256!r}")
        if e.size is not None and (not isinstance(e.size, int) or e.size <= 0):
            raise ValueError(f"{where}: size must be a positive integer (bytes) or null, got {e.size!r}")
        if e.url is not None and not e.url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: url must be http(s) or null, got {e.url!r}")
        if e.url is None and not e.manual:
            raise ValueError(f"{where}: without a url, 'manual' must say how to get the file")
        if e.members and not e.name.endswith(".zip"):
            raise ValueError(f"{where}: members need a .zip archive")
        if any("/" in m or "\\" in m or m.startswith(".") for m in e.members):
            raise ValueError(f"{where}: members must be plain file names (they are extracted flat)")
        if e.content and not (e.content.startswith("open_clip:") and len(e.content) > len("open_clip:")):
            raise ValueError(f"{where}: content must be 'open_clip:<model name>' or empty, got {e.content!r}")
        return WeightFile(**{**e.__dict__, "used_by": MappingProxyType(dict(e.used_by))})

    def to_dict(self) -> dict:
        return thaw({k: v for k, v in self.__dict__.items()})

    @property
    def sha256_is_prefix(self) -> bool:
        return self.sha256 is not None and len(self.sha256) < 64

    def planned_bytes(self) -> int | None:
        """Exact size if published, else the estimate (for disk-space planning)."""
        if self.size is not None:
            return self.size
        return None if self.approx_mb is None else int(self.approx_mb * 1e6)


@dataclass(frozen=True)
class Registry:
    files: tuple[WeightFile, ...]
    path: str = ""

    @staticmethod
    def from_dict(d: dict, path: str = "") -> Registry:
        where = f"weights registry {path}" if path else "weights registry"
        unknown = set(d) - {"format", "description", "files"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known keys: description, files, format")
        if d.get("format") != REGISTRY_FORMAT:
            raise ValueError(f"{where}: format must be {REGISTRY_FORMAT}, got {d.get('format')!r}")
        files = tuple(WeightFile.from_dict(f) for f in d.get("files", []))
        names = [f.name for f in files] + [m for f in files for m in f.members]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"{where}: names listed twice: {dup}")
        for f in files:
            unknown = [a for a in f.alternatives if a not in names or a == f.name]
            if unknown:
                raise ValueError(
                    f"{where}: entry {f.name!r} lists alternatives that are not other registry files: {unknown}"
                )
        return Registry(files, path)

    def names(self) -> list[str]:
        return [f.name for f in self.files]

    def __getitem__(self, name: str) -> WeightFile:
        return self.resolve(name)[0]

    def resolve(self, name: str) -> tuple[WeightFile, str | None]:
        """``name`` (a file or an archive member) -> (entry, member or None)."""
        for f in self.files:
            if f.name == name:
                return f, None
            if name in f.members:
                return f, name
        raise WeightsError(
            f"{name!r} is not in the weights registry {self.path}; known files: "
            f"{', '.join(self.names())} (see `deltabench weights list`)"
        )

    def domains(self) -> list[str]:
        return sorted({d for f in self.files for d in f.used_by})

    def for_domain(self, domain: str) -> list[WeightFile]:
        out = [f for f in self.files if domain in f.used_by]
        if not out:
            raise WeightsError(f"no registry file is used by domain {domain!r}; domains: {', '.join(self.domains())}")
        return out

    def select(self, names: Iterable[str] = (), domain: str | None = None) -> list[WeightFile]:
        """The named files, else a domain's files, else every file some domain uses."""
        names = list(names)
        if names and domain:
            raise WeightsError("give file names or --domain, not both")
        if names:
            return list({self[n].name: self[n] for n in names}.values())
        if domain:
            return self.for_domain(domain)
        return [f for f in self.files if f.used_by]


# ----------------------------------------------------------------------------------- paths


def weights_dir(dir: str | Path | None = None) -> Path:
    """``dir``, else ``$DELTABENCH_WEIGHTS``, else ``<cache>/weights``."""
    if dir:
        return Path(dir).expanduser()
    env = os.environ.get(ENV_DIR)
    if env:
        from deltabench.env import WorldCacheError, _check_cache_dir

        try:
            _check_cache_dir(Path(env).expanduser(), ENV_DIR)
        except WorldCacheError as e:
            raise WeightsError(str(e)) from None
        return Path(env).expanduser()
    from deltabench.env import cache_root

    return cache_root() / "weights"


def registry(path: str | Path | None = None) -> Registry:
    """The weights registry: the packaged ``configs/weights.json`` or a JSON file at ``path``."""
    if path is None:
        src = resources.files("deltabench") / "configs" / "weights.json"
        where = "deltabench/configs/weights.json"
    else:
        src = Path(path)
        where = str(path)
        if not src.is_file():
            raise WeightsError(f"weights registry {path} does not exist")
    try:
        d = json.loads(src.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"weights registry {where} is not valid JSON ({e})") from None
    return Registry.from_dict(d, where)


def _reg(reg: Registry | str | Path | None) -> Registry:
    return reg if isinstance(reg, Registry) else registry(reg)


def _target(entry: WeightFile, member: str | None, root: Path) -> Path:
    # every file lies directly in the weights dir under its registry name, archive members too
    return root / (member or entry.name)


def _fetch_hint(entry: WeightFile, root: Path) -> str:
    dir_flag = "" if root == weights_dir() else f" --dir {root}"
    if entry.url is None:
        return entry.manual.format(path=root / entry.name) + f" ({entry.page})"
    return (
        f"run `deltabench weights fetch {entry.name}{dir_flag}`, or download it from "
        f"{entry.page} and place it at {root / entry.name}"
    )


def path_of(
    name: str, dir: str | Path | None = None, reg: Registry | str | Path | None = None, alternatives: bool = False
) -> Path:
    """The local path of a registry file (or of an extracted archive member such as
    ``w600k_r50.onnx``). Raises :class:`MissingWeightsError` saying how to get it when it is
    absent. Cheap: nothing is read here. A file is never refused by its size (the same weights
    saved with other metadata differ in size): the loader identifies it by what it holds, and
    :func:`verify` checks its sha256 (and, where the entry says, its tensors).

    ``alternatives``: when the file is absent, the first present registry file the entry lists
    as holding the same weights in another format (OpenAI's ``ViT-B-32.pt`` for open_clip's
    CLIP safetensors); the error then names them too."""
    r = _reg(reg)
    entry, member = r.resolve(name)
    root = weights_dir(dir)
    path = _target(entry, member, root)
    if not path.is_file():
        alts = entry.alternatives if alternatives and member is None else ()
        for alt in alts:
            if _target(r[alt], None, root).is_file():
                return _target(r[alt], None, root)
        if member and (root / entry.name).is_file():
            hint = f"run `deltabench weights fetch {entry.name}` to extract it from {root / entry.name}"
        else:
            hint = _fetch_hint(entry, root)
        if alts:
            hint += "; " + "; ".join(
                f"or use {a} ({r[a].source.split(':')[0]}): {_fetch_hint(r[a], root)}" for a in alts
            )
        raise MissingWeightsError(f"{name} not found at {path}: {hint}")
    return path


# ------------------------------------------------------------------------------- checking


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_sidecar(path: Path) -> str | None:
    side = _sidecar(path)
    if not side.is_file():
        return None
    text = side.read_text().split()
    if not text or not _HEX.fullmatch(text[0]):
        raise WeightsError(f"{side} does not hold a sha256 (delete it to record a new one)")
    return text[0]


def _record_sidecar(path: Path, digest: str) -> None:
    # sha256sum's format, so `sha256sum -c` can check the file too
    _sidecar(path).write_text(f"{digest}  {path.name}\n")


def _recorded_message(entry: WeightFile, path: Path, digest: str) -> str:
    return (
        f"no sha256 is published for {entry.name}; recorded the one seen now ({digest}) in "
        f"{_sidecar(path)}: later checks compare against it"
    )


def _settle(entry: WeightFile, path: Path, res: VerifyResult) -> None:
    """Keep ``<file>.sha256`` in step with what was just checked: it holds the full sha256 of a
    verified file (loaders use it as the file's identity in cache keys without rehashing), is
    the reference where no hash is published, and is dropped when a published hash fails."""
    if res.ok:
        if res.status == "recorded":
            warnings.warn(_recorded_message(entry, path, res.found), stacklevel=3)
        if res.status in ("recorded", "same tensors") or entry.sha256 is not None:
            _record_sidecar(path, res.found)
    elif entry.sha256 is not None and res.expected == entry.sha256 and _sidecar(path).exists():
        _sidecar(path).unlink()  # (a mismatch against a recorded sha256 keeps the record it failed)


@dataclass(frozen=True)
class VerifyResult:
    name: str
    path: Path
    status: str  # ok | recorded | missing | wrong size | sha256 mismatch | members missing
    expected: str = ""
    found: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "recorded", "same tensors")


def content_mismatch(entry: WeightFile, path: Path) -> str | None:
    """None where the entry declares no ``content``; '' when ``path`` holds the declared tensors
    (names and shapes, read without loading the weights or running any code in the file); else
    what differs."""
    if not entry.content:
        return None
    from deltabench.real.loaders import clip_content_mismatch

    return clip_content_mismatch(path, entry.content.split(":", 1)[1])


def _check(entry: WeightFile, path: Path, digest: str | None = None, by_content: bool = True) -> VerifyResult:
    """sha256 (and size) of ``path`` against the entry, or its recorded sidecar.

    ``by_content``: a file whose bytes differ from the published ones (sha256 or size) but whose
    tensors are the ones the entry declares (``content``) is accepted as "same tensors", with
    its sha256 recorded so that a later change is caught; a download (``by_content=False``)
    must be the published bytes."""
    size = path.stat().st_size
    if entry.size is not None and size != entry.size and (not by_content or not entry.content):
        return VerifyResult(
            entry.name,
            path,
            "wrong size",
            f"{entry.size} bytes",
            f"{size} bytes",
            f"{path}: {size} bytes, expected {entry.size}",
        )
    digest = digest or sha256_file(path)
    published_ok = (entry.sha256 is None or digest.startswith(entry.sha256)) and (
        entry.size is None or size == entry.size
    )
    if not published_ok:
        differs = (
            f"sha256 {'prefix ' if entry.sha256_is_prefix else ''}expected {entry.sha256}, found {digest}"
            if entry.sha256 is not None and not digest.startswith(entry.sha256)
            else f"{size} bytes, expected {entry.size}"
        )
        why = content_mismatch(entry, path) if by_content else None
        if why is None or why:
            status = "wrong size" if entry.sha256 is None else "sha256 mismatch"
            return VerifyResult(
                entry.name,
                path,
                status,
                entry.sha256 or f"{entry.size} bytes",
                digest,
                f"{path}: {differs}" + (f"; nor does it hold the expected tensors: {why}" if why else ""),
            )
        recorded = _read_sidecar(path)
        if recorded is not None and recorded != digest:
            return _sidecar_mismatch(entry, path, recorded, digest)
        return VerifyResult(
            entry.name,
            path,
            "same tensors",
            entry.sha256 or "",
            digest,
            f"{path}: not the published bytes ({differs}), but it holds the tensors of "
            f"{entry.content} (names and shapes), e.g. the same weights saved with other "
            f"metadata: accepted. Its sha256 is recorded in {_sidecar(path)}; to have the "
            f"published bytes, delete it and run `deltabench weights fetch {entry.name}`",
        )
    if entry.sha256 is not None:
        return VerifyResult(entry.name, path, "ok", entry.sha256, digest)
    recorded = _read_sidecar(path)
    if recorded is None:
        return VerifyResult(entry.name, path, "recorded", "", digest, _recorded_message(entry, path, digest))
    if digest != recorded:
        return _sidecar_mismatch(entry, path, recorded, digest)
    return VerifyResult(entry.name, path, "ok", recorded, digest)


def _sidecar_mismatch(entry, path: Path, recorded: str, digest: str) -> VerifyResult:
    """A file whose sha256 differs from the one its sidecar recorded when it was first seen."""
    return VerifyResult(
        entry.name,
        path,
        "sha256 mismatch",
        recorded,
        digest,
        f"{path}: sha256 {digest} differs from the one recorded in {_sidecar(path)} ({recorded}) when it was first seen",
    )


def verify(name: str, dir: str | Path | None = None, reg: Registry | str | Path | None = None) -> VerifyResult:
    """Check presence, size and sha256 of one registry file. Where no sha256 is published the
    first check records the one it sees in ``<file>.sha256`` (with a warning) and later checks
    compare against it. For an archive the extracted members must be present too."""
    entry, _ = _reg(reg).resolve(name)
    root = weights_dir(dir)
    path = root / entry.name
    members = [_target(entry, m, root) for m in entry.members]
    missing = [p for p in members if not p.is_file()]
    if not path.is_file():
        if members and not missing:
            return VerifyResult(
                entry.name,
                path,
                "ok",
                message="archive removed; extracted members present (checked when they were extracted)",
            )
        return VerifyResult(entry.name, path, "missing", message=f"{path} is missing: {_fetch_hint(entry, root)}")
    res = _check(entry, path)
    _settle(entry, path, res)
    if res.ok and missing:
        return VerifyResult(
            entry.name,
            path,
            "members missing",
            message=f"not extracted: {', '.join(map(str, missing))}; run `deltabench weights fetch {entry.name}`",
        )
    return res


# ------------------------------------------------------------------------------- download


def _http_error(url: str, e: urllib.error.HTTPError, entry: WeightFile, root: Path) -> WeightsError:
    return WeightsError(
        f"{url}: HTTP {e.code} {e.reason}. Download {entry.name} by hand from "
        f"{entry.page} and place it at {root / entry.name}, then run "
        f"`deltabench weights verify {entry.name}`"
    )


def _download(
    url: str,
    part: Path,
    entry: WeightFile,
    root: Path,
    retries: int,
    backoff: float,
    timeout: float,
    log: Callable[[str], None],
) -> None:
    """Download ``url`` into ``part``, resuming with Range requests; retry dropped connections."""
    from deltabench.utils import progress

    attempt = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "deltabench-weights"})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                ctype = r.headers.get("Content-Type", "")
                if ctype.startswith("text/html"):
                    # Google Drive answers an interstitial page (quota, sign-in or virus-scan
                    # notice) with 200; never store it as the weights.
                    raise WeightsError(
                        f"{url} answered an HTML page instead of {entry.name} (a download "
                        f"quota or confirmation page). Download it by hand from {entry.page} "
                        f"and place it at {root / entry.name}"
                    )
                if offset and r.status == 200:
                    log(f"{entry.name}: the server ignored the Range request; starting over")
                    offset = 0
                elif offset and r.status == 206:
                    got = re.match(r"bytes (\d+)-", r.headers.get("Content-Range", ""))
                    if not got or int(got.group(1)) != offset:
                        raise WeightsError(
                            f"{url}: asked for bytes from {offset}, the server sent {r.headers.get('Content-Range')!r}"
                        )
                length = r.headers.get("Content-Length")
                total = offset + int(length) if length is not None else entry.size
                with (
                    open(part, "ab" if offset else "wb") as out,
                    progress(
                        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=entry.name
                    ) as bar,
                ):
                    while True:
                        block = r.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        bar.update(len(block))
                if total is not None and part.stat().st_size < total:
                    raise http.client.IncompleteRead(b"", total - part.stat().st_size)
                return
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:
                # Range not satisfiable: the .part already holds the whole file (or more); the
                # checksum decides, and a bad .part is deleted there.
                return
            if e.code < 500 and e.code != 429:
                raise _http_error(url, e, entry, root) from None
            err: Exception = e
        except urllib.error.URLError as e:
            if isinstance(e.reason, socket.gaierror):
                # the host name does not resolve: offline, not a dropped connection
                raise WeightsError(
                    f"{url}: cannot resolve the host ({e.reason}); this machine seems to "
                    f"have no internet. Download {entry.name} elsewhere from {entry.page} and "
                    f"place it at {root / entry.name}"
                ) from None
            err = e
        except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
            err = e
        if attempt >= retries:
            kept = (
                (
                    f"; the {part.stat().st_size} bytes received are kept in {part} and the same command "
                    "resumes from there"
                )
                if part.exists() and part.stat().st_size
                else ""
            )
            raise WeightsError(f"{url}: download failed after {retries + 1} attempts ({err!r}){kept}")
        wait = backoff * 2**attempt
        attempt += 1
        log(
            f"{entry.name}: download interrupted ({err!r}); resuming in {wait:.1f} s "
            f"(attempt {attempt + 1} of {retries + 1})"
        )
        time.sleep(wait)


def _extract(entry: WeightFile, path: Path, root: Path) -> None:
    try:
        with zipfile.ZipFile(path) as z:
            by_base = {Path(i.filename).name: i for i in z.infolist() if not i.is_dir()}
            for m in entry.members:
                target = root / m
                if target.is_file():
                    continue
                if m not in by_base:
                    raise WeightsError(f"{path} has no member {m!r} (it holds {sorted(by_base)})")
                tmp = target.with_name(target.name + ".part")
                with z.open(by_base[m]) as src, open(tmp, "wb") as out:
                    out.writelines(iter(lambda: src.read(CHUNK), b""))
                os.replace(tmp, target)
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{path} is not a readable zip ({e}); delete it and fetch it again") from None


def fetch(
    name: str,
    dir: str | Path | None = None,
    url: str | None = None,
    reg: Registry | str | Path | None = None,
    force: bool = False,
    retries: int = 4,
    backoff: float = 2.0,
    timeout: float = 60.0,
    log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True),
) -> Path:
    """Download one registry file into the weights directory and verify it; return its path.

    A file already present and verified is kept (``force`` downloads it again). The download
    goes to ``<name>.part`` and is renamed only after the size and sha256 check; a checksum
    mismatch deletes the ``.part``. ``url`` overrides the registry's source (a mirror).
    Archives are extracted (their listed members) after verification.
    """
    entry, _ = _reg(reg).resolve(name)
    root = weights_dir(dir)
    final = root / entry.name
    if final.is_file() and not force:
        res = _check(entry, final)
        _settle(entry, final, res)
        if not res.ok:
            raise WeightsError(
                f"{res.message}. Delete it, or run `deltabench weights fetch {entry.name} --force` to download it again"
            )
        log(f"{entry.name}: present and verified ({final})")
        if entry.members:
            _extract(entry, final, root)
        return final
    src = url or entry.url
    if src is None:
        raise WeightsError(
            f"{entry.name} has no direct download URL: {entry.manual.format(path=final)} "
            f"({entry.page}), then run `deltabench weights verify {entry.name}`"
        )
    root.mkdir(parents=True, exist_ok=True)
    part = root / (entry.name + ".part")
    log(f"{entry.name}: downloading {src}")
    _download(src, part, entry, root, retries, backoff, timeout, log)
    res = _check(entry, part, by_content=False)
    if not res.ok:
        part.unlink()
        raise WeightsError(
            f"{entry.name}: downloaded from {src} but {res.message.replace(str(part) + ': ', '')}; "
            f"the partial download was deleted. If the source changed, download it by hand from "
            f"{entry.page} and check it"
        )
    os.replace(part, final)
    # a fresh download is the new reference where no hash is published
    _settle(
        entry,
        final,
        VerifyResult(entry.name, final, "recorded" if entry.sha256 is None else "ok", entry.sha256 or "", res.found),
    )
    if entry.members:
        _extract(entry, final, root)
    log(f"{entry.name}: ok ({final})")
    return final


# ------------------------------------------------------------------------------------ CLI


def _fmt_size(entry: WeightFile) -> str:
    if entry.size is not None:
        return f"{entry.size / 1e6:.0f} MB"
    return f"~{entry.approx_mb:.0f} MB" if entry.approx_mb is not None else "?"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _cmd_weights(args) -> int:
    try:
        if args.dir and Path(args.dir).exists() and not Path(args.dir).is_dir():
            raise WeightsError(f"--dir {args.dir} is a file, not a directory; give the weights directory")
        url = getattr(args, "url", None)
        if url and urllib.parse.urlparse(url).scheme not in ("http", "https"):
            raise WeightsError(
                f"--url {url!r}: only http:// and https:// URLs are fetched; to use a local file, "
                f"copy it into the weights directory and run `deltabench weights verify`"
            )
        reg = registry(args.registry)
        root = weights_dir(args.dir)
        files = reg.select(args.names, args.domain)
        if args.weights_command == "list":
            rows = [["name", "size", "used by", "status"]]
            files = files if (args.names or args.domain) else list(reg.files)
            for f in files:
                present = (root / f.name).is_file() or (
                    f.members and all(_target(f, m, root).is_file() for m in f.members)
                )
                used = ", ".join(f"{d}: {c}" for d, c in f.used_by.items()) or "(not used; listed for reference)"
                rows.append([f.name, _fmt_size(f), used, "present" if present else "missing"])
            print(_table(rows))
            print("\nlicences:")
            for f in files:
                print(f"  {f.name}: {f.licence or '(none stated)'}")
            planned = [f.planned_bytes() for f in files]
            print(
                f"\n{root}  ({len(files)} files, about {sum(b or 0 for b in planned) / 1e9:.1f} GB"
                f"{'' if all(planned) else ' plus files of unknown size'})"
            )
            return 0
        if args.weights_command == "fetch":
            if args.url and len(files) != 1:
                raise WeightsError("--url needs exactly one file NAME")
            failed = []
            for f in files:
                try:
                    fetch(f.name, root, url=args.url, reg=reg, force=args.force)
                except WeightsError as e:
                    failed.append(f.name)
                    print(f"deltabench: error: {e}", file=sys.stderr)
            if failed:
                print(
                    f"deltabench: {len(failed)} of {len(files)} files not fetched: {', '.join(failed)}", file=sys.stderr
                )
            return 1 if failed else 0
        rows = [["name", "status", "sha256 expected", "sha256 found"]]
        notes = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the table and notes say it instead
            results = [verify(f.name, root, reg) for f in files]
        for res in results:
            rows.append([res.name, res.status, res.expected or "-", res.found or "-"])
            if res.message:
                notes.append(res.message)
        print(_table(rows))
        for n in notes:
            print(f"  {n}")
        bad = [r.name for r in results if not r.ok]
        print(
            f"\n{root}: {len(results) - len(bad)} of {len(results)} files ok"
            + (f"; not ok: {', '.join(bad)}" if bad else "")
        )
        return 1 if bad else 0
    except WeightsError as e:
        print(f"deltabench: error: {e}", file=sys.stderr)
        return 2


def add_parser(subparsers) -> None:
    """Register ``deltabench weights list|fetch|verify`` on the CLI's subparsers."""
    w = subparsers.add_parser("weights", help="pretrained weights of the real domains: list, fetch, verify")
    wsub = w.add_subparsers(dest="weights_command", required=True)
    helps = {
        "list": "every registry file: size, what uses it, present or missing",
        "fetch": "download (resumable), verify and install files (default: every file a domain uses)",
        "verify": "check presence, size and sha256 of files; exit code 1 if any is missing or wrong",
    }
    for cmd, text in helps.items():
        c = wsub.add_parser(cmd, help=text)
        c.add_argument(
            "names",
            nargs="*",
            metavar="NAME",
            help="registry file names or archive members (default: every file a domain uses)",
        )
        c.add_argument("--dir", help=f"weights directory (default: ${ENV_DIR}, else <cache>/weights)")
        c.add_argument("--domain", help="only the files this domain uses (ffhq, lsun-cat, ...)")
        c.add_argument("--registry", help="a registry JSON file instead of the packaged one")
        if cmd == "fetch":
            c.add_argument("--url", help="download from this URL instead (a mirror); one NAME only")
            c.add_argument("--force", action="store_true", help="download again even if present and verified")
        c.set_defaults(func=_cmd_weights)
