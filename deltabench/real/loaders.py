"""Loaders for the official third-party weights the real domains use, all from local files.

- CLIP: open_clip ``ViT-B-32-quickgelu`` (the OpenAI weights use QuickGELU; open_clip's
  ``ViT-B-32`` config with GELU would load them without error and give wrong embeddings).
- Identity (metric): insightface ArcFace recognition ONNX (``w600k_r50.onnx`` of ``buffalo_l``)
  through insightface itself (``ArcFaceONNX`` + ``face_align.norm_crop``,
  :class:`InsightFaceArcFace`); where insightface is not installed, through onnxruntime with
  deltabench's re-implementation of its preprocessing (:class:`OnnxArcFace`), with a warning.
- FID features: pytorch-fid's InceptionV3 (``pt_inception-2015-12-05-6726825d.pth``), pool3.

Nothing here downloads: a missing file is a :class:`CheckpointError` that says which
``deltabench weights fetch`` command provides it. Every torch file goes through
:func:`deltabench.checkpoints.safe_torch_load`.
"""

from __future__ import annotations

import io
import logging
import pickle
import threading
import warnings
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deltabench.checkpoints import CheckpointError, safe_torch_load
from deltabench.models.clip import ClipModel
from deltabench.models.irse import ffhq_face_crop

# --- CLIP -----------------------------------------------------------------------------------


class OpenClipTokenizer:
    """open_clip's BPE tokenizer behind the interface of the world tokenizer."""

    def __init__(self, tokenizer, context_length: int):
        self._tok = tokenizer
        self.context_length = int(context_length)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self._tok(texts)  # int64 [N, context_length]

    def unknown_words(self, text: str) -> list[str]:
        """BPE has no unknown words."""
        return []

    def n_tokens(self, text: str) -> int:
        """BPE tokens ``text`` needs with <sot>/<eot>, before truncation to ``context_length``."""
        enc = getattr(self._tok, "encode", None) or getattr(getattr(self._tok, "tokenizer", None), "encode", None)
        if enc is None:  # a tokenizer without an encoder of single texts: measure the padded ids
            return int((self._tok([text])[0] != 0).sum())
        return len(enc(text)) + 2


