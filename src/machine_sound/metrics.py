"""The metric set, computed by torchmetrics on the abnormal-class probability (abnormal = positive class)."""

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


def with_balanced_accuracy(values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add balanced accuracy, the mean of the per-class recalls (recall of abnormal, specificity of normal)."""
    return {**values, "balanced_accuracy": (values["recall"] + values["specificity"]) / 2}
