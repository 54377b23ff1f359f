"""What train, eval and predict share about a run: the config stored in its checkpoints, loading a checkpoint
safely, the command line of the checkpoint tools, and the metrics record (`metrics.json`).

Heavy imports (torch, Lightning) stay inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from machine_sound.console import parse_arguments  # noqa: F401  (its public home was here)
from machine_sound.errors import ConfigError, DataError, require_positive
from machine_sound.tasks import checkpoint_mode
from machine_sound.writing import write_atomic, write_json  # noqa: F401  (their public home was here)

RUN_CONFIG = "machine_sound_run_config"  # checkpoint key: the training run's unresolved config
FORMAT_KEY, FORMAT = "machine_sound_format", 2  # 2: the model owns its front end (2026-11-29)
_ABSENT = object()


def load_checkpoint(ckpt_path: str | Path) -> dict:
    """A checkpoint written by this project's training, loaded with `weights_only=True` (no code runs), with one
    clear DataError for every way that can fail."""
    import torch

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
    if checkpoint.get(FORMAT_KEY) != FORMAT:
        raise DataError(f"{path} was written by another version of machine-sound (checkpoint format "
                        f"{checkpoint.get(FORMAT_KEY, 1)}, this version reads {FORMAT}: the format changed on "
                        "2026-11-29, when the model took over its log-mel front end); train the model again")
    return checkpoint


def stored_config(cfg: DictConfig) -> dict:
    """The run's config as checkpoints keep it: unresolved, so `snr=6_dB` given to eval later moves everything
    that follows the SNR, but with the data's folders made absolute (`paths.data_dir`, and `data.root` when it
    was typed as a relative path), so the checkpoint finds its data from any folder."""
    stored = OmegaConf.to_container(cfg, resolve=False)
    stored["paths"]["data_dir"] = str(Path(cfg.paths.data_dir).resolve())
    root = stored["data"].get("root")
    if isinstance(root, str) and "${" not in root:
        stored["data"]["root"] = str(Path(root).resolve())
    return stored


def run_config(checkpoint: dict, overrides: Sequence[str] = (), fixed: Sequence[str] = ("model",),
               only: Sequence[str] | None = None) -> DictConfig:
    """The training run's config that a checkpoint carries, with Hydra-syntax `key=value` overrides applied.

    Raises ConfigError for a key the config does not have, a sweep (`a=1,2`), a config group switched (`data=x`:
    the stored config holds its keys, not its name), a key under `fixed` (the model is the checkpoint's: its
    settings do nothing here), or, when `only` is given, any other key than those."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    import machine_sound.config  # noqa: F401  (registers the resolvers the stored config uses)

    cfg = OmegaConf.create(checkpoint[RUN_CONFIG])
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ConfigError(f"cannot read the override {str(err).splitlines()[0]!r}; quote a value holding '=', ',' "
                          "or spaces as in key='value'") from None
    for override in parsed:
        key = override.key_or_group
        if override.is_sweep_override():
            raise ConfigError(f"{key}: one value per setting here, not a sweep (quote a value holding ',')")
        current = OmegaConf.select(cfg, key, default=_ABSENT)
        if current is _ABSENT:
            raise ConfigError(f"unknown setting '{key}' (the run's config has no such key)")
        if OmegaConf.is_dict(current) and ("." not in key or override.value() is not None):
            raise ConfigError(f"{key}={override.value()}: a config group cannot be switched on a stored run config; "
                              f"change its keys instead ({key}.<key>=...; a part such as data.generator can be "
                              "set to null)")
        if key.split(".")[0] in fixed:
            raise ConfigError(f"{key}: the model and its settings are the checkpoint's and cannot change here; "
                              "train another model")
        if only is not None and key not in only:
            raise ConfigError(f"{key}: only {', '.join(only)} can be set here")
        OmegaConf.update(cfg, key, override.value(), merge=False)
    return cfg


def check_fits(cfg: DictConfig, model):
    """The data settings must fit the model: its task, its channel count, the sample rate its front end was built
    for, and clips long enough for its STFT window. Returns the `Decoding` that reads files for it; ConfigError
    otherwise."""
    from machine_sound.data.audio import Decoding

    decoding = Decoding(cfg.data.sample_rate, cfg.data.channel, cfg.data.resample)  # checks these three
    require_positive("data.batch_size", cfg.data.batch_size, integer=True)
    rate, channels = model.frontend.sample_rate, model.hparams.in_chans
    if decoding.out_channels != channels:
        raise ConfigError(f"data.channel={decoding.channel} gives {decoding.out_channels} channel(s), but the model "
                          f"was trained on {channels}")
    samples = int(round(require_positive("data.clip_seconds", cfg.data.clip_seconds) * decoding.sample_rate))
    if samples < model.min_samples:
        window = model.frontend.mel.spectrogram.n_fft // 2 + 1
        needs = (f"the front end's STFT needs ({window})" if model.min_samples <= window else
                 f"one of the model's vectors needs ({model.min_samples}: model.frames STFT frames)")
        raise ConfigError(f"data.clip_seconds={cfg.data.clip_seconds} gives {samples} samples, fewer than {needs}; "
                          "use longer clips")
    if cfg.data.sample_rate != rate:
        raise ConfigError(f"data.sample_rate={cfg.data.sample_rate}, but the model's front end hears {rate} Hz audio; "
                          f"keep {rate} and set data.resample=true to resample files at other rates")
    if cfg.data.task != model.task.name:
        raise ConfigError(f"data.task={cfg.data.task}, but the model was trained for task {model.task.name}")
    return decoding


