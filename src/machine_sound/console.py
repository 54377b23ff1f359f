"""What a run prints: each of Lightning's lines once, without its advertising tips or warnings that say nothing
the user can act on, and the result set apart at the end."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Sequence

# Lightning's messages that are not the user's business here, as regular expressions.
QUIET_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).*",  # an internal deprecation between Lightning and torch
    r".*does not have many workers.*",  # data.num_workers=auto chose 0 on purpose: the model's threads use the CPU
    r".*smaller than the logging interval.*",  # tiny data: the epoch's metrics are logged anyway
    r".*Checkpoint directory .* exists and is not empty.*",  # resume=<run folder> writes into its own folder
    r".*samples in targets, .* should be meaningless.*",  # the sanity check's single validation batch
    r".*`configure_optimizers` returned `None`.*",  # model=embedding_knn learns no weights, by design
    r".*module\(s\) in eval mode at the start of training.*",  # embedding_knn's frozen backbone, by design
    # ddp: epoch values are computed from torchmetrics states synced across processes (machine_sound.distributed)
    r".*It is recommended to use `self.log\(.*sync_dist=True\)`.*",
)
QUIET_INFO = ("💡 Tip",)  # Lightning's adverts for its cloud services


class _DropAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(QUIET_INFO)


def quiet_lightning() -> None:
    """Send Lightning's log lines through the root logger only (once: Hydra's handler, or the tool's own
    `basicConfig`), without its tips, and silence the warnings in `QUIET_WARNINGS`. Call after importing
    Lightning; calling it again changes nothing."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics"):
        logger = logging.getLogger(name)
        if logging.getLogger().hasHandlers():  # Lightning prints by itself only when nothing else would
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
        if not any(isinstance(f, _DropAdverts) for f in logger.filters):
            logger.addFilter(_DropAdverts())
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropAdverts) for f in rank_zero.filters):
        rank_zero.addFilter(_DropAdverts())
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def print_result(lines: str) -> None:
    """The few lines that end a run (its numbers, where they are), set apart from the log above them."""
    width = max(len(line) for line in lines.splitlines())
    rule = "─" * min(width, 100)
    print(f"\n{rule}\n{lines}\n{rule}", file=sys.stdout, flush=True)


def parse_arguments(argv: Sequence[str], required: Sequence[str], optional: Sequence[str] = (),
                    usage: str = "") -> tuple[dict[str, str], list[str]]:
    """Split `key=value` arguments into this tool's own (`required` and `optional` keys, whose values are taken
    verbatim, so paths may hold '=', ',' or spaces) and Hydra-syntax overrides of the stored run config (the
    rest). `-h`/`--help` prints `usage` and exits; a missing required key prints it and exits with status 2."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage)
        sys.exit(0)
    own, overrides = {}, []
    for argument in argv:
        key, sep, value = argument.partition("=")
        if sep and key in (*required, *optional):
            if key in own:
                print(f"error: {key}= is given twice; give it once\n{usage}", file=sys.stderr)
                sys.exit(2)
            own[key] = value
        else:
            overrides.append(argument)
    missing = [key for key in required if not own.get(key)]
    if missing:
        print(f"error: give {', '.join(f'{k}=...' for k in missing)}\n{usage}", file=sys.stderr)
        sys.exit(2)
    return own, overrides
