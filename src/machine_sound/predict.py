"""Score new recordings with a trained checkpoint:

    python -m machine_sound.predict ckpt_path=<file> input=<file or folder> [output=<csv>] [aggregate=mean|max]
    (or machine-sound-predict ..., once installed)
    output=<folder> (a model of data=dcase): predictions_<machine>.csv and the DCASE challenge's result files there

The checkpoint's model turns waveforms into scores by itself (front end, statistics, weights, threshold); its
stored run config says how to read a file (sample rate, channel choice, clip length). A recording of any length
is cut into clip-length windows (back to back, the last one aligned to the end; a short one zero-padded), the
windows run through `Trainer.predict`, and a `PredictionWriter` averages each file's window outputs (class
probabilities, or a detector's anomaly scores) (`aggregate=mean`) or takes their maximum (`aggregate=max`, for
faults that come and go) into one CSV row per file; a detector's row has the anomaly score and the decision at
the threshold fitted on normal clips. A file that cannot be read gets a row with its error instead of stopping
the others. `ckpt_path`, `input` and `output` are taken as written (paths may hold '=', ',' or spaces); other
arguments are Hydra overrides of the stored run config's reading settings (`READING`, e.g. `data.resample=true`).
"""

from __future__ import annotations

import csv
import logging
import sys
from datetime import datetime
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from machine_sound.console import quiet_lightning
from machine_sound.data.audio import BadFileError, Decoding, decode, fit_length, verify
from machine_sound.data.records import find_audio
from machine_sound.errors import ConfigError, DataError, one_line, user_error
from machine_sound.runs import check_fits, load_checkpoint, load_model, parse_arguments, run_config, write_atomic
from machine_sound.scored_ids import check_ids, file_id, own_id  # noqa: F401  (own_id: predict's public name)

log = logging.getLogger(__name__)
USAGE = ("usage: python -m machine_sound.predict ckpt_path=<checkpoint.ckpt> input=<file or folder> "
         "[output=<file.csv>] [aggregate=mean|max] [key=value ...]")
AGGREGATES = ("mean", "max")
# The stored run config's settings that reading a file depends on: the only ones predict lets you change.
READING = ("data.channel", "data.resample", "data.clip_seconds", "data.batch_size", "data.sample_rate")


def window_starts(frames: int, size: int) -> list[int]:
    """Where the `size`-frame windows of a `frames`-long recording start: back to back, the last one ending with
    the recording; one window (zero-padded) when the recording is shorter."""
    if frames <= size:
        return [0]
    starts = list(range(0, frames - size + 1, size))
    return starts if starts[-1] == frames - size else starts + [frames - size]


class RecordingWindows(Dataset):
    """`(wave (channels, num_frames) float32, file index)` for every window of every readable file.

    Each file is checked once when the dataset is built (`verify`): a bad file is kept in `errors` (file index ->
    message) and has no windows. A wrong sample rate or a missing channel is a setting problem: DataError.
    """

    def __init__(self, files: list[Path], decoding: Decoding, num_frames: int):
        self.files, self.decoding, self.num_frames = files, decoding, num_frames
        self.errors: dict[int, str] = {}
        self.windows: list[tuple[int, int]] = []  # (file index, first frame)
        self._last: tuple[int, np.ndarray] | None = None  # the file decoded last: its windows come in a row
        for i, path in enumerate(files):
            try:
                frames = verify(path, decoding)
            except BadFileError as err:
                self.errors[i] = str(err)
                log.warning("not scored: %s", err)
                continue
            self.windows += [(i, start) for start in window_starts(frames, num_frames)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int):
        file, start = self.windows[index]
        if self._last is None or self._last[0] != file:
            self._last = (file, decode(self.files[file], self.decoding)[0])
        wave = self._last[1][:, start:start + self.num_frames]
        return torch.from_numpy(fit_length(wave, self.num_frames)), file


