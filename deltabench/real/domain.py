"""Real domains (``ffhq``, ``lsun-cat``, ``lsun-church``, ``lsun-horse``) from official weights.

A :class:`RealDomain` has the interface of :class:`deltabench.domain.SynthfacesDomain`, so
methods and metrics run on it unchanged. Its config is a JSON data file
(``deltabench/configs/domains/<name>.json``) naming the weight files (resolved in the weights
directory: the ``weights`` argument, else ``$DELTABENCH_WEIGHTS``, else the cache), the CLIP input handling,
the identity models, the prompts and where the test images come from.

Test images: a folder the user names (``images`` argument, else the environment variable the
config names, e.g. ``$DELTABENCH_FFHQ_IMAGES`` for CelebA-HQ test images). A domain whose
config says ``"test_source": "generated"`` (LSUN: DeltaEdit edits latents sampled from z there,
and e4e publishes no cat encoder) uses generator samples when no folder is given, and inverts
them exactly by looking up the latents it drew them from; other images go through its e4e.

Training images (what methods fit on, :meth:`RealDomain.train_images`; never the test images):
a second folder (``train_images`` argument, else ``$<train_images_env>``, e.g.
``$DELTABENCH_FFHQ_TRAIN_IMAGES`` for CelebA-HQ train images, else the config's
``train_images``). A file whose bytes equal a test image's is refused. Without a training
folder, a ``generated`` domain trains on generator samples of seeds disjoint from the test
seeds; a ``folder`` domain has no training images (an error that says what to pass; DeltaEdit
can still train on generated codes alone with ``n_inverted=0``). Both folders, with a sha256
of their contents, are part of :attr:`RealDomain.config_hash` (a run's ``world_hash``) and of
:meth:`RealDomain.describe`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from deltabench.checkpoints import CheckpointError
from deltabench.confighash import Schema, versioned
from deltabench.domainbase import ClipTextImage, DomainSource, TestImages
from deltabench.parse import config_from_dict

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")

# The networks of a real domain, one config entry each, loaded when first asked for
# (RealDomain.generator, .encoder, .clip, .identity, .identity_loss, .fid_features).
NETWORKS = ("generator", "encoder", "clip", "identity", "identity_loss", "fid")
NETWORK_ROLES = {
    "generator": "the StyleGAN2 generator",
    "encoder": "the e4e encoder that inverts photos",
    "clip": "CLIP (text and image embeddings)",
    "identity": "the ArcFace model of the IDS metric",
    "identity_loss": "the IR-SE50 identity loss of StyleCLIP-OP/LM",
    "fid": "pytorch-fid's Inception (FID/KID features)",
}
# The registry file that serves each entry on every official domain (config hints).
NETWORK_FILES = {
    "clip": "ViT-B-32-quickgelu-openai.safetensors",
    "identity": "w600k_r50.onnx",
    "identity_loss": "model_ir_se50.pth",
    "fid": "pt_inception-2015-12-05-6726825d.pth",
}


def _add_entry_hint(domain: str, kind: str) -> str:
    f = NETWORK_FILES.get(kind)
    example = f'"{kind}": "{f}" (`deltabench weights fetch {f}`)' if f else f'"{kind}": FILE'
    return f"domain {domain!r} names no {kind!r} file ({NETWORK_ROLES[kind]}); add {example} to its config"


# What of a real domain's config its hash covers (deltabench.confighash; RealDomain._identity):
# the released fs3 came after the first version (none before); where the images lie and the
# description do not change the weights (the image sets enter the hash by their contents).
REAL_DOMAIN_SCHEMA = Schema(
    "real-domain",
    first=(
        "name",
        "resolution",
        "generator",
        "clip",
        "fid",
        "clip_model",
        "clip_input_size",
        "clip_normalize",
        "encoder",
        "identity",
        "identity_loss",
        "face_crop",
        "truncation",
        "truncation_mean",
        "neutral",
        "prompts",
        "images_env",
        "train_images_env",
        "test_source",
    ),
    added=[{"fs3": None}],
    not_hashed=("images", "train_images", "description"),
)


@versioned(REAL_DOMAIN_SCHEMA)
@dataclass(frozen=True)
class RealDomainConfig:
    """A real domain, as data. Weight entries are registry file names (or paths)."""

    name: str
    resolution: int
    generator: str
    clip: str
    fid: str | None = None  # pytorch-fid Inception (FID/KID features): only commands that score need it
    clip_model: str = "ViT-B-32-quickgelu"
    clip_input_size: int = 224
    clip_normalize: bool = True
    encoder: str | None = None
    identity: str | None = None  # insightface recognition ONNX (metric)
    identity_loss: str | None = None  # IR-SE50 (differentiable, StyleCLIP OP/LM)
    face_crop: str = "ffhq"
    truncation: float = 1.0  # DeltaEdit generate_codes.py default (no truncation)
    truncation_mean: int = 4096  # z samples for the mean w when truncation < 1
    neutral: str = "face"
    prompts: tuple[tuple[str, str], ...] = ()  # (source, target)
    images_env: str | None = None
    images: str | None = None
    # The training folder (what methods fit on, never scored): argument, else $train_images_env, else this.
    train_images_env: str | None = None
    train_images: str | None = None
    # "folder": test images from the user's folder (ffhq: CelebA-HQ test). "generated":
    # generator samples, inverted exactly, unless a folder is given (LSUN, as DeltaEdit).
    test_source: str = "folder"
    # The released StyleCLIP relevance matrix fs3.npy of this generator (a registry name or a path
    # anywhere): DeltaEdit's relevance filter reads it (RealDomain.released_fs3). Optional.
    fs3: str | None = None
    description: str = ""

    def __post_init__(self):
        if self.resolution < 4 or self.resolution & (self.resolution - 1):
            raise ValueError(f"domain {self.name!r}: resolution must be a power of two, got {self.resolution}")
        ps = []
        for p in self.prompts:
            if isinstance(p, dict):
                unknown = set(p) - {"source", "target"}
                if unknown or "target" not in p:
                    raise ValueError(f"domain {self.name!r}: a prompt is {{'source', 'target'}}, got {p}")
                p = (p.get("source", self.neutral), p["target"])
            ps.append(tuple(p))
        object.__setattr__(self, "prompts", tuple(ps))
        if self.test_source not in ("folder", "generated"):
            raise ValueError(
                f"domain {self.name!r}: test_source must be 'folder' or 'generated', got {self.test_source!r}"
            )
        if self.face_crop not in ("ffhq", "none"):
            raise ValueError(f"domain {self.name!r}: face_crop must be 'ffhq' or 'none', got {self.face_crop!r}")

    @staticmethod
    def from_dict(d: dict) -> RealDomainConfig:
        return config_from_dict(RealDomainConfig, d, "real domain config")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prompts"] = [{"source": s, "target": t} for s, t in self.prompts]
        return d

    def weight_names(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in NETWORKS if getattr(self, k)}


def domain_names() -> list[str]:
    """The real domains shipped as config files."""
    root = resources.files("deltabench") / "configs" / "domains"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".json"))


def is_real_domain_config(name_or_path) -> bool:
    """True for a JSON file that is a real domain config (it names a ``generator`` file)."""
    p = Path(str(name_or_path))
    if p.suffix != ".json" or not p.is_file():
        return False
    try:
        d = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(d, dict) and isinstance(d.get("generator"), str) and "clip" in d


def load_domain_config(name_or_path: str | Path) -> RealDomainConfig:
    p = Path(name_or_path)
    if p.suffix == ".json" and p.is_file():
        text, where = p.read_text(), str(p)
    else:
        f = resources.files("deltabench") / "configs" / "domains" / f"{name_or_path}.json"
        if not f.is_file():
            raise ValueError(f"unknown real domain {name_or_path!r}; known: {domain_names()} (or a JSON path)")
        text, where = f.read_text(), str(f)
    try:
        return RealDomainConfig.from_dict(json.loads(text))
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise ValueError(f"{where}: bad domain config: {e}") from None


def resolve_weight(name: str, wdir: str | Path | None = None) -> Path:
    """A weight file named in a domain config -> its local path.

    A path that exists is used as it is; a registry name goes through
    :func:`deltabench.weights.path_of` (``wdir``, else ``$DELTABENCH_WEIGHTS``, else the cache),
    which says how to fetch a missing file; other names are looked up in the same folder.
    """
    from deltabench import weights as registry

    p = Path(name).expanduser()
    if p.exists():
        return p
    if p.is_absolute() or _is_path(name):
        inside = registry.weights_dir(wdir) / name
        if not p.is_absolute() and inside.exists():
            return inside
        raise CheckpointError(
            f"{p}: no such file (named in the domain config{'' if p.is_absolute() else f'; nor at {inside}'})"
        )
    try:
        return registry.path_of(name, wdir, alternatives=True)
    except registry.MissingWeightsError as e:
        raise CheckpointError(str(e)) from None
    except registry.WeightsError:  # not a registry file (a config of the user's own)
        path = registry.weights_dir(wdir) / name
        if not path.exists():
            raise CheckpointError(
                f"{path}: missing weight file {name!r} (not in the weights registry); place it "
                f"there or point $DELTABENCH_WEIGHTS (or the weights argument) at its folder"
            ) from None
        return path


def _is_path(name: str) -> bool:
    """A config entry that names a path (has a folder part, or starts with ``~`` or ``.``), not
    a weights-registry name."""
    return any(c in name for c in ("/", "\\")) or name.startswith(("~", "."))


def _id_lambda(method: str, conf: dict) -> float:
    """StyleCLIP-OP/LM's identity-loss weight under ``conf`` (the class default otherwise)."""
    if "id_lambda" in conf:
        try:
            return float(conf["id_lambda"])
        except (TypeError, ValueError):
            return 1.0  # the method's own check reports the bad value; assume the loss is on
    if method == "styleclip-op":
        from baselines.op import OPConfig

        return float(OPConfig().id_lambda)
    from baselines.lm import LMConfig

    return float(LMConfig().id_lambda)


