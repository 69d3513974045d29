"""One meaning of strength: a run's ×k (``--sweep``) is k times the edit for every method.

``EditMethod.strength_for`` turns the multiplier into each method's own knob: DeltaEdit and
StyleCLIP-GD scale α, StyleCLIP-LM its mapper step, and StyleCLIP-OP, whose knob (the latent
L2 weight) is inverse, divides it. A micro run of all four at ×0.5, ×1, ×2 checks that a
larger multiplier is a stronger edit in the images themselves.

What the micro run shows (4 faces x 4 prompts, the settings below; numbers in the commit):

- PSNR to the input falls with k for every method (the edit moves the image further).
- CLIP direction (``clip_direction``, cos(ΔE_image, ΔE_text)) rises with k for StyleCLIP-OP,
  which optimises CLIP itself: a weaker L2 pull lets it go further along CLIP's gradient.
- For the methods that scale a fixed step (DeltaEdit and GD: s + α·Δs; LM: w + m·M(w)) CLIP
  direction is a cosine and so, to first order, independent of the step's length: it moves
  by only ±0.01-0.03 over ×0.5-×2 on the micro world, either way (DeltaEdit 0.168 -> 0.153,
  LM 0.086 -> 0.055, GD 0.223 -> 0.247 with an 8-image fs3 but 0.238 -> 0.222 with a 2-image
  one). A stronger edit need not point better, it goes further: what grows with k is the
  CLIP move *along* the text direction, (ΔE_image · Δt̂) = clip_direction x |ΔE_image|,
  measured here from the run's saved edits.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import deltabench
from baselines.gd import StyleCLIPGlobal
from baselines.lm import StyleCLIPMapper
from baselines.op import OPConfig, StyleCLIPOptimization
from deltabench.domain import SynthfacesDomain
from deltaedit.method import DeltaEdit

METHODS = ("deltaedit", "styleclip-op", "styleclip-lm", "styleclip-gd")
SWEEP = (0.5, 1.0, 2.0)
# Small but trained enough that each method's edit points along its text at all: with 10
# mapper steps DeltaEdit's edits point *away* from the text (clip_direction -0.09), and a
# stronger edit then goes further the wrong way.
OPTIONS = {
    "deltaedit": {"config": {"n_generated": 128, "n_inverted": 32, "steps": 80, "batch": 16}},
    "styleclip-op": {"config": {"steps": 20}},  # the micro world's l2_lambda 0.0001 and lr 0.2 stay
    "styleclip-lm": {"config": {"steps": 40, "batch": 4, "n_train": 16}},
    "styleclip-gd": {"config": {"n_images": 8, "n_std": 200}},
}
STEP_METHODS = ("deltaedit", "styleclip-lm", "styleclip-gd")  # a fixed step scaled by k


# -- the knob per multiplier -----------------------------------------------------------------------
def test_op_divides_its_l2_weight_by_the_multiplier(micro_world, tmp_path):
    domain = SynthfacesDomain(micro_world)
    m = StyleCLIPOptimization(domain, tmp_path, config=OPConfig(steps=1, l2_lambda=0.0004))
    assert m.default_strength == 0.0004 and m.strength_name == "l2_lambda"
    assert m.strength_for(1) == m.default_strength
    assert m.strength_for(2) == m.default_strength / 2  # x2: twice the edit, half the pull back
    assert m.strength_for(0.5) == m.default_strength * 2
    assert StyleCLIPOptimization(domain, tmp_path).strength_for(4) == 0.008 / 4  # official default
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(ValueError, match="multiplier"):
            m.strength_for(bad)


def test_the_other_methods_scale_their_knob(micro_world, tmp_path):
    domain = SynthfacesDomain(micro_world)
    for m, default in (
        (DeltaEdit(domain, tmp_path), 1.0),
        (StyleCLIPMapper(domain, tmp_path), 0.1),
        (StyleCLIPGlobal(domain, tmp_path), 4.1),
        (StyleCLIPGlobal(domain, tmp_path, alpha=2.0), 2.0),
    ):
        assert m.default_strength == default
        assert [m.strength_for(k) for k in SWEEP] == [default * k for k in SWEEP], m.name


# -- the sweep in the images -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep_run(micro_root, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("DELTABENCH_CACHE", str(micro_root.parent))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("strength")
    try:
        df = deltabench.run(
            methods=list(METHODS),
            world="synthfaces-micro",
            images=4,
            limit=4,
            sweep=SWEEP,
            options=OPTIONS,
            out=tmp / "run",
            work_dir=tmp / "work",
            batch=4,
            references="none",
            save_edits=True,
        )
    finally:
        torch.set_num_threads(n)
        mp.undo()
    return df.attrs["run_dir"], df.attrs["results"]


def _means(results: pd.DataFrame, col: str) -> dict[str, list[float]]:
    g = results.groupby(["method", "strength_scale"])[col].mean()
    return {m: [float(g[(m, k)]) for k in SWEEP] for m in METHODS}


def _increasing(v) -> bool:
    return all(a < b for a, b in zip(v, v[1:]))


def test_results_record_the_multiplier_and_each_methods_value(sweep_run):
    _, r = sweep_run
    assert set(r["method"]) == set(METHODS) and sorted(set(r["strength_scale"])) == list(SWEEP)
    got = r.groupby(["method", "strength_scale"])["strength"].agg(["min", "max"])
    assert (got["min"] == got["max"]).all()  # one value per unit
    want = {
        "deltaedit": [0.5, 1.0, 2.0],
        "styleclip-lm": [0.05, 0.1, 0.2],
        "styleclip-gd": [2.05, 4.1, 8.2],
        "styleclip-op": [0.0002, 0.0001, 0.00005],
    }  # OP: the micro world's l2_lambda 0.0001 / k
    for m, values in want.items():
        assert [got.loc[(m, k), "min"] for k in SWEEP] == pytest.approx(values, rel=1e-12), m


def test_a_larger_multiplier_is_a_stronger_edit_for_every_method(sweep_run, micro_world):
    run_dir, r = sweep_run
    psnr, direction = _means(r, "psnr"), _means(r, "clip_direction")
    for m in METHODS:  # the image moves further from the input
        assert _increasing([-x for x in psnr[m]]), (m, psnr[m])
    # OP optimises CLIP: the weaker pull back (L2 / k) points the edit better along the text.
    assert _increasing(direction["styleclip-op"]), direction["styleclip-op"]
    # A fixed step scaled by k goes k times as far: the CLIP move along the text grows.
    along = _clip_move_along_text(run_dir, r, SynthfacesDomain(micro_world))
    for m in STEP_METHODS:
        assert _increasing(along[m]), (m, along[m])
        assert along[m][0] > 0, (m, along[m])  # the edit does point along its text


def _clip_move_along_text(run_dir, r: pd.DataFrame, domain) -> dict[str, list[float]]:
    """Per method and multiplier: the mean over images and prompts of (ΔE_image · Δt̂), with ΔE
    the change of the unit CLIP image embedding from the start (the inversion) to the edit."""
    edits = run_dir / "edits"
    start = domain.clip_image(torch.from_numpy(np.load(edits / "start.npy"))).double()
    out: dict[str, list[float]] = {}
    for m in METHODS:
        for k in SWEEP:
            vals = []
            for j, g in r[(r["method"] == m) & (r["strength_scale"] == k)].groupby("prompt_index"):
                edited = domain.clip_image(torch.from_numpy(np.load(edits / f"{m}__{j}__{k!r}.npy"))).double()
                dt = (domain.text_embedding(g["target"].iloc[0]) - domain.text_embedding(g["source"].iloc[0])).double()
                vals.append(((edited - start) @ (dt / dt.norm())).mean().item())
            out.setdefault(m, []).append(float(np.mean(vals)))
    return out