class PredictionWriter(BasePredictionWriter):
    """Collects the window probabilities of every file and, when prediction ends, writes one CSV row per file:
    its columns follow the model's task (`machine_sound.tasks`)."""

    def __init__(self, dataset: RecordingWindows, output: Path, aggregate: str = "mean"):
        super().__init__(write_interval="batch")
        self.dataset, self.output, self.aggregate = dataset, output, aggregate
        self.probs: dict[int, list[torch.Tensor]] = {}
        self.rows: list[dict] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx=0) -> None:
        for file, probs in zip(batch[1].tolist(), prediction.cpu()):
            self.probs.setdefault(file, []).append(probs)

    def on_predict_end(self, trainer, pl_module) -> None:
        self.rows = [self.row(i, path, pl_module) for i, path in enumerate(self.dataset.files)]
        fields = list(dict.fromkeys(key for row in self.rows for key in row if key != "error")) + ["error"]

        def write(staging: Path) -> None:
            with open(staging, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, restval="")
                writer.writeheader()
                writer.writerows(self.rows)

        try:
            write_atomic(self.output, write)
        except OSError as err:
            raise unwritable(self.output, err) from None

    def row(self, index: int, path: Path, model) -> dict:
        row: dict = {"path": str(path)}
        if index in self.dataset.errors:
            return {**row, "error": self.dataset.errors[index]}
        windows = torch.stack(self.probs[index])
        probs = windows.mean(dim=0) if self.aggregate == "mean" else windows.max(dim=0).values
        names, task = model.class_names, model.task
        row["windows"] = len(windows)
        if task.score == "anomaly":  # a detector: the score as a recording of its own machine ID
            return self.anomaly_row(row, path, probs, model)
        if task.decision == "threshold":  # binary: the positive class's probability against the threshold
            threshold = model.threshold.item()
            row.update({f"p_{names[1]}": round(float(probs[1]), 6), "threshold": round(threshold, 6),
                        "decision": names[1] if probs[1] > threshold else names[0]})
            return row
        row.update({f"p_{name}": round(float(p), 6) for name, p in zip(names, probs)})
        row["decision"] = names[int(probs.argmax())]
        return row

    @staticmethod
    def anomaly_row(row: dict, path: Path, scores: torch.Tensor, model) -> dict:
        """A detector's row: the machine ID (the model's only one, or the one the file names), the anomaly score
        (its windows' scores as that ID, averaged or their maximum) and the decision at that ID's threshold."""
        names = model.class_names
        machine_id = file_id(path, names)
        if not machine_id:
            return {**row, "error": f"no anomaly score: neither the name nor a folder names one of the model's "
                                    f"machine IDs or sections, the ones it learned ({', '.join(names)})"}
        k = names.index(machine_id)
        score, threshold = float(scores[k]), float(model.threshold[k])
        row.update(machine_id=machine_id, anomaly_score=float(f"{score:.7g}"))
        if bool(model.threshold_fitted):  # a checkpoint without a validation epoch has none
            row.update(threshold=float(f"{threshold:.7g}"), decision="anomalous" if score > threshold else "normal")
        return row


def unwritable(output: Path, err: OSError) -> DataError:
    return DataError(f"cannot write {output}: {err.strerror}; give output= a writable .csv path (or folder, for "
                     "a DCASE model)")


def find_inputs(source: str | Path) -> list[Path]:
    """The recordings to score: `source` itself when it is a file, else the .wav/.flac files under it found by the
    readers' rule (`records.find_audio`: any case, linked folders followed, hidden `._*` files ignored), sorted.
    DataError when `source` does not exist or holds none."""
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"input {path} does not exist; give an audio file or a folder of them")
    files = find_audio(path)
    if not files:
        raise DataError(f"no .wav/.flac files in {path}")
    log.info("found %d recordings under %s", len(files), path)
    return files


