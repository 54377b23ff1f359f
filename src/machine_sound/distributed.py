"""Evaluation with several processes (`trainer.strategy=ddp`) that gives the metrics of one process.

Lightning's default evaluation sampler pads the last shard with repeated clips, which changes every metric; here
the validation and test loaders shard the clips without repeats (Lightning's `UnrepeatedDistributedSampler`:
process r gets clips r, r + W, r + 2W, ... of W processes), each model gathers its per-clip outputs with
torchmetrics (`CatMetric`, synced on compute), and `in_dataset_order` puts the gathered outputs back in the
split's order, so per-clip files (`test_scores.csv`) line up with `split.csv`.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Sampler


def evaluation_sampler(dataset: Dataset, trainer) -> Sampler | None:
    """The sampler of a validation or test loader: None (in order) for one process, else this process's shard
    without repeats (every process gets at least one clip, or Lightning refuses)."""
    if trainer is None or trainer.world_size <= 1:
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                        shuffle=False)


def in_dataset_order(gathered: torch.Tensor, world_size: int) -> torch.Tensor:
    """Per-clip values (N, ...) gathered from `world_size` unrepeated shards (process 0's clips first, then
    process 1's, ...) in the dataset's order; unchanged for one process."""
    if world_size <= 1:
        return gathered
    count = len(gathered)
    order = torch.cat([torch.arange(rank, count, world_size) for rank in range(world_size)])
    ordered = torch.empty_like(gathered)
    ordered[order.to(gathered.device)] = gathered
    return ordered


def gathered(module, *metrics) -> tuple[torch.Tensor, ...]:
    """Each `CatMetric`'s values from every process evaluating `module` (a LightningModule), in the dataset's
    order, on the CPU."""
    trainer = getattr(module, "_trainer", None)
    size = trainer.world_size if trainer is not None else 1
    return tuple(in_dataset_order(metric.compute(), size).cpu() for metric in metrics)


def first_process() -> bool:
    """Whether this is the first process of a run (always, for one process): it alone prints the result or the
    error every process meets. Lightning's global rank, read from the launcher's or SLURM's variables."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0
