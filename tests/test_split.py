"""The stratified train/val/test split."""

import numpy as np
import pytest

from machine_sound.data.split import stratified_split
from machine_sound.errors import ConfigError, DataError

LABELS = np.array([0] * 300 + [1] * 90)


def test_every_item_in_exactly_one_split_with_the_class_ratio_kept():
    split = stratified_split(LABELS, 0.6, 0.2, 0.2, seed=0)
    assert set(split) == {"train", "val", "test"}
    assert len(split) == len(LABELS)  # one assignment per item: no overlap, nothing lost
    for name, fraction in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        part = LABELS[split == name]
        assert len(part) == pytest.approx(fraction * len(LABELS), abs=2)
        assert part.mean() == pytest.approx(LABELS.mean(), abs=0.02)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = stratified_split(LABELS, 0.6, 0.2, 0.2, seed=3)
    assert (a == stratified_split(LABELS, 0.6, 0.2, 0.2, seed=3)).all()
    assert (a != stratified_split(LABELS, 0.6, 0.2, 0.2, seed=4)).any()


def test_tiny_classes_still_reach_every_split():
    split = stratified_split([0, 0, 0, 1, 1, 1], 0.8, 0.1, 0.1, seed=0)
    for name in ("train", "val", "test"):
        assert sorted(np.array([0, 0, 0, 1, 1, 1])[split == name]) == [0, 1]


def test_too_few_files_of_a_class_says_how_many_are_needed():
    with pytest.raises(DataError, match=r"only 2 'abnormal' file\(s\).*at least 3 per class"):
        stratified_split([0, 0, 0, 0, 1, 1], 0.6, 0.2, 0.2, seed=0)


def test_fractions_must_sum_to_one():
    with pytest.raises(ConfigError, match="sum to 1"):
        stratified_split(LABELS, 0.7, 0.2, 0.2, seed=0)
