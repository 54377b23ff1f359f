"""A deterministic stratified train/val/test split."""

from __future__ import annotations

import numpy as np

from machine_sound.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")


def check_fractions(train: float, val: float, test: float) -> None:
    """ConfigError unless train and val are > 0, test >= 0 (0: the data brings its own test set) and they sum
    to 1."""
    if train <= 0 or val <= 0 or test < 0 or abs(train + val + test - 1.0) > 1e-6:
        raise ConfigError(f"data.split fractions train={train}, val={val}, test={test} must be > 0 (test may be 0 "
                          "when the data brings its own test set) and sum to 1")


def stratified_split(labels, train: float, val: float, test: float, seed: int,
                     class_names=("normal", "abnormal")) -> np.ndarray:
    """Assign each item to 'train', 'val' or 'test', keeping the class ratio in every split.

    The same labels, fractions and seed always give the same assignment. Every split gets at least one item of
    every class, so metrics such as AUROC are defined on val and test (with test=0 there is no test split: for
    data that brings its own test set).
    """
    check_fractions(train, val, test)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n = len(members)
        n_val = max(1, int(round(n * val)))
        n_test = max(1, int(round(n * test))) if test > 0 else 0
        if n - n_val - n_test < 1:
            name = class_names[label] if label < len(class_names) else str(label)
            need = 3 if test > 0 else 2
            raise DataError(f"only {n} '{name}' file(s): a train/val/test split needs at least {need} per class "
                            "(one in each split); add recordings or use another ID")
        order = members[rng.permutation(n)]
        assignment[order[:n_test]] = "test"
        assignment[order[n_test:n_test + n_val]] = "val"
        assignment[order[n_test + n_val:]] = "train"
    return assignment
