"""Train one model, test the best checkpoint, and write `metrics.json` into the run folder.

    python train.py machine=pump id=id_04          (or machine-sound-train ..., once installed)

`main()` is the only function that knows Hydra's command line; `train(cfg)` takes a composed config, so tests
call it directly (lightning-hydra-template's shape).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from machine_sound.checks import check_run
from machine_sound.config import CONFIG_PATH, build_trainer, instantiate
from machine_sound.console import print_result, quiet_lightning
from machine_sound.distributed import first_process
from machine_sound.errors import ConfigError, MachineSoundError, one_line, user_error
from machine_sound.runs import (
    check_fits,
    load_checkpoint,
    metrics_record,
    stored_config,
    summary,
    write_json,
    write_test_scores,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig, ckpt_path: str | Path | None = None) -> dict:
    """Fit (continuing from `ckpt_path`, a checkpoint of this run, when given), test with the best validation
    checkpoint, and return what `metrics.json` holds."""
    import lightning as L  # heavy imports here, so `--help` and config errors answer fast

    from machine_sound.callbacks import StoreRunConfig
    from machine_sound.resume import AtomicCheckpointIO

    quiet_lightning()

    run_dir = Path(cfg.paths.output_dir)
    if (run_dir / "metrics.json").exists():
        raise MachineSoundError(f"{run_dir} already holds a finished run; choose another hydra.run.dir")
    check_run(cfg)  # seed, trainer and optimizer, before anything is generated or read
    if ckpt_path is not None:
        load_checkpoint(ckpt_path)  # one clear line for a checkpoint that cannot be used, before Lightning's load
    datamodule = instantiate(cfg.data)  # validates machine, id and snr before anything is written
    check_task(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    store = StoreRunConfig(stored_config(cfg))
    callbacks.append(store)
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    if not loggers:  # logger=none: the learning rate has nowhere to go (Lightning refuses the monitor then)
        from lightning.pytorch.callbacks import LearningRateMonitor

        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer = build_trainer(cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()])
    datamodule.prepare_data()  # the synthetic data is written here; the model's shape needs the index
    if cfg.data.get("clip_seconds", 0) is None:  # the layout's own clip length (DCASE 2021-2025), kept for predict
        cfg.data.clip_seconds = store.config["data"]["clip_seconds"] = datamodule.clip_seconds
    L.seed_everything(cfg.seed, workers=True)
    model = instantiate(cfg.model, **shape_from_data(cfg.model, datamodule))
    check_fits(cfg, model)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best and trainer.checkpoint_callback and trainer.global_step == 0 and not trainer.fast_dev_run:
        # A model that takes no optimizer step (embedding_knn: its memory is filled, nothing is learned) gets no
        # checkpoint from ModelCheckpoint, which saves after steps: write the fitted model's own.
        best = str(Path(trainer.checkpoint_callback.dirpath) / "last.ckpt")
        trainer.save_checkpoint(best)
    if not best:
        log.warning("no best checkpoint (no checkpoint callback or fast_dev_run): testing the final weights")
    else:
        finish_model(model, best, datamodule, trainer)
    untested = datamodule.index.untested if not datamodule.splits["test"] else ""
    tested = {}
    if untested:  # an evaluation set: its test clips have no labels, predict scores them
        log.warning("not tested: %s", untested)
    else:
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False, weights_only=True)
        tested = dict(trainer.callback_metrics)  # the test metrics are not logged to the loggers: see log_hparams
    result = metrics_record(datamodule, model, tested, best or None, trainer.current_epoch, cfg.seed)
    if untested:
        result["untested"] = untested
    if trainer.is_global_zero:  # several processes (ddp): every one has the same result; the first writes it
        if not untested:
            write_test_scores(run_dir / "test_scores.csv", datamodule, model)
        write_json(run_dir / "metrics.json", result)
        log_hparams(loggers, result, cfg, trainer.global_step)
    return result


def check_task(cfg: DictConfig) -> None:
    """ConfigError, before any data is written, when the model cannot learn the data's task (a detector of normal
    recordings given faults to learn, or the classifier given normal recordings only)."""
    from hydra.utils import get_class

    try:
        model_class = get_class(cfg.model._target_)
    except Exception:  # an unknown class is reported, with its name, when the model is built
        return
    problem = getattr(model_class, "task_problem", lambda task: None)(cfg.data.task)
    if problem:
        raise ConfigError(problem)


def finish_model(model, checkpoint_path: str, datamodule, trainer) -> None:
    """A detector finished on the chosen checkpoint's weights (`after_fit`: e.g. the kNN memory of
    model=id_classifier scorer=knn), stored back into that checkpoint in one step (by the first process; the
    others wait for it, since the test loads it)."""
    import torch

    from machine_sound.runs import write_atomic

    if not hasattr(model, "after_fit"):
        return
    checkpoint = torch.load(checkpoint_path, map_location=model.device, weights_only=True)
    model.load_state_dict(checkpoint["state_dict"])
    if model.after_fit(datamodule) and trainer.is_global_zero:
        checkpoint["state_dict"] = model.state_dict()
        write_atomic(Path(checkpoint_path), lambda staging: torch.save(checkpoint, staging))
    trainer.strategy.barrier("finish_model")


def shape_from_data(model_cfg: DictConfig, datamodule) -> dict:
    """The backbone's input channels and the class names come from the data (channels selected, classes or IDs
    found); a value set by hand in model.* must agree with it."""
    import inspect

    from hydra.utils import get_class

    shape = {"in_chans": datamodule.in_chans, "class_names": list(datamodule.class_names)}
    try:
        accepted = inspect.signature(get_class(model_cfg._target_)).parameters
    except Exception:  # an unknown class is reported, with its name, when the model is built
        accepted = {}
    if "aux_names" in accepted:  # a detector that learns auxiliary classes (DCASE: section x attribute)
        shape.update(aux_names=list(datamodule.aux_names), aux_labels=list(datamodule.aux_labels))
    for key, value in shape.items():
        given = model_cfg.get(key)
        if given is not None and (list(given) if isinstance(value, list) else given) != value:
            raise ConfigError(f"model.{key}={given} but the data gives {value} (data.channel, classes); "
                              f"leave model.{key} unset (null) to follow the data")
    return shape


def log_hparams(loggers: list, result: dict, cfg: DictConfig, step: int) -> None:
    """One row per run in TensorBoard's HPARAMS tab: what the run was (the data's own names, so a class-folder run
    names its root and classes, not a machine) and its test metrics, through the loggers' public API. The test
    metrics are logged here once, at the run's last step."""
    from lightning.pytorch.loggers import TensorBoardLogger

    names = {k: result[k] for k in ("machine", "id", "snr") if k in result}
    if result["layout"] == "folder":
        names = {"root": result["root"], "classes": ",".join(result["classes"])}
    lr = OmegaConf.select(cfg, "model.optimizer.lr")  # a kNN detector has no optimizer
    params = {"data": result["name"], "task": result["task"], "model": result["model"], **names, "seed": cfg.seed,
              "backbone": result["backbone"] or "", "lr": float(lr) if lr is not None else 0.0,
              "n_mels": int(OmegaConf.select(cfg, "model.frontend.n_mels", default=0) or 0),
              "epochs": result["epochs"]}
    metrics = {f"test/{k}": v for k, v in result["metrics"].items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(params, metrics, step=step)
        else:
            logger.log_hyperparams(params)
            logger.log_metrics(metrics, step=step)
        logger.save()


def discard_unstarted(folder: Path) -> None:
    """Remove a run folder that this command made and that holds only what Hydra wrote before the run was refused
    (`.hydra/`, the log), so refused attempts do not pile up among the runs."""
    import shutil

    from machine_sound.checks import CREATED

    made = folder.resolve() in CREATED
    # A refusal while the data was checked (a wrong sample rate) comes after the loggers made their folder.
    ddp_logs = {p.name for p in folder.glob("train_ddp_process_*.log")} if folder.is_dir() else set()
    if made and folder.is_dir() and {p.name for p in folder.iterdir()} <= {".hydra", "train.log", "tensorboard",
                                                                          "csv", *ddp_logs}:
        shutil.rmtree(folder, ignore_errors=True)


def resume(cfg: DictConfig, hydra_cfg, in_sweep: bool) -> tuple[DictConfig, Path]:
    """`resume=<run folder>`: that run's config and its last checkpoint (see machine_sound.resume)."""
    from machine_sound.config import split_override
    from machine_sound.resume import resume_config

    if in_sweep:
        raise ConfigError("resume= continues one run; to continue a sweep, run the same sweep command again with "
                          "hydra.sweep.dir=<sweep folder>")
    others = [o for o in hydra_cfg.overrides.task if split_override(o)[0] != "resume"]
    return resume_config(cfg.resume, others)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from machine_sound.resume import sweep_job_checkpoint
    from machine_sound.sweep import share_the_machine

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    finished = Path(cfg.paths.output_dir) / "metrics.json"
    gpu_lock = None
    try:
        ckpt_path = None
        if cfg.get("resume"):
            cfg, ckpt_path = resume(cfg, hydra_cfg, in_sweep)
        elif in_sweep:  # a sweep run again in its folder: finished jobs are kept, interrupted ones continue
            ckpt_path = sweep_job_checkpoint(cfg.paths.output_dir, stored_config(cfg))
            if finished.exists():
                log.info("%s already finished; keeping its result", cfg.paths.output_dir)
                return json.loads(finished.read_text())["metrics"].get("auroc", 0.0)
            if ckpt_path is not None:
                log.info("continuing the interrupted job from %s", ckpt_path)
        if in_sweep:
            gpu_lock = share_the_machine(cfg, hydra_cfg)
        result = train(cfg, ckpt_path)
    except Exception as err:  # ours, also when raised in a DataLoader worker or wrapped by a resolver
        if in_sweep or user_error(err) is None:  # Hydra records a sweep job's failure and goes on
            raise
        if first_process():  # ddp: every process meets the same error; the first says it
            print(f"error: {one_line(err)}", file=sys.stderr)
            if not cfg.get("resume"):
                discard_unstarted(Path(cfg.paths.output_dir))
        sys.exit(2)
    finally:
        if gpu_lock is not None:
            gpu_lock.close()
    if first_process():  # with several processes (ddp), the first one speaks
        print_result(summary(result, cfg.paths.output_dir))
    return result["metrics"].get("auroc", 0.0)


if __name__ == "__main__":
    main()
