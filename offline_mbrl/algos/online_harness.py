"""The online model-based loop: MBPO (seeds/002, Alg. 2, Appendix C Table 1) and ADMPO-ON (seeds/004, Alg. 2,
Table 4), on the phases of the offline harness (``algos.harness.OfflineTrainer``: roll-out into the model buffer,
mixed SAC batches, evaluation, divergence checks, the run folder and its resume checks).

    1  explore ``online.warmup_steps`` (U) env steps with uniform-random actions into the real buffer D_env
    2  for each epoch, for each of ``steps_per_epoch`` (E) env steps t:
    3     every ``online.model_train_freq`` env steps (first: right after the warm-up): fit the model on D_env,
          continuing from its current weights (ensemble: MBPO's per-member early stopping; ADM: Eq. 2, all k per
          pass, on m-step windows of D_env that never cross an episode end), with the sample weights of
          ``model_weights`` (uniform; PMAC seeds/000 Alg. 1; TOM seeds/001 Alg. 2, re-fitted at every fit)
    4-6   act with the current policy in the real environment; add (s, a, r, s', terminal, timeout) to D_env
    7-9   every ``rollout.rollout_freq`` env steps: ``rollout.rollout_batch_size`` branched roll-outs of
          H(t) steps (``online.rollout_schedule``) from D_env starts (ADM: m-step replay histories, Alg. 1 with
          random backtracking; ensemble: single states; drawn by the PMAC/TOM weights, PMAC Alg. 2 line 8), into
          the model buffer D_model (it keeps ``rollout.model_retain_epochs`` epochs of roll-outs, MBPO's retention;
          re-sized, newest rows kept, when H changes)
    10-12 ``online.utd_ratio`` (G) SAC updates, each on ``real_ratio`` rows of D_env and the rest from D_model
       then: deterministic evaluation, metrics (x axis ``step`` = env steps), checkpoint.

Per fit the metrics record the model's error on **fresh** real data before it sees them (ADM paper Fig. 5): the
squared error of its predictions on the transitions collected since the previous fit, i.e. by the current policy
(:func:`fresh_model_error`).

Exact resume: a checkpoint (every ``checkpoint_every`` epochs) holds SAC, the real buffer, the model buffer, the
model weights, the episode in progress (its observation and MuJoCo integration state, ``mujoco.mj_getState``),
every counter and the RNG states; a resumed run continues as if never stopped. The warm-up lies before the first
checkpoint, and model fits never span an epoch end, so no fit or warm-up is ever resumed half-way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..agents.sac import SAC
from ..buffers import TensorBuffer
from ..config import MAX_MODEL_BUFFER_ROWS, TrainConfig, to_dict
from ..data.dataset import TransitionDataset
from ..data.scores import ScoreReference, score_reference
from ..data.windows import Windows
from ..envs.gym_env import env_spaces, training_episode_seed
from ..envs.termination import termination_fn
from ..errors import CheckpointError, ConfigError, ScoreError
from ..models import DynamicsModel
from ..models.checkpoint import save_model
from ..models.fit import fit
from ..persist import derived_seed, parse_device, rng_state, seeded, set_rng_state
from ..registry import algorithm_entry
from ..runs import MetricsLogger, RunFolder, run_lock
from .harness import (
    OfflineTrainer,
    algorithm_class,
    build_dynamics,
    check_model_kind,
    check_online_source,
    fit_config,
    model_buffer,
)
from .online_sac import buffer_fields, buffer_row
from .weighting import PMACConfig, TOMConfig, TransitionTensors, initial_obs, pmac_weights, tom_weights

#: the fields of a real-buffer row that a SAC batch reads
SAC_KEYS = ("obs", "actions", "rewards", "next_obs", "terminals")
_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION


@torch.no_grad()
def fresh_model_error(model: DynamicsModel, windows: Windows, rows: Tensor) -> float:
    """Mean squared error of ``model``'s predicted means on the real transitions ``rows`` (B,) of ``windows``
    (ADM paper Fig. 5: model error on fresh data of the current policy).

    Each row is predicted as a roll-out step from it would be (``model.stepper`` over the row's real history,
    ``Stepper.predict``): ADM from every available backtrack k (the k-step prediction from real states and
    actions), the ensemble from each elite. The squared error of (next state, reward) is averaged over the D + 1
    outputs, then over all (candidate, row) pairs used. Eval mode (no dropout); the model's mode is restored.

    Args:
        model: the fitted dynamics model. windows: ``Windows`` of the model's ``window_length`` over the real data.
        rows: (B,) int64 row indices of ``windows`` (any device).

    Returns:
        The mean squared error, in the squared units of the observations and rewards.

    Raises:
        ConfigError: ``rows`` is empty.
    """
    if len(rows) == 0:
        raise ConfigError("fresh_model_error: no rows")
    was_training = model.training
    model.eval()
    try:
        rows = rows.to(windows.device)
        stepper = model.stepper(windows.history(rows))
        mean, _, available = stepper.predict(windows.obs[rows], windows.actions[rows])  # (C, B, D+1)
        target = torch.cat([windows.next_obs[rows], windows.rewards[rows, None]], dim=1)  # (B, D+1)
        errors = ((mean - target) ** 2).mean(dim=-1)  # (C, B)
        use = torch.ones_like(errors, dtype=torch.bool) if available is None else available.clone()
        sampled = stepper.sampled_candidates()
        if sampled is not None:
            use &= sampled[:, None].to(use.device)
        return float((errors * use).sum() / use.sum())
    finally:
        model.train(was_training)


#: the timed phases of an epoch, in the order of their ``time/<phase>_s`` columns
_PHASES = ("model", "rollout", "env", "sac", "eval")


@dataclass
class _EpochRecord:
    """What the env steps of one epoch accumulate for its ``metrics.csv`` row."""

    times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_PHASES, 0.0))  # seconds per phase
    sums: dict[str, Tensor | float] = field(default_factory=dict)  # SAC metrics summed over the updates
    counts: dict[str, int] = field(default_factory=dict)  # updates that reported each metric (actor_freq)
    model_stats: dict[str, list[float]] = field(default_factory=dict)  # one value per fit
    rollout_stats: dict[str, float] = field(default_factory=dict)  # of the epoch's last roll-out
    returns: list[float] = field(default_factory=list)  # of the training episodes that ended

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the wall time of the block to ``times[phase]`` (seconds)."""
        start = time.perf_counter()
        yield
        self.times[phase] += time.perf_counter() - start


