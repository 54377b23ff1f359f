"""Models (config group `model`)."""

from machine_sound.models.classifier import SpectrogramClassifier, create_backbone

__all__ = ["SpectrogramClassifier", "create_backbone"]
