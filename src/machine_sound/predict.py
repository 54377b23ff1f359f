"""Score new recordings with a trained model, from its checkpoint or from its exported ONNX file:

    python -m machine_sound.predict ckpt_path=<file.ckpt> input=<file or folder> [output=<csv>] [aggregate=mean|max]
                                    [timeline=true]
    python -m machine_sound.predict model_path=<file.onnx> input=...   (ONNX Runtime only: no torch needed)
    (or machine-sound-predict ..., once installed)
    output=<folder> (a model of data=dcase): predictions_<machine>.csv and the DCASE challenge's result files there

A recording of any length is cut into clip-length windows (back to back, the last one aligned to the end; a short
one zero-padded); the model scores every window (`predict_checkpoint`: Lightning's `Trainer.predict`;
`predict_onnx`: ONNX Runtime), and each file's window outputs (class probabilities, or a detector's anomaly
scores) are averaged (`aggregate=mean`) or their maximum taken (`aggregate=max`, for faults that come and go) into
one CSV row per file (`predict_rows`); a detector's row has the anomaly score and the decision at the threshold
fitted on normal clips. `timeline=true` also writes one row per window and a picture per file of the score over
time (`timeline`). A file that cannot be read gets a row with its error instead of stopping the others.
`ckpt_path`, `model_path`, `input` and `output` are taken as written (paths may hold '=', ',' or spaces); other
arguments change how files are read (`data.resample=true`, `data.batch_size=64`, ...).

This module imports neither torch nor Lightning nor Hydra itself: only the checkpoint path loads them.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path

from machine_sound.console import parse_arguments
from machine_sound.errors import ConfigError, one_line, user_error
from machine_sound.predict_rows import AGGREGATES, file_rows, unwritable, window_rows, write_csv
from machine_sound.recordings import Recordings, find_inputs, window_starts  # noqa: F401  (predict's public names)
from machine_sound.scored_ids import check_ids, file_id, own_id  # noqa: F401  (own_id: predict's public name)

log = logging.getLogger(__name__)
USAGE = ("usage: python -m machine_sound.predict ckpt_path=<checkpoint.ckpt> | model_path=<model.onnx> "
         "input=<file or folder> [output=<file.csv>] [aggregate=mean|max] [timeline=true] [key=value ...]")


def load_scorer(model_path: str | Path, overrides=()):
    """The model behind a path: an exported `.onnx` file (`predict_onnx.OnnxModel`, no torch) or a checkpoint
    (`predict_checkpoint.CheckpointModel`)."""
    if str(model_path).lower().endswith(".onnx"):
        from machine_sound.predict_onnx import OnnxModel

        return OnnxModel(model_path, overrides)
    try:
        from machine_sound.predict_checkpoint import CheckpointModel
    except ImportError as err:  # an edge install with onnxruntime only
        raise ConfigError(f"ckpt_path= needs the training stack ({err.name} is not installed); install machine-sound "
                          "with its dependencies, or export the model (machine-sound-export) and give "
                          "model_path=<file.onnx>") from None
    return CheckpointModel(model_path, overrides)


def predict(model_path: str | Path, source: str | Path, output: str | Path | None = None, aggregate: str = "mean",
            overrides: list[str] = (), timeline: bool = False) -> tuple[Path, list[dict]]:
    """Score every recording under `source` (a file or a folder, searched recursively for .wav/.flac by
    `find_inputs`) with the model of `model_path` (a checkpoint, or an ONNX file from machine-sound-export); write
    the CSV (default `outputs/predictions/<time>/predictions.csv`) and return its path and rows. `output` may be a
    folder for a model trained on DCASE 2021-2025 data: predictions_<machine>.csv and the challenge's result files
    (`machine_sound.challenge_files`) go there. With `timeline`, `<stem>_timeline.csv` and `<stem>_timeline/*.png`
    go beside the CSV (`machine_sound.timeline`). DataError when no file can be scored: none readable or, for a
    model scored by machine ID, none naming one of its IDs."""
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate={aggregate}: choose mean or max")
    if not isinstance(timeline, bool):
        raise ConfigError(f"timeline={timeline!r}: true or false")
    if timeline:
        from machine_sound.timeline import pyplot

        pyplot()  # matplotlib is there, before anything is scored
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
    made = [folder for folder in (output.parent, *output.parent.parents) if not folder.exists()]
    try:  # a folder that cannot be made fails now, not after every file is scored
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise unwritable(output, err) from None
    try:
        return _predict(model_path, source, output, aggregate, overrides, challenge, timeline)
    except BaseException:  # a prediction that failed leaves none of the folders it made behind
        for folder in made:  # deepest first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _predict(model_path, source, output: Path, aggregate: str, overrides, challenge: bool,
             timeline: bool) -> tuple[Path, list[dict]]:
    model = load_scorer(model_path, overrides)
    if challenge and model.layout != "DcaseReader":
        raise ConfigError(f"output={output.parent}: a folder receives the DCASE challenge's result files, for a "
                          "model trained with data=dcase; give the path of a .csv file to write (it is replaced if "
                          "it exists)")
    if challenge:  # one CSV per machine type, so a submission can be built type by type in one folder
        output = output.with_name(f"predictions_{model.machine}.csv")
    if timeline:
        from machine_sound.timeline import check_place

        check_place(output)
    recordings = Recordings(find_inputs(source), model.decoding, model.num_frames)
    check_ids(recordings, model, source)
    if challenge:
        from machine_sound.challenge_files import check_inputs

        check_inputs(recordings.files, model.machine, model.class_names, output.parent)
    outputs = model.outputs(recordings)
    rows = file_rows(recordings, outputs, model, aggregate)
    write_csv(output, rows)
    from machine_sound.timeline import timeline_paths, write_timeline

    if timeline:
        table, pictures = write_timeline(output, window_rows(recordings, outputs, model), model, source)
        log.info("timeline: %s and %d picture(s) in %s", table, len(pictures), table.with_suffix(""))
    elif any(path.exists() for path in timeline_paths(output)):
        log.warning("%s is beside this CSV from an earlier prediction with timeline=true; it does not belong to this "
                    "one (add timeline=true to replace it, or delete it)", timeline_paths(output)[0])
    if challenge:
        from machine_sound.challenge_files import write_result_files

        written = write_result_files(output.parent, rows, model.machine)
        others = sorted(p.name for p in output.parent.glob("*_section_*.csv") if p not in written)
        log.info("wrote %d DCASE result file(s) into %s%s", len(written), output.parent,
                 f"; {len(others)} other result file(s) there are left as they were" if others else "")
    return output, rows


def main(argv: list[str] | None = None) -> None:
    own, overrides = parse_arguments(sys.argv[1:] if argv is None else argv, ["input"],
                                     ["ckpt_path", "model_path", "output", "aggregate", "timeline"], usage=USAGE)
    given = [key for key in ("ckpt_path", "model_path") if own.get(key)]
    if len(given) != 1:
        print(f"error: give ckpt_path=<checkpoint.ckpt> or model_path=<model.onnx>, one of them\n{USAGE}",
              file=sys.stderr)
        sys.exit(2)
    timeline = own.get("timeline", "false").lower()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        if timeline not in ("true", "false"):
            raise ConfigError(f"timeline={own['timeline']}: true or false")
        output, rows = predict(own[given[0]], own["input"], own.get("output"), own.get("aggregate", "mean"),
                               overrides, timeline == "true")
    except Exception as err:  # ours, a failed write, or one wrapped by a DataLoader worker
        if user_error(err) is None:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    failed = sum(1 for r in rows if "windows" not in r)
    unnamed = sum(1 for r in rows if "windows" in r and "neither the name" in r.get("error", ""))  # read, no ID
    infinite = sum(1 for r in rows if "windows" in r and r.get("error")) - unnamed  # read, no finite score
    decided = [r["decision"] for r in rows if r.get("decision")]
    counts = ", ".join(f"{decided.count(c)} {c}" for c in dict.fromkeys(sorted(decided)))
    problems = [f"{failed} unreadable" if failed else "", f"{unnamed} name no machine ID" if unnamed else "",
                f"{infinite} without a finite score" if infinite else ""]
    print(f"scored {len(rows) - failed - unnamed - infinite} of {len(rows)} files ({counts or 'none'}"
          f"{''.join(f'; {p}' for p in problems if p)}): {output}")


if __name__ == "__main__":
    main()
