"""The run folder (DESIGN section 7): its path rule, its layout, writing it and the one reader of it (``evaluate``,
calibration's learned policy and ``tabulate`` read through :class:`RunFolder`), its lock and the metrics logger.

``runs/<algo>/<dataset-slug>/<config-hash>/seed<S>/`` (:func:`run_dir_for`) holds the resolved ``config.yaml``,
``metrics.csv`` (one row per completed epoch), TensorBoard events, ``dynamics.pt`` (the fitted model),
``checkpoints/last.pt`` (everything needed to resume; its ``sac`` entry is ``agents.sac.SAC.full_state()``) and
``summary.json`` (``env_id``, ``epochs_completed``, ``epochs_total``, ``finished``, final scores, score reference).

A run that is stopped loses at most the work since its last checkpoint: checkpoints, ``config.yaml`` and
``summary.json`` are written atomically (``persist``). One process at a time writes a run folder (:func:`run_lock`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .config import TrainConfig, config_hash
from .errors import RunFolderError, RunLockedError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from .agents.npg import GaussianMLPPolicy
    from .agents.sac import TanhGaussianActor

# torch (persist, agents) is imported where it is used, so that reading run folders for tables stays torch-free

LOCK_NAME = ".lock"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoints/last.pt"
DYNAMICS_FILE = "dynamics.pt"
#: keys every ``config.yaml`` must hold for the run to be tabulated
REQUIRED_CONFIG_KEYS = ("algo", "dataset", "seed", "epochs")


def run_dir_for(runs: Path, config: TrainConfig) -> Path:
    """``runs/<algo>/<dataset-slug>/<config-hash>/seed<S>`` (DESIGN section 7): the same config always gets the same
    folder, so a rerun resumes or skips. An online run (no dataset) uses its ``env_id`` as the slug."""
    source = config.dataset or config.env_id or ""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.removeprefix("minari:")).strip("_")
    return runs / config.algo / slug / config_hash(config) / f"seed{config.seed}"


@dataclass(frozen=True)
class RunFolder:
    """One run folder: where each of its files lives, writing them, and reading them back.

    Readers raise :class:`RunFolderError` (a :class:`CheckpointError`) naming the file.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def summary_file(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def dynamics_file(self) -> Path:
        return self.path / DYNAMICS_FILE

    # ------------------------------------------------------------------ writing
    def write_config(self, config: dict) -> None:
        """``config.yaml``: the resolved config as a plain dict (``config.to_dict``), keys in declaration order."""
        from .persist import write_text_atomic

        write_text_atomic(self.config_file, yaml.safe_dump(config, sort_keys=False))

    def write_summary(self, summary: dict) -> None:
        """``summary.json``."""
        from .persist import write_text_atomic

        write_text_atomic(self.summary_file, json.dumps(summary, indent=2))

    def save_checkpoint(self, state: dict) -> None:
        """``checkpoints/last.pt``, written atomically."""
        from .persist import save_atomic

        save_atomic(state, self.checkpoint_file)

    # ------------------------------------------------------------------ reading
    def read_config(self) -> dict:
        """``config.yaml`` as a dict holding at least :data:`REQUIRED_CONFIG_KEYS`.

        Raises:
            RunFolderError: unreadable, not a mapping, or missing a required key.
        """
        config = _read_mapping(
            self.config_file, yaml.safe_load, yaml.YAMLError, "run config", "YAML", ", ".join(REQUIRED_CONFIG_KEYS)
        )
        missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
        if missing:
            raise RunFolderError(f"{self.config_file}: missing keys {missing}")
        return config

    def read_metrics(self):
        """``metrics.csv`` as a DataFrame (``pandas``), in epoch order.

        Raises:
            RunFolderError: unreadable, without ``epoch``/``step`` columns, repeated or unordered epochs, or an empty
                ``step``.
        """
        import pandas as pd

        path = self.metrics_file
        try:
            metrics = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise RunFolderError(f"{path}: cannot read metrics ({exc})") from exc
        missing = [column for column in ("epoch", "step") if column not in metrics.columns]
        if missing:
            raise RunFolderError(f"{path}: missing columns {missing}")
        if (
            metrics["step"].isna().any()
            or not metrics["epoch"].is_monotonic_increasing
            or metrics["epoch"].duplicated().any()
        ):
            raise RunFolderError(
                f"{path}: 'epoch' must be strictly increasing and 'step' filled (epochs "
                f"{metrics['epoch'].tolist()[:10]})"
            )
        return metrics.reset_index(drop=True)

    def read_summary(self, required: bool = False) -> dict:
        """``summary.json`` as a dict; ``{}`` when there is none yet (no epoch finished) unless ``required``.

        Raises:
            RunFolderError: ``required`` and missing; not valid JSON; not a mapping.
        """
        if not self.summary_file.is_file():
            if required:
                raise RunFolderError(f"{self.path}: no {SUMMARY_FILE} (not a run folder, or no epoch finished yet)")
            return {}
        return _read_mapping(
            self.summary_file,
            json.loads,
            json.JSONDecodeError,
            "run summary",
            "JSON",
            "env_id, epochs_completed, finished",
        )

    def read_checkpoint(self, device: str | torch.device = "cpu") -> dict:
        """``checkpoints/last.pt`` (loaded with ``weights_only=True``): the state the harness saved to resume.

        Raises:
            CheckpointError: missing or unreadable (the message names the file).
        """
        from .persist import load_checkpoint

        return load_checkpoint(self.checkpoint_file, device)

    def read_actor(self, device: str | torch.device = "cpu") -> TanhGaussianActor:
        """The learned actor of ``checkpoints/last.pt`` (its ``sac`` entry, ``SAC.full_state()``), in eval mode.

        Raises:
            CheckpointError: missing or unreadable checkpoint, or no actor weights in it (the message names the file).
        """
        from .agents.sac import TanhGaussianActor

        path = self.checkpoint_file
        try:
            sac = self.read_checkpoint(device)["sac"]
            hidden_dims = tuple(sac["config"]["hidden_dims"])
            actor = TanhGaussianActor(int(sac["obs_dim"]), int(sac["action_dim"]), hidden_dims)
            actor.load_state_dict(
                {k.removeprefix("actor."): v for k, v in sac["model"].items() if k.startswith("actor.")}
            )
        except (KeyError, TypeError, RuntimeError) as exc:
            raise RunFolderError(f"{path}: not an offline run checkpoint with SAC actor weights ({exc})") from exc
        return actor.to(device).eval()

    def read_npg_policy(self, device: str | torch.device = "cpu") -> GaussianMLPPolicy:
        """The NPG Gaussian policy of a PAL/MAL ``checkpoints/last.pt`` (its ``game`` entry, ``GameLoop.state_dict()``;
        ``agents.npg.policy_from_state``), in eval mode.

        Raises:
            CheckpointError: missing or unreadable checkpoint, or no NPG policy in it (the message names the file).
        """
        from .agents.npg import policy_from_state
        from .errors import ConfigError

        try:
            return policy_from_state(self.read_checkpoint(device)["game"]["npg"], device)
        except (KeyError, TypeError, RuntimeError, ConfigError) as exc:
            raise RunFolderError(
                f"{self.checkpoint_file}: not a PAL/MAL checkpoint with NPG policy weights ({exc})"
            ) from exc

    def read_policy(self, device: str | torch.device = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
        """The deterministic policy of the run, ``obs (B, D) -> action (B, A)`` without gradient: the NPG policy's
        mean (:meth:`read_npg_policy`) when the ``algo`` of ``summary.json`` is run by the game loop
        (``registry.AlgorithmEntry.loop``), else the SAC actor's mean action (:meth:`read_actor`).

        Raises:
            RunFolderError: an unreadable ``summary.json``.
            CheckpointError: as the reader.
        """
        from .registry import ALGORITHMS

        algo = self.read_summary().get("algo")
        entry = ALGORITHMS.get(algo) if isinstance(algo, str) else None
        if entry is not None and entry.loop == "game":
            return self.read_npg_policy(device).deterministic()
        actor = self.read_actor(device)
        return lambda obs: actor(obs, deterministic=True, with_log_prob=False)[0]


def _read_mapping(path: Path, parse, parse_error: type[Exception], what: str, fmt: str, fields: str) -> dict:
    """``parse(path.read_text())``, checked to be a mapping (``fields``: what it should hold, for the message).

    Raises:
        RunFolderError: unreadable, not valid ``fmt``, or not a mapping; naming ``path`` and ``what``.
    """
    try:
        mapping = parse(path.read_text())
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read the {what} ({exc})") from exc
    except parse_error as exc:
        raise RunFolderError(f"{path}: cannot read the {what} (not valid {fmt}: {exc})") from exc
    if not isinstance(mapping, dict):
        raise RunFolderError(f"{path}: the {what} is not a mapping (of {fields}, ...)")
    return mapping


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _lock_pid(path: Path) -> int:
    """The pid written in the lock file ``path``; -1 if it is gone (removed meanwhile) or half-written by a
    process that died."""
    try:
        return int(path.read_text().strip() or -1)
    except (FileNotFoundError, ValueError):
        return -1


def lock_holder(run_dir: str | Path) -> int | None:
    """The pid of the live process holding ``run_dir``'s lock (:func:`run_lock`): the run is being trained now.
    None when there is no lock or it is the stale lock of a process that no longer runs (a killed run)."""
    pid = _lock_pid(Path(run_dir) / LOCK_NAME)
    return pid if pid > 0 and _pid_alive(pid) else None


def _take_lock(path: Path) -> bool:
    """Create ``path`` holding this pid with O_EXCL; False if it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return True


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (this pid, created with O_EXCL) for the block; removed afterwards. A lock left by a
    dead process (a killed run) is taken over with a warning on stderr.

    Raises:
        RunLockedError: another live process holds the lock; the message names the folder and its pid.
    """
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    while not _take_lock(path):
        holder = _lock_pid(path)
        if holder > 0 and _pid_alive(holder):
            raise RunLockedError(
                f"{run_dir}: run folder is in use by process {holder} (lock file {path}); "
                f"wait for it to finish or stop it"
            )
        print(
            f"offline-mbrl: warning: {path}: taking over the stale lock of process {holder} (no longer running)",
            file=sys.stderr,
        )
        path.unlink(missing_ok=True)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


class MetricsLogger:
    """Appends one row per call to ``metrics.csv`` (and optionally TensorBoard) in ``run_dir``.

    The CSV header is fixed by the first row written; a resumed run keeps the existing file and,
    when given ``resume_after``, first drops rows whose ``key`` exceeds it (work done after the
    checkpoint that is being resumed), so the file stays continuous.
    """

    def __init__(
        self, run_dir: str | Path, tensorboard: bool = True, resume_after: int | None = None, key: str = "epoch"
    ) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fieldnames: list[str] | None = None
        if resume_after is not None and self.path.exists():
            self._truncate(resume_after, key)
        elif self.path.exists():
            self.path.unlink()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.path.parent))

    def _truncate(self, resume_after: int, key: str) -> None:
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            self.fieldnames = list(reader.fieldnames or [])
            rows = [row for row in reader if int(float(row[key])) <= resume_after]
        self._replace(rows)

    def _rewrite_header(self, fieldnames: list[str]) -> None:
        rows = []
        if self.path.exists() and self.fieldnames:
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        self.fieldnames = fieldnames
        self._replace(rows)

    def _replace(self, rows: list[dict]) -> None:
        """Replace the file by the header and ``rows`` atomically: a reader (``status``, ``tabulate``) of a running
        run never finds it empty or half-written."""
        from .persist import write_text_atomic

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.fieldnames)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.path, text.getvalue())

    def log(self, row: dict[str, float], step: int) -> None:
        """Write ``row`` (scalars) to the CSV and, if enabled, to TensorBoard at ``step``."""
        import torch

        row = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in row.items()}
        new_keys = [k for k in row if k not in (self.fieldnames or [])]
        if new_keys:  # first row, or a metric that appears later (e.g. losses after warm-up)
            self._rewrite_header((self.fieldnames or []) + new_keys)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fieldnames).writerow(row)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and "/" in k:
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
