"""What every detector trained on normal recordings only shares: task `id_anomaly`, scored per machine ID.

A detector (`model=autoencoder`, `embedding_knn`, `id_classifier`) learns from normal clips alone and gives every
clip an anomaly score, higher = more anomalous. This base class owns everything after the score, so it is the same
for every detector: the decision threshold fitted on normal validation clips (a gamma distribution and its
percentile, as the DCASE 2021-2024 Task 2 baselines do), the test metrics of DCASE (AUROC and pAUC within each
machine ID and their means, precision, recall and F1 at the threshold), the dashboards' outputs and predict's
per-ID scores.
"""

from __future__ import annotations

import logging
from typing import Sequence

import lightning as L
import torch
from torchmetrics import CatMetric
from torchmetrics.functional.classification import (
    binary_confusion_matrix,
    binary_f1_score,
    binary_precision,
    binary_recall,
)

from machine_sound.challenge import section_metrics, summary_metrics
from machine_sound.distributed import gathered
from machine_sound.errors import ConfigError, MachineSoundError
from machine_sound.metrics import auroc_by_label, gamma_threshold
from machine_sound.models.waveform import WaveformModel
from machine_sound.tasks import get_task

log = logging.getLogger(__name__)

NORMAL_ONLY = "id_anomaly"
DETECTORS = ("autoencoder", "embedding_knn", "id_classifier")


def configure_optimizers(module: L.LightningModule):
    """A model's optimizer (`module.optimizer_factory` on all its parameters, margin-loss centres included) and,
    when it has one, its scheduler stepped once per epoch; ConfigError when no optimizer is set."""
    if module.optimizer_factory is None:
        raise ConfigError("model.optimizer is not set")
    optimizer = module.optimizer_factory(params=module.parameters())
    if module.scheduler_factory is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": module.scheduler_factory(optimizer=optimizer),
                                                     "interval": "epoch"}}


