"""The t-SNE picture of the paper's Figure 2: raw embeddings beside delta embeddings."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deltabench.gap.metrics import unit_rows

# The paper's colours: red/green for raw image/text, orange/brown for image/text deltas.
RAW_COLORS = ("#d62728", "#2ca02c")
DELTA_COLORS = ("#ff7f0e", "#8c564b")


def tsne_2d(x: np.ndarray, y: np.ndarray, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000,
            ) -> tuple[np.ndarray, np.ndarray]:
    """One joint t-SNE of both modalities: ``([N, 2], [N, 2])``.

    Euclidean distance on L2-normalised rows: ``|u - v|^2 = 2 - 2 cos``, the same neighbour
    order as cosine, and scikit-learn runs it several times faster than ``metric='cosine'``.
    """
    from sklearn.manifold import TSNE

    z = np.concatenate([unit_rows(x), unit_rows(y)]).astype(np.float32)  # [2N, D]
    perplexity = min(perplexity, (len(z) - 1) / 3)  # scikit-learn requires perplexity < n
    e = TSNE(n_components=2, metric="euclidean", init="pca", perplexity=perplexity, max_iter=max_iter,
             random_state=seed).fit_transform(z)
    return e[: len(x)], e[len(x):]


def save_tsne_figure(raw: tuple[np.ndarray, np.ndarray], delta: tuple[np.ndarray, np.ndarray], out_dir: Path,
                     title: str = "", stem: str = "tsne") -> list[Path]:
    """Two panels side by side, written as ``<stem>.png`` and ``<stem>.pdf`` in ``out_dir``."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    fig = Figure(figsize=(10, 5), constrained_layout=True)
    axes = fig.subplots(1, 2)
    panels = (
        (raw, RAW_COLORS, ("image", "text"), "(a) CLIP image and text embeddings"),
        (delta, DELTA_COLORS, ("image delta", "text delta"), "(b) CLIP delta embeddings"),
    )
    for ax, ((e_img, e_txt), colors, labels, name) in zip(axes, panels):
        ax.scatter(e_img[:, 0], e_img[:, 1], s=3, c=colors[0], alpha=0.6, linewidths=0, label=labels[0])
        ax.scatter(e_txt[:, 0], e_txt[:, 1], s=3, c=colors[1], alpha=0.6, linewidths=0, label=labels[1])
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(markerscale=4, loc="best", frameon=True)
    if title:
        fig.suptitle(title)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1])
    return paths
