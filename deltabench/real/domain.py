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
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from deltabench.checkpoints import CheckpointError
from deltabench.parse import config_from_dict
from deltabench.domainbase import ClipTextImage, TestImages

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class RealDomainConfig:
    """A real domain, as data. Weight entries are registry file names (or paths)."""

    name: str
    resolution: int
    generator: str
    clip: str
    fid: str
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
            raise ValueError(f"domain {self.name!r}: test_source must be 'folder' or 'generated', got {self.test_source!r}")
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
        keys = ("generator", "encoder", "clip", "identity", "identity_loss", "fid")
        return {k: getattr(self, k) for k in keys if getattr(self, k)}


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
    if p.is_absolute() or p.exists():
        if not p.exists():
            raise CheckpointError(f"{p}: no such file (named in the domain config)")
        return p
    try:
        return registry.path_of(name, wdir)
    except registry.MissingWeightsError as e:
        raise CheckpointError(str(e)) from None
    except registry.WeightsError:  # not a registry file (a config of the user's own)
        path = registry.weights_dir(wdir) / name
        if not path.exists():
            raise CheckpointError(f"{path}: missing weight file {name!r} (not in the weights registry); place it "
                                  f"there or point $DELTABENCH_WEIGHTS (or the weights argument) at its folder") from None
        return path


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
    """The domain's ``encoder``: the inversion encoder (e4e), or a clear error where the domain
    has none. Images the domain generated itself carry their exact latents
    (``TestImages.latents``), so they are never inverted."""

    def __init__(self, domain: RealDomain, encoder=None):
        self.domain, self.encoder = domain, encoder

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.encoder is None:
            raise ValueError(f"domain {self.domain.name!r} has no inversion encoder: it can only edit "
                             f"images it generated itself (test_images). Give the domain config an "
                             f"'encoder' (an e4e checkpoint for this generator) to edit other images")
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
        "deltaedit": {"beta": 0.03, "config": {"n_generated": 200_000, "n_inverted": 58_000,
                                               "steps": 201_562, "batch": 64}},
        "styleclip-op": {"config": {"id_lambda": 0.0}},
        "styleclip-lm": {"config": {"steps": 50_000, "batch": 2, "optimizer": "ranger"}},
        "styleclip-gd": {"config": {"protocol": "official", "n_images": 100, "n_std": 100_000}},
    }

    def __init__(self, cfg: RealDomainConfig, weights: str | Path | None = None, images: str | Path | None = None,
                 device: str | torch.device = "cpu", train_images: str | Path | None = None):
        from deltabench.models.clip import IMAGENET_TEMPLATES
        from deltabench.models.stylegan2 import load_rosinality_checkpoint
        from deltabench.real import loaders

        self.cfg, self.name = cfg, cfg.name
        self._device = torch.device(device)
        paths = {k: resolve_weight(v, weights) for k, v in cfg.weight_names().items()}
        self.paths = paths
        G, latent_avg = load_rosinality_checkpoint(paths["generator"], map_location=self._device)
        if G.size != cfg.resolution:
            raise CheckpointError(f"{paths['generator']}: a {G.size} px generator; domain {cfg.name!r} expects "
                                  f"{cfg.resolution} px (config 'resolution'). Use the {cfg.resolution} px "
                                  f"checkpoint or fix the config")
        self.generator, self.latent_avg = G.requires_grad_(False), latent_avg.to(self._device)
        self.resolution = G.size
        e4e = None
        if "encoder" in paths:
            from deltabench.models.e4e import load_e4e

            e4e = load_e4e(paths["encoder"], expect_resolution=G.size, map_location=self._device).inverter
        self.encoder = GeneratedInverter(self, e4e)
        self.clip = loaders.load_open_clip(paths["clip"], cfg.clip_model, self._device, normalize=cfg.clip_normalize)
        if self.clip.image_size != cfg.clip_input_size:
            raise CheckpointError(f"{paths['clip']}: open_clip {cfg.clip_model!r} takes {self.clip.image_size} px "
                                  f"images; domain {cfg.name!r} says clip_input_size={cfg.clip_input_size}")
        self.clip.requires_grad_(False)
        self.identity = loaders.load_arcface(paths["identity"], crop=cfg.face_crop) if "identity" in paths else None
        self.identity_loss = None
        if "identity_loss" in paths:
            from deltabench.models.irse import IdentityLoss, load_irse50

            self.identity_loss = IdentityLoss(load_irse50(paths["identity_loss"], self._device), crop=cfg.face_crop)
            self.identity_loss.requires_grad_(False)
        self._fid = loaders.load_fid_inception(paths["fid"], self._device)
        self.fid_feature_name = self._fid.name
        self.fid_feature_dim = self._fid.feature_dim
        self.templates: tuple[str, ...] = IMAGENET_TEMPLATES
        self.neutral = cfg.neutral
        self.images_dir = _folder(images, cfg.images_env, cfg.images)
        self.train_dir = _folder(train_images, cfg.train_images_env, cfg.train_images)
        self._file_sha: dict[str, dict[str, list]] = {}  # folder -> {name: [size, mtime_ns, inode, sha256]}
        self._split_checked: tuple | None = None
        self._text_cache: dict[str, torch.Tensor] = {}
        self._w_mean: torch.Tensor | None = None

    # -- identity of the weights ------------------------------------------------------------
    def _identity(self) -> dict:
        files = {k: _file_identity(p) for k, p in sorted(self.paths.items())}
        cfg = {k: v for k, v in self.cfg.to_dict().items() if k not in ("images", "train_images", "description")}
        return {"config": cfg, "files": files}

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
        blob = json.dumps({**self._identity(), "train": train}, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    # -- where training and test images come from ----------------------------------------------
    def _generates_test(self) -> bool:
        return self.images_dir is None and (self.cfg.test_source == "generated" or self.encoder.encoder is None)

    def _generates_train(self) -> bool:
        return self.train_dir is None and (self.cfg.test_source == "generated" or self.encoder.encoder is None)

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
        if self.train_dir is not None and self.images_dir is not None and \
                self.train_dir.resolve() == self.images_dir.resolve():
            raise ValueError(f"domain {self.name!r}: the training folder and the test folder are both "
                             f"{self.images_dir}; methods must not train on the images the benchmark scores. "
                             f"Give train_images=DIR{self._env_hint(train=True)} a folder of other images "
                             f"(for ffhq: CelebA-HQ train, aligned as FFHQ)")
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
                      f"from the training folder, or give another train_images=DIR{self._env_hint(train=True)}")
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
        return self.identity.info() if self.identity is not None else None

    # The released relevance matrix of each official generator (registry name): StyleCLIP's
    # global_directions/npy/ffhq/fs3.npy, the file DeltaEdit's inference reads
    # (scripts/inference.py line 58: ./models/stylegan2/npy_ffhq/fs3.npy, byte-identical).
    RELEASED_FS3 = {"stylegan2-ffhq-config-f.pt": "styleclip-fs3-ffhq.npy"}

    @property
    def released_fs3(self) -> Path | None:
        """The released fs3.npy of this domain's generator when it lies next to the generator
        file (``deltabench weights fetch styleclip-fs3-ffhq.npy``), else None. DeltaEdit's
        relevance filter uses it by default, as the official inference does."""
        name = self.RELEASED_FS3.get(Path(self.cfg.generator).name)
        p = self.paths["generator"].parent / name if name else None
        return p if p is not None and p.is_file() else None

    @property
    def prompts(self) -> tuple:
        """The config's edit prompts as runner ``Prompt`` objects (no attribute: no ground truth)."""
        from deltabench.prompts import Prompt

        return tuple(Prompt(s, t) for s, t in self.cfg.prompts)

    # -- latents and images ------------------------------------------------------------------
    def fid_features(self, images: torch.Tensor) -> torch.Tensor:
        """pytorch-fid InceptionV3 pool3 features ``[N, 2048]`` of images in [-1, 1]."""
        return self._fid.features(images)

    @torch.no_grad()
    def _mean_w(self) -> torch.Tensor:
        if self._w_mean is None:
            # rosinality Generator.mean_latent(truncation_mean): mean of mapped Gaussian z
            self._w_mean = self.generator.mean_latent(self.cfg.truncation_mean).to(self._device)
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
            w = G.mapping(z[i:i + 1024].to(self._device))
            if self.cfg.truncation != 1.0:
                w = self._mean_w() + self.cfg.truncation * (w - self._mean_w())
            out.append(w[:, None].expand(-1, G.n_latent, -1))
        return torch.cat(out) if out else torch.zeros(0, G.n_latent, G.style_dim, device=self._device)

    def image_files(self) -> list[Path]:
        return self._list_images(self.images_dir, "test")

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

        r = self.resolution
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (r, r):
                    im = im.resize((r, r), Image.BICUBIC)
                return np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"{path} is not a readable image ({e}); remove it from its folder "
                             f"or replace it with a PNG/JPEG") from None

    def _generated(self, n: int, seed: int) -> TestImages:
        w = self.sample_w_plus(n, seed)
        with torch.no_grad():
            imgs = torch.cat([self.generator.synthesis(w[i:i + 16]) for i in range(0, n, 16)]).cpu()
        return TestImages(imgs, None, latents=w.cpu())

    def _from_folder(self, d: Path, n: int, seed: int, what: str, arg: str) -> TestImages:
        from deltabench.utils import uint8_to_float

        files = self._list_images(d, what)
        if n > len(files):
            raise ValueError(f"asked for {n} {what} images but {d} holds {len(files)}; ask for at most "
                             f"{len(files)} ({arg}) or add images")
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
                f"train on generated codes alone: --options '{{\"deltaedit\": {{\"config\": {{\"n_inverted\": 0}}}}}}'")
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

    @torch.no_grad()
    def invert(self, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` -> W+ ``[N, n_latent, D]`` with the domain's encoder."""
        return torch.cat([self.encoder(images[i:i + batch]) for i in range(0, len(images), batch)])

    # -- CLIP: text_embedding (over the 79 ImageNet templates) and clip_image come from
    # ClipTextImage; open_clip's tokenizer lowercases anyway, so the shared lowercased cache
    # key changes nothing.
    clip_batch = 64


def load_real_domain(name_or_path: str | Path, weights: str | Path | None = None, images: str | Path | None = None,
                     device: str | torch.device = "cpu", train_images: str | Path | None = None) -> RealDomain:
    return RealDomain(load_domain_config(name_or_path), weights=weights, images=images, device=device,
                      train_images=train_images)


__all__ = [
    "GeneratedInverter",
    "RealDomain",
    "RealDomainConfig",
    "domain_names",
    "load_domain_config",
    "load_real_domain",
    "resolve_weight",
]
