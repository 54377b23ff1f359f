"""Where the configs live and how they become objects.

The YAML files ship inside the package (`machine_sound/conf`), so Hydra finds them through the package search
path (`pkg://machine_sound.conf`) from any folder and any kind of install. The resolvers registered here let a
config derive one setting from another, so `python train.py --cfg job --resolve` prints what runs:

- `${ms.task:<task>,<field>}`: a field of the task table (`machine_sound.tasks`), e.g. the checkpoint monitor.
- `${ms.checkpoint_mode:<monitor>}`: `min` for a loss, `max` otherwise.
- `${ms.choose:<setting>,<value>,{<value>: <result>, ...}}`: a value looked up in a small table, with a one-line
  error naming the setting when the value is not in it (used to derive the task from `data.reader.protocol`).
- `${ms.train_ids:${model._target_},${id}}`: `all` for a model that tells machine IDs apart or a run of every ID
  (`id=all`), else `own` (MIMII's baseline protocol trains on every ID's normal files or on this ID's).
- `${ms.machine_name:${.reader.machine_id},${.root}}`: a machine folder's name (the ID, or the root's name).
- `${ms.resumed:${resume},<a>,<b>}`: `<a>` when the command resumes a run (`resume=<run folder>`), else `<b>`.
- `${swept_overrides:...}`: the part of a sweep job's folder name that tells it apart from the other jobs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from machine_sound.errors import ConfigError, user_error
from machine_sound.tasks import checkpoint_mode, get_task

CONFIG_MODULE = "machine_sound.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"


def _task_field(name: str, field: str) -> Any:
    return getattr(get_task(name), field)


def _choose(setting: str, value: Any, table: dict) -> Any:
    if value not in table:
        raise ConfigError(f"{setting}={value}: choose {' or '.join(map(str, table))}")
    return table[value]


def _train_ids(model_target: str, machine_id: str = "") -> str:
    """`all` when the run tests every ID (`id=all`) or the model class tells machine IDs apart (its
    `learns_ids`), `own` otherwise."""
    from hydra.utils import get_class

    if machine_id == "all":
        return "all"
    try:
        learns_ids = getattr(get_class(model_target), "learns_ids", True)
    except Exception:  # an unknown class is reported, with its name, when the model is built
        learns_ids = True
    return "all" if learns_ids else "own"


def _machine_name(machine_id: Any, root: Any) -> str:
    """A machine folder's name: `machine_id` when set, else its root folder's name."""
    if machine_id:
        return str(machine_id)
    return Path(str(root)).resolve().name if root else "machine_folder"


def _resumed(resume: Any, when_resumed: Any, otherwise: Any) -> Any:
    return when_resumed if resume else otherwise


def split_override(item: object) -> tuple[str, str]:
    """'+key=value' -> ('key', 'value'): an override as Hydra records it, without its +/++/~ prefix."""
    key, _, value = str(item).partition("=")
    return key.lstrip("+~"), value


NAMING_KEYS = ("machine", "id", "snr")  # already in the folder path (data.name): <snr>_<machine>/<id>


def swept_overrides(sweep_dir: str, task_overrides: list[str]) -> str:
    """The part of a job folder's name that tells it apart from the other jobs of its sweep.

    The swept keys are read from `multirun.yaml`, which Hydra's sweeper writes into the sweep folder before any
    job starts: keys given with sweep syntax (`seed=1,2`, `range(...)`) or in `hydra.sweeper.params`. Overrides
    common to every job stay out of the name. Returns '' or '/key=value,key=value'.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = Path(sweep_dir) / "multirun.yaml"
    if not path.exists():
        return ""
    multirun = OmegaConf.load(path)
    arguments = list(multirun.hydra.overrides.task or [])
    arguments += [f"{k}={v}" for k, v in (OmegaConf.select(multirun, "hydra.sweeper.params") or {}).items()]
    swept = {o.get_key_element().lstrip("+~") for o in OverridesParser.create().parse_overrides(arguments)
             if o.is_sweep_override()}
    parts = []
    for key, value in map(split_override, task_overrides):
        if key in swept and key not in NAMING_KEYS:
            parts.append(f"{key}={value}".replace("/", "-"))
    return "/" + ",".join(parts) if parts else ""


def _machine_types(root) -> str:
    """`sweep=dcase`: every machine type folder under a DCASE root, comma-separated for the sweeper; ConfigError
    when there is none."""
    from pathlib import Path

    from machine_sound.data.readers.dcase import HINT, machine_types

    if root is None:
        raise ConfigError("sweep=dcase sweeps the machine types under data.root: set data.root")
    if not Path(root).is_dir():
        raise ConfigError(f"sweep=dcase: data.root={root} does not exist; {HINT}")
    found = machine_types(Path(root))
    if not found:
        raise ConfigError(f"sweep=dcase: no machine type (a folder with train/) in data.root={root}; {HINT}")
    return ",".join(found)


def register_resolvers() -> None:
    """Register this project's OmegaConf resolvers (once; before a config that uses them is resolved)."""
    for name, resolver in (("ms.task", _task_field), ("ms.choose", _choose), ("ms.resumed", _resumed),
                           ("ms.train_ids", _train_ids), ("ms.machine_name", _machine_name),
                           ("ms.checkpoint_mode", checkpoint_mode), ("swept_overrides", swept_overrides),
                           ("ms.machine_types", _machine_types)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def compose(overrides: list[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The training config with these overrides, composed outside a Hydra app (tests, benchmarks)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    register_resolvers()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose("train", overrides=list(overrides), return_hydra_config=return_hydra_config)


def instantiate(node, **kwargs):
    """`hydra.utils.instantiate`, but our own errors come out unwrapped, so they stay one clear line."""
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except Exception as err:  # InstantiationException, or an OmegaConf error around a resolver's ConfigError
        mine = user_error(err)
        if mine is not None:
            raise mine from None
        raise



def build_trainer(node, **kwargs):
    """The Lightning Trainer of config group `trainer`; a value Lightning refuses (devices, strategy, ...) is a
    ConfigError naming the group and Lightning's reason, in one line."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ or err
        reason = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise ConfigError(f"trainer settings: {reason}") from None


register_resolvers()
