"""What a run learns and how it is scored: the task, fixed when the run is built.

Like torchmetrics' `task="binary" | "multiclass"`, a run's task is a config value (`data.task`, set by the
layout's config and passed to the model by interpolation), never discovered later. Everything that depends on it
reads this one table: the checkpoint metric (`callbacks.model_checkpoint.monitor`), whether the front end removes
each clip's steady background, the metric sets, the decision rule, the test score, the dashboards, predict's
columns and the sweep summary's rows. `binary` and `multiclass` are learned by `model=classifier`, `id_anomaly`
(normal recordings only) by the detectors of `machine_sound.models.detector`.
"""

from __future__ import annotations

from dataclasses import dataclass

from machine_sound.errors import ConfigError


@dataclass(frozen=True)
class Task:
    """One row of the table.

    - `labels`: what a label is.
    - `monitor`: the validation metric that picks the best checkpoint.
    - `subtract_background`: whether the front end removes each clip's steady spectrum. It sharpens faults
      against a machine's steady sound (synthetic -6 dB pump/id_04, normal vs abnormal: test AUROC 0.93 -> 0.99),
      but erases what tells machine IDs or arbitrary classes apart.
    - `decision`: `threshold` (the positive class's probability against a threshold tuned on validation clips),
      `argmax` (the most probable class) or `normal_threshold` (the anomaly score against its machine ID's
      threshold, fitted on normal validation clips alone).
    - `score`: a test clip's score: `positive` (p(class 1)), `classes` (every class's probability) or `anomaly`
      (the detector's anomaly score: reconstruction error, kNN distance, 1 - p(own ID)).
    - `metrics`: the train/val metric set, `binary`, `multiclass` (macro averages) or `none` (the detector's
      validation loss on normal clips).
    - `by_label`: the test metrics are AUROC and pAUC of the anomaly flag within each label (machine ID), and
      their mean, as DCASE reports them; the sweep summary has a row per label.
    """

    name: str
    labels: str
    monitor: str
    subtract_background: bool
    decision: str
    score: str
    metrics: str
    by_label: bool


TASKS: dict[str, Task] = {
    "binary": Task("binary", labels="normal (0) or abnormal (1)", monitor="val/auroc", subtract_background=True,
                   decision="threshold", score="positive", metrics="binary", by_label=False),
    "multiclass": Task("multiclass", labels="a class (one folder each)", monitor="val/auroc",
                       subtract_background=False, decision="argmax", score="classes", metrics="multiclass",
                       by_label=False),
    # Normal recordings only (model=autoencoder, embedding_knn, id_classifier: machine_sound.models.detector):
    # labels are machine IDs, test clips carry an anomaly flag, each ID's threshold is fitted on normal clips.
    # val/loss on normal validation clips picks the checkpoint: no anomaly may choose it.
    "id_anomaly": Task("id_anomaly", labels="a machine ID (normal clips only); test clips carry an anomaly flag",
                       monitor="val/loss", subtract_background=False, decision="normal_threshold", score="anomaly",
                       metrics="none", by_label=True),
}


def get_task(name: str) -> Task:
    """The task called `name`; ConfigError naming the valid ones otherwise."""
    if name not in TASKS:
        raise ConfigError(f"data.task={name}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def checkpoint_mode(monitor: str) -> str:
    """`min` for a loss, `max` for every other metric (AUROC, F1, accuracy, ...)."""
    return "min" if str(monitor).rsplit("/", 1)[-1].endswith("loss") else "max"
