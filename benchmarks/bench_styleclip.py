"""Speed of the StyleCLIP baselines: fs3 precompute (channels/s), edits/s per method, OP s/image.

    python benchmarks/bench_styleclip.py --world synthfaces            # a built world
    python benchmarks/bench_styleclip.py --arch synthfaces-64          # the default world's shapes, random weights
    python benchmarks/bench_styleclip.py --arch ffhq-1024 --device cuda  # official 1024px StyleGAN2 + ViT-B/32 shapes

Random-weight architectures measure speed only (the numbers a GPU run needs to compare with
the 4-24 GPU hours reported for the official fs3 precompute); ``--fs3-channels`` times a
subset of channels and extrapolates to the whole S space.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from baselines.gd import FS3Config, StyleCLIPGlobal, compute_fs3
from baselines.lm import LMConfig, StyleCLIPMapper
from baselines.op import OPConfig, StyleCLIPOptimization
from deltabench import sspace
from deltabench.domainbase import DomainBase


class RandomDomain(DomainBase):
    """A domain with random weights of a given architecture (timing only); the optional members
    of the domain contract keep their defaults (deltabench.domainbase.DomainBase)."""

    kind = "random"

    def __init__(self, arch: str, device: str):
        from deltabench.models.clip import ClipConfig, build_clip
        from deltabench.models.identity import IdentityConfig, build_identity
        from deltabench.models.stylegan2 import GeneratorConfig, build_generator
        from deltabench.world.train_clip import world_tokenizer

        torch.manual_seed(0)
        if arch == "synthfaces-64":  # the default world's generator / CLIP / identity shapes
            self.resolution = 64
            g = GeneratorConfig(style_dim=128, n_mlp=8, channels={4: 128, 8: 128, 16: 128, 32: 64, 64: 32})
            self.clip = build_clip(ClipConfig(), 64, world_tokenizer(ClipConfig().context_length))
        elif arch == "ffhq-1024":  # rosinality config-f + open_clip ViT-B/32 (224 px input)
            import open_clip

            from deltabench.models.clip import ClipModel

            self.resolution = 1024
            g = GeneratorConfig()
            self.clip = ClipModel(
                open_clip.create_model("ViT-B-32", pretrained=None), open_clip.get_tokenizer("ViT-B-32"), 224
            )  # the bundled BPE vocab: OP encodes text
        else:
            raise ValueError(f"unknown --arch {arch!r}; use synthfaces-64 or ffhq-1024")
        self.generator = build_generator(g, self.resolution).eval()
        self.identity = build_identity(IdentityConfig(), min(self.resolution, 128)).eval()
        self.encoder = None
        self.templates = ("{}",)
        for m in (self.generator, self.clip, self.identity):
            m.to(device)
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    @torch.no_grad()
    def sample_w_plus(self, n: int, seed: int) -> torch.Tensor:
        z = torch.randn(n, self.generator.style_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        w = torch.cat([self.generator.mapping(z[i : i + 1024]) for i in range(0, n, 1024)])
        return w[:, None].repeat(1, self.generator.n_latent, 1)

    def text_embedding(self, text: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16))
        d = (
            self.clip.encode_image(torch.zeros(1, 3, 8, 8, device=self.device)).shape[1]
            if not hasattr(self, "_d")
            else self._d
        )
        self._d = d
        v = torch.randn(d, generator=g)
        return (v / v.norm()).to(self.device)

    def encode_clip(self, images, official_input: bool = False):
        """Unit CLIP image embeddings (the domain's own feed: the random CLIP has no official one)."""
        return self.clip.encode_image(images)

    def clip_image(self, images, batch=None, official_input: bool = False):
        with torch.no_grad():
            return self.encode_clip(images)

    def invert(self, images):  # timing only: latents come from sample_w_plus
        raise RuntimeError("the random-weight benchmark domain has no encoder; its latents come from sample_w_plus")


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def bench_fs3(domain, n_images: int, channels: int | None, max_batch: int, precision: str = "auto") -> dict:
    """Time fs3 over the first layers until ``channels`` channels (all when None); extrapolate."""
    import baselines.gd as gd

    sl = domain.generator.slayout
    cfg = FS3Config(n_images=n_images, n_std=2000, max_batch=max_batch, precision=precision).resolve(domain)
    total = sspace.edit_width(sl, cfg.torgb)
    std = gd.channel_std(domain, cfg)
    if channels is None or channels >= total:
        _sync(domain.device)
        _, _, info = compute_fs3(domain, cfg, std=std)
        return {
            "channels": total,
            "seconds": info["seconds"],
            "cpu_seconds": info["cpu_seconds"],
            "channels_per_second": info["channels_per_second"],
            "n_images": n_images,
            "measured_channels": total,
        }
    if cfg.torgb:
        raise ValueError(
            "--fs3-channels samples the non-toRGB layers only, and this domain's fs3 covers the "
            "toRGB channels too; time every channel (leave --fs3-channels out)"
        )
    # Time a sample of channels from every layer (cost differs by depth), then extrapolate.
    layers = sl.non_torgb_indices
    per_layer, cpu_layer, measured = {}, {}, 0
    for l in layers:
        k = max(1, min(sl.widths[l], channels // len(layers)))
        _time_one_layer(domain, cfg, std, l, min(k, 2))  # warm-up
        _sync(domain.device)
        t0, c0 = time.perf_counter(), time.process_time()
        _time_one_layer(domain, cfg, std, l, k)
        _sync(domain.device)
        per_layer[l] = (time.perf_counter() - t0) / k
        cpu_layer[l] = (time.process_time() - c0) / k
        measured += k
    est = sum(per_layer[l] * sl.widths[l] for l in layers)
    cpu = sum(cpu_layer[l] * sl.widths[l] for l in layers)
    # cpu_seconds / threads: the wall time on that many dedicated cores (the machine may be shared).
    return {
        "channels": total,
        "seconds_estimated": est,
        "cpu_seconds_estimated": cpu,
        "channels_per_second": total / est,
        "dedicated_seconds_estimated": cpu / torch.get_num_threads(),
        "n_images": n_images,
        "measured_channels": measured,
    }


@torch.no_grad()
def _time_one_layer(domain, cfg, std, l, k):
    """fs3 for ``k`` channels of layer ``l`` only (same code path as compute_fs3)."""
    import baselines.gd as gd

    G, clip = domain.generator, domain.clip
    dev = domain.device
    w = domain.sample_w_plus(cfg.n_images, cfg.seed)
    styles = G.styles(w)
    noise = gd._noise(G)
    state = (None, None)
    amp = cfg.autocast(dev)
    with amp:
        for i in range(l):
            state = gd._apply_layer(G, i, state, styles[i], noise)
        N, C = styles[l].shape
        k_max = max(1, cfg.max_batch // (2 * N))
        for c0 in range(0, k, k_max):
            kk = min(k_max, k - c0)
            s_l = styles[l][None, None].repeat(kk, 2, 1, 1)
            s_l[torch.arange(kk), :, :, torch.arange(c0, c0 + kk)] += 1.0
            rest = [gd._rep(s, 2 * kk) for s in styles]
            rest[l] = s_l.reshape(2 * kk * N, C)
            img = gd.synthesize_from(G, l, (gd._rep(state[0], 2 * kk), gd._rep(state[1], 2 * kk)), rest, noise)
            clip.encode_image(img)


def bench_edits(domain, work_dir: Path, n: int, op_steps: int, lm_steps: int, with_lm: bool) -> dict:
    out = {}
    dev = domain.device
    w = domain.sample_w_plus(n, 123)
    prompts = [("face", "smiling face")]
    if with_lm:
        lm = StyleCLIPMapper(domain, work_dir, config=LMConfig(steps=lm_steps, n_train=64, batch=8))
        lm._w_train = domain.sample_w_plus(64, 7)
        t0 = time.perf_counter()
        lm.mapper_for("smiling face")
        out["lm_train_seconds"] = time.perf_counter() - t0
        out["lm_train_steps_per_second"] = lm_steps / out["lm_train_seconds"]
        _sync(dev)
        t0 = time.perf_counter()
        with torch.no_grad():
            domain.generator.synthesis_from_styles(lm.edit(w, *prompts[0]))
        _sync(dev)
        out["lm_edits_per_second"] = n / (time.perf_counter() - t0)
    gd = StyleCLIPGlobal(domain, work_dir)
    gd.fs3 = torch.nn.functional.normalize(
        torch.randn(domain.generator.slayout.total_non_torgb, domain.text_embedding("x").shape[0]), dim=1
    ).to(dev)
    gd.std = torch.ones(gd.fs3.shape[0], device=dev)
    _sync(dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        domain.generator.synthesis_from_styles(gd.edit(w, *prompts[0]))
    _sync(dev)
    out["gd_edits_per_second"] = n / (time.perf_counter() - t0)
    op = StyleCLIPOptimization(domain, work_dir, config=OPConfig(steps=op_steps, batch=n))
    _sync(dev)
    t0 = time.perf_counter()
    op.edit(w, *prompts[0])
    _sync(dev)
    sec = (time.perf_counter() - t0) / n
    out["op_steps"] = op_steps
    out["op_seconds_per_image"] = sec
    out["op_seconds_per_image_300_steps"] = sec * 300 / op_steps
    out["op_edits_per_second"] = 1 / sec
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", help="a built world (e.g. synthfaces, synthfaces-micro)")
    p.add_argument("--root", help="directory of built worlds (default: the user cache)")
    p.add_argument("--arch", help="random-weight architecture: synthfaces-64 or ffhq-1024")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fs3-images", type=int, default=FS3Config.n_images)
    p.add_argument("--fs3-channels", type=int, default=None, help="time this many channels and extrapolate")
    p.add_argument("--max-batch", type=int, default=FS3Config.max_batch)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--edit-images", type=int, default=8)
    p.add_argument("--op-steps", type=int, default=20, help="OP steps timed (scaled to 300 in the report)")
    p.add_argument("--lm-steps", type=int, default=20)
    p.add_argument("--no-lm", action="store_true")
    p.add_argument("--skip-fs3", action="store_true")
    p.add_argument("--work-dir", default=None, help="method cache for the timing (default: a fresh temp dir)")
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if bool(a.world) == bool(a.arch):
        p.error("give exactly one of --world or --arch")
    if a.world:
        from deltabench.domain import SynthfacesDomain
        from deltabench.world.world import load_world

        roots = [Path(a.root)] if a.root else None
        domain = SynthfacesDomain(load_world(a.world, device=a.device, roots=roots))
    else:
        domain = RandomDomain(a.arch, a.device)
    sl = domain.generator.slayout
    res = {
        "source": a.world or a.arch,
        "device": str(domain.device),
        "threads": a.threads,
        "resolution": domain.resolution,
        "n_latent": domain.generator.n_latent,
        # the channels fs3 and GD edit: non-toRGB, plus toRGB where the domain says (synthfaces)
        "s_channels": sspace.edit_width(sl, FS3Config().resolve(domain).torgb),
    }
    if a.device.startswith("cuda"):
        res["gpu"] = torch.cuda.get_device_name()
    if not a.skip_fs3:
        res["fs3"] = bench_fs3(domain, a.fs3_images, a.fs3_channels, a.max_batch, a.precision)
        print(json.dumps(res["fs3"]), flush=True)
    import tempfile

    res["edits"] = bench_edits(
        domain,
        Path(a.work_dir or tempfile.mkdtemp(prefix="bench-styleclip-")),
        a.edit_images,
        a.op_steps,
        a.lm_steps,
        not a.no_lm,
    )
    print(json.dumps(res, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
