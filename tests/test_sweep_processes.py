"""Joblib sweeps as processes: DataLoader workers inside joblib jobs, and jobs that stop when their launcher is
killed, leaving a summary that lists every job of the sweep."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, SMALL
from machine_sound.summarize import main as summarize
from machine_sound.synthetic.generator import SyntheticMimii

TINY = [o for o in SMALL if not o.startswith("data.generator.")]


def mimii(root: Path, ids: list[str]) -> Path:
    generator = SyntheticMimii(n_normal=15, n_abnormal=6, duration_s=2.0)
    for machine_id in ids:
        generator.ensure(root, "-6_dB", "fan", machine_id, progress=False)
    return root


def sweep_command(root: Path, sweep: Path, ids: list[str], *more: str) -> list[str]:
    return [sys.executable, "train.py", "-m", "machine=fan", f"id={','.join(ids)}", "data=mimii", f"data.root={root}",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data.num_workers=1", f"hydra.sweep.dir={sweep}",
            *TINY, *more]


def job_rows(sweep: Path) -> dict[str, dict]:
    return {r["name"]: r for r in csv.DictReader((sweep / "summary.csv").open()) if r["kind"] == "job"}


def test_joblib_jobs_with_dataloader_workers_finish(tmp_path):
    ids = ["id_00", "id_02"]
    root, sweep = mimii(tmp_path / "mimii", ids), tmp_path / "sweep"
    done = subprocess.run(sweep_command(root, sweep, ids), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "has no attribute 'env'" not in done.stderr
    for machine_id in ids:
        assert (sweep / f"-6_dB_fan/{machine_id}/metrics.json").exists()
    rows = job_rows(sweep)
    assert {r["status"] for r in rows.values()} == {"finished"}
    assert {r["positive"] for r in rows.values()} == {"abnormal"}  # each job's metrics.json positive_class


# -- the process tree, from /proc -------------------------------------------------------------------------------

def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def processes() -> dict[int, tuple[str, int, int]]:
    return {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := stat(int(p.name)))}


def descendants(pid: int, known: dict[int, int] | None = None) -> dict[int, int]:
    """pid -> start time of every process below `pid`, and below those in `known` (re-parented orphans)."""
    table = processes()
    found = dict(known or {})
    roots = {pid, *found}
    while True:
        new = {child: s[2] for child, s in table.items() if s[1] in roots and child not in found}
        if not new:
            return found
        found.update(new)
        roots |= set(new)


def alive(tracked: dict[int, int]) -> list[int]:
    """The tracked processes still running (a zombie waiting for its parent counts as gone)."""
    return [pid for pid, start in tracked.items() if (s := stat(pid)) and s[2] == start and s[0] not in "ZX"]


def test_killing_the_launcher_stops_its_jobs_and_the_summary_lists_every_job(tmp_path):
    ids = ["id_00", "id_02", "id_04"]  # two run at once, the third waits for a free worker
    root, sweep = mimii(tmp_path / "mimii", ids), tmp_path / "sweep"
    with open(tmp_path / "launcher.log", "w") as log:
        launcher = subprocess.Popen(sweep_command(root, sweep, ids, "trainer.max_epochs=1000"), cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT)
    tracked: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 300
        while True:  # both running jobs train once each has started its DataLoader worker
            tracked = descendants(launcher.pid)
            jobs = {s[1] for pid in tracked if (s := stat(pid)) and s[1] in tracked}
            if len(jobs) >= 2:
                break
            assert launcher.poll() is None and time.monotonic() < deadline, (tmp_path / "launcher.log").read_text()
            time.sleep(0.5)
        rows = job_rows(sweep)  # rebuilt as each job started
        assert sorted(r["status"] for r in rows.values()) == ["pending", "unfinished", "unfinished"]

        launcher.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 15
        while alive(tracked := descendants(launcher.pid, tracked)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(tracked), f"still running after the launcher was killed: {alive(tracked)}"
    finally:
        launcher.kill()
        launcher.wait()
        for pid in alive(tracked):  # only if the test failed: leave no trainer running
            os.kill(pid, signal.SIGKILL)

    assert summarize([str(sweep)]) == 0
    rows = job_rows(sweep)
    assert set(rows) == {f"-6_dB_fan/{i}" for i in ids}
    pending = [r for r in rows.values() if r["status"] == "pending"]
    assert len(pending) == 1 and not (Path(pending[0]["folders"]) / ".hydra").exists()
    assert "0 failed, 2 unfinished, 1 pending of 3 runs." in (sweep / "summary.md").read_text()
