"""The report's figures: per-arm bars with intervals, per-class sensitivity, real vs synthetic images, and the
closest synthetic / real-training pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: (summary key, title) of the bars in ``arms.png``
FIGURE_METRICS = (("scarce_sens_at_spec", "scarce sens @ val-chosen spec"), ("auroc", "AUROC"),
                  ("scarce_pauroc", "scarce pAUROC"), ("scarce_ppv_at_spec", "scarce PPV @ val-chosen spec"),
                  ("balanced_accuracy", "balanced accuracy (argmax)"))


def write_figures(d: dict[str, Any], images: dict[str, Any], out: Path) -> list[Path]:
    """Every figure of the report (the ``report.json`` dict ``d``; ``images`` for the image grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from medgan.viz import save_figure

    arms = list(d["summary"])
    paths = []

    def save(fig, name):
        paths.append(save_figure(fig, out / name, dpi=110))

    fig, axes = plt.subplots(1, len(FIGURE_METRICS), figsize=(len(FIGURE_METRICS) * 3.2, 3.8), sharey=False)
    for ax, (k, lab) in zip(axes, FIGURE_METRICS, strict=True):
        m = [d["summary"][a][k]["mean"] for a in arms]
        err = np.array([[m_ - d["summary"][a][k]["lo"], d["summary"][a][k]["hi"] - m_] for a, m_ in zip(arms, m, strict=True)]).T
        ax.bar(range(len(arms)), m, yerr=err, capsize=3, color="#4c78a8")
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=45, ha="right", fontsize=7)
        ax.set_title(lab, fontsize=9)
        ax.set_ylim(0, 1.05)
        if k == d["primary"]["key"]:
            ax.set_title(f"{lab} (primary)", fontsize=9, fontweight="bold")
    fig.suptitle(f"{d['dataset']['name']}: mean and 95% CI over {len(d['protocol']['seeds'])} seeds", fontsize=9)
    fig.tight_layout()
    save(fig, "arms.png")

    classes = d["dataset"]["class_names"]
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(arms) * max(1, len(classes)) / 2), 3.6))
    w = 0.8 / len(classes)
    for j, c in enumerate(classes):
        m = [d["summary"][a]["per_class"][c]["sensitivity"]["mean"] for a in arms]
        lo = [d["summary"][a]["per_class"][c]["sensitivity"]["lo"] for a in arms]
        hi = [d["summary"][a]["per_class"][c]["sensitivity"]["hi"] for a in arms]
        err = np.array([np.subtract(m, lo), np.subtract(hi, m)])
        ax.bar(np.arange(len(arms)) + j * w - 0.4 + w / 2, m, w, yerr=err, capsize=2, label=c)
    ax.set_xticks(range(len(arms)))
    ax.set_xticklabels(arms, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("sensitivity (real test split)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"per-class sensitivity at the argmax operating point (each image assigned its most probable "
                 f"class, no threshold);\nmean and 95% CI over {len(d['protocol']['seeds'])} seeds", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, "per_class_sensitivity.png")

    from medgan.viz import save_grid

    if "real_vs_synthetic" in images:
        import torch

        rx, ry, sx, sy = images["real_vs_synthetic"]
        k = len(classes)
        names = [f"real {c}" for c in classes] + [f"synthetic {c}" for c in classes]
        x = torch.cat([rx, sx])
        y = torch.cat([ry, sy + k])
        paths.append(save_grid(out / "real_vs_synthetic.png", x, y, names, per_class=8, indexed=False,
                               title="real training images (top rows) vs synthetic images (bottom rows), per class"))
    if "nearest_pairs" in images and len(images["nearest_pairs"]["distance"]):
        paths.append(nearest_pairs_figure(images["nearest_pairs"], classes, out / "nearest_neighbours.png"))
    return paths


def nearest_pairs_figure(p: dict[str, Any], classes: list[str], path: Path, per_row: int = 8) -> Path:
    """``nearest_neighbours.png``: the closest synthetic / real-training pairs, closest first. Each block of two
    rows holds up to ``per_row`` pairs: a row of synthetic images labelled ``synthetic``, and under each its
    nearest real training image in a row labelled ``nearest real (training)``; every tile names its class, and
    every synthetic tile its pixel distance (``*``: flagged as a near-copy)."""
    import matplotlib.pyplot as plt

    from medgan.viz import image_tile, save_figure

    n = len(p["distance"])
    blocks = -(-n // per_row)
    cols = min(n, per_row)
    fig, axes = plt.subplots(2 * blocks, cols, figsize=(1.45 * cols + 1.2, 1.75 * 2 * blocks), squeeze=False)
    for i in range(2 * blocks * cols):
        ax = axes.flat[i]
        ax.set_xticks([])
        ax.set_yticks([])
        r, col = divmod(i, cols)
        j = (r // 2) * per_row + col
        if j >= n:
            ax.axis("off")
            continue
        real = r % 2 == 1
        img = p["real"][j] if real else p["synthetic"][j]
        label = p["real_label"][j] if real else p["synthetic_label"][j]
        ax.imshow(image_tile(img), interpolation="nearest")
        name = classes[label] if 0 <= label < len(classes) else str(label)
        dist = p["distance"][j]
        ax.set_title(name if real else f"{name}\nd {dist:.2f}{' *' if dist <= p['threshold'] else ''}", fontsize=7)
        if col == 0:
            ax.set_ylabel("nearest real\n(training)" if real else "synthetic", fontsize=8)
    fig.suptitle(f"closest synthetic / real-training pairs, closest first; d: pixel-space Euclidean distance on "
                 f"[-1, 1] images (* = flagged: d <= threshold {p['threshold']:.2f})", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
