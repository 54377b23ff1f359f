"""Writing files so that a reader never sees half of one: the one rule every output of the package follows.

Torch-free (predict from an ONNX file uses it where only onnxruntime, numpy and soundfile are installed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """`write` fills a file beside `path` that then replaces `path` in one step: a reader never sees half a file,
    and a failed write leaves nothing behind. The folder is made when missing; an OSError passes on, naming
    `path`."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(staging)
        os.replace(staging, path)
    except OSError as err:  # named by the file meant, not by the staging file
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        staging.unlink(missing_ok=True)


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON at `path`, written by `write_atomic`."""
    write_atomic(path, lambda staging: staging.write_text(json.dumps(data, indent=2)))