def load_model(ckpt_path: str | Path, cfg: DictConfig, map_location="cpu"):
    """The trained model of a checkpoint, as the class its run config names (`model._target_`), through
    Lightning's `load_from_checkpoint(weights_only=True)`: the weights, the front end's statistics and the
    decision threshold are the checkpoint's; nothing is downloaded."""
    from hydra.utils import get_class

    try:
        model_class = get_class(cfg.model._target_)
        return model_class.load_from_checkpoint(ckpt_path, map_location=map_location, weights_only=True).eval()
    except Exception as err:  # a damaged or edited checkpoint: its weights or settings do not fit the model
        raise DataError(f"cannot rebuild the model of {ckpt_path}: {type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}") from None


def metrics_record(datamodule, model, tested: dict, checkpoint: str | None, epochs: int | None,
                   seed: int | None) -> dict:
    """What `metrics.json` holds after a test (training's, or machine_sound.eval's): what the run was (its data's
    own names: machine, id and snr where the layout has them, and its root and classes), the test metrics and the
    details behind them."""
    classes = list(datamodule.class_names)
    task = model.task
    threshold = None
    if task.decision == "threshold":
        threshold = model.threshold.item()
    elif task.decision == "normal_threshold" and bool(model.threshold_fitted):
        threshold = dict(zip(classes, model.threshold.tolist()))
    monitor = task.monitor
    rule = f"{'lowest' if checkpoint_mode(monitor) == 'min' else 'highest'} {monitor}"
    rule += " on normal validation clips" if task.by_label else " on validation clips"
    return {
        "name": datamodule.describe(), "task": task.name, "layout": datamodule.layout,
        "model": getattr(model, "option", type(model).__name__),  # its model= option
        **datamodule.identity(), "seed": seed, "backbone": model.hparams.get("backbone"),
        "positive_class": classes[1] if task.decision == "threshold" else None,
        "best_checkpoint": checkpoint, "epochs": epochs,
        # how the checkpoint was chosen: for normal-only detectors on normal validation clips, never on anomalies
        "checkpoint_rule": getattr(model, "checkpoint_rule", None) or rule,
        "threshold": threshold,
        "threshold_percentile": model.hparams.get("threshold_percentile") if task.by_label else None,
        "n_test": dict(zip(classes, datamodule.class_counts("test").tolist())),
        "bad_files_skipped": len(datamodule.bad_files),
        "metrics": {k.removeprefix("test/"): float(v) for k, v in tested.items() if k.startswith("test/")},
        "per_id": model.per_id,
        **challenge_record(datamodule, model),
        # rows: true class, columns: predicted, in `classes` order (none without a decision)
        "confusion": model.confusion.tolist() if model.confusion is not None else None,
    }


def challenge_record(datamodule, model) -> dict:
    """DCASE 2021-2025 data: which evaluator's rules scored the test, and why the official score is missing when
    it is (`machine_sound.challenge`); nothing for other data."""
    from machine_sound.challenge import official_score

    evaluator = getattr(datamodule, "evaluator", None)
    if not evaluator or not getattr(model, "per_id", None):
        return {"evaluator": evaluator} if evaluator else {}
    score, why = official_score(model.per_id, evaluator)
    return {"evaluator": evaluator, **({"official_score_missing": why} if score is None else {})}


def write_test_scores(path: Path, datamodule, model) -> None:
    """`test_scores.csv`: every test clip (test-loader order) with its class, anomaly flag and the score the test
    step gave it, named as predict names them: `p_<positive>` (binary), `p_<class>` (multiclass) or
    `anomaly_score` with the `decision` at its ID's threshold (id_anomaly)."""
    import csv

    scores = model.test_outputs[0]
    names = model.class_names
    decisions = getattr(model, "test_decisions", None)
    if scores.dim() == 2:
        header = [f"p_{name}" for name in names]
    else:
        header = ["anomaly_score" if model.task.score == "anomaly" else f"p_{names[1]}"]
    if model.task.score == "anomaly" and decisions is not None:
        header.append("decision")

    def write(staging: Path) -> None:
        with open(staging, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "class", "anomalous", *header])
            for i, (record, score) in enumerate(zip(datamodule.splits["test"], scores.tolist())):
                flag = record.anomalous if record.anomalous >= 0 else ""
                values = [f"{v:.6f}" for v in (score if isinstance(score, list) else [score])]
                if "decision" in header:
                    values.append("anomalous" if decisions[i] else "normal")
                writer.writerow([str(record.path), names[record.label], flag, *values])

    write_atomic(path, write)


def summary(result: dict, folder: str | Path) -> str:
    """The lines printed at the end of a run: its test metrics, its folder, and how to see its dashboards."""
    m = result["metrics"]
    shown = [(label, m[key]) for key, label in (("auroc", "AUROC"), ("pauc", "pAUC"), ("f1", "F1"),
                                                 ("balanced_accuracy", "balanced accuracy"),
                                                 ("official_score", "official score")) if key in m]
    tested = "  ".join(f"{label} {value:.3f}" for label, value in shown)
    if result.get("untested"):
        tested = "none (evaluation clips without labels: score them with machine_sound.predict)"
    return (f"{result['name']}: test {tested}\n"
            f"run folder: {folder}\n"
            f"dashboard:  tensorboard --logdir {folder}")


def require_writable(folder: Path, setting: str) -> None:
    """Make `folder` (with its parents) and write a file in it; DataError naming `setting` when that fails."""
    probe = folder / f".write-check-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DataError(f"cannot write {folder}: {err.strerror or err}; choose another {setting}") from None


def machine_description() -> str:
    """This machine in words, for results files: torch's CPU threads, the CPU model, the GPU or "no GPU"."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{torch.get_num_threads()} CPU threads ({cpu}), {gpu}"
