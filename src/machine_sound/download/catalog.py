"""The public records the download command knows, one YAML file each in the package's `download/records/` (or a
file of your own in the same form): where each archive is, its checksum and size where known, which layout reads
it and where it is unpacked. A catalog only describes files; `fetch` gets them and `unpack` places them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

from machine_sound.errors import ConfigError

LAYOUTS = ("mimii", "dcase2020", "dcase")  # the data= options that read what is downloaded
MD5 = re.compile(r"^[0-9a-f]{32}$")
FIELDS = {"title", "record", "url", "license", "checksums", "layout", "folder", "keys", "unpack", "holds", "files"}


@dataclass(frozen=True)
class Archive:
    """One file of a record: its name, the choices it stands for (`{"snr": "-6_dB", "machine": "fan"}`), its
    published md5 (None when unpublished) and size in bytes (None when unknown)."""

    file: str
    choices: dict[str, str]
    md5: str | None
    bytes: int | None
    url: str
    unpack: str  # its folder under the destination ("." for the destination itself)
    holds: str  # the folder it holds at its top, placed under `unpack`


@dataclass
class Catalog:
    """A record's archives and how they are read (`layout`, one of `LAYOUTS`)."""

    name: str
    title: str
    record: str
    layout: str
    folder: str  # the default destination under data/
    keys: list[str]
    archives: list[Archive]
    checksums: str | None = None  # where the published checksums come from; None: recorded on first download
    license: str | None = None
    choices: dict[str, list[str]] = field(default_factory=dict)  # key -> its values, in the file's order

    def select(self, wanted: dict[str, list[str] | None]) -> list[Archive]:
        """The archives matching every key's wanted values (None or a missing key: all of them), in the catalog's
        order. ConfigError naming the key and its values for a key or value the record does not have."""
        for key, values in wanted.items():
            if key not in self.keys:
                known = " and ".join(f"{k}=" for k in self.keys)
                raise ConfigError(f"{key}= does not apply to dataset={self.name} (it is chosen by {known})")
            unknown = [v for v in values or () if v not in self.choices[key]]
            if unknown:
                raise ConfigError(f"{key}={','.join(unknown)}: not in dataset={self.name}; choose from "
                                  f"{', '.join(self.choices[key])}")
        return [a for a in self.archives
                if all(not wanted.get(k) or a.choices[k] in wanted[k] for k in self.keys)]


def urlparse_or_none(url: str):
    """The parsed `url` when it is an http(s) address with a host and a valid port, else None."""
    from urllib.parse import urlparse

    try:
        parsed = urlparse(url)
        _ = parsed.port  # raises for a port out of range
    except ValueError:
        return None
    return parsed if parsed.scheme in ("http", "https") and parsed.hostname else None


def known() -> list[str]:
    """The names of the catalogs in the package, sorted."""
    folder = resources.files("machine_sound.download").joinpath("records")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load(dataset: str) -> Catalog:
    """The catalog `dataset`: a name from `known()` or the path of a YAML file in the same form. ConfigError
    naming the file and the field for anything missing or malformed."""
    if dataset.endswith((".yaml", ".yml")):
        path = Path(dataset).expanduser()
        if not path.is_file():
            raise ConfigError(f"dataset={dataset}: no such file")
        text, name = path.read_text(), path.stem
    elif dataset in known():
        text = resources.files("machine_sound.download").joinpath("records", f"{dataset}.yaml").read_text()
        name = dataset
    else:
        raise ConfigError(f"dataset={dataset}: choose one of {', '.join(known())} (or the path of a .yaml catalog)")
    try:
        raw = OmegaConf.to_container(OmegaConf.create(text))
    except Exception as err:  # a YAML syntax error: name the file
        raise ConfigError(f"dataset={dataset}: not a readable YAML catalog ({str(err).splitlines()[0]})") from None
    return parse(raw, name, where=dataset)


def parse(raw, name: str, where: str) -> Catalog:
    """A Catalog from a catalog file's mapping; ConfigError naming `where` and the bad field."""
    def bad(what: str) -> ConfigError:
        return ConfigError(f"dataset={where}: {what}")

    if not isinstance(raw, dict):
        raise bad("a catalog is a mapping of title, record, url, layout, folder, keys, unpack, holds, files")
    missing = sorted({"title", "record", "url", "layout", "folder", "keys", "unpack", "holds", "files"} - set(raw))
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}")
    if raw["layout"] not in LAYOUTS:
        raise bad(f"layout={raw['layout']}: one of {', '.join(LAYOUTS)}")
    keys = raw["keys"]
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k.isidentifier() for k in keys) \
            or set(keys) & {"file", "md5", "bytes"}:
        raise bad("keys: a list of the names that choose files, such as [machine] (not file, md5 or bytes)")
    for text in ("title", "record", "url", "folder", "unpack", "holds"):
        if not isinstance(raw[text], str) or not raw[text].strip():
            raise bad(f"{text}: a text")
    if not isinstance(raw["files"], list) or not raw["files"]:
        raise bad("files: a list of {file, <keys>, md5, bytes}")
    archives, choices, names, folders = [], {k: [] for k in keys}, set(), {}
    for entry in raw["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"] \
                or entry["file"] in ("", ".", ".."):
            raise bad(f"files: {entry!r} needs file: <a file name without folders>")
        file = entry["file"]
        extra = sorted(set(entry) - {"file", "md5", "bytes", *keys})
        if extra:
            raise bad(f"{file}: unknown field(s) {', '.join(extra)} (a file has file, {', '.join(keys)}, md5, bytes)")
        if file in names:
            raise bad(f"{file} is listed twice")
        names.add(file)
        lacking = [k for k in keys if not isinstance(entry.get(k), str)]
        if lacking:
            raise bad(f"{file} lacks {', '.join(lacking)}")
        md5, size = entry.get("md5"), entry.get("bytes")
        if md5 is not None and not (isinstance(md5, str) and MD5.match(md5.lower())):
            raise bad(f"{file}: md5={md5!r} is not 32 hexadecimal digits (null when unpublished)")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
            raise bad(f"{file}: bytes={size!r} is not a positive whole number (null when unknown)")
        values = {k: entry[k] for k in keys}
        try:
            url, unpack, holds = (raw[f].format(file=file, **values) for f in ("url", "unpack", "holds"))
        except (KeyError, IndexError, ValueError) as err:
            raise bad(f"url, unpack or holds names {err} which {file} does not have") from None
        if Path(unpack).is_absolute() or ".." in Path(unpack).parts or holds in ("", ".", "..") or "/" in holds:
            raise bad(f"{file}: unpack must be a folder inside the destination and holds one folder name")
        if urlparse_or_none(url) is None:
            raise bad(f"{file}: url {url} is not an http(s) address")
        folder = str(Path(unpack, holds))
        if folder in folders:
            raise bad(f"{file} and {folders[folder]} would both become {folder}")
        folders[folder] = file
        for k, v in values.items():
            if v not in choices[k]:
                choices[k].append(v)
        archives.append(Archive(file, values, md5.lower() if md5 else None, size, url, unpack, holds))
    return Catalog(name, str(raw["title"]), str(raw["record"]), raw["layout"], str(raw["folder"]), keys, archives,
                   raw.get("checksums"), raw.get("license"), choices)
