"""The released DeltaEdit checkpoint (``net_face.pth``) as a deltabench :class:`DeltaMapper`.

Official format (Yueming6568/DeltaEdit): ``scripts/train.py`` saves ``net.state_dict()`` of
``delta_mapper.DeltaMapper`` bare (``torch.save(net.state_dict(), ...)``, train.py line 59) and
``scripts/inference.py`` loads it with ``net.load_state_dict(torch.load(path))`` (lines 63-65).
Its modules (``delta_mapper.py``):

- ``sm_{coarse,medium,fine}`` and ``cm_*``: ``Mapper(norm=True)`` = ``nn.Sequential(PixelNorm(),
  4 x EqualLinear)``, so the linear layers are ``mapping.1`` .. ``mapping.4`` (PixelNorm, at
  index 0, has no parameters);
- ``fm_*``: ``Mapper(norm=False)``: ``mapping.0`` .. ``mapping.3``;
- widths at 1024 px: coarse and medium one per-layer module of 512 shared by their 3 and 4
  layers (``view(-1, 3, 512)``), fine flattened (2464), condition 1024 = [i ; Δi].

deltabench's :class:`deltaedit.mapper.DeltaMapper` computes the same function with the keys
``{sm,cm,fm}.{coarse,medium,fine}.layers.{0..3}.{weight,bias}``; this module renames them and
checks every shape against the generator's S layout, so a file made for another generator
(another resolution, another channel table) is refused with both widths named.
"""

from __future__ import annotations

from pathlib import Path

import torch

from deltabench.checkpoints import CheckpointError, safe_torch_load
from deltaedit.mapper import GROUPS, DeltaMapper, group_specs

# Official module -> (deltabench module, index of the first linear layer in ``mapping``).
_MODULES = {"sm": ("sm", 1), "cm": ("cm", 1), "fm": ("fm", 0)}
N_LAYERS = 4
WHAT = "the official DeltaEdit checkpoint (net_face.pth: a bare DeltaMapper state dict)"


def official_keys() -> list[str]:
    """Every key of the official ``DeltaMapper.state_dict()``, in its order."""
    return [
        f"{m}_{g}.mapping.{first + i}.{p}"
        for g in GROUPS
        for m, (_, first) in _MODULES.items()
        for i in range(N_LAYERS)
        for p in ("weight", "bias")
    ]


def _rename(official_key: str) -> str:
    """``sm_coarse.mapping.1.weight`` -> ``sm.coarse.layers.0.weight``."""
    head, _, idx, p = official_key.split(".")
    m, g = head.split("_")
    ours, first = _MODULES[m]
    return f"{ours}.{g}.layers.{int(idx) - first}.{p}"


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = sorted(map(str, obj))
        return "keys " + ", ".join(repr(k) for k in keys[:6]) + (f" ... ({len(keys)} keys)" if len(keys) > 6 else "")
    return f"a {type(obj).__name__}"


def _kind_hint(obj) -> str:
    if not isinstance(obj, dict):
        return ""
    if "state_dict" in obj and "opts" in obj:
        sd = obj["state_dict"]
        if isinstance(sd, dict) and any(str(k).startswith("mapper.") for k in sd):
            return " (this looks like a StyleCLIP latent mapper, mapper/training/coach.py: load it with baselines.lm.load_official_mapper)"
        return " (this looks like a pSp/e4e-style checkpoint with 'opts' and 'state_dict')"
    if "g_ema" in obj:
        return " (this looks like a rosinality StyleGAN2 generator checkpoint)"
    if any(str(k).startswith(("sm.", "cm.", "fm.")) for k in obj):
        return " (this looks like deltabench's own DeltaMapper state dict: use DeltaMapper.load_state_dict)"
    return ""


