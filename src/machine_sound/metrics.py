"""The metric sets, computed by torchmetrics: binary on the positive-class probability (abnormal in MIMII),
multi-class (data=folder with more than two classes) on the class probabilities with macro averages."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def binary_metrics(threshold: float = 0.5) -> MetricCollection:
    """Accuracy, precision, recall, specificity, F1 at `threshold`; AUROC and pAUC over all thresholds.

    pAUC is DCASE's: the standardised (McClish) partial AUROC up to a false-positive rate of 0.1, the same as
    sklearn's `roc_auc_score(y, s, max_fpr=0.1)`.
    """
    return MetricCollection({
        "accuracy": BinaryAccuracy(threshold=threshold),
        "precision": BinaryPrecision(threshold=threshold),
        "recall": BinaryRecall(threshold=threshold),
        "specificity": BinarySpecificity(threshold=threshold),
        "f1": BinaryF1Score(threshold=threshold),
        "auroc": BinaryAUROC(),
        "pauc": BinaryAUROC(max_fpr=0.1),
    })


def multiclass_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, and precision, recall, F1 and one-vs-rest AUROC averaged over classes (macro), so a rare class
    counts as much as a common one; balanced accuracy is the macro recall."""
    return MetricCollection({
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "balanced_accuracy": MulticlassRecall(num_classes, average="macro"),
        "precision": MulticlassPrecision(num_classes, average="macro"),
        "recall": MulticlassRecall(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
        "auroc": MulticlassAUROC(num_classes, average="macro"),
    })


def classification_metrics(num_classes: int, threshold: float = 0.5) -> MetricCollection:
    return binary_metrics(threshold) if num_classes == 2 else multiclass_metrics(num_classes)


def with_balanced_accuracy(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add balanced accuracy, the mean of the per-class recalls (recall of abnormal, specificity of normal), to
    binary values; multi-class values already hold it."""
    if "balanced_accuracy" in values:
        return values
    return {**values, "balanced_accuracy": (values["recall"] + values["specificity"]) / 2}


THRESHOLD_CRITERIA = ("balanced_accuracy", "f1", "fpr")


def set_threshold(metrics: MetricCollection, threshold: float) -> None:
    """Move the decision threshold of every thresholded metric in the collection (AUROC and pAUC have none)."""
    for metric in metrics.values():
        if hasattr(metric, "threshold"):
            metric.threshold = float(threshold)


def best_threshold(scores: torch.Tensor, labels: torch.Tensor, criterion: str = "balanced_accuracy",
                   target_fpr: float = 0.05) -> float | None:
    """The decision threshold that maximises balanced accuracy or F1 on these clips (abnormal when score >
    threshold, as torchmetrics decides), or, with `fpr`, catches the most abnormal clips while calling at most
    `target_fpr` of the normal ones abnormal (a false-alarm budget). Of equally good thresholds the middle one is
    taken, for the widest margin. None when the clips hold one class only."""
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"threshold criterion must be one of {THRESHOLD_CRITERIA}, not '{criterion}'")
    labels = labels.bool()
    if labels.all() or not labels.any():
        return None
    values = torch.unique(scores.float())  # sorted
    # Below every score (all abnormal), between neighbours, and at the top (all normal).
    candidates = torch.cat([values[:1] - 1e-6, (values[1:] + values[:-1]) / 2, values[-1:]]).clamp(0.0, 1.0)
    predicted = scores.float()[None, :] > candidates[:, None]
    tp = (predicted & labels).sum(1).float()
    fp = (predicted & ~labels).sum(1).float()
    fn = (~predicted & labels).sum(1).float()
    tn = (~predicted & ~labels).sum(1).float()
    if criterion == "balanced_accuracy":
        value = (tp / (tp + fn) + tn / (tn + fp)) / 2
    elif criterion == "f1":
        value = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    else:  # recall, where the false-positive rate is within the budget
        value = torch.where(fp / (fp + tn) <= target_fpr, tp / (tp + fn), torch.tensor(-1.0))
    best = torch.nonzero(value == value.max()).flatten()
    return float(candidates[best[len(best) // 2]])
