"""The k-nearest-neighbour memory of normal embeddings: a buffer of the model, searched with torch.

The scorer of the DCASE 2022-2024 Task 2 leading systems: a clip's anomaly score is its embedding's distance to
the nearest embeddings of normal training clips of its own machine ID. Like anomalib's PatchCore memory bank
(`DynamicBufferMixin`), the memory is a buffer whose size is only known after training, so it is in the state dict
and the checkpoint, loads with `weights_only=True`, and is resized to the stored one when a checkpoint is loaded.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from machine_sound.errors import ConfigError

log = logging.getLogger(__name__)
METRICS = ("cosine", "euclidean")


def knn_distance(queries: torch.Tensor, memory: torch.Tensor, k: int = 1, metric: str = "cosine") -> torch.Tensor:
    """The mean distance of each query (Q, D) to its `k` nearest rows of `memory` (N, D) -> (Q,), by `cdist` and
    `topk`: the same as scikit-learn's brute-force `NearestNeighbors(k, metric=...).kneighbors(queries)[0].mean(1)`.
    `cosine` is 1 - cosine similarity (from the Euclidean distance of the unit vectors), `euclidean` the L2
    distance. Computed in float32 or wider. ValueError for an empty memory or fewer than `k` rows."""
    if len(memory) < k or k < 1:
        raise ValueError(f"{len(memory)} memory rows cannot give the {k} nearest neighbours")
    queries, memory = queries.float(), memory.float()
    if metric == "cosine":
        unit_q = nn.functional.normalize(queries, dim=-1)
        unit_m = nn.functional.normalize(memory, dim=-1)
        distances = (torch.cdist(unit_q, unit_m).square() / 2).clamp(0.0, 2.0)
    else:
        distances = torch.cdist(queries, memory)
    return distances.topk(k, dim=-1, largest=False).values.mean(dim=-1)


class KnnMemory(nn.Module):
    """Normal training embeddings (N, D) with their machine IDs (N,), as buffers.

    `id_distances(queries, n_ids)` -> (Q, n_ids): each query's mean distance to the `k` nearest memory rows of
    every ID (fewer when an ID has fewer rows; inf for an ID with none). ConfigError for a bad `k` or metric."""

    def __init__(self, k: int = 1, metric: str = "cosine"):
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"model.k={k!r}: the number of nearest neighbours, a whole number >= 1")
        if metric not in METRICS:
            raise ConfigError(f"model.metric={metric}: choose {' or '.join(METRICS)}")
        self.k, self.metric = k, metric
        self.register_buffer("embeddings", torch.empty(0, 0))
        self.register_buffer("labels", torch.empty(0, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.labels)

    @torch.no_grad()
    def store(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Replace the memory with these embeddings (N, D) and their IDs (N,)."""
        self.embeddings = embeddings.detach().float().clone()
        self.labels = labels.detach().long().clone().to(self.embeddings.device)

    def id_distances(self, queries: torch.Tensor, n_ids: int) -> torch.Tensor:
        if not len(self):
            raise RuntimeError("the kNN memory is empty: train the model (it is filled from the training clips)")
        out = torch.full((len(queries), n_ids), float("inf"), device=queries.device)
        for k in range(n_ids):
            rows = self.embeddings[self.labels == k]
            if 0 < len(rows) < self.k and not getattr(self, "_told", False):
                self._told = True
                log.warning("model.k=%d, but machine ID %d has %d training embedding(s): its score averages those",
                            self.k, k, len(rows))
            if len(rows):
                out[:, k] = knn_distance(queries, rows, min(self.k, len(rows)), self.metric)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored memory's size is only known now: take its shape before the tensors are copied.
        for name in ("embeddings", "labels"):
            stored = state_dict.get(prefix + name)
            if stored is not None:
                setattr(self, name, torch.empty_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