class OpenClipModel(ClipModel):
    """A real open_clip model with the :class:`ClipModel` interface (images in [-1, 1]).

    Preprocessing follows the official StyleCLIP / DeltaEdit code, which feeds generator
    images to CLIP as ``AvgPool2d(size // 32)(Upsample(scale_factor=7)(img))`` (224 px for any
    power-of-two size >= 32: ``criteria/clip_loss.py``, DeltaEdit ``generate_codes.py``,
    ``scripts/inference_real.py``). The official code then feeds the [-1, 1] image without
    CLIP's mean/std; we normalise (``normalize=True``, the default) as CLIP's own
    ``preprocess`` does for the photos it was trained on; ``normalize=False`` is the official
    behaviour.
    """

    def __init__(self, clip: nn.Module, tokenizer, image_size: int, normalize: bool = True):
        super().__init__(clip, tokenizer, image_size)
        self.normalize = bool(normalize)

    def preprocess(self, img: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """``img [N, 3, H, W]`` in [-1, 1] -> CLIP input; ``normalize``: CLIP's mean/std (None:
        the domain's ``clip_normalize``; False: the official DeltaEdit / StyleCLIP OP and LM feed,
        the resized [-1, 1] pixels as they are)."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"encode_image wants [N, 3, H, W] images in [-1, 1], got shape {tuple(img.shape)}")
        x = img.to(self.mean.device, torch.float32)
        s, h = self.image_size, x.shape[-1]
        if x.shape[-2:] != (s, s):
            if x.shape[-2] == h and (7 * h) % s == 0 and 7 * h >= s:
                a = official_resize_matrix(h, s, x.device)  # [s, h]
                x = torch.einsum("ih,nchw,jw->ncij", a, x, a)
            else:
                x = F.interpolate(x, size=(s, s), mode="bicubic", align_corners=False, antialias=True)
        if not (self.normalize if normalize is None else normalize):
            return x
        return ((x + 1) / 2 - self.mean) / self.std

    def encode_image(self, img: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """``img [N, 3, H, W]`` in [-1, 1] -> ``[N, D]`` L2-normalised (``normalize`` as in
        :meth:`preprocess`)."""
        return self.clip.encode_image(self.preprocess(img, normalize).to(self._dtype()), normalize=True).float()


def official_resize_matrix(h: int, s: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``A: [s, h]`` with ``A x A^T == AvgPool2d(7h // s)(Upsample(scale_factor=7)(x))`` for
    ``x: [h, h]``: the official CLIP feed, without building the 7x upsampled image (at 1024 px
    that is 7168 x 7168, 0.6 GB per image). Row i averages the source pixels under output pixel
    i, each weighted by how much of its 7-pixel block falls in the k-pixel window."""
    k = 7 * h // s
    starts = torch.arange(s, dtype=torch.float64)[:, None] * k  # [s, 1] window [i k, (i + 1) k)
    src = torch.arange(h, dtype=torch.float64)[None] * 7  # [1, h] block [7 j, 7 j + 7)
    overlap = (torch.minimum(starts + k, src + 7) - torch.maximum(starts, src)).clamp(min=0)
    return (overlap / k).float().to(device)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


# --- reading a TorchScript archive's tensors, never its code ----------------------------------
# A TorchScript archive (OpenAI's ViT-B-32.pt, what ``clip.load`` downloads) is a zip: ``code/``
# (TorchScript source), ``constants.pkl``, ``data/<key>`` (raw little-endian storages) and
# ``data.pkl``, a pickle of the module tree: each module an object of a ``__torch__.*`` class
# built from a dict of its attributes (submodules, tensors, ints, bools). Its tensors are read
# here with a restricted unpickler: ``__torch__.*`` classes become inert attribute holders, the
# only callables it will call are tensor rebuilding and list building (below), and every other
# global is refused. ``torch.jit.load`` is never called (it would compile the archive's code).

_TS_DTYPES = {
    f"{n}Storage": d
    for n, d in (
        ("Float", torch.float32),
        ("Double", torch.float64),
        ("Half", torch.float16),
        ("BFloat16", torch.bfloat16),
        ("Long", torch.int64),
        ("Int", torch.int32),
        ("Short", torch.int16),
        ("Char", torch.int8),
        ("Byte", torch.uint8),
        ("Bool", torch.bool),
    )
}


class _ScriptObject:
    """A ``__torch__.*`` object of a TorchScript pickle: only its attribute dict is kept."""

    ts_class = ""

    def __setstate__(self, state):
        self.ts_state = state if isinstance(state, dict) else {}


class _StorageRef:
    __slots__ = ("dtype", "key", "numel")

    def __init__(self, dtype, key, numel):
        self.dtype, self.key, self.numel = dtype, str(key), int(numel)


class _TorchScriptUnpickler(pickle.Unpickler):
    def __init__(self, f, z: zipfile.ZipFile, prefix: str, path: Path, meta: bool):
        super().__init__(f)
        self._z, self._prefix, self._path, self._meta = z, prefix, path, meta
        self._storages: dict[str, torch.Tensor] = {}
        self._classes: dict[str, type] = {}

    def _storage(self, ref: _StorageRef) -> torch.Tensor:
        if ref.key not in self._storages:
            if self._meta:
                self._storages[ref.key] = torch.empty(ref.numel, dtype=ref.dtype, device="meta")
            else:
                try:
                    raw = self._z.read(f"{self._prefix}data/{ref.key}")
                except KeyError:
                    raise CheckpointError(
                        f"{self._path}: TorchScript archive without the record data/{ref.key}"
                    ) from None
                itemsize = torch.empty((), dtype=ref.dtype).element_size()
                if len(raw) < ref.numel * itemsize:
                    raise CheckpointError(
                        f"{self._path}: record data/{ref.key} holds {len(raw)} bytes, "
                        f"expected {ref.numel * itemsize} (a damaged archive)"
                    )
                self._storages[ref.key] = torch.frombuffer(bytearray(raw[: ref.numel * itemsize]), dtype=ref.dtype)
        return self._storages[ref.key]

    def _rebuild_tensor(self, ref, offset, size, stride, requires_grad=False, *rest):
        if not isinstance(ref, _StorageRef):
            raise CheckpointError(f"{self._path}: a tensor without a storage record in data.pkl")
        flat = self._storage(ref)
        size, stride = tuple(int(v) for v in size), tuple(int(v) for v in stride)
        if not self._meta:
            need = int(offset) + sum((n - 1) * st for n, st in zip(size, stride)) + 1 if all(size) else 0
            if need > flat.numel():
                raise CheckpointError(f"{self._path}: a tensor of size {list(size)} runs past its storage")
        return torch.as_strided(flat, size, stride, int(offset))

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise CheckpointError(f"{self._path}: unexpected record {pid!r:.80} in data.pkl (not a tensor storage)")
        return _StorageRef(pid[1], pid[2], pid[4])

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if module == "__torch__" or module.startswith("__torch__."):
            if full not in self._classes:
                self._classes[full] = type("ScriptObject", (_ScriptObject,), {"ts_class": full})
            return self._classes[full]
        if module == "torch" and name in _TS_DTYPES:
            return _TS_DTYPES[name]
        allowed = {
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": lambda t, requires_grad=True, hooks=None: t,
            "collections.OrderedDict": lambda *a: dict(*a),
            "torch.jit._pickle.build_intlist": list,
            "torch.jit._pickle.build_doublelist": list,
            "torch.jit._pickle.build_boollist": list,
            "torch.jit._pickle.build_tensorlist": list,
            "torch.jit._pickle.restore_type_tag": lambda value, _tag: value,
            "torch.device": str,
        }
        if full in allowed:
            return allowed[full]
        raise CheckpointError(
            f"{self._path}: data.pkl of this TorchScript archive asks for {full!r}, which is "
            f"not a tensor or a module attribute; refused (only the weights are read)"
        )


def torchscript_tensors(path: str | Path, meta: bool = False) -> dict[str, torch.Tensor]:
    """``{dotted name: tensor}`` of every tensor attribute in a TorchScript archive's module tree
    (parameters, buffers and tensor attributes such as OpenAI CLIP's ``attn_mask``), read from
    ``data.pkl`` and the ``data/`` records with a restricted unpickler: nothing of the archive is
    executed or compiled. ``meta=True``: tensors on the meta device (names and shapes only, no
    data read)."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable TorchScript archive ({e})") from None
    with z:
        pkls = sorted(n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") <= 1)
        if not pkls:
            raise CheckpointError(f"{path}: a zip without data.pkl: not a TorchScript archive")
        prefix = pkls[0][: -len("data.pkl")]
        order = z.read(f"{prefix}byteorder").decode().strip() if f"{prefix}byteorder" in z.namelist() else "little"
        if order != "little":
            raise CheckpointError(f"{path}: a {order}-endian archive; only little-endian archives are read")
        try:
            root = _TorchScriptUnpickler(io.BytesIO(z.read(pkls[0])), z, prefix, path, meta).load()
        except CheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged pickle raises many error types
            raise CheckpointError(f"{path}: cannot read data.pkl of this TorchScript archive ({e})") from None
    if not isinstance(root, _ScriptObject):
        raise CheckpointError(f"{path}: data.pkl holds a {type(root).__name__}, not a TorchScript module")
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()

    def walk(obj: _ScriptObject, prefix: str) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for k, v in getattr(obj, "ts_state", {}).items():
            if isinstance(v, torch.Tensor):
                out[prefix + str(k)] = v if meta else v.clone()
            elif isinstance(v, _ScriptObject):
                walk(v, f"{prefix}{k}.")

    walk(root, "")
    return out


# OpenAI's TorchScript CLIP carries these besides the weights (clip.build_model drops the first
# three from its state dict; attn_mask is a tensor attribute of each text block)
_OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def _clip_state_dict(path: Path, meta: bool = False) -> dict:
    """The tensors of a CLIP file: open_clip safetensors (with or without metadata), OpenAI's
    TorchScript ``ViT-B-32.pt`` (its tensors only, :func:`torchscript_tensors`) or a torch
    state dict. Identified by what it holds, not by its name or size."""
    what = "an open_clip / OpenAI CLIP state dict"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected {what}); run `deltabench weights fetch`")
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:2] == b"PK" and _is_torchscript(path):
        sd = torchscript_tensors(path, meta=meta)
        return {k: v for k, v in sd.items() if k not in _OPENAI_EXTRAS and not k.endswith("attn_mask")}
    # safetensors: an 8-byte little-endian header length, then the JSON header
    if path.suffix == ".safetensors" or (
        len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 28
    ):
        import safetensors.torch

        try:
            if meta:
                with safetensors.safe_open(str(path), framework="pt") as f:
                    return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
            return safetensors.torch.load_file(str(path), device="cpu")
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise CheckpointError(f"{path}: cannot read this safetensors file ({e}); expected {what}") from None
    ckpt = safe_torch_load(path, what)
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict) or not ckpt:
        raise CheckpointError(f"{path}: expected {what}, found a {type(ckpt).__name__}")
    if next(iter(ckpt)).startswith("module."):
        ckpt = {k[len("module.") :]: v for k, v in ckpt.items()}
    return ckpt


def _open_clip_model(model_name: str, device: str = "cpu"):
    import open_clip

    level = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "No pretrained weights loaded ... initialized randomly": we load them next
    try:
        if device == "meta":
            with torch.device("meta"):
                return open_clip.create_model(model_name, pretrained=None, device="meta")
        return open_clip.create_model(model_name, pretrained=None, device=device)
    except RuntimeError as e:
        raise ValueError(f"unknown open_clip model {model_name!r} ({e}); see open_clip.list_models()") from None
    finally:
        logging.disable(level)


def _clip_mismatch(path: Path, sd: dict, want: dict, model_name: str) -> str:
    """'' when ``sd`` has exactly the tensor names and shapes of ``want``, else what differs."""
    if "logit_scale" in sd and "logit_scale" in want and sd["logit_scale"].numel() == want["logit_scale"].numel():
        sd["logit_scale"] = sd["logit_scale"].reshape(want["logit_scale"].shape)
    missing = sorted(set(want) - set(sd))
    unexpected = sorted(set(sd) - set(want))
    shapes = [
        (k, tuple(sd[k].shape), tuple(v.shape))
        for k, v in want.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or shapes):
        return ""
    return (
        f"{path}: not a state dict of open_clip {model_name!r}: {len(missing)} missing keys "
        f"{missing[:4]}, {len(unexpected)} unexpected {unexpected[:4]}, shape mismatches "
        f"(key, found, expected) {shapes[:3]}"
    )


def clip_content_mismatch(path: str | Path, model_name: str) -> str:
    """'' when the file holds open_clip ``model_name``'s tensors (names and shapes, read without
    loading the weights), else a sentence saying what differs: how ``deltabench weights verify``
    identifies a CLIP file whose bytes are not the published ones (other metadata, another
    published format)."""
    path = Path(path)
    try:
        sd = _clip_state_dict(path, meta=True)
    except CheckpointError as e:
        return str(e)
    return _clip_mismatch(path, sd, _open_clip_model(model_name, "meta").state_dict(), model_name)


def load_open_clip(
    path: str | Path, model_name: str = "ViT-B-32-quickgelu", device: str | torch.device = "cpu", normalize: bool = True
) -> OpenClipModel:
    """open_clip ``model_name`` with weights from a local file (``.pt``/``.bin`` state dict,
    ``.safetensors``, or OpenAI's TorchScript ``ViT-B-32.pt``).

    The model is built by ``open_clip.create_model(model_name, pretrained=None)`` and the file
    loaded through the project's safe loader (``create_model(pretrained=path)`` would call
    ``torch.load`` itself, outside the allow-list and its error messages), then
    ``load_state_dict(strict=True)``: a file for another architecture is an error that names it.
    """
    import open_clip

    path = Path(path)
    sd = _clip_state_dict(path)
    model = _open_clip_model(model_name)
    bad = _clip_mismatch(path, sd, model.state_dict(), model_name)
    if bad:
        raise CheckpointError(bad)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    model = model.float().eval()
    visual_size = model.visual.image_size
    size = int(visual_size[0] if isinstance(visual_size, (tuple, list)) else visual_size)
    ctx = int(model.context_length)
    tok = OpenClipTokenizer(open_clip.get_tokenizer(model_name), ctx)
    return OpenClipModel(model, tok, size, normalize=normalize).to(device).eval()


# --- insightface ArcFace (ONNX) -------------------------------------------------------------


def find_recognition_onnx(path: str | Path) -> Path:
    """An ONNX file, or the recognition model inside an insightface model directory
    (``buffalo_l/``: ``w600k_r50.onnx`` beside the detector and attribute models)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: no such file or directory (expected insightface's recognition model "
            f"w600k_r50.onnx or its model directory buffalo_l/); run "
            f"`deltabench weights fetch w600k_r50.onnx`"
        )
    named = path / "w600k_r50.onnx"
    if named.is_file():
        return named
    import onnxruntime as ort

    for f in sorted(path.glob("*.onnx")):
        shape = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
        if list(shape[2:]) == [112, 112]:  # insightface model_zoo routes 112x112 inputs to ArcFace
            return f
    raise CheckpointError(f"{path}: no ArcFace recognition model (an .onnx with a 112x112 input) in this directory")


