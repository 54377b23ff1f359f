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

import itertools
import logging

import torch
from torch import nn

from machine_sound.errors import ConfigError

log = logging.getLogger(__name__)
METRICS = ("cosine", "euclidean")


def knn_distance(queries: torch.Tensor, memory: torch.Tensor, k: int = 1, metric: str = "cosine") -> torch.Tensor:
    """The mean distance of each query (Q, D) to its `k` nearest rows of `memory` (N, D) -> (Q,), by one matrix
    product and `topk`: the same as scikit-learn's brute-force `NearestNeighbors(k, metric=...).kneighbors(queries)
    [0].mean(1)`. `cosine` is 1 - cosine similarity, `euclidean` the L2 distance from |q|^2 + |m|^2 - 2 q.m (as
    `torch.cdist` and scikit-learn compute it for more than 25 rows; ONNX has no `cdist`). Computed in float32 or
    wider. ValueError for an empty memory or fewer than `k` rows."""
    if len(memory) < k or k < 1:
        raise ValueError(f"{len(memory)} memory rows cannot give the {k} nearest neighbours")
    queries, memory = queries.float(), memory.float()
    if metric == "cosine":
        unit_q = nn.functional.normalize(queries, dim=-1)
        unit_m = nn.functional.normalize(memory, dim=-1)
        distances = (1 - unit_q @ unit_m.T).clamp(0.0, 2.0)
    else:
        squared = queries.square().sum(-1, keepdim=True) + memory.square().sum(-1) - 2 * queries @ memory.T
        distances = squared.clamp_min(0.0).sqrt()
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
        self._arrange()

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

    def _arrange(self) -> None:
        """Order the rows by (ID, domain group) and note each group's span of rows, as Python numbers: the search
        then slices fixed spans, with no data-dependent shape, so `torch.export` (ONNX) takes it as it is. A group
        is an ID's rows, or with `by_domain` and rows of both domains, its source rows and its target rows."""
        labels, domains = self.labels.tolist(), self.domains.tolist()
        found: dict[int, set[int]] = {}
        for label, domain in zip(labels, domains):
            found.setdefault(label, set()).add(domain)
        both = {label for label, kinds in found.items() if self.by_domain and {0, 1} <= kinds}
        group = [(label, domain if label in both else -1) for label, domain in zip(labels, domains)]
        order = sorted(range(len(group)), key=group.__getitem__)
        if order != list(range(len(group))):
            index = torch.tensor(order, dtype=torch.long, device=self.labels.device)
            self.embeddings, self.labels, self.domains = (self.embeddings[index], self.labels[index],
                                                          self.domains[index])
        self._spans: dict[int, list[tuple[int, int]]] = {}
        start = 0
        for (label, _), members in itertools.groupby(group[i] for i in order):
            size = sum(1 for _ in members)
            self._spans.setdefault(label, []).append((start, start + size))
            start += size
        short = {label: end - begin for label, spans in self._spans.items() for begin, end in spans
                 if end - begin < self.k}
        if short:
            log.warning("model.k=%d, but some machine IDs (or their domains) have fewer training embeddings: %s; "
                        "their scores average those", self.k,
                        ", ".join(f"ID {label}: {size}" for label, size in sorted(short.items())))

    def id_distances(self, queries: torch.Tensor, n_ids: int) -> torch.Tensor:
        if not len(self):
            raise RuntimeError("the kNN memory is empty: train the model (it is filled from the training clips)")
        if getattr(self, "_spans", None) is None:
            self._arrange()
        columns = []
        for label in range(n_ids):
            distances = [knn_distance(queries, self.embeddings[begin:end], min(self.k, end - begin), self.metric)
                         for begin, end in self._spans.get(label, ())]
            if not distances:  # an ID without training embeddings
                columns.append(queries.new_full((queries.shape[0],), float("inf"), dtype=torch.float32))
                continue
            column = distances[0]
            for other in distances[1:]:  # with by_domain: the nearer of its source and target rows
                column = torch.minimum(column, other)
            columns.append(column)
        return torch.stack(columns, dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The stored memory's size is only known now: take its shape before the tensors are copied.
        if prefix + "labels" in state_dict and prefix + "domains" not in state_dict:  # a memory stored without domains
            state_dict[prefix + "domains"] = torch.full_like(state_dict[prefix + "labels"], -1)
        for name in ("embeddings", "labels", "domains"):
            stored = state_dict.get(prefix + name)
            if stored is not None:
                setattr(self, name, torch.empty_like(stored, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._spans = None  # arranged on the first search, from the loaded rows
