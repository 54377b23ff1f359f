"""Score new recordings: `python -m machine_sound.predict ckpt_path=<file> input=<file or folder> [output=<csv>]`.

The checkpoint carries what scoring needs: the weights and decision threshold, the front end with its fitted
statistics, the channel choice, sample rate, clip length and class names. A recording of any length is cut into
clip-length windows (the last one aligned to the end; a short one zero-padded) and its window probabilities are
averaged (`aggregate=mean`) or their maximum taken (`aggregate=max`, for faults that come and go). A file that
cannot be read gets a row with the error instead of stopping the others.
"""

from __future__ import annotations

import csv
import logging
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from machine_sound.data.audio import BadFileError, Decoding, decode, fit_length
from machine_sound.data.datamodule import restore_frontend
from machine_sound.errors import ConfigError, DataError, MachineSoundError

log = logging.getLogger(__name__)
USAGE = ("usage: python -m machine_sound.predict ckpt_path=<checkpoint.ckpt> input=<file or folder> "
         "[output=<file.csv>] [aggregate=mean|max] [key=value ...]")
AUDIO_SUFFIXES = (".wav", ".flac")
AGGREGATES = ("mean", "max")


class Scorer:
    """A trained model with its front end and decode settings, ready to score waveforms."""

    def __init__(self, ckpt_path: str | Path, overrides: list[str] = ()):
        from machine_sound.eval import apply_overrides, load_checkpoint, run_config
        from machine_sound.models import SpectrogramClassifier
        from machine_sound.train import instantiate

        checkpoint = load_checkpoint(ckpt_path)
        cfg = run_config(checkpoint)
        apply_overrides(cfg, list(overrides))
        data_state = next((v for v in checkpoint.values() if isinstance(v, dict) and "frontend" in v
                           and "class_names" in v), None)
        if data_state is None:
            raise DataError(f"{ckpt_path} holds no data settings (written before predict existed?); retrain")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.frontend = instantiate(cfg.features.frontend)
        restore_frontend(self.frontend, data_state)
        self.frontend.to(self.device).eval()
        # The trained weights replace any pretrained ones: nothing is downloaded or read besides the checkpoint.
        self.model = SpectrogramClassifier.load_from_checkpoint(ckpt_path, map_location=self.device, weights_only=True,
                                                                pretrained=False, weights_path=None).eval()
        self.decoding = Decoding(data_state["sample_rate"], data_state["channel"],
                                 bool(cfg.data.get("resample", False)))
        self.num_frames = int(data_state["num_frames"])
        self.class_names = list(data_state["class_names"])
        self.scored_by_id = bool(data_state["scored_by_id"])
        self.threshold = self.model.threshold.item() if self.model.binary and not self.scored_by_id else None

    def windows(self, wave: np.ndarray) -> np.ndarray:
        """(channels, frames) -> (windows, channels, num_frames): back to back, the last one ending with the clip."""
        frames, n = wave.shape[-1], self.num_frames
        if frames <= n:
            return fit_length(wave, n)[None]
        starts = list(range(0, frames - n + 1, n))
        if starts[-1] != frames - n:
            starts.append(frames - n)
        return np.stack([wave[:, s:s + n] for s in starts])

    @torch.no_grad()
    def probabilities(self, windows: np.ndarray, batch_size: int = 16) -> torch.Tensor:
        """Class probabilities of every window, (windows, classes)."""
        out = []
        for start in range(0, len(windows), batch_size):
            batch = torch.from_numpy(windows[start:start + batch_size]).to(self.device)
            out.append(self.model(self.frontend(batch)).float().softmax(dim=-1).cpu())
        return torch.cat(out)


def find_audio(source: str | Path) -> list[Path]:
    path = Path(source)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"input {path} does not exist; give an audio file or a folder of them")
    files = sorted(f for f in path.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
    if not files:
        raise DataError(f"no {'/'.join(AUDIO_SUFFIXES)} files in {path}")
    return files


def own_id(path: Path, ids: list[str]) -> str | None:
    """A recording's machine ID from its name (DCASE: normal_id_00_...) or its folder (MIMII: .../id_00/...)."""
    for machine_id in ids:
        if f"_{machine_id}_" in path.name or machine_id in path.parts:
            return machine_id
    return None


def predict(ckpt_path: str | Path, source: str | Path, output: str | Path | None = None, aggregate: str = "mean",
            overrides: list[str] = ()) -> tuple[Path, list[dict]]:
    """Score every recording under `source`; write the CSV and return its path and rows."""
    if aggregate not in AGGREGATES:
        raise ConfigError(f"aggregate={aggregate}: choose mean or max")
    scorer = Scorer(ckpt_path, list(overrides))
    files = find_audio(source)
    names = scorer.class_names
    rows = []
    for path in files:
        row: dict = {"path": str(path)}
        try:
            wave, _ = decode(path, scorer.decoding)
        except BadFileError as err:
            rows.append({**row, "error": str(err)})
            log.warning("cannot score %s", err)
            continue
        windows = scorer.windows(wave)
        probs = scorer.probabilities(windows)
        probs = probs.mean(dim=0) if aggregate == "mean" else probs.max(dim=0).values
        row["windows"] = len(windows)
        if scorer.threshold is not None:  # binary: the positive class's probability against the threshold
            row[f"p_{names[1]}"] = round(float(probs[1]), 6)
            row["decision"] = names[1] if probs[1] > scorer.threshold else names[0]
            row["threshold"] = round(scorer.threshold, 6)
        else:
            row.update({f"p_{name}": round(float(p), 6) for name, p in zip(names, probs)})
            if scorer.scored_by_id:  # the anomaly score needs the clip's own ID, read from its name or folder
                machine_id = own_id(path, names)
                row["predicted_id"] = names[int(probs.argmax())]
                row["anomaly_score"] = round(1 - float(probs[names.index(machine_id)]), 6) if machine_id else ""
            else:
                row["decision"] = names[int(probs.argmax())]
        rows.append(row)
    if output is None:
        output = Path("outputs") / "predictions" / f"{datetime.now():%Y-%m-%d_%H-%M-%S-%f}" / "predictions.csv"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row if key != "error")) + ["error"]
    with open(output, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return output, rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = dict(a.split("=", 1) for a in argv if a.split("=", 1)[0] in ("ckpt_path", "input", "output", "aggregate"))
    if "ckpt_path" not in args or "input" not in args:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    overrides = [a for a in argv if a.split("=", 1)[0] not in args]
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    try:
        output, rows = predict(args["ckpt_path"], args["input"], args.get("output"), args.get("aggregate", "mean"),
                               overrides)
    except MachineSoundError as err:
        from machine_sound.train import one_line

        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    failed = sum(1 for r in rows if r.get("error"))
    decided = [r["decision"] for r in rows if r.get("decision")]
    counts = ", ".join(f"{decided.count(c)} {c}" for c in dict.fromkeys(sorted(decided)))
    print(f"scored {len(rows) - failed} of {len(rows)} files ({counts or 'none'}"
          f"{f'; {failed} unreadable' if failed else ''}): {output}")


if __name__ == "__main__":
    main()
