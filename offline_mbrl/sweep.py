"""Sweeps: a YAML spec of algorithms x datasets x seeds x overrides, expanded to trials and run on Ray.

A trial is one ``offline-mbrl train`` command: a pure ``(config, seed)`` run into its deterministic run folder
(``runs.run_dir_for``). Running a sweep again redoes nothing that is done: finished trials
(``summary.json`` with ``finished: true``) are skipped, partial ones resume from their run folder's checkpoint
(``train`` does that by itself), failed ones are retried. Every trial's config is resolved before anything
starts, so a bad override fails its own trials only. Shared dynamics models (``dynamics: {share: true}``) are
fitted once per dataset x model config x model seed by ``offline-mbrl model fit`` (resumable from its
``.partial`` file) and passed to their trials as ``--dynamics``.

Bookkeeping lives next to the run folders, under ``<runs>/.sweep/``: ``<key>.json`` (the trial's last state:
running with its host and pid, done, or failed with the error) and ``<key>.log`` (the output of every attempt).

The spec (paths relative to the working directory, as on the command line)::

    algos: [admpo-off, mopo]                    # required, non-empty
    datasets: [minari:offline_mbrl/hopper/medium-v0]   # required, non-empty
    seeds: [0, 1, 2]                            # required, non-empty, ints >= 0
    epochs: 200                                 # optional: train --epochs
    config: my.yaml                             # optional: train --config (default: the shipped per-task file)
    set: {rollout.rollout_batch_size: 5000, rollout.penalty_coef: [0.5, 1.0]}   # a list is a grid axis;
                                                # a list-valued key is a one-point axis: sac.hidden_dims: [[64, 64]]
    algo_set: {mopo: {sac.lr_schedule_epochs: 3000}}   # per-algorithm overrides (after ``set``), same rules
    dynamics: {share: true, seed: 0}            # optional: fit shared models once (seed: default the trial's)
    runs: runs                                  # optional: root of the run folders
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
import shlex
import socket
import time
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .config import DynamicsConfig, TrainConfig, default_config_file, load_yaml, resolve
from .errors import ConfigError, OfflineMBRLError
from .registry import ALGORITHMS

SPEC_KEYS = ("algos", "datasets", "seeds", "epochs", "config", "set", "algo_set", "dynamics", "runs")
DYNAMICS_KEYS = ("share", "seed")
STATES = ("done", "running", "failed", "partial", "pending")
"""Trial states: ``partial`` has a checkpoint (or was stopped while running); ``pending`` has nothing yet."""
BOOKKEEPING = ".sweep"
_FIT_FLAGS = {"max_backtrack", "max_epochs", "holdout_split", "validation_batch", "batch_size", "model"}
"""The ``dynamics`` fields that ``offline-mbrl model fit`` takes as flags; a model config differing from the
defaults elsewhere cannot be fitted by it, and its trials fit their own model in their run folder."""


# ------------------------------------------------------------------------------------------------ the spec
@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep spec (module docstring); ``set``/``algo_set`` values are grid axes (lists)."""

    algos: list[str]
    datasets: list[str]
    seeds: list[int]
    epochs: int | None = None
    config: Path | None = None
    set: dict[str, list] = field(default_factory=dict)
    algo_set: dict[str, dict[str, list]] = field(default_factory=dict)
    share_dynamics: bool = False
    dynamics_seed: int | None = None
    runs: Path = Path("runs")


