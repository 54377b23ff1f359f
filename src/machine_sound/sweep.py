"""What Hydra multiruns need beyond one training run: job folder names, a fair share of the machine per job,
DataLoader workers inside joblib jobs, jobs that stop with their launcher, failed jobs recorded, and the sweep's
summary table kept up to date.

`SweepCallback` is registered in conf/hydra/default.yaml (job folders are named by `machine_sound.config`'s
`swept_overrides` resolver). When a job starts it rebuilds `summary.{csv,md,png}` (the job shows as unfinished,
the jobs not started yet as pending); after every job it records a failure's one-line error in the job folder
(`failed.json`) and rebuilds the summary again, so a sweep that is still running, one that Hydra ends with an
error because a job failed, or one that was killed, has its table too.

A joblib job runs in a worker process of the launcher (`train.py -m`). When the launcher dies (`kill -9`, an
out-of-memory kill), nothing tells its workers, which would train on, orphaned, writing into the sweep folder:
`watch_launcher` stops such a job, and its DataLoader workers, within about a second.
"""

from __future__ import annotations

import fcntl
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from machine_sound.errors import one_line, user_error
from machine_sound.runs import write_atomic
from machine_sound.summarize import write_summary
from machine_sound.sweep_jobs import FAILED_FILE

log = logging.getLogger(__name__)

LAUNCHER_ENV = "MACHINE_SOUND_SWEEP_LAUNCHER"  # the pid of the sweep's launcher, inherited by its job processes
_watch = {"started": False, "job": None}  # this process's watchdog, and the folder of the job it runs now

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

    default_start_method()
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


def default_start_method() -> None:
    """Give multiprocessing its platform default start method back in a joblib job.

    A joblib (loky) worker process has loky's own start method as multiprocessing's default, and loky's process
    starter needs loky's process class; torch's DataLoader starts its workers with the default context's plain
    `Process`, so every job with `data.num_workers` > 0 failed with `'Process' object has no attribute 'env'`.
    Elsewhere (the basic launcher, a single run) the default is left as it is."""
    if str(multiprocessing.get_start_method(allow_none=True)).startswith("loky"):
        multiprocessing.set_start_method(multiprocessing.get_all_start_methods()[0], force=True)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _descendants(pid: int) -> list[int]:
    """The processes started by `pid` (DataLoader workers), and theirs."""
    parents = {int(p.name): stat[1] for p in Path("/proc").iterdir() if p.name.isdigit()
               if (stat := _proc_stat(int(p.name))) is not None}
    found, todo = [], [pid]
    while todo:
        pid = todo.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        found += children
        todo += children
    return found


def _ancestors(pid: int) -> list[int]:
    chain = []
    while (stat := _proc_stat(pid)) is not None and stat[1] > 0 and len(chain) < 64:
        pid = stat[1]
        chain.append(pid)
    return chain


def _stop_orphan(launcher: int) -> None:
    """Kill this job's DataLoader workers, then this process: the sweep that started it is gone."""
    if _watch["job"] is not None:
        log.error("the sweep's launcher (pid %d) is gone: stopping this job (%s)", launcher, _watch["job"])
    try:
        for child in _descendants(os.getpid()):
            try:
                os.kill(child, signal.SIGKILL)
            except OSError:  # gone meanwhile
                pass
    finally:  # the workers' own watchdog stops them when this process is gone anyway
        os.kill(os.getpid(), signal.SIGKILL)


def watch_launcher(interval: float = 1.0) -> bool:
    """In a job that runs in a process of its own below the sweep's launcher (joblib), start a daemon thread that
    stops this process, and its DataLoader workers, when the launcher is gone. The launcher's pid comes from
    `LAUNCHER_ENV` (set by `SweepCallback.on_multirun_start` in the launcher); a job that runs in the launcher's
    own process (the basic launcher) or elsewhere (SLURM) is not watched. Once per process; True when watching."""
    launcher = int(os.environ.get(LAUNCHER_ENV) or 0)
    if _watch["started"] or not launcher or launcher == os.getpid() or launcher not in _ancestors(os.getpid()):
        return _watch["started"]
    parent = os.getppid()  # the launcher itself for joblib's workers: when it dies, this job is re-parented

    def watch() -> None:
        while True:
            time.sleep(interval)
            stat = _proc_stat(launcher)
            if os.getppid() != parent or stat is None or stat[0] in "ZX":
                _stop_orphan(launcher)

    threading.Thread(target=watch, name="sweep-launcher-watchdog", daemon=True).start()
    _watch["started"] = True
    return True


class SweepCallback(Callback):
    """Records failures and keeps the sweep summary current (Hydra calls these in each job's process)."""

    def __init__(self, metric: str = "auroc", positive: str = "abnormal"):
        self.metric, self.positive = metric, positive

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[LAUNCHER_ENV] = str(os.getpid())  # before the launcher starts its job processes
        try:  # what the sweep runs over (sweep=dcase: the machine types found), before Hydra's sweeper reads it
            params = config.hydra.sweeper.get("params")
            if params:  # None, or {} without a sweep= preset: nothing to resolve
                OmegaConf.to_container(params, resolve=True)
        except Exception as err:
            mine = user_error(err)
            if mine is None:
                raise
            print(f"error: {one_line(mine)}", file=sys.stderr)
            from machine_sound.checks import CREATED

            folder = Path(config.hydra.sweep.dir)
            if folder.resolve() in CREATED and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # made by this command a moment ago, for a sweep that does not start
            sys.exit(2)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.runtime.output_dir) / FAILED_FILE).unlink(missing_ok=True)  # a re-run starts clean
        if config.hydra.mode == RunMode.MULTIRUN:
            _watch["job"] = config.hydra.runtime.output_dir
            watch_launcher()
            self._summarize(config.hydra.sweep.dir)  # this job is running (unfinished) from now on

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        _watch["job"] = None  # an idle worker whose launcher is gone stops without a word
        if job_return.status == JobStatus.FAILED and config.hydra.mode == RunMode.MULTIRUN:
            error = job_return._return_value
            record = {"error": one_line(error), "type": type(error).__name__,
                      "overrides": list(config.hydra.overrides.task)}
            path = Path(config.hydra.runtime.output_dir) / FAILED_FILE
            try:
                write_atomic(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))
            except OSError as err:  # a full disk: the job's log still says why it failed
                log.error("could not write %s: %s", path, err)
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
