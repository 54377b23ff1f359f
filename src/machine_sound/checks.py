"""Settings checked before anything is built, so a bad value ends in one line naming it, not in a traceback from
torch or Lightning after seconds of setup. The data's own settings are checked where they are used (the data
module, the readers, `runs.check_fits`); this module checks the run-level ones: seed, trainer and optimizer.
"""

from __future__ import annotations

from omegaconf import DictConfig

from machine_sound.errors import ConfigError, require_positive

# Lightning's precision values that keep the model's weights in float32 or float64 ("-mixed" runs the backbone's
# arithmetic in half precision under autocast; the log-mel front end stays float32 in every case).
PRECISIONS = ("32-true", "32", 32, "64-true", "64", 64, "16-mixed", "16", 16, "bf16-mixed", "bf16")
HALF_TRUE = ("16-true", "bf16-true", "transformer-engine", "transformer-engine-float16")


def check_seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"seed={value!r}: a whole number")
    return value


def check_trainer(trainer: DictConfig) -> None:
    """`trainer.max_epochs`, `precision` and `accelerator`: values Lightning would take and fail on later."""
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
    check_optimizer(cfg.model.get("optimizer"))