def _bad(key: str, rule: str, value: Any, where: str) -> ConfigError:
    return ConfigError(f"{where}: key '{key}' must be {rule}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nonempty_list(data: dict, key: str, item_ok: Callable[[Any], bool], rule: str, where: str) -> list:
    value = data.get(key)
    if not isinstance(value, list) or not value or not all(item_ok(v) for v in value):
        raise _bad(key, f"a non-empty list of {rule}", value, where)
    return value


def _axes(overrides: Any, key: str, where: str) -> dict[str, list]:
    """``{dotted.key: value or [values]}`` -> ``{dotted.key: [values]}`` (a scalar is a one-point axis)."""
    if not isinstance(overrides, dict):
        raise _bad(key, "a mapping {dotted.key: value or [values to grid over]}", overrides, where)
    axes = {}
    for name, value in overrides.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
            raise _bad(key, "keyed by dotted config keys such as rollout.penalty_coef", name, where)
        if value == []:
            raise _bad(f"{key}.{name}", "a value or a non-empty list of values", value, where)
        axes[name] = value if isinstance(value, list) else [value]
    return axes


def parse_spec(data: Any, where: str = "spec") -> SweepSpec:
    """Validate a spec mapping (module docstring) into a :class:`SweepSpec`; no file but ``config`` is read.

    Raises:
        ConfigError: not a mapping, an unknown key, a missing or empty list, a value of the wrong type, an
            ``algo_set`` entry for an algorithm not in ``algos``, a ``config`` file that does not exist; the
            message names ``where`` and the spec key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a sweep spec must be a mapping, got {type(data).__name__}")
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{where}: unknown key '{key}'; known keys: {', '.join(SPEC_KEYS)}")
    offline = tuple(name for name, entry in ALGORITHMS.items() if not entry.online)  # sweeps grid datasets
    algos = _nonempty_list(data, "algos", lambda a: a in offline, f"offline algorithms from {offline}", where)
    datasets = _nonempty_list(data, "datasets", lambda d: isinstance(d, str) and d, "dataset specs", where)
    seeds = _nonempty_list(data, "seeds", lambda s: _is_int(s) and s >= 0, "ints >= 0", where)
    epochs = data.get("epochs")
    if epochs is not None and not (_is_int(epochs) and epochs >= 1):
        raise _bad("epochs", "an int >= 1", epochs, where)
    config = data.get("config")
    if config is not None and not (isinstance(config, str) and Path(config).is_file()):
        raise _bad("config", "the path of an existing config file", config, where)
    algo_set = data.get("algo_set") or {}
    if not isinstance(algo_set, dict):
        raise _bad("algo_set", "a mapping {algo: {dotted.key: value or [values]}}", algo_set, where)
    for algo in algo_set:
        if algo not in algos:
            raise _bad(f"algo_set.{algo}", f"an algorithm of 'algos' {algos}", algo, where)
    dynamics = data.get("dynamics") or {}
    if not isinstance(dynamics, dict) or any(k not in DYNAMICS_KEYS for k in dynamics):
        raise _bad("dynamics", f"a mapping with keys from {DYNAMICS_KEYS}", dynamics, where)
    if not isinstance(dynamics.get("share", False), bool):
        raise _bad("dynamics.share", "true or false", dynamics["share"], where)
    model_seed = dynamics.get("seed")
    if model_seed is not None and not (_is_int(model_seed) and model_seed >= 0):
        raise _bad("dynamics.seed", "an int >= 0 (or absent: the trial's seed)", model_seed, where)
    runs = data.get("runs", "runs")
    if not isinstance(runs, str) or not runs:
        raise _bad("runs", "a folder path", runs, where)
    return SweepSpec(
        algos=algos,
        datasets=datasets,
        seeds=seeds,
        epochs=epochs,
        config=Path(config) if config else None,
        set=_axes(data.get("set") or {}, "set", where),
        algo_set={algo: _axes(algo_set[algo] or {}, f"algo_set.{algo}", where) for algo in algo_set},
        share_dynamics=dynamics.get("share", False),
        dynamics_seed=model_seed,
        runs=Path(runs),
    )


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file (:func:`parse_spec`).

    Raises:
        ConfigError: the file is missing, not YAML, or an invalid spec; the message names the file and key.
    """
    return parse_spec(load_yaml(path), str(path))


# ------------------------------------------------------------------------------------------------ trials
@dataclass(frozen=True)
class ModelFit:
    """One shared dynamics model: the ``offline-mbrl model fit`` flags and the file it writes."""

    argv: tuple[str, ...]
    out: Path

    @property
    def key(self) -> str:
        """Name of its bookkeeping files."""
        return f"fit-{self.out.stem}"


@dataclass(frozen=True)
class Trial:
    """One ``train`` run. ``config``/``run_dir`` are None and ``error`` says why when its config does not
    resolve; ``fit`` is the shared model it trains with (None: it fits its own in its run folder)."""

    algo: str
    dataset: str
    seed: int
    overrides: tuple[str, ...]
    argv: tuple[str, ...]
    config: TrainConfig | None = None
    run_dir: Path | None = None
    fit: ModelFit | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        """Name of its bookkeeping files: the run folder below the runs root, or a hash of its flags."""
        if self.run_dir is None:
            return "invalid-" + hashlib.sha1(" ".join(self.argv).encode()).hexdigest()[:10]
        return "-".join(self.run_dir.parts[-4:])

    @property
    def label(self) -> str:
        """``algo dataset seed=S key=value ...`` for listings."""
        return " ".join([self.algo, self.dataset, f"seed={self.seed}", *self.overrides])


def _value_text(value: Any) -> str:
    """A value as ``--set`` parses it back (YAML): strings bare when that round-trips, else JSON."""
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _grid(axes: dict[str, list]) -> list[tuple[str, ...]]:
    """Every combination of the axes as ``key=value`` override texts (one empty tuple without axes)."""
    keys = list(axes)
    return [
        tuple(f"{k}={_value_text(v)}" for k, v in zip(keys, values))
        for values in itertools.product(*(axes[k] for k in keys))
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.removeprefix("minari:")).strip("_")


def _model_fit(config: TrainConfig, spec: SweepSpec) -> ModelFit | None:
    """The shared fit of ``config``'s model, or None when ``model fit`` cannot make that model (``_FIT_FLAGS``)."""
    d = config.dynamics
    defaults = dataclasses.replace(DynamicsConfig(), **{name: getattr(d, name) for name in _FIT_FLAGS})
    if d != defaults:
        return None
    kind = d.model
    seed = config.seed if spec.dynamics_seed is None else spec.dynamics_seed
    argv = ["model", "fit", "--model", kind, "--dataset", config.dataset, "--seed", str(seed)]
    argv += ["--holdout-split", d.holdout_split]
    if kind == "adm":
        argv += ["--max-backtrack", str(d.max_backtrack)]
    if d.max_epochs is not None:
        argv += ["--epochs", str(d.max_epochs)]
    if d.batch_size != DynamicsConfig().batch_size:
        argv += ["--batch-size", str(d.batch_size)]
    if d.validation_batch is not None:
        argv += ["--validation-batch", str(d.validation_batch)]
    tag = hashlib.sha1(" ".join(argv).encode()).hexdigest()[:8]
    out = spec.runs / "models" / f"{kind}-{_slug(config.dataset)}-{tag}-seed{seed}.pt"
    return ModelFit(tuple(argv + ["--out", str(out), "--no-progress"]), out)


def _task_of(dataset: str, cache: dict[str, Any]) -> str | None:
    """The dataset's metadata ``task`` (part of the resolved config, as ``train`` sets it); loaded once."""
    if dataset not in cache:
        from .data.load import load_dataset

        try:
            cache[dataset] = load_dataset(dataset).metadata.get("task")
        except OfflineMBRLError as exc:
            cache[dataset] = exc
    if isinstance(cache[dataset], Exception):
        raise cache[dataset]
    return cache[dataset]


def expand(spec: SweepSpec) -> list[Trial]:
    """Every trial of ``spec`` (algos x datasets x grid points x seeds, in that order) with its config resolved
    as ``offline-mbrl train`` resolves it (defaults <- ``config`` or the shipped per-task file <- overrides), so
    that its run folder is the one ``train`` writes. Each dataset is loaded once (for its metadata ``task``).

    A trial whose dataset does not load or whose overrides do not resolve carries the error instead of a config
    (it fails alone); nothing is raised for it.
    """
    from .runs import run_dir_for

    trials, tasks = [], {}
    for algo, dataset in itertools.product(spec.algos, spec.datasets):
        axes = {**spec.set, **spec.algo_set.get(algo, {})}
        for overrides, seed in itertools.product(_grid(axes), spec.seeds):
            argv = ["train", "--algo", algo, "--dataset", dataset, "--seed", str(seed)]
            argv += ["--config", str(spec.config)] if spec.config else []
            argv += ["--epochs", str(spec.epochs)] if spec.epochs else []
            argv += [x for text in overrides for x in ("--set", text)]
            argv += ["--runs", str(spec.runs), "--no-progress"]
            trial = Trial(algo, dataset, seed, overrides, tuple(argv))
            try:
                task = _task_of(dataset, tasks)
                config_file = spec.config or default_config_file(algo, task, dataset)
                config = resolve(
                    algo, config_file, list(overrides), dataset=dataset, seed=seed, epochs=spec.epochs, task=task
                )
            except (OfflineMBRLError, TypeError, ValueError) as exc:  # dacite lets some type errors through
                trials.append(dataclasses.replace(trial, error=f"{type(exc).__name__}: {exc}"))
                continue
            fit = _model_fit(config, spec) if spec.share_dynamics else None
            argv += ["--dynamics", str(fit.out)] if fit else []
            run_dir = run_dir_for(spec.runs, config)
            trials.append(dataclasses.replace(trial, argv=tuple(argv), config=config, run_dir=run_dir, fit=fit))
    return trials


def model_fits(trials: list[Trial]) -> list[ModelFit]:
    """The distinct shared model fits of ``trials``, in first-use order."""
    return list(dict.fromkeys(t.fit for t in trials if t.fit is not None))


def device_flags(gpus_per_trial: float) -> tuple[str, ...]:
    """``--device cuda`` when trials get GPUs (Ray makes the task's share device 0), else nothing (CPU)."""
    return ("--device", "cuda") if gpus_per_trial > 0 else ()


def command_line(argv: tuple[str, ...]) -> str:
    """``offline-mbrl <argv>`` as one shell-quoted line."""
    return shlex.join(["offline-mbrl", *argv])


# ------------------------------------------------------------------------------------------------ state
@dataclass(frozen=True)
class TrialStatus:
    """``state`` (one of :data:`STATES`) and, for ``failed``, the error's first line."""

    state: str
    error: str | None = None


def _record_path(runs: Path, key: str) -> Path:
    return runs / BOOKKEEPING / f"{key}.json"


def log_path(runs: Path, key: str) -> Path:
    """The log of a trial or fit (``<runs>/.sweep/<key>.log``): the output of every attempt, appended."""
    return runs / BOOKKEEPING / f"{key}.log"


def _write_record(runs: Path, key: str, record: dict) -> None:
    from .persist import write_text_atomic

    path = _record_path(runs, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=2))


