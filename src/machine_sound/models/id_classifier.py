"""`model=id_classifier`: learn to tell a machine type's IDs apart on normal clips; a clip that does not fit its own
ID is anomalous.

The idea that won DCASE 2020 Task 2 and, with margin losses and a kNN scorer, every year since (Giri et al., 2020;
Wilkinghoff, "Self-supervised learning for anomalous sound detection", 2024): a timm backbone on the log-mel image
learns the ID of each normal clip, with cross-entropy or a margin loss from pytorch-metric-learning (ArcFace,
Deng et al., CVPR 2019, or sub-center ArcFace, Deng et al., ECCV 2020; their class centres are parameters of the
model, so the optimizer updates them). Two scorers:

- `not_own`: 1 - p(own ID), the probability from the classifier's logits (cross-entropy) or the scaled cosine
  similarities to the class centres (margin losses);
- `knn`: the cosine distance of the clip's embedding to the nearest training embeddings of its own ID (the scorer
  of the DCASE 2022-2024 leading systems). The memory is filled after training, from the chosen checkpoint's
  weights, and stored in that checkpoint (`after_fit`).

The classes learned are the machine IDs, or the data's auxiliary classes where it has them (`aux_names`, each
belonging to one ID: DCASE 2022-2025's section x attribute combinations, the standard auxiliary task since 2022);
a clip is scored as a recording of its ID (section) either way. The default is ArcFace with the kNN scorer. Needs
two or more classes; one stops with a line naming the detectors that work. Measured: on tiny synthetic data
(2 pump IDs, 15 epochs) 1 - p(own ID) was not monotone in a fault's loudness (a softmax stays confident far from
its training clips); the kNN distance was.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from machine_sound.errors import ConfigError, MachineSoundError, require_positive
from machine_sound.models.backbone import create_backbone
from machine_sound.models.detector import AnomalyDetector
from machine_sound.models.frontend import LogMelFrontend, SpecAugment
from machine_sound.models.knn import KnnMemory

LOSSES = ("cross_entropy", "arcface", "subcenter_arcface")
SCORERS = ("not_own", "knn")


class IdClassifier(AnomalyDetector):
    """`forward(wave)`: wave (batch, channels, samples) -> anomaly scores (batch, len(class_names)): each clip's
    score as a recording of each ID (`scorer`). Raises ConfigError for settings that cannot work, among them a
    single machine ID."""

    learns_ids = True
    option = "id_classifier"

    def __init__(
        self,
        task: str = "id_anomaly",
        class_names: Sequence[str] | None = None,
        in_chans: int | None = None,
        frontend: dict | None = None,
        augment: dict | None = None,
        backbone: str = "mobilenetv3_small_100",
        pretrained: bool = False,
        weights_path: str | None = None,
        drop_rate: float = 0.2,
        global_pool: str = "avgmax",
        zero_init_head: bool = True,
        label_smoothing: float = 0.0,
        norm_clips: int = 64,
        loss: str = "arcface",
        margin: float = 28.6,
        scale: float = 64.0,
        sub_centers: int = 3,
        scorer: str = "knn",
        k: int = 1,
        by_domain: bool = True,
        source_means: int | None = 16,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        threshold_percentile: float = 90.0,
        aux_names: Sequence[str] | None = None,
        aux_labels: Sequence[int] | None = None,
    ):
        super().__init__(task, class_names, in_chans, threshold_percentile)
        self.aux_names = list(aux_names or self.ids)
        self.aux_labels = list(aux_labels if aux_labels is not None else range(len(self.ids)))
        if len(self.aux_labels) != len(self.aux_names) or not all(0 <= k < len(self.ids) for k in self.aux_labels):
            raise ConfigError(f"model.aux_labels={aux_labels}: one label index per auxiliary class of "
                              f"{self.aux_names}; leave model.aux_names and aux_labels unset to follow the data")
        if len(self.aux_names) < 2:
            raise ConfigError(f"model=id_classifier learns to tell machine IDs (or DCASE sections and attributes) "
                              f"apart, but the data has one ({self.aux_names[0]}); use model=autoencoder or "
                              "model=embedding_knn, which learn one machine's normal sound (MIMII: or "
                              "data.reader.train_ids=all; DCASE: or machine=all)")
        if loss not in LOSSES:
            raise ConfigError(f"model.loss={loss}: choose {', '.join(LOSSES)}")
        if scorer not in SCORERS:
            raise ConfigError(f"model.scorer={scorer}: choose {' or '.join(SCORERS)}")
        require_positive("model.norm_clips", norm_clips, integer=True)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self._store_shape()
        self.hparams.update(aux_names=self.aux_names, aux_labels=self.aux_labels)
        self.register_buffer("aux_to_label", torch.tensor(self.aux_labels, dtype=torch.long), persistent=False)
        classes = len(self.aux_names)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.frontend = LogMelFrontend(**{"sample_rate": 16000, "subtract_background": False, **(frontend or {})})
        self.augment = SpecAugment(**augment) if augment else None
        margin_loss = loss != "cross_entropy"
        self.net = create_backbone(backbone, pretrained, weights_path, self.channels,
                                   0 if margin_loss else classes, drop_rate, global_pool,
                                   zero_init_head and not margin_loss)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.margin_loss = None
        features = getattr(self.net, "head_hidden_size", None) or self.net.num_features  # what forward_head gives
        if margin_loss:
            from pytorch_metric_learning import losses

            require_positive("model.scale", scale)
            if loss == "arcface":
                self.margin_loss = losses.ArcFaceLoss(classes, features, margin=margin,
                                                      scale=scale)
            else:
                require_positive("model.sub_centers", sub_centers, integer=True)
                self.margin_loss = losses.SubCenterArcFaceLoss(classes, features, margin=margin,
                                                               scale=scale, sub_centers=sub_centers)
        self.memory = KnnMemory(k, "cosine", by_domain, source_means, seed=0)

    # -- waveform to embedding, logits and scores ------------------------------------------------------------------

    def _spec(self, wave: torch.Tensor) -> torch.Tensor:
        spec = self.frontend(wave)
        if self.training and self.augment is not None:
            spec = self.augment(spec)
        return spec.to(next(self.net.parameters()).dtype)

    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, features): the pooled embedding before the classifier."""
        net = self.net
        return net.forward_head(net.forward_features(self._spec(wave)), pre_logits=True).float()

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        """(batch, features) -> (batch, classes): the classifier's logits, or the scaled cosine similarities to the
        margin loss's class centres."""
        if self.margin_loss is not None:
            return self.margin_loss.get_logits(embedding)
        head = self.net.get_classifier()
        return head(nn.functional.dropout(embedding, self.hparams.drop_rate, self.training)).float()

    def id_scores(self, wave: torch.Tensor) -> torch.Tensor:
        embedding = self.embed(wave)
        if self.hparams.scorer == "not_own":
            return 1 - self.id_probabilities(embedding)
        if not len(self.memory):
            raise MachineSoundError("the kNN scorer's memory is empty: it is filled when training ends, in the "
                                    "checkpoint that train.py tested (best_checkpoint in the run's metrics.json), "
                                    "not in last.ckpt; use that one")
        return self.memory.id_distances(embedding, len(self.ids))

    def id_probabilities(self, embedding: torch.Tensor) -> torch.Tensor:
        """(batch, features) -> (batch, IDs): p(ID), the summed probabilities of each ID's auxiliary classes."""
        probs = self.logits(embedding).softmax(dim=-1)
        out = torch.zeros(len(probs), len(self.ids), dtype=probs.dtype, device=probs.device)
        return out.index_add_(1, self.aux_to_label.to(probs.device), probs)

    def _loss(self, embedding: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        if self.margin_loss is not None:
            return self.margin_loss(embedding, label)
        return self.criterion(self.logits(embedding), label)

    # -- steps ------------------------------------------------------------------------------------------------------

    def training_step(self, batch, batch_idx):
        wave, label, aux = batch[0], batch[1], batch[4]
        loss = self._loss(self.embed(wave), aux)
        if not torch.isfinite(loss):
            raise MachineSoundError(f"training diverged: the training loss is {loss.item()} at epoch "
                                    f"{self.current_epoch}; lower model.optimizer.lr, or use a larger "
                                    "data.batch_size")
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(label))
        return loss

    def validation_step(self, batch, batch_idx):
        """val/loss (the training loss on normal validation clips) and the scores 1 - p(own ID) that the
        thresholds are fitted on while training (refitted on kNN scores by `after_fit` with `scorer=knn`)."""
        wave, label, aux = batch[0], batch[1], batch[4]
        embedding = self.embed(wave)
        scores = 1 - self.id_probabilities(embedding).gather(1, label[:, None]).squeeze(1)
        self.val_scores.update(scores.detach())
        self.val_labels.update(label)
        self.log("val/loss", self._loss(embedding, aux), on_epoch=True, prog_bar=True, batch_size=len(label),
                 sync_dist=True)

    def after_fit(self, datamodule) -> bool:
        """With `scorer=knn`: fill the memory with the training clips' embeddings and refit the thresholds on the
        validation clips' kNN scores."""
        if self.hparams.scorer != "knn":
            return False
        self.memory.store(*self.split_outputs(datamodule, "train", self.embed))
        scores, labels, _ = self.split_outputs(datamodule, "val", self.id_scores)
        self.fit_thresholds(scores.gather(1, labels[:, None]).squeeze(1), labels)
        return True
