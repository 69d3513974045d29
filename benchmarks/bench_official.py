"""deltabench against the official loops at the 1024 px FFHQ layout, in one run (random weights).

    python benchmarks/bench_official.py --json reports/bench/official_cpu.json          # CPU, small slice
    python benchmarks/bench_official.py --device cuda --fs3-channels 32 --fs3-images 4 \\
        --json reports/bench/official_gpu.json                                          # one GPU

The generator is deltabench's StyleGAN2 at 1024 px, channel multiplier 2 (rosinality config-f,
the official FFHQ shapes), the CLIP image/text encoder open_clip ViT-B/32 (224 px input) and
the identity net deltabench's own; all with random weights (``bench_styleclip.RandomDomain``),
so the figures are speed only. Three measurements:

1. StyleCLIP-GD fs3: ``baselines.gd.compute_fs3`` (batched: the activations below a layer are
   computed once, and channels x 2 signs x images branch from them in one pass) against
   ``compute_fs3_naive`` (the official ``SingleChannel.py`` loop: every channel and sign a full
   synthesis) on the same channels of ``--fs3-layers`` and the same ``--fs3-images`` images;
   their max abs difference and the ratio naive s / batched s. The whole official fs3 (6048
   channels x 100 images) is an extrapolation: naive from its measured seconds per synthesis,
   batched from a per-layer timing of one forward pass (a channel of layer l costs the layers
   from l on, plus CLIP), scaled by the measured slice.
2. DeltaEdit edits/s (``DeltaEdit.edit`` + synthesis, as ``bench_deltaedit.py``): styles, the
   source image's synthesis and CLIP image embedding (i1), the random-weight DeltaMapper
   (82.8M parameters) and the edited image's synthesis; the text condition comes from fixed
   random text embeddings (computed once per prompt, as the method caches it). Batch 1 and the
   largest of ``--deltaedit-batches`` whose predicted time fits ``--deltaedit-budget`` seconds;
   each batch size is warmed up first (not timed).
3. StyleCLIP-OP seconds per edit: ``--op-steps`` steps of ``StyleCLIPOptimization`` at batch 1
   (the official code optimises one image at a time), the first step excluded as warm-up,
   scaled to the official 300 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_styleclip import RandomDomain, _sync  # noqa: E402

import baselines.gd as gd  # noqa: E402
import baselines.op as op_mod  # noqa: E402
from baselines.gd import FS3Config, compute_fs3, compute_fs3_naive  # noqa: E402
from baselines.op import OPConfig, StyleCLIPOptimization  # noqa: E402
from deltabench import sspace  # noqa: E402
from deltabench.utils import cpu_name  # noqa: E402
from deltaedit.mapper import DeltaMapper  # noqa: E402
from deltaedit.method import DeltaEdit  # noqa: E402
from deltaedit.train import DeltaEditConfig  # noqa: E402

PROMPT = ("face", "face with glasses")


def _clock(dev):
    _sync(dev)
    return time.perf_counter(), time.process_time()


def _since(dev, t):
    _sync(dev)
    return time.perf_counter() - t[0], time.process_time() - t[1]


def device_info(dev: torch.device) -> dict:
    out = {
        "device": str(dev),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import open_clip

        out["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
        out["cuda"] = torch.version.cuda
    else:
        out["device_name"] = out["cpu"]
    return out


def fs3_slice(domain, layers: list[str], per_layer: int) -> list[int]:
    """The first ``per_layer`` channels of each named layer, as ``sspace.gather`` indices."""
    sl = domain.generator.slayout
    edit = list(sspace.edit_indices(sl, False))
    offsets = dict(zip(edit, [sum(sl.widths[i] for i in edit[:j]) for j in range(len(edit))]))
    out = []
    for name in layers:
        if name not in sl.names or sl.names.index(name) not in offsets:
            raise SystemExit(
                f"--fs3-layers: {name!r} is not a non-toRGB layer of this generator; "
                f"its layers are {[sl.names[i] for i in edit]}"
            )
        l = sl.names.index(name)
        out += [offsets[l] + c for c in range(min(per_layer, sl.widths[l]))]
    return out


@torch.no_grad()
def layer_profile(domain, cfg: FS3Config) -> tuple[dict, float]:
    """Seconds per image of every S layer (one forward pass of the fs3 images) and of CLIP."""
    G, dev = domain.generator, domain.device
    styles = G.styles(domain.sample_w_plus(cfg.n_images, cfg.seed))
    noise, state, per = gd._noise(G), (None, None), {}
    N = styles[0].shape[0]
    with cfg.autocast(dev):
        for l in range(len(G.slayout)):
            t = _clock(dev)
            state = gd._apply_layer(G, l, state, styles[l], noise)
            per[l] = _since(dev, t)[0] / N
        t = _clock(dev)
        domain.clip.encode_image(state[1])
        clip_s = _since(dev, t)[0] / N
    return per, clip_s


def bench_fs3(domain, a) -> dict:
    sl = domain.generator.slayout
    cfg = FS3Config(
        n_images=a.fs3_images, n_std=a.n_std, max_batch=a.max_batch, precision=a.precision, torgb=False
    ).resolve(domain)
    chans = fs3_slice(domain, a.fs3_layers, a.fs3_channels)
    std = gd.channel_std(domain, cfg)
    dev = domain.device
    res = {
        "layers": a.fs3_layers,
        "channels_per_layer": a.fs3_channels,
        "channels": len(chans),
        "images": cfg.n_images,
        "precision_batched": cfg.precision,
        "precision_naive": "fp32",
        "max_batch": cfg.max_batch,
    }
    # First: one timed forward pass per layer (the extrapolation's profile), which also warms
    # the kernels up for both timings below.
    per, clip_s = layer_profile(domain, cfg)
    # ... and a warm-up at the batched passes' batch size (2 x channels of a pass x images):
    # on the CPU the first pass at a new batch size is up to ~2x slower (measured at 1024 px).
    k = min(max(1, cfg.max_batch // (2 * cfg.n_images)), a.fs3_channels)
    with torch.no_grad(), cfg.autocast(dev):
        domain.clip.encode_image(domain.generator.synthesis(domain.sample_w_plus(2 * k * cfg.n_images, 5)))
    print(f"fs3: {len(chans)} channels ({', '.join(a.fs3_layers)}) x {cfg.n_images} images: batched ...", flush=True)
    t = _clock(dev)
    fast, _, _ = compute_fs3(domain, cfg, std=std, channels=chans)
    res["batched_seconds"], res["batched_cpu_seconds"] = _since(dev, t)
    print(f"  batched {res['batched_seconds']:.1f} s; naive ...", flush=True)
    t = _clock(dev)
    ref = compute_fs3_naive(domain, cfg, std, channels=chans)
    res["naive_seconds"], res["naive_cpu_seconds"] = _since(dev, t)
    res["max_abs_diff"] = (fast.float() - ref.float()).abs().max().item()
    res["ratio_naive_over_batched"] = res["naive_seconds"] / res["batched_seconds"]
    res["ratio_cpu_seconds"] = res["naive_cpu_seconds"] / res["batched_cpu_seconds"]  # less sensitive to a shared CPU
    print(
        f"  naive {res['naive_seconds']:.1f} s; ratio {res['ratio_naive_over_batched']:.2f}; "
        f"max |diff| {res['max_abs_diff']:.2e}",
        flush=True,
    )

    # Extrapolation to the official fs3 (every non-toRGB channel x --extrapolate-images).
    edit = list(sspace.edit_indices(sl, False))
    suffix = {l: sum(per[j] for j in range(l, len(sl))) + clip_s for l in edit}  # s / image, channel of layer l
    layer_of = [l for l in edit for _ in range(sl.widths[l])]
    model_slice = sum(2 * cfg.n_images * suffix[layer_of[c]] for c in chans)
    scale = res["batched_seconds"] / model_slice  # batching (and overhead) vs the batch-N profile
    n_img, n_ch = a.extrapolate_images, len(layer_of)
    naive_per_image = res["naive_seconds"] / (len(chans) * 2 * cfg.n_images)
    ex = {
        "channels": n_ch,
        "images": n_img,
        "naive_seconds": naive_per_image * n_ch * 2 * n_img,
        "batched_seconds": scale * sum(sl.widths[l] * 2 * n_img * suffix[l] for l in edit),
        "profile_seconds_per_image": {"layers": {sl.names[l]: per[l] for l in per}, "clip": clip_s},
        "batched_slice_vs_profile": scale,
        "note": "extrapolated, not measured: naive = measured s per image synthesis x channels x 2 x images; "
        "batched = per-layer profile (a layer-l channel costs layers l.. plus CLIP) x the slice's "
        "measured/profiled ratio; assumes cost linear in images",
    }
    ex["ratio_naive_over_batched"] = ex["naive_seconds"] / ex["batched_seconds"]
    # The work the shared prefix saves, at equal per-image speed (no batching gain): every
    # channel a full synthesis / a channel of layer l from layer l on.
    full = sum(per.values()) + clip_s
    ex["prefix_work_ratio"] = sum(sl.widths[l] * full for l in edit) / sum(sl.widths[l] * suffix[l] for l in edit)
    res["extrapolated_full"] = ex
    return res


def bench_deltaedit(domain, a) -> dict:
    dev, G = domain.device, domain.generator
    torgb = DeltaEditConfig().resolve(domain).torgb
    clip_dim = domain.text_embedding("x").shape[0]
    mapper = DeltaMapper(G.slayout, clip_dim=clip_dim, torgb=torgb).to(dev).eval()
    res = {
        "torgb": torgb,
        "mapper_parameters": sum(p.numel() for p in mapper.parameters()),
        "budget_seconds": a.deltaedit_budget,
        "included": "styles, source synthesis + CLIP image embedding, DeltaMapper, edited synthesis "
        "(text embeddings fixed, computed once per prompt)",
    }
    with tempfile.TemporaryDirectory() as tmp:
        m = DeltaEdit(domain, tmp, config=DeltaEditConfig())
        m.mapper = mapper

        def run(b, reps, warmup):
            w = domain.sample_w_plus(b, seed=1)
            with torch.no_grad():
                if warmup:
                    G.synthesis_from_styles(m.edit(w, *PROMPT))
                t = _clock(dev)
                for _ in range(reps):
                    G.synthesis_from_styles(m.edit(w, *PROMPT))
                dt, cpu = _since(dev, t)
                s = sspace.gather(G.styles(w), G.slayout, torgb)
                cond = torch.randn(b, 2 * clip_dim, device=dev)
                tm = _clock(dev)
                for _ in range(reps):
                    mapper(s, cond)
                dm = _since(dev, tm)[0]
            return {
                "batch": b,
                "reps": reps,
                "warmup": warmup,
                "seconds": dt,
                "cpu_seconds": cpu,
                "edits_per_second": b * reps / dt,
                "ms_per_edit": 1000 * dt / (b * reps),
                "mapper_ms_per_edit": 1000 * dm / (b * reps),
            }

        warm = True  # a first pass at a new batch size is slower, on the CPU too
        r1 = run(1, a.deltaedit_reps, warm)
        print(f"deltaedit batch 1: {r1['edits_per_second']:.3f} edits/s", flush=True)
        per_edit = r1["seconds"] / r1["reps"]
        # the budget is for the timed pass; its warm-up comes on top
        fits = [b for b in a.deltaedit_batches if b > 1 and b * per_edit <= a.deltaedit_budget]
        res["batch1"] = r1
        if fits:
            b = max(fits)
            res["batch_large"] = run(b, a.deltaedit_reps, warm)
            print(f"deltaedit batch {b}: {res['batch_large']['edits_per_second']:.3f} edits/s", flush=True)
        res["batches_skipped"] = [b for b in a.deltaedit_batches if b > 1 and b not in fits]
    return res


def bench_op(domain, a) -> dict:
    dev = domain.device
    stamps = []

    def timed(iterable=None, **kw):  # baselines.op's progress bar, replaced by a step clock
        for x in iterable:
            _sync(dev)
            stamps.append((time.perf_counter(), time.process_time()))
            yield x
        _sync(dev)
        stamps.append((time.perf_counter(), time.process_time()))

    w = domain.sample_w_plus(1, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        op = StyleCLIPOptimization(domain, tmp, config=OPConfig(steps=a.op_steps, batch=1))
        orig, op_mod.progress = op_mod.progress, timed
        try:
            t = _clock(dev)
            op.edit(w, "face", "smiling face")
            total, cpu = _since(dev, t)
        finally:
            op_mod.progress = orig
    steps = [b[0] - a_[0] for a_, b in zip(stamps[:-1], stamps[1:])]
    steps_cpu = [b[1] - a_[1] for a_, b in zip(stamps[:-1], stamps[1:])]
    timed_steps = steps[1:] if len(steps) > 1 else steps
    per_step = sum(timed_steps) / len(timed_steps)
    setup = total - sum(steps)  # text embedding + the identity reference forward
    res = {
        "steps_run": a.op_steps,
        "step_seconds": steps,
        "step_cpu_seconds": steps_cpu,
        "seconds_per_step": per_step,
        "setup_seconds": setup,
        "seconds_total": total,
        "cpu_seconds": cpu,
        "batch": 1,
        "seconds_per_edit_300_steps": setup + 300 * per_step,
        "note": f"extrapolated: {len(timed_steps)} timed step(s) (first excluded as warm-up when >1) x 300 + setup",
    }
    print(f"op: {per_step:.2f} s/step -> {res['seconds_per_edit_300_steps']:.0f} s per edit at 300 steps", flush=True)
    return res


def table(r: dict) -> str:
    rows = []
    f = r.get("fs3")
    if f:
        ex = f["extrapolated_full"]
        rows += [
            ("fs3 slice", f"{f['channels']} ch ({','.join(f['layers'])}) x {f['images']} img"),
            ("fs3 batched (deltabench)", f"{f['batched_seconds']:.1f} s"),
            ("fs3 naive (official loop)", f"{f['naive_seconds']:.1f} s"),
            (
                "fs3 ratio naive/batched",
                f"{f['ratio_naive_over_batched']:.2f}x wall, {f['ratio_cpu_seconds']:.2f}x CPU seconds",
            ),
            ("fs3 max |batched - naive|", f"{f['max_abs_diff']:.2e}"),
            (
                f"fs3 full {ex['channels']} ch x {ex['images']} img, naive (extrapolated)",
                f"{ex['naive_seconds'] / 3600:.1f} h",
            ),
            (
                f"fs3 full {ex['channels']} ch x {ex['images']} img, batched (extrapolated)",
                f"{ex['batched_seconds'] / 3600:.1f} h ({ex['ratio_naive_over_batched']:.2f}x)",
            ),
            ("fs3 full: work saved by the shared prefix alone", f"{ex['prefix_work_ratio']:.2f}x"),
        ]
    d = r.get("deltaedit")
    if d:
        for k in ("batch1", "batch_large"):
            if k in d:
                x = d[k]
                rows.append(
                    (
                        f"DeltaEdit batch {x['batch']}",
                        f"{x['edits_per_second']:.3f} edits/s "
                        f"({x['ms_per_edit']:.0f} ms/edit; mapper {x['mapper_ms_per_edit']:.1f} ms)",
                    )
                )
        if d["batches_skipped"]:
            rows.append(("DeltaEdit batches not run (over budget)", ",".join(map(str, d["batches_skipped"]))))
    o = r.get("op")
    if o:
        rows += [
            ("StyleCLIP-OP s/step (batch 1)", f"{o['seconds_per_step']:.2f} s"),
            ("StyleCLIP-OP s/edit, 300 steps (extrapolated)", f"{o['seconds_per_edit_300_steps']:.0f} s"),
        ]
    w = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{w}} | {v} |" for k, v in rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ffhq-1024", help="ffhq-1024 (default) or synthfaces-64 (a quick check)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--fs3-layers", default="conv1,convs.12", help="comma-separated S layer names for the fs3 slice")
    p.add_argument("--fs3-channels", type=int, default=2, help="channels per layer in the fs3 slice")
    p.add_argument("--fs3-images", type=int, default=2)
    p.add_argument("--extrapolate-images", type=int, default=100, help="images of the official fs3")
    p.add_argument("--n-std", type=int, default=2000, help="codes for the channel sigma")
    p.add_argument("--max-batch", type=int, default=FS3Config.max_batch)
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16", "fp16"],
        help="batched fs3 precision (auto: fp16 on CUDA, fp32 on CPU); the naive loop is fp32",
    )
    p.add_argument("--deltaedit-batches", default="1,2,4,8,16,32,64")
    p.add_argument(
        "--deltaedit-budget",
        type=float,
        default=60.0,
        help="seconds (predicted from batch 1) for the timed large-batch DeltaEdit pass, warm-up not counted",
    )
    p.add_argument("--deltaedit-reps", type=int, default=1)
    p.add_argument("--op-steps", type=int, default=2, help="OP steps run (first excluded; scaled to 300)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: fs3, deltaedit, op")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.fs3_layers = [x.strip() for x in a.fs3_layers.split(",") if x.strip()]
    a.deltaedit_batches = sorted({int(x) for x in a.deltaedit_batches.split(",")})
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}
    if skip - {"fs3", "deltaedit", "op"}:
        p.error(f"--skip takes fs3, deltaedit, op; got {sorted(skip)}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    t0 = time.perf_counter()
    domain = RandomDomain(a.arch, a.device)
    G = domain.generator
    res = {
        "arch": a.arch,
        "resolution": domain.resolution,
        "channel_multiplier": 2 if a.arch == "ffhq-1024" else None,
        "s_channels_fs3": sspace.edit_width(G.slayout, False),
        "weights": "random (speed only)",
        **device_info(domain.device),
        "loadavg_start": os.getloadavg(),
    }
    if "fs3" not in skip:
        res["fs3"] = bench_fs3(domain, a)
        res["fs3"]["loadavg_after"] = os.getloadavg()
    if "deltaedit" not in skip:
        res["deltaedit"] = bench_deltaedit(domain, a)
        res["deltaedit"]["loadavg_after"] = os.getloadavg()
    if "op" not in skip:
        res["op"] = bench_op(domain, a)
        res["op"]["loadavg_after"] = os.getloadavg()
    res["loadavg_end"] = os.getloadavg()
    res["wall_seconds"] = time.perf_counter() - t0
    res["command"] = "python benchmarks/bench_official.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(table(res))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
