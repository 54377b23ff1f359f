"""What Hydra multiruns need beyond one training run: job folder names, a fair share of the machine per job,
failed jobs recorded, and the sweep's summary table kept up to date.

`SweepCallback` is registered in conf/hydra/default.yaml (job folders are named by `machine_sound.config`'s
`swept_overrides` resolver). After every job it records a failure's one-line error
in the job folder (`failed.json`) and rebuilds `summary.{csv,md,png}`, so a sweep that is still running, or one
that Hydra ends with an error because a job failed, has its table too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from machine_sound.errors import one_line
from machine_sound.summarize import FAILED_FILE, write_summary

log = logging.getLogger(__name__)

def cpu_share(n_jobs: int | None, cpus: int | None = None) -> int:
    """Threads for one of `n_jobs` parallel jobs (joblib's convention: -1 = one per CPU, -2 = all but one)."""
    cpus = cpus or os.cpu_count() or 1
    if not n_jobs:
        return cpus
    parallel = n_jobs if n_jobs > 0 else max(1, cpus + 1 + n_jobs)
    return max(1, cpus // min(parallel, cpus))


def claim_gpu(lock_dir: Path, count: int, preferred: int = 0) -> tuple[int, IO]:
    """A GPU that no other job of this sweep holds, by a lock file per GPU; keep the returned file open while
    training. With more parallel jobs than GPUs, waits for the preferred one."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index in [*range(preferred, count), *range(preferred)]:
        handle = open(lock_dir / f".gpu-{index}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return index, handle
        except BlockingIOError:
            handle.close()
    handle = open(lock_dir / f".gpu-{preferred}.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return preferred, handle


def share_the_machine(cfg: DictConfig, hydra_cfg: DictConfig) -> IO | None:
    """In a parallel sweep (joblib launcher), give this job its share of the CPU threads and, on a multi-GPU
    machine, a GPU of its own. Returns the GPU lock to hold while training, if any."""
    import torch

    n_jobs = OmegaConf.select(hydra_cfg, "launcher.n_jobs")
    if n_jobs is None:
        return None
    threads = cpu_share(n_jobs)
    torch.set_num_threads(threads)
    log.info("parallel sweep job: %d CPU threads", threads)
    if cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.device_count() > 1:
        index, lock = claim_gpu(Path(hydra_cfg.sweep.dir), torch.cuda.device_count(),
                                preferred=hydra_cfg.job.num % torch.cuda.device_count())
        cfg.trainer.devices = [index]
        log.info("parallel sweep job: GPU %d", index)
        return lock
    return None


class SweepCallback(Callback):
    """Records failures and keeps the sweep summary current (Hydra calls these in each job's process)."""

    def __init__(self, metric: str = "auroc", positive: str = "abnormal"):
        self.metric, self.positive = metric, positive

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.runtime.output_dir) / FAILED_FILE).unlink(missing_ok=True)  # a re-run starts clean

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value
            record = {"error": one_line(error), "type": type(error).__name__,
                      "overrides": list(config.hydra.overrides.task)}
            folder = Path(config.hydra.runtime.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / FAILED_FILE).write_text(json.dumps(record, indent=1))
            log.error("job failed: %s", record["error"])
        if config.hydra.mode == RunMode.MULTIRUN:
            self._summarize(config.hydra.sweep.dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        paths = self._summarize(config.hydra.sweep.dir)
        if paths:
            print(paths["md"].read_text())
            print(f"sweep summary: {paths['md']} (also {paths['csv'].name}, {paths['png'].name})\n"
                  f"dashboard:     tensorboard --logdir {config.hydra.sweep.dir}")

    def _summarize(self, sweep_dir: str) -> dict[str, Path] | None:
        try:
            return write_summary(sweep_dir, self.metric, self.positive)
        except Exception as err:  # the table must never cost a finished job its result
            log.error("could not write the sweep summary in %s: %s", sweep_dir, err)
            return None
