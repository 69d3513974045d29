"""NVIDIA's StyleGAN2 network pickles, read without running anything from the file.

stylegan2-ada-pytorch and stylegan3 save ``network-snapshot-*.pkl`` with ``pickle.dump`` of
``dict(training_set_kwargs=..., G=..., D=..., G_ema=..., augment_pipe=...)``
(stylegan2-ada-pytorch ``training/training_loop.py`` lines 355-367). Every network class there
is a ``torch_utils.persistence.persistent_class``: it pickles as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class',
version=6, module_src=<the source of its whole Python module>, class_name=..., state=<the
module's __dict__>)`` (``torch_utils/persistence.py`` lines 109-117), and NVIDIA's loader
rebuilds the class by ``exec``-ing ``module_src`` (lines 163-194, 213-224). So loading such a
pickle the usual way runs whatever code the file carries.

Here a restricted :class:`pickle.Unpickler` resolves only the callables needed to rebuild
tensors and plain values (:data:`_ALLOWED`): torch's tensor/parameter rebuild functions, the
storages (through ``torch.load(weights_only=True)``), ``OrderedDict``, ``set``, numeric numpy
scalars and dtypes, ``dnnlib.util.EasyDict`` (read as a plain dict) and
``_reconstruct_persistent_obj``, which becomes :func:`_record_persistent`: it keeps the class
name and the recorded state (parameters, buffers, submodules, plain attributes) and drops the
source without reading it. Any other callable is refused with an error that names it, before
it is called. The recorded StyleGAN2 ``Generator`` (``G_ema``) is then converted to
deltabench's :class:`~deltabench.models.stylegan2.StyleGAN2` (:func:`generator_from_record`).

Differences between NVIDIA's generator (``training/networks.py``) and rosinality's, and how the
conversion absorbs them:

- Equalised lr: NVIDIA's synthesis convs apply no weight gain (demodulation cancels it);
  ours multiply by ``1/sqrt(fan_in)``, so our weight is NVIDIA's times ``sqrt(fan_in)``.
  Mapping and affine layers store ``weight / lr_mul`` and apply ``lr_mul/sqrt(fan_in)`` and
  ``bias * lr_mul`` at run time in both: copied as they are (``lr_mlp`` = the layers'
  ``bias_gain``).
- toRGB: NVIDIA multiplies the *style* by ``1/sqrt(fan_in)`` (``ToRGBLayer.forward``), we the
  weight: the same product, weights copied as they are. Our S coordinates of toRGB layers are
  the affine outputs before that gain, as in rosinality (StyleCLIP/DeltaEdit's S space).
- Noise: ``noise_const [R, R]`` times ``noise_strength``; ours ``noises.noise_i [1, 1, R, R]``
  times ``noise.weight``; noise_mode='const' is our ``synthesis`` (stored noise).
- ``conv_clamp``: NVIDIA clamps every conv and toRGB output to +-conv_clamp (``bias_act``
  ``clamp``); weights cannot absorb it, so it is :class:`GeneratorConfig` ``conv_clamp``.
- fp16 in the ``num_fp16_res`` top resolutions is a CUDA speed setting (stylegan3 turns it off
  off CUDA, stylegan2-ada-pytorch with ``force_fp32=True``); deltabench computes in fp32, which
  is NVIDIA's fp32 forward. Parameters are stored in fp32 either way.
- ``w_avg``: NVIDIA truncates towards this tracked mean of w (``MappingNetwork.forward``:
  ``w_avg.lerp(x, psi)`` on every W+ entry); it is returned as the latent average.
- Mapping input: ``normalize_2nd_moment`` equals rosinality's ``PixelNorm`` (eps 1e-8); the
  input ``const [C, 4, 4]`` is ``input.input [1, C, 4, 4]``; the ``'skip'`` architecture (the
  default of both repositories' StyleGAN2 configs) is rosinality's toRGB sum.

Refused, each with one line naming the file: conditional generators (``c_dim > 0``),
StyleGAN3's own synthesis (``SynthesisInput`` and its layers), synthesis architectures other
than ``'skip'``, non-RGB outputs, a mapping whose widths differ from ``w_dim``, and tensors
the conversion would not use.
"""

from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from deltabench.checkpoints import CheckpointError
from deltabench.models.stylegan2 import GeneratorConfig, StyleGAN2

