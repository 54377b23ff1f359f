"""A long recording's score over time (predict's `timeline=true`): one CSV row per window and one picture per file
of the score against the decision threshold, so a user sees when a fault came and went. Torch-free; the
pictures need matplotlib."""

from __future__ import annotations

import os
from pathlib import Path

from machine_sound.errors import ConfigError
from machine_sound.predict_rows import write_csv
from machine_sound.writing import write_atomic


def timeline_paths(output: Path) -> tuple[Path, Path]:
    """Where a prediction written to `output` puts its timeline: `<stem>_timeline.csv` and a folder
    `<stem>_timeline/` of PNGs, beside it."""
    return output.with_name(f"{output.stem}_timeline.csv"), output.with_name(f"{output.stem}_timeline")


def check_place(output: Path) -> None:
    """ConfigError unless the timeline's places beside `output` are free or hold an earlier timeline (a CSV, and a
    folder of PNG pictures only), checked before anything is scored: a file in the folder's place, or a folder
    holding anything else, is the user's and is never replaced."""
    table, folder = timeline_paths(output)
    if table.is_dir() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(f"timeline=true writes {table} and a folder {folder}, but something else of that name is "
                          "there; choose another output= name")
    others = sorted(p.name for p in folder.iterdir() if not (p.is_file() and p.suffix == ".png")) if folder.is_dir() \
        else []
    if others:
        raise ConfigError(f"timeline=true replaces the folder {folder}, which holds files that are not timeline "
                          f"pictures ({', '.join(others[:3])}); choose another output= name")


def plotted(row: dict, model) -> dict[str, float]:
    """The values a window's row contributes to its file's picture, by column name."""
    if model.task.score == "anomaly":
        return {"anomaly_score": row["anomaly_score"]}
    if model.task.decision == "threshold":
        return {f"p_{model.class_names[1]}": row[f"p_{model.class_names[1]}"]}
    return {f"p_{name}": row[f"p_{name}"] for name in model.class_names}


def picture_names(paths: list[Path], source: Path) -> list[str]:
    """Each file's picture name: its path under the input folder with '/' as '__' and its suffix kept
    (`line3__pump.wav.png`), or its name when a single file was given; a name already taken gets `_2`, `_3`..."""
    names, taken = [], set()
    for path in paths:
        relative = path.relative_to(source) if source.is_dir() and path.is_relative_to(source) else Path(path.name)
        stem = "__".join(relative.parts)
        name, n = f"{stem}.png", 1
        while name in taken:
            n += 1
            name = f"{stem}_{n}.png"
        taken.add(name)
        names.append(name)
    return names


def pyplot():
    """matplotlib's pyplot on the Agg backend; ConfigError when matplotlib is missing (predict asks before it scores
    anything)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("timeline=true draws its pictures with matplotlib: pip install matplotlib (or leave "
                          "timeline out)") from None
    return plt


def write_timeline(output: Path, rows: list[dict], model, source: str | Path) -> tuple[Path, list[Path]]:
    """Write the window rows (`predict_rows.window_rows`) as `<stem>_timeline.csv` and, for every file whose windows
    were scored, a PNG of its score over time (each window a step from its start to its end, the threshold as a
    dashed line, windows above it shaded). The pictures of an earlier prediction to the same CSV are replaced as a
    whole (the folder is written beside and swapped in). Returns the CSV's path and the pictures'."""
    import shutil

    plt = pyplot()
    table, folder = timeline_paths(output)
    write_csv(table, rows)
    files: dict[str, list[dict]] = {}
    for row in rows:
        if not row.get("error"):
            files.setdefault(row["path"], []).append(row)
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    pictures = []
    for (path, windows), picture in zip(files.items(), picture_names([Path(p) for p in files], Path(source))):
        fig, ax = plt.subplots(figsize=(10, 3.2), layout="constrained")
        for name in plotted(windows[0], model):
            xs = [x for w in windows for x in (w["start_s"], w["end_s"])]
            ys = [w[name] for w in windows for _ in range(2)]
            ax.plot(xs, ys, label=name, linewidth=1.4)
        if "threshold" in windows[0]:
            threshold = windows[0]["threshold"]
            ax.axhline(threshold, color="crimson", linestyle="--", linewidth=1, label=f"threshold {threshold:.4g}")
            for w in windows:
                if w.get("decision") in ("anomalous", model.class_names[-1]) and model.task.score != "classes":
                    ax.axvspan(w["start_s"], w["end_s"], color="crimson", alpha=0.12, linewidth=0)
        ax.set(xlabel="time (s)", ylabel="anomaly score" if model.task.score == "anomaly" else "probability",
               title=Path(path).name, xlim=(0, max(w["end_s"] for w in windows)))
        ax.legend(loc="upper right", fontsize=8)
        write_atomic(staging / picture, lambda file, fig=fig: fig.savefig(file, format="png", dpi=110))
        plt.close(fig)
        pictures.append(folder / picture)
    staging.mkdir(parents=True, exist_ok=True)  # no scored window: an empty folder, not the old pictures
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    if folder.is_dir():
        folder.rename(old)
    staging.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return table, pictures
