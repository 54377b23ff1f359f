"""The jobs of a sweep and what became of each, for its summary table (`machine_sound.summarize`).

A job that started has a folder with `.hydra/` (its config and overrides), then `metrics.json` when it finished or
`failed.json` (its one-line error) when it failed. The jobs the sweep was asked to run are read back from the
`multirun.yaml` that Hydra's sweeper writes into the sweep folder before any job starts, so a job that has not
started yet (or never will, when the sweep was killed) is listed too: `pending`.

The job list is Hydra's own expansion (`BasicSweeper.split_arguments`) of the sweeper's `params` and the command
line's overrides, in the order the sweeper launches them. A job folder belongs to a planned job when they agree on
every swept override (`machine_sound.config.swept_overrides` names job folders by the same keys), so a re-run
that changes an override common to every job still finds its folders.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from machine_sound.config import register_resolvers, split_override, swept_overrides
from machine_sound.tasks import TASKS

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
FAILED_FILE = "failed.json"
JOB_CONFIG = Path(".hydra") / "config.yaml"
JOB_OVERRIDES = Path(".hydra") / "overrides.yaml"
MULTIRUN_FILE = "multirun.yaml"
POSITIVES = ("abnormal", "normal")  # a binary job's positive class, or its negative (healthy) one
ALL_IDS = "all IDs"  # the row of an unfinished job that will test every ID of its machine type
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _arguments(multirun: DictConfig) -> list[str]:
    """What the basic sweeper expands: `hydra.sweeper.params` first, then the command line's task overrides."""
    params = OmegaConf.select(multirun, "hydra.sweeper.params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(OmegaConf.select(multirun, "hydra.overrides.task") or [])


def job_key(overrides: list[str], keys: set[str]) -> tuple:
    """What tells one job of the sweep from the others: its values of the swept keys."""
    values = dict(map(split_override, overrides))
    return tuple(sorted((k, values.get(k)) for k in keys))


def planned_jobs(sweep_dir: str | Path) -> tuple[list[list[str]], set[str]]:
    """Every job's override list, in launch order, and the swept keys (those given with sweep syntax, `seed=1,2`
    or `range(...)`, without their +/~ prefix); none when the folder has no readable `multirun.yaml` or another
    sweeper (Optuna, ...) chose the jobs."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / MULTIRUN_FILE
    if not path.exists():
        return [], set()
    try:
        multirun = OmegaConf.load(path)
        if OmegaConf.select(multirun, "hydra.sweeper._target_") != BASIC_SWEEPER:
            return [], set()
        parsed = OverridesParser.create().parse_overrides(_arguments(multirun))
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        return jobs, {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
    except Exception as err:  # a glob(...) sweep needs Hydra's config loader; the table still lists the folders
        log.warning("cannot list the planned jobs of %s: %s", path, err)
        return [], set()


def planned_config(sweep_dir: str | Path, overrides: list[str]) -> tuple[DictConfig, Path]:
    """A job's config as far as `multirun.yaml` tells it without composing (the sweep's config with the job's
    value overrides set; a config-group choice such as `model/frontend=...` is not applied), and the folder Hydra
    will give it (`<data.name><swept overrides>`; the sweep folder when the name cannot be resolved)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    register_resolvers()
    cfg = OmegaConf.load(Path(sweep_dir) / MULTIRUN_FILE)
    cfg.pop("hydra", None)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if override.is_delete() or override.package is not None or "/" in key \
                or isinstance(OmegaConf.select(cfg, key, throw_on_resolution_failure=False), DictConfig):
            continue  # a config group: its files are not in multirun.yaml
        OmegaConf.update(cfg, key, override.value(), force_add=True)
    try:
        folder = Path(sweep_dir) / f"{cfg.data.name}{swept_overrides(str(sweep_dir), list(overrides))}"
    except Exception:  # a name that needs Hydra's runtime to resolve
        folder = Path(sweep_dir)
    return cfg, folder


@dataclass
class Job:
    """One job folder of a sweep and what became of it."""

    folder: Path
    snr: str  # the SNR, or the layout when the data has none (dcase2020, folder)
    machine: str
    id: str
    seed: int
    overrides: dict[str, str]
    status: str  # finished | failed | unfinished (running, or stopped) | pending (no folder yet)
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    positive: dict[str, str] = field(default_factory=dict)  # --positive choice -> the class P, R, F1 are for