WHAT = "an NVIDIA StyleGAN2 network pickle (stylegan2-ada-pytorch / stylegan3 network-snapshot-*.pkl)"


class _Persistent:
    """What one NVIDIA persistent object recorded: its class name and state, never its source."""

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state

    def child(self, name: str) -> _Persistent | None:
        return (self.state.get("_modules") or {}).get(name)

    def children(self) -> dict:
        return dict(self.state.get("_modules") or {})

    def attr(self, name: str, default=None):
        return self.state.get(name, default)

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Every parameter and buffer below this object, by dotted name (as ``state_dict``)."""
        out = {}
        for group in ("_parameters", "_buffers"):
            for k, v in (self.state.get(group) or {}).items():
                if v is not None:
                    out[prefix + k] = v
        for k, m in self.children().items():
            if isinstance(m, _Persistent):
                out.update(m.tensors(f"{prefix}{k}."))
        return out

    def __repr__(self) -> str:
        return f"<NVIDIA persistent {self.class_name}>"


class _PlainDict(dict):
    """``dnnlib.util.EasyDict`` read as a plain dict (its attribute access is not needed)."""


class _NumpyDType:
    """``numpy.dtype(name, align, copy)`` and its pickled state, for numeric scalars only."""

    def __init__(self, name, align=False, copy=False):
        if not isinstance(name, str):
            raise pickle.UnpicklingError(f"numpy dtype name {name!r}")
        try:
            dt = np.dtype(name)
        except TypeError:
            raise pickle.UnpicklingError(f"numpy dtype {name!r}") from None
        if dt.kind not in "biuf" or dt.fields is not None:
            raise pickle.UnpicklingError(f"numpy dtype {name!r} (only numeric scalars are read)")
        self.dtype = dt

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"numpy dtype byte order {order!r}")
        if order in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(order)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError("a numpy scalar that is not a plain number")
    return np.frombuffer(data, dtype=dtype.dtype, count=1)[0].item()


class _NumpyArray:
    """``numpy.core.multiarray._reconstruct(ndarray, ...)`` plus its pickled state, rebuilt from
    raw bytes of a numeric dtype (stylegan3 records sampling rates and cutoffs as arrays)."""

    def __init__(self, cls=None, shape=(0,), dtype=b"b"):
        if cls is not _NDARRAY:
            raise pickle.UnpicklingError("numpy _reconstruct of a class other than ndarray")
        self.array = np.zeros(0)

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("numpy array state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _NumpyDType) or not isinstance(raw, bytes):
            raise pickle.UnpicklingError("a numpy array that is not plain numbers")
        shape = tuple(int(x) for x in shape)
        self.array = (
            np.frombuffer(raw, dtype=dtype.dtype, count=int(np.prod(shape)))
            .reshape(shape, order="F" if fortran else "C")
            .copy()
        )


_NDARRAY = object()  # stands for numpy.ndarray: only _NumpyArray accepts it


def _load_storage(data):
    """``torch.storage._load_from_bytes``: a legacy ``torch.save`` of one storage, read with
    ``weights_only=True`` (torch's own safe unpickler) instead of a full ``torch.load``."""
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("storage bytes expected")
    s = torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    if not isinstance(s, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError(f"a storage was expected, found {type(s).__name__}")
    return s


def _no_hooks(hooks) -> None:
    if hooks:  # backward hooks are callables: never part of a weight file
        raise pickle.UnpicklingError("a tensor with backward hooks")


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("a tensor without a storage")
    _no_hooks(hooks)
    return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False, OrderedDict())


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    _no_hooks(hooks)
    if state:
        raise pickle.UnpicklingError("a parameter with Python state")
    return data.detach()


def _record_persistent(meta):
    """Stands in for ``torch_utils.persistence._reconstruct_persistent_obj``: records the class
    name and state; ``module_src`` is dropped unread (never executed, never kept)."""
    if (
        not isinstance(meta, dict)
        or meta.get("type") != "class"
        or not isinstance(meta.get("class_name"), str)
        or not isinstance(meta.get("state"), dict)
    ):
        raise pickle.UnpicklingError("a persistent object whose record is not NVIDIA's (type, class_name, state)")
    return _Persistent(meta["class_name"], dict(meta["state"]))


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _record_persistent,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("dnnlib.util", "EasyDict"): _PlainDict,
    ("numpy", "dtype"): _NumpyDType,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy.core.multiarray", "_reconstruct"): _NumpyArray,
    ("numpy._core.multiarray", "_reconstruct"): _NumpyArray,
}