def predict(ckpt_path: str | Path, source: str | Path, output: str | Path | None = None, aggregate: str = "mean",
            overrides: list[str] = ()) -> tuple[Path, list[dict]]:
    """Score every recording under `source` (a file or a folder, searched recursively for .wav/.flac by
    `find_inputs`); write the CSV (default `outputs/predictions/<time>/predictions.csv`) and return its path and
    rows. `output` may be a folder for a model trained on DCASE 2021-2025 data: predictions_<machine>.csv and the
    challenge's result files (`machine_sound.challenge_files`) go there. DataError when no file can be scored:
    none readable or, for a model scored by machine ID, none naming one of its IDs."""
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate={aggregate}: choose mean or max")
    quiet_lightning()
    if output is None:
        output = Path("outputs") / "predictions" / f"{datetime.now():%Y-%m-%d_%H-%M-%S-%f}" / "predictions.csv"
    folder = str(output).endswith(("/", "\\"))
    output = Path(output)
    challenge = output.is_dir() or (not output.exists() and (folder or not output.suffix))
    if output.suffix.lower() != ".csv" and not challenge:
        raise ConfigError(f"output={output}: give the path of a .csv file to write (it is replaced if it exists), "
                          "or a folder for the DCASE challenge's result files")
    if challenge:  # a folder: the DCASE result files (checked against the model once it is loaded)
        output = output / "predictions.csv"  # renamed after the model's machine type once it is known
    made = not output.parent.exists()
    try:  # a folder that cannot be made fails now, not after every file is scored
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise unwritable(output, err) from None
    try:
        return _predict(ckpt_path, source, output, aggregate, overrides, challenge)
    except BaseException:  # a prediction that failed leaves no empty folder behind
        if made and output.parent.is_dir() and not any(output.parent.iterdir()):
            output.parent.rmdir()
        raise


def _predict(ckpt_path, source, output: Path, aggregate: str, overrides,
             challenge: bool = False) -> tuple[Path, list[dict]]:
    cfg = run_config(load_checkpoint(ckpt_path), overrides, only=READING)
    layout = str(OmegaConf.select(cfg, "data.reader._target_", default="") or "").rsplit(".", 1)[-1]
    if challenge and layout != "DcaseReader":
        raise ConfigError(f"output={output.parent}: a folder receives the DCASE challenge's result files, for a "
                          "model trained with data=dcase; give the path of a .csv file to write (it is replaced if "
                          "it exists)")
    machine = OmegaConf.select(cfg, "machine", default=None)
    if challenge:  # one CSV per machine type, so a submission can be built type by type in one folder
        output = output.with_name(f"predictions_{machine}.csv")
    model = load_model(ckpt_path, cfg)
    decoding = check_fits(cfg, model)
    dataset = RecordingWindows(find_inputs(source), decoding, int(round(cfg.data.clip_seconds * decoding.sample_rate)))
    if not dataset.windows:  # nothing to score is a failure, not an empty table
        first = next(iter(dataset.errors.values()))
        raise DataError(f"none of the {len(dataset.files)} file(s) could be read; the first: {first}")
    check_ids(dataset, model, source)
    if challenge:
        from machine_sound.challenge_files import check_inputs

        check_inputs(dataset.files, machine, model.class_names, output.parent)
    writer = PredictionWriter(dataset, output, aggregate)
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[writer])
    loader = DataLoader(dataset, batch_size=int(cfg.data.batch_size), pin_memory=torch.cuda.is_available())
    trainer.predict(model, dataloaders=loader, return_predictions=False)
    if challenge:
        from machine_sound.challenge_files import write_result_files

        written = write_result_files(output.parent, writer.rows, machine)
        others = sorted(p.name for p in output.parent.glob("*_section_*.csv") if p not in written)
        log.info("wrote %d DCASE result file(s) into %s%s", len(written), output.parent,
                 f"; {len(others)} other result file(s) there are left as they were" if others else "")
    return output, writer.rows


def main(argv: list[str] | None = None) -> None:
    own, overrides = parse_arguments(sys.argv[1:] if argv is None else argv, ["ckpt_path", "input"],
                                     ["output", "aggregate"], usage=USAGE)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        output, rows = predict(own["ckpt_path"], own["input"], own.get("output"), own.get("aggregate", "mean"),
                               overrides)
    except Exception as err:  # ours, a failed write, or one wrapped by a DataLoader worker
        if user_error(err) is None:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    failed = sum(1 for r in rows if "windows" not in r)
    unnamed = sum(1 for r in rows if "windows" in r and r.get("error"))  # read, but naming none of the model's IDs
    decided = [r["decision"] for r in rows if r.get("decision")]
    counts = ", ".join(f"{decided.count(c)} {c}" for c in dict.fromkeys(sorted(decided)))
    print(f"scored {len(rows) - failed - unnamed} of {len(rows)} files ({counts or 'none'}"
          f"{f'; {failed} unreadable' if failed else ''}{f'; {unnamed} name no machine ID' if unnamed else ''}): "
          f"{output}")


if __name__ == "__main__":
    main()
