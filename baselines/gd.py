"""StyleCLIP global directions (GD) as a benchmark method, with a fast fs3 precompute.

fs3 (official ``global_directions/SingleChannel.py`` + ``GetFs`` in ``MapTS.py``): for every
non-toRGB S channel c (and the toRGB ones too where ``FS3Config.torgb``, see there), move c to -5σ_c and +5σ_c on N sampled images, embed both images with
CLIP, and take ``fs3_c = norm(mean_n norm(norm(E(x+)) - norm(E(x-))))`` (unit per channel).

The official precompute renders one channel at a time at 1024px (4-24 GPU hours). Here it is
batched: the activations below layer l are computed once per image, and many channels of layer
l branch from them in one forward pass (batch = channels x 2 x images); fp16 autocast on CUDA.
Under ``torchrun`` those channel chunks are dealt round-robin to the ranks and gathered; each
chunk is the same forward pass as in one process, so the gathered fs3 is bitwise the
single-process one.

Edit (official ``MapTS.GetDt`` / ``GetBoundary`` / ``manipulate.py``): Δt = norm(t_target -
t_neutral) over templates, r = fs3·Δt, r[|r| < β] = 0, r /= max|r|, Δs = r·σ, s' = s + α·Δs.
Defaults α = 4.1 and β = 0.15 from the official ``StyleCLIP_global.ipynb`` sliders.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from baselines.common import as_dict, check_latents, check_prompts, config_from_dict, normalize
from deltabench import confighash, integrity, sspace
from deltabench import distributed as dist
from deltabench.confighash import Schema, either, versioned
from deltabench.methods import EditMethod
from deltabench.utils import progress

# What an fs3 cache is keyed by (deltabench.confighash): torgb, the released file and the
# protocol came in that order (off, none, per-image before); max_batch never changes fs3.
FS3_SCHEMA = Schema(
    "styleclip-gd.fs3",
    first=("n_images", "sigma", "n_std", "seed", "precision"),
    added=[{"torgb": either(False, None)}, {"official_fs3": None}, {"protocol": "per-image"}],
    not_hashed=("max_batch",),
)


@versioned(FS3_SCHEMA)
@dataclass(frozen=True)
class FS3Config:
    """fs3 precompute settings. Official: ±5σ (``M.alpha=[-5, 5]``), 100 images, σ from 100k
    sampled codes. ``n_images`` defaults to 6, not 100: fs3 costs channels x 2 x n_images
    syntheses (the 928 non-toRGB channels x 200 = 185,600 at 64px: 40-80 min on 2 CPU cores,
    measured), and the world's budget is 2 minutes (6 images, toRGB channels included: 1,408
    channels in 118 s on 2 idle cores, the default run's cold fit). Give ``n_images=100`` for
    the official estimate (on a GPU)."""

    n_images: int = 6
    sigma: float = 5.0
    n_std: int = 10_000
    seed: int = 0
    max_batch: int = 512  # images per forward pass (channels x 2 x images)
    # "auto": fp16 autocast on CUDA, fp32 on CPU; "bf16" is ~1.5x faster on CPUs with AMX.
    precision: str = "auto"
    # Also perturb the toRGB channels (not in the official code, whose fs3 covers the 6048
    # non-toRGB channels of 9088 at 1024px). None: the domain decides (``domain.edit_torgb``,
    # as for DeltaEdit): True on synthfaces, whose distilled generator keeps hair, skin and
    # background colour in its toRGB styles, so the official channel set cannot make a colour
    # edit there (GD scored 0.00 on the red-hair, dark-skin and purple-background prompts).
    torgb: bool | None = None
    # A released fs3.npy (StyleCLIP global_directions/npy/ffhq/fs3.npy) used instead of computing
    # fs3 (see load_official_fs3); σ is still computed from n_std sampled codes (channel_std).
    official_fs3: str | None = None
    # How each channel is perturbed and measured. "per-image" (deltabench's, synthfaces'
    # default): ±5σ around each image's own value, σ over n_std codes of the domain's sampler
    # (torch std, ddof 1). "official" (the real domains' default): global_directions/
    # SingleChannel.py lines 78-82 set the channel to its pool mean (M.code_mean) first and then
    # add ±5σ (manipulate.py EditOneC lines 209-226); σ and the mean over n_std codes sampled with
    # truncation 0.7 (GetCode.py lines 79-95, 100,000 codes at line 195; GetCodeMS lines 170-179,
    # numpy std, ddof 0); the images are the first codes of that truncated pool (SingleChannel.py
    # lines 58-64) and reach CLIP as uint8 (manipulate.py convert_images_to_uint8, lines 72-84;
    # CLIP's own preprocess, SingleChannel.py GetImgF lines 12-25; the resize to the CLIP input is
    # the domain CLIP's, not PIL's bicubic).
    #
    # The script's quirk: ``M.dlatents = copy.copy(dlatents_o)`` (line 78) copies the list, not
    # the arrays, and ``dlatents_o`` holds numpy views, so the write ``M.dlatents[l][:, c] =
    # mean`` (line 79) stays: every channel visited stays at its mean for all later channels,
    # and the row of channel c is measured on images whose earlier-visited channels all sit at
    # their means. "official" does NOT carry that over: each channel is set to its mean on the
    # untouched images, as the loop evidently intends. Reproducing it would make every row
    # depend on the loop order, and the released fs3.npy cannot be matched by it anyway: it has
    # 6,048 rows, which the published loop (layers <= 16 only, line 71) does not make
    # (load_official_fs3).
    protocol: str = "per-image"

    def __post_init__(self):
        if self.protocol not in ("per-image", "official"):
            raise ValueError(f"FS3Config.protocol must be 'per-image' or 'official', got {self.protocol!r}")
        if self.official_fs3 is not None:
            if not isinstance(self.official_fs3, (str, Path)) or not str(self.official_fs3):
                raise ValueError(f"FS3Config.official_fs3 must be a path to an fs3.npy, got {self.official_fs3!r}")
            object.__setattr__(self, "official_fs3", str(self.official_fs3))
            if self.torgb:
                raise ValueError(
                    "FS3Config.official_fs3: the official fs3 covers the non-toRGB channels only; "
                    "torgb must be false (or unset)"
                )
        for k in ("n_images", "n_std", "max_batch"):
            if getattr(self, k) < 1:
                raise ValueError(f"FS3Config.{k} must be >= 1, got {getattr(self, k)}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"FS3Config.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")

    @staticmethod
    def from_dict(d: dict) -> FS3Config:
        return config_from_dict(FS3Config, d, "styleclip-gd fs3 config")

    def to_dict(self) -> dict:
        return confighash.to_dict(self)

    def resolve(self, domain) -> FS3Config:
        """``torgb=None`` replaced by the domain's choice (the resolved value is what is cached)."""
        if self.torgb is not None:
            return self
        torgb = False if self.official_fs3 else bool(domain.edit_torgb)
        return FS3Config.from_dict({**as_dict(self), "torgb": torgb})

    def autocast(self, device: torch.device):
        """The autocast context for this precision on ``device``."""
        p = self.precision
        if p == "auto":
            p = "fp16" if device.type == "cuda" else "fp32"
        if p == "fp32":
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=torch.bfloat16 if p == "bf16" else torch.float16)


