"""`model=embedding_knn`: any timm backbone's pooled embeddings, scored by their kNN distance to normal ones.

The detector for one machine with nothing to train but the statistics: the backbone (ImageNet-pretrained where
the user has the weights: `model.pretrained=true` or `model.weights_path`) embeds each clip's log-mel image, its
batch-norm statistics are re-estimated on the normal training clips (`adapt_batch_norm`: AdaBN, Li et al., 2016,
"Revisiting batch normalization for practical domain adaptation"), the embeddings of the normal training clips
are kept as the kNN memory (`machine_sound.models.knn`), and a clip's
anomaly score is the mean cosine distance of its embedding to the `k` nearest ones of its machine ID. This is the
scorer of the DCASE 2022-2024 Task 2 leading systems applied to a frozen image model, as anomalib's PatchCore
does for images (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022), here with one
pooled embedding per clip instead of patch embeddings. The default backbone is resnet18, anomalib's PaDiM
default. Without pretrained weights (as in this project's tests) the features are random ones: with the
statistics re-estimated, a loud fault added to 12 normal clips (3 synthetic machines, 4 seeds) moved every
resnet18 embedding away from the memory; mobilenetv3_small_100 did so for 8 of 12 to 9 of 12.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from machine_sound.errors import ConfigError, require_positive
from machine_sound.models.backbone import create_backbone
from machine_sound.models.detector import AnomalyDetector
from machine_sound.models.frontend import LogMelFrontend
from machine_sound.models.knn import KnnMemory


class EmbeddingKnn(AnomalyDetector):
    """`forward(wave)`: wave (batch, channels, samples) -> anomaly scores (batch, len(class_names)): the kNN
    distance of the clip's embedding to each ID's normal training embeddings.

    Training is one pass over the training clips, in order and each once: the front end's per-band statistics
    are fitted (`norm_clips` clips), the backbone's batch-norm statistics re-estimated (`adapt_batch_norm`), then
    every training clip's embedding is stored. Nothing is learned by gradient; the backbone is otherwise in eval
    mode. Raises ConfigError for settings that
    cannot work (an unknown backbone, a missing weights file, a bad `k` or metric)."""

    option = "embedding_knn"
    checkpoint_rule = "the single pass over the training clips (nothing is chosen)"

    def __init__(
        self,
        task: str = "id_anomaly",
        class_names: Sequence[str] | None = None,
        in_chans: int | None = None,
        frontend: dict | None = None,
        backbone: str = "resnet18",
        pretrained: bool = False,
        weights_path: str | None = None,
        global_pool: str = "avg",
        k: int = 1,
        metric: str = "cosine",
        by_domain: bool = True,
        source_means: int | None = None,
        norm_clips: int = 64,
        adapt_batch_norm: bool = True,
        threshold_percentile: float = 90.0,
        augment: dict | None = None,
    ):
        super().__init__(task, class_names, in_chans, threshold_percentile)
        require_positive("model.norm_clips", norm_clips, integer=True)
        if augment:
            raise ConfigError(f"model.augment={augment}: embedding_knn trains nothing, so it has no SpecAugment; "
                              "set model.augment=null")
        self.save_hyperparameters(logger=False)
        self._store_shape()
        self.frontend = LogMelFrontend(**{"sample_rate": 16000, "subtract_background": False, **(frontend or {})})
        self.net = create_backbone(backbone, pretrained, weights_path, self.channels, 0, 0.0, global_pool,
                                   zero_init_head=False)
        self.memory = KnnMemory(k, metric, by_domain, source_means, seed=0)
        self.automatic_optimization = False  # nothing to optimise: the memory is the model

    def _spec(self, wave: torch.Tensor) -> torch.Tensor:
        return self.frontend(wave).to(next(self.net.parameters()).dtype)

    @torch.no_grad()
    def embed(self, wave: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, features): the backbone's pooled embedding of the log-mel image."""
        return self.net(self._spec(wave)).float()

    def id_scores(self, wave: torch.Tensor) -> torch.Tensor:
        return self.memory.id_distances(self.embed(wave), len(self.ids))

    def train(self, mode: bool = True):
        """The backbone is a fixed feature extractor: it stays in eval mode, also while Lightning trains."""
        super().train(mode)
        self.net.eval()
        return self

    def on_fit_start(self) -> None:
        """Store the embeddings of every training clip, once each and in order (not the training sampler's
        balanced draw), unless a resumed checkpoint brought them."""
        if len(self.memory):
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.hparams.adapt_batch_norm:
            self._adapt_batch_norm(datamodule)
        self.memory.store(*self.split_outputs(datamodule, "train", self.embed))

    @torch.no_grad()
    def _adapt_batch_norm(self, datamodule) -> None:
        """Re-estimate every batch-norm layer's running mean and variance as the average over the training clips'
        batches (momentum None), then freeze them again."""
        norms = [m for m in self.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
            norm.train()
        self.split_outputs(datamodule, "train", lambda wave: self.net(self._spec(wave)), keep_mode=True)
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        self.net.eval()

    def training_step(self, batch, batch_idx):
        return None  # the memory was filled at the start of fitting

    def configure_optimizers(self):
        return None
