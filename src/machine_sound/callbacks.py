"""Callbacks of our own (conf/callbacks): what Lightning's do not measure."""

from __future__ import annotations

import time

import lightning as L


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