def positive_labels(result: dict) -> dict[str, str]:
    """What a finished job's P, R and F1 are for, by `--positive` choice: its positive class or its negative one
    (binary), `macro` (multi-class) or `–` (anomaly scores only, no decision)."""
    decision = getattr(TASKS.get(result.get("task") or "binary"), "decision", "none")
    if decision == "argmax":
        return dict.fromkeys(POSITIVES, "macro")
    if decision != "threshold":
        return dict.fromkeys(POSITIVES, "–")
    classes = list(result.get("classes") or result.get("n_test") or ["normal", "abnormal"])
    positive = result.get("positive_class") or classes[-1]
    return {"abnormal": positive, "normal": next((c for c in classes if c != positive), "normal")}


def _job_task(cfg, result: dict | None) -> str:
    """The task a job ran (metrics.json), or the one its config resolves to while it has not finished."""
    if result and result.get("task"):
        return result["task"]
    return str(OmegaConf.select(cfg, "data.task", default="binary", throw_on_resolution_failure=False))


def _job_layout(cfg, result: dict | None) -> str:
    if result and result.get("layout"):
        return result["layout"]
    from hydra.utils import get_class

    try:
        return get_class(OmegaConf.select(cfg, "data.reader._target_")).layout
    except Exception:  # an unreadable or foreign config: the job is still listed, named by what it has
        return "data"


def _jobs_of(folder: Path, cfg, overrides: list[str], pending: bool = False) -> list[Job]:
    """One job (a row per machine ID it tested when its task scores within each ID) from its folder's files."""
    result = None
    if not pending and (folder / METRICS_FILE).exists():
        result = json.loads((folder / METRICS_FILE).read_text())
    by_label = getattr(TASKS.get(_job_task(cfg, result)), "by_label", False)  # a bad task: one plain row
    snr = str(cfg.get("snr") or _job_layout(cfg, result))
    one_id = cfg.get("id") not in (None, "all")  # a MIMII run of one ID, or of every ID (id=all, DCASE)
    machine_id = str(cfg.id) if one_id else (ALL_IDS if by_label else "")
    job = Job(folder, snr, str(cfg.get("machine") or ""), machine_id, int(cfg.seed),
              dict(map(split_override, overrides)), "pending" if pending else "unfinished")
    if result is not None:
        job.status, job.metrics, job.positive = "finished", result["metrics"], positive_labels(result)
        if by_label:  # AUROC and pAUC within each machine ID the job tested: a row per ID (the job's own ID
            # alone when it names one: MIMII's protocol=baseline learns every ID of the machine type but tests one)
            per_id = sorted((result.get("per_id") or {}).items())
            if result.get("evaluator"):  # DCASE 2021-2025: each section's own official score (its terms' h-mean)
                from machine_sound.challenge import official_score

                per_id = [(i, {**m, "official_score": official_score({i: m}, result["evaluator"])[0]})
                          for i, m in per_id]
            rows = [replace(job, id=i, metrics=m) for i, m in per_id if not one_id or i == str(cfg.id)]
            if rows or not result.get("untested"):
                return rows
    elif not pending and (folder / FAILED_FILE).exists():
        job.status, job.error = "failed", json.loads((folder / FAILED_FILE).read_text()).get("error", "")
    return [job]


def collect(sweep_dir: str | Path) -> list[Job]:
    """Every job of the sweep in `sweep_dir`: those with a folder, finished or not, in a stable order, then those
    of its `multirun.yaml` that have no folder yet (`pending`), in launch order."""
    jobs, started = [], set()
    planned, keys = planned_jobs(sweep_dir)
    for config_file in sorted(Path(sweep_dir).rglob(str(JOB_CONFIG))):
        folder = config_file.parent.parent
        overrides: list[str] = []
        if (folder / JOB_OVERRIDES).exists():
            overrides = list(OmegaConf.to_container(OmegaConf.load(folder / JOB_OVERRIDES)))
        started.add(job_key(overrides, keys))
        jobs += _jobs_of(folder, OmegaConf.load(config_file), overrides)
    for overrides in planned:
        if job_key(overrides, keys) not in started:
            cfg, folder = planned_config(sweep_dir, overrides)
            jobs += _jobs_of(folder, cfg, overrides, pending=True)
    return jobs
