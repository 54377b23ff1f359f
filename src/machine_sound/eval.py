"""Evaluate a trained checkpoint: `python -m machine_sound.eval ckpt_path=<file> [key=value ...]`.

Every checkpoint that training writes carries the run's config. Evaluation starts from it, applies the
overrides given (another SNR, `data.test_snr`, `data.root`, a split seed...), tests the checkpoint's weights,
decision threshold and front-end statistics with the same test step, and writes the same `metrics.json` into
`outputs/evals/<name>/<time>/`. Without overrides it reproduces the numbers of the run that tested it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from machine_sound.errors import ConfigError, DataError, MachineSoundError
from machine_sound.train import instantiate, metrics_record, one_line, summary

USAGE = "usage: python -m machine_sound.eval ckpt_path=<checkpoint.ckpt> [key=value ...]"
_ABSENT = object()


def load_checkpoint(ckpt_path: str | Path) -> dict:
    """A checkpoint written by this project's training, with one clear error for every way that can fail."""
    import torch

    from machine_sound.models.classifier import RUN_CONFIG

    path = Path(ckpt_path)
    if not path.is_file():
        raise DataError(f"no checkpoint at {path}; give ckpt_path=<run folder>/checkpoints/<name>.ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights-only errors all mean: not a usable checkpoint
        raise DataError(f"{path} is not a PyTorch checkpoint that can be loaded safely ({type(err).__name__})"
                        ) from None
    if not isinstance(checkpoint, dict) or RUN_CONFIG not in checkpoint:
        raise DataError(f"{path} is not a checkpoint written by machine-sound training (it holds no run config)")
    return checkpoint


def run_config(checkpoint: dict) -> DictConfig:
    """The training run's config that a checkpoint from `load_checkpoint` carries."""
    from machine_sound.models.classifier import RUN_CONFIG

    return OmegaConf.create(checkpoint[RUN_CONFIG])


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Hydra-syntax `key=value` overrides onto the stored config; a key the config does not have is an error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(f"{key}: evaluation takes one value per setting, not a sweep")
        if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
            raise ConfigError(f"unknown setting '{key}' (the run's config has no such key)")
        OmegaConf.update(cfg, key, override.value(), merge=False)


def evaluate(ckpt_path: str | Path, overrides: list[str] = (), output_dir: str | Path | None = None) -> dict:
    """Test `ckpt_path` on the data of its run (changed by `overrides`); write and return `metrics.json`."""
    import lightning as L

    from machine_sound.models import SpectrogramClassifier

    cfg = run_config(load_checkpoint(ckpt_path))
    apply_overrides(cfg, list(overrides))
    if output_dir is None:
        output_dir = Path(cfg.paths.log_dir) / "evals" / str(cfg.data.name) / f"{datetime.now():%Y-%m-%d_%H-%M-%S-%f}"
    cfg.paths.output_dir = str(output_dir)
    output_dir = Path(output_dir)
    datamodule = instantiate(cfg.data)
    L.seed_everything(cfg.seed, workers=True)
    model = SpectrogramClassifier.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True,
                                                       pretrained=False, weights_path=None)  # no download
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    tested = trainer.test(model, datamodule=datamodule, ckpt_path=str(ckpt_path), verbose=False)[0]
    result = metrics_record(cfg, datamodule, model, tested, str(ckpt_path), epochs=None)
    result.update(overrides=list(overrides), evaluation_dir=str(output_dir))
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml")
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ckpt = [a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")]
    if not ckpt or argv in (["-h"], ["--help"]):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        result = evaluate(ckpt[-1], [a for a in argv if not a.startswith("ckpt_path=")])
    except MachineSoundError as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    print(summary(result, result["evaluation_dir"]).splitlines()[0])
    print(f"evaluation folder: {result['evaluation_dir']}")


if __name__ == "__main__":
    main()
