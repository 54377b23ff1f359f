"""Results that cannot mean anything are errors; a metric that cannot be computed for one group is reported
missing with a warning naming the group, and the others stand."""

from __future__ import annotations

import logging

import pytest
import torch

from machine_sound.errors import MachineSoundError
from machine_sound.metrics import auroc_by_label
from machine_sound.train import train
from test_layouts import make_dcase

FAST = ("data=dcase2020", "machine=fan", "model=id_classifier", "data.clip_seconds=1.0", "trainer.max_epochs=1")


def test_an_id_without_anomalous_test_clips_is_missing_not_nan():
    scores = torch.tensor([0.1, 0.9, 0.2, 0.3, 0.4])
    flags = torch.tensor([0, 1, 0, 0, 0])
    labels = torch.tensor([0, 0, 1, 1, 1])
    per_id = auroc_by_label(scores, flags, labels, ["id_00", "id_02", "id_04"])
    assert per_id["id_00"] == {"auroc": 1.0, "pauc": 1.0}
    assert per_id["id_02"] == {"auroc": None, "pauc": None, "missing": "no anomalous test clip"}
    assert per_id["id_04"] == {"auroc": None, "pauc": None, "missing": "no normal and no anomalous test clip"}


def test_a_dcase_test_folder_without_anomalies_is_an_error_not_auroc_nan(cfg_factory, tmp_path):
    root = tmp_path / "dcase"
    make_dcase(root)
    for path in (root / "fan" / "test").glob("anomaly_*.wav"):
        path.unlink()
    with pytest.raises(MachineSoundError, match=r"fan/test has no machine ID with both normal_\* and anomaly_\* "
                                                r"clips, so no AUROC can be computed"):
        train(cfg_factory(*FAST, f"data.root={root}", f"paths.output_dir={tmp_path / 'run'}"))
    assert not (tmp_path / "run" / "checkpoints").exists()  # refused before training, not after


def test_one_id_without_anomalies_is_reported_missing_and_the_mean_is_of_the_others(cfg_factory, tmp_path, caplog):
    root = tmp_path / "dcase"
    make_dcase(root)
    for path in (root / "fan" / "test").glob("anomaly_id_02_*.wav"):
        path.unlink()
    with caplog.at_level(logging.WARNING):
        result = train(cfg_factory(*FAST, f"data.root={root}"))
    assert "test AUROC and pAUC of id_02 are missing: no anomalous test clip" in caplog.text
    assert result["per_id"]["id_02"]["missing"] == "no anomalous test clip"
    assert result["metrics"]["auroc"] == result["per_id"]["id_00"]["auroc"]
    assert "auroc_id_02" not in result["metrics"]
