"""The Makefile's commands are safe by default and clean what the tools write."""

import subprocess

from conftest import REPO


def make_n(*arguments) -> str:
    return subprocess.run(["make", "-n", *arguments], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_tensorboard_listens_on_this_machine_only_unless_asked():
    assert '--host "localhost"' in make_n("tensorboard") and "--bind_all" not in make_n("tensorboard")
    assert '--host "0.0.0.0"' in make_n("tensorboard", "HOST=0.0.0.0")


def test_clean_removes_every_kind_of_output():
    removed = make_n("clean").split()
    for folder in ("outputs/runs", "outputs/sweeps", "outputs/evals", "outputs/predictions"):
        assert folder in removed
