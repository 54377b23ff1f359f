"""A failed write (a full disk, a folder that cannot be written) ends in one line naming the file and the cause,
and leaves no partial file that looks whole."""

from __future__ import annotations

import errno

import pytest
import torch

from machine_sound.errors import one_line, user_error
from machine_sound.runs import write_atomic
from machine_sound.train import train

FULL = OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_a_checkpoint_leaves_no_partial_checkpoint(cfg_factory, tmp_path, monkeypatch):
    real_save = torch.save

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        if str(f).endswith(".tmp"):  # a checkpoint being written: half of it reaches the disk, then it is full
            real_save(obj, f, *args, **kwargs)
            with open(f, "r+b") as handle:
                handle.truncate(100)
            raise FULL
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fill_the_disk)
    run = tmp_path / "run"
    with pytest.raises(OSError) as caught:
        train(cfg_factory(output_dir=run))
    line = one_line(caught.value)
    assert line.startswith(f"cannot write {run / 'checkpoints'}/") and "No space left on device" in line
    assert user_error(caught.value) is not None  # the entry points print it as one line, exit status 2
    assert list((run / "checkpoints").iterdir()) == []  # no truncated .ckpt and no staging file
    assert not (run / "metrics.json").exists()


def test_a_failed_write_keeps_the_previous_file_whole(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"auroc": 0.9}')

    def half_then_full(staging):
        staging.write_text('{"auro')
        raise FULL

    with pytest.raises(OSError) as caught:
        write_atomic(target, half_then_full)
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert target.read_text() == '{"auroc": 0.9}' and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    assert one_line(caught.value) == (f"cannot write {target}: No space left on device; free some space or choose "
                                      "a writable output folder")
