"""Front-end shapes and precision, and the metrics against sklearn's reference implementations."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from machine_sound.metrics import best_threshold, binary_metrics, set_threshold, with_balanced_accuracy
from machine_sound.models.frontend import LogMelFrontend, SpecAugment


def test_ten_second_clip_becomes_128_mels_by_313_frames():
    frontend = LogMelFrontend(16000)
    spec = frontend(torch.randn(3, 1, 160000))
    assert spec.shape == (3, 1, 128, 313)
    assert spec.dtype == torch.float32


def test_front_end_stays_float32_under_mixed_precision():
    frontend = LogMelFrontend(16000, n_mels=64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        spec = frontend(torch.randn(2, 1, 32000))
    assert spec.dtype == torch.float32 and torch.isfinite(spec).all()


def test_normalisation_is_fitted_per_band_and_saved_in_the_state_dict():
    frontend = LogMelFrontend(16000, n_mels=32, subtract_background=False)
    waves = torch.randn(4, 1, 16000) * torch.linspace(0.1, 2, 16000)
    frontend.fit(frontend.log_mel(waves))
    out = frontend(waves)
    assert out.mean(dim=(0, 1, 3)).abs().max() < 1e-3
    assert (out.std(dim=(0, 1, 3)) - 1).abs().max() < 0.05
    restored = LogMelFrontend(16000, n_mels=32, subtract_background=False)
    restored.load_state_dict(frontend.state_dict())
    assert torch.allclose(restored(waves), out) and bool(restored.fitted)


def test_background_subtraction_removes_a_steady_tone_and_keeps_a_burst():
    t = torch.arange(32000) / 16000
    steady = 0.5 * torch.sin(2 * np.pi * 1000 * t)
    noise = 1e-3 * torch.randn(32000, generator=torch.Generator().manual_seed(0))
    burst = torch.zeros(32000)
    burst[16000:17600] = torch.randn(1600)  # frames 31 to 34
    frontend = LogMelFrontend(16000, n_mels=64)
    wave = (steady + noise + burst)[None, None]
    tone_band = frontend.log_mel(wave)[0, 0, :, :28].mean(dim=-1).argmax()
    spec = frontend(wave)[0, 0]
    assert spec[tone_band, 2:28].abs().max() < 0.1  # the steady tone is gone
    assert spec[:, 32:34].mean() > 5 * spec[:, 2:28].abs().mean()  # the burst stands out


def test_spec_augment_masks_each_clip_differently():
    torch.manual_seed(0)
    out = SpecAugment(freq_mask_param=20, time_mask_param=40, num_masks=2)(torch.ones(4, 1, 64, 100))
    masked = (out == 0).flatten(1)
    assert masked.any(dim=1).all()
    assert not all(torch.equal(masked[0], m) for m in masked[1:])


def test_time_roll_shifts_every_clip_by_its_own_offset_and_keeps_its_content():
    torch.manual_seed(0)
    spec = torch.randn(6, 1, 8, 50)
    out = SpecAugment(freq_mask_param=0, time_mask_param=0, num_masks=0, time_roll=True)(spec)
    shifts = []
    for before, after in zip(spec, out):
        matches = [s for s in range(50) if torch.equal(torch.roll(before, s, dims=-1), after)]
        assert len(matches) == 1  # a pure circular shift in time, the same for every mel band
        shifts.append(matches[0])
    assert len(set(shifts)) > 1


def test_metrics_equal_sklearn_including_dcase_pauc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    scores = np.clip(y * 0.3 + rng.normal(0.35, 0.25, 400), 0, 1)
    metrics = binary_metrics()
    metrics.update(torch.tensor(scores, dtype=torch.float32), torch.tensor(y))
    got = {k: float(v) for k, v in with_balanced_accuracy(metrics.compute()).items()}
    assert got["auroc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-5)
    assert got["pauc"] == pytest.approx(roc_auc_score(y, scores, max_fpr=0.1), abs=1e-5)
    assert got["f1"] == pytest.approx(f1_score(y, scores > 0.5), abs=1e-6)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, scores > 0.5), abs=1e-6)


def test_threshold_is_chosen_for_the_best_balanced_accuracy_and_moves_the_metrics():
    scores = torch.tensor([0.1, 0.2, 0.55, 0.6, 0.7, 0.9, 0.95])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    threshold = best_threshold(scores, labels, "balanced_accuracy")
    assert 0.6 < threshold < 0.7  # 0.5 would call two normal clips abnormal
    metrics = binary_metrics(0.5)
    set_threshold(metrics, threshold)
    metrics.update(scores, labels)
    values = with_balanced_accuracy(metrics.compute())
    assert values["balanced_accuracy"] == 1.0 and values["f1"] == 1.0
    assert best_threshold(scores, torch.zeros(7, dtype=torch.long)) is None  # one class: nothing to choose
    with pytest.raises(ValueError, match="criterion"):
        best_threshold(scores, labels, "accuracy")


def test_a_false_alarm_budget_picks_the_lowest_threshold_within_it():
    scores = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.35, 0.65, 0.85])
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])  # 10 normal, 3 abnormal
    assert 0.8 < best_threshold(scores, labels, "fpr", target_fpr=0.2) < 0.85  # 0.9, 0.95 wrong: FPR 0.2
    assert 0.6 < best_threshold(scores, labels, "fpr", target_fpr=0.4) < 0.65  # catches 0.65 and 0.85 too
    assert best_threshold(scores, labels, "fpr", target_fpr=0.0) == pytest.approx(0.95)  # no false alarm: none called
