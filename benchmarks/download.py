"""`make bench`, download: what machine-sound-download costs besides the network, on a zip of `--megabytes` served
from 127.0.0.1 (so the link is not the limit and the rest shows):

(a) the transfer with the md5 computed on the way (`ResumingDownloader`), in MB/s;
(b) pooch's own check of the finished file, a second read of it (the price of letting pooch verify and move);
(c) unpacking (zipfile, stored members: the copy, not the inflation);
(d) resuming at half: re-reading the part already there for its md5, then the second half;
(e) the whole command, as a user runs it (download, checks, unpack, reader read-back), in a new process.

    python benchmarks/download.py [--megabytes 1000] [--out benchmarks/results/download_<date>.md]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from machine_sound.download.fetch import ResumingDownloader, md5_of  # noqa: E402
from machine_sound.download.unpack import unpack  # noqa: E402
from machine_sound.runs import machine_description  # noqa: E402
from test_download import Server  # noqa: E402  (the tests' Range-capable server)


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(f"benchmarks/results/download_{date.today()}.md"))
    args = parser.parse_args()
    size = args.megabytes * 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(tmp / "-6_dB_fan.zip", "w", zipfile.ZIP_STORED) as z:
            z.writestr("fan/id_00/normal/00000000.wav", os.urandom(size))
            z.writestr("fan/id_00/abnormal/00000000.wav", b"RIFF")
        body = (tmp / "-6_dB_fan.zip").read_bytes()
        server = Server()
        server.files["-6_dB_fan.zip"] = body
        url, mb = f"{server.url}/-6_dB_fan.zip", len(body) / 1e6

        a = timed(lambda: ResumingDownloader(tmp / "a.part", progressbar=False)(url, str(tmp / "a.zip")))
        b = timed(lambda: md5_of(tmp / "a.zip"))
        c = timed(lambda: unpack(tmp / "a.zip", tmp / "unpacked", "fan", progressbar=False))
        (tmp / "d.part").write_bytes(body[: len(body) // 2])
        d = timed(lambda: ResumingDownloader(tmp / "d.part", progressbar=False)(url, str(tmp / "d.zip")))
        assert server.requests[-1] == ("-6_dB_fan.zip", f"bytes={len(body) // 2}-")
        catalog = tmp / "bench.yaml"
        catalog.write_text(f"title: bench\nrecord: {server.url}\nurl: {server.url}/{{file}}\nlayout: mimii\n"
                           "folder: mimii\nkeys: [snr, machine]\nunpack: '{snr}_{machine}'\nholds: '{machine}'\n"
                           f"files:\n  - {{file: -6_dB_fan.zip, snr: -6_dB, machine: fan, bytes: {len(body)}, "
                           f"md5: {hashlib.md5(body).hexdigest()}}}\n")
        e = timed(lambda: subprocess.run([sys.executable, "-m", "machine_sound.download", f"dataset={catalog}",
                                          f"dest={tmp / 'command'}"], check=True, capture_output=True))
        server.httpd.shutdown()
    lines = [f"# machine-sound-download without the network ({date.today()})", "",
             f"Machine: {machine_description()}. A {mb:.0f} MB zip served from 127.0.0.1 by the tests' server "
             "(`python benchmarks/download.py`).", "",
             "| step | seconds | MB/s |", "|---|---|---|",
             f"| (a) transfer, md5 on the way | {a:.2f} | {mb / a:.0f} |",
             f"| (b) pooch's check of the finished file (a second read) | {b:.2f} | {mb / b:.0f} |",
             f"| (c) unpack | {c:.2f} | {mb / c:.0f} |",
             f"| (d) resume at half: md5 of the part, then the rest | {d:.2f} | {mb / d:.0f} |",
             f"| (e) the whole command in a new process (download, checks, unpack, read-back) | {e:.2f} | "
             f"{mb / e:.0f} |", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
