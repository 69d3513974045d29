"""Fit the methods of a world with its defaults (seed 0) and ship them in the package.

    python benchmarks/ship_fits.py [--world synthfaces] [--work-dir /tmp/ship-fits] [--methods a,b] [--no-pack]

Trains (or loads, when ``--work-dir`` already holds them) DeltaEdit's mapper, StyleCLIP-GD's
fs3 and StyleCLIP-LM's mappers of the world's benchmark prompts exactly as ``deltabench run``
would with the world's method defaults and seed 0, then writes what editing needs into
``deltabench/assets/methods/<world key>/`` with its manifest (:mod:`deltabench.shipped`). The
training pools (only needed to train) are left out. Prints the seconds each fit took and the
shipped size. ``--methods`` with ``--no-pack`` fits some of them only (e.g. two processes of one
thread each, one per core), and a last call without them loads every fit and packs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from deltabench.domain import load_domain
from deltabench.methods import get_method
from deltabench.runner import default_prompts, with_domain_defaults
from deltabench.shipped import pack

METHODS = ("deltaedit", "styleclip-gd", "styleclip-lm")
SKIP = ("deltaedit-pools/",)  # needed to train, not to edit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", default="synthfaces")
    ap.add_argument("--work-dir", default="/tmp/ship-fits", help="method cache to fit into (kept)")
    ap.add_argument("--methods", default=",".join(METHODS), help="the methods to fit (default: all three)")
    ap.add_argument("--no-pack", action="store_true", help="fit only; write nothing into the package")
    args = ap.parse_args()
    names = [m for m in args.methods.split(",") if m]
    if set(names) - set(METHODS) or (set(names) != set(METHODS) and not args.no_pack):
        ap.error(f"--methods: a subset of {','.join(METHODS)}; packing (no --no-pack) needs all three")
    domain = load_domain(args.world)
    work = Path(args.work_dir) / "methods" / domain.key
    prompts = [(p.source, p.target) for p in default_prompts(domain)]
    options = with_domain_defaults({}, domain, METHODS)
    seconds = {}
    for name in names:
        t0 = time.perf_counter()
        m = get_method(name)(domain, work, seed=0, **options.get(name, {}))
        m.fit()
        m.fit_prompts(prompts)
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
    if args.no_pack:
        return
    rels = [
        str(f.relative_to(work))
        for f in sorted(work.rglob("*"))
        if f.is_file()
        and str(f.relative_to(work)).startswith(tuple(m + "/" for m in METHODS))
        and not str(f.relative_to(work)).startswith(SKIP)
        and not f.name.endswith(".tmp")
    ]  # e.g. no deltaedit-naive
    # Mapper weights in fp16 like the world's (the package stays under 50 MB); fs3 and the
    # inverted training latents stay fp32 (they enter the edits as data).
    half = ("mapper.safetensors",) + tuple(
        f.name for f in (work / "styleclip-lm").rglob("*.safetensors") if f.name != "train_latents.safetensors"
    )
    dst = pack(domain.key, work, rels, half=half)
    size = sum((dst / r).stat().st_size for r in rels)
    print(json.dumps({"shipped": str(dst), "files": len(rels), "bytes": size, "fit_seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