class OnlineTrainer(OfflineTrainer):
    """Runs an online :class:`TrainConfig` (``registry.AlgorithmEntry.online``) in ``run_dir`` (module docstring);
    its algorithm is an :class:`algos.base.OnlineAlgorithm`.

    Args:
        config: the resolved run config; ``env_id`` names the environment, ``dataset`` must be empty.
        run_dir: the run folder; an existing ``checkpoints/last.pt`` is resumed by :meth:`train`.
        device: torch device for the model, both buffers and SAC.
        progress: show a tqdm bar over epochs.

    The constructor validates everything and writes nothing; :meth:`train` writes.

    Raises:
        ConfigError: an offline algorithm; the model kind does not match the algorithm; a ``dataset`` given; no
            ``env_id`` or one that cannot be built or has no termination function; an unusable device; a model
            buffer above ``MAX_MODEL_BUFFER_ROWS`` rows.
    """

    def __init__(
        self, config: TrainConfig, run_dir: str | Path, device: str | torch.device = "cpu", progress: bool = True
    ) -> None:
        entry = algorithm_entry(config.algo)
        if not entry.online:
            raise ConfigError(f"config: algo '{config.algo}' is offline; train it on a dataset (--dataset)")
        check_model_kind(config)
        check_online_source(config)
        self.config, self.progress, self.folder = config, progress, RunFolder(run_dir)
        self.run_dir = self.folder.path
        self.algorithm = algorithm_class(config.algo)(config)
        self.device = parse_device(str(device))
        self.env_id, self.env_kwargs = config.env_id, {}
        obs_space, self.action_space = env_spaces(self.env_id)
        self.obs_dim, self.action_dim = int(obs_space.shape[0]), int(self.action_space.shape[0])
        self.termination = termination_fn(config.task or self.env_id)
        self.dynamics_given = None  # the model is always fitted in the run
        self.dynamics_path = self.folder.dynamics_file
        self.score_ref, self.score_ref_note = self._score_reference()
        self.saved_epoch: int | None = None
        self.epochs_extended_from: list[int] = []
        if not self.algorithm.uses_model and config.real_ratio != 1.0:
            raise ConfigError(
                f"config: algo '{config.algo}' is model-free and trains on real rows only; real_ratio must be 1, "
                f"got {config.real_ratio}"
            )
        r = config.rollout
        largest = self.model_buffer_capacity(config.online.max_rollout_length(r.rollout_length))
        if largest > MAX_MODEL_BUFFER_ROWS:
            raise ConfigError(
                f"config: the model buffer would hold {largest} rows (rollout.model_retain_epochs x "
                f"ceil(steps_per_epoch / rollout.rollout_freq) x rollout.rollout_batch_size x longest H), more than "
                f"{MAX_MODEL_BUFFER_ROWS}; lower rollout.rollout_batch_size"
            )

    # ------------------------------------------------------------------ sizes and schedule
    @property
    def real_capacity(self) -> int:
        """Rows of the real buffer: every env step of the run (warm-up + epochs x steps_per_epoch)."""
        return self.config.online.warmup_steps + self.config.epochs * self.config.steps_per_epoch

    def model_buffer_capacity(self, rollout_length: int) -> int:
        """MBPO's model-buffer size for roll-outs of length H: ``model_retain_epochs`` epochs of roll-outs, i.e.
        ``retain x ceil(E / rollout_freq) x rollout_batch_size x H`` rows."""
        r = self.config.rollout
        per_epoch = math.ceil(self.config.steps_per_epoch / r.rollout_freq)
        return r.model_retain_epochs * per_epoch * r.rollout_batch_size * rollout_length

    @property
    def rollout_length(self) -> int:
        """H at the current env step (``online.rollout_schedule``, ADM Table 4 / MBPO Table 1)."""
        return self.config.online.rollout_length(self.env_step, self.config.rollout.rollout_length)

    def _score_reference(self) -> tuple[ScoreReference | None, str]:
        """Reference returns of ``config.task`` when set (then scores are normalized); otherwise none: an online
        run reports returns."""
        if not self.config.task:
            return None, "none: an online run reports returns (set task for normalized scores)"
        try:
            ref = score_reference(self.config.task)
        except ScoreError as exc:
            return None, f"none, so no normalized score ({exc})"
        return ref, ref.describe()

    # ------------------------------------------------------------------ setup and checkpoints
    def _setup(self, state: dict | None) -> None:
        """Model, SAC, environment, both buffers and the counters, restored from ``state`` when resuming."""
        cfg, space, D, A = self.config, self.action_space, self.obs_dim, self.action_dim
        self.model = build_dynamics(cfg, D, A).to(self.device)
        self.sac = SAC(D, A, cfg.sac, torch.as_tensor(space.low), torch.as_tensor(space.high), self.device)
        if cfg.online.target_entropy is not None:
            self.sac.target_entropy = float(cfg.online.target_entropy)
        self.scheduler = self.sac.actor_lr_scheduler(cfg.epochs)
        self.env = gym.make(self.env_id, **self.env_kwargs)
        self.sim = self.env.unwrapped  # stepped directly: the time limit is counted here, so it can be restored
        self.max_episode_steps = int(self.env.spec.max_episode_steps)
        mj = self.sim.model
        self.real_buffer = TensorBuffer(self.real_capacity, buffer_fields(D, A, mj.nq, mj.nv), self.device)
        self.epoch = self.step = self.env_step = self.episodes = self.episode_step = 0
        self.fits = self.fit_rows = self.rollouts = 0
        self.episode_return = 0.0
        self.fit_weights: Tensor | None = None  # TOM weights of the last fit (roll-out starts)
        self.windows, self.windows_rows = None, -1
        if state is None:
            uses_model = self.algorithm.uses_model
            self.model_buffer = self._new_model_buffer(
                self.model_buffer_capacity(self.rollout_length) if uses_model else 1
            )
            self.obs = self._reset_episode()
        else:
            self._load(state)

    def _new_model_buffer(self, capacity: int) -> TensorBuffer:
        """An empty model buffer D_model of ``capacity`` rows (``harness.model_buffer``)."""
        return model_buffer(capacity, self.obs_dim, self.action_dim, self.device)

    def _reset_episode(self) -> np.ndarray:
        """Start episode ``episodes`` (env seed ``training_episode_seed(seed, episodes)``): its first observation."""
        obs, _ = self.sim.reset(seed=training_episode_seed(self.config.seed, self.episodes))
        self.episode_step, self.episode_return = 0, 0.0
        return np.asarray(obs, dtype=np.float32)

    def _save(self) -> None:
        sim = self.sim
        integration = np.empty(mujoco.mj_stateSize(sim.model, _INTEGRATION))
        mujoco.mj_getState(sim.model, sim.data, integration, _INTEGRATION)
        state = {
            "sac": self.sac.full_state(),
            "model": self.model.state_dict(),
            "real_buffer": self.real_buffer.state_dict(),
            "model_buffer": self.model_buffer.state_dict(),
            "counters": {
                name: getattr(self, name)
                for name in ("epoch", "step", "env_step", "episodes", "episode_step", "fits", "fit_rows", "rollouts")
            },
            "episode": {
                "obs": torch.as_tensor(self.obs),
                "integration": torch.as_tensor(integration),
                "return": self.episode_return,
            },
            "fit_weights": self.fit_weights,
            "rng": rng_state(self.device),
            "config": to_dict(self.config),
            "dynamics": None,
            "epochs_extended_from": self.epochs_extended_from,
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        self.folder.save_checkpoint(state)
        if self.algorithm.uses_model:
            save_model(self.model, self.dynamics_path)  # for analyses; resuming reads the checkpoint's copy
        self.saved_epoch = self.epoch

    def _load(self, state: dict) -> None:
        try:
            self.sac.load_full_state(state["sac"])
            self.model.load_state_dict(state["model"])
            self.real_buffer.load_state_dict(state["real_buffer"])
            self.model_buffer = self._new_model_buffer(int(state["model_buffer"]["capacity"]))
            self.model_buffer.load_state_dict(state["model_buffer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            for name, value in state["counters"].items():
                setattr(self, name, int(value))
            episode = state["episode"]
            self.sim.reset(seed=training_episode_seed(self.config.seed, self.episodes))  # the episode's env RNG
            mujoco.mj_setState(self.sim.model, self.sim.data, episode["integration"].cpu().numpy(), _INTEGRATION)
            self.obs = episode["obs"].cpu().numpy()
            self.episode_return = float(episode["return"])
            self.fit_weights = state["fit_weights"]
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.checkpoint_path}: does not match this run's config ({exc})") from exc
        self.model.eval()
        self.saved_epoch = self.epoch
        set_rng_state(state["rng"], self.device)

    # ------------------------------------------------------------------ phases
    def act(self) -> np.ndarray:
        """The action for ``self.obs`` (A,): uniform in the action box during the warm-up, else a sample of the
        current policy."""
        if self.env_step < self.config.online.warmup_steps:
            low = torch.as_tensor(self.action_space.low)
            high = torch.as_tensor(self.action_space.high)
            return (low + torch.rand(self.action_dim) * (high - low)).numpy()
        obs = torch.as_tensor(self.obs, device=self.device)[None]
        return self.sac.act(obs)[0].cpu().numpy()

    def env_step_once(self) -> float | None:
        """One real environment step with :meth:`act`, stored in the real buffer (Alg. 2 lines 5-6); the return
        of the episode it ended, else None. The time limit (``spec.max_episode_steps``) is a timeout, not a
        terminal."""
        action = self.act()
        data = self.sim.data
        qpos, qvel = data.qpos.copy(), data.qvel.copy()
        next_obs, reward, terminated, _, _ = self.sim.step(action)
        self.episode_step += 1
        timeout = not terminated and self.episode_step >= self.max_episode_steps
        next_obs = np.asarray(next_obs, dtype=np.float32)
        self.real_buffer.add(
            **buffer_row(
                obs=self.obs,
                actions=action,
                rewards=np.float32(reward),
                next_obs=next_obs,
                terminals=bool(terminated),
                timeouts=timeout,
                qpos=qpos,
                qvel=qvel,
                collection_step=self.env_step,
            )
        )
        self.env_step += 1
        self.episode_return += float(reward)
        if terminated or timeout:
            finished = self.episode_return
            self.episodes += 1
            self.obs = self._reset_episode()
            return finished
        self.obs = next_obs
        return None

    def real_dataset(self) -> TransitionDataset:
        """The real buffer D_env as a dataset (collection order; an episode ends at a terminal, a timeout or the
        newest row, so model windows never cross an episode end)."""
        rows = {k: v.cpu().numpy() for k, v in self.real_buffer.ordered().items()}
        return TransitionDataset(**rows, metadata={"env_id": self.env_id}, source=f"{self.run_dir}: real buffer")

    def _real_windows(self) -> Windows:
        """Windows of m states over the current real buffer (cached until the buffer grows), roll-out starts drawn
        ∝ :meth:`rollout_start_weights`."""
        if self.windows_rows != len(self.real_buffer):
            dataset = self.real_dataset()
            weights = self.rollout_start_weights(dataset)
            self.windows = Windows(dataset, self.model.window_length, self.device, weights)
            self.windows_rows = len(self.real_buffer)
        return self.windows

    def rollout_start_weights(self, dataset: TransitionDataset) -> Tensor | None:
        """Weights (N,) float64 of the roll-out starts over the real buffer ``dataset``: None (uniform) for
        ``uniform``; PMAC's w_k of the current buffer (seeds/000 Alg. 2 line 8, "sample s_t as an initial state
        from D_e according to w_k", and Section 4 "Model Rollouts"); TOM's weights of the last fit, rows newer than
        that fit getting their mean (seeds/001 Alg. 2; before the first fit: uniform)."""
        if self.config.model_weights == "pmac":
            return self._pmac_weights(dataset)
        if self.config.model_weights == "tom" and self.fit_weights is not None:
            extra = len(dataset) - len(self.fit_weights)
            return torch.cat([self.fit_weights, self.fit_weights.mean().expand(extra)])
        return None

    def _pmac_weights(self, dataset: TransitionDataset) -> Tensor:
        """PMAC's w_k (N,) float64 over ``dataset``'s rows by their collection step (seeds/000 Alg. 1, Eq. 4)."""
        o = self.config.online
        pmac = PMACConfig(o.pmac_adaptation_rate, o.pmac_steps_per_version, o.warmup_steps)
        return torch.as_tensor(pmac_weights(dataset.collection_step, pmac))

    def model_weights(self, dataset: TransitionDataset) -> tuple[Tensor | None, dict[str, float]]:
        """Sample weights (N,) float64 on the CPU of the model fit (``model_weights``) and their metrics: None for
        ``uniform``; PMAC (seeds/000 Alg. 1, Eq. 4: each policy version's mass decays by α per newer version; the
        warm-up is version 0); TOM (seeds/001 Alg. 2 lines 3-11: discriminator between the newest
        ``tom_policy_pool`` transitions and the whole buffer, dual Q with the current policy, ξ clipped at 10),
        re-fitted for every fit."""
        o = self.config.online
        if self.config.model_weights == "uniform":
            return None, {}
        if self.config.model_weights == "pmac":
            weights = self._pmac_weights(dataset)
            return weights, {"weights/newest_epoch_mass": float(weights[-self.config.steps_per_epoch :].sum())}
        buffer = TransitionTensors.from_dataset(dataset, self.device)
        target = buffer.take(slice(max(0, len(buffer) - o.tom_policy_pool), None))
        tom = TOMConfig(disc_epochs=o.tom_disc_epochs, q_steps=o.tom_q_steps)
        result = tom_weights(
            buffer,
            target,
            initial_obs(dataset, self.device),
            self.policy,
            tom,
            seed=derived_seed(self.config.seed, self.fits, 1),
        )
        stats = {
            "weights/newest_epoch_mass": float(result.weights[-self.config.steps_per_epoch :].sum()),
            "weights/tom_disc_auroc": result.disc_auroc,
            "weights/tom_q_loss": result.q_loss,
        }
        return result.weights.double().cpu(), stats

    def train_model(self) -> dict[str, float]:
        """Fit the model on D_env (Alg. 2 line 3), first measuring its error on the rows collected since the last
        fit (:func:`fresh_model_error`); ``dynamics/``, ``model/`` and ``weights/`` metrics."""
        dataset = self.real_dataset()
        stats: dict[str, float] = {}
        if self.fits > 0 and self.fit_rows < len(dataset):
            windows = Windows(dataset, self.model.window_length, self.device)
            rows = torch.arange(self.fit_rows, len(dataset), device=self.device)
            stats["model/fresh_mse"] = fresh_model_error(self.model, windows, rows)
        weights, weight_stats = self.model_weights(dataset)
        result = fit(
            self.model,
            dataset,
            fit_config(self.config, self.model, seed=derived_seed(self.config.seed, self.fits, 0)),
            weights,
        )
        self.model.eval()
        self.fits, self.fit_rows = self.fits + 1, len(dataset)
        self.fit_weights = None if weights is None else weights.to(torch.float64)
        return (
            stats
            | weight_stats
            | {
                "dynamics/train_loss": result.history[-1]["train_loss"],
                "dynamics/holdout_mse": float(np.mean(result.holdout_errors)),
                "dynamics/fit_epochs": float(result.epochs),
            }
        )

    def rollout(self) -> dict[str, float]:
        """Branched roll-outs of H(t) steps from D_env (Alg. 2 lines 7-9) into the model buffer, re-sized first
        when H changed (MBPO keeps the newest rows); the roll-out's metrics and ``rollout/length``.

        Raises:
            DivergenceError: not one step of the roll-out was finite (``OfflineTrainer.rollout``).
        """
        capacity = self.model_buffer_capacity(self.rollout_length)
        if capacity != self.model_buffer.capacity:
            rows = self.model_buffer.ordered()
            self.model_buffer = self._new_model_buffer(capacity)
            if len(next(iter(rows.values()))):
                self.model_buffer.add(**rows)
        self.windows = self._real_windows()
        stats = super().rollout()
        self.rollouts += 1
        return stats | {"rollout/length": float(self.rollout_length)}

    def sac_batch(self) -> dict[str, Tensor]:
        """:attr:`num_real` rows of D_env followed by model-buffer rows (``sac.batch_size`` in all)."""
        real = self.real_buffer.sample(self.num_real)
        if self.num_real == self.config.sac.batch_size:  # real_ratio 1 (the model-free baseline)
            return {k: real[k] for k in SAC_KEYS}
        fake = self.model_buffer.sample(self.config.sac.batch_size - self.num_real)
        return {k: torch.cat([real[k], fake[k]]) for k in SAC_KEYS}

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = True) -> dict:
        """Run (or resume) to ``config.epochs``; returns the summary written to ``summary.json``.

        Raises:
            RunLockedError: another live process trains in ``run_dir``.
            CheckpointError: the checkpoint to resume was made with another config (nothing is written then).
            DivergenceError: a non-finite SAC loss or weight, or a model without one finite step; the last
                checkpoint stays as it was.
            DatasetError: the real buffer is too small for the model's holdout (raise ``online.warmup_steps``).
        """
        with run_lock(self.run_dir):
            state = self._read_checkpoint() if resume and self.checkpoint_path.is_file() else None
            self.folder.write_config(to_dict(self.config))
            with seeded(self.config.seed, self.device):  # the caller's random stream is kept
                self._setup(state)
                return self._loop()

    def _loop(self) -> dict:
        """Warm-up (when not done), then epochs from ``self.epoch`` to ``config.epochs`` (module docstring)."""
        cfg, o = self.config, self.config.online
        logger = MetricsLogger(self.run_dir, resume_after=self.epoch)
        while self.env_step < o.warmup_steps:  # line 1 (never checkpointed half-way)
            self.env_step_once()
        bar = tqdm(total=cfg.epochs, initial=self.epoch, desc=f"{cfg.algo}", disable=not self.progress)
        while self.epoch < cfg.epochs:
            start, record = time.perf_counter(), _EpochRecord()
            for _ in range(cfg.steps_per_epoch):
                self._env_step_phases(record)
            self._check_diverged(record.sums)
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            with record.timed("eval"):
                last = self.evaluate()
            logger.log(self._epoch_row(record, last, start), self.env_step)
            if self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs:
                self._save()
                self.write_summary()
            bar.update(1)
            bar.set_postfix(env_step=self.env_step, eval_return=f"{last['eval/return_mean']:.0f}")
        bar.close()
        logger.close()
        return self.write_summary()

    def _env_step_phases(self, record: _EpochRecord) -> None:
        """One env step of an epoch (module docstring, lines 3-12): the model fit and the roll-out when due, the
        env step, then ``online.utd_ratio`` SAC updates; their metrics and times go to ``record``."""
        o = self.config.online
        since_warmup = self.env_step - o.warmup_steps
        uses_model = self.algorithm.uses_model
        if uses_model and since_warmup % o.model_train_freq == 0:
            with record.timed("model"):
                for k, v in self.train_model().items():
                    record.model_stats.setdefault(k, []).append(v)
        if uses_model and since_warmup % self.config.rollout.rollout_freq == 0:
            with record.timed("rollout"):
                record.rollout_stats = self.rollout()
        with record.timed("env"):
            finished = self.env_step_once()
            if finished is not None:
                record.returns.append(finished)
        with record.timed("sac"):
            for _ in range(o.utd_ratio):
                self.step += 1
                update_actor = self.step % o.actor_freq == 0  # official ADMPO: after the critic count's increment
                metrics = self.algorithm.update(self.sac, self.model, self.sac_batch(), self.num_real, update_actor)
                for k, v in metrics.items():
                    record.sums[k] = record.sums.get(k, 0.0) + v
                    record.counts[k] = record.counts.get(k, 0) + 1

    def _epoch_row(self, record: _EpochRecord, last: dict[str, float], start: float) -> dict:
        """The ``metrics.csv`` row of the epoch just ended: counters, the evaluation ``last``, per-update means of
        the SAC metrics, per-fit means of the model metrics, the last roll-out's metrics, training returns, buffer
        sizes and phase times (``start``: ``perf_counter()`` at the epoch's start)."""
        return {
            "epoch": self.epoch,
            "step": self.env_step,
            "sac_step": self.step,
            **last,
            **{k: float(v) / record.counts[k] for k, v in record.sums.items()},
            **{k: float(np.mean(v)) for k, v in record.model_stats.items()},
            **record.rollout_stats,
            "train/episode_return": float(np.mean(record.returns)) if record.returns else float("nan"),
            "train/episodes": self.episodes,
            "train/actor_lr": self.sac.actor_optim.param_groups[0]["lr"],
            "model_buffer/size": len(self.model_buffer),
            "real_buffer/size": len(self.real_buffer),
            **{f"time/{k}_s": v for k, v in record.times.items()},
            "time/epoch_s": time.perf_counter() - start,
        }

    def write_summary(self) -> dict:
        """The offline summary (``OfflineTrainer.write_summary``) with ``env_steps`` (the ``step`` column of an
        online run) and ``sac_steps`` (SAC updates)."""
        summary = super().write_summary()
        final = self.folder.read_metrics().iloc[-1]
        summary |= {"online": True, "env_steps": int(final["step"]), "sac_steps": int(final["sac_step"])}
        self.folder.write_summary(summary)
        return summary
