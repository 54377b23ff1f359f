"""The dashboards, read back the way a user sees them: from a TensorBoard server, through its HTTP data API."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from machine_sound.train import train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def tensorboard():
    servers = []

    def start(logdir, ready_tag: str) -> str:
        """Start TensorBoard on `logdir`; return its address once it serves the image `ready_tag` (it loads
        event files in the background, so earlier answers can be partial)."""
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                                   "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        servers.append(server)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if ready_tag in get(f"{base}/data/plugin/images/tags").get("tensorboard", {}):
                    return base
            except OSError:
                pass
            time.sleep(1)
        raise RuntimeError(f"TensorBoard did not serve {ready_tag} within 90 s")

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)


def test_tensorboard_serves_examples_figures_audio_curves_and_hparams(cfg_factory, tmp_path, tensorboard):
    run = tmp_path / "run"
    # Threshold 0 and no tuning: every clip is called abnormal, so every normal test clip is misclassified.
    result = train(cfg_factory("model.tune_threshold=null", "model.threshold=0.0", output_dir=run))
    wrong = min(result["n_test"]["normal"], 8)
    base = tensorboard(run, ready_tag=f"misclassified/{wrong - 1:02d}_normal_as_abnormal/spectrogram")
    plugins = get(f"{base}/data/plugins_listing")
    assert all(plugins[p]["enabled"] for p in ("scalars", "images", "audio", "histograms", "pr_curves", "hparams"))
    images = get(f"{base}/data/plugin/images/tags")["tensorboard"]
    expected = {"examples/normal", "examples/abnormal", "test/roc", "test/score_histograms", "test/confusion_matrix"}
    assert expected <= set(images)
    misclassified = [f"misclassified/{n:02d}_normal_as_abnormal" for n in range(wrong)]
    assert {f"{m}/spectrogram" for m in misclassified} <= set(images)
    assert {f"{m}/audio" for m in misclassified} == set(get(f"{base}/data/plugin/audio/tags")["tensorboard"])
    assert {f"{m}/file/text_summary" for m in misclassified} <= set(get(f"{base}/data/plugin/text/tags")["tensorboard"])
    assert "test/pr_curve" in get(f"{base}/data/plugin/pr_curves/tags")["tensorboard"]
    assert {"test/scores_normal", "test/scores_abnormal"} <= set(get(f"{base}/data/plugin/histograms/tags")
                                                                   ["tensorboard"])
    experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
    assert {"backbone", "machine", "id", "snr", "lr"} <= {h["name"] for h in experiment["hparamInfos"]}
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"test/auroc", "test/pauc", "test/f1"} <= metrics


def test_a_normal_only_detector_gets_the_same_dashboards(cfg_factory, tmp_path, tensorboard):
    """The anomaly score's ROC, histograms of normal against anomalous clips, the decision at the threshold and
    the HPARAMS row with the detector's name."""
    run = tmp_path / "run"
    train(cfg_factory("data.reader.protocol=baseline", "model=embedding_knn", output_dir=run))
    base = tensorboard(run, ready_tag="test/confusion_matrix")
    images = set(get(f"{base}/data/plugin/images/tags")["tensorboard"])
    assert {"examples/id_04", "test/roc", "test/score_histograms", "test/confusion_matrix"} <= images
    assert "test/pr_curve" in get(f"{base}/data/plugin/pr_curves/tags")["tensorboard"]
    assert {"test/scores_normal", "test/scores_anomalous"} <= set(get(f"{base}/data/plugin/histograms/tags")
                                                                    ["tensorboard"])
    experiment = get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
    assert {"model", "backbone", "machine", "id"} <= {h["name"] for h in experiment["hparamInfos"]}
    assert {"test/auroc", "test/pauc", "test/f1"} <= {m["name"]["tag"] for m in experiment["metricInfos"]}
