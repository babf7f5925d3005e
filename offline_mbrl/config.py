"""Typed run configuration for the offline model-based loop (ADMPO-OFF, MOPO): frozen dataclasses,
YAML files and dotted ``--set key=value`` overrides.

Resolution order: the algorithm's defaults (``registry.ALGORITHMS``) <- a YAML file <- ``--set``
overrides. An unknown key or a value of the wrong type raises :class:`ConfigError` naming the dotted
key (and the file). The resolved config is written to the run folder as ``config.yaml`` and loads
back to an equal object.

Defaults follow the official ADMPO code (REFERENCE-algorithms.md 2.1) and Table 3 of the ADM paper;
the per-task m, H and beta of Table 5 live in ``configs/``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dacite
import yaml

from .agents.npg_config import NPGConfig
from .agents.sac_config import SACConfig
from .checks import check_section, fail
from .errors import ConfigError
from .model_configs import HOLDOUT_SPLITS, MAX_BACKTRACK, EnsembleConfig, FitConfig, RecurrentConfig
from .registry import ALGORITHMS, algorithm_entry

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
DYNAMICS_MODELS = ("adm", "ensemble")
BACKTRACK_SAMPLING = ("trajectory", "batch", "longest")
#: largest model buffer (rollout_batch_size x rollout_length x model_retain_epochs rows), allocated up front
MAX_MODEL_BUFFER_ROWS = 100_000_000


def default_of(config_cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config_cls``: how a run-config section takes a component
    config's default instead of declaring it again."""
    return next(f.default for f in dataclasses.fields(config_cls) if f.name == name)


@dataclass(frozen=True)
class DynamicsConfig:
    """The learned model: ``model`` is ``adm`` (ADMPO-OFF) or ``ensemble`` (MOPO).

    ADM: ``max_backtrack`` (m), GRU ``hidden_dim`` x ``gru_layers``, ``head_blocks`` residual blocks,
    ``dropout``, ``rollout_dropout`` (official: dropout stays on in roll-outs and the penalty).
    Ensemble: ``ensemble_size``, ``num_elites``, ``ensemble_hidden_dims``, ``ensemble_weight_decays``
    (one per hidden layer, then the output layer).
    Fitting: ``max_epochs`` (None: early stopping only), ``holdout_split`` (``episodes``/``last``),
    ``learning_rate`` (None: the model's default, 3e-4 ADM / 1e-3 ensemble), ``batch_size``,
    ``validation_batch`` (None: the whole holdout each epoch; 256: the official ADMPO one-batch validation,
    ``models.fit.FitConfig``).
    """

    model: str = "adm"
    max_backtrack: int = default_of(RecurrentConfig, "max_backtrack")
    hidden_dim: int = default_of(RecurrentConfig, "hidden_dim")
    gru_layers: int = default_of(RecurrentConfig, "gru_layers")
    head_blocks: int = default_of(RecurrentConfig, "head_blocks")
    dropout: float = default_of(RecurrentConfig, "dropout")
    rollout_dropout: bool = default_of(RecurrentConfig, "rollout_dropout")
    ensemble_size: int = default_of(EnsembleConfig, "ensemble_size")
    num_elites: int = default_of(EnsembleConfig, "num_elites")
    ensemble_hidden_dims: tuple[int, ...] = default_of(EnsembleConfig, "hidden_dims")
    ensemble_weight_decays: tuple[float, ...] = default_of(EnsembleConfig, "weight_decays")
    max_epochs: int | None = default_of(FitConfig, "max_epochs")
    holdout_split: str = default_of(FitConfig, "holdout_split")
    learning_rate: float | None = None
    batch_size: int = default_of(FitConfig, "batch_size")
    validation_batch: int | None = default_of(FitConfig, "validation_batch")

    def __post_init__(self) -> None:
        check_section(
            self,
            "dynamics.",
            at_least={
                "max_backtrack": 1,
                "hidden_dim": 1,
                "gru_layers": 1,
                "head_blocks": 0,
                "ensemble_size": 1,
                "num_elites": 1,
                "max_epochs": 1,
                "batch_size": 1,
                "validation_batch": 1,
            },
            positive=("learning_rate",),
            choices={"model": DYNAMICS_MODELS, "holdout_split": HOLDOUT_SPLITS},
        )
        if self.max_backtrack > MAX_BACKTRACK:
            fail("dynamics.max_backtrack", f"<= {MAX_BACKTRACK}", self.max_backtrack)
        if not 0.0 <= self.dropout < 1.0:
            fail("dynamics.dropout", "in [0, 1)", self.dropout)
        if self.num_elites > self.ensemble_size:
            fail("dynamics.num_elites", f"<= dynamics.ensemble_size ({self.ensemble_size})", self.num_elites)
        if not self.ensemble_hidden_dims or min(self.ensemble_hidden_dims) < 1:
            fail("dynamics.ensemble_hidden_dims", "a non-empty list of widths >= 1", self.ensemble_hidden_dims)
        decays = self.ensemble_weight_decays
        if len(decays) != len(self.ensemble_hidden_dims) + 1 or min(decays) < 0:
            fail(
                "dynamics.ensemble_weight_decays",
                f"{len(self.ensemble_hidden_dims) + 1} values >= 0 (one per hidden layer, then the output layer)",
                decays,
            )


