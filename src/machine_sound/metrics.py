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
from torchmetrics.functional.classification import binary_auroc, binary_roc


def binary_metrics(threshold: float = 0.5) -> MetricCollection:
    """Accuracy, precision, recall, specificity, F1 at `threshold`; AUROC and pAUC over all thresholds.

    pAUC is DCASE's: the standardised (McClish) partial AUROC up to a false-positive rate of 0.1, the same as
    sklearn's `roc_auc_score(y, s, max_fpr=0.1)`.
    """
    return MetricCollection(compute_groups=False, metrics={
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
    return MetricCollection(compute_groups=False, metrics={
        "accuracy": MulticlassAccuracy(num_classes, average="micro"),
        "balanced_accuracy": MulticlassRecall(num_classes, average="macro"),
        "precision": MulticlassPrecision(num_classes, average="macro"),
        "recall": MulticlassRecall(num_classes, average="macro"),
        "f1": MulticlassF1Score(num_classes, average="macro"),
        "auroc": MulticlassAUROC(num_classes, average="macro"),
    })


def metric_set(kind: str, num_classes: int, threshold: float = 0.5) -> MetricCollection:
    """The task's metric set (`Task.metrics`): `binary` on the positive-class probability, or `multiclass`."""
    return binary_metrics(threshold) if kind == "binary" else multiclass_metrics(num_classes)


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
    """The decision threshold on probabilities in [0, 1] (a clip is abnormal when its score > threshold, as
    torchmetrics decides) that maximises balanced accuracy or F1 on these clips, or, with `fpr`, catches the most
    abnormal clips while calling at most `target_fpr` of the normal ones abnormal (a false-alarm budget).

    Every point of torchmetrics' `binary_roc` is a candidate, placed halfway between its score and the next lower
    one; of equally good thresholds the middle one is taken, for the widest margin. None when the clips hold one
    class only. Raises ValueError for an unknown criterion.
    """
    if criterion not in THRESHOLD_CRITERIA:
        raise ValueError(f"threshold criterion must be one of {THRESHOLD_CRITERIA}, not '{criterion}'")
    labels = labels.long()
    positives = int(labels.sum())
    if positives in (0, len(labels)):
        return None
    fpr, tpr, thresholds = binary_roc(scores.float(), labels)  # point i: abnormal when score >= thresholds[i]
    # The first point calls nothing abnormal (score > the highest score); point i > 0 becomes "score > c" with c
    # halfway down to the next lower score, or just below the lowest one for the last point.
    top = scores.float().max().reshape(1)
    below = torch.cat([thresholds[2:], (thresholds[-1:] - 2e-6)])
    candidates = torch.cat([top, (thresholds[1:] + below) / 2]).clamp(0.0, 1.0)
    negatives = len(labels) - positives
    tp, fp = torch.round(tpr * positives), torch.round(fpr * negatives)
    if criterion == "balanced_accuracy":
        value = (tp / positives + (negatives - fp) / negatives) / 2
    elif criterion == "f1":
        value = 2 * tp / (2 * tp + fp + (positives - tp)).clamp_min(1)
    else:  # recall, where the false-positive rate is within the budget
        value = torch.where(fp / negatives <= target_fpr, tp / positives, torch.tensor(-1.0))
    candidates, value = candidates.flip(0), value.flip(0)  # ascending thresholds
    best = torch.nonzero(value == value.max()).flatten()
    return float(candidates[best[len(best) // 2]])


def unit_scores(scores: torch.Tensor) -> torch.Tensor:
    """Anomaly scores of any range mapped into [0, 1] by (s - min) / (max - min) in float64: the same order and
    ties, so the same ROC. torchmetrics takes scores outside [0, 1] for logits and applies a sigmoid, which turns
    reconstruction errors in the hundreds into 1.0 each (AUROC 0.5)."""
    scores = scores.double()
    if not len(scores):
        return scores
    low, span = scores.min(), scores.max() - scores.min()
    return (scores - low) / span if span > 0 else torch.zeros_like(scores)


def auroc_by_label(scores: torch.Tensor, anomalous: torch.Tensor, labels: torch.Tensor,
                   names: list[str]) -> dict[str, dict]:
    """DCASE's metrics within each label (machine ID): AUROC and pAUC (max FPR 0.1) of the anomaly score (any
    range: `unit_scores`) against the anomaly flag. A label whose test clips are all normal, all anomalous or
    absent cannot have them: its entry holds None for both and `missing`, what it lacks (e.g. `no anomalous test
    clip`)."""
    out: dict[str, dict] = {}
    for k, name in enumerate(names):
        mask = labels == k
        flags = anomalous[mask].long()
        lacking = [kind for kind, flag in (("normal", 0), ("anomalous", 1)) if not (flags == flag).any()]
        if lacking:
            out[str(name)] = {"auroc": None, "pauc": None,
                              "missing": f"no {' and no '.join(lacking)} test clip"}
            continue
        own = unit_scores(scores[mask])
        out[str(name)] = {"auroc": float(binary_auroc(own, flags)),
                          "pauc": float(binary_auroc(own, flags, max_fpr=0.1))}
    return out


def gamma_threshold(scores: torch.Tensor, percentile: float = 90.0, warn=None) -> float:
    """A decision threshold from the anomaly scores of normal clips alone: the `percentile` of a gamma
    distribution fitted to them (shape, location and scale by `scipy.stats.gamma.fit`), as the DCASE 2021-2024
    Task 2 baselines do (`decision_threshold: 0.9` in their `baseline.yaml`), so about 1 - percentile/100 of
    normal clips are called anomalous. With fewer than 3 distinct scores, or a fit that gives no finite percentile,
    the empirical percentile of the scores is used, with a warning (through `warn(message)` when given, e.g. to
    say it once per machine ID). ValueError for no scores."""
    import logging

    import numpy as np
    from scipy import stats

    values = scores.detach().double().cpu().numpy()
    if values.size == 0:
        raise ValueError("a threshold needs the scores of at least one normal clip")
    q = percentile / 100.0
    if len(np.unique(values)) >= 3:
        with np.errstate(all="ignore"):
            try:
                shape, loc, scale = stats.gamma.fit(values)
                value = float(stats.gamma.ppf(q, shape, loc=loc, scale=scale))
            except (ValueError, RuntimeError, FloatingPointError):
                value = float("nan")
        if np.isfinite(value):
            return value
    message = (f"no gamma distribution fits {values.size} normal score(s) (fewer than 3 distinct values, or no finite "
               f"percentile): the threshold is their empirical {percentile:g} % percentile")
    (warn or logging.getLogger(__name__).warning)(message)
    return float(np.quantile(values, q))
