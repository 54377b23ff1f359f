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
from omegaconf import DictConfig

from machine_sound.errors import MachineSoundError

log = logging.getLogger(__name__)

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
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not best:
        log.warning("no best checkpoint (no checkpoint callback or fast_dev_run): testing the final weights")
    tested = trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]

    metrics = {k.removeprefix("test/"): float(v) for k, v in tested.items() if k.startswith("test/")}
    result = {
        "machine": cfg.machine, "id": cfg.id, "snr": cfg.snr, "seed": cfg.seed,
        "backbone": cfg.model.backbone, "data": cfg.data.root, "positive_class": "abnormal",
        "best_checkpoint": best or None, "epochs": trainer.current_epoch,
        "n_test": dict(zip(datamodule.class_names, datamodule.class_counts("test").tolist())),
        "metrics": metrics,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def one_line(err: BaseException) -> str:
    """The user-facing line of an error, also when a DataLoader worker wrapped it with a traceback."""
    text = str(err).strip()
    if "Original Traceback" in text:  # re-raised from a worker: the original message is the last line
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text.splitlines()[0] if text else type(err).__name__


def summary(result: dict, run_dir: str) -> str:
    m = result["metrics"]
    return (f"{result['snr']}_{result['machine']}/{result['id']}: test AUROC {m['auroc']:.3f}  pAUC {m['pauc']:.3f}  "
            f"F1 {m['f1']:.3f}  balanced accuracy {m['balanced_accuracy']:.3f}\n"
            f"run folder: {run_dir}\n"
            f"dashboard:  tensorboard --logdir {run_dir}")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        result = train(cfg)
    except MachineSoundError as err:  # also when raised in a DataLoader worker: the type survives
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    print(summary(result, cfg.paths.output_dir))
    return result["metrics"]["auroc"]


if __name__ == "__main__":
    main()
