"""Train one model for one machine/ID, test the best checkpoint, and write `metrics.json` into the run folder.

`main()` is the only function that knows Hydra's command line; `train(cfg)` takes a composed config, so tests
call it directly.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from machine_sound.errors import ConfigError, MachineSoundError
from machine_sound.sweep import register_resolvers, share_the_machine

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes: the sweep folder names use them

# The repository's conf/ (the package is installed editable from the repository).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def instantiate(node, **kwargs):
    """`hydra.utils.instantiate`, but our own errors come out unwrapped, so they stay one clear line."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, MachineSoundError):
            raise err.__cause__ from None
        raise


def train(cfg: DictConfig) -> dict:
    """Fit, test with the best validation checkpoint, and return what `metrics.json` holds."""
    import lightning as L  # heavy imports here, so `--help` and config errors answer fast

    run_dir = Path(cfg.paths.output_dir)
    if (run_dir / "metrics.json").exists():
        raise MachineSoundError(f"{run_dir} already holds a finished run; choose another hydra.run.dir")
    datamodule = instantiate(cfg.data)  # validates machine, id and snr before anything is printed
    L.seed_everything(cfg.seed, workers=True)
    model = instantiate(cfg.model, **shape_from_data(cfg.model, datamodule))
    choose_checkpoint_metric(cfg, datamodule.scored_by_id)
    # Unresolved, so `python -m machine_sound.eval snr=6_dB` moves everything that follows the SNR.
    model.run_config = OmegaConf.to_container(cfg, resolve=False)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        log.warning("no best checkpoint (no checkpoint callback or fast_dev_run): testing the final weights")
    tested = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    result = metrics_record(cfg, datamodule, model, tested, best or None, trainer.current_epoch)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    log_hparams(loggers, result, cfg)
    return result


def metrics_record(cfg: DictConfig, datamodule, model, tested: dict, checkpoint: str | None, epochs: int) -> dict:
    """What `metrics.json` holds, from a finished `trainer.test` (training's, or machine_sound.eval's)."""
    metrics = {k.removeprefix("test/"): float(v) for k, v in tested.items() if k.startswith("test/")}
    classes = datamodule.class_names
    return {
        "name": datamodule.describe(), "layout": datamodule.layout,
        "machine": cfg.machine, "id": cfg.id, "snr": cfg.snr, "seed": cfg.seed,
        "backbone": cfg.model.backbone, "data": cfg.data.root, "classes": list(classes),
        "positive_class": classes[1] if len(classes) == 2 else None,
        "best_checkpoint": checkpoint, "epochs": epochs,
        "threshold": model.threshold.item() if model.binary and not model.scored_by_id else None,
        "scored_by_id": model.scored_by_id,  # labels are machine IDs; anomaly score = 1 - p(own ID)
        "n_test": dict(zip(classes, datamodule.class_counts("test").tolist())),
        "bad_files_skipped": len(datamodule.bad_files),
        "metrics": metrics,
        "per_id": model.per_id,
        # rows: true class, columns: predicted, in `classes` order (none when scored by ID)
        "confusion": model.confusion.tolist() if model.confusion is not None else None,
    }


def choose_checkpoint_metric(cfg: DictConfig, scored_by_id: bool) -> None:
    """Settle `monitor: auto` and `mode: auto` of the checkpoint callback in place: val/auroc (max), or val/loss
    (min) when clips are scored by machine ID (validation then tells IDs apart, which saturates at AUROC 1 within
    a few epochs). Called before the callbacks are built."""
    checkpoint = (cfg.get("callbacks") or {}).get("model_checkpoint")
    if checkpoint is None:
        return
    if checkpoint.get("monitor") == "auto":
        checkpoint.monitor = "val/loss" if scored_by_id else "val/auroc"
    if checkpoint.get("mode") == "auto":
        checkpoint.mode = "min" if str(checkpoint.monitor).endswith("loss") else "max"


def shape_from_data(model_cfg: DictConfig, datamodule) -> dict:
    """The backbone's input channels and classes come from the data (channels selected, class folders found);
    a value set by hand in model.* must agree with it."""
    shape = {"in_chans": datamodule.in_chans, "num_classes": datamodule.num_classes}
    for key, value in shape.items():
        if model_cfg.get(key) is not None and model_cfg[key] != value:
            raise ConfigError(f"model.{key}={model_cfg[key]} but the data gives {value} (data.channel, classes); "
                              f"leave model.{key} unset (null) to follow the data")
    return shape


def log_hparams(loggers: list, result: dict, cfg: DictConfig) -> None:
    """One row per run in TensorBoard's HPARAMS tab: what the run was, and its real test metrics.

    The metric columns point at the `test/*` scalars the test step already logged, so no value is written twice
    (Lightning's own `log_hyperparams(params, metrics)` would log them again at step 0).
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch.utils.tensorboard.summary import hparams

    params = {"machine": cfg.machine, "id": cfg.id, "snr": cfg.snr, "seed": cfg.seed,
              "backbone": cfg.model.backbone, "lr": float(cfg.model.optimizer.lr),
              "n_mels": cfg.features.frontend.n_mels, "epochs": result["epochs"]}
    metric_tags = {f"test/{k}": v for k, v in result["metrics"].items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()  # as Lightning does in its own log_hyperparams
            for event in hparams(params, metric_tags):
                writer.add_summary(event)
            writer.flush()
        else:
            logger.log_hyperparams(params)


def one_line(err: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it with a traceback."""
    text = str(err).strip()
    if "Original Traceback" in text:  # re-raised from a worker: the original message is the last line
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__


def summary(result: dict, run_dir: str) -> str:
    m = result["metrics"]
    shown = [(label, m[key]) for key, label in (("auroc", "AUROC"), ("pauc", "pAUC"), ("f1", "F1"),
                                                 ("balanced_accuracy", "balanced accuracy")) if key in m]
    return (f"{result['name']}: test " + "  ".join(f"{label} {value:.3f}" for label, value in shown) + "\n"
            f"run folder: {run_dir}\n"
            f"dashboard:  tensorboard --logdir {run_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    in_sweep = hydra_cfg.mode == RunMode.MULTIRUN
    finished = Path(cfg.paths.output_dir) / "metrics.json"
    if in_sweep and finished.exists():  # re-running a sweep folder resumes it: finished jobs are kept
        log.info("%s already finished; keeping its result", cfg.paths.output_dir)
        return json.loads(finished.read_text())["metrics"]["auroc"]
    gpu_lock = share_the_machine(cfg, hydra_cfg) if in_sweep else None
    try:
        result = train(cfg)
    except MachineSoundError as err:  # also when raised in a DataLoader worker: the type survives
        if in_sweep:  # Hydra records the failure and goes on with the other jobs
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        if gpu_lock is not None:
            gpu_lock.close()
    print(summary(result, cfg.paths.output_dir))
    return result["metrics"]["auroc"]


if __name__ == "__main__":
    main()
