"""Settings checked before anything is built, so a bad value ends in one line naming it, not in a traceback from
torch or Lightning after seconds of setup. The data's own settings are checked where they are used (the data
module, the readers, `runs.check_fits`); this module checks the run-level ones (seed, trainer and optimizer)
and, as a Hydra callback, the run folder.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from machine_sound.errors import ConfigError, DataError, require_positive
from machine_sound.runs import require_writable

# Lightning's precision values that keep the model's weights in float32 or float64 ("-mixed" runs the backbone's
# arithmetic in half precision under autocast; the log-mel front end stays float32 in every case).
PRECISIONS = ("32-true", "32", 32, "64-true", "64", 64, "16-mixed", "16", 16, "bf16-mixed", "bf16")
HALF_TRUE = ("16-true", "bf16-true", "transformer-engine", "transformer-engine-float16")


def check_seed(value, setting: str = "seed") -> int:
    """A seed numpy, torch and Python all take: a whole number from 0 to 2**32 - 1; ConfigError naming `setting`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ConfigError(f"{setting}={value!r}: a whole number from 0 to 4294967295")
    return value


# DistributedDataParallel with processes started as the same command (Lightning's subprocess launcher, or SLURM's
# tasks): the strategies whose evaluation is checked to equal one process's (tests/test_distributed.py).
DDP = ("ddp", "ddp_find_unused_parameters_true", "ddp_find_unused_parameters_false")


def several_processes(trainer: DictConfig) -> bool:
    """Whether the trainer config asks for more than one device or machine."""
    devices = trainer.get("devices")
    one = devices in (1, "1", "auto") or (OmegaConf.is_list(devices) or isinstance(devices, list)) and len(devices) == 1
    return not one or (trainer.get("num_nodes") or 1) != 1


def check_trainer(trainer: DictConfig) -> None:
    """`trainer.max_epochs`, `precision`, `accelerator`, and devices with a DDP strategy: values Lightning would take
    and fail on later, or that would give wrong metrics (several processes without DDP's synced evaluation)."""
    import torch

    require_positive("trainer.max_epochs", trainer.get("max_epochs"), integer=True)
    precision = trainer.get("precision")
    if precision in HALF_TRUE:
        raise ConfigError(f"trainer.precision={precision} keeps the weights themselves in half precision, where "
                          "small updates are lost (16-true diverges); use bf16-mixed (or 16-mixed on a GPU): "
                          "half-precision arithmetic, float32 weights")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r}: choose 32-true, bf16-mixed or 16-mixed (64-true also "
                          "works)")
    devices, strategy = trainer.get("devices"), str(trainer.get("strategy", "auto"))
    if isinstance(devices, bool) or (isinstance(devices, int) and devices < 1):
        raise ConfigError(f"trainer.devices={devices}: a number of devices >= 1 (or a list of GPU indices)")
    nodes = trainer.get("num_nodes") or 1
    if nodes != 1 and not {"SLURM_NTASKS", "NODE_RANK", "TORCHELASTIC_RUN_ID"} & set(os.environ):
        raise ConfigError(f"trainer.num_nodes={nodes}: a run on several machines is started on each of them, by SLURM "
                          "(hydra/launcher=slurm, or srun) or by hand with MASTER_ADDR, MASTER_PORT and NODE_RANK set "
                          "(Lightning's cluster environment); here none is set, so it would wait for the others")
    if several_processes(trainer) and strategy not in DDP:
        raise ConfigError(f"trainer.devices={devices}, trainer.num_nodes={trainer.get('num_nodes', 1)}: a run on "
                          f"several devices or machines needs trainer.strategy=ddp (one process per device, started "
                          f"as the same command; got trainer.strategy={strategy}); or run a sweep with "
                          "hydra/launcher=joblib, each job on a device of its own")
    accelerator = str(trainer.get("accelerator"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator}, but torch finds no CUDA GPU on this machine; use "
                          "trainer=default (a GPU where there is one) or trainer=cpu")


def check_optimizer(optimizer: DictConfig | None) -> None:
    """The learning rate must be positive and the weight decay not negative."""
    if optimizer is None:
        raise ConfigError("model.optimizer is not set")
    require_positive("model.optimizer.lr", optimizer.get("lr"))
    decay = optimizer.get("weight_decay", 0.0)
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or decay < 0:
        raise ConfigError(f"model.optimizer.weight_decay={decay!r}: a number >= 0")


def check_run(cfg: DictConfig) -> None:
    """Everything above, for a training run's config; raises ConfigError naming the first bad setting."""
    check_seed(cfg.get("seed"))
    check_trainer(cfg.trainer)
    if "optimizer" in cfg.model:  # a kNN detector trains nothing and has none
        check_optimizer(cfg.model.optimizer)


