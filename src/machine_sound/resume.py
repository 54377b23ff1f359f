"""Continuing a killed run to the result it would have had: `python train.py resume=<run folder>`.

Three things make a resumed run equal to an uninterrupted one:

- `checkpoints/last.ckpt` is written after every epoch (`callbacks.last_checkpoint`), with the best checkpoint so
  far recorded in it (ModelCheckpoint's state), and is written beside its target, then renamed
  (`AtomicCheckpointIO`), so a kill or a full disk never leaves a checkpoint that looks whole but is not;
- it carries the torch, numpy and Python random states (`RandomState`), put back just before the next training
  epoch, so dropout, SpecAugment masks and time shifts draw what they would have drawn;
- the balanced sampler is seeded per epoch (`data.split_seed` + epoch, see `data/datamodule.py`).

The run continues in its own folder with the config its checkpoint carries; other settings cannot change on
resume (a longer `trainer.max_epochs`, for one, would leave the cosine schedule planned for the old length).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Sequence

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from machine_sound.checks import changed_settings
from machine_sound.errors import ConfigError, DataError, MachineSoundError
from machine_sound.runs import RUN_CONFIG, load_checkpoint, write_atomic

log = logging.getLogger(__name__)

LAST = Path("checkpoints") / "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but each file is written beside its target and renamed into place (one
    file system, so the rename is atomic): an interrupted or failed save leaves the previous checkpoint whole and
    no partial file. Lightning's own writer stages in the system temp folder and copies across file systems."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        write_atomic(Path(path), lambda staging: torch.save(checkpoint, staging))


class RandomState(L.Callback):
    """Keeps the torch (CPU and CUDA), numpy and Python random states in every checkpoint and restores them when
    training resumes, at the start of the next training epoch: the point the uninterrupted run was at when the
    checkpoint was written (after its validation, which a resumed run's sanity check repeats and would otherwise
    shift). The states are stored as tensors and lists, so the checkpoint loads with `weights_only=True`."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        version, mt, position, has_gauss, gauss = np.random.get_state()
        state = {"torch": torch.get_rng_state(), "python": _to_lists(random.getstate()),
                 "numpy": {"version": version, "mt": torch.from_numpy(mt.astype(np.int64)),
                           "position": int(position), "has_gauss": int(has_gauss), "gauss": float(gauss)}}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        random.setstate(_to_tuples(state["python"]))
        n = state["numpy"]
        np.random.set_state((n["version"], n["mt"].numpy().astype(np.uint32), n["position"], n["has_gauss"],
                             n["gauss"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


def _to_tuples(value):
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def resume_config(folder: str | Path, overrides: Sequence[str] = ()) -> tuple[DictConfig, Path]:
    """The config of the run in `folder` (as its last checkpoint stored it), pointed at that folder, and the
    checkpoint to continue from. Raises DataError for a folder with nothing to resume, MachineSoundError for a
    finished run, and ConfigError when other settings are given (they cannot change mid-run)."""
    folder = Path(folder)
    if overrides:
        raise ConfigError(f"resume={folder} continues the run with its own settings; drop {' '.join(overrides)} "
                          "(a longer run is a new run: train again with the new settings)")
    if not folder.is_dir():
        raise DataError(f"resume={folder}: no such folder; give a run folder (outputs/runs/<name>/<time>)")
    if (folder / "metrics.json").exists():
        raise MachineSoundError(f"{folder} holds a finished run (metrics.json); nothing to resume")
    last = folder / LAST
    if not last.is_file():
        raise DataError(f"resume={folder}: no {LAST} there; the run stopped before its first epoch ended, or ran "
                        "without callbacks.last_checkpoint: train it again")
    checkpoint = load_checkpoint(last)
    written = {state["dirpath"] for state in (checkpoint.get("callbacks") or {}).values()
               if isinstance(state, dict) and state.get("dirpath")}
    moved = [path for path in written if Path(path).resolve() != (folder / LAST.parent).resolve()]
    if moved:
        raise DataError(f"resume={folder}: its checkpoints were written in {moved[0]}, so the run was moved or "
                        "copied; its best checkpoint so far would be forgotten: resume it where it ran")
    cfg = OmegaConf.create(checkpoint[RUN_CONFIG])
    cfg.paths.output_dir = str(folder.resolve())
    cfg.resume = str(folder)
    log.info("resuming %s from %s", folder, last)
    return cfg, last


def sweep_job_checkpoint(folder: str | Path, current: dict) -> Path | None:
    """For a sweep job run again in its folder (`hydra.sweep.dir=`): the `last.ckpt` to continue an interrupted
    job from, or None when there is none. A job that ran with other settings than `current` (a stored run config)
    is a ConfigError naming them: its results would not be this sweep's."""
    folder = Path(folder)
    finished = folder / "metrics.json"
    if finished.exists():
        import json

        path = json.loads(finished.read_text()).get("best_checkpoint")
        checkpoint = Path(path) if path else None
    else:
        checkpoint = folder / LAST
    if checkpoint is None or not checkpoint.is_file():
        return None
    changed = changed_settings(load_checkpoint(checkpoint)[RUN_CONFIG], current)
    if changed:
        raise ConfigError(f"{folder} ran with other settings ({'; '.join(changed[:3])}"
                          f"{f'; {len(changed) - 3} more' if len(changed) > 3 else ''}); run the changed sweep in a "
                          "new folder (leave out hydra.sweep.dir)")
    return None if finished.exists() else checkpoint