class AnomalyDetector(WaveformModel):
    """Base of the normal-only detectors. Batches are `(wave, label, anomalous, domain, aux)`: wave (batch, channels,
    samples) float32 at `frontend.sample_rate`, label the machine ID's (or DCASE section's) index in `class_names`,
    anomalous 0 or 1 (test only), domain 0 source, 1 target, -1 none, aux the auxiliary class (see
    `machine_sound.data.datamodule`).

    A subclass sets `self.frontend` and implements `id_scores(wave) -> (batch, len(class_names))`: each clip's
    anomaly score as a recording of each ID (every column the same where the detector does not tell IDs apart),
    and its training; it logs `val/loss`, its objective on the normal validation clips, which picks the
    checkpoint. `learns_ids` says whether it needs the normal clips of several IDs (read by the MIMII reader's
    `train_ids`).

    The decision threshold of each ID is a buffer, fitted after every validation epoch on that epoch's normal
    validation scores (`gamma_threshold`, percentile `threshold_percentile`), so the tested checkpoint carries the
    one fitted with its weights. Raises ConfigError for a task other than `id_anomaly` or a bad percentile.
    """

    learns_ids = False
    option = "detector"  # its model= option
    optimizer_factory = scheduler_factory = None

    def __init__(self, task: str, class_names: Sequence[str] | None, in_chans: int | None,
                 threshold_percentile: float = 90.0):
        super().__init__()
        self.task = get_task(task)
        problem = self.task_problem(task)
        if problem:
            raise ConfigError(problem)
        self.ids = list(class_names or ("machine",))
        self.channels = int(in_chans or 1)
        if not isinstance(threshold_percentile, (int, float)) or not 0 < threshold_percentile < 100:
            raise ConfigError(f"model.threshold_percentile={threshold_percentile!r}: a percentile strictly "
                              "between 0 and 100 (DCASE's baselines: 90)")
        self.register_buffer("threshold", torch.zeros(len(self.ids)))
        self.register_buffer("threshold_fitted", torch.tensor(False))
        self.val_scores, self.val_labels = CatMetric(), CatMetric()
        self.test_scores, self.test_labels, self.test_flags = CatMetric(), CatMetric(), CatMetric()
        self.test_domains = CatMetric()
        self.evaluator: str | None = None  # DCASE 2021-2025 data: how its test is scored (machine_sound.challenge)
        self.per_id: dict[str, dict] | None = None  # after the test: AUROC, pAUC, F1 (or missing) per ID
        self.confusion: torch.Tensor | None = None  # after the test: rows normal/anomalous, columns decided
        self.test_outputs: tuple[torch.Tensor, torch.Tensor] | None = None  # (anomaly score, anomalous) per clip
        self.test_decisions: torch.Tensor | None = None  # after the test: 1 where the score passed the threshold

    @classmethod
    def task_problem(cls, task: str) -> str | None:
        """Why this detector cannot learn `task` (train.py asks before any data is written), or None."""
        if task == NORMAL_ONLY:
            return None
        return (f"data.task={task}: model={cls.option} learns from normal recordings only (task {NORMAL_ONLY}: "
                "data.reader.protocol=baseline, data=dcase2020 or data=machine_folder); "
                f"task {task} is learned by model=classifier")

    def _store_shape(self) -> None:
        """After the subclass's `save_hyperparameters`: the class names and channels as resolved here."""
        self.hparams.update(class_names=self.ids, in_chans=self.channels)

    @property
    def class_names(self) -> list[str]:
        return list(self.ids)

    # -- waveform to score ------------------------------------------------------------------------------------

    def id_scores(self, wave: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> anomaly scores (batch, len(class_names)), one column per machine ID."""
        self.check_wave(wave)
        return self.id_scores(wave)

    def anomaly_score(self, wave: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """(batch,) anomaly scores of clips of the given machine IDs (indices into `class_names`)."""
        return self(wave).float().gather(1, label[:, None]).squeeze(1)

    # -- validation: the threshold from normal clips -------------------------------------------------------------

    def validation_step(self, batch, batch_idx):
        wave, label = batch[0], batch[1]
        scores = self.anomaly_score(wave, label)
        self.val_scores.update(scores.detach())
        self.val_labels.update(label)
        self.log("val/loss", self.validation_loss(wave, label, scores), on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=len(label))

    def validation_loss(self, wave: torch.Tensor, label: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The objective on normal validation clips that picks the checkpoint; by default their mean score."""
        return scores.mean()

    def on_validation_epoch_end(self) -> None:
        """Fit every ID's decision threshold on this epoch's (normal) validation scores of that ID; an ID without
        validation clips takes the threshold of all of them."""
        scores, labels = self.val_scores.compute().cpu(), self.val_labels.compute().long().cpu()
        self.val_scores.reset()
        self.val_labels.reset()
        if self.trainer.sanity_checking:
            return
        self.fit_thresholds(scores, labels)
        self.log("val/threshold", self.threshold.mean())

    # -- test: DCASE's metrics -----------------------------------------------------------------------------------

    def on_test_epoch_start(self) -> None:
        for metric in (self.test_scores, self.test_labels, self.test_flags, self.test_domains):
            metric.reset()
        datamodule = getattr(self.trainer, "datamodule", None)
        self.evaluator = getattr(datamodule, "evaluator", None)

    def test_step(self, batch, batch_idx):
        wave, label, anomalous, domain = batch[:4]
        self.test_scores.update(self.anomaly_score(wave, label).detach())
        self.test_labels.update(label)
        self.test_flags.update(anomalous)
        self.test_domains.update(domain)

    def on_test_epoch_end(self) -> None:
        """AUROC and pAUC within each ID and their means (DCASE), or with DCASE 2021-2025 data each section's
        metrics by domain and the official score (`machine_sound.challenge`); precision, recall and F1 of the
        anomalous clips at the thresholds. Logged into `trainer.callback_metrics` (train.py writes them once, with
        the run's hyper-parameters). No ID with both normal and anomalous test clips is an error (outside
        fast_dev_run); a metric that cannot be computed is reported missing, with the reason."""
        scores, labels, flags, domains = gathered(self, self.test_scores, self.test_labels, self.test_flags,
                                                  self.test_domains)  # all processes' clips
        labels, flags, domains = labels.long(), flags.long(), domains.long()
        self.test_outputs = (scores, flags)
        if self.evaluator:
            self.per_id = section_metrics(scores, flags, labels, domains, self.ids, self.evaluator)
        else:  # IDs learned but not tested (MIMII: id=id_04 with a detector of every ID) are not reported
            tested = {self.ids[k] for k in labels.unique().tolist()}
            self.per_id = {name: m for name, m in auroc_by_label(scores, flags, labels, self.ids).items()
                           if name in tested}
        missing = {name: m["missing"] if isinstance(m["missing"], str)  # per ID, or per metric of a section
                   else ", ".join(f"{metric}: {why}" for metric, why in m["missing"].items())
                   for name, m in self.per_id.items() if "missing" in m}
        for name, reason in missing.items():
            log.warning("test %s of %s are missing: %s", "metrics" if self.evaluator else "AUROC and pAUC", name,
                        reason)
        scored = {name: {k: v for k, v in m.items() if v is not None and k != "missing"}
                  for name, m in self.per_id.items()}
        scored = {name: m for name, m in scored.items() if m}
        if not scored and not self.trainer.fast_dev_run:
            unit = "section" if self.evaluator else "machine ID"
            raise MachineSoundError(f"no test metric can be computed: no {unit} has both normal and anomalous test "
                                    f"clips ({'; '.join(f'{k}: {v}' for k, v in missing.items())})")
        values = {f"test/{metric}_{name}": v for name, m in scored.items() for metric, v in m.items()}
        if self.evaluator:
            values.update({f"test/{k}": v for k, v in summary_metrics(self.per_id, self.evaluator).items()})
        else:
            for metric in ("auroc", "pauc"):
                if scored:
                    values[f"test/{metric}"] = sum(m[metric] for m in scored.values()) / len(scored)
        if bool(self.threshold_fitted):
            decided = (scores > self.threshold.cpu()[labels]).long()
            self.test_decisions = decided
            self.confusion = binary_confusion_matrix(decided, flags)
            for metric, fn in (("precision", binary_precision), ("recall", binary_recall), ("f1", binary_f1_score)):
                values[f"test/{metric}"] = float(fn(decided, flags))
        else:
            log.warning("no decision threshold was fitted (no validation epoch ran): precision, recall and F1 are "
                        "left out")
        self.log_dict(values, logger=False)

    def predict_step(self, batch, batch_idx):
        """Anomaly scores (batch, len(class_names)) of a batch whose first element is the waveforms."""
        return self(batch[0]).float()

    # -- helpers of the subclasses ---------------------------------------------------------------------------------

    def fit_thresholds(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        """Every ID's decision threshold from normal clips' scores of that ID (`gamma_threshold`); an ID without
        such clips takes the threshold of all of them."""
        scores, labels = scores.cpu(), labels.long().cpu()
        percentile = self.hparams.threshold_percentile
        for k, name in enumerate(self.ids):
            own = scores[labels == k]
            which = name if len(own) else "every ID (none of its own)"
            self.threshold[k] = gamma_threshold(own if len(own) else scores, percentile,
                                                warn=lambda message, which=which: self._warn_once(which, message))
        self.threshold_fitted.fill_(True)

    def _warn_once(self, name: str, message: str) -> None:
        """A threshold warning, once per machine ID and run (not once per validation epoch)."""
        warned = self.__dict__.setdefault("_warned", set())
        if name not in warned:
            warned.add(name)
            log.warning("threshold of %s: %s", name, message)

    def split_outputs(self, datamodule, split: str, fn, keep_mode: bool = False) -> tuple[torch.Tensor, ...]:
        """`fn(wave)` of every clip of a split, once each and in order (not the training sampler's balanced
        draw), without gradients, in eval mode (in the modules' own modes with `keep_mode`), with the clips'
        labels and domains: (outputs, labels, domains)."""
        from torch.utils.data import DataLoader

        if not hasattr(datamodule, "dataset"):
            raise MachineSoundError("a detector's memory and thresholds are fitted on the data module's clips; train "
                                    "with an AudioDataModule (machine_sound.data.datamodule)")
        was_training = self.training
        if not keep_mode:
            self.eval()
        outputs, labels, domains = [], [], []
        with torch.no_grad():
            for wave, label, _, domain, *_ in DataLoader(datamodule.dataset(split), batch_size=datamodule.batch_size):
                outputs.append(fn(wave.to(self.device)))
                labels.append(label)
                domains.append(domain)
        if not keep_mode:
            self.train(was_training)
        return torch.cat(outputs), torch.cat(labels).to(self.device), torch.cat(domains).to(self.device)

    def after_fit(self, datamodule) -> bool:
        """Finish the trained weights that will be tested (train.py calls this on the chosen checkpoint's weights
        and stores the result in it): True when the model changed. Nothing to do by default."""
        return False

    def configure_optimizers(self):
        return configure_optimizers(self)
