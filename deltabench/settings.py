"""One resolution of a method's settings, used by every entry point.

``run``, ``edit``, ``fit``, ``train``, ``eval`` and the Python API build a method the same way:
the domain's defaults for it (``domain.method_defaults``: the official settings on the real
domains, the world's benchmark settings on synthfaces), then the user's ``--options``, then the
command's short flags (``--checkpoint``, ``--fs3``, ``--steps`` ...). A ``config`` dict merges
key by key at each step. Before this was one function, only the runner merged the domain's
defaults: ``deltabench.edit`` with StyleCLIP-GD on ffhq fell back to the class defaults (10,000
untruncated codes, ddof 1) and edited 1.43x too strongly, silently.

The method is then built into the one method cache of the domain (:func:`method_cache`):
``--work-dir`` names the root, and a domain's methods live in ``<root>/<domain key>/`` for every
command, so ``edit`` finds what ``run`` fitted.
"""

from __future__ import annotations

from pathlib import Path

# Short command flags -> the option each sets, per method (what ``--options`` would say).
FLAG_HELP = {
    "checkpoint": "a released checkpoint instead of training: DeltaEdit's net_face.pth, or StyleCLIP-LM's "
    "mapper for --target",
    "fs3": "a released relevance matrix (StyleCLIP's fs3.npy), anywhere on disk: StyleCLIP-GD's fs3, or "
    "DeltaEdit's relevance filter",
}


def _merge(base: dict, over: dict) -> dict:
    out = {**base, **over}
    if isinstance(base.get("config"), dict) and isinstance(over.get("config"), dict):
        out["config"] = {**base["config"], **over["config"]}
    return out


def domain_defaults(domain, name: str) -> dict:
    """What the domain sets for method ``name`` (a copy; ``{}`` where it sets nothing)."""
    d = dict(domain.method_defaults.get(name, {}))
    if isinstance(d.get("config"), dict):
        d["config"] = dict(d["config"])
    return d


def resolve_options(domain, methods, options: dict | None = None, flags: dict | None = None) -> dict[str, dict]:
    """Per-method options: the domain's defaults, under the user's ``options``, under ``flags``
    (both ``{method: {option: value}}``). Methods with nothing set are left out."""
    out = {}
    for m in methods:
        merged = _merge(
            _merge(domain_defaults(domain, m), dict((options or {}).get(m, {}))), dict((flags or {}).get(m, {}))
        )
        if merged:
            out[m] = merged
    return out


def flag_options(
    method: str,
    checkpoint: str | None = None,
    fs3: str | None = None,
    target: str | None = None,
    train: dict | None = None,
) -> dict:
    """The options that a command's short flags stand for, for ``method`` (a ValueError names a
    flag the method has no use for). ``train``: DeltaMapper training settings (``--steps`` ...)."""
    from deltabench.methods import get_method

    cls = get_method(method)
    out: dict = {}
    config: dict = {}
    if checkpoint is not None:
        _check_file(checkpoint, "--checkpoint")
        if method in ("deltaedit", "deltaedit-naive"):
            out["checkpoint"] = str(checkpoint)
        elif method == "styleclip-lm":
            if not target:
                raise ValueError(
                    "--checkpoint with styleclip-lm is the released mapper of one target prompt; "
                    "give --target (or map targets to files with --options "
                    '\'{"config": {"checkpoints": {TARGET: FILE}}}\')'
                )
            config["checkpoints"] = {target: str(checkpoint)}
        else:
            raise ValueError(
                f"--checkpoint: {method} has no released checkpoint to read (deltaedit and styleclip-lm do); drop it"
            )
    if fs3 is not None:
        _check_file(fs3, "--fs3")
        if method == "styleclip-gd":
            config["official_fs3"] = str(fs3)
        elif method in ("deltaedit", "deltaedit-naive"):
            out["relevance_file"] = str(fs3)
        else:
            raise ValueError(f"--fs3: {method} reads no relevance matrix (styleclip-gd and deltaedit do); drop it")
    if train:
        import dataclasses

        known = {f.name for f in dataclasses.fields(cls.config_class)} if cls.config_class else set()
        if not set(train) <= known:
            raise ValueError(
                f"--steps/--n-generated/--n-inverted/--batch set a DeltaMapper's training; "
                f"{method} has no such settings"
            )
        config.update(train)
    if config:
        out["config"] = config
    return out


def _check_file(path, flag: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {p} is a directory; give the file itself")
    if not p.is_file():
        raise ValueError(f"{flag} {p} does not exist; give the path of the released file")


def method_cache(domain, work_dir: str | Path | None = None) -> Path:
    """The method cache of ``domain``: ``<work_dir or <cache>/methods>/<domain key>``, with the
    world's shipped fits copied in. The same folder for every command."""
    from deltabench.shipped import method_cache as cache

    return cache(domain, work_dir)


def build_method(
    name: str,
    domain,
    options: dict | None = None,
    work_dir: str | Path | None = None,
    seed: int = 0,
    cache: Path | None = None,
):
    """Method ``name`` on ``domain`` with already resolved ``options`` (:func:`resolve_options`),
    in the domain's method cache (``cache`` when the caller has it already)."""
    from deltabench.methods import get_method

    return get_method(name)(
        domain, cache if cache is not None else method_cache(domain, work_dir), seed=seed, **dict(options or {})
    )