@dataclass(frozen=True)
class RolloutConfig:
    """Model roll-outs (Alg. 3 lines 3-7): every ``rollout_freq`` SAC steps, ``rollout_batch_size``
    trajectories of ``rollout_length`` (H) steps with the current policy; rewards penalized as
    ``r - penalty_coef * U`` (Eq. 8) with quantifier ``penalty``; the model buffer keeps the last
    ``model_retain_epochs`` roll-outs. ``backtrack_sampling``: ``trajectory`` (paper) or ``batch``
    (official code)."""

    rollout_length: int = 5
    rollout_batch_size: int = 50_000
    rollout_freq: int = 1000
    model_retain_epochs: int = 5
    penalty: str = "adm_std"
    penalty_coef: float = 1.0
    backtrack_sampling: str = "trajectory"

    def __post_init__(self) -> None:
        from .uncertainty import UNCERTAINTY  # torch: imported only when a config is built, never by the parser

        check_section(
            self,
            "rollout.",
            at_least={"rollout_length": 1, "rollout_batch_size": 1, "rollout_freq": 1, "model_retain_epochs": 1},
            choices={"penalty": tuple(sorted(UNCERTAINTY)), "backtrack_sampling": BACKTRACK_SAMPLING},
        )
        if self.penalty_coef < 0:
            fail("rollout.penalty_coef", ">= 0", self.penalty_coef)
        rows = self.rollout_batch_size * self.rollout_length * self.model_retain_epochs
        if rows > MAX_MODEL_BUFFER_ROWS:
            fail(
                "rollout.rollout_batch_size",
                f"such that the model buffer (rollout_batch_size x rollout_length x "
                f"model_retain_epochs = {rows} rows) holds at most {MAX_MODEL_BUFFER_ROWS}",
                self.rollout_batch_size,
            )


MODEL_WEIGHTS = ("uniform", "pmac", "tom")


