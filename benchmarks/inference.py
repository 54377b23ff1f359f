"""`make bench`, inference: how fast does a trained model score recordings, in PyTorch and in ONNX Runtime?

For the default backbone (mobilenetv3_small_100) and a larger one (resnet18), each trained briefly on the
synthetic -6 dB pump/id_04 clips (10 s, 16 kHz; the weights do not change the speed) and exported with
`machine-sound-export`:

(a) steady state, the model alone: batches of 32 ten-second clips already in memory, clips per second and times
    real time (seconds of audio scored per second), best of `--repeats` timed passes; PyTorch also with the
    backbone's weights in channels_last layout (not what predict does: a measured option); and the front end
    alone (STFT, mel, dB), which bounds it;
(b) steady state, predict end to end: every file of `--files` real WAV files (decoding included), in a process
    that has scored them once already;
(c) with process start: `python -m machine_sound.predict` as a new process on one file (time to the first
    score) and on every file.

    python benchmarks/inference.py [--files 480] [--out benchmarks/results/inference_<date>.md]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from machine_sound.config import compose
from machine_sound.export import export, exportable_pooling, score_graph
from machine_sound.predict import predict
from machine_sound.predict_checkpoint import CheckpointModel
from machine_sound.predict_onnx import OnnxModel
from machine_sound.runs import machine_description
from machine_sound.train import train

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("mobilenetv3_small_100", "resnet18")
BATCH = 32


def trained(backbone: str, out: Path) -> tuple[str, Path]:
    """A checkpoint of `backbone` after a few training steps, and its ONNX export."""
    run = out / backbone
    cfg = compose([f"paths.output_dir={run}", f"paths.data_dir={REPO / 'data'}", "machine=pump", "id=id_04",
                   f"model.backbone={backbone}", "trainer.max_epochs=1", "+trainer.limit_train_batches=4",
                   "+trainer.limit_val_batches=2", "logger=none"])
    checkpoint = train(cfg)["best_checkpoint"]
    onnx_path, _ = export(checkpoint, run / "model.onnx")
    return checkpoint, onnx_path


def rate(fn, clips: int, repeats: int) -> float:
    """Clips per second of `fn()` (which scores `clips` clips): the best of `repeats` passes after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return clips / best


def model_alone(checkpoint: str, onnx_path: Path, repeats: int) -> dict:
    """(a): clips per second of PyTorch and ONNX Runtime on one batch, whole model and front end alone."""
    torch_model = CheckpointModel(checkpoint).model
    onnx_model = OnnxModel(onnx_path)
    waves = np.random.default_rng(0).normal(0, 0.1, (BATCH, 1, onnx_model.num_frames)).astype(np.float32)
    batch = torch.from_numpy(waves)
    frontend = copy.deepcopy(torch_model.frontend)
    frontend_graph = onnx_path.with_name("frontend.onnx")
    program = torch.onnx.export(frontend.eval(), (batch,), dynamo=True, verbose=False,
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    program.save(str(frontend_graph), external_data=False)
    session = ort.InferenceSession(str(frontend_graph), providers=["CPUExecutionProvider"])
    inputs = {session.get_inputs()[0].name: waves}
    model = copy.deepcopy(torch_model)
    exportable_pooling(model)
    graph = score_graph(model)
    channels_last = score_graph(copy.deepcopy(model).to(memory_format=torch.channels_last))  # oneDNN's layout
    with torch.inference_mode():
        return {
            "pytorch": rate(lambda: graph(batch), BATCH, repeats),
            "pytorch channels_last": rate(lambda: channels_last(batch), BATCH, repeats),
            "onnx": rate(lambda: onnx_model(waves), BATCH, repeats),
            "pytorch front end": rate(lambda: frontend(batch), BATCH, repeats),
            "onnx front end": rate(lambda: session.run(None, inputs), BATCH, repeats),
        }


def end_to_end(checkpoint: str, onnx_path: Path, files: Path, count: int, out: Path) -> dict:
    """(b) and (c): predict in this process (second pass), and as a new process on one file and on all."""
    results = {}
    for name, model in (("pytorch", checkpoint), ("onnx", onnx_path)):
        predict(model, files, out / f"{name}.csv")
        start = time.perf_counter()
        predict(model, files, out / f"{name}.csv")
        results[f"{name} predict"] = count / (time.perf_counter() - start)
        key = "model_path" if name == "onnx" else "ckpt_path"
        for what, source in (("first score", next(files.iterdir())), ("all files", files)):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "machine_sound.predict", f"{key}={model}", f"input={source}",
                            f"output={out / 'process.csv'}"], check=True, capture_output=True)
            results[f"{name} process {what}"] = time.perf_counter() - start
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=480, help="ten-second WAV files scored end to end")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "bench" / "inference")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / f"inference_{date.today()}.md")
    args = parser.parse_args()
    source = REPO / "data" / "synthetic" / "-6_dB_pump" / "pump" / "id_04" / "normal"
    results = {}
    for backbone in BACKBONES:
        checkpoint, onnx_path = trained(backbone, args.work)  # also writes the synthetic data when missing
        files = args.work / "files"
        if not files.is_dir():
            files.mkdir(parents=True)
            for path in sorted(source.glob("*.wav"))[:args.files]:
                (files / path.name).symlink_to(path)
        count = len(list(files.glob("*.wav")))
        results[backbone] = {**model_alone(checkpoint, onnx_path, args.repeats),
                             **end_to_end(checkpoint, onnx_path, files, count, args.work)}
        print(backbone, results[backbone], flush=True)
    write(args.out, results, count)


def write(out: Path, results: dict, count: int) -> None:
    seconds = 10.0
    lines = [f"Date {date.today()}; {machine_description()}; torch {torch.__version__}, onnxruntime "
             f"{ort.__version__}; ten-second 16 kHz clips (channel 0 of synthetic 8-channel "
             f"MIMII-like WAVs), batch {BATCH}. Times real time = seconds of audio scored per second.", "",
             "**(a) Steady state, the model alone (clips in memory)**", "",
             "| backbone | engine | clips/s | x real time | front end alone, clips/s | front end share |",
             "|---|---|---|---|---|---|"]
    for backbone, r in results.items():
        for engine, label in (("pytorch", "PyTorch"), ("pytorch channels_last", "PyTorch, channels_last weights"),
                              ("onnx", "ONNX Runtime")):
            whole, front = r[engine], r[f"{engine.split()[0]} front end"]
            lines.append(f"| {backbone} | {label} | {whole:.0f} | {whole * seconds:.0f} | {front:.0f} | "
                         f"{whole / front:.0%} |")
    lines += ["", f"**(b, c) predict end to end on {count} WAV files (decoding and the CSV included)**", "",
              "| backbone | engine | steady state, clips/s | x real time | new process: first score (s) | "
              f"new process: all {count} files (s) |", "|---|---|---|---|---|---|"]
    for backbone, r in results.items():
        for engine, label in (("pytorch", "PyTorch (ckpt_path)"), ("onnx", "ONNX Runtime (model_path)")):
            steady = r[f"{engine} predict"]
            lines.append(f"| {backbone} | {label} | {steady:.0f} | {steady * seconds:.0f} | "
                         f"{r[f'{engine} process first score']:.2f} | {r[f'{engine} process all files']:.1f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
