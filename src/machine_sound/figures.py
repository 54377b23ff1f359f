"""Matplotlib figures: the dashboards' log-mel images, ROC with the pAUC range, score histograms and confusion
matrix, and the sweep summary's heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def spectrogram_figure(specs: torch.Tensor, titles: list[str]):
    """Log-mel images (batch, channels, mels, frames), first channel, side by side."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(specs), figsize=(3.2 * len(specs), 2.6), squeeze=False)
    for ax, spec, title in zip(axes[0], specs, titles):
        ax.imshow(spec[0].detach().cpu().numpy(), origin="lower", aspect="auto", cmap="magma")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("frame")
        ax.set_ylabel("mel band")
    fig.tight_layout()
    return fig


def roc_figure(scores: torch.Tensor, labels: torch.Tensor):
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    plt = _pyplot()
    fpr, tpr, _ = binary_roc(scores, labels.long())
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.plot(fpr.numpy(), tpr.numpy(), label=f"AUROC {binary_auroc(scores, labels.long()):.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    ax.axvspan(0, 0.1, color="tab:orange", alpha=0.1, label="pAUC range (FPR <= 0.1)")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def histogram_figure(scores: torch.Tensor, labels: torch.Tensor, names):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for k, name in enumerate(names):
        ax.hist(scores[labels == k].numpy(), bins=20, range=(0, 1), alpha=0.6, label=name)
    ax.set_xlabel("score")
    ax.set_ylabel("clips")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def confusion_figure(confusion: torch.Tensor, names):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 1.8, 1.2 * len(names) + 1.2))
    ax.imshow(confusion.numpy(), cmap="Blues")
    for (i, j), count in np.ndenumerate(confusion.numpy()):
        dark = count > confusion.max().item() / 2  # white on the dark cells
        ax.text(j, i, str(count), ha="center", va="center", fontsize=9, color="white" if dark else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def heatmap(rows: list[dict], metric: str, header: str, cell: Callable[[dict, str], str], path: Path) -> None:
    """Machine x id grid of one metric from the sweep summary's rows (`header` names it, `cell` formats a value),
    one panel per snr/variant; failed or unfinished cells are grey."""
    plt = _pyplot()

    jobs = [r for r in rows if r["kind"] == "job"]
    panels = sorted({(r["snr"], r["variant"]) for r in jobs})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1, 4), squeeze=False)
    for ax, (snr, variant) in zip(axes[0], panels):
        members = [r for r in jobs if (r["snr"], r["variant"]) == (snr, variant)]
        machines, ids = sorted({r["machine"] for r in members}), sorted({r["id"] for r in members})
        grid = np.full((len(machines), len(ids)), np.nan)
        for r in members:
            if r[metric] is not None:
                grid[machines.index(r["machine"]), ids.index(r["id"])] = r[metric]
        ax.set_facecolor("0.85")
        image = ax.imshow(np.ma.masked_invalid(grid), vmin=0.5 if metric in ("auroc", "pauc") else 0.0, vmax=1.0,
                          cmap="viridis")
        for r in members:
            y, x = machines.index(r["machine"]), ids.index(r["id"])
            text = cell(r, metric).replace(" ± ", "\n±") if r[metric] is not None else r["status"]
            ax.text(x, y, text, ha="center", va="center", fontsize=8,
                    color="black" if r[metric] is None or r[metric] > 0.8 else "white")
        ax.set_xticks(range(len(ids)), ids)
        ax.set_yticks(range(len(machines)), machines)
        ax.set_title(f"{snr} {variant}".strip() + f": test {header}", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
