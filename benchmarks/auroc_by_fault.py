"""Which synthetic faults does a detector catch? Test AUROC per fault kind, from the runs of a sweep (or single
runs) on the built-in synthetic data.

Each run's `test_scores.csv` holds its test clips and their scores (`p_abnormal` of the supervised classifier, or
`anomaly_score` of the ID classifier); the generator's `fault_kinds.csv`, in each machine/ID folder, names the
fault of every abnormal file. A kind's AUROC is that of the run's normal test clips against the test clips with
that fault; the test split holds only a few clips of each kind, so read single cells as rough and the means per
machine type as the result.

    python benchmarks/auroc_by_fault.py outputs/sweeps/<date> [more folders] [--out results.md]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

from machine_sound.errors import DataError
from machine_sound.runs import write_atomic
from machine_sound.synthetic.generator import FAULT_LIST
from machine_sound.synthetic.machines import ANOMALY_KINDS


def run_folders(folders: list[Path]) -> list[Path]:
    """Every run folder (one holding test_scores.csv) at or under the given folders."""
    runs = sorted({p.parent for f in folders for p in ([f / "test_scores.csv"] + list(f.rglob("test_scores.csv")))
                   if p.is_file()})
    if not runs:
        raise DataError(f"no test_scores.csv under {', '.join(map(str, folders))}: give a run or sweep folder of "
                        "training on the synthetic data")
    return runs


def kinds_of_run(run: Path) -> tuple[str, str, dict[str, list[float]]]:
    """(machine, device name, {'normal' or a fault kind: the test scores of those clips})."""
    with open(run / "test_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    column = next((c for c in ("p_abnormal", "anomaly_score") if rows and c in rows[0]), None)
    if column is None:
        raise DataError(f"{run}/test_scores.csv has no p_abnormal or anomaly_score column: not a normal/abnormal run")
    scores: dict[str, list[float]] = defaultdict(list)
    lists: dict[Path, dict[str, str]] = {}
    for row in rows:
        path = Path(row["path"])
        if row["anomalous"] == "0":
            scores["normal"].append(float(row[column]))
            continue
        folder = path.parent.parent
        if folder not in lists:
            try:
                with open(folder / FAULT_LIST, newline="") as f:
                    lists[folder] = {r["file"]: r["fault"] for r in csv.DictReader(f)}
            except OSError:
                raise DataError(f"{folder / FAULT_LIST} is missing: {run} was not trained on synthetic data of "
                                "generator v8 or later") from None
        scores[lists[folder][f"{path.parent.name}/{path.name}"]].append(float(row[column]))
    folder = Path(rows[0]["path"]).parent.parent  # <root>/<snr>_<machine>/<machine>/<id>
    return folder.parent.name, f"{folder.parent.parent.name}/{folder.name}", scores


def auroc(normal: list[float], faulty: list[float]) -> float:
    scores = torch.tensor(normal + faulty)
    labels = torch.tensor([0] * len(normal) + [1] * len(faulty))
    return float(binary_auroc(scores, labels))


def tables(runs: list[Path]) -> str:
    by_machine: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for run in runs:
        machine, device, scores = kinds_of_run(run)
        by_machine[machine].append((device, scores))
    out = []
    for machine, entries in by_machine.items():
        kinds = ANOMALY_KINDS[machine]
        out += [f"**{machine}**", "", "| device | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
        values = defaultdict(list)
        for device, scores in sorted(entries):
            cells = []
            for kind in kinds:
                if scores.get(kind) and scores.get("normal"):
                    value = auroc(scores["normal"], scores[kind])
                    values[kind].append(value)
                    cells.append(f"{value:.2f} ({len(scores[kind])})")
                else:
                    cells.append("–")
            out.append(f"| {device} | " + " | ".join(cells) + " |")
        means = [f"**{np.mean(values[k]):.2f}**" if values[k] else "–" for k in kinds]
        out += [f"| mean of {len(entries)} | " + " | ".join(means) + " |", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    try:
        text = tables(run_folders(args.folders))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    header = (f"Test AUROC per synthetic fault kind (normal test clips against that kind's; number of clips of the "
              f"kind in brackets), {datetime.date.today()}, from {', '.join(map(str, args.folders))}.\n\n")
    print(header + text)
    if args.out:
        write_atomic(args.out, lambda tmp: tmp.write_text(header + text + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
