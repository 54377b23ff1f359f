"""Installed like a library: a non-editable `pip install <repository>` trains from any folder."""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


@pytest.mark.slow
def test_a_non_editable_install_trains_in_an_empty_folder_elsewhere(tmp_path):
    """A new virtual environment that reuses this one's packages (torch is 5 GB) through a .pth line, the
    repository installed into it without -e, and the console script run in an empty folder: the data and the run
    folder are written under that folder, and nothing is read from the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (Path(target) / "stack.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    source = tmp_path / "repository"  # a copy: pip builds in the source tree (build/), which stays untouched
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(source)], capture_output=True,
                             text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import machine_sound.conf as c; print(c.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not the repository's source

    work = tmp_path / "empty"
    work.mkdir()
    done = subprocess.run([str(venv / "bin" / "machine-sound-train"), "machine=pump", "id=id_04",
                           "trainer.max_epochs=1"], cwd=work, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "-6_dB_pump/id_04: test AUROC" in done.stdout
    (metrics,) = (work / "outputs" / "runs").rglob("metrics.json")
    assert json.loads(metrics.read_text())["epochs"] == 1
    assert len(list((work / "data" / "synthetic").rglob("*.wav"))) == 480
