"""The t-SNE picture of the paper's Figure 2: raw embeddings beside delta embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deltabench.gap.metrics import unit_rows

# Okabe-Ito colours, images warm and texts cool in both panels: each pair differs in hue and in
# lightness, so it stays apart for colour-blind readers and in greyscale (the paper's red/green and
# orange/brown pairs did not).
RAW_COLORS = ("#D55E00", "#0072B2")
DELTA_COLORS = ("#E69F00", "#009E73")


def tsne_2d(
    x: np.ndarray,
    y: np.ndarray,
    seed: int = 0,
    perplexity: float = 30.0,
    max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """One joint t-SNE of both modalities: ``([N, 2], [N, 2])``.

    Euclidean distance on L2-normalised rows: ``|u - v|^2 = 2 - 2 cos``, the same neighbour
    order as cosine, and scikit-learn runs it several times faster than ``metric='cosine'``.
    """
    from sklearn.manifold import TSNE

    z = np.concatenate([unit_rows(x), unit_rows(y)]).astype(np.float32)  # [2N, D]
    perplexity = min(perplexity, (len(z) - 1) / 3)  # scikit-learn requires perplexity < n
    e = TSNE(
        n_components=2, metric="euclidean", init="pca", perplexity=perplexity, max_iter=max_iter, random_state=seed
    ).fit_transform(z)
    return e[: len(x)], e[len(x) :]


def _metrics_text(m: dict, chance: dict) -> str:
    """The gap numbers of one panel's space, as the panel's caption."""

    def ch(k):
        return f" (chance {chance[k]:.3g})" if k in chance else ""

    lines = [
        f"paired cosine {m['paired_cosine']:.3f} (unpaired {m['unpaired_cosine']:.3f})"
        if "unpaired_cosine" in m
        else f"paired cosine {m['paired_cosine']:.3f}"
    ]
    if "recall_i2t@1" in m:
        lines.append(
            f"top-1 retrieval: image→text {m['recall_i2t@1']:.3f}, text→image "
            f"{m.get('recall_t2i@1', float('nan')):.3f}{ch('recall_i2t@1')}"
        )
    probe = []
    if "probe_mlp" in m:
        probe.append(f"MLP {m['probe_mlp']:.3f}")
    if "probe_linear" in m:
        probe.append(f"linear {m['probe_linear']:.3f}")
    if probe:
        lines.append("modality probe accuracy: " + ", ".join(probe) + (ch("probe_mlp") or ch("probe_linear")))
    best = max((m[k] for k in ("probe_mlp", "probe_linear") if k in m), default=None)
    if best is not None and best >= 0.9:
        lines.append("→ separable: a probe tells image from text apart,\n    whatever the t-SNE layout suggests")
    elif best is not None and best <= 0.6:
        lines.append("→ not separable: no probe tells image from text apart")
    return "\n".join(lines)


def save_tsne_figure(
    raw: tuple[np.ndarray, np.ndarray],
    delta: tuple[np.ndarray, np.ndarray],
    out_dir: Path,
    title: str = "",
    stem: str = "tsne",
    metrics: dict | None = None,
    chance: dict | None = None,
) -> list[Path]:
    """Two panels side by side, written as ``<stem>.png`` and ``<stem>.pdf`` in ``out_dir``.

    Images are circles, texts triangles. ``metrics`` (``{"raw": {...}, "delta": {...}}``, the
    per-space dicts of :func:`deltabench.gap.metrics.gap_metrics`) prints each panel's paired
    cosine, top-1 retrieval and modality-probe accuracy under it, with ``chance`` (the chance
    levels, same keys) beside them: t-SNE keeps neighbourhoods, not the gap, so two clouds that
    look mixed can still be told apart perfectly, and the numbers say so on the picture.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    metrics, chance = metrics or {}, chance or {}
    fig = Figure(figsize=(10, 5.9 if metrics else 5), constrained_layout=True)
    axes = fig.subplots(1, 2)
    panels = (
        ("raw", raw, RAW_COLORS, ("image", "text"), "(a) CLIP image and text embeddings"),
        ("delta", delta, DELTA_COLORS, ("image delta", "text delta"), "(b) CLIP delta embeddings"),
    )
    for ax, (space, (e_img, e_txt), colors, labels, name) in zip(axes, panels):
        ax.scatter(e_img[:, 0], e_img[:, 1], s=7, c=colors[0], marker="o", alpha=0.55, linewidths=0, label=labels[0])
        ax.scatter(e_txt[:, 0], e_txt[:, 1], s=9, c=colors[1], marker="^", alpha=0.55, linewidths=0, label=labels[1])
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=2.5, loc="best", frameon=True)
        if space in metrics:
            ax.set_xlabel(_metrics_text(metrics[space], chance), fontsize=9, loc="left", linespacing=1.4)
    if title:
        fig.suptitle(title)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
