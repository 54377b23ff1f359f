"""machine-sound-download: the real datasets in one command, verified and unpacked where their readers look.

    machine-sound-download dataset=mimii snr=-6_dB machine=pump          (lists: machine=fan,pump)
    machine-sound-download dataset=dcase2023 [machine=fan] [dest=/data/dcase2023/dev]
    (or python -m machine_sound.download ..., or make download ARGS="...")

For each archive chosen: a folder already unpacked from it (recorded in the destination's
`.machine-sound-download.json`) is left alone; an archive already in the destination (kept, or put there by hand)
is verified; otherwise it is downloaded (resumed where a broken run stopped), verified, unpacked and, unless
`keep_archives=true`, deleted. Then the layout's reader reads what is there and the training command is printed.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from machine_sound.console import parse_arguments, print_result
from machine_sound.download import catalog as catalogs
from machine_sound.download.check import read_back
from machine_sound.download.fetch import gigabytes
from machine_sound.download.get import download
from machine_sound.errors import ConfigError, one_line, user_error

__all__ = ["download", "main"]
USAGE = ("usage: machine-sound-download dataset=<" + "|".join(catalogs.known()) + "|file.yaml> [machine=a,b] "
         "[snr=-6_dB,0_dB] [dest=<folder>] [keep_archives=false] [mirror=<base URL>] [retries=5] [dry_run=false]")
OPTIONAL = ("machine", "snr", "dest", "keep_archives", "mirror", "retries", "dry_run")


class CurrentStderr(logging.StreamHandler):
    """A log handler writing to whatever `sys.stderr` is when a line is written (not when it was made)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def as_list(setting: str, value: str | None) -> list[str] | None:
    """'fan,pump' or '[fan,pump]' -> ['fan', 'pump']; None stays None."""
    if value is None:
        return None
    items = [v.strip() for v in value.strip().removeprefix("[").removesuffix("]").split(",")]
    if not all(items):
        raise ConfigError(f"{setting}={value}: a name or a list of names, such as {setting}=a,b")
    return items


def as_bool(setting: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{setting}={value}: true or false")
    return value.lower() == "true"


def check_mirror(mirror: str | None) -> str | None:
    """`mirror=` when it is an http(s) address with a host (and a valid port); ConfigError otherwise."""
    if mirror is None:
        return None
    if catalogs.urlparse_or_none(mirror) is None:
        raise ConfigError(f"mirror={mirror}: an http:// or https:// address of a server holding the files, such "
                          "as https://mirror.example.org/mimii")
    return mirror


def plan_lines(catalog: catalogs.Catalog, archives, dest: Path, mirror: str | None) -> list[str]:
    known = sum(a.bytes or 0 for a in archives)
    unknown = sum(a.bytes is None for a in archives)
    size = gigabytes(known) + (f" + {unknown} of unknown size" if unknown else "") if known else "size unknown"
    lines = [f"{catalog.title}: {len(archives)} archive(s), {size}, into {dest}",
             f"record: {catalog.record}" + (f" (licence {catalog.license})" if catalog.license else
                                             " (its terms of use are on that page)")]
    for a in archives:
        url = f"{mirror.rstrip('/')}/{a.file}" if mirror else a.url
        lines.append(f"  {a.file}  {gigabytes(a.bytes) if a.bytes else '?'}  md5 {a.md5 or 'unpublished'}  {url}")
    return lines


def main(argv: list[str] | None = None) -> None:
    own, rest = parse_arguments(sys.argv[1:] if argv is None else argv, ["dataset"], OPTIONAL, usage=USAGE)
    handler = CurrentStderr()
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        if rest:
            raise ConfigError(f"unknown setting {rest[0]}; the settings are dataset= and "
                              f"{', '.join(k + '=' for k in OPTIONAL)}")
        catalog = catalogs.load(own["dataset"])
        wanted = {k: as_list(k, own[k]) for k in ("machine", "snr") if k in own}
        retries = own.get("retries", "5")
        if not retries.isdigit():
            raise ConfigError(f"retries={retries}: a whole number of tries after the first (5)")
        if "dest" in own and not own["dest"].strip():
            raise ConfigError("dest= is empty; give a folder (or leave dest= out for data/<dataset>)")
        dest = Path(own.get("dest") or Path("data", catalog.folder)).expanduser()
        keep, dry = (as_bool(k, own.get(k, "false")) for k in ("keep_archives", "dry_run"))
        mirror = check_mirror(own.get("mirror"))
        archives = catalog.select(wanted)
        print("\n".join(plan_lines(catalog, archives, dest, mirror)), flush=True)
        if dry:
            return
        outcome = download(catalog, wanted, dest, keep, mirror, int(retries))
        found, commands = read_back(catalog, archives, dest)
    except KeyboardInterrupt:
        print("error: interrupted; a download in progress is kept in its .part file and an unpack in progress is "
              "undone (its zip kept): the next run goes on from there", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        if user_error(err) is None:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        sys.exit(2)
    done = (f"downloaded {len(outcome.downloaded)}, verified {len(outcome.verified)} already there, "
            f"{len(outcome.skipped)} already unpacked" + (f", {len(outcome.left)} left as found" if outcome.left
                                                          else ""))
    print_result("\n".join([f"{catalog.title} in {dest}: {done}", *found, "train on it:",
                            *(f"  {c}" for c in commands)]))


if __name__ == "__main__":
    main()