def _file_identity(path: Path) -> str:
    """A weight file's identity for cache keys: its recorded sha256 (``<file>.sha256`` sidecar
    written by ``deltabench weights verify``) when present, else name and size (hashing
    gigabytes at every start would cost seconds)."""
    side = path.with_name(path.name + ".sha256")
    if side.is_file():
        return side.read_text().split()[0]
    if path.is_dir():
        return ";".join(f"{f.name}:{f.stat().st_size}" for f in sorted(path.glob("*.onnx")))
    return f"{path.name}:{path.stat().st_size}"


def _folder(arg, env: str | None, default: str | None) -> Path | None:
    """An image folder: the argument, else ``$env``, else the config's value, else None."""
    if arg:
        return Path(arg)
    if env and os.environ.get(env):
        return Path(os.environ[env])
    return Path(default) if default else None


def _sha_cache_file(folder: str) -> Path:
    from deltabench.world import store

    return store.cache_root() / "image-sha256" / f"{hashlib.sha256(folder.encode()).hexdigest()[:24]}.json"


def _read_sha_cache(path: Path) -> dict[str, list]:
    """``{name: [size, mtime_ns, inode, sha256]}`` recorded for a folder, or ``{}``."""
    try:
        d = json.loads(path.read_text())
        files = d["files"] if isinstance(d, dict) else None
        return dict(files) if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


