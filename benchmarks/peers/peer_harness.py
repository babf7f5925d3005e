"""What the two peer runners share: the peer's path, our dataset in the D4RL layout, an old-gym adapter of the
gymnasium evaluation environment, and our run-folder format (``config.yaml``, ``metrics.csv``,
``summary.json``) plus a harness checkpoint for ``--resume``.

Nothing here changes a peer's algorithm: the peers' classes are imported from a fetched copy (the path in an
environment variable) and only the data, the environment and the budget are handed to them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml

from offline_mbrl.data.dataset import TransitionDataset
from offline_mbrl.data.load import load_dataset
from offline_mbrl.data.scores import normalized_score, reference_scores
from offline_mbrl.errors import RunLockedError
from offline_mbrl.persist import load_checkpoint, rng_state, save_atomic, set_rng_state
from offline_mbrl.runs import MetricsLogger, run_lock


class PeerSetupError(RuntimeError):
    """The peer's code, its config or the dataset cannot be used (the message names the variable or path)."""


# ---------------------------------------------------------------------------------------------- peer code
def peer_root(env_var: str, marker: str) -> Path:
    """The fetched peer checkout named by ``env_var``, put first on ``sys.path``.

    Raises:
        PeerSetupError: the variable is unset, or the folder does not hold ``marker`` (a file of that peer).
    """
    value = os.environ.get(env_var)
    if not value:
        raise PeerSetupError(
            f"environment variable {env_var} is not set: point it at a checkout of the peer's "
            f"repository (see benchmarks/peers/README.md)"
        )
    root = Path(value).expanduser().resolve()
    if not (root / marker).is_file():
        raise PeerSetupError(f"{env_var}={value}: no '{marker}' there; is this a checkout of the peer's repository?")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def peer_commit(root: Path) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of a git checkout (None when it is not one)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def stub_module(name: str, **attrs: Any) -> types.ModuleType:
    """Register an empty module ``name`` (with ``attrs``) in ``sys.modules``: stands in for a package the peer
    imports but the harness never calls (old gym, d4rl, neorl, setproctitle)."""
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


# ---------------------------------------------------------------------------------------------- arguments
def budget_parser(description: str, algo_epochs: int) -> argparse.ArgumentParser:
    """The runners' common flags: data, seed, the budget (equal to ours), output and resume."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="minari:offline_mbrl/hopper/medium-v0", help="our dataset spec")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, required=True, help="SAC epochs to run (budget)")
    p.add_argument("--steps-per-epoch", type=int, default=1000)
    p.add_argument("--rollout-batch-size", type=int, default=5000, help="model roll-out starts per epoch")
    p.add_argument("--model-retain-epochs", type=int, default=5)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument(
        "--lr-schedule-epochs",
        type=int,
        default=algo_epochs,
        help="period of the actor-lr cosine (the peer's full run length by default)",
    )
    p.add_argument(
        "--model-epochs-cap",
        type=int,
        default=None,
        help="stop the model fit after this many epochs (smoke tests only; default: the peer's rule)",
    )
    p.add_argument(
        "--peer-config",
        default=None,
        help="the peer's D4RL task whose settings to use (default: from the dataset id, e.g. hopper-medium)",
    )
    p.add_argument(
        "--dynamics-from",
        type=Path,
        default=None,
        help="a run folder of the same peer and dataset whose fitted model this run uses instead of fitting its own "
        "(as our result runs share one model fit per dataset across seeds)",
    )
    p.add_argument("--out", required=True, type=Path, help="run folder to write")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/harness.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    return p


def run_main(main: Callable[[argparse.Namespace], None], description: str, full_epochs: int) -> None:
    """A runner's entry point: parse and check the flags (:func:`budget_parser`), then run ``main(args)`` holding
    the run folder's lock (``offline_mbrl.runs.run_lock``: ``offline-mbrl status`` shows the run as running, and a
    second process on the same folder is refused before it touches anything). Setup errors exit with their message.
    """
    try:
        args = budget_parser(description, full_epochs).parse_args()
        check_budget(args)
        args.out = args.out.resolve()
        torch.set_num_threads(args.threads)
        with run_lock(args.out):
            main(args)
    except (PeerSetupError, RunLockedError) as exc:
        sys.exit(f"error: {exc}")


def check_budget(args: argparse.Namespace) -> None:
    """Reject budgets the peers' loops cannot honour (roll-outs happen once per 1000 steps in both)."""
    for name in (
        "epochs",
        "steps_per_epoch",
        "rollout_batch_size",
        "model_retain_epochs",
        "eval_episodes",
        "lr_schedule_epochs",
    ):
        if getattr(args, name) < 1:
            raise PeerSetupError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


