"""Spectrogram front end and its training-time augmentation (config group `features`)."""

from machine_sound.features.frontend import LogMelFrontend, SpecAugment

__all__ = ["LogMelFrontend", "SpecAugment"]
