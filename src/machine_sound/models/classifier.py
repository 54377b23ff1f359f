"""The LightningModule: waveform -> log-mel front end -> SpecAugment (training only) -> timm backbone -> logits.

The model owns the whole path from waveform to score, the shape of PANNs' `Cnn14` (Kong et al., 2020): a
checkpoint alone is a scorer, `SpectrogramClassifier.load_from_checkpoint(path, weights_only=True)` then
`model(wave)`. Its hyper-parameters are plain values (the front end and SpecAugment as dicts), so they load
without unpickling objects. What it learns and how test clips are scored follows from its task
(`machine_sound.tasks`), fixed when it is built.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torchmetrics import CatMetric, MeanMetric
from torchmetrics.functional.classification import binary_confusion_matrix, multiclass_confusion_matrix

from machine_sound.distributed import gathered
from machine_sound.errors import ConfigError, MachineSoundError
from machine_sound.metrics import (
    THRESHOLD_CRITERIA,
    best_threshold,
    metric_set,
    set_threshold,
    with_balanced_accuracy,
)
from machine_sound.models.backbone import create_backbone
from machine_sound.models.detector import DETECTORS, NORMAL_ONLY, configure_optimizers
from machine_sound.models.frontend import LogMelFrontend, SpecAugment
from machine_sound.models.waveform import WaveformModel
from machine_sound.tasks import get_task


class SpectrogramClassifier(WaveformModel):
    """`forward(wave)`: wave (batch, channels, samples) float32 at `frontend["sample_rate"]` -> logits (batch,
    len(class_names)), in the model's precision. Batches are `(wave, label, anomalous)` for every task.

    Tasks: `binary` (label 1 = abnormal is positive; a decision threshold on p(abnormal) is chosen on validation
    clips and saved as a buffer) and `multiclass` (macro metrics, argmax decision). Learning from normal
    recordings only (task `id_anomaly`) is the detectors' (`machine_sound.models.detector`). Raises ConfigError for
    settings that cannot work.
    """

    def __init__(
        self,
        task: str = "binary",
        class_names: Sequence[str] | None = None,
        in_chans: int | None = None,
        frontend: dict | None = None,
        augment: dict | None = None,
        backbone: str = "mobilenetv3_small_100",
        pretrained: bool = False,
        weights_path: str | None = None,
        drop_rate: float = 0.2,
        global_pool: str = "avgmax",
        zero_init_head: bool = True,
        label_smoothing: float = 0.0,
        norm_clips: int = 64,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        threshold: float = 0.5,
        tune_threshold: str | None = "balanced_accuracy",
        target_fpr: float = 0.05,
    ):
        super().__init__()
        self.task = get_task(task)
        problem = self.task_problem(task)
        if problem:
            raise ConfigError(problem)
        # Built on its own, the model takes one mono clip and normal/abnormal; train.py fills both from the data.
        class_names, in_chans = list(class_names or ("normal", "abnormal")), in_chans or 1
        if len(class_names) < 2 or (self.task.name == "binary" and len(class_names) != 2):
            raise ConfigError(f"model.class_names={class_names}: task {self.task.name} needs "
                              f"{'exactly' if self.task.name == 'binary' else 'at least'} 2 classes")
        if not 0 <= target_fpr < 1:
            raise ConfigError(f"model.target_fpr={target_fpr}: a share of normal clips, from 0 to below 1")
        if tune_threshold not in (None, *THRESHOLD_CRITERIA):
            raise ConfigError(f"model.tune_threshold={tune_threshold}: choose one of {', '.join(THRESHOLD_CRITERIA)} "
                              "or null")
        # Factories stay out of the checkpoint: it must load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.hparams.update(class_names=class_names, in_chans=in_chans)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.frontend = LogMelFrontend(**{"sample_rate": 16000, "subtract_background": self.task.subtract_background,
                                          **(frontend or {})})
        self.augment = SpecAugment(**augment) if augment else None
        self.net = create_backbone(backbone, pretrained, weights_path, in_chans, len(class_names), drop_rate,
                                   global_pool, zero_init_head)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        # The decision threshold is a buffer: the checkpoint that is tested carries the one chosen with it.
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        # One metric object per stage, so train, val and test never share state.
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", metric_set(self.task.metrics, len(class_names), threshold))
        # Validation scores wait for the epoch's threshold; test scores are kept for the record and the dashboards.
        self.val_scores, self.val_labels = CatMetric(), CatMetric()
        self.test_scores, self.test_labels = CatMetric(), CatMetric()
        for stage in ("train", "val", "test"):  # each stage's mean loss, a metric so that processes share it
            setattr(self, f"{stage}_loss", MeanMetric())
        self.confusion: torch.Tensor | None = None  # after the test: rows true class, columns predicted
        self.per_id = None  # kept for the metrics record: per-ID metrics are the detectors'
        # After the test, every clip's score and label in test-loader order (for the dashboards): binary:
        # (p(positive), label); multiclass: (probabilities, label).
        self.test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    option = "classifier"  # its model= option

    @staticmethod
    def task_problem(task: str) -> str | None:
        """Why this model cannot learn `task` (train.py asks before any data is written), or None."""
        if task == NORMAL_ONLY:
            return (f"data.task={NORMAL_ONLY}: the data holds normal training recordings only, which "
                    f"model=classifier cannot learn from; choose model={', model='.join(DETECTORS)}")
        return None

    # -- waveform to score ------------------------------------------------------------------------------------

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        self.check_wave(wave)
        spec = self.frontend(wave)
        if self.training and self.augment is not None:
            spec = self.augment(spec)
        return self.net(spec.to(next(self.net.parameters()).dtype))

    def clip_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """A clip's score by the task: p(positive) (binary) or every class's probability (multiclass)."""
        probs = logits.float().softmax(dim=-1)
        return probs[:, 1] if self.task.score == "positive" else probs

    # -- steps --------------------------------------------------------------------------------------------------

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        wave, label, anomalous = batch[:3]
        logits = self(wave)
        loss = self.criterion(logits, label)
        getattr(self, f"{stage}_loss").update(loss.detach(), weight=len(label))  # logged with the epoch's metrics
        return loss, logits, label

    def training_step(self, batch, batch_idx):
        loss, logits, label = self._step(batch, "train")
        if not torch.isfinite(loss):  # weights gone to NaN/inf would make every later number garbage
            raise MachineSoundError(
                f"training diverged: the training loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}; lower model.optimizer.lr, or use a larger data.batch_size or longer "
                "data.clip_seconds")
        self.train_metrics.update(self._metric_scores(logits), label)
        return loss

    def validation_step(self, batch, batch_idx):
        _, logits, label = self._step(batch, "val")
        self.val_scores.update(self._metric_scores(logits).detach())
        self.val_labels.update(label)

    def test_step(self, batch, batch_idx):
        _, logits, label = self._step(batch, "test")
        self.test_scores.update(self.clip_scores(logits).detach())
        self.test_labels.update(label)

    def predict_step(self, batch, batch_idx):
        """Class probabilities (batch, classes) of a batch whose first element is the waveforms."""
        return self(batch[0]).float().softmax(dim=-1)

    def _metric_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """What the train/val metric set scores: p(class 1) for a binary set, every probability otherwise."""
        probs = logits.detach().float().softmax(dim=-1)
        return probs[:, 1] if self.task.metrics == "binary" else probs

    # -- epoch ends -----------------------------------------------------------------------------------------

    def _log_metrics(self, stage: str, logger: bool = True) -> None:
        metrics, mean = getattr(self, f"{stage}_metrics"), getattr(self, f"{stage}_loss")
        values = with_balanced_accuracy(metrics.compute())
        # Synced here, in every process at the same point (several processes): logged as a value, not a metric that
        # Lightning would compute whenever the first process's progress bar asks for it.
        if mean.update_count:
            self.log(f"{stage}/loss", mean.compute(), prog_bar=stage != "test", logger=logger)
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, logger=logger)
        metrics.reset()
        mean.reset()

    def on_train_epoch_start(self) -> None:
        set_threshold(self.train_metrics, self.threshold.item())

    def on_train_epoch_end(self) -> None:
        self._log_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Choose the decision threshold on this epoch's validation clips (binary task, unless `tune_threshold`
        is null), then log the validation metrics at it."""
        scores, labels = self.val_scores.compute(), self.val_labels.compute().long()
        self.val_scores.reset()
        self.val_labels.reset()
        criterion = self.hparams.tune_threshold if self.task.decision == "threshold" else None
        if criterion and not self.trainer.sanity_checking:
            chosen = best_threshold(scores, labels, criterion, self.hparams.target_fpr)
            if chosen is not None:
                self.threshold.fill_(chosen)
        set_threshold(self.val_metrics, self.threshold.item())
        self.val_metrics.update(scores, labels)
        self._log_metrics("val")
        if self.task.decision == "threshold":
            self.log("val/threshold", self.threshold)

    def on_test_epoch_start(self) -> None:
        for metric in (self.test_scores, self.test_labels):
            metric.reset()

    def on_test_epoch_end(self) -> None:
        """Test metrics, logged into `trainer.callback_metrics` but not to the loggers: train.py writes them once,
        with the run's hyper-parameters (TensorBoard's HPARAMS tab)."""
        scores, labels = gathered(self, self.test_scores, self.test_labels)  # all processes' clips
        labels = labels.long()
        self.test_outputs = (scores, labels)
        absent = [name for k, name in enumerate(self.class_names) if not (labels == k).any()]
        if absent and not self.trainer.fast_dev_run:
            raise MachineSoundError(f"no test metric can be computed without clips of every class: the test set "
                                    f"holds no {', '.join(absent)} clip")
        set_threshold(self.test_metrics, self.threshold.item())
        self.test_metrics.update(scores, labels)
        self._log_metrics("test", logger=False)
        if self.task.decision == "threshold":
            self.confusion = binary_confusion_matrix(scores, labels, threshold=self.threshold.item())
            tn, fp, fn, tp = map(float, self.confusion.flatten().tolist())
            self.log_dict({"test/tn": tn, "test/fp": fp, "test/fn": fn, "test/tp": tp}, logger=False)
        else:
            self.confusion = multiclass_confusion_matrix(scores, labels, len(self.class_names))

    def configure_optimizers(self):
        return configure_optimizers(self)
