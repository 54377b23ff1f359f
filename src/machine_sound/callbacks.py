"""Callbacks of our own (conf/callbacks): what Lightning's do not measure or show, and the run's config in every
checkpoint."""

from __future__ import annotations

import time

import lightning as L
import torch

from machine_sound.figures import confusion_figure, histogram_figure, roc_figure, spectrogram_figure
from machine_sound.metrics import unit_scores
from machine_sound.runs import FORMAT, FORMAT_KEY, RUN_CONFIG


class StoreRunConfig(L.Callback):
    """Puts the run's unresolved config into every checkpoint (`RUN_CONFIG`), so `machine_sound.eval` and
    `machine_sound.predict` rebuild the run from the checkpoint alone, and `snr=6_dB` there moves everything that
    follows the SNR."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[RUN_CONFIG] = self.config
        checkpoint[FORMAT_KEY] = FORMAT


class DataWaitMonitor(L.Callback):
    """Logs, per training epoch, the share of step time spent waiting for the DataLoader (`perf/data_wait_share`)
    and the training clips per second (`perf/clips_per_s`): is the data path keeping the model busy?

    Waiting is the time from the end of one training step until the data module's `on_before_batch_transfer`
    receives the next batch; the rest of a step (transfer, log-mel front end, forward, backward) is compute.
    """

    def __init__(self):
        self.history: list[dict[str, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._wait = self._busy = 0.0
        self._clips = 0
        self._step_end = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        fetched = getattr(trainer.datamodule, "last_fetch", None) or time.perf_counter()
        self._wait += max(0.0, fetched - self._step_end)
        self._fetched = fetched

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._step_end = time.perf_counter()
        self._busy += self._step_end - self._fetched
        self._clips += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        total = self._wait + self._busy
        if total <= 0:
            return
        values = {"perf/data_wait_share": self._wait / total, "perf/clips_per_s": self._clips / total}
        self.history.append({"epoch": trainer.current_epoch, **values})
        pl_module.log_dict(values, on_epoch=True)


class Dashboards(L.Callback):
    """TensorBoard views of what the model hears and where it fails, written by the TensorBoard logger:

    - `examples/<class>`: log-mel images of a few training clips of every class, through the model's front end;
    - after the test: `test/roc`, `test/score_histograms` (figures), the native `test/pr_curve` and
      `test/scores_<class>` histograms, and, where the task decides (binary, multiclass), `test/confusion_matrix`
      and the misclassified test clips as audio (`misclassified/<n>_<true>_as_<predicted>/audio`, first channel,
      at the data's sample rate) with their spectrograms (`.../spectrogram`) and file names (`.../file`).

    For task `id_anomaly` (the normal-only detectors) the ROC, PR curve and histograms are of the anomaly score
    (normal vs anomalous clips), and the confusion matrix and misclassified clips are those of the decision at each
    machine ID's threshold fitted on normal clips.
    """

    def __init__(self, examples_per_class: int = 3, misclassified: int = 8):
        self.examples_per_class, self.misclassified = examples_per_class, misclassified

    @staticmethod
    def _writer(trainer):
        from lightning.pytorch.loggers import TensorBoardLogger

        return next((lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)

    def on_fit_start(self, trainer, pl_module) -> None:
        writer, datamodule = self._writer(trainer), trainer.datamodule
        if writer is None or not getattr(datamodule, "splits", None):
            return
        dataset, labels = datamodule.dataset("train"), datamodule.labels("train")
        for label, name in enumerate(datamodule.class_names):
            picks = [int(i) for i in (labels == label).nonzero()[0][: self.examples_per_class]]
            if not picks:
                continue
            waves = torch.stack([dataset[i][0] for i in picks]).to(pl_module.device)
            with torch.no_grad():
                specs = pl_module.frontend(waves)
            titles = [datamodule.splits["train"][i].path.name for i in picks]
            writer.add_figure(f"examples/{name}", spectrogram_figure(specs, titles), global_step=0)

    def on_test_end(self, trainer, pl_module) -> None:
        writer, datamodule = self._writer(trainer), trainer.datamodule
        outputs = getattr(pl_module, "test_outputs", None)
        if writer is None or outputs is None:
            return
        step, task = trainer.global_step, pl_module.task
        scores, labels = outputs
        names = ("normal", "anomalous") if task.by_label else datamodule.class_names
        if scores.dim() == 1:  # one score per clip: p(positive), or the anomaly score (of any range)
            unit = unit_scores(scores).float() if task.by_label else scores
            writer.add_figure("test/roc", roc_figure(unit, labels), global_step=step)
            writer.add_pr_curve("test/pr_curve", labels.long(), unit, global_step=step)
            writer.add_figure("test/score_histograms", histogram_figure(scores, labels, names), global_step=step)
            for k, name in enumerate(names):
                if (labels == k).any():
                    writer.add_histogram(f"test/scores_{name}", scores[labels == k], global_step=step)
        if task.decision == "normal_threshold":
            predicted = pl_module.test_decisions  # None when no threshold was fitted
        elif task.decision == "threshold":
            predicted = (scores > pl_module.threshold.item()).long()
        else:
            predicted = scores.argmax(dim=-1)
        if predicted is None:
            writer.flush()
            return
        writer.add_figure("test/confusion_matrix", confusion_figure(pl_module.confusion, names), global_step=step)
        self._misclassified(writer, datamodule, pl_module, scores, labels, predicted, names, step)
        writer.flush()

    def _misclassified(self, writer, datamodule, pl_module, scores, labels, predicted, names, step) -> None:
        wrong = (predicted != labels).nonzero().flatten()[: self.misclassified].tolist()
        dataset = datamodule.dataset("test")
        for n, i in enumerate(wrong):
            wave = dataset[i][0]
            path = datamodule.splits["test"][i].path
            true, said = names[int(labels[i])], names[int(predicted[i])]
            tag = f"misclassified/{n:02d}_{true}_as_{said}"
            # One tag per kind: TensorBoard files a tag under the first plugin that uses it.
            writer.add_audio(f"{tag}/audio", wave[0].clamp(-1, 1), global_step=step,
                             sample_rate=datamodule.decoding.sample_rate)
            with torch.no_grad():
                spec = pl_module.frontend(wave[None].to(pl_module.device))
            writer.add_figure(f"{tag}/spectrogram", spectrogram_figure(spec, [path.name]), global_step=step)
            writer.add_text(f"{tag}/file", f"{path} (score {scores[i].max():.3f})", global_step=step)