def _read_record(runs: Path, key: str) -> dict:
    try:
        return json.loads(_record_path(runs, key).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _alive(record: dict) -> bool:
    """A ``running`` record's process is alive (always assumed for another host: it cannot be checked)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trial_status(trial: Trial, runs: Path) -> TrialStatus:
    """Where ``trial`` stands: ``failed`` when its config does not resolve or its last attempt failed; ``done``
    when its ``summary.json`` says finished; ``running`` while a live process holds it; ``partial`` with a
    checkpoint or a stopped attempt; else ``pending``."""
    if trial.error:
        return TrialStatus("failed", trial.error.splitlines()[0])
    summary = trial.run_dir / "summary.json"
    if summary.is_file():
        try:
            if json.loads(summary.read_text()).get("finished"):
                return TrialStatus("done")
        except json.JSONDecodeError:
            pass
    record = _read_record(runs, trial.key)
    if record.get("state") == "running" and _alive(record):
        return TrialStatus("running")
    if record.get("state") == "failed":
        return TrialStatus("failed", record.get("error"))
    if record or (trial.run_dir / "checkpoints").is_dir():
        return TrialStatus("partial")
    return TrialStatus("pending")


# ------------------------------------------------------------------------------------------------ running
def _first_error_line(text: str) -> str:
    """The ``offline-mbrl: error:`` line of a CLI log (the last one), or its last non-empty line."""
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("offline-mbrl: error:")]
    return (errors or lines or ["exit status != 0, no output"])[-1].removeprefix("offline-mbrl: error: ")


def run_command(argv: tuple[str, ...], runs: str, key: str, cwd: str, after: str | None = None) -> str | None:
    """Run ``offline-mbrl <argv>`` in this process (a Ray task) with one torch thread, its output appended to
    the key's log, its state recorded under ``<runs>/.sweep/``; ``after``: the error of the fit it waited on
    (the command is not run then). Returns None on success, else the error's first line.

    Raises:
        OSError: ``cwd`` (the sweep's working directory) does not exist here, or ``runs`` cannot be written; the
            sweep records Ray's error as the trial's failure.
    """
    import torch

    from .cli import main

    os.chdir(cwd)
    runs_root = Path(runs)
    if after is not None:
        error = f"shared dynamics model fit failed: {after}"
        _write_record(runs_root, key, {"state": "failed", "error": error})
        return error
    torch.set_num_threads(1)
    started = time.time()
    _write_record(runs_root, key, {"state": "running", "host": socket.gethostname(), "pid": os.getpid()})
    log = log_path(runs_root, key)
    with open(log, "a") as out, redirect_stdout(out), redirect_stderr(out):
        print(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {command_line(argv)}", flush=True)
        start = log.stat().st_size
        try:
            error = None if main(list(argv)) == 0 else ""
        except SystemExit:  # argparse: its message is the log's last line
            error = ""
        except Exception as exc:  # a trial's failure is recorded, never raised into the sweep
            traceback.print_exc()
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if error == "":
        with open(log) as f:
            f.seek(start)
            error = _first_error_line(f.read())
    record = {"state": "failed" if error else "done", "error": error, "seconds": round(time.time() - started, 1)}
    _write_record(runs_root, key, record)
    return error


def _init_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a local Ray (``num_cpus``, default all cores); False if one was already
    initialized in this process (the caller leaves it running then). Workers get one OpenMP thread and this
    process's ``MINARI_DATASETS_PATH``."""
    import ray

    if ray.is_initialized():
        return False
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if "MINARI_DATASETS_PATH" in os.environ:
        env["MINARI_DATASETS_PATH"] = os.environ["MINARI_DATASETS_PATH"]
    options = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
    ray.init(runtime_env={"env_vars": env}, log_to_driver=False, **options)
    return True


def run_sweep(
    trials: list[Trial],
    runs: Path,
    address: str | None = None,
    max_concurrent: int | None = None,
    gpus_per_trial: float = 0.0,
    num_cpus: int | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, str | None]:
    """Run the trials that are not done (and the shared model fits they need, first) as Ray tasks of one CPU
    and ``gpus_per_trial`` GPUs each, at most ``max_concurrent`` at a time (default: as many as Ray's resources
    allow). A failing trial never stops the others; trials whose config did not resolve are not run.

    Returns:
        ``{trial key: None (done) or the error's first line}`` for the trials run now.
    Raises:
        ConfigError: ``max_concurrent`` < 1 or ``gpus_per_trial`` < 0.
    """
    import ray

    if max_concurrent is not None and max_concurrent < 1:
        raise ConfigError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    if gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {gpus_per_trial}")
    todo = [t for t in trials if t.error is None and trial_status(t, runs).state not in ("done", "running")]
    started_here = _init_ray(address, num_cpus)
    try:
        device = device_flags(gpus_per_trial)
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_trial, max_retries=0)(run_command)
        cwd, pending, results = os.getcwd(), {}, {}

        def submit(key: str, argv: tuple[str, ...], after=None):
            if max_concurrent is not None and len(pending) >= max_concurrent:
                _collect(pending, results, runs, echo, num_returns=1)
            ref = task.remote(argv + device, str(runs), key, cwd, after)
            pending[ref] = key
            return ref

        # a trial's argument is its fit's result: Ray starts the trial once the fit is done
        fits = {fit: submit(fit.key, fit.argv) for fit in model_fits(todo) if not fit.out.is_file()}
        for trial in todo:
            submit(trial.key, trial.argv, fits.get(trial.fit))
        _collect(pending, results, runs, echo, num_returns=len(pending))
    finally:
        if started_here:
            ray.shutdown()
    return results


def _collect(pending: dict, results: dict, runs: Path, echo: Callable[[str], None], num_returns: int) -> None:
    """Wait for ``num_returns`` of the ``pending`` task refs (dropping them), recording their outcome; a task
    that Ray itself lost (a crashed worker) is recorded as failed with Ray's error."""
    import ray

    while num_returns > 0 and pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ready[0])
        try:
            error = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            _write_record(runs, key, {"state": "failed", "error": error})
        results[key] = error
        echo(f"{'failed' if error else 'done'}: {key}" + (f": {error}" if error else ""))
        num_returns -= 1


# ------------------------------------------------------------------------------------------------ reports
def format_trials(trials: list[Trial], runs: Path) -> str:
    """One line per trial: state, label, run folder (or the error of a failed one), then the state counts."""
    lines, counts = [], dict.fromkeys(STATES, 0)
    for trial in trials:
        status = trial_status(trial, runs)
        counts[status.state] += 1
        where = f"  error: {status.error}" if status.error else f"  {trial.run_dir}"
        shared = f"  dynamics: {trial.fit.out}" if trial.fit else ""
        lines.append(f"{status.state:<8} {trial.label}{where}{shared}")
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()) + f" (of {len(trials)} trials)")
    return "\n".join(lines)


def format_status(trials: list[Trial], runs: Path) -> str:
    """:func:`format_trials`, then the ``offline-mbrl tabulate`` score table of the trials that are done."""
    from .analysis.runs_io import read_runs
    from .analysis.tables import format_tables

    text = format_trials(trials, runs)
    done = [t.run_dir for t in trials if trial_status(t, runs).state == "done"]
    return text + ("\n\n" + format_tables(read_runs(done)) if done else "\n")
