"""Callbacks of our own (conf/callbacks): what Lightning's do not measure."""

from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch


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

    - `examples/<class>`: log-mel images of a few training clips of every class, as the model sees them;
    - after the test: `test/confusion_matrix`, `test/roc`, `test/score_histograms` (figures), the native
      `test/pr_curve` and `test/scores_<class>` histograms, and the misclassified test clips as audio
      (`misclassified/<n>_<true>_as_<predicted>/audio`, first channel, at the data's sample rate) with their
      spectrograms (`.../spectrogram`) and file names (`.../file`).

    Clips scored by machine ID have no decision threshold: their ROC, PR curve and histograms are of the anomaly
    score, and there is no confusion matrix or list of misclassified clips.
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
            waves = torch.stack([dataset[i][0] for i in picks])
            specs = datamodule.frontend.to(waves.device)(waves)
            titles = [datamodule.splits["train"][i][0].name for i in picks]
            writer.add_figure(f"examples/{name}", spectrogram_figure(specs, titles), global_step=0)

    def on_test_end(self, trainer, pl_module) -> None:
        writer, datamodule = self._writer(trainer), trainer.datamodule
        outputs = getattr(pl_module, "test_outputs", None)
        if writer is None or outputs is None:
            return
        step = trainer.global_step
        scores, labels = outputs
        if scores.dim() == 1:  # one score per clip: binary, or the anomaly score of clips scored by ID
            names = ("normal", "anomalous") if pl_module.scored_by_id else datamodule.class_names
            writer.add_figure("test/roc", roc_figure(scores, labels), global_step=step)
            writer.add_pr_curve("test/pr_curve", labels.long(), scores, global_step=step)
            writer.add_figure("test/score_histograms", histogram_figure(scores, labels, names), global_step=step)
            for k, name in enumerate(names):
                if (labels == k).any():
                    writer.add_histogram(f"test/scores_{name}", scores[labels == k], global_step=step)
            if pl_module.scored_by_id:
                return
            predicted = (scores > pl_module.threshold.item()).long()
        else:
            predicted = scores.argmax(dim=-1)
        if pl_module.confusion is not None:
            writer.add_figure("test/confusion_matrix", confusion_figure(pl_module.confusion, datamodule.class_names),
                              global_step=step)
        wrong = (predicted != labels).nonzero().flatten()[: self.misclassified].tolist()
        dataset = datamodule.dataset("test")
        for n, i in enumerate(wrong):
            wave = dataset[i][0]
            path = datamodule.splits["test"][i][0]
            true, said = datamodule.class_names[int(labels[i])], datamodule.class_names[int(predicted[i])]
            tag = f"misclassified/{n:02d}_{true}_as_{said}"
            # One tag per kind: TensorBoard files a tag under the first plugin that uses it.
            writer.add_audio(f"{tag}/audio", wave[0].clamp(-1, 1), global_step=step,
                             sample_rate=datamodule.decoding.sample_rate)
            spec = datamodule.frontend.to(wave.device)(wave[None])
            writer.add_figure(f"{tag}/spectrogram", spectrogram_figure(spec, [path.name]), global_step=step)
            writer.add_text(f"{tag}/file", f"{path} (score {scores[i].max():.3f})", global_step=step)
        writer.flush()


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
