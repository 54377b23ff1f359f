"""How hard is the data? A linear classifier on each clip's time-averaged log-mel spectrum, per machine/ID.

Uses the training pipeline's own data module and the model's front-end settings (same files, split and log-mel),
so the numbers sit beside the CNN's. Real faults also show in timing and modulation, which time-averaging throws
away; on a good dataset this baseline stays clearly below the CNN. Always answering "normal" is shown too
(balanced accuracy 0.5, F1 0).

    python benchmarks/linear_baseline.py [snr=-6_dB] [data=mimii data.root=...] [--out results.md]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from machine_sound.config import compose, instantiate
from machine_sound.errors import one_line, user_error
from machine_sound.models.frontend import LogMelFrontend
from machine_sound.runs import machine_description, require_writable, write_atomic
from machine_sound.synthetic.generator import SyntheticMimii


def averaged_log_mel(datamodule, frontend: LogMelFrontend, split: str) -> tuple[np.ndarray, np.ndarray]:
    dataset = datamodule.dataset(split)
    feats, labels = [], []
    for start in range(0, len(dataset), 32):
        waves, ys, _ = zip(*(dataset[i] for i in range(start, min(start + 32, len(dataset)))))
        spec = frontend.log_mel(torch.stack(waves))  # (B, 1, mels, frames), in dB
        feats.append(spec.mean(dim=-1).flatten(1).numpy())
        labels += ys
    return np.concatenate(feats), np.array(labels)


def evaluate(overrides: list[str]) -> dict:
    cfg = compose(overrides + ["paths.output_dir=/tmp/linear-baseline"])
    cfg.data.run_dir = None
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    frontend = LogMelFrontend(**cfg.model.frontend)  # the model's front end settings; the mean over time in dB
    x = {s: averaged_log_mel(datamodule, frontend, s) for s in ("train", "val", "test")}
    best_c, best_auc = None, -1.0
    for c in (0.001, 0.01, 0.1, 1.0, 10.0):  # choose the regularisation on validation data
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, class_weight="balanced"))
        clf.fit(*x["train"])
        auc = roc_auc_score(x["val"][1], clf.predict_proba(x["val"][0])[:, 1])
        if auc > best_auc:
            best_c, best_auc = c, auc
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=best_c, max_iter=5000, class_weight="balanced"))
    clf.fit(np.concatenate([x["train"][0], x["val"][0]]), np.concatenate([x["train"][1], x["val"][1]]))
    xt, yt = x["test"]
    scores = clf.predict_proba(xt)[:, 1]
    return {"machine": cfg.machine, "id": cfg.id, "snr": cfg.snr, "auroc": roc_auc_score(yt, scores),
            "balanced_accuracy": balanced_accuracy_score(yt, scores > 0.5), "f1": f1_score(yt, scores > 0.5),
            "C": best_c}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. snr=0_dB")
    parser.add_argument("--machines", default="fan,pump,slider,valve")
    parser.add_argument("--ids", default="id_00,id_02,id_04,id_06")
    parser.add_argument("--out", help="also write the markdown table to this file")
    args = parser.parse_intermixed_args()  # overrides before or after the options (make baseline ARGS=...)
    try:
        if args.out:  # fail now, not after every machine/ID was fitted
            require_writable(Path(args.out).parent, "--out")
        return report(args)
    except Exception as err:  # a setting, file or folder the user can fix: one line, no traceback
        if user_error(err) is None:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


def report(args) -> int:
    start = time.time()
    rows = []
    for machine in args.machines.split(","):
        for machine_id in args.ids.split(","):
            r = evaluate(args.overrides + [f"machine={machine}", f"id={machine_id}"])
            rows.append(r)
            print(f"{r['snr']}_{machine}/{machine_id}: linear AUROC {r['auroc']:.3f}", file=sys.stderr)
    lines = ["| device | linear AUROC | linear bal. acc. | linear F1 | always-normal bal. acc. / F1 |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['snr']}_{r['machine']}/{r['id']} | {r['auroc']:.3f} | {r['balanced_accuracy']:.3f} | "
                     f"{r['f1']:.3f} | 0.500 / 0.000 |")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("auroc", "balanced_accuracy", "f1")}
    lines.append(f"| **mean** | **{mean['auroc']:.3f}** | {mean['balanced_accuracy']:.3f} | {mean['f1']:.3f} | "
                 "0.500 / 0.000 |")
    table = "\n".join(lines)
    print(table)
    took = time.time() - start
    print(f"\n{len(rows)} machine/IDs in {took:.0f} s", file=sys.stderr)
    if args.out:
        overrides = " ".join(args.overrides) or "(none)"
        header = (f"# Linear baseline on the time-averaged log-mel\n\nMeasured {datetime.date.today()} on "
                  f"{machine_description()}, {took:.0f} s for {len(rows)} machine/IDs; overrides: {overrides}; "
                  f"synthetic data: generator v{SyntheticMimii().version} (when data=synthetic).\n\n")
        write_atomic(Path(args.out), lambda tmp: tmp.write_text(header + table + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
