"""`make bench`: is the data path fast, and how does it compare with the original project's kind of pipeline?

All parts use the same recordings (synthetic MIMII-like 8-channel 10 s WAVs, as MIMII ships them), the same
split, backbone, optimiser and number of epochs:

(a) this pipeline (decode channel 0 once into the cache, log-mel on the device while training) against the
    original kind: log-mel images rendered once with librosa to PNG files and read back with torchvision's
    ImageFolder. Preprocessing time, time per epoch, disk used, test metrics.
(b) the front end alone: torchaudio on a batch, on the device, against librosa clip by clip.
(c) the data path: reading every training clip from the cache against decoding the WAVs, and the share of
    training-step time spent waiting for data (DataWaitMonitor) with and without the cache.

    python benchmarks/pipeline.py [--normal 240 --abnormal 80 --epochs 5] [--out benchmarks/results/pipeline.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import date
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from machine_sound.callbacks import DataWaitMonitor
from machine_sound.config import compose, instantiate
from machine_sound.data.datamodule import ClipDataset
from machine_sound.models.classifier import SpectrogramClassifier
from machine_sound.models.frontend import LogMelFrontend
from machine_sound.runs import machine_description
from machine_sound.train import shape_from_data

REPO = Path(__file__).resolve().parents[1]
CLASS_DIRS = ("0_normal", "1_abnormal")  # ImageFolder sorts class folders by name: normal must be label 0


class EpochTimer(L.Callback):
    """Wall time of every training epoch, its validation included."""

    def __init__(self):
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds.append(time.perf_counter() - self._start)


def compose_cfg(args, *overrides: str):
    cfg = compose([f"paths.data_dir={args.root}", "paths.output_dir=/tmp/machine-sound-bench", "machine=pump",
                   "id=id_04", "data.generator.channels=8", f"data.generator.n_normal={args.normal}",
                   f"data.generator.n_abnormal={args.abnormal}", f"trainer.max_epochs={args.epochs}", *overrides])
    cfg.data.run_dir = None
    return cfg


def fit_and_test(cfg, model, datamodule) -> dict:
    """Train for the configured epochs and test the final weights; the same loop for both pipelines."""
    monitor, timer = DataWaitMonitor(), EpochTimer()
    trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
                        max_epochs=cfg.trainer.max_epochs, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[monitor, timer])
    L.seed_everything(cfg.seed, workers=True)
    trainer.fit(model, datamodule=datamodule)
    trainer.test(model, datamodule=datamodule, verbose=False)
    tested = trainer.callback_metrics  # the model keeps its test metrics out of the (absent) loggers
    return {"epoch_s": timer.seconds, "data_wait_share": [h["perf/data_wait_share"] for h in monitor.history],
            "test": {k.removeprefix("test/"): float(v) for k, v in tested.items() if k.startswith("test/")}}


def run_ours(args, cache: bool) -> tuple[dict, object]:
    cache_dir = Path(args.root) / "bench-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # a cold build is the preprocessing being measured
    cfg = compose_cfg(args, f"data.cache_dir={cache_dir if cache else 'null'}")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()  # writes the synthetic recordings (not part of either pipeline)
    start = time.perf_counter()
    datamodule.setup("fit")
    preprocess = time.perf_counter() - start
    model = instantiate(cfg.model, **shape_from_data(cfg.model, datamodule))
    result = fit_and_test(cfg, model, datamodule)
    result.update(preprocess_s=preprocess, disk_bytes=datamodule.cache.size_bytes() if cache else 0)
    return result, datamodule


# -- the original project's kind of pipeline ------------------------------------------------------------------


def librosa_log_mel(wave: np.ndarray, sample_rate: int, frontend_cfg) -> np.ndarray:
    import librosa

    power = librosa.feature.melspectrogram(y=wave, sr=sample_rate, n_fft=frontend_cfg.n_fft,
                                           hop_length=frontend_cfg.hop_length, n_mels=frontend_cfg.n_mels)
    return librosa.power_to_db(power, ref=np.max, top_db=frontend_cfg.top_db)


def render_pngs(datamodule, cfg, out: Path) -> None:
    """Every clip -> librosa (channel 0, 16 kHz) -> log-mel -> 8-bit grayscale PNG, one folder per split/class."""
    import librosa
    from PIL import Image

    shutil.rmtree(out, ignore_errors=True)
    sample_rate, frames = cfg.data.sample_rate, datamodule.num_frames
    for split, records in datamodule.splits.items():
        for path, label in ((r.path, r.label) for r in records):
            wave, _ = librosa.load(path, sr=sample_rate, mono=False)
            wave = wave[0] if wave.ndim > 1 else wave
            wave = np.pad(wave[:frames], (0, max(0, frames - len(wave))))
            db = librosa_log_mel(wave, sample_rate, cfg.model.frontend)
            pixels = np.clip((db + cfg.model.frontend.top_db) / cfg.model.frontend.top_db * 255, 0, 255)
            target = out / split / CLASS_DIRS[label] / f"{path.parent.name}_{path.stem}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[::-1].astype(np.uint8)).save(target)


class ImageClassifier(SpectrogramClassifier):
    """The same backbone, loss, metrics and validation-chosen threshold, fed the PNG images instead of waveforms."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image)

    def setup(self, stage: str) -> None:  # no front end to fit: the images are the features
        pass