class _Refused(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        hit = _ALLOWED.get((module, name))
        if hit is None and (module, name) not in _ALLOWED:
            raise _Refused(f"{module}.{name}")
        return hit

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids (a torch.save zip file, not a network pickle)")


def read_network_pickle(path: str | Path):
    """Unpickle ``path`` with :class:`_RestrictedUnpickler`: NVIDIA's persistent networks come
    back as :class:`_Persistent` records, tensors as tensors; nothing from the file runs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected {WHAT})")
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f).load()
    except _Refused as e:
        asked = str(e)
        if asked == "dnnlib.tflib.network.Network":
            raise CheckpointError(
                f"{path}: a TensorFlow StyleGAN/StyleGAN2 pickle (dnnlib.tflib.network.Network), not a PyTorch one; "
                f"convert it with NVIDIA's stylegan2-ada-pytorch legacy.py (which runs code from it: do that only "
                f"for a file you trust) and give the converted .pkl"
            ) from None
        raise CheckpointError(
            f"{path}: refused: the pickle asks for {asked}, which is not among the tensors and plain values a "
            f"StyleGAN2 network pickle holds; nothing from the file was run. Loading it could run arbitrary code: "
            f"use a snapshot written by NVIDIA's stylegan2-ada-pytorch / stylegan3 training loop"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        RuntimeError,
        MemoryError,
        OverflowError,
    ) as e:
        raise CheckpointError(
            f"{path}: cannot read it as {WHAT} ({type(e).__name__}: {e}); download it again "
            f"or check that it is such a file"
        ) from None


# -- conversion -------------------------------------------------------------------------------


def _refuse(path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}")


def _taps(f: torch.Tensor, path, where: str) -> tuple[float, ...]:
    """The 1-D taps of NVIDIA's ``upfirdn2d.setup_filter`` result (2-D outer product, or 1-D)."""
    f = f.double()
    row = f if f.ndim == 1 else f.sum(0)
    if f.ndim == 2 and not torch.allclose(torch.outer(row, row) / row.sum() ** 2, f / f.sum(), atol=1e-6):
        raise _refuse(
            path,
            f"{where}.resample_filter is not a separable filter; deltabench's generator "
            f"resamples with a separable FIR filter",
        )
    if f.ndim not in (1, 2) or not torch.allclose(row, row.flip(0)):
        raise _refuse(path, f"{where}.resample_filter is not a symmetric separable filter")
    return tuple(float(x) for x in (row / row.min()).tolist())


def _check_class(obj, want: str, where: str, path) -> _Persistent:
    if not isinstance(obj, _Persistent) or obj.class_name != want:
        found = obj.class_name if isinstance(obj, _Persistent) else type(obj).__name__
        raise _refuse(
            path,
            f"{where} is a {found}, expected StyleGAN2's {want} (training/networks.py of "
            f"stylegan2-ada-pytorch, networks_stylegan2.py of stylegan3); not a StyleGAN2 generator",
        )
    return obj


def generator_from_record(
    rec: _Persistent, path: str | Path = "<pickle>"
) -> tuple[StyleGAN2, torch.Tensor | None, dict]:
    """A recorded NVIDIA StyleGAN2 ``Generator`` -> ``(G.eval(), w_avg or None, info)``.

    Every parameter and buffer of the record is used (or checked, for the resampling filters);
    anything else is an error. ``info``: the NVIDIA settings read (for a domain's description).
    """
    if not isinstance(rec, _Persistent):
        raise _refuse(path, f"the generator entry is a {type(rec).__name__}, not an NVIDIA network")
    syn, mapping = rec.child("synthesis"), rec.child("mapping")
    if (
        rec.class_name == "Generator"
        and isinstance(syn, _Persistent)
        and (
            syn.child("input") is not None
            or any(isinstance(m, _Persistent) and m.class_name == "SynthesisInput" for m in syn.children().values())
        )
    ):
        raise _refuse(
            path,
            "a StyleGAN3 (alias-free) generator: its synthesis network (SynthesisInput and "
            "Fourier-feature layers) is not StyleGAN2's; deltabench reads StyleGAN2 generators only "
            "(stylegan3's --cfg=stylegan2 snapshots are read)",
        )
    _check_class(rec, "Generator", "G_ema", path)
    c_dim = int(rec.attr("c_dim", 0) or 0)
    if c_dim > 0 or (isinstance(mapping, _Persistent) and mapping.child("embed") is not None):
        raise _refuse(
            path,
            f"a conditional generator (c_dim={c_dim}: one class label per image); deltabench edits "
            f"unconditional generators (c_dim=0); train one without --cond, or export a generator "
            f"with the label folded in",
        )
    syn = _check_class(syn, "SynthesisNetwork", "G_ema.synthesis", path)
    mapping = _check_class(mapping, "MappingNetwork", "G_ema.mapping", path)
    img_channels = int(rec.attr("img_channels", syn.attr("img_channels", 3)))
    if img_channels != 3:
        raise _refuse(path, f"a generator of {img_channels}-channel images; deltabench's generator makes RGB (3)")
    res = int(rec.attr("img_resolution", syn.attr("img_resolution", 0)))
    if res < 4 or res & (res - 1):
        raise _refuse(path, f"img_resolution {res} is not a power of two >= 4")
    z_dim, w_dim = int(rec.attr("z_dim", 0)), int(rec.attr("w_dim", 0))
    if z_dim != w_dim or w_dim < 1:
        raise _refuse(
            path, f"z_dim={z_dim} differs from w_dim={w_dim}; deltabench's generator has one style_dim for both"
        )
    used: set[str] = set()
    src = rec.tensors()

    def take(name: str) -> torch.Tensor:
        if name not in src:
            raise _refuse(path, f"G_ema has no tensor {name!r}; not a complete StyleGAN2 generator")
        used.add(name)
        return src[name].detach().float().cpu()

    # mapping
    n_mlp = int(mapping.attr("num_layers", 0))
    if n_mlp < 1:
        raise _refuse(path, "G_ema.mapping has no layers")
    sd: dict[str, torch.Tensor] = {}
    lr_mlp = None
    for i in range(n_mlp):
        fc = _check_class(mapping.child(f"fc{i}"), "FullyConnectedLayer", f"G_ema.mapping.fc{i}", path)
        if fc.attr("activation") != "lrelu":
            raise _refuse(
                path,
                f"G_ema.mapping.fc{i} uses activation {fc.attr('activation')!r}; deltabench's mapping "
                f"is StyleGAN2's leaky ReLU ('lrelu')",
            )
        w = take(f"mapping.fc{i}.weight")
        if tuple(w.shape) != (w_dim, w_dim):
            raise _refuse(
                path,
                f"G_ema.mapping.fc{i} is {tuple(w.shape)}; deltabench's mapping layers are w_dim x w_dim ({w_dim})",
            )
        lr = float(fc.attr("bias_gain", 1.0))
        gain = float(fc.attr("weight_gain", lr / math.sqrt(w_dim)))
        if lr_mlp is None:
            lr_mlp = lr
        if not math.isclose(lr, lr_mlp, rel_tol=1e-6) or not math.isclose(gain, lr / math.sqrt(w_dim), rel_tol=1e-6):
            raise _refuse(
                path,
                f"G_ema.mapping.fc{i}: learning-rate multipliers differ between layers or from "
                f"weight_gain = lr/sqrt(fan_in); deltabench's mapping has one lr_mlp",
            )
        sd[f"style.{i + 1}.weight"] = w
        sd[f"style.{i + 1}.bias"] = take(f"mapping.fc{i}.bias")
    w_avg = take("mapping.w_avg") if "mapping.w_avg" in src else None

    # synthesis
    resolutions = [2**i for i in range(2, int(math.log2(res)) + 1)]
    channels, clamps, taps = {}, set(), set()
    noise_i = 0

    def layer(nv: _Persistent, name: str, ours: str, where: str, up: int) -> None:
        nonlocal noise_i
        _check_class(nv, "SynthesisLayer", where, path)
        if nv.attr("activation") != "lrelu" or int(nv.attr("up", 1)) != up:
            raise _refuse(
                path,
                f"{where}: activation {nv.attr('activation')!r}, up={nv.attr('up')}; StyleGAN2 "
                f"synthesis layers are 'lrelu' with up={up} here",
            )
        w = take(f"{name}.weight")
        if w.shape[-1] != 3 or w.shape[-2] != 3:
            raise _refuse(path, f"{where}: a {tuple(w.shape[-2:])} kernel; deltabench's convs are 3x3")
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        sd[f"{ours}.conv.weight"] = (w * math.sqrt(fan_in))[None]  # ours applies 1/sqrt(fan_in)
        sd[f"{ours}.conv.modulation.weight"] = take(f"{name}.affine.weight")
        sd[f"{ours}.conv.modulation.bias"] = take(f"{name}.affine.bias")
        sd[f"{ours}.activate.bias"] = take(f"{name}.bias")
        r = int(nv.attr("resolution", 0))
        if nv.attr("use_noise", True):
            sd[f"{ours}.noise.weight"] = take(f"{name}.noise_strength").reshape(1)
            noise = take(f"{name}.noise_const")
            sd[f"noises.noise_{noise_i}"] = noise.reshape(1, 1, *noise.shape[-2:])
        else:
            sd[f"{ours}.noise.weight"] = torch.zeros(1)
            sd[f"noises.noise_{noise_i}"] = torch.zeros(1, 1, r, r)
        noise_i += 1
        clamps.add(nv.attr("conv_clamp"))
        if f"{name}.resample_filter" in src:
            used.add(f"{name}.resample_filter")
            if up > 1:
                taps.add(_taps(src[f"{name}.resample_filter"], path, where))

    def torgb(nv: _Persistent, name: str, ours: str, where: str) -> None:
        _check_class(nv, "ToRGBLayer", where, path)
        w = take(f"{name}.weight")
        if tuple(w.shape[:2]) != (3, w.shape[1]) or w.shape[-1] != 1:
            raise _refuse(path, f"{where}: weight {tuple(w.shape)}; toRGB is a 1x1 conv to 3 channels")
        sd[f"{ours}.conv.weight"] = w[None]  # NVIDIA's style gain 1/sqrt(fan_in) = our weight scale
        sd[f"{ours}.conv.modulation.weight"] = take(f"{name}.affine.weight")
        sd[f"{ours}.conv.modulation.bias"] = take(f"{name}.affine.bias")
        sd[f"{ours}.bias"] = take(f"{name}.bias").reshape(1, 3, 1, 1)
        clamps.add(nv.attr("conv_clamp"))

    for i, r in enumerate(resolutions):
        where = f"G_ema.synthesis.b{r}"
        b = _check_class(syn.child(f"b{r}"), "SynthesisBlock", where, path)
        arch = b.attr("architecture", "skip")
        if arch != "skip":
            raise _refuse(
                path,
                f"synthesis architecture {arch!r} ({where}); deltabench's generator is StyleGAN2's "
                f"'skip' generator (the default of stylegan2-ada-pytorch and stylegan3); "
                f"retrain or export with architecture='skip'",
            )
        pre = f"synthesis.b{r}"
        if f"{pre}.resample_filter" in src:
            used.add(f"{pre}.resample_filter")
            if r > 4:
                taps.add(_taps(src[f"{pre}.resample_filter"], path, where))
        if r == 4:
            const = take(f"{pre}.const")
            sd["input.input"] = const[None]
            channels[4] = const.shape[0]
            layer(b.child("conv1"), f"{pre}.conv1", "conv1", f"{where}.conv1", 1)
            torgb(b.child("torgb"), f"{pre}.torgb", "to_rgb1", f"{where}.torgb")
        else:
            layer(b.child("conv0"), f"{pre}.conv0", f"convs.{2 * i - 2}", f"{where}.conv0", 2)
            layer(b.child("conv1"), f"{pre}.conv1", f"convs.{2 * i - 1}", f"{where}.conv1", 1)
            torgb(b.child("torgb"), f"{pre}.torgb", f"to_rgbs.{i - 1}", f"{where}.torgb")
            channels[r] = int(sd[f"convs.{2 * i - 1}.activate.bias"].shape[0])
    if len(clamps) != 1:
        raise _refuse(
            path,
            f"layers clamp at different values {sorted(map(str, clamps))}; deltabench's generator has one conv_clamp",
        )
    if len(taps) > 1:
        raise _refuse(
            path, f"layers resample with different filters {sorted(taps)}; deltabench's generator has one blur kernel"
        )
    unused = sorted(set(src) - used)
    if unused:
        raise _refuse(
            path,
            f"G_ema holds tensors a StyleGAN2 'skip' generator has no use for ({unused[:5]}); "
            f"not a generator deltabench can convert exactly",
        )
    (clamp,) = clamps
    cfg = GeneratorConfig(
        size=res,
        style_dim=w_dim,
        n_mlp=n_mlp,
        channels=channels,
        lr_mlp=float(lr_mlp),
        blur_kernel=next(iter(taps)) if taps else (1, 3, 3, 1),
        conv_clamp=None if clamp is None else float(clamp),
    )
    G = StyleGAN2(cfg)
    own = G.state_dict()
    for k, v in own.items():  # the resampling kernels are built from the taps: check, keep ours
        if k.endswith(("blur.kernel", "upsample.kernel")):
            sd[k] = v
    try:
        G.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise _refuse(
            path, f"the converted tensors do not fit the generator {cfg.to_dict()}: {' '.join(str(e).split())}"
        ) from None
    syn_kwargs = rec.attr("_init_kwargs") or {}
    syn_kwargs = syn_kwargs.get("synthesis_kwargs", syn_kwargs) if isinstance(syn_kwargs, dict) else {}
    info = {
        "format": "nvidia",
        "z_dim": z_dim,
        "w_dim": w_dim,
        "img_resolution": res,
        "mapping_layers": n_mlp,
        "lr_multiplier": float(lr_mlp),
        "conv_clamp": cfg.conv_clamp,
        "num_fp16_res": syn_kwargs.get("num_fp16_res") if isinstance(syn_kwargs, dict) else None,
        "channels": {str(k): int(v) for k, v in sorted(channels.items())},
        "w_avg": w_avg is not None,
    }
    return G.eval(), w_avg, info


def load_nvidia_generator(
    path: str | Path, key: str = "G_ema", map_location: str | torch.device = "cpu"
) -> tuple[StyleGAN2, torch.Tensor, dict]:
    """Read an NVIDIA network pickle safely -> ``(G.eval(), latent_avg [w_dim], info)``.

    ``latent_avg`` is NVIDIA's ``mapping.w_avg`` (its truncation centre); a pickle without one
    gets the mean of 10000 mapped Gaussian z (seed 0), as rosinality checkpoints do.
    """
    path = Path(path)
    data = read_network_pickle(path)
    if isinstance(data, dict):
        if key not in data:
            raise CheckpointError(f"{path}: no {key!r} entry; found {sorted(map(str, data))[:10]} (expected {WHAT})")
        rec = data[key]
    else:
        rec = data  # a bare pickled Generator
    G, w_avg, info = generator_from_record(rec, path)
    info["key"] = key if isinstance(data, dict) else None
    G = G.to(map_location)
    latent_avg = w_avg if w_avg is not None else G.mean_latent(10000).reshape(-1).cpu()
    return G, latent_avg.reshape(-1).float().to(map_location), info


def is_nvidia_pickle(path: str | Path) -> bool:
    """A ``.pkl`` file, or any file that is a bare pickle rather than a torch zip archive whose
    first global is NVIDIA's persistence or ``dnnlib`` (read with :mod:`pickletools`, nothing run)."""
    path = Path(path)
    if path.suffix == ".pkl":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") and (
        b"torch_utils.persistence" in head or b"dnnlib" in head
    )


def load_stylegan2(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[StyleGAN2, torch.Tensor, dict]:
    """Any StyleGAN2 checkpoint deltabench reads -> ``(G.eval(), latent_avg, info)``: NVIDIA's
    network pickles (:func:`load_nvidia_generator`) and rosinality ``.pt`` files
    (:func:`deltabench.models.stylegan2.load_rosinality_checkpoint`). ``info["format"]`` is
    ``"nvidia"`` or ``"rosinality"``; NVIDIA's ``latent_avg`` is its truncation centre ``w_avg``."""
    from deltabench.models.stylegan2 import load_rosinality_checkpoint

    if is_nvidia_pickle(path):
        return load_nvidia_generator(path, map_location=map_location)
    G, latent_avg = load_rosinality_checkpoint(path, map_location=map_location)
    return G, latent_avg, {"format": "rosinality"}


__all__ = [
    "generator_from_record",
    "is_nvidia_pickle",
    "load_nvidia_generator",
    "load_stylegan2",
    "read_network_pickle",
]