class RunFolderGuard(Callback):
    """A Hydra callback (conf/hydra/default.yaml) that checks the run or sweep folder before Hydra writes into it,
    printing one line and exiting with status 2 when it cannot be used:

    - a folder that holds a finished run (before Hydra rewrites its `.hydra/` record);
    - `resume=<folder>` that is not a run folder it can continue: missing, a file, a sweep's job (a sweep
      continues by its own command), or given with another `hydra.run.dir`;
    - a sweep folder that holds a sweep run with other settings (before Hydra rewrites its `multirun.yaml`);
    - a folder that cannot be created or written.
    """

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(str(config.hydra.run.dir))
        resume = config.get("resume")
        if resume:
            _check_resume(Path(str(resume)), folder)
        elif (folder / "metrics.json").exists():
            _refuse(f"{folder} already holds a finished run; choose another hydra.run.dir")
        _require_writable(folder, "hydra.run.dir (or paths.log_dir)")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        if (folder / "multirun.yaml").exists():
            changed = _sweep_changes(OmegaConf.load(folder / "multirun.yaml"), config)
            if changed:
                _refuse(f"{folder} holds a sweep run with other settings ({'; '.join(changed[:3])}); run the changed "
                        "sweep in a new folder (leave out hydra.sweep.dir)")
        _require_writable(folder, "hydra.sweep.dir (or paths.log_dir)")
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if "SlurmLauncher" in launcher and shutil.which("sbatch") is None:
            _remove_if_empty(folder)
            _refuse("hydra/launcher=slurm submits every job with SLURM's sbatch, which this machine does not have; run "
                    "the sweep on the cluster's login node, or on this machine with hydra/launcher=joblib")
        try:
            if "submitit" not in launcher:  # on the cluster, its jobs check their own trainer settings
                check_trainer(config.trainer)
        except ConfigError as err:
            _remove_if_empty(folder)
            _refuse(str(err))
        if several_processes(config.trainer) and "submitit" not in launcher:
            _remove_if_empty(folder)
            _refuse(f"trainer.devices={config.trainer.devices}, trainer.num_nodes={config.trainer.get('num_nodes', 1)}"
                    ": one model on several processes cannot run as a job of a sweep on this machine (each process "
                    "is started as the same command, which a sweep job is not); train it as one run (python "
                    "train.py ...), or sweep on SLURM (hydra/launcher=slurm, hydra.launcher.tasks_per_node=<devices>)")


def _check_resume(resume: Path, folder: Path) -> None:
    if not resume.is_dir():
        _refuse(f"resume={resume}: {'not a folder' if resume.exists() else 'no such folder'}; give a run folder "
                "(outputs/runs/<name>/<time>)")
    if folder.resolve() != resume.resolve():
        _refuse(f"resume={resume} continues in that run's own folder; drop hydra.run.dir={folder}")
    sweep = next((p for p in resume.resolve().parents if (p / "multirun.yaml").exists()), None)
    if sweep is not None:
        _refuse(f"resume={resume} is a job of the sweep in {sweep}; continue it by running the sweep's command "
                f"again with hydra.sweep.dir={sweep}")


def _sweep_changes(before: DictConfig, now: DictConfig) -> list[str]:
    """`key: old -> new` for the settings of two sweep configs that differ: the shared config (without Hydra's
    own node) and the swept values."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def swept(cfg) -> dict[str, str]:
        arguments = [str(o) for o in OmegaConf.select(cfg, "hydra.overrides.task", default=[]) or []]
        arguments += [f"{k}={v}" for k, v in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items()]
        parsed = OverridesParser.create().parse_overrides(arguments)
        return {o.get_key_element(): (o.input_line or "").partition("=")[2] for o in parsed if o.is_sweep_override()}

    def shared(cfg) -> dict:
        tree = OmegaConf.to_container(cfg, resolve=False)
        tree.pop("hydra", None)
        return tree

    old, new = swept(before), swept(now)
    changed = [f"{k}: {old.get(k, '(not swept)')} -> {new.get(k, '(not swept)')}"
               for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    return changed + changed_settings(shared(before), shared(now))


def _flat(tree, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def changed_settings(stored: dict, current: dict) -> list[str]:
    """`key: old -> new` for every setting that differs between two stored run configs (unresolved, as
    checkpoints keep them)."""
    old, new = _flat(stored), _flat(current)
    return [f"{key}: {old.get(key, '(none)')} -> {new.get(key, '(none)')}" for key in sorted(old.keys() | new.keys())
            if old.get(key) != new.get(key) and key != "resume"]


CREATED: set[Path] = set()  # run folders this process made (RunFolderGuard), which a refused run may remove


def _require_writable(folder: Path, setting: str) -> None:
    if not folder.exists():
        CREATED.add(folder.resolve())
    try:
        require_writable(folder, setting)
    except DataError as err:
        _refuse(str(err))


def _remove_if_empty(folder: Path) -> None:
    """A sweep folder left empty by a refused sweep goes."""
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _refuse(line: str) -> None:
    print(f"error: {line}", file=sys.stderr)
    sys.exit(2)
