"""benchmarks/auroc_by_fault.py: AUROC per synthetic fault kind, joined from test_scores.csv and fault_kinds.csv."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "auroc_by_fault.py"
spec = importlib.util.spec_from_file_location("auroc_by_fault", SCRIPT)
auroc_by_fault = importlib.util.module_from_spec(spec)
spec.loader.exec_module(auroc_by_fault)


def fake_run(tmp_path, rng):
    """A run folder whose test clips are 6 normal and 6 abnormal pump/id_04 files of two fault kinds."""
    folder = tmp_path / "data" / "-6_dB_pump" / "pump" / "id_04"
    kinds = ["clogging", "leakage"] * 3
    (folder).mkdir(parents=True)
    (folder / "fault_kinds.csv").write_text("file,fault\n" + "".join(f"abnormal/{i:08d}.wav,{k}\n"
                                                                      for i, k in enumerate(kinds)))
    run = tmp_path / "sweep" / "0"
    run.mkdir(parents=True)
    normal, abnormal = rng.uniform(0, 0.6, 6), rng.uniform(0.3, 1.0, 6)
    rows = [f"{folder}/normal/{i:08d}.wav,normal,0,{s:.6f}\n" for i, s in enumerate(normal)]
    rows += [f"{folder}/abnormal/{i:08d}.wav,abnormal,1,{s:.6f}\n" for i, s in enumerate(abnormal)]
    (run / "test_scores.csv").write_text("path,class,anomalous,p_abnormal\n" + "".join(rows))
    return run, normal, abnormal, kinds


def test_each_kinds_auroc_equals_sklearns_on_its_clips(tmp_path):
    run, normal, abnormal, kinds = fake_run(tmp_path, np.random.default_rng(0))
    machine, device, scores = auroc_by_fault.kinds_of_run(run)
    assert (machine, device) == ("pump", "-6_dB_pump/id_04")
    for kind in ("clogging", "leakage"):
        faulty = np.round([s for s, k in zip(abnormal, kinds) if k == kind], 6)
        expected = roc_auc_score([0] * 6 + [1] * 3, np.concatenate([np.round(normal, 6), faulty]))
        assert auroc_by_fault.auroc(scores["normal"], scores[kind]) == pytest.approx(expected)
    out = tmp_path / "by_fault.md"
    assert auroc_by_fault.main([str(tmp_path / "sweep"), "--out", str(out)]) == 0
    assert "| -6_dB_pump/id_04 |" in out.read_text() and "(3)" in out.read_text()


def test_a_run_without_a_fault_list_or_scores_is_named(tmp_path, capsys):
    run, *_ = fake_run(tmp_path, np.random.default_rng(1))
    (tmp_path / "data" / "-6_dB_pump" / "pump" / "id_04" / "fault_kinds.csv").unlink()
    assert auroc_by_fault.main([str(run)]) == 2
    assert "fault_kinds.csv is missing" in capsys.readouterr().err
    assert auroc_by_fault.main([str(tmp_path / "empty")]) == 2
    assert "no test_scores.csv under" in capsys.readouterr().err
