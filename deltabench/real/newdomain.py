"""``deltabench domain new``: a real-domain config for your own StyleGAN2 generator.

``deltabench domain new NAME --generator FILE [--encoder FILE] [--images DIR] [--train-images DIR]``
reads the generator (a rosinality ``.pt`` or an NVIDIA ``network-snapshot-*.pkl``, the latter
with :mod:`deltabench.real.nvidia`: nothing in it runs), takes its resolution and S-space layout
from the checkpoint and writes a :class:`~deltabench.real.domain.RealDomainConfig` JSON that
``--world`` accepts in ``fit``, ``edit``, ``run``, ``eval`` and ``gap``.

Without an encoder the domain edits only what its generator draws: test images are generator
samples (seeded by the run; their exact latents go with them, so nothing is inverted) and
DeltaEdit trains on generated codes only (``n_inverted=0``, :class:`RealDomain`). A folder of
test or training images needs an encoder for this generator (e4e), which inverts them.
CLIP and the FID Inception are the registry's files by default (``deltabench weights fetch``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DEFAULT_CLIP = "ViT-B-32-quickgelu-openai.safetensors"
DEFAULT_CLIP_MODEL = "ViT-B-32-quickgelu"
DEFAULT_FID = "pt_inception-2015-12-05-6726825d.pth"
DEFAULT_NEUTRAL = "photo"
# Edits any photo can take, for a domain whose own prompts are not given (--prompt).
DEFAULT_TARGETS = ("black and white photo", "photo at night", "colorful photo", "photo in winter")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _image_folder(d: str | None, flag: str) -> Path | None:
    from deltabench.real.domain import IMAGE_SUFFIXES

    if d is None:
        return None
    p = Path(d).expanduser()
    if not p.is_dir():
        raise ValueError(f"{flag} {d}: no such folder; give a folder of images ({', '.join(IMAGE_SUFFIXES)})")
    if not any(f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() for f in p.iterdir()):
        raise ValueError(f"{flag} {d} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return p.resolve()


def generator_summary(G, info: dict) -> dict:
    """What a domain records about its generator: format, resolution, W+ and S layout."""
    lay = G.slayout
    return {
        "format": info["format"],
        "resolution": int(G.size),
        "style_dim": int(G.style_dim),
        "n_latent": int(G.n_latent),
        "s_layers": len(lay),
        "s_channels": int(lay.total),
        "s_channels_non_torgb": int(lay.total_non_torgb),
        "conv_clamp": G.cfg.conv_clamp,
    }


def new_domain_config(
    name: str,
    generator: str | Path,
    encoder: str | Path | None = None,
    images: str | Path | None = None,
    train_images: str | Path | None = None,
    clip: str = DEFAULT_CLIP,
    clip_model: str = DEFAULT_CLIP_MODEL,
    fid: str | None = DEFAULT_FID,
    neutral: str = DEFAULT_NEUTRAL,
    targets=(),
    truncation: float = 1.0,
):
    """The :class:`RealDomainConfig` of a new domain, with the generator's summary.

    Every input is checked before anything is written: the name, the generator (loaded and
    converted, so a file deltabench cannot read fails here), the encoder (loaded, and its
    resolution checked against the generator), the folders. Returns ``(config, summary)``."""
    from deltabench.prompts import check_prompts
    from deltabench.real.domain import RealDomainConfig
    from deltabench.real.nvidia import load_stylegan2

    if not _NAME.match(name or ""):
        raise ValueError(f"domain name {name!r}: use 1-64 letters, digits, '.', '_' or '-' (it names cache folders)")
    gpath = Path(generator).expanduser()
    if not gpath.is_file():
        raise ValueError(
            f"--generator {generator}: no such file; give a StyleGAN2 checkpoint (a rosinality .pt or "
            f"an NVIDIA network-snapshot-*.pkl)"
        )
    if not 0 < truncation <= 1:
        raise ValueError(f"--truncation must be in (0, 1], got {truncation}")
    G, _, info = load_stylegan2(gpath)
    summary = generator_summary(G, info)
    res = summary["resolution"]
    epath = None
    if encoder is not None:
        from deltabench.models.e4e import load_e4e

        epath = Path(encoder).expanduser()
        if not epath.is_file():
            raise ValueError(f"--encoder {encoder}: no such file; give an e4e checkpoint for this generator")
        load_e4e(epath, expect_resolution=res)
    img_dir = _image_folder(None if images is None else str(images), "--images")
    train_dir = _image_folder(None if train_images is None else str(train_images), "--train-images")
    if epath is None and (img_dir or train_dir):
        flag = "--images" if img_dir else "--train-images"
        raise ValueError(
            f"{flag}: images from a folder must be inverted to be edited or trained on, and this domain "
            f"has no encoder; give --encoder FILE (an e4e for this generator), or leave {flag} out "
            f"(test images are then generated, and DeltaEdit trains on generated codes)"
        )
    if img_dir and train_dir and img_dir == train_dir:
        raise ValueError(f"--images and --train-images are both {img_dir}; methods must not train on the test images")
    targets = tuple(targets) or DEFAULT_TARGETS
    prompts = [check_prompts(neutral, t) for t in targets]
    desc = (
        f"Your own StyleGAN2 domain {name!r} (deltabench domain new): {info['format']} generator {gpath.name}, "
        f"{res} px, W+ {summary['n_latent']} x {summary['style_dim']}, S space {summary['s_channels']} channels in "
        f"{summary['s_layers']} layers ({summary['s_channels_non_torgb']} outside toRGB). "
        + (
            "Test images: "
            + (f"the folder {img_dir}" if img_dir else "generator samples (seeded), no inversion")
            + (
                "; encoder " + epath.name
                if epath
                else "; no encoder: DeltaEdit trains on generated codes (n_inverted=0)"
            )
            + "."
        )
    )
    cfg = RealDomainConfig.from_dict(
        {
            "name": name,
            "resolution": res,
            "generator": str(gpath.resolve()),
            "encoder": str(epath.resolve()) if epath else None,
            "clip": str(clip),
            "clip_model": clip_model,
            "fid": fid,
            "identity": None,
            "identity_loss": None,
            "face_crop": "none",
            "truncation": float(truncation),
            "neutral": neutral,
            "prompts": [{"source": s, "target": t} for s, t in prompts],
            "images": str(img_dir) if img_dir else None,
            "train_images": str(train_dir) if train_dir else None,
            "test_source": "folder" if img_dir else "generated",
            "description": desc,
        }
    )
    return cfg, summary


def write_domain_config(cfg, out: str | Path, force: bool = False) -> Path:
    out = Path(out).expanduser()
    if out.suffix != ".json":
        raise ValueError(f"--out {out}: the domain config is a .json file")
    if out.exists() and not force:
        raise ValueError(f"--out {out} exists; give another --out or --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    from deltabench.integrity import atomic_write_text

    atomic_write_text(out, json.dumps(cfg.to_dict(), indent=2) + "\n")
    return out


def _cmd_domain_new(args) -> int:
    cfg, summary = new_domain_config(
        args.name,
        args.generator,
        encoder=args.encoder,
        images=args.images,
        train_images=args.train_images,
        clip=args.clip,
        clip_model=args.clip_model,
        fid=args.fid,
        neutral=args.neutral,
        targets=args.prompt or (),
        truncation=args.truncation,
    )
    out = write_domain_config(cfg, args.out or f"{args.name}.json", force=args.force)
    print(json.dumps({"config": str(out), "name": cfg.name, "test_images": cfg.test_source, **summary}))
    print(f"next: deltabench run --world {out} --methods deltaedit --limit 2", flush=True)
    return 0


def add_parser(subparsers) -> None:
    """Register ``deltabench domain new`` on the CLI's subparsers."""
    d = subparsers.add_parser("domain", help="real domains of your own: a config for any StyleGAN2 checkpoint")
    dsub = d.add_subparsers(dest="domain_command", required=True)
    n = dsub.add_parser(
        "new",
        help="write a domain config JSON for a StyleGAN2 checkpoint (rosinality .pt or "
        "NVIDIA network-snapshot .pkl, read without running it); use it as --world",
    )
    n.add_argument("name", help="the domain's name (letters, digits, . _ -)")
    n.add_argument("--generator", required=True, help="the StyleGAN2 checkpoint: rosinality .pt or NVIDIA .pkl")
    n.add_argument("--encoder", help="an e4e checkpoint for this generator (needed to edit images from folders)")
    n.add_argument("--images", metavar="DIR", help="test images (default: generator samples, seeded by the run)")
    n.add_argument(
        "--train-images",
        dest="train_images",
        metavar="DIR",
        help="images methods train on, apart from the test images (needs --encoder)",
    )
    n.add_argument("--out", help="the config file to write (default: ./NAME.json)")
    n.add_argument("--clip", default=DEFAULT_CLIP, help=f"CLIP weights: registry name or path (default {DEFAULT_CLIP})")
    n.add_argument(
        "--clip-model",
        dest="clip_model",
        default=DEFAULT_CLIP_MODEL,
        help=f"the open_clip model of --clip (default {DEFAULT_CLIP_MODEL})",
    )
    n.add_argument("--fid", default=DEFAULT_FID, help=f"pytorch-fid Inception weights (default {DEFAULT_FID})")
    n.add_argument(
        "--neutral", default=DEFAULT_NEUTRAL, help=f"the neutral text edits start from (default {DEFAULT_NEUTRAL!r})"
    )
    n.add_argument(
        "--prompt",
        action="append",
        metavar="TARGET",
        help="a target text of the domain's benchmark prompts (repeat; default: "
        + ", ".join(repr(t) for t in DEFAULT_TARGETS)
        + ")",
    )
    n.add_argument("--truncation", type=float, default=1.0, help="truncation of sampled latents (default 1.0)")
    n.add_argument("--force", action="store_true", help="replace an existing --out file")
    n.set_defaults(func=_cmd_domain_new)


__all__ = ["add_parser", "generator_summary", "new_domain_config", "write_domain_config"]
