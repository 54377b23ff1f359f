"""Evaluate a trained checkpoint again:

    python -m machine_sound.eval ckpt_path=<file> [key=value ...]      (or machine-sound-eval ..., once installed)

Every checkpoint that training writes carries the run's config. Evaluation starts from it, applies the
overrides given (another SNR, `data.reader.test_snr`, `data.root`, a split seed...), tests the checkpoint's
model (weights, decision threshold and front-end statistics) with the same test step, and writes the same
`metrics.json` into `outputs/evals/<name>/<time>/`. Without overrides it reproduces the numbers of the run that
tested it. `ckpt_path` is taken as written (a sweep job's folder may hold '=' or ','); the other arguments are
Hydra overrides of the stored config.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

from machine_sound.checks import check_trainer
from machine_sound.config import build_trainer, instantiate
from machine_sound.console import print_result, quiet_lightning
from machine_sound.data.records import relabel
from machine_sound.distributed import first_process
from machine_sound.errors import ConfigError, one_line, user_error
from machine_sound.runs import (
    check_fits,
    load_checkpoint,
    load_model,
    metrics_record,
    parse_arguments,
    run_config,
    summary,
    write_json,
    write_test_scores,
)

log = logging.getLogger(__name__)
EVAL_DIR = "MACHINE_SOUND_EVAL_DIR"  # the evaluation folder, passed to the other processes of a ddp evaluation
USAGE = "usage: python -m machine_sound.eval ckpt_path=<checkpoint.ckpt> [key=value ...]"


def match_classes(datamodule, model) -> None:
    """Map the data's labels to the model's classes by name, before the data is split: the same names in another
    order (e.g. `data.reader.classes=[abnormal,normal]`) are relabelled in the model's order, so the split and
    the metrics are those of the model's order. ConfigError naming both lists when the names differ, also when
    the reader refuses the data's classes for the model's task (three folders for a binary model)."""
    try:
        index = datamodule.index
    except ConfigError as err:
        raise ConfigError(f"the checkpoint's model tells {', '.join(model.class_names)} apart, but this data does "
                          f"not fit: {one_line(err)}") from None
    if list(index.class_names) != list(model.class_names):
        datamodule.index = relabel(index, model.class_names, flag_is_label=model.task.name == "binary")
        log.info("this data's classes %s are mapped by name to the model's %s", list(index.class_names),
                 list(model.class_names))


def evaluate(ckpt_path: str | Path, overrides: list[str] = (), output_dir: str | Path | None = None) -> dict:
    """Test `ckpt_path` on the data of its run (changed by `overrides`); write and return `metrics.json`. The
    data's classes are matched to the model's by name (`match_classes`). Raises DataError for a checkpoint that
    cannot be used and ConfigError for overrides or data whose classes do not fit it."""
    import lightning as L

    quiet_lightning()
    cfg = run_config(load_checkpoint(ckpt_path), overrides)
    check_trainer(cfg.trainer)  # an override such as trainer.accelerator=gpu
    if output_dir is None:
        output_dir = Path(cfg.paths.log_dir) / "evals" / str(cfg.data.name) / f"{datetime.now():%Y-%m-%d_%H-%M-%S-%f}"
        if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(EVAL_DIR):  # ddp: a process started by the
            output_dir = Path(os.environ[EVAL_DIR])                                  # first one shares its folder
        os.environ[EVAL_DIR] = str(output_dir)  # inherited by the processes Lightning starts
    cfg.paths.output_dir = str(output_dir)
    output_dir = Path(output_dir)
    model = load_model(ckpt_path, cfg)
    check_fits(cfg, model)  # before any data is written or read
    datamodule = instantiate(cfg.data)
    trainer = build_trainer(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    made = not output_dir.exists()
    try:
        datamodule.prepare_data()
        match_classes(datamodule, model)
        L.seed_everything(cfg.seed, workers=True)
        trainer.test(model, datamodule=datamodule, verbose=False)
        tested = dict(trainer.callback_metrics)
        result = metrics_record(datamodule, model, tested, str(ckpt_path), epochs=None, seed=cfg.seed)
        result.update(overrides=list(overrides), evaluation_dir=str(output_dir))
        if trainer.is_global_zero:  # several processes (ddp): the same result in each; the first writes it
            output_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, output_dir / "config.yaml")
            write_test_scores(output_dir / "test_scores.csv", datamodule, model)
            write_json(output_dir / "metrics.json", result)
    except BaseException:  # an evaluation that did not finish leaves no folder that looks like one
        if made:
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
    return result


def main(argv: list[str] | None = None) -> None:
    own, overrides = parse_arguments(sys.argv[1:] if argv is None else argv, ["ckpt_path"], usage=USAGE)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        result = evaluate(own["ckpt_path"], overrides)
    except Exception as err:  # ours, a failed write, or one wrapped by a DataLoader worker
        if user_error(err) is None:
            raise
        if first_process():  # ddp: every process meets the same error; the first says it
            print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    if first_process():  # with several processes (ddp), the first one speaks
        print_result(f"{summary(result, result['evaluation_dir']).splitlines()[0]}\n"
                     f"evaluation folder: {result['evaluation_dir']}")


if __name__ == "__main__":
    main()
