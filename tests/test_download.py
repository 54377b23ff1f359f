"""machine-sound-download against a local HTTP server on 127.0.0.1: MIMII- and DCASE-layout zips are downloaded,
verified, unpacked and trained on; a checksum mismatch, a dropped connection, no network and a second run."""

from __future__ import annotations

import hashlib
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import write_wav
from machine_sound.download import catalog as catalogs
from machine_sound.download import fetch, unpack
from machine_sound.download.cli import download, main
from machine_sound.download.unpack import STATE
from machine_sound.errors import ConfigError, DataError
from machine_sound.train import train

FAST = ["trainer.max_epochs=1", "model.backbone=mobilenetv3_small_050", "data.clip_seconds=1.0"]


class Server:
    """Files served from memory with HTTP Range support. `drops[name] = [n1, n2, ...]`: the next requests of that
    file close the connection after n1, n2, ... bytes of the body; `requests` logs (name, Range header)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.drops: dict[str, list[int]] = {}
        self.ignore_range = False
        self.answers: list[int] = []  # statuses to answer before serving (e.g. [503]: busy once)
        self.resets = 0  # requests to close without a word (the server was reached: not "no network")
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("?")[0]
                server.requests.append((name, self.headers.get("Range")))
                if server.resets:
                    server.resets -= 1
                    self.close_connection = True
                    return
                if server.answers:
                    self.send_error(server.answers.pop(0))
                    return
                if name not in server.files:
                    self.send_error(404)
                    return
                body, start = server.files[name], 0
                asked = self.headers.get("Range")
                if asked and not server.ignore_range:
                    start = int(asked.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.drops.get(name):
                    self.wfile.write(body[start:start + server.drops[name].pop(0)])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def fetched(self, name: str) -> list[str | None]:
        return [r for n, r in self.requests if n == name]


@pytest.fixture
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


def zip_of(folder: Path, path: Path) -> bytes:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                z.write(file, file.relative_to(folder))
    return path.read_bytes()


def mimii_zip(tmp_path: Path, machine="fan", n_normal=10, n_abnormal=5) -> bytes:
    """What -6_dB_<machine>.zip holds: <machine>/id_00/{normal,abnormal}/*.wav (1 s clips here)."""
    tree = tmp_path / f"src_mimii_{machine}"
    for label, count in (("normal", n_normal), ("abnormal", n_abnormal)):
        for i in range(count):
            write_wav(tree / machine / "id_00" / label / f"{i:08d}.wav", 1.0, seed=i + 100 * (label == "abnormal"))
    return zip_of(tree, tmp_path / f"mimii_{machine}.zip")


def dcase_zip(tmp_path: Path, machine="fan") -> bytes:
    """What dev_<machine>.zip of 2022-2025 holds: <machine>/{train,test}/ and attributes_00.csv."""
    tree = tmp_path / f"src_dcase_{machine}" / machine
    for i in range(8):
        write_wav(tree / "train" / f"section_00_source_train_normal_{i:04d}_a_{i % 2}.wav", 1.0, seed=i)
    write_wav(tree / "train" / "section_00_target_train_normal_0008_a_9.wav", 1.0, seed=8)
    for i, (domain, kind) in enumerate([("source", "normal"), ("source", "anomaly"), ("target", "normal"),
                                        ("target", "anomaly")]):
        write_wav(tree / "test" / f"section_00_{domain}_test_{kind}_{i:04d}_a_{i % 2}.wav", 1.0, seed=20 + i)
    (tree / "attributes_00.csv").write_text("file_name,d1p,d1v\n")
    return zip_of(tree.parent, tmp_path / f"dcase_{machine}.zip")


def write_catalog(tmp_path: Path, server: Server, layout: str, files: dict[str, tuple[dict, bytes]],
                  md5: bool = True, sizes: bool = True) -> str:
    """A catalog of `files` ({name: (choices, bytes)}) served by `server`, in the packaged catalogs' form."""
    keys = ["snr", "machine"] if layout == "mimii" else ["machine"]
    raw = {"title": f"test {layout}", "record": f"{server.url}/record", "url": server.url + "/{file}",
           "layout": layout, "folder": layout, "keys": keys,
           "unpack": "{snr}_{machine}" if layout == "mimii" else ".", "holds": "{machine}", "files": []}
    for name, (choices, body) in files.items():
        server.files[name] = body
        raw["files"].append({"file": name, **choices, "md5": hashlib.md5(body).hexdigest() if md5 else None,
                             "bytes": len(body) if sizes else None})
    path = tmp_path / f"{layout}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def run(capsys, *args) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, "\n".join(line for line in err.splitlines() if line.startswith("error:"))  # not the log


def test_a_mimii_zip_is_downloaded_verified_unpacked_trained_on_and_not_fetched_again(tmp_path, server, capsys,
                                                                                     cfg_factory):
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"},
                                                                          mimii_zip(tmp_path))})
    dest = tmp_path / "data" / "mimii"
    code, out, err = run(capsys, f"dataset={catalog}", "machine=fan", f"dest={dest}")
    assert code == 0, err
    assert sorted(p.name for p in (dest / "-6_dB_fan" / "fan" / "id_00").iterdir()) == ["abnormal", "normal"]
    assert not (dest / "-6_dB_fan.zip").exists() and not list(dest.glob("*.part*")) and not list(dest.glob(".unp*"))
    assert "id_00 10 normal / 5 abnormal" in out
    command = f"machine-sound-train data=mimii data.root={dest} snr=-6_dB machine=fan id=id_00"
    assert command in out
    result = train(cfg_factory(*command.split()[1:], *FAST))
    assert 0.0 <= result["metrics"]["auroc"] <= 1.0 and result["layout"] == "mimii"

    server.requests.clear()
    code, out, err = run(capsys, f"dataset={catalog}", "machine=fan", f"dest={dest}")
    assert code == 0 and server.requests == [] and "1 already unpacked" in out


def test_a_dcase_zip_is_downloaded_unpacked_and_trained_on_its_checksum_recorded_when_unpublished(
        tmp_path, server, capsys, cfg_factory):
    body = dcase_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "dcase", {"dev_fan.zip": ({"machine": "fan"}, body)}, md5=False,
                            sizes=False)
    dest = tmp_path / "dcase2023" / "dev"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}", "keep_archives=true")
    assert code == 0, err
    assert (dest / "fan" / "attributes_00.csv").exists() and (dest / "dev_fan.zip").read_bytes() == body
    state = yaml.safe_load((dest / STATE).read_text())
    assert state["dev_fan.zip"]["md5"] == hashlib.md5(body).hexdigest()
    assert state["dev_fan.zip"]["md5_source"] == "recorded on first download"
    assert "9 training clips, 4 test clips, sections section_00" in out
    command = next(line.strip() for line in out.splitlines() if "data=dcase " in line)
    result = train(cfg_factory(*command.split()[1:], *FAST, "model.source_means=2"))
    assert {"auroc_source", "auroc_target", "pauc"} <= set(result["metrics"])

    # the folder is moved away: the kept archive is verified against the recorded md5, not downloaded again
    (dest / "fan").rename(tmp_path / "elsewhere")
    server.requests.clear()
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0 and server.requests == [] and "verified 1 already there" in out
    assert (dest / "fan" / "train").is_dir() and not (dest / "dev_fan.zip").exists()  # it downloaded it: its to delete


def test_a_checksum_mismatch_is_one_line_naming_the_file_and_both_sums_and_leaves_nothing(tmp_path, server, capsys):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    server.files["-6_dB_fan.zip"] = body[:-1] + bytes([body[-1] ^ 1])  # the server's copy differs by one bit
    dest = tmp_path / "mimii"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: -6_dB_fan.zip: md5 ")
    assert hashlib.md5(server.files["-6_dB_fan.zip"]).hexdigest() in lines[0]
    assert hashlib.md5(body).hexdigest() in lines[0]
    assert list(dest.iterdir()) == []  # neither the download nor a part of it


def test_a_dropped_connection_is_resumed_where_it_stopped(tmp_path, server, capsys, monkeypatch):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    server.drops["-6_dB_fan.zip"] = [len(body) // 2]
    monkeypatch.setattr(fetch.ResumingDownloader, "wait", staticmethod(lambda attempt: 0))
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={tmp_path / 'mimii'}")
    assert code == 0, err
    arrived = len(body) // 2 // fetch.CHUNK * fetch.CHUNK  # whole chunks; the one being read when it broke is lost
    assert arrived > 0 and server.fetched("-6_dB_fan.zip") == [None, f"bytes={arrived}-"]
    assert (tmp_path / "mimii" / "-6_dB_fan" / "fan" / "id_00" / "normal").is_dir()


def test_a_download_that_keeps_breaking_leaves_only_a_part_file_which_the_next_run_resumes(tmp_path, server, capsys,
                                                                                         monkeypatch):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    # one chunk arrives, then three tries in a row bring nothing (a chunk cut short is lost)
    server.drops["-6_dB_fan.zip"] = [fetch.CHUNK + 100, 100, 100, 100]
    monkeypatch.setattr(fetch.ResumingDownloader, "wait", staticmethod(lambda attempt: 0))
    dest = tmp_path / "mimii"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}", "retries=2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "broke off" in err and "run the command again to resume it" in err
    assert not (dest / "-6_dB_fan.zip").exists() and not (dest / "-6_dB_fan").exists()  # nothing looks whole
    assert (dest / "-6_dB_fan.zip.part").read_bytes() == body[:fetch.CHUNK]
    assert not [p for p in dest.iterdir() if p.name.startswith("tmp")]  # pooch's temporary file is gone too

    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    assert server.fetched("-6_dB_fan.zip")[-1] == f"bytes={fetch.CHUNK}-"
    assert not (dest / "-6_dB_fan.zip.part").exists() and (dest / "-6_dB_fan" / "fan").is_dir()


def test_a_server_that_ignores_the_range_request_is_downloaded_from_the_start(tmp_path, server, capsys, caplog):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"
    dest.mkdir()
    (dest / "-6_dB_fan.zip.part").write_bytes(b"x" * 500)  # not even the right bytes: the md5 would catch a mix
    server.ignore_range = True
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    assert "ignored the request to resume" in caplog.text


def test_no_network_is_one_line_within_seconds_saying_what_to_fetch_and_where(tmp_path, capsys):
    dest = tmp_path / "mimii"
    start = time.monotonic()
    code, out, err = run(capsys, "dataset=mimii", "snr=-6_dB", "machine=pump,valve", f"dest={dest}",
                         "mirror=http://127.0.0.1:9")  # the discard port: nothing listens there
    assert time.monotonic() - start < 10
    (line,) = err.strip().splitlines()
    assert code == 2 and line.startswith("error: cannot reach 127.0.0.1:9")
    assert "fetch -6_dB_pump.zip, -6_dB_valve.zip by hand from https://zenodo.org/records/3384388" in line
    assert f"into {dest.resolve()}/" in line


def test_an_archive_put_there_by_hand_is_verified_and_unpacked_without_the_network(tmp_path, server, capsys):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"
    dest.mkdir()
    (dest / "-6_dB_fan.zip").write_bytes(body[:100] + b"!" + body[101:])
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 2 and "-6_dB_fan.zip: md5 " in err and hashlib.md5(body).hexdigest() in err
    assert (dest / "-6_dB_fan.zip").exists()  # the user's file is not deleted
    (dest / "-6_dB_fan.zip").write_bytes(body)
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0 and server.requests == [] and (dest / "-6_dB_fan" / "fan").is_dir()


def test_too_little_disk_space_stops_before_anything_is_fetched(tmp_path, server, capsys, monkeypatch):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    monkeypatch.setattr(fetch, "free_bytes", lambda folder: 1000)
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={tmp_path / 'mimii'}")
    assert code == 2 and "not enough free disk space" in err and "give dest=" in err and server.requests == []


def test_a_folder_that_is_not_ours_is_left_as_found(tmp_path, server, capsys):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"
    with zipfile.ZipFile(tmp_path / "mimii_fan.zip") as z:  # the user unzipped it by hand before
        z.extractall(dest / "-6_dB_fan")
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0 and server.requests == [] and "1 left as found" in out
    (dest / "-6_dB_fan" / "fan" / "id_00" / "normal" / "00000000.wav").unlink()  # changed: still left as found
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0 and server.requests == [] and "1 left as found" in out


def test_the_packaged_catalogs_are_complete_and_choose_the_published_files():
    for name in catalogs.known():
        catalog = catalogs.load(name)
        assert catalog.archives and catalog.layout in catalogs.LAYOUTS
        assert all(a.url.startswith(catalog.record + "/files/") for a in catalog.archives)
    mimii = catalogs.load("mimii")
    assert len(mimii.archives) == 12 and all(a.md5 and a.bytes for a in mimii.archives)
    (pump,) = mimii.select({"snr": ["-6_dB"], "machine": ["pump"]})
    assert pump.file == "-6_dB_pump.zip" and pump.md5 == "d20b783a0ff9c93d58f452f98c37b112"
    assert pump.url == "https://zenodo.org/records/3384388/files/-6_dB_pump.zip?download=1"
    assert [a.file for a in catalogs.load("dcase2020").select({"machine": ["ToyCar"]})] == ["dev_data_ToyCar.zip"]
    assert len(catalogs.load("dcase2023").select({})) == 7
    with pytest.raises(ConfigError, match=r"snr=1_dB: not in dataset=mimii; choose from -6_dB, 0_dB, 6_dB"):
        mimii.select({"snr": ["1_dB"]})
    with pytest.raises(ConfigError, match=r"snr= does not apply to dataset=dcase2021"):
        catalogs.load("dcase2021").select({"snr": ["-6_dB"]})


@pytest.mark.parametrize("args, match", [
    (["dataset=nope"], r"dataset=nope: choose one of dcase2020, .*mimii"),
    (["dataset=mimii", "machine=drill"], r"machine=drill: not in dataset=mimii"),
    (["dataset=mimii", "keep_archives=maybe"], r"keep_archives=maybe: true or false"),
    (["dataset=mimii", "colour=red"], r"unknown setting colour=red"),
    (["dataset=mimii", "retries=-1"], r"retries=-1: a whole number"),
])
def test_bad_settings_are_one_line(capsys, args, match):
    code, out, err = run(capsys, *args, "dry_run=true")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert __import__("re").search(match, err)


def test_a_bad_catalog_file_is_named(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("title: x\n")
    with pytest.raises(ConfigError, match=r"dataset=.*mine.yaml: missing .*files"):
        catalogs.load(str(path))
    data = {"title": "t", "record": "r", "url": "u/{file}", "layout": "mimii", "folder": "f", "keys": ["machine"],
            "unpack": ".", "holds": "{machine}", "files": [{"file": "a.zip", "machine": "fan", "md5": "xyz"}]}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"a.zip: md5='xyz' is not 32 hexadecimal digits"):
        catalogs.load(str(path))
    data["files"] = [{"file": "a.zip", "machine": "fan", "mdd5": "0" * 32}]  # a typo must not turn checking off
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"a.zip: unknown field\(s\) mdd5"):
        catalogs.load(str(path))


def test_a_zip_without_the_expected_folder_is_refused_and_leaves_nothing(tmp_path, server):
    (tmp_path / "odd" / "pump").mkdir(parents=True)
    (tmp_path / "odd" / "pump" / "x.wav").write_bytes(b"RIFF")
    body = zip_of(tmp_path / "odd", tmp_path / "odd.zip")
    catalog = catalogs.load(write_catalog(tmp_path, server, "mimii",
                                          {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)}))
    dest = tmp_path / "mimii"
    with pytest.raises(DataError, match=r"-6_dB_fan.zip holds pump at its top, not one folder fan"):
        download(catalog, {}, dest, progressbar=False)
    assert not (dest / "-6_dB_fan").exists() and not list(dest.glob(".unpacking*"))


def test_a_part_that_is_already_whole_is_verified_without_downloading_it_again(tmp_path, server, capsys):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)},
                            sizes=False)
    dest = tmp_path / "mimii"
    dest.mkdir()
    (dest / "-6_dB_fan.zip.part").write_bytes(body)  # killed after the last byte, before the move
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    assert server.fetched("-6_dB_fan.zip") == [f"bytes={len(body)}-"]  # answered 416: nothing more to send
    assert (dest / "-6_dB_fan" / "fan").is_dir()


def test_a_bad_first_download_without_a_published_checksum_is_neither_recorded_nor_kept(tmp_path, server, capsys):
    body = dcase_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "dcase", {"dev_fan.zip": ({"machine": "fan"}, body)}, md5=False,
                            sizes=False)
    server.files["dev_fan.zip"] = b"<html>a login page</html>"
    dest = tmp_path / "dev"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 2 and "is not a readable zip archive" in err and "it is deleted: run the command again" in err
    assert not (dest / "dev_fan.zip").exists()
    assert "md5" not in yaml.safe_load((dest / STATE).read_text())["dev_fan.zip"]
    server.files["dev_fan.zip"] = body
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    assert yaml.safe_load((dest / STATE).read_text())["dev_fan.zip"]["md5"] == hashlib.md5(body).hexdigest()


def test_a_busy_server_is_asked_again(tmp_path, server, capsys, monkeypatch):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    monkeypatch.setattr(fetch.ResumingDownloader, "wait", staticmethod(lambda attempt: 0))
    server.answers = [503, 429]
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={tmp_path / 'mimii'}")
    assert code == 0, err
    assert len(server.requests) == 3


def test_one_run_at_a_time_per_destination(tmp_path, server, capsys):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"
    dest.mkdir()
    with fetch.only_writer(dest):  # another run, holding the destination
        code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 2 and f"another machine-sound-download is working in {dest}" in err and server.requests == []


@pytest.mark.parametrize("setup, match", [
    ("mirror", r"mirror=127.0.0.1:1/x: an http:// or https:// address"),
    ("state", r"is not this command's record .*; delete it"),
    ("empty zip", r"-6_dB_fan.zip holds nothing at its top, not one folder fan"),
    ("dest file", r"dest=.* is a file; give a folder"),
])
def test_bad_places_are_one_line(tmp_path, server, capsys, setup, match):
    body = zip_of(tmp_path / "nothing", tmp_path / "empty.zip") if setup == "empty zip" else mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"
    args = [f"dataset={catalog}", f"dest={dest}"]
    if setup == "mirror":
        args.append("mirror=127.0.0.1:1/x")
    elif setup == "state":
        dest.mkdir()
        (dest / STATE).write_text('{"-6_dB_fan.zip": 5}')
    elif setup == "dest file":
        dest.write_text("not a folder")
    code, out, err = run(capsys, *args)
    assert code == 2 and len(err.splitlines()) == 1 and __import__("re").search(match, err), err


def test_a_reset_connection_is_retried_not_taken_for_no_network(tmp_path, server, capsys, monkeypatch):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    monkeypatch.setattr(fetch.ResumingDownloader, "wait", staticmethod(lambda attempt: 0))
    server.resets = 1
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={tmp_path / 'mimii'}")
    assert code == 0, err
    assert len(server.requests) == 2


def test_a_zip_this_command_downloaded_is_deleted_even_when_its_unpack_finishes_on_the_next_run(
        tmp_path, server, capsys, monkeypatch):
    body = dcase_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "dcase", {"dev_fan.zip": ({"machine": "fan"}, body)}, md5=False,
                            sizes=False)
    dest = tmp_path / "dev"

    def full(folder, what, download, unpacked):
        if what.startswith("unpacking"):
            raise fetch.NoSpace(f"not enough free disk space in {folder} for {what}")
    monkeypatch.setattr(unpack, "require_space", full)
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 2 and "not enough free disk space" in err and "deleted" not in err
    assert (dest / "dev_fan.zip").read_bytes() == body  # a good download is not thrown away for want of space
    monkeypatch.undo()
    server.requests.clear()
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0 and server.requests == [] and (dest / "fan" / "train").is_dir()
    assert not (dest / "dev_fan.zip").exists()  # it was this command's download


def test_a_recorded_checksum_that_no_longer_matches_says_where_it_was_recorded(tmp_path, server, capsys):
    body = dcase_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "dcase", {"dev_fan.zip": ({"machine": "fan"}, body)}, md5=False,
                            sizes=False)
    dest = tmp_path / "dev"
    assert run(capsys, f"dataset={catalog}", f"dest={dest}")[0] == 0
    (dest / "fan").rename(tmp_path / "away")
    server.files["dev_fan.zip"] = body + b"another version"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 2 and f"was recorded on the first download into {dest}" in err
    assert f"delete its entry in {dest / STATE} and run the command again to take the new one" in err


def test_a_catalog_that_makes_one_folder_of_two_archives_is_refused(tmp_path):
    data = {"title": "t", "record": "https://r", "url": "https://r/{file}", "layout": "dcase", "folder": "f",
            "keys": ["machine"], "unpack": ".", "holds": "fan",
            "files": [{"file": "a.zip", "machine": "fan"}, {"file": "b.zip", "machine": "pump"}]}
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"b.zip and a.zip would both become fan"):
        catalogs.load(str(path))


def test_an_interruption_while_pooch_checks_the_finished_file_keeps_it_for_the_next_run(tmp_path, server, capsys,
                                                                                       monkeypatch):
    import pooch.core

    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pooch.core, "hash_matches", interrupted)
    assert run(capsys, f"dataset={catalog}", f"dest={dest}")[0] == 130
    assert (dest / "-6_dB_fan.zip.part").read_bytes() == body and not (dest / "-6_dB_fan.zip").exists()
    monkeypatch.undo()
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    assert server.fetched("-6_dB_fan.zip")[-1] == f"bytes={len(body)}-"  # nothing more to send
    assert sorted(p.name for p in dest.iterdir()) == sorted([STATE, "-6_dB_fan"])  # no part, temporary file, zip


def test_two_records_with_the_same_file_name_are_not_mixed_in_one_destination(tmp_path, server, capsys):
    body = dcase_zip(tmp_path)
    first = write_catalog(tmp_path, server, "dcase", {"dev_fan.zip": ({"machine": "fan"}, body)}, md5=False)
    dest = tmp_path / "dev"
    assert run(capsys, f"dataset={first}", f"dest={dest}")[0] == 0
    other = tmp_path / "other.yaml"
    other.write_text(Path(first).read_text().replace("/record", "/another-record"))
    code, out, err = run(capsys, f"dataset={other}", f"dest={dest}")
    assert code == 2 and f"{dest} holds files of {server.url}/record" in err and "its own dest=" in err


def test_the_printed_command_survives_a_destination_with_a_comma_a_space_and_a_quote(tmp_path, server, capsys):
    import shlex

    from machine_sound.config import compose

    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"},
                                                                          mimii_zip(tmp_path))})
    dest = tmp_path / "my data, 'v2' ${x} jürgen"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    line = next(line for line in out.splitlines() if "data=mimii" in line)
    cfg = compose(shlex.split(line)[1:])
    assert cfg.data.root == str(dest) and cfg.machine == "fan" and cfg.id == "id_00"


def test_a_folder_moved_into_place_by_a_run_killed_before_recording_it_is_recorded_and_its_zip_deleted(
        tmp_path, server, capsys):
    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    dest = tmp_path / "mimii"
    dest.mkdir()
    (dest / "-6_dB_fan.zip").write_bytes(body)
    with zipfile.ZipFile(dest / "-6_dB_fan.zip") as z:
        z.extractall(dest / "-6_dB_fan")
    (dest / STATE).write_text('{"-6_dB_fan.zip": {"downloaded_zip": true, "unpacking": true, "record": "%s"}}'
                              % yaml.safe_load(Path(catalog).read_text())["record"])
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0 and server.requests == [] and not (dest / "-6_dB_fan.zip").exists()
    assert yaml.safe_load((dest / STATE).read_text())["-6_dB_fan.zip"]["files"] == 15
    assert "1 already unpacked" in run(capsys, f"dataset={catalog}", f"dest={dest}")[1]


def test_without_hard_links_the_downloader_s_own_md5_is_the_check_and_the_part_is_renamed(tmp_path, server, capsys,
                                                                                         monkeypatch):
    import pooch

    from machine_sound.download import get

    body = mimii_zip(tmp_path)
    catalog = write_catalog(tmp_path, server, "mimii", {"-6_dB_fan.zip": ({"snr": "-6_dB", "machine": "fan"}, body)})
    monkeypatch.setattr(get, "hard_links", lambda folder: False)  # FAT, exFAT, some network disks
    monkeypatch.setattr(pooch, "retrieve", lambda *a, **k: pytest.fail("pooch would delete the download if stopped"))
    dest = tmp_path / "mimii"
    code, out, err = run(capsys, f"dataset={catalog}", f"dest={dest}")
    assert code == 0, err
    assert sorted(p.name for p in dest.iterdir()) == sorted([STATE, "-6_dB_fan"])
    server.files["-6_dB_fan.zip"] = body[:-1] + bytes([body[-1] ^ 1])  # and a mismatch is still caught
    code, out, err = run(capsys, f"dataset={catalog}", "machine=fan", f"dest={tmp_path / 'again'}")
    assert code == 2 and "md5 " in err and hashlib.md5(body).hexdigest() in err
