"""Export a trained model to one ONNX file that runs without this package's training stack:

    python -m machine_sound.export ckpt_path=<file.ckpt> [output=<file.onnx>] [opset=18] [key=value ...]
    (or machine-sound-export ..., once installed)

The graph takes the raw waveform (batch, channels, samples) float32 at the training sample rate and returns the
scores predict aggregates: class probabilities (batch, classes), or a detector's anomaly score as each machine
ID (batch, IDs). The log-mel front end and its per-band statistics are inside it, and so is a normal-only
model's memory of normal embeddings (`model=embedding_knn`, `id_classifier`). The decision threshold, class
names, sample rate, clip length and channel choice go into the file's metadata (`predict_onnx.METADATA_KEY`),
so `predict model_path=<file.onnx>` needs nothing else. The batch size is free; the clip length is fixed (other
arguments may change `data.clip_seconds`, `data.channel`, `data.resample`, `data.batch_size` first).

It uses torch's dynamo-based exporter (`torch.onnx.export(dynamo=True)`, which needs `onnx` and `onnxscript`;
the older TorchScript exporter cannot take the complex STFT), then checks the file: ONNX Runtime's scores of a
few noise clips must equal PyTorch's within `TOLERANCE`, or nothing is written.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from machine_sound import __version__
from machine_sound.console import parse_arguments, print_result, quiet_lightning
from machine_sound.errors import ConfigError, DataError, MachineSoundError, one_line, user_error
from machine_sound.predict_onnx import FORMAT, METADATA_KEY, OnnxModel

log = logging.getLogger(__name__)
USAGE = ("usage: python -m machine_sound.export ckpt_path=<checkpoint.ckpt> [output=<model.onnx>] [opset=18] "
         "[data.clip_seconds=... data.channel=... data.batch_size=...]")
OPSETS = range(18, 24)  # the dynamo exporter's torchlib speaks opset 18; newer ones are converted up
TOLERANCE = 1e-4  # largest difference of ONNX Runtime's scores from PyTorch's, relative to the scores' size
# Backbones checked to export and match PyTorch (tests/test_export.py and the inference benchmark).
EXPORTABLE = ("mobilenetv3_small_100", "mobilenetv3_small_050", "mobilenetv3_large_100", "resnet18",
              "efficientnet_b0", "convnext_atto")


def exportable_pooling(model) -> None:
    """timm's adaptive pooling to a 1x1 map (`global_pool=avg`, `max`, `avgmax`) as the plain mean and maximum over
    the map, which compute the same numbers: ONNX has no adaptive max pooling."""
    from timm.layers.adaptive_avgmax_pool import (
        FastAdaptiveAvgMaxPool,
        FastAdaptiveAvgPool,
        FastAdaptiveMaxPool,
        SelectAdaptivePool2d,
    )

    fast = {"avg": FastAdaptiveAvgPool, "max": FastAdaptiveMaxPool, "avgmax": FastAdaptiveAvgMaxPool}
    for module in model.modules():
        if isinstance(module, SelectAdaptivePool2d) and module.pool_type in fast:
            module.pool = fast[module.pool_type](flatten=False)


def score_graph(model):
    """The module that is exported: waveforms (batch, channels, samples) -> the model's `predict_step` output."""
    import torch

    class Scores(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            return self.model.predict_step((wave,), 0)

    return Scores(model).eval()


def check_clips(channels: int, samples: int):
    """What the exported file is checked on, (4, channels, samples): noise at two levels, digital silence, and a
    recording shorter than the clip (zero-padded), since silence takes other paths (log of the dB floor)."""
    import torch

    noise = torch.randn(4, channels, samples, generator=torch.Generator().manual_seed(0))
    clips = noise * torch.tensor([0.1, 0.001, 0.0, 0.1]).view(4, 1, 1)
    clips[3, :, samples // 2:] = 0
    return clips


def why_not(err: BaseException) -> str:
    """The exporter's reason in a few words: the operator ONNX lacks, else the first line of the deepest cause."""
    text = "\n".join(str(e) for e in (err, err.__cause__, err.__context__) if e is not None)
    missing = re.search(r"No ONNX function found for <OpOverload\(op='([^']+)'", text)
    if missing:
        return f"ONNX has no translation of the operator {missing.group(1)}"
    while err.__cause__ is not None:
        err = err.__cause__
    return one_line(err)[:300]


def metadata(checkpoint_model, cfg, samples: int, opset: int, ckpt_path: Path) -> dict:
    """What predict needs besides the graph (see `predict_onnx`)."""
    model = checkpoint_model.model
    channel = checkpoint_model.decoding.channel
    channel = list(channel) if isinstance(channel, tuple) else channel
    threshold = model.threshold.detach().cpu()
    return {
        "format": FORMAT, "task": model.task.name, "class_names": model.class_names,
        "threshold": threshold.tolist(), "threshold_fitted": checkpoint_model.threshold_fitted,
        "sample_rate": checkpoint_model.decoding.sample_rate, "clip_seconds": float(cfg.data.clip_seconds),
        "samples": samples, "channel": channel,
        "in_chans": int(model.hparams.in_chans), "resample": bool(cfg.data.resample),
        "batch_size": checkpoint_model.batch_size, "machine": checkpoint_model.machine,
        "layout": checkpoint_model.layout, "model": cfg.model._target_,
        "backbone": model.hparams.get("backbone"),
        "outputs": "anomaly score per machine ID" if model.task.score == "anomaly" else "class probabilities",
        "checkpoint": str(ckpt_path), "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "opset": opset, "version": __version__,
    }


def export(ckpt_path: str | Path, output: str | Path | None = None, opset: int = 18,
           overrides: list[str] = ()) -> tuple[Path, float]:
    """Export the checkpoint's model to `output` (default: beside the checkpoint, `<name>.onnx`) and check it with
    ONNX Runtime. Returns the file and the largest difference of its scores from PyTorch's. ConfigError for a bad
    opset or setting, or a model that cannot be exported (naming what fails and what works); DataError for a
    checkpoint that cannot be used or a file that cannot be written. A failed export leaves no file."""
    if isinstance(opset, bool) or not isinstance(opset, int) or opset not in OPSETS:
        raise ConfigError(f"opset={opset!r}: an ONNX opset from {OPSETS[0]} to {OPSETS[-1]} (torch's exporter writes "
                          f"{OPSETS[0]} and converts up from there, not down)")
    try:
        import numpy as np
        import torch

        from machine_sound.predict_checkpoint import CheckpointModel
    except ImportError as err:
        raise ConfigError(f"exporting needs the training stack ({err.name} is missing): install machine-sound with "
                          "its dependencies") from None
    ckpt_path = Path(ckpt_path)
    output = Path(output) if output else ckpt_path.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise ConfigError(f"output={output}: give the path of a .onnx file to write")
    scorer = CheckpointModel(ckpt_path, overrides)
    cfg = scorer.cfg
    trained = scorer.trained_clip_seconds
    if float(cfg.data.clip_seconds) != float(trained):
        log.warning("data.clip_seconds=%s, but the model was trained and its threshold fitted on %s s clips: "
                    "scores of other windows are on another scale; check the decisions on known recordings",
                    cfg.data.clip_seconds, trained)
    model = copy.deepcopy(scorer.model).float().eval()
    exportable_pooling(model)
    graph = score_graph(model)
    channels, samples = int(model.hparams.in_chans), scorer.num_frames
    example = check_clips(channels, samples)
    with torch.no_grad():
        reference = graph(example).numpy()  # also arranges a kNN memory for the export (models/knn.py)
    backbone = model.hparams.get("backbone")
    what = f"model={model.option}" + (f" with model.backbone={backbone}" if backbone else "")
    try:
        with torch.no_grad():
            program = torch.onnx.export(graph, (example,), dynamo=True, input_names=["wave"],
                                        output_names=["scores"], opset_version=opset, verbose=False,
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    except ImportError as err:
        raise ConfigError(f"exporting needs the onnx and onnxscript packages ({err.name} is missing): "
                          "pip install onnx onnxscript onnxruntime") from None
    except Exception as err:  # the exporter's own error types, with pages of detail
        raise ConfigError(f"{what} cannot be exported to ONNX (opset {opset}): {why_not(err)}; backbones that "
                          f"export: {', '.join(EXPORTABLE)}") from None
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata(scorer, cfg, samples, opset, ckpt_path))
    staging = output.with_name(f".{output.name}.check.onnx")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        program.save(str(staging), external_data=False)
        exported = OnnxModel(staging, providers=["CPUExecutionProvider"])(example.numpy())
        # Each clip's score against its own size: a silent clip's large score must not hide a small one's error.
        allowed = TOLERANCE * np.maximum(1.0, np.abs(reference))
        excess = np.abs(exported - reference) - allowed
        if not np.isfinite(exported).all() or (excess > 0).any():
            worst = int(np.nanargmax(np.where(np.isfinite(excess), excess, np.inf)))
            raise MachineSoundError(f"the exported {what} does not score as PyTorch does (score "
                                    f"{exported.flat[worst]:.6g} against {reference.flat[worst]:.6g} on a check "
                                    "clip); nothing was written")
        difference = float(np.abs(exported - reference).max())
        os.replace(staging, output)
    except OSError as err:  # a folder that cannot be made (a file in the way, no permission), a full disk
        raise DataError(f"cannot write {output}: {err.strerror or err}; choose a writable output=") from None
    finally:
        staging.unlink(missing_ok=True)
    return output, difference


def main(argv: list[str] | None = None) -> None:
    own, overrides = parse_arguments(sys.argv[1:] if argv is None else argv, ["ckpt_path"], ["output", "opset"],
                                     usage=USAGE)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for name in ("onnx_ir", "onnxscript"):  # the optimiser's every pass, at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    quiet_lightning()
    try:
        opset = own.get("opset", "18")
        if not opset.isdigit():
            raise ConfigError(f"opset={opset}: a whole number (18)")
        output, difference = export(own["ckpt_path"], own.get("output"), int(opset), overrides)
    except Exception as err:
        if user_error(err) is None:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    size = output.stat().st_size / 2**20
    print_result(f"exported {output} ({size:.1f} MiB); ONNX Runtime matches PyTorch to {difference:.1e}\n"
                 f"score recordings with it: python -m machine_sound.predict model_path={output} input=<file or "
                 "folder>")


if __name__ == "__main__":
    main()