def peer_task(dataset: TransitionDataset, override: str | None) -> str:
    """The D4RL-style task (``hopper-medium``) whose peer settings apply: ``--peer-config``, else the dataset id's
    environment and kind (``offline_mbrl/hopper/medium-v0`` -> ``hopper-medium``)."""
    if override:
        return override
    dataset_id = str(dataset.metadata.get("dataset_id") or "")
    parts = dataset_id.split("/")
    if len(parts) != 3:
        raise PeerSetupError(
            f"{dataset.source}: cannot tell the task from dataset id '{dataset_id}'; "
            f"pass --peer-config (e.g. hopper-medium)"
        )
    return f"{parts[1]}-{parts[2].rsplit('-v', 1)[0]}"


# ---------------------------------------------------------------------------------------------- data and env
def d4rl_layout(dataset: TransitionDataset) -> dict[str, np.ndarray]:
    """Our dataset as the raw D4RL ``get_dataset()`` dict (with ``next_observations`` and ``timeouts``)."""
    return {
        "observations": dataset.obs,
        "actions": dataset.actions,
        "rewards": dataset.rewards,
        "next_observations": dataset.next_obs,
        "terminals": dataset.terminals,
        "timeouts": dataset.timeouts,
    }


class OldGymEnv:
    """A gymnasium environment behind the old gym API the peers call: ``reset()`` returns the observation,
    ``step`` returns ``(obs, reward, done, info)`` with ``done = terminated or truncated``, plus D4RL's
    ``get_dataset()`` (our dataset) and ``get_normalized_score`` (our dataset's reference returns, 0-1 scale).
    """

    def __init__(self, env_id: str, dataset: TransitionDataset, env_kwargs: dict | None = None) -> None:
        self.env = gym.make(env_id, **(env_kwargs or {}))
        self.dataset = dataset
        self.observation_space = self.env.observation_space
        self.action_space = self.env.action_space
        self._max_episode_steps = self.env.spec.max_episode_steps

    def reset(self, seed: int | None = None, **_: Any) -> np.ndarray:
        """Start an episode; returns the observation only (old gym)."""
        return self.env.reset(seed=seed)[0]

    def seed(self, seed: int) -> None:
        """Old gym ``env.seed``: seeds the next reset's RNG."""
        self.env.reset(seed=seed)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict]:
        """One step; ``done`` is terminated or truncated (old gym with its TimeLimit wrapper)."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward), bool(terminated or truncated), info

    def get_dataset(self, **_: Any) -> dict[str, np.ndarray]:
        """Our dataset in the raw D4RL layout."""
        return d4rl_layout(self.dataset)

    def get_normalized_score(self, value: float) -> float:
        """D4RL's 0-1 normalized score with our dataset's reference returns."""
        return float(normalized_score(self.dataset, value)) / 100.0

    def rng_state(self) -> str:
        """The environment's reset RNG state as a JSON string (for the harness checkpoint)."""
        return json.dumps(self.env.unwrapped.np_random.bit_generator.state)

    def set_rng_state(self, state: str) -> None:
        """Inverse of :meth:`rng_state`."""
        self.env.unwrapped.np_random.bit_generator.state = json.loads(state)