@dataclass(frozen=True)
class OnlineConfig:
    """The online loop (``algos.online_harness``; MBPO Alg. 2, ADM paper Alg. 2), read only by online algorithms
    (``registry.AlgorithmEntry.online``); units are environment steps.

    ``warmup_steps`` (U): uniform-random exploration before the first epoch (counted in the env steps).
    ``utd_ratio`` (G): SAC updates per env step. ``model_train_freq``: env steps between model fits (MBPO and the
    official ADMPO code: 250; the first fit comes right after the warm-up). The roll-out of ``rollout.
    rollout_batch_size`` starts comes every ``rollout.rollout_freq`` env steps (M starts per env step = batch / freq).
    ``rollout_schedule`` ``[a, b, x, y]``: roll-out length ``H(t) = int(min(max(x + (t - a)/(b - a)·(y - x), x),
    y))`` at env step t (ADM Table 4; MBPO Table 1 in epochs, converted to env steps in ``configs/mbpo``); None:
    the constant ``rollout.rollout_length``. ``target_entropy`` of the learned temperature (None: −|A|).
    ``actor_freq``: SAC updates per actor and temperature step (the critics step every update; official ADMPO
    ``actor_freq``: 20 in its Walker2d, Ant and Humanoid configs, 1 elsewhere).

    Model-learning weights (``TrainConfig.model_weights``): PMAC (seeds/000 Alg. 1) decays each policy version's
    mass by ``pmac_adaptation_rate`` per version of ``pmac_steps_per_version`` env steps (the warm-up is version
    0); TOM (seeds/001 Alg. 2) re-fits its occupancy-ratio weights at every model fit, with the newest
    ``tom_policy_pool`` real transitions as the current policy's, ``tom_disc_epochs`` discriminator epochs and
    ``tom_q_steps`` dual-Q steps (``algos.weighting.TOMConfig`` for the rest).
    """

    warmup_steps: int = 5000
    utd_ratio: int = 20
    model_train_freq: int = 250
    rollout_schedule: tuple[float, ...] | None = None
    target_entropy: float | None = None
    actor_freq: int = 1
    pmac_adaptation_rate: float = 0.9
    pmac_steps_per_version: int = 250
    tom_policy_pool: int = 1000
    tom_disc_epochs: int = 100
    tom_q_steps: int = 1000

    def __post_init__(self) -> None:
        check_section(
            self,
            "online.",
            at_least={
                "warmup_steps": 1,
                "utd_ratio": 1,
                "model_train_freq": 1,
                "actor_freq": 1,
                "pmac_steps_per_version": 1,
                "tom_policy_pool": 1,
                "tom_disc_epochs": 1,
                "tom_q_steps": 1,
            },
        )
        if not 0.0 < self.pmac_adaptation_rate < 1.0:
            fail("online.pmac_adaptation_rate", "in (0, 1)", self.pmac_adaptation_rate)
        schedule = self.rollout_schedule
        if schedule is not None:
            a, b, x, y = schedule if len(schedule) == 4 else (0, 0, 0, 0)
            if len(schedule) != 4 or not (0 <= a < b and 1 <= x and 1 <= y) or x != int(x) or y != int(y):
                fail(
                    "online.rollout_schedule",
                    "[a, b, x, y] with 0 <= a < b (env steps) and integer lengths x, y >= 1",
                    list(schedule),
                )

    def rollout_length(self, env_step: int, constant: int) -> int:
        """H at ``env_step`` (ADM Table 4 / MBPO Table 1 schedule, class docstring); ``constant`` without one."""
        if self.rollout_schedule is None:
            return constant
        a, b, x, y = self.rollout_schedule
        return int(min(max(x + (env_step - a) / (b - a) * (y - x), x), y))

    def max_rollout_length(self, constant: int) -> int:
        """The longest H of the schedule (``constant`` without one): what sizes the largest model buffer."""
        return constant if self.rollout_schedule is None else int(max(self.rollout_schedule[2:]))