class GeneratedInverter:
    """The domain's ``encoder``: the inversion encoder (e4e, loaded from its file the first time
    an image is inverted), or a clear error where the domain has none. Images the domain
    generated itself carry their exact latents (``TestImages.latents``), so they are never
    inverted."""

    def __init__(self, domain: RealDomain, encoder=None):
        self.domain, self._given = domain, encoder

    @property
    def encoder(self):
        """The e4e inverter (loaded now if it was not), or None where the config names none."""
        return self._given if self._given is not None else self.domain._network("encoder")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self._given is None and self.domain.cfg.encoder is None:
            raise ValueError(
                f"domain {self.domain.name!r} has no inversion encoder: it can only edit "
                f"images it generated itself (test_images). Give the domain config an "
                f"'encoder' (an e4e checkpoint for this generator) to edit other images"
            )
        return self.encoder(images)


class RealDomain(ClipTextImage):
    """A domain from official pretrained weights; see the module docstring."""

    kind = "real"
    oracle = None  # no ground truth on real images
    # The official CLIP feed per method (deltabench.domain.ClipTextImage.official_clip_input):
    # DeltaEdit, StyleCLIP-OP and -LM see [-1, 1] pixels through Upsample(x7) + AvgPool(size/32)
    # without mean/std; StyleCLIP-GD's fs3 and the metrics keep the config's ``clip_normalize``.
    official_clip_input = True
    official_fp16_clip = True  # --precision official: CLIP in fp16 on CUDA, as clip.load does
    # The official settings of every method on a real domain (user --options override them;
    # synthfaces keeps its own measured ones, deltabench.domain.SynthfacesDomain). Sources
    # (Yueming6568/DeltaEdit and orpatashnik/StyleCLIP at their default branches):
    # - deltaedit beta 0.03: options/test_options.py line 18 (--threshold default 0.03), used by
    #   scripts/inference.py lines 26-30 / 82 and scripts/inference_real.py lines 94-98 / 160 on
    #   the *raw* map_tool.GetDt difference (utils/map_tool.py lines 103-106; normalised only
    #   after, inference.py line 84); fs3 from the domain's styleclip-gd fs3 (DeltaEdit.fit).
    # - deltaedit pool and steps: datasets/train_dataset.py lines 27-29 (200,000 generated +
    #   58,000 inverted codes) and line 37 (the dataset repeats 50x); scripts/train.py lines 19-23
    #   and 38 (one pass, drop_last) at batch 64 (options/train_options.py line 11):
    #   258,000 * 50 // 64 = 201,562 steps; generate_codes.py line 100 (200,000 samples).
    # - styleclip-op id_lambda 0.0: optimization/run_optimization.py line 129 (the script's
    #   default; the 0.005 of OPConfig is the optimization_playground notebook's). Its other
    #   defaults equal OPConfig's: lr 0.1 (line 125), 300 steps (line 126), l2 0.008 (line 128).
    # - styleclip-lm: mapper/options/train_options.py line 22 (batch 2), line 28 (Ranger, used by
    #   mapper/training/coach.py lines 174-180), line 39 (50,000 steps); lr 0.5, l2 0.8, id 0.1
    #   (lines 27, 30, 32) equal LMConfig's.
    # - styleclip-gd fs3: global_directions/SingleChannel.py lines 59 (100 images), 68 (+-5 sigma),
    #   78-79 (channel set to its mean first, FS3Config.protocol "official"); sigma and mean over
    #   100,000 codes (GetCode.py line 195, GetCodeMS lines 170-179, numpy ddof 0) sampled with
    #   truncation 0.7 (GetCode.py line 79).
    method_defaults = {
        "deltaedit": {
            "beta": 0.03,
            "config": {"n_generated": 200_000, "n_inverted": 58_000, "steps": 201_562, "batch": 64},
        },
        "styleclip-op": {"config": {"id_lambda": 0.0}},
        "styleclip-lm": {"config": {"steps": 50_000, "batch": 2, "optimizer": "ranger"}},
        "styleclip-gd": {"config": {"protocol": "official", "n_images": 100, "n_std": 100_000}},
    }

    def __init__(
        self,
        cfg: RealDomainConfig,
        weights: str | Path | None = None,
        images: str | Path | None = None,
        device: str | torch.device = "cpu",
        train_images: str | Path | None = None,
    ):
        """Nothing is loaded here: each network is read from its file the first time a method or
        metric asks for it (:attr:`generator`, :attr:`encoder`, :attr:`clip`, :attr:`identity`,
        :attr:`identity_loss`, :meth:`fid_features`), and a missing file is an error naming it
        then. Entry points check up front, before work that would be lost, with
        :meth:`check_files` (``require(needs(...))``)."""
        from deltabench.models.clip import IMAGENET_TEMPLATES

        self.cfg, self.name = cfg, cfg.name
        self._device = torch.device(device)
        self._weights = weights
        self.resolution = cfg.resolution  # checked against the generator when it loads
        self._nets: dict[str, object] = {}
        self._net_lock = threading.RLock()
        self._latent_avg: torch.Tensor | None = None
        self._inverter = GeneratedInverter(self)
        if not cfg.encoder:  # nothing can be inverted: DeltaEdit's pool is generated codes only
            de = self.method_defaults["deltaedit"]
            self.method_defaults = {
                **self.method_defaults,
                "deltaedit": {**de, "config": {**de["config"], "n_inverted": 0}},
            }
        self.templates: tuple[str, ...] = IMAGENET_TEMPLATES
        self.neutral = cfg.neutral
        self.images_dir = _folder(images, cfg.images_env, cfg.images)
        self.train_dir = _folder(train_images, cfg.train_images_env, cfg.train_images)
        self._file_sha: dict[str, dict[str, list]] = {}  # folder -> {name: [size, mtime_ns, inode, sha256]}
        self._split_checked: tuple | None = None
        self._text_cache: dict[str, torch.Tensor] = {}
        self._w_mean: torch.Tensor | None = None

    # -- the networks, loaded when first asked for ---------------------------------------------
    generator_format = None  # "rosinality" or "nvidia" once the generator has loaded
    fid_feature_name = "Inception pool3"  # loaders.FidInception.name
    # loaders.FidInception(resize="clean").resize_filter: clean-fid's resize to 299 (metrics.fid.CLEAN_RESIZE)
    fid_resize = "clean-fid 'clean': PIL bicubic per channel on float32 [0, 255], clipped"
    fid_feature_dim = 2048  # loaders.FidInception.feature_dim

    @property
    def clip_name(self) -> str:
        """The open_clip model and its weights file, for the CLIP-I/CLIP-T column headers."""
        return f"{self.cfg.clip_model} ({Path(self.cfg.clip).name})" if self.cfg.clip else self.cfg.clip_model

    def path(self, kind: str) -> Path:
        """The local file of config entry ``kind`` (one of :data:`NETWORKS`). Raises
        :class:`CheckpointError` naming the file, the entry and how to get it when it is missing
        or the config names none."""
        if kind not in NETWORKS:
            raise ValueError(f"unknown network {kind!r}; known: {', '.join(NETWORKS)}")
        name = getattr(self.cfg, kind)
        if not name:
            raise CheckpointError(_add_entry_hint(self.name, kind))
        try:
            return resolve_weight(name, self._weights)
        except CheckpointError as e:
            raise CheckpointError(
                f"domain {self.name!r} needs {NETWORK_ROLES[kind]} (config entry {kind!r}): {e}"
            ) from None

    @property
    def paths(self) -> dict[str, Path]:
        """``{entry: local path}`` of the config's weight files that are present (nothing loads)."""
        out = {}
        for k in self.cfg.weight_names():
            try:
                out[k] = self.path(k)
            except CheckpointError:
                pass
        return out

    def _network(self, kind: str):
        """The loaded network of entry ``kind`` (None where the config names none); loads it now
        from its file when this is the first time it is asked for."""
        if kind in self._nets:
            return self._nets[kind]
        with self._net_lock:
            if kind not in self._nets:
                self._nets[kind] = None if not getattr(self.cfg, kind) else self._load(kind, self.path(kind))
            return self._nets[kind]

    def _load(self, kind: str, path: Path):
        from deltabench.real import loaders

        cfg = self.cfg
        if kind == "generator":
            from deltabench.real.nvidia import load_stylegan2

            # a rosinality .pt, or an NVIDIA network pickle (converted; nothing in it runs)
            G, latent_avg, info = load_stylegan2(path, map_location=self._device)
            self.generator_format = info["format"]
            if G.size != cfg.resolution:
                raise CheckpointError(
                    f"{path}: a {G.size} px generator; domain {cfg.name!r} expects "
                    f"{cfg.resolution} px (config 'resolution'). Use the {cfg.resolution} px "
                    f"checkpoint or fix the config"
                )
            self._latent_avg = latent_avg.to(self._device)
            return G.requires_grad_(False)
        if kind == "encoder":
            from deltabench.models.e4e import load_e4e

            return load_e4e(path, expect_resolution=cfg.resolution, map_location=self._device).inverter
        if kind == "clip":
            clip = loaders.load_open_clip(path, cfg.clip_model, self._device, normalize=cfg.clip_normalize)
            if clip.image_size != cfg.clip_input_size:
                raise CheckpointError(
                    f"{path}: open_clip {cfg.clip_model!r} takes {clip.image_size} px images; "
                    f"domain {cfg.name!r} says clip_input_size={cfg.clip_input_size}"
                )
            return clip.requires_grad_(False)
        if kind == "identity":
            return loaders.load_arcface(path, crop=cfg.face_crop)
        if kind == "identity_loss":
            from deltabench.models.irse import IdentityLoss, load_irse50

            return IdentityLoss(load_irse50(path, self._device), crop=cfg.face_crop).requires_grad_(False)
        return loaders.load_fid_inception(path, self._device)  # fid

    def _set_network(self, kind: str, value) -> None:
        with self._net_lock:
            self._nets[kind] = value

    generator = property(
        lambda self: self._network("generator"),
        lambda self, v: self._set_network("generator", v),
        doc="The StyleGAN2 generator (rosinality .pt or NVIDIA .pkl), loaded when first asked for.",
    )
    clip = property(
        lambda self: self._network("clip"),
        lambda self, v: self._set_network("clip", v),
        doc="open_clip CLIP, loaded when first asked for.",
    )
    identity = property(
        lambda self: self._network("identity"),
        lambda self, v: self._set_network("identity", v),
        doc="The IDS model (insightface ArcFace), None where the config names none.",
    )
    identity_loss = property(
        lambda self: self._network("identity_loss"),
        lambda self, v: self._set_network("identity_loss", v),
        doc="IR-SE50 identity loss (StyleCLIP-OP/LM), None where the config names none.",
    )

    @property
    def encoder(self) -> GeneratedInverter:
        """The inverter: e4e (loaded when an image is first inverted) or an error where the
        config names no encoder."""
        return self._inverter

    @encoder.setter
    def encoder(self, value) -> None:
        self._inverter = value if isinstance(value, GeneratedInverter) else GeneratedInverter(self, value)

    @property
    def latent_avg(self) -> torch.Tensor:
        """The generator checkpoint's ``latent_avg`` ``[style_dim]`` (loads the generator)."""
        self._network("generator")
        return self._latent_avg

    @property
    def loaded(self) -> tuple[str, ...]:
        """The networks loaded so far (in :data:`NETWORKS` order)."""
        return tuple(k for k in NETWORKS if self._nets.get(k) is not None)

    # -- which files a command needs, checked before it starts ------------------------------------
    def needs(
        self, methods=(), metrics: bool = False, test_images: bool = False, invert: bool = False
    ) -> tuple[str, ...]:
        """The config entries (:data:`NETWORKS`) a command uses, in that order.

        ``methods``: method names, or ``{name: options}`` with the options the method will be
        built with (the domain defaults merged in: ``{"config": {...}, "checkpoint": ...}``).
        ``metrics``: the command scores (FID/KID features; IDS where the config names an identity
        model). ``test_images``: it draws the domain's test images (an encoder when they come from
        a folder). ``invert``: it inverts photos it is given (``edit``). CLIP is always needed,
        the generator by every command that edits, inverts or draws images (not by ``score``).
        Entries the config leaves out are included only where the command cannot do without them
        (an encoder to invert, Inception to score): :meth:`require` then says that the config
        names none."""
        opts = methods if isinstance(methods, dict) else {m: {} for m in methods}
        out = ["clip"] + (["generator"] if opts or test_images or invert else [])
        if metrics:
            out.append("fid")
            if self.cfg.identity:
                out.append("identity")
        if invert or (test_images and not self._generates_test()):
            out.append("encoder")
        for name, o in opts.items():
            o = dict(o or {})
            given = o.get("config") or {}
            given = given.to_dict() if hasattr(given, "to_dict") else dict(given)  # a config object or a dict
            conf = {**dict(dict(self.method_defaults.get(name, {})).get("config", {})), **given}
            if name in ("styleclip-op", "styleclip-lm") and _id_lambda(name, conf) > 0:
                out.append("identity_loss" if self.cfg.identity_loss else "identity" if self.cfg.identity else "")
            trains_on_photos = self.train_dir is not None and (
                (
                    name in ("deltaedit", "deltaedit-naive")
                    and not o.get("checkpoint")
                    and int(conf.get("n_inverted", 1)) > 0
                )
                or (name == "styleclip-lm" and not conf.get("checkpoints"))
            )
            if trains_on_photos:
                out.append("encoder")
        return tuple(k for k in NETWORKS if k in out)

    def require(self, needs, purpose: str = "") -> None:
        """Check that the files of config entries ``needs`` (names of :data:`NETWORKS`) are
        present, without loading them; one :class:`CheckpointError` lists every missing file
        with the command (``deltabench weights fetch ...``) or config entry that supplies it.
        ``identity`` and ``identity_loss`` the config leaves out are skipped (no IDS / no
        identity loss on that domain); a needed ``encoder`` or ``fid`` it leaves out is an error."""
        problems = []
        for kind in dict.fromkeys(needs):
            if kind not in NETWORKS:
                raise ValueError(f"unknown network {kind!r}; known: {', '.join(NETWORKS)}")
            if not getattr(self.cfg, kind):
                if kind == "encoder":
                    problems.append(
                        f"domain {self.name!r} has no inversion encoder (config entry 'encoder'), so "
                        f"it cannot invert photos; give its config an e4e checkpoint for this generator"
                    )
                elif kind in ("generator", "clip", "fid"):
                    problems.append(_add_entry_hint(self.name, kind))
                continue
            try:
                self.path(kind)
            except CheckpointError as e:
                problems.append(str(e))
        if problems:
            head = f"{purpose}: " if purpose else ""
            raise CheckpointError(
                head
                + (problems[0] if len(problems) == 1 else f"{len(problems)} files are missing: " + "; ".join(problems))
            )

    def check_files(
        self, methods=(), metrics: bool = False, test_images: bool = False, invert: bool = False, purpose: str = ""
    ) -> tuple[str, ...]:
        """``require(needs(...))``: raises before any work when a file the command needs is
        missing; returns the entries checked."""
        needs = self.needs(methods, metrics=metrics, test_images=test_images, invert=invert)
        self.require(needs, purpose)
        return needs

    # -- identity of the weights ------------------------------------------------------------
    # The files every fit reads: their contents enter ``key`` (the method cache). The others
    # enter it by their config name only, so fetching a file a fit does not read (Inception,
    # ArcFace) or one that a later command needs never moves the cache.
    KEY_FILES = ("generator", "clip")

    def _identity(self, files=NETWORKS) -> dict:
        """Config and file identities of the entries ``files`` (a missing file: "missing")."""
        present = self.paths
        ids = {
            k: _file_identity(present[k]) if k in present else "missing"
            for k in sorted(self.cfg.weight_names())
            if k in files
        }
        return {"config": REAL_DOMAIN_SCHEMA.hashed(self.cfg.to_dict()), "files": ids}

    @property
    def config_hash(self) -> str:
        """sha256 over the config, every weight file's identity and both image sets (training and
        test: folder and content hash, :meth:`describe`); recorded in run manifests as the run's
        ``world_hash``, which unit ids include. Refuses overlapping folders (:meth:`data_sources`)."""
        blob = json.dumps({**self._identity(), "data": self.data_sources()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def key(self) -> str:
        """``<name>-<16 hex>``: names this domain's exact weights and training images (method cache
        directories): the test images are left out (no method fits on them), and so is where the
        training folder lies (its contents count)."""
        train = {k: v for k, v in self._train_record()[0].items() if k != "folder"}
        ident = self._identity(self.KEY_FILES)
        ident["config"].pop("fs3", None)  # read at fit time, never cached
        blob = json.dumps({**ident, "train": train}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    # -- where training and test images come from ----------------------------------------------
    def _generates_test(self) -> bool:
        return self.images_dir is None and (self.cfg.test_source == "generated" or not self.cfg.encoder)

    def _generates_train(self) -> bool:
        return self.train_dir is None and (self.cfg.test_source == "generated" or not self.cfg.encoder)

    def _folder_content(self, d: Path, what: str) -> tuple[dict, dict[str, Path]]:
        """A folder's record (resolved path, number of images, sha256 over the sorted (name,
        sha256 of bytes) pairs) and sha256 -> file. A file is hashed again when its size, mtime
        or inode changed (the hashes are kept in memory and in ``<cache>/image-sha256/``, so a
        large training folder is read once, not at every start)."""
        files = self._list_images(d, what)
        root = str(d.resolve())
        cache_f = _sha_cache_file(root)
        if root not in self._file_sha:
            self._file_sha[root] = _read_sha_cache(cache_f)
        known, changed = self._file_sha[root], False
        by_sha: dict[str, Path] = {}
        pairs = []
        for f in files:
            st = f.stat()
            stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
            hit = known.get(f.name)
            if not isinstance(hit, list) or len(hit) != 4 or hit[:3] != stamp:
                with open(f, "rb") as fh:
                    hit = stamp + [hashlib.file_digest(fh, "sha256").hexdigest()]
                known[f.name], changed = hit, True
            pairs.append((f.name, hit[3]))
            by_sha.setdefault(hit[3], f)
        if changed or len(known) != len(files):
            self._file_sha[root] = known = {f.name: known[f.name] for f in files}
            try:
                from deltabench import integrity

                cache_f.parent.mkdir(parents=True, exist_ok=True)
                integrity.atomic_write_text(cache_f, json.dumps({"folder": root, "files": known}))
            except OSError:  # a read-only cache costs time only
                pass
        digest = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
        return {"source": "folder", "folder": root, "n_images": len(files), "sha256": digest}, by_sha

    def data_sources(self) -> dict:
        """``{"train": ..., "test": ...}``: each ``{"source": "folder", "folder", "n_images",
        "sha256"}``, ``{"source": "generated", ...}`` or ``{"source": "none"}``.

        Raises ValueError when a training image has the bytes of a test image (under any name)."""
        test, test_sha = {"source": "none"}, {}
        if self.images_dir is not None:
            test, test_sha = self._folder_content(self.images_dir, "test")
        elif self._generates_test():
            test = {"source": "generated", "seeds": "the run's test seeds"}
        if (
            self.train_dir is not None
            and self.images_dir is not None
            and self.train_dir.resolve() == self.images_dir.resolve()
        ):
            raise ValueError(
                f"domain {self.name!r}: the training folder and the test folder are both "
                f"{self.images_dir}; methods must not train on the images the benchmark scores. "
                f"Give train_images=DIR{self._env_hint(train=True)} a folder of other images "
                f"(for ffhq: CelebA-HQ train, aligned as FFHQ)"
            )
        train, train_sha = self._train_record()
        if train_sha:
            shared = [(f, test_sha[h]) for h, f in train_sha.items() if h in test_sha]
            if shared:
                (tf, sf), more = shared[0], len(shared) - 1
                raise ValueError(
                    f"training image {tf} has the same bytes (sha256) as test image {sf}"
                    + (f", and {more} more training image{'s' if more > 1 else ''} repeat test images" if more else "")
                    + f": the training folder {self.train_dir} and the test folder {self.images_dir} must not "
                    f"share images (methods would train on what the benchmark scores). Remove the shared files "
                    f"from the training folder, or give another train_images=DIR{self._env_hint(train=True)}"
                )
        return {"train": train, "test": test}

    def _train_record(self) -> tuple[dict, dict[str, Path]]:
        if self.train_dir is not None:
            return self._folder_content(self.train_dir, "training")
        if self._generates_train():
            return {"source": "generated", "seeds": "sha256('deltabench-train:<seed>'), disjoint from test seeds"}, {}
        return {"source": "none"}, {}

    def describe(self) -> dict:
        """What a run manifest records about the domain: name, config hash and where its training
        and test images come from (folders with their content hashes)."""
        return {"name": self.name, "kind": self.kind, "config_hash": self.config_hash, **self.data_sources()}

    def _env_hint(self, train: bool = False) -> str:
        env = self.cfg.train_images_env if train else self.cfg.images_env
        return f" or set ${env}" if env else ""

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def identity_info(self) -> dict | None:
        """How IDS is computed (insightface or the fallback, with its warning): run manifests record it."""
        if not self.cfg.identity:
            return None
        return self.identity.info()

    # The released relevance matrix of each official generator (registry name), looked for next
    # to the generator file where the config names no ``fs3`` (configs written before it existed).
    RELEASED_FS3 = {"stylegan2-ffhq-config-f.pt": "styleclip-fs3-ffhq.npy"}

    @property
    def released_fs3(self) -> Path | None:
        """The released fs3.npy of this domain's generator, which DeltaEdit's relevance filter
        uses by default, as the official inference does (``scripts/inference_real.py`` reads
        ``./models/stylegan2/npy_ffhq/fs3.npy``), else None (the filter then uses the domain's own
        StyleCLIP-GD fs3).

        The config's ``fs3``: a path anywhere (it must exist) or a registry name looked up in
        the weights folder (``deltabench weights fetch styleclip-fs3-ffhq.npy``; None while it
        is absent). A config without ``fs3`` finds the registry file of its generator next to the
        generator file. A method's own ``relevance_file`` option overrides all of this."""
        if self.cfg.fs3:
            if _is_path(self.cfg.fs3):
                return resolve_weight(self.cfg.fs3, self._weights)  # a missing path is an error
            try:
                return resolve_weight(self.cfg.fs3, self._weights)
            except CheckpointError:
                return None
        name = self.RELEASED_FS3.get(Path(self.cfg.generator).name)
        if not name:
            return None
        try:
            p = self.path("generator").parent / name
        except CheckpointError:
            return None
        return p if p.is_file() else None

    @property
    def prompts(self) -> tuple:
        """The config's edit prompts as runner ``Prompt`` objects (no attribute: no ground truth)."""
        from deltabench.prompts import Prompt

        return tuple(Prompt(s, t) for s, t in self.cfg.prompts)

    # -- latents and images ------------------------------------------------------------------
    def fid_features(self, images: torch.Tensor) -> torch.Tensor:
        """pytorch-fid InceptionV3 pool3 features ``[N, 2048]`` of images in [-1, 1] (Inception
        loads the first time)."""
        if not self.cfg.fid:
            raise CheckpointError(_add_entry_hint(self.name, "fid"))
        return self._network("fid").features(images)

    @torch.no_grad()
    def _mean_w(self) -> torch.Tensor:
        if self._w_mean is None:
            G = self.generator
            if self.generator_format == "nvidia":  # NVIDIA truncates towards its tracked mapping.w_avg
                self._w_mean = self.latent_avg.reshape(1, -1).to(self._device)
            else:  # rosinality Generator.mean_latent(truncation_mean): mean of mapped Gaussian z
                self._w_mean = G.mean_latent(self.cfg.truncation_mean).to(self._device)
        return self._w_mean

    @torch.no_grad()
    def sample_w_plus(self, n: int, seed: int) -> torch.Tensor:
        """``[n, n_latent, D]``: mapped Gaussian z, truncated towards the mean w when
        ``truncation < 1`` (rosinality ``Generator(truncation, truncation_latent)``)."""
        G = self.generator
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, G.style_dim, generator=g)
        out = []
        for i in range(0, n, 1024):
            w = G.mapping(z[i : i + 1024].to(self._device))
            if self.cfg.truncation != 1.0:
                w = self._mean_w() + self.cfg.truncation * (w - self._mean_w())
            out.append(w[:, None].expand(-1, G.n_latent, -1))
        return torch.cat(out) if out else torch.zeros(0, G.n_latent, G.style_dim, device=self._device)

    def _list_images(self, d: Path | None, what: str) -> list[Path]:
        arg = "train_images" if what == "training" else "images"
        env = self._env_hint(train=what == "training")
        if d is None:
            raise ValueError(f"domain {self.name!r} needs a folder of {what} images: pass {arg}=DIR{env}")
        if not d.is_dir():
            raise ValueError(f"{what} image folder {d} does not exist (domain {self.name!r}); pass {arg}=DIR{env}")
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        if not files:
            raise ValueError(f"{what} image folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return files

    def _read(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        from deltabench.imageio import centre_square

        r = self.resolution
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size[0] != im.size[1]:
                    im = Image.fromarray(centre_square(np.asarray(im, dtype=np.uint8), path))
                if im.size != (r, r):
                    im = im.resize((r, r), Image.BICUBIC)
                return np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(
                f"{path} is not a readable image ({e}); remove it from its folder or replace it with a PNG/JPEG"
            ) from None

    def _generated(self, n: int, seed: int) -> TestImages:
        w = self.sample_w_plus(n, seed)
        with torch.no_grad():
            imgs = torch.cat([self.generator.synthesis(w[i : i + 16]) for i in range(0, n, 16)]).cpu()
        return TestImages(imgs, None, latents=w.cpu())

    def _from_folder(self, d: Path, n: int, seed: int, what: str, arg: str) -> TestImages:
        from deltabench.utils import uint8_to_float

        files = self._list_images(d, what)
        if n > len(files):
            raise ValueError(
                f"asked for {n} {what} images but {d} holds {len(files)}; ask for at most "
                f"{len(files)} ({arg}) or add images"
            )
        idx = sorted(torch.randperm(len(files), generator=torch.Generator().manual_seed(int(seed)))[:n].tolist())
        arr = np.stack([self._read(files[i]) for i in idx])  # uint8 [n, R, R, 3]
        return TestImages(uint8_to_float(arr), None)

    def train_images(self, n: int, seed: int) -> TestImages:
        """``n`` training images ``[n, 3, R, R]`` in [-1, 1] for methods to fit on (DeltaEdit's
        inverted pool codes, StyleCLIP-LM's training latents), never the test images.

        From the training folder (drawn as :meth:`test_images` draws, after checking that no file
        repeats a test image). Without one, a ``generated`` domain (or one without an encoder)
        gives generator samples of a seed derived from ``seed`` by sha256 (so disjoint from every
        test seed), which :meth:`invert` maps back exactly; a ``folder`` domain raises."""
        if n < 1:
            raise ValueError(f"train_images: n must be >= 1, got {n}")
        if self.train_dir is None and self._generates_train():
            salted = int.from_bytes(hashlib.sha256(f"deltabench-train:{int(seed)}".encode()).digest()[:8], "little")
            return self._generated(n, salted >> 1)
        if self.train_dir is None:
            raise ValueError(
                f"domain {self.name!r} has no training images, and methods never train on the test images: pass "
                f"train_images=DIR{self._env_hint(train=True)} (a folder sharing no image with the test folder; "
                f"for ffhq the official methods use CelebA-HQ train / FFHQ images, aligned as FFHQ). DeltaEdit can "
                f'train on generated codes alone: --options \'{{"deltaedit": {{"config": {{"n_inverted": 0}}}}}}\''
            )
        if self._split_checked != (self.train_dir, self.images_dir):  # once per pair of folders, not per batch
            self.data_sources()  # refuses a training folder that shares images with the test folder
            self._split_checked = (self.train_dir, self.images_dir)
        return self._from_folder(self.train_dir, n, seed, "training", "styleclip-lm n_train, deltaedit n_inverted")

    def test_images(self, n: int, seed: int) -> TestImages:
        """``n`` test images ``[n, 3, R, R]`` in [-1, 1].

        From the folder: ``n`` files drawn without replacement with ``seed`` (kept in sorted
        order; all of them, sorted, when ``n`` equals the folder size), resized to the
        generator resolution. With no folder given and ``test_source == "generated"`` (or no
        encoder): ``n`` generator samples of ``seed``, which :meth:`invert` maps back exactly.
        """
        if n < 1:
            raise ValueError(f"test_images: n must be >= 1, got {n}")
        if self._generates_test():
            return self._generated(n, seed)
        return self._from_folder(self.images_dir, n, seed, "test", "--images")

    def weight_file(self, name: str) -> Path:
        """The registry file ``name`` in this domain's weights folder (an error says how to get it)."""
        return resolve_weight(name, self._weights)

    def photo_input(self, image, what: str = "image") -> torch.Tensor:
        """A photo (path, PIL image or ``uint8 [H, W, 3]``; on ``ffhq`` the FFHQ-aligned one) as the
        official code feeds it to e4e and to DeltaEdit's CLIP: ``float32 [1, 3, 256, 256]`` made by
        PIL ``Resize(256)``, ``ToTensor``, ``Normalize(0.5)`` from the uint8 photo
        (:func:`deltabench.imageio.official_photo_input`; DeltaEdit ``scripts/inference_real.py``
        lines 52-56). A non-square photo is centre-cropped first, with a warning that says so.
        :meth:`invert` takes it as it is (it is at e4e's input size). Loads the encoder."""
        from deltabench.imageio import official_photo_input

        enc = self.encoder.encoder
        size = int(getattr(enc, "input_size", 256)) if enc is not None else 256
        return official_photo_input(image, size, what)

    def has(self, capability: str) -> bool:
        """As :meth:`DomainBase.has`, answered from the config where asking the network would load
        it (identity, FID features): a network is loaded only when it is used."""
        if capability == "identity":
            return bool(self.cfg.identity)
        if capability == "fid_features":
            return bool(self.cfg.fid)
        return super().has(capability)

    @torch.no_grad()
    def invert(self, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` -> W+ ``[N, n_latent, D]`` with the domain's encoder (e4e sees
        them as the official code makes its input from the photo file: quantised to uint8, PIL
        ``Resize(256)``; an input at e4e's input size is taken as it is, see :meth:`photo_input`)."""
        return torch.cat([self.encoder(images[i : i + batch]) for i in range(0, len(images), batch)])

    # -- CLIP: text_embedding (over the 79 ImageNet templates) and clip_image come from
    # ClipTextImage; open_clip's tokenizer lowercases anyway, so the shared lowercased cache
    # key changes nothing.
    clip_batch = 64


def load_real_domain(
    name_or_path: str | Path,
    weights: str | Path | None = None,
    images: str | Path | None = None,
    device: str | torch.device = "cpu",
    train_images: str | Path | None = None,
) -> RealDomain:
    return RealDomain(
        load_domain_config(name_or_path), weights=weights, images=images, device=device, train_images=train_images
    )


__all__ = [
    "GeneratedInverter",
    "RealDomain",
    "RealDomainConfig",
    "domain_names",
    "load_domain_config",
    "load_real_domain",
    "resolve_weight",
]


class RealDomains(DomainSource):
    """The real domains: a built-in config name (ffhq, lsun-*) or a JSON config with a generator."""

    @classmethod
    def claims(cls, world: str) -> bool:
        return world in domain_names() or is_real_domain_config(world)

    @classmethod
    def load(cls, world: str, device="cpu", weights=None, images=None, train_images=None):
        return load_real_domain(world, weights=weights, images=images, device=device, train_images=train_images)

    @classmethod
    def neutral(cls, world: str) -> str:
        return load_domain_config(world).neutral
