"""A callback for tests/test_resume.py (not a test module): kills its own process with SIGKILL, as `kill -9` would,
when a training epoch starts, once (a marker file remembers that it did)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L


class KillAtEpoch(L.Callback):
    def __init__(self, epoch: int, marker: str):
        self.epoch, self.marker = epoch, Path(marker)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