def load_peer_dataset(spec: str) -> tuple[TransitionDataset, str, dict]:
    """Our dataset, its environment id and env kwargs.

    Raises:
        PeerSetupError: the dataset names no environment or has no score reference.
    """
    dataset = load_dataset(spec)
    env_id = dataset.metadata.get("env_id")
    if not env_id:
        raise PeerSetupError(f"{dataset.source}: the dataset names no environment (metadata 'env_id')")
    reference_scores(dataset)  # fails early with a ScoreError naming the dataset
    return dataset, env_id, dataset.metadata.get("env_kwargs") or {}


# ---------------------------------------------------------------------------------------------- run folder
def yaml_safe(value: Any) -> Any:
    """``value`` with everything YAML cannot dump safely turned into plain types or strings."""
    if isinstance(value, dict):
        return {str(k): yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [yaml_safe(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass
class EpochClock:
    """Seconds spent per phase within one epoch (roll-outs, evaluation; SAC is the rest)."""

    start: float = field(default_factory=time.perf_counter)
    rollout: float = 0.0
    evaluation: float = 0.0


class RunFolder:
    """Writes a peer run in our run-folder format and holds the harness checkpoint for ``--resume``."""

    def __init__(
        self, args: argparse.Namespace, algo: str, dataset: TransitionDataset, env_id: str, env_kwargs: dict
    ) -> None:
        self.args, self.algo, self.dataset = args, algo, dataset
        self.env_id, self.env_kwargs = env_id, env_kwargs
        self.path: Path = args.out
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.path / "checkpoints" / "harness.pt"
        self.fit_checkpoint_path = self.path / "checkpoints" / "fit.pt"
        self.fitted_model_path = self.path / "checkpoints" / "fitted_model.pt"
        self.epoch, self.clock, self.extra = 0, EpochClock(), {}
        self.logger: MetricsLogger | None = None
        self.shared_fit: dict | None = None  # --dynamics-from: see load_shared_fit

    def timed(self, fn, phase: str):
        """``fn`` wrapped so that its wall time is added to the current epoch's ``phase`` (rollout, evaluation)."""

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(self.clock, phase, getattr(self.clock, phase) + time.perf_counter() - t)

        return wrapper

    @property
    def peer_dir(self) -> Path:
        """Where the peer's own outputs (its logs, records, model files) go."""
        return self.path / "peer_output"

    def write_config(self, peer: dict, settings: dict, departures: list[str]) -> None:
        """``config.yaml``: our keys (algo, dataset, task, seed, epochs, ...) plus the peer and all its settings."""
        a = self.args
        config = {
            "algo": self.algo,
            "dataset": a.dataset,
            "task": None,
            "seed": a.seed,
            "epochs": a.epochs,
            "steps_per_epoch": a.steps_per_epoch,
            "eval_episodes": a.eval_episodes,
            "env_id": self.env_id,
            "budget": {
                "epochs": a.epochs,
                "steps_per_epoch": a.steps_per_epoch,
                "rollout_batch_size": a.rollout_batch_size,
                "model_retain_epochs": a.model_retain_epochs,
                "eval_episodes": a.eval_episodes,
                "lr_schedule_epochs": a.lr_schedule_epochs,
                "model_epochs_cap": a.model_epochs_cap,
            },
            "peer": peer,
            "peer_settings": settings,
            "departures": departures,
            "score_reference": list(reference_scores(self.dataset)),
        }
        (self.path / "config.yaml").write_text(yaml.safe_dump(yaml_safe(config), sort_keys=False))

    def open_metrics(self) -> None:
        """Start ``metrics.csv`` (a resumed run keeps the rows up to its checkpoint's epoch)."""
        self.logger = MetricsLogger(self.path, tensorboard=False, resume_after=self.epoch or None)
        self.clock = EpochClock()

    def restart_clock(self) -> None:
        """Start timing the current epoch afresh (after the model fit, which is not part of an epoch)."""
        self.clock = EpochClock()

    def log_epoch(self, returns: list[float], train: dict[str, float]) -> dict[str, float]:
        """Append one ``metrics.csv`` row for the epoch just evaluated (scores normalized per episode)."""
        self.epoch += 1
        returns = np.asarray(returns, dtype=np.float64)
        scores = normalized_score(self.dataset, returns)
        clock = self.clock
        epoch_s = time.perf_counter() - clock.start
        row = {
            "epoch": self.epoch,
            "step": self.epoch * self.args.steps_per_epoch,
            "eval/return_mean": float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "eval/normalized_score": float(scores.mean()),
            "eval/normalized_score_std": float(scores.std()),
            **train,
            "time/rollout_s": clock.rollout,
            "time/eval_s": clock.evaluation,
            "time/sac_s": epoch_s - clock.rollout - clock.evaluation,
            "time/epoch_s": epoch_s,
        }
        self.logger.log(row, row["step"])
        print(
            f"[{self.algo} seed {self.args.seed}] epoch {self.epoch}/{self.args.epochs} "
            f"score {row['eval/normalized_score']:.1f} return {row['eval/return_mean']:.0f} "
            f"(sac {row['time/sac_s']:.1f}s rollout {clock.rollout:.1f}s eval {clock.evaluation:.1f}s)",
            flush=True,
        )
        self.clock = EpochClock()
        return row

    def write_summary(self) -> dict:
        """``summary.json`` from ``metrics.csv`` (final = last evaluation), in our keys."""
        import pandas as pd

        metrics = pd.read_csv(self.path / "metrics.csv")
        final = metrics.iloc[-1]
        summary = {
            "algo": self.algo,
            "dataset": self.args.dataset,
            "seed": self.args.seed,
            "env_id": self.env_id,
            "epochs_completed": int(final["epoch"]),
            "epochs_total": self.args.epochs,
            "finished": int(final["epoch"]) >= self.args.epochs,
            "final_return": float(final["eval/return_mean"]),
            "final_normalized_score": float(final["eval/normalized_score"]),
            "sac_steps": int(final["step"]),
            "env_kwargs": self.env_kwargs,
            "score_reference": list(reference_scores(self.dataset)),
            **self.extra,
        }
        (self.path / "summary.json").write_text(json.dumps(yaml_safe(summary), indent=2))
        return summary

    # ------------------------------------------------------------------ harness checkpoint
    def save_checkpoint(self, state: dict) -> None:
        """Save ``state`` (tensors, state dicts, plain values) with the epoch and all RNG states."""
        save_atomic(
            {**state, "epoch": self.epoch, "rng": rng_state(self.args.device), "extra": self.extra},
            self.checkpoint_path,
        )

    def load_checkpoint(self) -> dict | None:
        """The checkpoint to resume from (None when not resuming or none exists); restores epoch and RNGs last
        via :meth:`restore_rng`, which the caller runs after rebuilding its objects."""
        if not self.args.resume:
            for stale in (self.peer_dir, self.checkpoint_path.parent):  # a fresh start: drop a previous attempt's files
                shutil.rmtree(stale, ignore_errors=True)
            (self.path / "summary.json").unlink(missing_ok=True)
            return None
        if not self.checkpoint_path.is_file():  # stopped before its first policy epoch: see load_fit_checkpoint
            return None
        state = load_checkpoint(self.checkpoint_path, self.args.device)
        self.epoch, self.extra = int(state["epoch"]), dict(state.get("extra") or {})
        return state

    def save_fit_checkpoint(self, state: dict) -> None:
        """Save the peer's model-fit state at the start of a fit epoch (plain values and state dicts) with all RNG
        states, so that a run stopped during its model fit continues the fit with ``--resume``."""
        save_atomic({**state, "rng": rng_state(self.args.device)}, self.fit_checkpoint_path)

    def load_fit_checkpoint(self) -> dict | None:
        """The model-fit checkpoint to continue from: only when resuming, no policy epoch has been checkpointed yet
        (a harness checkpoint holds the fitted model) and one exists; None otherwise."""
        if not self.args.resume or self.checkpoint_path.is_file() or not self.fit_checkpoint_path.is_file():
            return None
        return load_checkpoint(self.fit_checkpoint_path, self.args.device)

    def save_fitted_model(self, dynamics: dict | None) -> None:
        """Record the finished model fit (``extra``: holdout loss, epochs, seconds) and, for a peer whose model files
        are not in its own output, the model's state dict, for runs that share it (``--dynamics-from``)."""
        save_atomic({"extra": dict(self.extra), "dynamics": dynamics}, self.fitted_model_path)

    def load_shared_fit(self) -> None:
        """With ``--dynamics-from``, read that run's fitted model (as :meth:`save_fitted_model` wrote it) into
        ``shared_fit`` and its fit record into this run's ``extra`` with ``model_from``; call before any work.

        Raises:
            PeerSetupError: the folder is not a run of this peer on this dataset, or its fit has not ended.
        """
        if self.args.dynamics_from is None:
            return
        source = self.args.dynamics_from.resolve()
        config_path = source / "config.yaml"
        if not config_path.is_file():
            raise PeerSetupError(f"--dynamics-from {source}: no config.yaml; not a peer run folder")
        config = yaml.safe_load(config_path.read_text())
        for key, ours in (("algo", self.algo), ("dataset", self.args.dataset)):
            if config.get(key) != ours:
                raise PeerSetupError(
                    f"--dynamics-from {config_path}: {key} is {config.get(key)!r}, this run's {ours!r}"
                )
        fitted = source / "checkpoints" / "fitted_model.pt"
        if not fitted.is_file():
            raise PeerSetupError(f"--dynamics-from {source}: {fitted.name} missing: its model fit has not ended yet")
        self.shared_fit = load_checkpoint(fitted, self.args.device)
        self.extra.update(self.shared_fit["extra"], model_from=str(source))

    def warn_rollout_phase(self, rollout_freq: int) -> None:
        """The peers' loops count steps from 0 on every start, so a resumed run rolls out at its first step: that
        matches an uninterrupted run only when the steps done so far are a multiple of ``rollout_freq``."""
        done = self.epoch * self.args.steps_per_epoch
        if done % rollout_freq:
            print(
                f"warning: resuming after {done} SAC steps, not a multiple of the roll-out period {rollout_freq}: "
                f"the resumed run's roll-outs fall on other steps than an uninterrupted run's",
                flush=True,
            )

    def restore_rng(self, state: dict) -> None:
        """Restore the RNG states saved with the checkpoint (call last, after every object is rebuilt)."""
        set_rng_state(state["rng"], self.args.device)


def buffer_state(buffer: Any, arrays: list[str], counters: list[str]) -> dict:
    """A numpy replay buffer's arrays (as tensors) and integer counters, by attribute name or ``memory`` key."""

    def get(name: str) -> np.ndarray:
        return buffer.memory[name] if hasattr(buffer, "memory") else getattr(buffer, name)

    return {
        "arrays": {n: torch.from_numpy(np.ascontiguousarray(get(n))) for n in arrays},
        "counters": {n: int(getattr(buffer, n)) for n in counters},
    }


def load_buffer_state(buffer: Any, state: dict) -> None:
    """Inverse of :func:`buffer_state` (arrays are copied into the buffer's own storage)."""
    for name, tensor in state["arrays"].items():
        target = buffer.memory[name] if hasattr(buffer, "memory") else getattr(buffer, name)
        target[...] = tensor.numpy()
    for name, value in state["counters"].items():
        setattr(buffer, name, value)