def convert_official_state_dict(sd: dict, slayout, where: str = "checkpoint") -> tuple[dict, int]:
    """Official ``DeltaMapper`` state dict -> (deltabench ``DeltaMapper`` state dict, clip_dim).

    Checks the keys and every shape against ``slayout`` (the generator's S layout); raises
    :class:`CheckpointError` naming what was expected and what was found.
    """
    want = official_keys()
    if (
        not isinstance(sd, dict)
        or not all(isinstance(v, torch.Tensor) for v in sd.values())
        or not any(str(k).startswith("sm_coarse.") for k in sd)
    ):
        raise CheckpointError(
            f"{where}: not {WHAT}: expected keys {want[0]!r}, {want[1]!r}, ... "
            f"({len(want)} keys); found {_describe(sd)}{_kind_hint(sd)}"
        )
    missing = [k for k in want if k not in sd]
    extra = sorted(k for k in sd if k not in set(want))
    if missing or extra:
        raise CheckpointError(
            f"{where}: not {WHAT}: "
            + (f"missing keys {missing[:4]}{' ...' if len(missing) > 4 else ''}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected keys {extra[:4]}{' ...' if len(extra) > 4 else ''}" if extra else "")
        )
    res = max(slayout.resolution)
    specs = {g.name: g for g in group_specs(slayout)}
    if tuple(specs) != GROUPS:
        raise CheckpointError(
            f"{where}: the official DeltaMapper has coarse, medium and fine groups; the "
            f"{res} px generator's S layout has only {list(specs)} (it needs at least 8 "
            f"non-toRGB layers)"
        )
    for g in ("coarse", "medium"):
        if not specs[g].per_layer:
            raise CheckpointError(
                f"{where}: the official DeltaMapper maps each {g} layer with one shared "
                f"module, which needs equal {g} layer widths; the {res} px generator's are "
                f"{list(specs[g].widths)}"
            )
    cond = sd["cm_coarse.mapping.1.weight"].shape[1]
    found = {g: int(sd[f"sm_{g}.mapping.1.weight"].shape[0]) for g in GROUPS}
    expected = {g: specs[g].unit for g in GROUPS}
    if found != expected:

        def fmt(d):
            return ", ".join(f"{g} {'width' if g == 'fine' else 'per-layer width'} {d[g]}" for g in GROUPS)

        raise CheckpointError(
            f"{where}: {WHAT} for another S layout: expected {fmt(expected)} (the {res} px "
            f"generator: {slayout.total_non_torgb} non-toRGB channels); found {fmt(found)}"
        )
    for g, spec in specs.items():
        w = spec.unit  # per-layer width (coarse, medium) or the flattened width (fine)
        what = f"{g} width" if g == "fine" else f"{g} per-layer width"
        for m, (_, first) in _MODULES.items():
            for i in range(N_LAYERS):
                k = f"{m}_{g}.mapping.{first + i}"
                in_dim = (w if m == "sm" else cond if m == "cm" else 2 * w) if i == 0 else w
                shapes = {"weight": (w, in_dim), "bias": (w,)}
                for p, shape in shapes.items():
                    found = tuple(sd[f"{k}.{p}"].shape)
                    if found != shape:
                        if p == "weight" and i == 0 and m == "cm" and found[0] == w:
                            raise CheckpointError(
                                f"{where}: {k}.weight takes a condition of width {found[1]}, "
                                f"cm_coarse takes {cond}: the file is inconsistent"
                            )
                        got = (
                            f"found {found[0]} ({k}.{p} has shape {list(found)})"
                            if found[0] != w
                            else f"found {k}.{p} of shape {list(found)}, expected {list(shape)}"
                        )
                        raise CheckpointError(
                            f"{where}: {WHAT} for another S layout: expected {what} {w} (the {res} px "
                            f"generator: {slayout.total_non_torgb} non-toRGB channels), {got}"
                        )
    if cond % 2:
        raise CheckpointError(
            f"{where}: the condition width {cond} is odd; the official condition is [i ; delta i], twice the CLIP width"
        )
    return {_rename(k): sd[k] for k in want}, cond // 2


def load_official_checkpoint(path: str | Path, slayout, map_location: str | torch.device = "cpu") -> DeltaMapper:
    """Load the released DeltaEdit ``net_face.pth`` as a deltabench :class:`DeltaMapper`.

    ``slayout`` is the generator's S layout (``generator.slayout``; the released file fits the
    1024 px FFHQ generator: coarse/medium 512 per layer, fine 2464). The returned mapper's
    ``forward(s, cond)`` (``s [B, S_non_toRGB]``, ``cond [B, 2*clip_dim]`` = [i ; Δt]) equals the
    official ``DeltaMapper.forward(sspace_feat, clip_feat)``. Read with
    ``torch.load(weights_only=True)`` (:func:`deltabench.checkpoints.safe_torch_load`, nothing
    allowed beyond tensors). A file of another kind or for another layout raises
    :class:`~deltabench.checkpoints.CheckpointError` naming what was expected and found.
    """
    obj = safe_torch_load(path, WHAT, map_location=map_location)
    return from_official_state_dict(obj, slayout, where=str(path), copy=False)


def from_official_state_dict(sd: dict, slayout, where: str = "checkpoint", copy: bool = True) -> DeltaMapper:
    """An official ``DeltaMapper.state_dict()`` (already in memory) as a deltabench :class:`DeltaMapper`
    (``copy=False``: the mapper's parameters may share memory with ``sd``'s float32 tensors)."""
    ours, clip_dim = convert_official_state_dict(sd, slayout, where)
    with torch.device("meta"):  # no random init of ~83M values that are overwritten at once
        mapper = DeltaMapper(slayout, clip_dim=clip_dim)
    mapper.load_state_dict({k: v.to(torch.float32, copy=copy) for k, v in ours.items()}, strict=True, assign=True)
    return mapper.eval()


def to_official_state_dict(mapper: DeltaMapper) -> dict[str, torch.Tensor]:
    """A deltabench :class:`DeltaMapper` (official layout only: coarse/medium per layer, no
    toRGB group) as the official ``DeltaMapper.state_dict()``, which the official
    ``scripts/inference.py`` can load."""
    names = tuple(g.name for g in mapper.specs)
    if names != GROUPS or not all(g.per_layer for g in mapper.specs[:2]):
        raise ValueError(
            f"only a DeltaMapper with the official groups (per-layer coarse and medium, "
            f"flattened fine, no toRGB) has an official form; this one has {names}"
        )
    sd = mapper.state_dict()
    return {k: sd[_rename(k)].detach().clone() for k in official_keys()}
