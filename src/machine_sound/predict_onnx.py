"""Predict's model from an exported ONNX file alone (`machine-sound-export`), run by ONNX Runtime.

This module imports neither torch nor Lightning nor Hydra: with only `onnxruntime`, `numpy` and `soundfile`
installed (and matplotlib for `timeline=true`'s pictures), `predict model_path=model.onnx input=...` writes the
same CSV as predict from the checkpoint. The graph takes the raw waveform (batch, channels, samples) float32 at
the training sample rate and gives the scores (batch, K): class probabilities, or a detector's anomaly score as
each machine ID. Everything else predict needs is in the file's metadata under `METADATA_KEY`, as JSON:

- `task`, `class_names`, `threshold` (a number; for a detector one per machine ID) and `threshold_fitted`;
- `sample_rate`, `clip_seconds`, `samples` (the graph's clip length), `channel` (the `data.channel` choice),
  `in_chans`, `resample`, `batch_size`: how a file is read, as the run config said;
- `machine`, `layout` (the reader the model was trained with), `model`, `backbone`, `outputs`, `checkpoint`,
  `exported`, `opset`, `version`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from machine_sound.data.audio import Decoding
from machine_sound.errors import ConfigError, DataError
from machine_sound.tasks import get_task

METADATA_KEY = "machine_sound"
FORMAT = 1
# The reading settings that may change for an exported model (its channel count and clip length are fixed).
READING = ("data.channel", "data.resample", "data.batch_size")


def parse_overrides(overrides, allowed=READING) -> dict:
    """`key=value` arguments as {key: value}; values read as JSON where they parse (true, 4, [0,2]), else as
    text. ConfigError for a key outside `allowed` or an argument without '='."""
    settings = {}
    for argument in overrides:
        key, sep, text = argument.partition("=")
        if not sep or key not in allowed:
            raise ConfigError(f"{argument}: for an ONNX model only {', '.join(allowed)} can be set (its channel "
                              "count, clip length and sample rate are fixed in the graph)")
        try:
            settings[key] = json.loads(text)
        except json.JSONDecodeError:
            settings[key] = text
    return settings


def check_meaning(meta: dict, task, class_names: list[str], threshold: np.ndarray) -> None:
    """ValueError when the metadata's task, classes and thresholds do not fit each other: one finite threshold per
    machine ID for a detector, one for a binary classifier; outputs of the kind the task scores."""
    anomaly = task.score == "anomaly"
    if anomaly != (meta.get("outputs") == "anomaly score per machine ID"):
        raise ValueError(f"task {task.name} does not score outputs of kind {meta.get('outputs')!r}")
    if len(class_names) < (1 if anomaly else 2) or len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names {class_names} cannot be the task's classes")
    wanted = (len(class_names),) if anomaly else ()
    if threshold.shape != wanted or not np.isfinite(threshold).all():
        raise ValueError(f"threshold {threshold.tolist()}: {'one finite number per ID' if anomaly else 'a number'}")
    if not 0 < float(meta["clip_seconds"]) < float("inf"):
        raise ValueError(f"clip_seconds {meta['clip_seconds']!r}")


class OnnxModel:
    """An exported model as predict uses it: the same attributes as `predict_checkpoint.CheckpointModel`
    (`class_names`, `task`, `threshold`, `threshold_fitted`, `decoding`, `num_frames`, `batch_size`, `machine`,
    `layout`) and `outputs(recordings)`. ConfigError when onnxruntime is missing or a setting does not fit;
    DataError for a file that is not an ONNX model exported by machine-sound."""

    def __init__(self, model_path: str | Path, overrides=(), providers: list[str] | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("predict from an ONNX file needs ONNX Runtime: pip install onnxruntime") from None
        path = Path(model_path)
        if not path.is_file():
            raise DataError(f"no ONNX model at {path}; give model_path=<file.onnx> (made by machine-sound-export)")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its warnings about unused initialisers say nothing the user can act on
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers
                                                or ort.get_available_providers())
        except Exception as err:  # ONNX Runtime's own error types: not a model it can load
            raise DataError(f"{path} is not an ONNX model that ONNX Runtime can load "
                            f"({str(err).splitlines()[0][:200]})") from None
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise DataError(f"{path} holds no {METADATA_KEY} metadata: export the model with machine-sound-export "
                            "ckpt_path=<checkpoint> output=<file.onnx>")
        try:
            meta = self.meta = json.loads(text)
            if meta.get("format") != FORMAT:
                raise DataError(f"{path} was exported by another version of machine-sound (metadata format "
                                f"{meta.get('format')}, this version reads {FORMAT}); export it again")
            settings = {"data.channel": meta["channel"], "data.resample": meta["resample"],
                        "data.batch_size": meta["batch_size"]}
            self.decoding = Decoding(meta["sample_rate"], meta["channel"], meta["resample"])
            self.class_names, self.task = [str(n) for n in meta["class_names"]], get_task(meta["task"])
            self.threshold = np.asarray(meta["threshold"], dtype=np.float64)
            self.threshold_fitted, self.num_frames = bool(meta["threshold_fitted"]), int(meta["samples"])
            channels = int(meta["in_chans"])
            check_meaning(meta, self.task, self.class_names, self.threshold)
        except (ValueError, KeyError, TypeError, AttributeError, ConfigError) as err:  # edited or foreign
            raise DataError(f"{path}: its {METADATA_KEY} metadata is damaged ({type(err).__name__}: "
                            f"{str(err)[:120]}); export the model again") from None
        self.check_graph(path, channels)
        settings.update(parse_overrides(overrides))
        self.decoding = Decoding(meta["sample_rate"], settings["data.channel"], settings["data.resample"])
        if self.decoding.out_channels != channels:
            raise ConfigError(f"data.channel={self.decoding.channel} gives {self.decoding.out_channels} channel(s), "
                              f"but the model was trained on {channels}")
        batch_size = settings["data.batch_size"]
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size!r}: a positive whole number")
        self.batch_size = batch_size
        self.machine, self.layout = meta.get("machine"), meta.get("layout", "")
        self.input_name = self.session.get_inputs()[0].name

    def check_graph(self, path: Path, channels: int) -> None:
        """DataError unless the graph takes one input (batch, channels, samples) and gives (batch, K) for the
        metadata's K classes or IDs (a graph from elsewhere with this project's metadata pasted in)."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        wanted_in, wanted_out = [channels, self.num_frames], [len(self.class_names)]
        given_in = inputs[0].shape[1:] if len(inputs) == 1 and len(inputs[0].shape) == 3 else None
        given_out = outputs[0].shape[1:] if len(outputs) == 1 and len(outputs[0].shape) == 2 else None
        fits = (given_in is not None and given_out is not None
                and all(g == w for g, w in zip(given_in + given_out, wanted_in + wanted_out) if isinstance(g, int)))
        if not fits:
            raise DataError(f"{path}: its graph takes {[i.shape for i in inputs]} and gives "
                            f"{[o.shape for o in outputs]}, not (batch, {channels}, {self.num_frames}) -> (batch, "
                            f"{len(self.class_names)}) as its metadata says; export the model again")

    def __call__(self, waves: np.ndarray) -> np.ndarray:
        """(batch, in_chans, samples) float32 -> (batch, K) float32 scores."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(waves, dtype=np.float32)})[0]

    def outputs(self, recordings) -> np.ndarray:
        """(windows, K) float32: the graph's output for every window of `recordings`, in order."""
        return np.concatenate([self(batch) for batch in recordings.batches(self.batch_size)])