# -- synthesis in steps: one S layer at a time -------------------------------------------------
def _apply_layer(G, l: int, state: tuple, s: torch.Tensor, noise: list) -> tuple:
    """Run S layer ``l`` (layout order) on ``state = (x, skip)``; returns the new state.

    Mirrors ``StyleGAN2.synthesis_from_styles``: conv1, to_rgb1, then per resolution
    convs[2i], convs[2i+1], to_rgbs[i].
    """
    x, skip = state
    if l == 0:
        return G.conv1(G.input(s.shape[0]), s, noise[0]), None
    if l == 1:
        return x, G.to_rgb1(x, s)
    i, r = divmod(l - 2, 3)
    if r == 2:
        return x, G.to_rgbs[i](x, s, skip)
    return G.convs[2 * i + r](x, s, noise[2 * i + r + 1]), skip


def synthesize_from(G, l0: int, state: tuple, styles: list, noise: list) -> torch.Tensor:
    """Finish synthesis from layer ``l0`` given the state before it."""
    for l in range(l0, len(G.slayout)):
        state = _apply_layer(G, l, state, styles[l], noise)
    return state[1]


def _noise(G) -> list:
    return [getattr(G.noises, f"noise_{i}") for i in range(G.num_layers)]


def _torgb_module(G, l: int):
    return G.to_rgb1 if l == 1 else G.to_rgbs[(l - 2) // 3]


def _torgb_images(
    G, l: int, x: torch.Tensor, s_l: torch.Tensor, base_style: torch.Tensor, base_img: torch.Tensor
) -> torch.Tensor:
    """Final images when only toRGB layer ``l``'s style changes, without re-running the convs.

    ``x [N, C, r, r]`` is that layer's input (unchanged by its style), ``s_l [M*N, C]`` the
    perturbed styles (copy-major over the N images), ``base_img [N, 3, H, W]`` the unperturbed
    result. The skip path is linear: every later ToRGB adds ``upsample(skip)`` to its own
    output, so the change at layer l reaches the image as that change upsampled by each later
    ToRGB's ``upsample``: image = base + U(conv(x, s') - conv(x, s)) (the bias cancels).
    """
    m = _torgb_module(G, l)
    k = s_l.shape[0] // x.shape[0]
    d = m.conv(_rep(x, k), s_l) - _rep(m.conv(x, base_style), k)
    for l2 in range(l + 1, len(G.slayout)):
        if G.slayout.is_torgb[l2]:
            d = _torgb_module(G, l2).upsample(d)
    return _rep(base_img, k) + d


def _rep(t: torch.Tensor | None, k: int) -> torch.Tensor | None:
    """``[N, ...] -> [k*N, ...]`` (k copies, copy-major)."""
    return None if t is None else t.repeat(k, *([1] * (t.ndim - 1)))


OFFICIAL_TRUNCATION = 0.7  # global_directions/GetCode.py line 79 (truncation_psi)


@torch.no_grad()
def sample_codes(domain, cfg: FS3Config, n: int, seed: int) -> torch.Tensor:
    """W+ codes ``[n, L, D]`` for fs3: the domain's sampler, and with ``protocol="official"``
    truncated by 0.7 towards the generator's average w (``GetCode.py`` lines 82-95:
    ``lerp(dlatent_avg, w, 0.7)``; rosinality's ``latent_avg`` on the real domains, else the
    mean of the drawn codes)."""
    w = domain.sample_w_plus(n, seed)
    if cfg.protocol != "official":
        return w
    avg = domain.latent_avg
    avg = w.mean((0, 1)) if avg is None else avg.reshape(-1).to(w)
    return avg + OFFICIAL_TRUNCATION * (w - avg)


@torch.no_grad()
def channel_stats(domain, cfg: FS3Config) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(mean, σ) of every edited S channel over ``n_std`` sampled codes: ``[S_edit]`` each
    (official ``code_mean``, ``code_std``). ``protocol="per-image"``: mean None and torch's std
    (ddof 1), as before; ``"official"``: the truncated codes, numpy's ddof 0, summed in float64."""
    G, cfg = domain.generator, cfg.resolve(domain)
    if cfg.protocol != "official":
        w = domain.sample_w_plus(cfg.n_std, cfg.seed + 1)
        s = torch.cat([sspace.gather(G.styles(w[i : i + 1024]), G.slayout, cfg.torgb) for i in range(0, len(w), 1024)])
        return None, s.std(0)
    s1 = s2 = None
    for i in range(0, cfg.n_std, 1024):  # streamed: 100k x 6048 codes would be 2.4 GB at once
        w = sample_codes(domain, cfg, min(1024, cfg.n_std - i), cfg.seed + 1 + i)
        s = sspace.gather(G.styles(w), G.slayout, cfg.torgb).double()
        s1 = s.sum(0) if s1 is None else s1 + s.sum(0)
        s2 = s.square().sum(0) if s2 is None else s2 + s.square().sum(0)
    mean = s1 / cfg.n_std
    return mean.float(), (s2 / cfg.n_std - mean.square()).clamp_min(0).sqrt().float()


def channel_std(domain, cfg: FS3Config) -> torch.Tensor:
    """σ of every edited S channel over ``n_std`` sampled codes: ``[S_edit]`` (official ``code_std``)."""
    return channel_stats(domain, cfg)[1]


def official_uint8(img: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as the official GD code hands them to CLIP: ``convert_images_to_uint8``
    (``x * 127.5 + 128``, clipped, cast: floor) and back to [-1, 1]."""
    return (img.float() * 127.5 + 128.0).clamp(0, 255).floor() / 127.5 - 1.0


@torch.no_grad()
def compute_fs3(
    domain, cfg: FS3Config, std: torch.Tensor | None = None, log=None, channels=None, mean: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The relevance matrix ``fs3: [S_edit, D]`` (unit rows, ``sspace.gather`` order), the
    channel σ ``[S_edit]`` and timing. ``cfg.torgb=None`` is the domain's choice.

    ``channels``: only these ``sspace.gather`` indices (rows in ascending index order; σ is
    still all of ``[S_edit]``), for timing a slice (``benchmarks/bench_official.py``)."""
    cfg = cfg.resolve(domain)
    G, clip = domain.generator, domain.clip
    sl = G.slayout
    dev = domain.device
    t0, c0_cpu = time.perf_counter(), time.process_time()
    official = cfg.protocol == "official"
    if std is None or (official and mean is None):
        m, s = channel_stats(domain, cfg)
        std = s if std is None else std
        mean = m if mean is None else mean
    std = std.to(dev)
    mean = mean.to(dev) if official else None
    w = sample_codes(domain, cfg, cfg.n_images, cfg.seed).to(dev)
    styles = G.styles(w)  # [s_l: [N, C_l]]
    noise = _noise(G)
    N = w.shape[0]
    amp = cfg.autocast(dev)
    edit_layers = sspace.edit_indices(sl, cfg.torgb)
    base_img = G.synthesis_from_styles(styles) if cfg.torgb else None
    offsets, o = {}, 0
    for l in edit_layers:
        offsets[l] = o
        o += sl.widths[l]
    sel = _select_channels(channels, o)
    # the layer's channels to compute (local indices): all of them, or the selected ones
    local = {
        l: range(sl.widths[l]) if sel is None else [c - offsets[l] for c in sel if 0 <= c - offsets[l] < sl.widths[l]]
        for l in edit_layers
    }
    rows: dict[tuple[int, int], torch.Tensor] = {}  # (layer, chunk start in local[l]) -> [k, D]
    k_max = max(1, cfg.max_batch // (2 * N))
    n_chan = o if sel is None else len(sel)
    # Chunks of k_max channels per layer, dealt round-robin over the ranks (all to one process).
    chunks = [(l, c0) for l in edit_layers for c0 in range(0, len(local[l]), k_max)]
    last = max(l for l, _ in chunks)
    mine = set(dist.shard(chunks))
    bar = progress(total=sum(len(local[l][c0 : c0 + k_max]) for l, c0 in mine), desc="fs3 channels")
    state = (None, None)
    with amp:
        for l in range(len(sl)):
            if l in offsets:
                C = sl.widths[l]
                sig = cfg.sigma * std[offsets[l] : offsets[l] + C]  # [C]
                for c0 in range(0, len(local[l]), k_max):
                    if (l, c0) not in mine:
                        continue
                    ch = torch.as_tensor(local[l][c0 : c0 + k_max], device=dev)
                    k = len(ch)
                    # s_l for every (channel j, sign, image n): [k, 2, N, C]
                    s_l = styles[l][None, None].repeat(k, 2, 1, 1)
                    delta = torch.stack([-sig[ch], sig[ch]], 1)  # [k, 2]
                    if official:  # SingleChannel.py line 79: the channel at its mean, then ±5σ
                        mu = mean[offsets[l] : offsets[l] + C][ch]  # [k]
                        s_l[torch.arange(k, device=dev), :, :, ch] = (mu[:, None] + delta)[:, :, None].to(s_l)
                    else:
                        s_l[torch.arange(k, device=dev), :, :, ch] += delta[:, :, None]
                    if sl.is_torgb[l]:
                        img = _torgb_images(G, l, state[0], s_l.reshape(2 * k * N, C), styles[l], base_img)
                    else:
                        rest = [_rep(s, 2 * k) for s in styles]
                        rest[l] = s_l.reshape(2 * k * N, C)
                        st = (_rep(state[0], 2 * k), _rep(state[1], 2 * k))
                        img = synthesize_from(G, l, st, rest, noise)  # [2kN, 3, H, W]
                    e = normalize(clip.encode_image(official_uint8(img) if official else img).float()).reshape(
                        k, 2, N, -1
                    )
                    d = normalize(e[:, 1] - e[:, 0])  # +5σ minus -5σ, [k, N, D]
                    rows[l, c0] = normalize(d.mean(1))
                    bar.update(k)
            if l == last:  # later layers feed no chunk
                break
            state = _apply_layer(G, l, state, styles[l], noise)
    bar.close()
    if dist.is_distributed():
        for other in dist.all_gather_object({c: r.float().cpu() for c, r in rows.items()}):
            rows.update({c: r.to(dev) for c, r in other.items()})
    fs3 = torch.cat([rows[c] for c in chunks])  # layout order
    secs = time.perf_counter() - t0
    # CPU seconds of all threads: on a shared machine, cpu_seconds / threads is the wall time
    # the same work takes on that many dedicated cores.
    info = {
        "seconds": secs,
        "cpu_seconds": time.process_time() - c0_cpu,
        "threads": torch.get_num_threads(),
        "ranks": dist.world_size(),
        "channels": n_chan,
        "channels_per_second": n_chan / secs,
        "n_images": N,
        "device": str(dev),
    }
    if log:
        log(f"fs3: {n_chan} channels x {N} images in {secs:.1f} s ({n_chan / secs:.1f} channels/s)")
    return fs3.float(), std.float(), info


def _select_channels(channels, n: int) -> list[int] | None:
    """``channels`` (gather indices) sorted, deduplicated and range-checked; None: all."""
    if channels is None:
        return None
    sel = sorted({int(c) for c in channels})
    if not sel or sel[0] < 0 or sel[-1] >= n:
        raise ValueError(
            f"fs3 channels must be a non-empty set of S indices in [0, {n}), got "
            f"{len(sel)} from {sel[:1]} to {sel[-1:]}"
        )
    return sel


@torch.no_grad()
def compute_fs3_naive(
    domain, cfg: FS3Config, std: torch.Tensor, channels=None, mean: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference: one channel at a time, full synthesis (the official loop). For tests and
    ``benchmarks/bench_official.py``; ``channels`` as in ``compute_fs3``."""
    G, clip, cfg = domain.generator, domain.clip, cfg.resolve(domain)
    sl = G.slayout
    official = cfg.protocol == "official"
    if official and mean is None:
        mean = channel_stats(domain, cfg)[0]
    w = sample_codes(domain, cfg, cfg.n_images, cfg.seed)
    styles = G.styles(w)
    s = sspace.gather(styles, sl, cfg.torgb)  # [N, S]
    rows = []
    sel = _select_channels(channels, s.shape[1])
    for c in range(s.shape[1]) if sel is None else sel:
        embs = []
        for sign in (-1.0, 1.0):
            s2 = s.clone()
            if official:
                s2[:, c] = mean[c] + sign * cfg.sigma * std[c]
            else:
                s2[:, c] += sign * cfg.sigma * std[c]
            img = G.synthesis_from_styles(sspace.scatter(styles, s2, sl, cfg.torgb))
            embs.append(normalize(clip.encode_image(official_uint8(img) if official else img)))
        rows.append(normalize(normalize(embs[1] - embs[0]).mean(0)))
    return torch.stack(rows)


def slayout_dict(sl) -> dict:
    return {
        "names": list(sl.names),
        "widths": list(sl.widths),
        "is_torgb": list(sl.is_torgb),
        "wplus_index": list(sl.wplus_index),
        "resolution": list(sl.resolution),
    }


def load_fs3(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Read ``fs3.safetensors`` (or the directory holding it) -> ``(fs3 [S_edit, D], std [S_edit], meta)``.

    ``meta['slayout']`` is the S layout it was computed for; ``fs3`` is what
    ``deltaedit.method.DeltaEdit(relevance=...)`` takes.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "fs3.safetensors"
    meta_f = p.with_suffix(".json")
    if not p.is_file() or not meta_f.is_file():
        raise FileNotFoundError(f"no fs3 at {p} (with {meta_f.name}); compute it with `deltabench fit styleclip-gd`")
    hint = "`deltabench fit styleclip-gd --force` (with the run's --world and fs3 settings)"
    t = integrity.load_tensors(p, hint)
    if set(t) != {"fs3", "std"}:
        raise integrity.CacheIntegrityError(
            f"{p} holds {sorted(t)}, expected the tensors fs3 and std; {integrity.fix_hint(p, hint)}"
        )
    meta = integrity.read_json(meta_f, "the fs3 record", hint)
    confighash.check_record(meta, str(meta_f))
    return t["fs3"], t["std"], confighash.unstamped(meta)  # the versions live in the file only


def fit_fs3(
    domain, work_dir: Path, cfg: FS3Config, force: bool = False, log=None
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Load ``<work_dir>/fs3.safetensors`` if it was made with ``cfg`` for this layout, else compute and save it."""
    work_dir, cfg = Path(work_dir), cfg.resolve(domain)
    if cfg.official_fs3:  # the released file instead of computing (nothing is cached)
        return _fit_official_fs3(domain, cfg, log)
    f, meta_f = work_dir / "fs3.safetensors", work_dir / "fs3.json"
    want = {"config": cfg.to_dict(), "slayout": slayout_dict(domain.generator.slayout)}
    if not force and f.is_file() and meta_f.is_file():
        fs3, std, meta = load_fs3(f)
        if {k: meta.get(k) for k in want} == want:
            return fs3.to(domain.device), std.to(domain.device), {**meta, "cached": True}
        if log:
            log(f"{f} was computed with other settings ({meta.get('config')}); recomputing")
    fs3, std, info = compute_fs3(domain, cfg, log=log)  # split over the ranks under torchrun
    meta = {**want, **info, "clip_dim": int(fs3.shape[1])}

    def save() -> None:
        integrity.save_tensors({"fs3": fs3, "std": std}, f)
        integrity.atomic_write_text(meta_f, json.dumps(confighash.stamp(meta, FS3_SCHEMA.name), indent=1))

    dist.on_rank0(save)
    return fs3, std, {**meta, "cached": False}


def gd_delta_s(
    fs3: torch.Tensor, std: torch.Tensor, dt: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``GetBoundary`` (if_std=True): ``dt: [P, D]`` unit -> ``(Δs [P, S_edit], n_channels [P])``.

    Channels with |fs3·Δt| < β are zeroed; the rest are divided by the largest |r| and scaled
    by their σ. A prompt with no channel above β gets Δs = 0 (official code divides by zero).
    """
    r = dt @ fs3.to(dt).T  # [P, S]
    keep = r.abs() >= beta
    r = r * keep
    peak = r.abs().amax(1, keepdim=True)
    r = torch.where(peak > 0, r / peak.clamp_min(1e-12), torch.zeros_like(r))
    return r * std.to(r)[None], keep.sum(1)


class StyleCLIPGlobal(EditMethod):
    """StyleCLIP-GD. ``strength`` is α (default 4.1, official notebook); ``beta`` the
    disentanglement threshold (default 0.15). ``fs3`` config via ``config=FS3Config(...)``."""

    name = "styleclip-gd"
    space = "S"
    config_class = FS3Config
    distributed_fit = True  # under torchrun, fit() splits the fs3 channels over every rank
    strength_name = "alpha"
    default_strength = 4.1

    def __init__(
        self,
        domain,
        work_dir,
        seed: int = 0,
        config: FS3Config | dict | None = None,
        beta: float = 0.15,
        alpha: float | None = None,
        **options,
    ):
        super().__init__(domain, work_dir, seed, **options)
        cfg = config if isinstance(config, FS3Config) else FS3Config.from_dict(dict(config or {}))
        self.cfg = cfg.resolve(domain)
        self.beta = float(beta)
        if alpha is not None:
            self.default_strength = float(alpha)
        self.fs3: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self.last_n_channels: torch.Tensor | None = None

    @property
    def fs3_path(self) -> Path:
        return self.work_dir / "fs3.safetensors"

    def fit(self, force: bool = False) -> dict:
        self.fs3, self.std, info = fit_fs3(self.domain, self.work_dir, self.cfg, force=force)
        # What computing fs3 cost, also when it was loaded from the cache (reports show fit cost).
        return {**info, "fit_seconds": float(info.get("seconds", 0.0))}

    def refit(self) -> dict:
        return self.fit(force=True)

    def direction(self, prompts: list[tuple[str, str]]) -> torch.Tensor:
        """Δs for each prompt: ``[P, S_edit]`` (before α)."""
        if self.fs3 is None:
            raise RuntimeError(f"{self.name}: call fit() before edit()")
        dts = []
        for s, t in prompts:
            s, t = check_prompts(s, t)
            dt = self.domain.text_embedding(t) - self.domain.text_embedding(s)  # official GetDt: target - neutral
            dts.append(dt / dt.norm().clamp_min(1e-8))
        ds, n = gd_delta_s(self.fs3, self.std, torch.stack(dts), self.beta)
        self.last_n_channels = n
        return ds

    @torch.no_grad()
    def edit_batch(
        self, w_plus: torch.Tensor, prompts: list[tuple[str, str]], strength: float | None = None
    ) -> list[list[torch.Tensor]]:
        alpha = self.default_strength if strength is None else float(strength)
        G = self.domain.generator
        styles = G.styles(check_latents(self.domain, w_plus))
        s = sspace.gather(styles, G.slayout, self.cfg.torgb)  # [B, S]
        ds = self.direction(prompts).to(s)  # [P, S]
        return [sspace.scatter(styles, s + alpha * ds[p][None], G.slayout, self.cfg.torgb) for p in range(len(prompts))]

    def edit(self, w_plus, source, target, strength=None):
        return self.edit_batch(w_plus, [(source, target)], strength)[0]


# -- the released fs3.npy ---------------------------------------------------------------------
def load_official_fs3(path: str | Path, slayout, pad: bool = False) -> torch.Tensor:
    """The released StyleCLIP relevance matrix ``fs3.npy`` as a float tensor ``[rows, D]``.

    Rows are in the file's order, which is ``sspace.gather`` order (non-toRGB layers in
    synthesis order, channels within a layer): ``global_directions/SingleChannel.py`` lines
    73-84 loop over the non-toRGB layer indices ``M.mindexs`` (ToRGB names skipped,
    ``manipulate.py`` ``LoadData`` lines 47-54; ``[0, 2, 3, 5, ...]`` in ``global_torch/
    manipulate.py`` line 213) and their channels, one row each, and ``MapTS.SplitS`` (lines
    60-91) reads the rows back in that order. ``D`` is the CLIP width (512 for ViT-B/32).

    The real shape of ``global_directions/npy/ffhq/fs3.npy``: **[6048, 512]**, all 6,048
    non-toRGB channels of the 1024 px generator, although the published ``SingleChannel.py``
    would make only 5,376 rows (line 71 keeps the layers with ``mindexs <= 16``, "below or equal
    to 128 resolution": 10 x 512 + 256). Evidence:

    - DeltaEdit ships the same file: its ``models/stylegan2/npy_ffhq/fs3.npy`` is git blob
      ``ef9dc0a49a4e2ffe1c81b8632baab6e3a4466726``, the blob of StyleCLIP's
      ``global_directions/npy/ffhq/fs3.npy`` (and ``global_torch/npy/ffhq/fs3.npy``): byte-identical.
    - DeltaEdit ``scripts/inference.py`` lines 26-36, 82 and 103 index the mapper's
      ``Δs [6048]`` (``delta_mapper.py``: 3*512 + 4*512 + 2464) with the boolean mask
      ``|fs3 · Δt| < threshold``; torch refuses a mask of another length, so the released
      DeltaEdit inference only runs with 6048 rows.
    - StyleCLIP's own reader tolerates fewer rows (``MapTS.SplitS`` line 75 gives layers past
      the end Δs = 0), so its code does not pin the length; the README (lines 188-189) says the
      ffhq file was precomputed, not that it came from the published ``<= 16`` loop.

    The file's bytes are not in this repository's reach (no copy here), so its dtype is not
    known; any float dtype is accepted and returned as float32. ``S_mean_std`` next to it is a
    Python pickle (``GetCode.py`` lines 219-227) and is not read: σ comes from
    :func:`channel_std` on the domain's generator (the same statistic, ``GetCodeMS``).

    Checked against ``slayout``: the file must have ``slayout.total_non_torgb`` rows, or a
    whole-layer prefix of them (e.g. 5,376 = layers up to 128 px at 1024 px, as the published
    script makes); ``pad=True`` appends zero rows for the missing layers, which is what
    ``SplitS`` does with them. Rows must be finite unit vectors (``GetFs`` normalises them).
    Loaded with ``np.load(allow_pickle=False)``; anything else raises :class:`CheckpointError`.
    """
    import numpy as np

    from deltabench.checkpoints import CheckpointError

    path = Path(path)
    what = "StyleCLIP's fs3.npy (global_directions/npy/ffhq/fs3.npy)"
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (expected {what})")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:  # an object array (pickle) or a damaged header
        raise CheckpointError(f"{path}: not {what}: np.load(allow_pickle=False) refused it ({e})") from e
    except (OSError, EOFError) as e:
        raise CheckpointError(f"{path}: cannot read {what} ({e})") from e
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise CheckpointError(f"{path}: not {what}: an .npz archive of {sorted(arr.files)}, expected one array")
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating):
        raise CheckpointError(
            f"{path}: not {what}: expected a float matrix [channels, clip_dim], "
            f"found {arr.dtype} of shape {list(arr.shape)}"
        )
    widths = [slayout.widths[i] for i in slayout.non_torgb_indices]
    prefix = [int(x) for x in np.cumsum(widths)]
    full, rows = prefix[-1], int(arr.shape[0])
    res = max(slayout.resolution)
    if rows not in prefix:
        hint = (
            f" (a file with toRGB channels too: {slayout.total} rows is not the official format)"
            if rows == slayout.total
            else ""
        )
        raise CheckpointError(
            f"{path}: fs3 for another S layout: expected {full} rows (the non-toRGB channels of the "
            f"{res} px generator) or a whole-layer prefix of them ({', '.join(map(str, prefix[-4:-1]))}, ...); "
            f"found {rows} rows of width {arr.shape[1]}{hint}"
        )
    fs3 = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    bad = (~torch.isfinite(fs3)).any(1).nonzero().flatten().tolist()
    if bad:
        raise CheckpointError(f"{path}: fs3 has non-finite values in {len(bad)} rows (the first is row {bad[0]})")
    norms = fs3.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-2):
        raise CheckpointError(
            f"{path}: not {what}: its rows should be unit vectors (GetFs normalises them), "
            f"found norms from {norms.min().item():.3g} to {norms.max().item():.3g}"
        )
    if pad and rows < full:
        fs3 = torch.cat([fs3, fs3.new_zeros(full - rows, fs3.shape[1])])
    return fs3


def _fit_official_fs3(domain, cfg: FS3Config, log=None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """``fit_fs3`` with ``cfg.official_fs3``: the released matrix (zero rows for layers it lacks)
    and σ of the domain's generator (``channel_std``, ``cfg.n_std`` codes)."""
    from deltabench.weights import sha256_file

    t0 = time.perf_counter()
    G = domain.generator
    fs3 = load_official_fs3(cfg.official_fs3, G.slayout)
    rows = int(fs3.shape[0])  # as in the file; the layers it lacks get zero rows (MapTS.SplitS)
    fs3 = torch.cat([fs3, fs3.new_zeros(G.slayout.total_non_torgb - rows, fs3.shape[1])])
    std = channel_std(domain, cfg)  # protocol "official": GetCodeMS's σ (truncated codes, ddof 0)
    secs = time.perf_counter() - t0
    if log:
        log(f"fs3: the released {cfg.official_fs3} ({rows} of {fs3.shape[0]} channels) in {secs:.1f} s")
    info = {
        "config": cfg.to_dict(),
        "slayout": slayout_dict(G.slayout),
        "official_fs3": cfg.official_fs3,
        "sha256": sha256_file(Path(cfg.official_fs3)),
        "channels": int(fs3.shape[0]),
        "rows_in_file": rows,
        "seconds": secs,
        "clip_dim": int(fs3.shape[1]),
        "cached": False,
    }
    return fs3.to(domain.device), std.to(domain.device), info