@dataclass(frozen=True)
class GameSettings:
    """The PAL/MAL loop (``registry.AlgorithmEntry.loop`` ``game``; seed 003 Alg. 3/4, ``algos.pal_mal``): the
    fields of ``algos.pal_mal.GameConfig`` but those the run config holds at its top level (``algo``, ``env_id``,
    ``seed``, ``eval_episodes``) and ``npg`` (its own section). Each is documented there; units are real samples
    (``init_samples`` N_init, ``samples_per_iteration`` N, ``buffer_size`` B rows), NPG steps (``npg_steps`` K) and
    model-fit epochs (``fit_epochs``).

    None (every default) takes the value of ``GameConfig.paper(algo, env_id)``: the paper's Tables 1-3 for the
    algorithm and the environment's horizon (``buffer_size``: PAL 2500 rows, MAL all rows), or ``GameConfig``'s own
    default. The values are checked by ``GameConfig`` when the game trainer is built (before anything is written).
    """

    init_samples: int | None = None
    samples_per_iteration: int | None = None
    buffer_size: int | None = None
    npg_steps: int | None = None
    fit_epochs: int | None = None
    fit_batch_size: int | None = None
    fit_learning_rate: float | None = None
    holdout_fraction: float | None = None
    ensemble_size: int | None = None
    hidden_dims: tuple[int, ...] | None = None
    num_trajectories: int | None = None
    rollouts_per_start: int | None = None
    rollout_length: int | None = None
    buffer_start_fraction: float | None = None
    collect_envs: int | None = None

    def overrides(self) -> dict[str, Any]:
        """The fields that are set (not None), as ``GameConfig.paper`` overrides."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class TrainConfig:
    """One run. Offline: ``algo`` on ``dataset`` (a dataset spec) for ``epochs`` x ``steps_per_epoch``
    SAC steps, batches mixing ``real_ratio`` dataset rows with model rows, ``eval_episodes``
    deterministic episodes in ``env_id`` (None: from the dataset's metadata) after every epoch,
    a checkpoint every ``checkpoint_every`` epochs. Online (``registry.AlgorithmEntry.online``): no ``dataset``;
    ``env_id`` is the environment it learns in, an epoch is ``steps_per_epoch`` env steps, the ``online`` section
    sets the loop and ``model_weights`` (``uniform``, ``pmac``, ``tom``) the model fits' sample weights. PAL/MAL
    (loop ``game``): an epoch is one iteration of Alg. 3/4, set by the ``game`` and ``npg`` sections.

    A key an algorithm does not read (:data:`UNREAD_KEYS` of its loop) must keep its default; it is left out of
    ``config.yaml`` and the config hash."""

    algo: str = "admpo-off"
    dataset: str = ""
    task: str | None = None
    env_id: str | None = None
    seed: int = 0
    epochs: int = 1000
    steps_per_epoch: int = 1000
    real_ratio: float = 0.05
    eval_episodes: int = 10
    checkpoint_every: int = 1
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    model_weights: str = "uniform"
    game: GameSettings = field(default_factory=GameSettings)
    npg: NPGConfig = field(default_factory=NPGConfig)

    def __post_init__(self) -> None:
        check_section(
            self,
            "",
            at_least={"epochs": 1, "steps_per_epoch": 1, "eval_episodes": 1, "checkpoint_every": 1, "seed": 0},
            choices={"algo": tuple(ALGORITHMS), "model_weights": MODEL_WEIGHTS},
        )
        if not 0.0 <= self.real_ratio <= 1.0:
            fail("real_ratio", "in [0, 1]", self.real_ratio)
        if self.seed >= 2**32:
            fail("seed", "< 2**32", self.seed)
        unread = [key for key in unread_keys(self.algo) if getattr(self, key) != _defaults()[key]]
        if unread:
            readers = [n for n in ALGORITHMS if unread[0] not in unread_keys(n)]
            raise ConfigError(
                f"config: key '{unread[0]}' is not read by algo '{self.algo}' (only by {', '.join(readers)}); "
                f"leave it unset"
            )


#: keys only online SAC-harness algorithms read (``online``), and only the game loop reads (``game``)
ONLINE_KEYS = ("online", "model_weights")
GAME_KEYS = ("game", "npg")
#: keys of the SAC harness that the game loop does not read
SAC_KEYS = ("task", "steps_per_epoch", "real_ratio", "checkpoint_every", "dynamics", "rollout", "sac")


#: keys added after run folders with their section existed: ``config.yaml`` (and so the hash) leaves each out while it
#: holds its default, so adding an option keeps every earlier run's folder (a run that sets it gets a new one)
LATE_KEYS = ("online.actor_freq", "dynamics.validation_batch")


def _late_key_default(dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(_defaults()[section], name)


def unread_keys(algo: str) -> tuple[str, ...]:
    """The top-level run-config keys ``algo`` does not read: they keep their defaults (``TrainConfig`` checks) and
    are left out of its ``config.yaml`` and hash, so adding a section for one loop changes no other algorithm's run
    folders. Offline: the online and game keys; online SAC: the game keys; PAL/MAL: the online and SAC keys."""
    entry = algorithm_entry(algo)
    if entry.loop == "game":
        return ONLINE_KEYS + SAC_KEYS
    return GAME_KEYS if entry.online else ONLINE_KEYS + GAME_KEYS


@functools.cache
def _defaults() -> dict[str, Any]:
    """``TrainConfig``'s top-level defaults, built on first use (building a section imports torch, and the
    parser and ``tabulate`` must not)."""
    return {
        f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(TrainConfig)
    }


# ------------------------------------------------------------------------------ dict <-> dataclass
def _float(value: Any) -> Any:
    # YAML 1.1 reads 1e-4 as a string and 1 as an int: both are valid floats here
    if isinstance(value, bool):
        return value
    try:
        return float(value) if isinstance(value, (int, str)) else value
    except ValueError:
        return value


def _sequence(cast: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Type hook for ``tuple[T, ...]``: a YAML list becomes a tuple of cast items; anything else is left for dacite
    to report as a wrong type naming the key (``tuple(16)`` would raise a bare TypeError)."""
    return lambda value: tuple(cast(x) for x in value) if isinstance(value, (list, tuple)) else value


