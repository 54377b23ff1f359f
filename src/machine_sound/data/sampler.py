"""The training order: seeded per epoch, so a resumed run draws what the uninterrupted run drew."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """The training order, seeded by `seed` + `epoch()`, read when the order is drawn, so epoch k draws the same
    order whether the run went straight through or was resumed before it (a generator seeded once would replay
    epoch 0's order after a resume). `epoch` is the data module's, not Lightning's `set_epoch`: on resume Lightning
    makes the first iterator, and with worker processes draws its first batches, before it sets the epoch. With
    `weights`, `len(weights)` indices drawn with replacement in proportion to them (balanced sampling); without, a
    permutation of `size` indices."""

    def __init__(self, size: int, seed: int, epoch: Callable[[], int], weights: Sequence[float] | None = None):
        self.size, self.seed, self.epoch = size, seed, epoch
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch())
        if self.weights is None:
            return iter(torch.randperm(self.size, generator=generator).tolist())
        return iter(torch.multinomial(self.weights, self.size, replacement=True, generator=generator).tolist())


def domain_share_weights(weights: np.ndarray, labels: np.ndarray, target: np.ndarray, share: float) -> np.ndarray:
    """Sampling weights (N,) rescaled so that each label's target-domain clips (`target`, a boolean (N,)) get
    `share` of that label's draws and its source clips the rest; a label without clips of both domains keeps its
    weights, and each label keeps its total."""
    weights = np.asarray(weights, dtype=float).copy()
    for label in np.unique(labels):
        own = labels == label
        if (own & target).any() and (own & ~target).any():
            total = weights[own].sum()
            weights[own & target] *= share * total / weights[own & target].sum()
            weights[own & ~target] *= (1 - share) * total / weights[own & ~target].sum()
    return weights
