"""Plain against domain-aware kNN scoring of the same embeddings, on DCASE 2021-2025 style data.

For every finished run under a folder (a `sweep=dcase` or `sweep=synthetic_dcase` sweep of `model=id_classifier` or
`embedding_knn`), the run's checkpoint embeds the training and test clips once, and the kNN memory is rebuilt
with each scoring variant, so the variants differ in the memory alone:

- `plain`: every training embedding of the section, k nearest (with k = 1 this is also `model.by_domain=true`
  without means: the smaller of two minima is the overall minimum);
- `by_domain, source_means=M`: the section's source embeddings replaced by M k-means centres, its target
  embeddings kept, the smaller of the two distances (Wilkinghoff, ICASSP 2023, uses M = 16).

The table has AUROC (source), AUROC (target), pAUC and the official score per machine/section and over all
(`machine_sound.challenge`), with the date and machine:

    python benchmarks/dcase_domain_knn.py outputs/sweeps/dcase_idc --means 4 16 64 --out benchmarks/results/x.md
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import torch

from machine_sound.challenge import hmean_floored, section_metrics
from machine_sound.config import instantiate
from machine_sound.models.knn import KnnMemory
from machine_sound.runs import load_checkpoint, load_model, machine_description, run_config


def embeddings(run: Path):
    """(model, {split: (embeddings, labels, domains, anomalous)}) of a finished run's checkpoint."""
    result = json.loads((run / "metrics.json").read_text())
    checkpoint = result["best_checkpoint"]
    cfg = run_config(load_checkpoint(checkpoint))
    cfg.paths.output_dir = str(run)  # the stored config names Hydra's run folder, unknown outside Hydra
    cfg.data.run_dir = None  # write nothing into the run
    model = load_model(checkpoint, cfg)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    out = {}
    for split in ("train", "test"):
        emb, labels, domains = model.split_outputs(datamodule, split, model.embed)
        anomalous = torch.tensor([r.anomalous for r in datamodule.splits[split]])
        out[split] = (emb, labels, domains, anomalous)
    return model, result, out


def variant_scores(model, data, k: int, means: int | None) -> dict[str, dict]:
    """Per-section metrics of the test clips with the memory built as `means` says (None: plain kNN)."""
    memory = KnnMemory(k, "cosine", by_domain=means is not None, source_means=means)
    memory.store(*data["train"][:3])
    emb, labels, domains, anomalous = data["test"]
    scores = memory.id_distances(emb, len(model.class_names)).gather(1, labels[:, None]).squeeze(1)
    return section_metrics(scores.cpu(), anomalous, labels.cpu(), domains.cpu(), model.class_names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a sweep or run folder; every metrics.json below it is used")
    parser.add_argument("--means", type=int, nargs="+", default=[16], help="k-means centres of the source domain")
    parser.add_argument("--k", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in args.folder.rglob("metrics.json"))
    variants = [("plain", None)] + [(f"by_domain, source_means={m}", m) for m in args.means]
    rows, terms = [], {name: [] for name, _ in variants}
    for run in runs:
        model, result, data = embeddings(run)
        for name, means in variants:
            for section, m in variant_scores(model, data, args.k, means).items():
                row = [f"{result.get('machine', '')}/{section}", name]
                values = [m.get(key) for key in ("auroc_source", "auroc_target", "pauc")]
                score = hmean_floored(values) if None not in values else None
                rows.append(row + [*values, score])
                terms[name] += values
    lines = [f"# Plain and domain-aware kNN scoring of the same embeddings ({args.folder})", "",
             f"{date.today()}, {machine_description()}; k = {args.k}; {len(runs)} run(s). AUROC (source/target) "
             "and pAUC as the DCASE 2022-2025 evaluator computes them; official score: their harmonic mean.", "",
             "| machine/section | memory | AUROC (source) | AUROC (target) | pAUC | official score |",
             "|---|---|---|---|---|---|"]
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lines += [f"| {r[0]} | {r[1]} | " + " | ".join(fmt(v) for v in r[2:]) + " |" for r in rows]
    for name, _ in variants:
        values = terms[name]
        if values and None not in values:
            mean = lambda i: sum(values[i::3]) / len(values[i::3])  # noqa: E731
            lines.append(f"| **all** | {name} | {mean(0):.3f} | {mean(1):.3f} | {mean(2):.3f} | "
                         f"{hmean_floored(values):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