# insightface's ArcFace template (``insightface.utils.face_align.arcface_dst``): where
# norm_crop puts the eye centres, the nose tip and the mouth corners in the 112 px crop.
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def ffhq_five_points(size: int) -> np.ndarray:
    """``[5, 2]`` pixel coordinates, in an FFHQ-aligned image of side ``size``, for which
    insightface's ``norm_crop`` cuts exactly the square of :func:`ffhq_face_crop` (columns
    32:220, rows 35:223 at 256 px): ``ARCFACE_DST`` mapped back through that crop. FFHQ
    alignment puts the eyes and mouth at (nearly) fixed places, so these stand in for detected
    landmarks on generator samples and CelebA-HQ images."""
    x256 = np.array([32.0, 35.0]) + (ARCFACE_DST + 0.5) * (188.0 / 112.0)
    return x256 * (size / 256.0) - 0.5


def _five_points(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape == (68, 2):  # the reduction of deltabench.real.align.five_points (align imports weights)
        return np.stack([lm[36:42].mean(axis=0), lm[42:48].mean(axis=0), lm[30], lm[48], lm[54]])
    if lm.shape != (5, 2):
        raise ValueError(
            f"landmarks per image must be [5, 2] (insightface's order) or dlib's [68, 2], got {list(lm.shape)}"
        )
    return lm


def insightface_version() -> str | None:
    """The installed insightface's version, None when it is not importable."""
    try:
        import insightface
        from insightface.model_zoo import arcface_onnx  # noqa: F401
        from insightface.utils import face_align  # noqa: F401
    except ImportError:
        return None
    return str(getattr(insightface, "__version__", "unknown"))


class InsightFaceArcFace:
    """insightface ArcFace through insightface itself:
    ``embed(img [N, 3, H, W] in [-1, 1], landmarks=None) -> unit [N, D]`` (CPU tensor).

    Each image is quantised to uint8 (as a saved PNG would be), turned to BGR (insightface's
    convention), cut by ``insightface.utils.face_align.norm_crop`` at 5 landmarks and embedded
    by ``insightface.model_zoo.arcface_onnx.ArcFaceONNX.get_feat`` (its own Sub/Mul rule for
    the input normalisation). ``landmarks``: ``[N, 5, 2]`` (eye centres, nose tip, mouth
    corners) or dlib's ``[N, 68, 2]`` in the image's pixel coordinates, e.g. the
    ``landmarks_aligned`` of a ``deltabench align`` record; by default (``crop="ffhq"``) the
    fixed :func:`ffhq_five_points`, since every image of an FFHQ domain is aligned.
    ``crop="none"``: the whole image resized to the model's input (area interpolation).
    Not differentiable."""

    backend = "insightface"
    warning = None

    def __init__(self, path: str | Path, batch: int = 32, crop: str = "ffhq"):
        import onnxruntime as ort
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX

        if crop not in ("ffhq", "none"):
            raise ValueError(f"identity crop must be 'ffhq' or 'none', got {crop!r}")
        self.path = find_recognition_onnx(path)
        try:
            session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            self.model = ArcFaceONNX(model_file=str(self.path), session=session)
        except Exception as e:  # noqa: BLE001 - onnx/onnxruntime raise their own exception types
            raise CheckpointError(
                f"{self.path}: insightface cannot load it ({e}); expected an insightface "
                f"recognition model (w600k_r50.onnx)"
            ) from None
        shape = list(self.model.input_shape)
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(v, int) for v in shape[2:]):
            raise CheckpointError(f"{self.path}: input has shape {shape}; an ArcFace model takes [N, 3, 112, 112]")
        self.input_size = (int(shape[2]), int(shape[3]))
        if crop == "ffhq" and self.input_size[0] % 112 and self.input_size[0] % 128:
            raise CheckpointError(
                f"{self.path}: input {self.input_size}; norm_crop needs a side that is a multiple of 112 or 128"
            )
        self.input_mean, self.input_std = float(self.model.input_mean), float(self.model.input_std)
        out = self.model.output_shape
        self.embed_dim = out[-1] if isinstance(out[-1], int) else None
        self.batch, self.crop = batch, crop
        self.version = insightface_version()
        self._lock = threading.Lock()

    def parameters(self):
        return iter(())

    def crops(self, img: torch.Tensor, landmarks=None) -> list[np.ndarray]:
        """The BGR uint8 crops ``[h, w, 3]`` that go into ArcFace."""
        import cv2
        from insightface.utils.face_align import norm_crop

        from deltabench.utils import float_to_uint8

        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"identity: expected images [N, 3, H, W] in [-1, 1], got shape {tuple(img.shape)}")
        if landmarks is not None and len(landmarks) != len(img):
            raise ValueError(f"identity: {len(landmarks)} landmark sets for {len(img)} images")
        h, w = self.input_size
        out = []
        warnings.filterwarnings(
            "ignore",
            message=r"`estimate` is deprecated",
            category=FutureWarning,
            module=r"insightface\.utils\.face_align",
        )  # insightface 2.1 on scikit-image 0.26
        for i, rgb in enumerate(float_to_uint8(img)):
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            if landmarks is not None:
                out.append(norm_crop(bgr, _five_points(landmarks[i]).astype(np.float32), image_size=w))
            elif self.crop == "ffhq":
                out.append(norm_crop(bgr, ffhq_five_points(bgr.shape[0]).astype(np.float32), image_size=w))
            else:
                out.append(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA))
        return out

    def embed_crops(self, crops: list[np.ndarray]) -> torch.Tensor:
        """Unit embeddings ``[N, D]`` of aligned BGR uint8 crops (``ArcFaceONNX.get_feat``)."""
        outs = []
        with self._lock:
            for i in range(0, len(crops), self.batch):
                outs.append(self.model.get_feat(list(crops[i : i + self.batch])))
        return F.normalize(torch.from_numpy(np.concatenate(outs)).float(), dim=1)

    def embed(self, img: torch.Tensor, landmarks=None) -> torch.Tensor:
        if img.requires_grad:
            raise RuntimeError(
                "the ArcFace identity model is not differentiable (onnxruntime); use the "
                "domain's identity_loss model for losses"
            )
        return self.embed_crops(self.crops(img.detach().to("cpu", torch.float32), landmarks))

    __call__ = embed

    def info(self) -> dict:
        return {
            "backend": f"insightface {self.version}",
            "model": self.path.name,
            "crop": "norm_crop at the fixed FFHQ 5 points" if self.crop == "ffhq" else "resize",
        }