class Flagged(torch.utils.data.Dataset):
    """(image, label) -> (image, label, anomalous): the batch shape of every task (abnormal is label 1)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image, label = self.images[index]
        return image, label, label


class PngImageFolder(L.LightningDataModule):
    """The rendered images through torchvision's ImageFolder, sampled as the main pipeline samples clips."""

    def __init__(self, root: Path, batch_size: int, seed: int):
        super().__init__()
        from torchvision import datasets, transforms

        transform = transforms.Compose([transforms.Grayscale(1), transforms.ToTensor(),
                                        transforms.Normalize([0.5], [0.5])])
        self.sets = {s: datasets.ImageFolder(str(root / s), transform=transform) for s in ("train", "val", "test")}
        self.labels = np.array(self.sets["train"].targets)
        self.sets = {s: Flagged(images) for s, images in self.sets.items()}
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self):
        labels = self.labels
        weights = 1.0 / np.bincount(labels)[labels]
        generator = torch.Generator().manual_seed(self.seed)
        sampler = WeightedRandomSampler(weights.tolist(), len(labels), generator=generator)
        return DataLoader(self.sets["train"], batch_size=self.batch_size, sampler=sampler,
                          drop_last=len(labels) > self.batch_size)  # as the main pipeline does

    def val_dataloader(self):
        return DataLoader(self.sets["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.sets["test"], batch_size=self.batch_size)


def run_png(args, ours_datamodule) -> dict:
    cfg = compose_cfg(args)
    out = Path(args.root) / "bench-png"
    start = time.perf_counter()
    render_pngs(ours_datamodule, cfg, out)
    preprocess = time.perf_counter() - start
    model = instantiate(cfg.model, _target_=f"{__name__}.ImageClassifier", in_chans=1,
                        class_names=["normal", "abnormal"])
    result = fit_and_test(cfg, model, PngImageFolder(out, cfg.data.batch_size, cfg.seed))
    result.update(preprocess_s=preprocess, disk_bytes=sum(f.stat().st_size for f in out.rglob("*.png")))
    return result


# -- (b) and (c) -------------------------------------------------------------------------------------------------


def front_end(args, datamodule, cfg) -> dict:
    """Log-mel of the training clips: torchaudio in batches on the device against librosa clip by clip."""
    dataset = datamodule.dataset("train")
    waves = torch.stack([dataset[i][0] for i in range(len(dataset))])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    frontend, on_device = LogMelFrontend(**cfg.model.frontend).to(device), waves.to(device)
    frontend.log_mel(on_device[:16])  # warm-up
    start = time.perf_counter()
    for batch in on_device.split(cfg.data.batch_size):
        frontend.log_mel(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    batched = time.perf_counter() - start
    librosa_log_mel(waves[0, 0].numpy(), cfg.data.sample_rate, cfg.model.frontend)  # warm-up (numba)
    start = time.perf_counter()
    for wave in waves.numpy():
        librosa_log_mel(wave[0], cfg.data.sample_rate, cfg.model.frontend)
    per_clip = time.perf_counter() - start
    return {"clips": len(waves), "device": device.type, "torchaudio_s": batched, "librosa_s": per_clip}


def loading(datamodule) -> dict:
    """Every training clip read once through the dataset, from the cache and by decoding the WAV (second pass of
    each, so both read from the page cache: the disk itself is not what is measured)."""
    items = datamodule.splits["train"]
    times = {}
    for name, sources in (("cache", datamodule.sources), ("decode", None)):
        dataset = ClipDataset(items, sources, datamodule.decoding, datamodule.num_frames)
        for _ in range(2):
            start = time.perf_counter()
            for i in range(len(dataset)):
                dataset[i]
            times[name] = time.perf_counter() - start
    return {"clips": len(items), "cache_s": times["cache"], "decode_s": times["decode"]}


def report(r: dict) -> str:
    ours, png, plain, fe, load = r["ours_cache"], r["png"], r["ours_decode"], r["front_end"], r["loading"]

    def later(values):  # from the second epoch on
        return float(np.mean(values[1:] if len(values) > 1 else values))

    mb = 1 / 2**20
    lines = [
        f"Date {r['date']}; {r['machine']}; {r['clips']} synthetic 8-channel 10 s clips (pump/id_04, -6 dB), "
        f"backbone {r['backbone']}, {r['epochs']} epochs, batch {r['batch_size']}, final weights tested.",
        "",
        "**(a) This pipeline against rendering PNG images with librosa and reading them with ImageFolder**",
        "",
        "| | this pipeline (cache) | librosa PNG + ImageFolder | PNG / this |",
        "|---|---|---|---|",
        f"| preprocessing (s) | {ours['preprocess_s']:.1f} | {png['preprocess_s']:.1f} | "
        f"{png['preprocess_s'] / ours['preprocess_s']:.1f} |",
        f"| time per epoch, from the 2nd (s) | {later(ours['epoch_s']):.1f} | {later(png['epoch_s']):.1f} | "
        f"{later(png['epoch_s']) / later(ours['epoch_s']):.2f} |",
        f"| disk used (MB) | {ours['disk_bytes'] * mb:.0f} | {png['disk_bytes'] * mb:.0f} | "
        f"{png['disk_bytes'] / max(ours['disk_bytes'], 1):.2f} |",
    ]
    for metric in ("auroc", "pauc", "f1", "balanced_accuracy"):
        lines.append(f"| test {metric} | {ours['test'][metric]:.3f} | {png['test'][metric]:.3f} | |")
    lines += [
        "",
        "**(b) Front end alone: log-mel of every training clip**",
        "",
        f"| clips | torchaudio, batched on {fe['device']} (s) | librosa, clip by clip (s) | librosa / torchaudio |",
        "|---|---|---|---|",
        f"| {fe['clips']} | {fe['torchaudio_s']:.2f} | {fe['librosa_s']:.2f} | "
        f"{fe['librosa_s'] / fe['torchaudio_s']:.1f} |",
        "",
        "**(c) The data path: the cache against decoding every epoch**",
        "",
        "| | cache | decode every epoch | decode / cache |",
        "|---|---|---|---|",
        f"| reading every training clip once ({load['clips']} clips, s) | {load['cache_s']:.2f} | "
        f"{load['decode_s']:.2f} | {load['decode_s'] / load['cache_s']:.1f} |",
        f"| data wait, share of step time, from the 2nd epoch | {later(ours['data_wait_share']):.1%} | "
        f"{later(plain['data_wait_share']):.1%} | |",
        f"| time per epoch, from the 2nd (s) | {later(ours['epoch_s']):.1f} | {later(plain['epoch_s']):.1f} | "
        f"{later(plain['epoch_s']) / later(ours['epoch_s']):.2f} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--normal", type=int, default=240)
    parser.add_argument("--abnormal", type=int, default=80)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--root", default=str(REPO / "data" / "bench"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "pipeline.md"))
    args = parser.parse_args(argv)

    results: dict = {"date": str(date.today()), "machine": machine_description(), "epochs": args.epochs,
                     "clips": args.normal + args.abnormal}
    print("(a) this pipeline, with the cache", file=sys.stderr)
    results["ours_cache"], datamodule = run_ours(args, cache=True)
    cfg = compose_cfg(args)
    results.update(backbone=cfg.model.backbone, batch_size=cfg.data.batch_size)
    print("(b) front end, (c) loading", file=sys.stderr)
    results["front_end"] = front_end(args, datamodule, cfg)
    results["loading"] = loading(datamodule)
    print("(c) this pipeline, decoding every epoch", file=sys.stderr)
    results["ours_decode"], _ = run_ours(args, cache=False)
    print("(a) librosa PNG + ImageFolder", file=sys.stderr)
    results["png"] = run_png(args, datamodule)
    text = report(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(text)
    print(f"written: {out} and {out.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
