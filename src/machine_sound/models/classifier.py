"""The LightningModule: a timm image backbone that classifies log-mel images as normal (0) or abnormal (1)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import lightning as L
import timm
import torch
from torch import nn
from torchmetrics.classification import BinaryConfusionMatrix, MulticlassConfusionMatrix
from torchmetrics.functional.classification import binary_auroc

from machine_sound.errors import ConfigError, MachineSoundError
from machine_sound.metrics import (
    THRESHOLD_CRITERIA,
    best_threshold,
    classification_metrics,
    set_threshold,
    with_balanced_accuracy,
)

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
RUN_CONFIG = "machine_sound_run_config"  # checkpoint key: the training run's config, for machine_sound.eval


def create_backbone(name: str, pretrained: bool, weights_path: str | None, in_chans: int, num_classes: int,
                    drop_rate: float, global_pool: str = "avgmax", zero_init_head: bool = True) -> nn.Module:
    """`timm.create_model`, with clear errors for an unknown name or a missing local weights file.

    `pretrained=true` downloads ImageNet weights from the model hub; with `weights_path` timm loads that local
    file instead. Either way timm adapts the stem to `in_chans` and replaces the classifier for `num_classes`.
    `zero_init_head` zeroes that new classifier, so training starts from "no opinion" (loss ln 2) instead of
    large random logits. From scratch on a few hundred clips, whether the default backbone found a subtle fault at
    all depended on the seed without it (one -6 dB valve ID, same seed: test AUROC 0.53 without, 0.97 with).
    """
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ConfigError(f"unknown timm backbone '{name}'" + (f"; similar: {', '.join(close)}" if close else ""))
    overlay = None
    if weights_path:
        if not Path(weights_path).is_file():
            raise ConfigError(f"model.weights_path {weights_path} is not a file")
        pretrained, overlay = True, {"file": str(weights_path)}
    net = timm.create_model(name, pretrained=pretrained, pretrained_cfg_overlay=overlay, in_chans=in_chans,
                            num_classes=num_classes, drop_rate=drop_rate, global_pool=global_pool)
    if zero_init_head:
        head = net.get_classifier()
        if not isinstance(head, (nn.Linear, nn.Conv2d)):
            raise ConfigError(f"model.zero_init_head: the classifier of '{name}' is a {type(head).__name__}, not "
                              "a Linear or Conv2d layer; set model.zero_init_head=false")
        nn.init.zeros_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)
    return net


class SpectrogramClassifier(L.LightningModule):
    def __init__(
        self,
        backbone: str = "mobilenetv3_small_100",
        pretrained: bool = False,
        weights_path: str | None = None,
        in_chans: int | None = None,
        num_classes: int | None = None,
        drop_rate: float = 0.2,
        global_pool: str = "avgmax",
        zero_init_head: bool = True,
        label_smoothing: float = 0.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        threshold: float = 0.5,
        tune_threshold: str | None = "balanced_accuracy",
        target_fpr: float = 0.05,
    ):
        super().__init__()
        if not 0 <= target_fpr < 1:
            raise ConfigError(f"model.target_fpr={target_fpr}: a share of normal clips, from 0 to below 1")
        if tune_threshold not in (None, *THRESHOLD_CRITERIA):
            raise ConfigError(f"model.tune_threshold={tune_threshold}: choose one of {', '.join(THRESHOLD_CRITERIA)} "
                              "or null")
        # train.py fills both from the data; built on its own, the model takes one mono log-mel, two classes.
        in_chans, num_classes = in_chans or 1, num_classes or 2
        # Factories stay out of the checkpoint: it must load with torch.load(weights_only=True).
        self.save_hyperparameters(logger=False, ignore=["optimizer", "scheduler"])
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.net = create_backbone(backbone, pretrained, weights_path, in_chans, num_classes, drop_rate,
                                   global_pool, zero_init_head)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        if num_classes < 2:
            raise ConfigError(f"model.num_classes={num_classes}: a classifier needs at least 2 classes")
        self.binary = num_classes == 2
        # One metric object per stage, so train, val and test never share state.
        self.train_metrics = classification_metrics(num_classes, threshold)
        self.val_metrics = classification_metrics(num_classes, threshold)
        self.test_metrics = classification_metrics(num_classes, threshold)
        self.test_confusion = (BinaryConfusionMatrix(threshold=threshold) if self.binary
                               else MulticlassConfusionMatrix(num_classes))
        # The decision threshold is a buffer: the checkpoint that is tested carries the one chosen with it.
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self._val_scores: list[torch.Tensor] = []
        self._val_labels: list[torch.Tensor] = []
        self.confusion: torch.Tensor | None = None
        self.scored_by_id = False
        self.per_id: dict[str, dict[str, float]] | None = None  # test AUROC and pAUC of each ID, when scored by ID
        self.run_config: dict | None = None  # set by train(); saved in every checkpoint
        # Every test clip's score and label, in test-loader order, kept after the test for the dashboards:
        # binary: (positive-class probability, label); by ID: (anomaly score, anomalous); multi-class: (probs, label)
        self.test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._test_scores: list[torch.Tensor] = []
        self._test_labels: list[torch.Tensor] = []
        self._test_ids: list[torch.Tensor] = []  # the machine ID of each test clip scored by ID

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint[RUN_CONFIG] = self.run_config

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return self.net(spec)

    def _step(self, batch, stage: str) -> torch.Tensor:
        spec, label, *anomalous = batch
        logits = self(spec)
        loss = self.criterion(logits, label)
        probs = logits.float().softmax(dim=-1)
        scores = probs[:, 1] if self.binary else probs  # binary: the positive class's probability
        if anomalous:  # labels are machine IDs: the anomaly score is how little the clip looks like its own ID
            own = probs.gather(1, label[:, None]).squeeze(1)
            self._test_ids.append(label.detach().cpu())
        elif stage == "val":  # scored at the epoch's end, once the threshold for this epoch is chosen
            self._val_scores.append(scores.detach())
            self._val_labels.append(label.detach())
        else:
            getattr(self, f"{stage}_metrics").update(scores, label)
        if stage == "test":
            self._test_scores.append((1 - own if anomalous else scores).detach().float().cpu())
            self._test_labels.append((anomalous[0] if anomalous else label).detach().cpu())
        if stage == "test" and not anomalous:
            self.test_confusion.update(scores, label)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test",
                 batch_size=len(label))
        return loss

    def _log_epoch(self, stage: str) -> None:
        metrics = getattr(self, f"{stage}_metrics")
        values = with_balanced_accuracy(metrics.compute())
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=False)
        metrics.reset()

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):  # weights gone to NaN/inf would make every later number garbage
            raise MachineSoundError(
                f"training diverged: the training loss is {loss.item()} at epoch {self.current_epoch}, step "
                f"{self.global_step}; lower model.optimizer.lr, or use a larger data.batch_size or longer "
                "data.clip_seconds")
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def on_train_epoch_start(self) -> None:
        set_threshold(self.train_metrics, self.threshold.item())

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        """Choose the decision threshold on this epoch's validation clips (unless `tune_threshold` is null),
        then log the validation metrics at it."""
        scores, labels = torch.cat(self._val_scores), torch.cat(self._val_labels)
        self._val_scores.clear()
        self._val_labels.clear()
        criterion = self.hparams.tune_threshold if self.binary else None
        if criterion and not self.trainer.sanity_checking:
            chosen = best_threshold(scores, labels, criterion, self.hparams.target_fpr)
            if chosen is not None:
                self.threshold.fill_(chosen)
        set_threshold(self.val_metrics, self.threshold.item())
        self.val_metrics.update(scores, labels)
        self._log_epoch("val")
        if self.binary:
            self.log("val/threshold", self.threshold)

    def on_test_epoch_start(self) -> None:
        set_threshold(self.test_metrics, self.threshold.item())
        if self.binary:
            self.test_confusion.threshold = self.threshold.item()
        self._test_scores.clear()
        self._test_labels.clear()
        self._test_ids.clear()

    def on_test_epoch_end(self) -> None:
        self.test_outputs = (torch.cat(self._test_scores), torch.cat(self._test_labels))
        if self._test_ids:
            self._log_anomaly_by_id(*self.test_outputs, torch.cat(self._test_ids))
            return
        self._log_epoch("test")
        self.confusion = self.test_confusion.compute().long().cpu()  # rows: true class, columns: predicted
        if self.binary:
            tn, fp, fn, tp = self.confusion.flatten().tolist()
            self.log_dict({"test/tn": float(tn), "test/fp": float(fp), "test/fn": float(fn), "test/tp": float(tp)})
        self.test_confusion.reset()

    def _log_anomaly_by_id(self, score: torch.Tensor, anomalous: torch.Tensor, ids: torch.Tensor) -> None:
        """DCASE's metrics: AUROC and pAUC (max FPR 0.1) of the anomaly score within each machine ID, and their
        means as test/auroc and test/pauc."""
        self.test_metrics.reset()
        self.scored_by_id = True
        names = getattr(self.trainer.datamodule, "class_names", None) or range(self.hparams.num_classes)
        per_id: dict[str, dict[str, torch.Tensor]] = {}
        for k, name in enumerate(names):
            mask = ids == k
            if not mask.any() or anomalous[mask].min() == anomalous[mask].max():  # no clips, or one class only
                continue
            per_id[str(name)] = {"auroc": binary_auroc(score[mask], anomalous[mask].long()),
                                 "pauc": binary_auroc(score[mask], anomalous[mask].long(), max_fpr=0.1)}
        if not per_id:  # e.g. fast_dev_run's single test batch
            log.warning("no machine ID had both normal and anomalous test clips: test AUROC and pAUC are NaN")
        values = {f"test/{metric}_{name}": v for name, m in per_id.items() for metric, v in m.items()}
        for metric in ("auroc", "pauc"):
            means = [m[metric] for m in per_id.values()]
            values[f"test/{metric}"] = torch.stack(means).mean() if means else torch.tensor(float("nan"))
        self.log_dict(values)
        self.per_id = {name: {metric: float(v) for metric, v in m.items()} for name, m in per_id.items()}

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ConfigError("model.optimizer is not set")
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer=optimizer),
                                                         "interval": "epoch"}}