def load_arcface(path: str | Path, crop: str = "ffhq", batch: int = 32):
    """The IDS model: :class:`InsightFaceArcFace` when insightface is installed, else
    :class:`OnnxArcFace` with its ``warning`` set (and a ``UserWarning``)."""
    if insightface_version() is None:
        m = OnnxArcFace(path, batch=batch, crop=crop)
        m.warning = (
            "insightface is not installed: IDS uses deltabench's re-implementation of its ArcFace "
            "preprocessing (fixed FFHQ crop, float pixels); pip install insightface for insightface's own"
        )
        warnings.warn(m.warning, stacklevel=2)
        return m
    return InsightFaceArcFace(path, batch=batch, crop=crop)


class OnnxArcFace:
    """insightface ArcFace from ONNX: ``embed(img [N, 3, H, W] in [-1, 1]) -> unit [N, D]`` (CPU tensor).

    Faces are cut with the fixed FFHQ-alignment crop (:func:`ffhq_face_crop`): FFHQ,
    CelebA-HQ and every FFHQ generator sample are aligned the same way, so the 5-landmark
    similarity warp insightface applies after its detector (``face_align.norm_crop``) is a
    fixed crop here. Pixels go in as RGB ``(x - mean) / std`` with insightface's
    ``ArcFaceONNX`` rule: mean 0, std 1 when the graph starts with Sub and Mul nodes (its
    own normalisation), else mean = std = 127.5 (``w600k_r50``). Not differentiable: the
    StyleCLIP losses use the domain's ``identity_loss`` (IR-SE50) instead.
    """

    backend = "deltabench"
    warning = None  # set by load_arcface when insightface is missing

    def __init__(self, path: str | Path, batch: int = 32, crop: str = "ffhq"):
        import onnxruntime as ort

        self.path = find_recognition_onnx(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(
                f"{self.path}: onnxruntime cannot load it ({e}); expected an insightface "
                f"recognition model (w600k_r50.onnx)"
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(s, int) for s in shape[2:]):
            raise CheckpointError(
                f"{self.path}: input {inp.name} has shape {shape}; an ArcFace model takes [N, 3, 112, 112]"
            )
        self.input_size = (int(shape[2]), int(shape[3]))
        out = self.session.get_outputs()[0]
        self.embed_dim = out.shape[-1] if isinstance(out.shape[-1], int) else None
        self.input_mean, self.input_std = self._normalisation()
        self.batch, self.crop = batch, crop
        self._lock = threading.Lock()

    def _normalisation(self) -> tuple[float, float]:
        try:
            import onnx
        except ImportError:  # w600k_r50 (buffalo_l) takes 127.5 / 127.5
            return 127.5, 127.5
        nodes = onnx.load(str(self.path), load_external_data=False).graph.node[:8]
        sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
        mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
        return (0.0, 1.0) if sub and mul else (127.5, 127.5)

    def parameters(self):
        """No torch parameters (the weights live in onnxruntime); lets ``frozen(...)`` helpers
        treat it like the other models."""
        return iter(())

    def embed(self, img: torch.Tensor) -> torch.Tensor:
        if img.requires_grad:
            raise RuntimeError(
                "OnnxArcFace is not differentiable (onnxruntime); use the domain's identity_loss model for losses"
            )
        x = img.detach().to("cpu", torch.float32)
        h, w = self.input_size
        x = (
            ffhq_face_crop(x, h)
            if self.crop == "ffhq"
            else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        )
        x = ((x + 1) * 127.5 - self.input_mean) / self.input_std  # RGB
        outs = []
        with self._lock:
            for i in range(0, len(x), self.batch):
                outs.append(
                    self.session.run(None, {self.input_name: np.ascontiguousarray(x[i : i + self.batch].numpy())})[0]
                )
        return F.normalize(torch.from_numpy(np.concatenate(outs)).float(), dim=1)

    __call__ = embed

    def info(self) -> dict:
        d = {
            "backend": "deltabench (insightface's ArcFaceONNX preprocessing re-implemented)",
            "model": self.path.name,
            "crop": "fixed FFHQ crop" if self.crop == "ffhq" else "resize",
        }
        return {**d, "warning": self.warning} if self.warning else d


# --- pytorch-fid InceptionV3 ---------------------------------------------------------------

_FID_LOCK = threading.Lock()


def fid_inception_net(state_dict: dict | None = None) -> nn.Module:
    """The network of pytorch-fid's ``fid_inception_v3``: torchvision's InceptionV3 (1008
    classes) with its FID blocks, loaded from ``state_dict`` (the keys of
    ``pt_inception-2015-12-05-6726825d.pth``; ``None``: random weights, for tests).
    pytorch-fid's own function downloads its weights; here its block classes are assembled the
    same way and the download is replaced by ``state_dict``."""
    from pytorch_fid import inception as fid

    net = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = fid.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = fid.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = fid.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = fid.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = fid.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = fid.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = fid.FIDInceptionE_1(1280)
    net.Mixed_7c = fid.FIDInceptionE_2(2048)
    if state_dict is not None:
        net.load_state_dict(state_dict, strict=True)
    return net


def build_fid_inception(state_dict: dict | None = None) -> nn.Module:
    """pytorch-fid's ``InceptionV3([pool3])`` (resize to 299, [0, 1] -> [-1, 1], pool3) around
    :func:`fid_inception_net`."""
    from pytorch_fid import inception as fid

    net = fid_inception_net(state_dict)
    with _FID_LOCK, mock.patch.object(fid, "fid_inception_v3", lambda: net):
        return fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()


class FidInception(nn.Module):
    """``features(img [N, 3, H, W] in [-1, 1]) -> pool3 [N, 2048]``: pixels quantised to uint8
    levels (as read back from a PNG), resized to 299 by ``resize``, [0, 1], pytorch-fid's pool3.

    ``resize="clean"`` (default): clean-fid's PIL bicubic per channel
    (:func:`deltabench.metrics.fid.clean_resize`); pytorch-fid's own bilinear resize inside the
    network is then a copy (299 to 299). ``resize="pytorch-fid"``: pytorch-fid's
    ``F.interpolate(bilinear, align_corners=False)`` without antialiasing, as its CLI computes
    FID from image files (clean-fid measured that aliasing to move FID by 6+ on FFHQ)."""

    feature_dim = 2048
    name = "Inception pool3"
    RESIZES = ("clean", "pytorch-fid")

    def __init__(self, net: nn.Module, batch: int = 50, resize: str = "clean"):
        super().__init__()
        if resize not in self.RESIZES:
            raise ValueError(f"FID resize {resize!r}: give one of {', '.join(self.RESIZES)}")
        self.net, self.batch, self.resize = net.eval(), batch, resize

    @property
    def resize_filter(self) -> str:
        """The resize as recorded in a run's manifest (``fid_resize``)."""
        from deltabench.metrics.fid import CLEAN_RESIZE

        return CLEAN_RESIZE if self.resize == "clean" else "pytorch-fid: F.interpolate bilinear, no antialias"

    @torch.no_grad()
    def features(self, img: torch.Tensor) -> torch.Tensor:
        dev = next(self.net.parameters()).device
        x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round()  # uint8 levels, as read back from a PNG
        if self.resize == "clean" and x.shape[-2:] != (299, 299):
            from deltabench.metrics.fid import clean_resize

            x = clean_resize(x, 299)
        x = x / 255.0
        out = [self.net(x[i : i + self.batch].to(dev))[0].flatten(1) for i in range(0, len(x), self.batch)]
        return torch.cat(out).cpu()  # [N, 2048]

    forward = features


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu") -> FidInception:
    path = Path(path)
    sd = safe_torch_load(path, "pytorch-fid's Inception weights (pt_inception-2015-12-05-6726825d.pth)")
    if not isinstance(sd, dict) or "Mixed_7c.branch_pool.conv.weight" not in sd:
        found = sorted(map(str, sd))[:6] if isinstance(sd, dict) else type(sd).__name__
        raise CheckpointError(
            f"{path}: not pytorch-fid's FID Inception state dict (no 'Mixed_7c.branch_pool.conv.weight'; found {found})"
        )
    try:
        net = build_fid_inception(sd)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: does not match pytorch-fid's FID InceptionV3: {e}") from None
    return FidInception(net).to(device)
