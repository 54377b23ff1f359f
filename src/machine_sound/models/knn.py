"""The k-nearest-neighbour memory of normal embeddings: a buffer of the model, searched with torch.

The scorer of the DCASE 2022-2024 Task 2 leading systems: a clip's anomaly score is its embedding's distance to
the nearest embeddings of normal training clips of its own machine ID (or DCASE section). With domains (DCASE
2021-2025: about 990 source and 10 target clips per section) the memory can be searched by domain: the distance to
the source embeddings and to the target ones, taking the smaller, with the source embeddings optionally replaced
by k-means centres so that the dense source domain does not outweigh the sparse target one (Wilkinghoff, "Design
choices for learning embeddings from auxiliary tasks for domain generalization in anomalous sound detection",
ICASSP 2023: 16 means). Like anomalib's PatchCore memory bank
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
    """Normal training embeddings (N, D) with their machine IDs (N,) and domains (N,: 0 source, 1 target, -1 none),
    as buffers.

    `id_distances(queries, n_ids)` -> (Q, n_ids): each query's mean distance to the `k` nearest memory rows of
    every ID (fewer when an ID has fewer rows; inf for an ID with none). With `by_domain`, an ID with rows of both
    domains gives the smaller of the distances to its source rows and to its target rows. `source_means` (with
    `by_domain`) replaces each ID's source rows by that many k-means centres when it has more (scikit-learn's
    `KMeans`, seeded by `seed`). ConfigError for a bad `k`, metric or count of means."""

    def __init__(self, k: int = 1, metric: str = "cosine", by_domain: bool = False, source_means: int | None = None,
                 seed: int = 0):
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ConfigError(f"model.k={k!r}: the number of nearest neighbours, a whole number >= 1")
        if metric not in METRICS:
            raise ConfigError(f"model.metric={metric}: choose {' or '.join(METRICS)}")
        if source_means is not None and (not isinstance(source_means, int) or isinstance(source_means, bool)
                                         or source_means < 1):
            raise ConfigError(f"model.source_means={source_means!r}: a number of k-means centres >= 1 (16 in "
                              "Wilkinghoff 2023), or null to keep every source embedding")
        if source_means is not None and not by_domain:
            raise ConfigError(f"model.source_means={source_means} replaces the source-domain embeddings by centres, "
                              "which only makes sense with model.by_domain=true; with model.by_domain=false set "
                              "model.source_means=null")
        self.k, self.metric, self.by_domain, self.source_means, self.seed = k, metric, by_domain, source_means, seed
        self.register_buffer("embeddings", torch.empty(0, 0))
        self.register_buffer("labels", torch.empty(0, dtype=torch.long))
        self.register_buffer("domains", torch.empty(0, dtype=torch.long))

    def __len__(self) -> int:
        return len(self.labels)

    @torch.no_grad()
    def store(self, embeddings: torch.Tensor, labels: torch.Tensor, domains: torch.Tensor | None = None) -> None:
        """Replace the memory with these embeddings (N, D), their IDs (N,) and domains (N,; None: no domains),
        each ID's source rows reduced to `source_means` centres where that is set."""
        embeddings = embeddings.detach().float()
        labels = labels.detach().long().to(embeddings.device)
        domains = (torch.full_like(labels, -1) if domains is None else domains.detach().long().to(embeddings.device))
        if self.source_means is not None:
            embeddings, labels, domains = self._source_means(embeddings, labels, domains)
        self.embeddings, self.labels, self.domains = embeddings.clone(), labels.clone(), domains.clone()

    def _source_means(self, embeddings, labels, domains):
        from sklearn.cluster import KMeans

        keep = torch.ones(len(labels), dtype=torch.bool, device=labels.device)
        parts = []
        for label in labels.unique().tolist():
            source = (labels == label) & (domains == 0)
            if int(source.sum()) <= self.source_means:
                continue
            rows = embeddings[source]
            if self.metric == "cosine":  # centres of directions, as the cosine distance sees them
                rows = nn.functional.normalize(rows, dim=-1)
            means = KMeans(self.source_means, n_init=1, random_state=self.seed).fit(rows.cpu().double().numpy())
            centres = torch.as_tensor(means.cluster_centers_, dtype=torch.float32, device=embeddings.device)
            keep &= ~source
            parts.append((centres, torch.full((len(centres),), label, device=labels.device),
                          torch.zeros(len(centres), dtype=torch.long, device=labels.device)))
        if not parts:
            return embeddings, labels, domains
        return tuple(torch.cat([kept[keep]] + [p[i] for p in parts])
                     for i, kept in enumerate((embeddings, labels, domains)))

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
            if not len(rows):
                continue
            domains = self.domains[self.labels == k]  # -1 where none (also for a memory stored before domains)
            if self.by_domain and (domains == 0).any() and (domains == 1).any():
                out[:, k] = torch.minimum(*(knn_distance(queries, rows[domains == d],
                                                         min(self.k, int((domains == d).sum())), self.metric)
                                            for d in (0, 1)))
            else:
                out[:, k] = knn_distance(queries, rows, min(self.k, len(rows)), self.metric)
        return out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored memory's size is only known now: take its shape before the tensors are copied.
        if prefix + "labels" in state_dict and prefix + "domains" not in state_dict:  # a memory stored without domains
            state_dict[prefix + "domains"] = torch.full_like(state_dict[prefix + "labels"], -1)
        for name in ("embeddings", "labels", "domains"):
            stored = state_dict.get(prefix + name)
            if stored is not None:
                setattr(self, name, torch.empty_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
