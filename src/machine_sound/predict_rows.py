"""What predict writes: one CSV row per file (its windows' outputs averaged, or their maximum) and, for a timeline,
one row per window; the same for a checkpoint and for an ONNX file. Torch-free.

A model here is anything with `class_names`, `task` (`machine_sound.tasks.Task`), `threshold` (a number, or one
per machine ID for a detector) and `threshold_fitted`: a LightningModule of this package, or the ONNX scorer
(`machine_sound.predict_onnx`) that reads them from the file's metadata.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from machine_sound.errors import DataError
from machine_sound.scored_ids import file_id
from machine_sound.writing import write_atomic

AGGREGATES = ("mean", "max")


def by_file(recordings, outputs: np.ndarray) -> dict[int, np.ndarray]:
    """The window outputs (windows, K) grouped by file index, each file's windows in order (a file's windows
    come in a row, in file order)."""
    counts = [len(starts) for starts in recordings.starts.values()]
    return dict(zip(recordings.starts, np.split(outputs, np.cumsum(counts)[:-1])))


def file_rows(recordings, outputs: np.ndarray, model, aggregate: str = "mean") -> list[dict]:
    """One row per file of `recordings` (`machine_sound.recordings.Recordings`), from the model's outputs of every
    window (windows, K): class probabilities, or a detector's anomaly score as each machine ID. A file that could
    not be read gets its error instead."""
    grouped = by_file(recordings, outputs)
    rows = []
    for i, path in enumerate(recordings.files):
        if i in recordings.errors:
            rows.append({"path": str(path), "error": recordings.errors[i]})
            continue
        windows = grouped[i]
        scores = windows.mean(axis=0) if aggregate == "mean" else windows.max(axis=0)
        rows.append(score_row({"path": str(path), "windows": len(windows)}, path, scores, model))
    return rows


def window_rows(recordings, outputs: np.ndarray, model) -> list[dict]:
    """One row per window of every readable file: path, window number, start and end in seconds, and the columns
    of that window alone (as `file_rows` gives a file)."""
    grouped, rows = by_file(recordings, outputs), []
    for i, path in enumerate(recordings.files):
        if i in recordings.errors:
            continue
        for j, ((start, end), scores) in enumerate(zip(recordings.spans(i), grouped[i])):
            row = {"path": str(path), "window": j, "start_s": round(start, 3), "end_s": round(end, 3)}
            rows.append(score_row(row, path, scores, model))
    return rows


def score_row(row: dict, path: Path, scores: np.ndarray, model) -> dict:
    """`row` with a file's (or window's) scores (K,) by the model's task: a detector's anomaly score and decision;
    a binary classifier's p(positive), threshold and decision; a multiclass one's probabilities and decision."""
    names, task = model.class_names, model.task
    if task.score == "anomaly":  # a detector: the score as a recording of its own machine ID
        return anomaly_row(row, path, scores, model)
    if not np.isfinite(scores).all():
        return {**row, "error": not_finite(scores)}
    if task.decision == "threshold":  # binary: the positive class's probability against the threshold
        threshold = float(np.asarray(model.threshold))
        row.update({f"p_{names[1]}": round(float(scores[1]), 6), "threshold": round(threshold, 6),
                    "decision": names[1] if scores[1] > threshold else names[0]})
        return row
    row.update({f"p_{name}": round(float(p), 6) for name, p in zip(names, scores)})
    row["decision"] = names[int(np.argmax(scores))]
    return row


def anomaly_row(row: dict, path: Path, scores: np.ndarray, model) -> dict:
    """A detector's row: the machine ID (the model's only one, or the one the file names), the anomaly score (its
    windows' scores as that ID, averaged or their maximum) and the decision at that ID's threshold."""
    names = model.class_names
    machine_id = file_id(path, names)
    if not machine_id:
        return {**row, "error": f"no anomaly score: neither the name nor a folder names one of the model's "
                                f"machine IDs or sections, the ones it learned ({', '.join(names)})"}
    k = names.index(machine_id)
    score, threshold = float(scores[k]), float(np.asarray(model.threshold)[k])
    if not np.isfinite(score):
        return {**row, "machine_id": machine_id, "error": not_finite(scores[k:k + 1])}
    row.update(machine_id=machine_id, anomaly_score=float(f"{score:.7g}"))
    if bool(model.threshold_fitted):  # a checkpoint without a validation epoch has none
        row.update(threshold=float(f"{threshold:.7g}"), decision="anomalous" if score > threshold else "normal")
    return row


def not_finite(scores: np.ndarray) -> str:
    """A row's error for a score that is NaN or infinite: never a decision."""
    return (f"no score or decision: the model gave {', '.join(str(float(v)) for v in scores[:3])}, not a "
            "finite number (a damaged or hand-edited model file?); score it with the checkpoint, or export it again")


def unwritable(output: Path, err: OSError) -> DataError:
    return DataError(f"cannot write {output}: {err.strerror}; give output= a writable .csv path (or folder, for "
                     "a DCASE model)")


def write_csv(output: Path, rows: list[dict]) -> None:
    """The rows as a CSV (columns in order of first appearance, `error` last), replaced in one step."""
    fields = list(dict.fromkeys(key for row in rows for key in row if key != "error"))
    if any("error" in row for row in rows) or "window" not in fields:
        fields.append("error")

    def write(staging: Path) -> None:
        with open(staging, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)

    try:
        write_atomic(output, write)
    except OSError as err:
        raise unwritable(output, err) from None