_DACITE = dacite.Config(
    strict=True,
    type_hooks={
        float: _float,
        tuple[int, ...]: _sequence(lambda x: x),
        tuple[float, ...]: _sequence(_float),
        tuple[float, ...] | None: _sequence(_float),
        tuple[int, ...] | None: _sequence(lambda x: x),
    },
)


def _check_keys(cls: type, data: dict, where: str, prefix: str = "") -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'; known keys: {', '.join(sorted(fields))}")
        if dataclasses.is_dataclass(hints[key]):
            _check_keys(hints[key], value, where, f"{prefix}{key}.")


def from_dict(data: dict, where: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict; ConfigError names the dotted key and ``where``."""
    _check_keys(TrainConfig, data, where)
    try:
        return dacite.from_dict(TrainConfig, data, config=_DACITE)
    except dacite.DaciteError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(config: TrainConfig) -> dict:
    """Plain nested dict (tuples as lists), the form written to ``config.yaml``. It leaves out the keys the algorithm
    does not read (:func:`unread_keys`; they hold their defaults, ``TrainConfig`` checks it) and the
    :data:`LATE_KEYS` at their defaults, so run folders keep their ``config.yaml`` and hash when keys are added."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return list(value) if isinstance(value, tuple) else value

    data = plain(dataclasses.asdict(config))
    for dotted in LATE_KEYS:
        section, name = dotted.split(".")
        if data[section][name] == _late_key_default(dotted):
            del data[section][name]
    unread = unread_keys(config.algo)
    return {k: v for k, v in data.items() if k not in unread}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def parse_override(text: str) -> dict:
    """``"rollout.penalty_coef=2.5"`` -> ``{"rollout": {"penalty_coef": 2.5}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. rollout.penalty_coef=2.5")
    key, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw else None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_yaml(path: str | Path) -> dict:
    """A config file as a dict; ConfigError names the file when it is missing or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    return data


def resolve(
    algo: str | None = None, file: str | Path | None = None, overrides: list[str] = (), **top_level: Any
) -> TrainConfig:
    """Defaults of ``algo`` <- ``file`` <- ``--set`` overrides <- explicit top-level values
    (``dataset=...``, ``seed=...``; None values are ignored).

    ``algo`` may also come from the file; a file naming a different algo than ``algo`` is an error.
    """
    data = load_yaml(file) if file else {}
    where = str(file) if file else "config"
    if algo and data.get("algo", algo) != algo:
        raise ConfigError(f"{where}: key 'algo' is {data['algo']!r} but --algo is {algo!r}")
    algo = algo or data.get("algo", "admpo-off")
    defaults = algorithm_entry(algo, where).config_defaults()
    return _apply(_merge(defaults, data), overrides, {"algo": algo, **top_level}, where)


def _apply(merged: dict, overrides: list[str], top_level: dict[str, Any], where: str) -> TrainConfig:
    """``merged`` <- ``--set`` overrides <- top-level values (None ignored), as a checked TrainConfig."""
    for text in overrides:
        merged = _merge(merged, parse_override(text))
    merged = _merge(merged, {k: v for k, v in top_level.items() if v is not None})
    return from_dict(merged, where)


def override(
    config: TrainConfig, file: str | Path | None = None, overrides: list[str] = (), **top_level: Any
) -> TrainConfig:
    """``config`` <- ``file`` <- ``--set`` overrides <- explicit top-level values (None ignored): what the flags
    of ``train --resume`` ask of a recorded config (compare with :func:`resume_conflicts`).

    Raises:
        ConfigError: as :func:`resolve`.
    """
    data = load_yaml(file) if file else {}
    return _apply(_merge(to_dict(config), data), overrides, top_level, str(file) if file else "train --resume")


def _flat(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{dotted key: value}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        out |= _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}
    return out


def resume_conflicts(recorded: TrainConfig, requested: TrainConfig) -> list[str]:
    """Why ``requested`` cannot continue a run made with ``recorded``: one ``"key: old -> new"`` per differing
    dotted key (empty: it can). The one allowed change is a larger ``epochs`` when the actor-lr schedule does
    not depend on it (``sac.lr_schedule`` off or ``sac.lr_schedule_epochs`` set; always for the game loop);
    otherwise the cosine period would change under a running schedule."""
    old, new = _flat(to_dict(recorded)), _flat(to_dict(requested))
    conflicts = [f"{key}: {old[key]!r} -> {new[key]!r}" for key in old if old[key] != new[key]]
    sac = algorithm_entry(recorded.algo).loop == "sac"  # the game loop has no actor-lr schedule
    schedule_free = not sac or not recorded.sac.lr_schedule or recorded.sac.lr_schedule_epochs is not None
    if requested.epochs > recorded.epochs and schedule_free:
        conflicts = [c for c in conflicts if not c.startswith("epochs:")]
    elif requested.epochs > recorded.epochs:
        conflicts = [
            c + " (extending 'epochs' needs a fixed sac.lr_schedule_epochs or sac.lr_schedule false)"
            if c.startswith("epochs:")
            else c
            for c in conflicts
        ]
    return conflicts


def config_hash(config: TrainConfig) -> str:
    """8-hex-digit hash of the resolved config without ``seed`` (the run-folder level above seeds)."""
    data = to_dict(replace(config, seed=0))
    return hashlib.sha1(yaml.safe_dump(data, sort_keys=True).encode()).hexdigest()[:8]


def default_config_file(algo: str, task: str | None, source: str | None) -> Path | None:
    """The shipped per-task config for ``algo`` and a dataset, if one exists (``<algo>``: the algorithm's
    ``config_folder`` in ``registry.ALGORITHMS``).

    ``task`` like ``hopper-medium-v2`` -> ``configs/<algo>/d4rl/hopper-medium.yaml``; ``neorl-hopper-low``
    -> ``configs/<algo>/neorl/hopper-low.yaml``; a Minari id ``<namespace>/<env>/<kind>-vN`` (``source``) ->
    ``configs/<algo>/minari/<namespace>/<env>-<kind>.yaml`` when that namespace has a folder there (Minari's
    hosted ``mujoco/hopper/medium-v0`` -> ``minari/mujoco/hopper-medium.yaml``), else
    ``configs/<algo>/minari/<env>-<kind>.yaml`` (the collected ``offline_mbrl/hopper/medium-v0``).
    """
    folder = CONFIG_DIR / algorithm_entry(algo).config_folder
    candidates = []
    if task:
        base = task.rsplit("-v", 1)[0] if task[-1].isdigit() and "-v" in task else task
        if base.startswith("neorl-"):
            candidates.append(folder / "neorl" / f"{base[len('neorl-') :]}.yaml")
        candidates.append(folder / "d4rl" / f"{base}.yaml")
    if source and source.startswith("minari:"):
        parts = source[len("minari:") :].split("/")
        if len(parts) >= 2:
            namespace, env, name = "/".join(parts[:-2]), parts[-2], parts[-1]
            minari = folder / "minari"
            if namespace and (minari / namespace).is_dir():
                minari = minari / namespace
            candidates.append(minari / f"{env}-{name.rsplit('-v', 1)[0]}.yaml")
    return next((c for c in candidates if c.is_file()), None)


def default_online_config_file(algo: str, env_id: str) -> Path | None:
    """The shipped config of an online ``algo`` for a gymnasium id, if one exists: ``Hopper-v5`` ->
    ``configs/<config_folder>/hopper.yaml`` (the id's name before ``-v``, lower-case)."""
    name = env_id.rsplit("-v", 1)[0].lower()
    path = CONFIG_DIR / algorithm_entry(algo).config_folder / f"{name}.yaml"
    return path if path.is_file() else None
