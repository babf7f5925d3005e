"""Online SAC on a gymnasium MuJoCo environment: the data source of D4RL-style collection (:class:`OnlineSACTrainer`)
and the model-free baseline of the online comparison (:class:`OnlineSAC`, ``train --algo sac``: the online harness
with real rows only, ADM paper Fig. 3's SAC curve).

Recipe (SAC, Haarnoja et al. 2018; D4RL's data-generating agent): ``warmup_steps`` uniform-random
actions, then one SAC update per environment step; every ``eval_every`` steps a deterministic
evaluation, whose actor is kept as a snapshot (the ``medium`` policy is the first snapshot that
reaches its target). Every row of the replay buffer records the simulator state before the action
and its collection step. Checkpoints (SAC, optimizers, replay buffer, RNG, counters) are written
atomically at the first episode end after every ``checkpoint_every`` steps, so a resumed run
continues from a whole episode; the CSV log is truncated back to the checkpoint on resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from torch import Tensor
from tqdm import tqdm

from ..agents.sac import SAC, SACConfig
from ..buffers import TensorBuffer
from ..checks import check_section
from ..envs.gym_env import env_spaces, evaluate_policy, training_episode_seed
from ..errors import CheckpointError, ConfigError
from ..persist import load_checkpoint, rng_state, save_atomic, seeded, set_rng_state
from ..runs import MetricsLogger, run_lock
from .base import OnlineAlgorithm


class OnlineSAC(OnlineAlgorithm):
    """Model-free SAC (Haarnoja et al. 2018) on the online harness (``algos.online_harness``): the same warm-up, env
    loop, evaluation, run folder and resume as MBPO/ADMPO-ON, with ``online.utd_ratio`` updates per env step on
    real rows only (``real_ratio`` 1; no model fit, no roll-out)."""

    uses_model = False


@dataclass(frozen=True)
class OnlineSACConfig:
    """Online SAC training budget and schedule (steps are environment steps = SAC updates).

    Attributes:
        env_id: a gymnasium MuJoCo id (the buffer records ``qpos``/``qvel``).
        total_steps: environment steps of the run (>= 1); also the replay-buffer capacity.
        warmup_steps: uniform-random actions before the first SAC update (>= 0).
        eval_every: environment steps between deterministic evaluations and actor snapshots (>= 1).
        eval_episodes: episodes per evaluation (>= 1).
        checkpoint_every: a checkpoint at the first episode end after every this many steps (>= 1).
        seed: seeds the scope's torch RNG, the warm-up actions and the episode resets (>= 0).
        sac: the agent (D4RL's data-generating SAC: 128 x 128, learned temperature, no lr schedule).

    Raises:
        ConfigError: a value below its bound, or a non-finite float (the message names the key).
    """

    env_id: str = "Hopper-v5"
    total_steps: int = 300_000
    warmup_steps: int = 5_000
    eval_every: int = 5_000
    eval_episodes: int = 10
    checkpoint_every: int = 20_000
    seed: int = 0
    sac: SACConfig = field(
        default_factory=lambda: SACConfig(
            hidden_dims=(128, 128), actor_lr=3e-4, alpha_lr=3e-4, alpha=1.0, auto_alpha=True, lr_schedule=False
        )
    )

    def __post_init__(self) -> None:
        check_section(
            self,
            "",
            at_least={
                "total_steps": 1,
                "warmup_steps": 0,
                "eval_every": 1,
                "eval_episodes": 1,
                "checkpoint_every": 1,
                "seed": 0,
            },
        )


def buffer_fields(obs_dim: int, action_dim: int, nq: int, nv: int) -> dict:
    """Replay-buffer fields of one collected transition (D4RL layout + simulator state + step), as
    ``TensorBuffer`` ``{name: (per-row shape, dtype)}``: obs and next_obs (D,), actions (A,), rewards (), terminals
    and timeouts () bool, ``qpos`` (nq,) and ``qvel`` (nv,) before the action, ``collection_step`` () int64."""
    f32, b = torch.float32, torch.bool
    return {
        "obs": ((obs_dim,), f32),
        "actions": ((action_dim,), f32),
        "rewards": ((), f32),
        "next_obs": ((obs_dim,), f32),
        "terminals": ((), b),
        "timeouts": ((), b),
        "qpos": ((nq,), f32),
        "qvel": ((nv,), f32),
        "collection_step": ((), torch.int64),
    }


def buffer_row(**values: object) -> dict[str, Tensor]:
    """One transition's values (arrays, numbers, bools; the fields of :func:`buffer_fields`) as (1, ...) tensors for
    ``TensorBuffer.add``, which casts them to the buffer's dtypes."""
    return {k: torch.as_tensor(np.asarray(v))[None] for k, v in values.items()}


class OnlineSACTrainer:
    """Trains SAC online and writes ``run_dir/{metrics.csv, checkpoint.pt, snapshots/actor_<step>.pt}``.

    ``metrics.csv`` has one row per evaluation: ``step``, ``eval/return_mean``, ``eval/return_std``,
    the latest training losses, ``time/episodes``. Call :meth:`train` (resumes from
    ``checkpoint.pt`` when ``resume`` and it exists).

    Args:
        config: budget, schedule and agent. run_dir: the run folder (nothing is written before :meth:`train`).
        device: torch device of SAC and the replay buffer. progress: show a tqdm bar over env steps.

    Raises:
        ConfigError: ``config.env_id`` cannot be built, has non-Box spaces or is not a MuJoCo environment.
    """

    def __init__(
        self, config: OnlineSACConfig, run_dir: str | Path, device: str = "cpu", progress: bool = True
    ) -> None:
        env_spaces(config.env_id)  # a named ConfigError for an unknown id or non-vector spaces
        self.config, self.run_dir, self.device, self.progress = config, Path(run_dir), torch.device(device), progress
        self.env = gym.make(config.env_id)
        if not isinstance(self.env.unwrapped, MujocoEnv):
            raise ConfigError(
                f"OnlineSACConfig: env_id '{config.env_id}' is not a MuJoCo environment (the buffer records qpos, qvel)"
            )
        obs_dim = self.env.observation_space.shape[0]
        space = self.env.action_space
        model = self.env.unwrapped.model
        self.sac = SAC(
            obs_dim,
            space.shape[0],
            config.sac,
            torch.as_tensor(space.low),
            torch.as_tensor(space.high),
            device=self.device,
        )
        self.buffer = TensorBuffer(
            config.total_steps, buffer_fields(obs_dim, space.shape[0], model.nq, model.nv), self.device
        )
        self.step = 0
        self.episodes = 0
        self.rng = np.random.default_rng(config.seed)

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path:
        """``run_dir/checkpoint.pt``."""
        return self.run_dir / "checkpoint.pt"

    def save(self) -> None:
        """Write SAC (with optimizers), the replay buffer, the counters, the RNG states and the config atomically."""
        save_atomic(
            {
                "sac": self.sac.full_state(),
                "buffer": self.buffer.state_dict(),
                "step": self.step,
                "episodes": self.episodes,
                "rng": rng_state(self.device),
                "config": asdict(self.config),
            },
            self.checkpoint_path,
        )

    def load(self) -> None:
        """Restore :meth:`save`'s state; the next episode starts fresh (:meth:`_close_interrupted_episode`) and the
        warm-up action stream is re-seeded from ``(seed, step)``.

        Raises:
            CheckpointError: the checkpoint cannot be read or does not fit this trainer's agent or buffer.
        """
        state = load_checkpoint(self.checkpoint_path, self.device)
        try:
            self.sac.load_full_state(state["sac"])
            self.buffer.load_state_dict(state["buffer"])
            self.step, self.episodes = int(state["step"]), int(state["episodes"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.checkpoint_path}: does not match this run's config ({exc})") from exc
        self._close_interrupted_episode()
        set_rng_state(state["rng"], self.device)
        self.rng = np.random.default_rng([self.config.seed, self.step])

    def _close_interrupted_episode(self) -> None:
        """A checkpoint taken mid-episode (the end of a budget) is resumed with a fresh episode: its last row
        is flagged ``timeout`` (the stop acted as a time limit), so episodes never merge in the buffer."""
        last = (self.buffer.ptr - 1) % self.buffer.capacity
        store = self.buffer.storage
        if self.buffer.size and not (store["terminals"][last] or store["timeouts"][last]):
            store["timeouts"][last] = True

    # ------------------------------------------------------------------ loop
    def _action(self, obs: np.ndarray) -> np.ndarray:
        if self.step < self.config.warmup_steps:
            space = self.env.action_space
            return self.rng.uniform(space.low, space.high).astype(np.float32)
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        return self.sac.act(obs_t)[0].cpu().numpy()

    def _evaluate(self, logger: MetricsLogger, last_metrics: dict) -> float:
        returns = evaluate_policy(
            lambda o: self.sac.act(o, deterministic=True),
            self.config.env_id,
            self.config.eval_episodes,
            seed=10_000 + self.step,
            device=self.device,
        )
        save_atomic(self.sac.actor.file_state(), self.run_dir / "snapshots" / f"actor_{self.step:08d}.pt")
        logger.log(
            {
                "step": self.step,
                "eval/return_mean": float(returns.mean()),
                "eval/return_std": float(returns.std()),
                "time/episodes": self.episodes,
                **{k: float(v) for k, v in last_metrics.items()},
            },
            self.step,
        )
        return float(returns.mean())

    def train(self, resume: bool = True) -> None:
        """Run until ``total_steps`` environment steps; resumable at episode boundaries.

        Raises:
            RunLockedError: another live process trains in ``run_dir``.
        """
        with run_lock(self.run_dir), seeded(self.config.seed, self.device):  # the caller's random stream is kept
            self._train(resume)

    def _train(self, resume: bool) -> None:
        cfg = self.config
        resumed = resume and self.checkpoint_path.exists()
        if resumed:
            self.load()
        logger = MetricsLogger(self.run_dir, tensorboard=False, resume_after=self.step if resumed else None, key="step")
        obs = self.env.reset(seed=training_episode_seed(cfg.seed, self.episodes))[0]
        next_checkpoint = (self.step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
        metrics: dict = {}
        unwrapped = self.env.unwrapped
        bar = tqdm(total=cfg.total_steps, initial=self.step, disable=not self.progress, desc=cfg.env_id)
        while self.step < cfg.total_steps:
            action = self._action(obs)
            qpos, qvel = unwrapped.data.qpos.copy(), unwrapped.data.qvel.copy()
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            self.buffer.add(
                **buffer_row(
                    obs=obs,
                    actions=action,
                    rewards=np.float32(reward),
                    next_obs=next_obs,
                    terminals=terminated,
                    timeouts=truncated and not terminated,
                    qpos=qpos,
                    qvel=qvel,
                    collection_step=self.step,
                )
            )
            self.step += 1
            if self.step > cfg.warmup_steps:
                metrics = self.sac.update(self.buffer.sample(cfg.sac.batch_size))
            obs = next_obs
            if self.step % cfg.eval_every == 0:
                bar.set_postfix(eval_return=f"{self._evaluate(logger, metrics):.0f}")
            if terminated or truncated:
                self.episodes += 1
                obs = self.env.reset(seed=training_episode_seed(cfg.seed, self.episodes))[0]
                if self.step >= next_checkpoint:
                    self.save()
                    next_checkpoint = (self.step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
            bar.update(1)
        bar.close()
        self.save()
        logger.close()
