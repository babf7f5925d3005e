"""Offline model-based policy optimization: ADMPO-OFF (ADM paper Alg. 3) and MOPO, one loop.

    1  fit the dynamics model on the dataset (or load one made by `offline-mbrl model fit`)
    2  for each epoch, for each of ``steps_per_epoch`` SAC steps:
    3-7   every ``rollout_freq`` steps: sample ``rollout_batch_size`` starts from the dataset (ADM:
          history windows, Alg. 3 line 4; ensemble: single states), roll out H steps with the current
          policy (Alg. 1 / MOPO), penalize ``r~ = r - beta * U`` (Eq. 8) and add to the model buffer
          (it keeps ``model_retain_epochs`` roll-outs, FIFO)
    9-11  one SAC update on a batch of ``real_ratio`` dataset rows + model rows
       then: cosine step of the actor lr, deterministic evaluation in the real environment, metrics,
       checkpoint.

ADMPO-OFF and MOPO differ only in the model, the start sampling and the quantifier (config).
The run folder (DESIGN section 7) holds ``config.yaml``, ``metrics.csv``, TensorBoard events,
``dynamics.pt``, ``checkpoints/last.pt`` (everything needed to resume: SAC with its optimizers and
schedule, model buffer, counters, RNG states) and ``summary.json``.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from ..agents.sac import SAC, SACConfig
from ..buffers import TensorBuffer
from ..config import TrainConfig, to_dict
from ..data.dataset import TransitionDataset
from ..data.scores import ScoreReference, normalized_score, score_reference
from ..data.windows import Windows
from ..envs.gym_env import evaluate_policy
from ..envs.termination import termination_fn
from ..errors import CheckpointError, ConfigError, ScoreError
from ..models import build_model
from ..models.checkpoint import load_model, save_model
from ..models.fit import FitConfig, fit
from ..rollout import rollout_adm, rollout_ensemble
from ..runs import MetricsLogger, load_checkpoint, rng_state, save_atomic, set_rng_state
from ..uncertainty import break_even_coef

MODEL_FOR_ALGO = {"admpo-off": "adm", "mopo": "ensemble"}


def build_dynamics(config: TrainConfig, obs_dim: int, action_dim: int) -> torch.nn.Module:
    """A fresh ADM or probabilistic ensemble sized by ``config.dynamics`` (``models.build_model``)."""
    d = config.dynamics
    if d.model == "adm":
        return build_model("adm", obs_dim, action_dim, max_backtrack=d.max_backtrack, hidden_dim=d.hidden_dim,
                           gru_layers=d.gru_layers, head_blocks=d.head_blocks, dropout=d.dropout,
                           rollout_dropout=d.rollout_dropout)
    if d.model == "ensemble":
        return build_model("ensemble", obs_dim, action_dim, ensemble_size=d.ensemble_size, num_elites=d.num_elites,
                           hidden_dims=d.ensemble_hidden_dims, weight_decays=d.ensemble_weight_decays)
    raise ConfigError(f"config: key 'dynamics.model' must be 'adm' or 'ensemble', got {d.model!r}")


def fit_dynamics(config: TrainConfig, dataset: TransitionDataset, device: torch.device,
                 progress: bool = False) -> torch.nn.Module:
    """Build and fit the dynamics model of ``config`` on ``dataset`` (Alg. 3 line 1)."""
    model = build_dynamics(config, dataset.obs_dim, dataset.action_dim).to(device)
    d = config.dynamics
    overrides = {"max_epochs": d.max_epochs, "holdout_split": d.holdout_split, "batch_size": d.batch_size,
                 "seed": config.seed}
    if d.learning_rate is not None:
        overrides["learning_rate"] = d.learning_rate
    fit(model, dataset, FitConfig.for_model(model, **overrides), progress=progress)
    return model


@dataclass
class EpochTimes:
    """Wall seconds of one epoch, split by phase."""

    rollout: float = 0.0
    sac: float = 0.0
    evaluation: float = 0.0


class OfflineTrainer:
    """Runs :class:`TrainConfig` in ``run_dir`` (see the module docstring).

    Args:
        config: the resolved run config (``config.dataset`` names the data; ``dataset`` may pass it in).
        run_dir: the run folder; an existing ``checkpoints/last.pt`` is resumed by :meth:`train`.
        dataset: the loaded dataset (default: ``load_dataset(config.dataset)``).
        dynamics: path of a model saved by ``offline-mbrl model fit`` (skips fitting).
        device: torch device for models, buffers and SAC.

    Raises:
        ConfigError: the model kind does not match the algorithm, or the loaded dynamics do not fit the data.
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, dataset: TransitionDataset | None = None,
                 dynamics: str | Path | None = None, device: str | torch.device = "cpu", progress: bool = True) -> None:
        from ..data.load import load_dataset

        if config.dynamics.model != MODEL_FOR_ALGO[config.algo]:
            raise ConfigError(f"config: algo '{config.algo}' needs dynamics.model '{MODEL_FOR_ALGO[config.algo]}', "
                              f"got '{config.dynamics.model}'")
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        self.device = torch.device(device)
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset)
        self.env_id = config.env_id or self.dataset.metadata.get("env_id")
        if not self.env_id:
            raise ConfigError(f"{self.dataset.source}: the dataset names no environment; set env_id (--env)")
        self.env_kwargs = self.dataset.metadata.get("env_kwargs") or {}
        self.dynamics_path = Path(dynamics) if dynamics else self.run_dir / "dynamics.pt"
        self.termination = termination_fn(config.task or self.dataset.metadata.get("task") or self.env_id)
        self.score_ref, self.score_ref_note = self._score_reference()

    # ------------------------------------------------------------------ setup
    def _score_reference(self) -> tuple[ScoreReference | None, str]:
        """The reference returns that normalize scores (of ``config.task``, else of the dataset) and a line
        saying where they come from; ``(None, why)`` when there are none, and then no score is normalized."""
        try:
            ref = score_reference(self.config.task or self.dataset)
        except ScoreError as exc:
            return None, f"none, so no normalized score ({exc})"
        return ref, ref.describe()

    def _setup(self, resume: bool) -> None:
        torch.manual_seed(self.config.seed)
        np.random.seed(self.config.seed)
        if self.dynamics_path.is_file():
            self.model = load_model(self.dynamics_path, self.device)
        else:
            self.model = fit_dynamics(self.config, self.dataset, self.device, self.progress)
            save_model(self.model, self.dynamics_path)
        self.model.eval()
        torch.manual_seed(self.config.seed + 1)  # the policy phase starts the same whether the model was fitted or loaded
        if self.model.kind != self.config.dynamics.model:
            raise ConfigError(f"{self.dynamics_path}: holds a '{self.model.kind}' model, the config needs "
                              f"'{self.config.dynamics.model}'")
        m = self.model.config.max_backtrack if self.model.kind == "adm" else 1
        self.windows = Windows(self.dataset, m, self.device)
        cfg, space = self.config, _action_space(self.env_id, self.env_kwargs)
        self.sac = SAC(self.dataset.obs_dim, self.dataset.action_dim,
                       SACConfig(cfg.sac.hidden_dims, cfg.sac.actor_lr, cfg.sac.critic_lr, cfg.sac.alpha_lr,
                                 cfg.sac.gamma, cfg.sac.tau, cfg.sac.alpha, cfg.sac.auto_alpha),
                       torch.as_tensor(space.low), torch.as_tensor(space.high), self.device)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.sac.actor_optim,
                                                                     cfg.sac.lr_schedule_epochs or cfg.epochs)
                          if cfg.sac.lr_schedule else None)
        r = cfg.rollout
        capacity = r.rollout_batch_size * r.rollout_length * r.model_retain_epochs
        f32, D, A = torch.float32, self.dataset.obs_dim, self.dataset.action_dim
        self.model_buffer = TensorBuffer(capacity, {"obs": ((D,), f32), "actions": ((A,), f32), "rewards": ((), f32),
                                                    "next_obs": ((D,), f32), "terminals": ((), torch.bool)},
                                         self.device)
        self.epoch, self.step = 0, 0
        if resume and self.checkpoint_path.is_file():
            self._load()

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.pt"

    def _save(self) -> None:
        state = {"sac": self.sac.full_state(), "model_buffer": self.model_buffer.state_dict(),
                 "epoch": self.epoch, "step": self.step, "rng": rng_state(self.device)}
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        save_atomic(state, self.checkpoint_path)

    def _load(self) -> None:
        state = load_checkpoint(self.checkpoint_path, self.device)
        try:
            self.sac.load_full_state(state["sac"])
            self.model_buffer.load_state_dict(state["model_buffer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{self.checkpoint_path}: does not match this run's config ({exc})") from exc
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        set_rng_state(state["rng"], self.device)

    # ------------------------------------------------------------------ phases
    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The current stochastic policy, for roll-outs: ``(B, D) -> (B, A)``."""
        return self.sac.act(obs)

    def rollout(self) -> dict[str, float]:
        """Roll out the model from dataset starts and add penalized transitions to the model buffer."""
        r = self.config.rollout
        rows = self.windows.sample_rows(r.rollout_batch_size)
        if self.model.kind == "adm":
            result = rollout_adm(self.model, self.policy, self.windows.history(rows), r.rollout_length, r.penalty,
                                 self.termination, backtrack_sampling=r.backtrack_sampling)
        else:
            result = rollout_ensemble(self.model, self.policy, self.windows.obs[rows], r.rollout_length, r.penalty,
                                      self.termination)
        self.model_buffer.add(obs=result.obs, actions=result.actions, rewards=result.penalized_rewards(r.penalty_coef),
                              next_obs=result.next_obs, terminals=result.terminals)
        stats = {**result.stats, "rollout/mean_reward": result.rewards.mean().item() if len(result.rewards) else 0.0}
        if len(result.rewards):
            stats["rollout/break_even_coef"] = break_even_coef(result.rewards, result.penalties)
            if self.step == 0:
                self._check_break_even(stats)
        return stats

    def _check_break_even(self, stats: dict[str, float]) -> None:
        """Warn when β is at or past the break-even β* of the first roll-out (``analysis.penalty``)."""
        r, beta = self.config.rollout, stats["rollout/break_even_coef"]
        if 0 < r.penalty_coef and beta <= r.penalty_coef:
            where = (f"at or past the break-even {beta:.3g}" if beta > 0
                     else "applied to a non-positive mean predicted reward")
            warnings.warn(f"rollout.penalty_coef = {r.penalty_coef:g} is {where} of the first roll-out (mean predicted "
                          f"reward {stats['rollout/mean_reward']:.3g}, mean {r.penalty} "
                          f"{stats['rollout/mean_penalty']:.3g}): penalized rewards average <= 0, so ending roll-outs "
                          f"early (falling) pays as well as staying up. See `offline-mbrl analyze penalty`.",
                          RuntimeWarning, stacklevel=2)

    def sac_batch(self) -> dict[str, torch.Tensor]:
        """``real_ratio`` x batch dataset rows followed by model-buffer rows."""
        batch_size = self.config.sac.batch_size
        num_real = int(batch_size * self.config.real_ratio)
        w = self.windows
        rows = torch.randint(len(w), (num_real,), device=self.device)
        real = {"obs": w.obs[rows], "actions": w.actions[rows], "rewards": w.rewards[rows],
                "next_obs": w.next_obs[rows], "terminals": w.terminals[rows]}
        fake = self.model_buffer.sample(batch_size - num_real)
        return {k: torch.cat([real[k], fake[k]]) for k in real}

    def evaluate(self) -> dict[str, float]:
        """``eval_episodes`` deterministic episodes in the real environment: return and normalized score
        (normalized per episode, then mean and std over episodes), and the reference's source
        (``eval/score_reference_source``: a :class:`ScoreReference` source, or ``none``)."""
        returns = evaluate_policy(lambda o: self.sac.act(o, deterministic=True), self.env_id,
                                  self.config.eval_episodes, seed=1_000_000 + 1000 * self.epoch,
                                  device=self.device, env_kwargs=self.env_kwargs)
        out = {"eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std()),
               "eval/score_reference_source": self.score_ref.source if self.score_ref is not None else "none"}
        if self.score_ref is not None:
            scores = normalized_score(self.score_ref, returns)
            out |= {"eval/normalized_score": float(scores.mean()), "eval/normalized_score_std": float(scores.std())}
        return out

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = True) -> dict:
        """Run (or resume) to ``config.epochs``; returns the summary written to ``summary.json``."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        self._setup(resume)
        logger = MetricsLogger(self.run_dir, resume_after=self.epoch)
        bar = tqdm(total=cfg.epochs, initial=self.epoch, desc=f"{cfg.algo}", disable=not self.progress)
        last: dict[str, float] = {}
        while self.epoch < cfg.epochs:
            start, times, rollout_stats, sums = time.perf_counter(), EpochTimes(), {}, {}
            for _ in range(cfg.steps_per_epoch):
                if self.step % cfg.rollout.rollout_freq == 0:
                    t = time.perf_counter()
                    rollout_stats = self.rollout()
                    times.rollout += time.perf_counter() - t
                t = time.perf_counter()
                metrics = self.sac.update(self.sac_batch())
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                times.sac += time.perf_counter() - t
                self.step += 1
            if self.scheduler is not None:
                self.scheduler.step()
            self.epoch += 1
            t = time.perf_counter()
            last = self.evaluate()
            times.evaluation = time.perf_counter() - t
            row = {"epoch": self.epoch, "step": self.step, **last,
                   **{k: float(v) / cfg.steps_per_epoch for k, v in sums.items()}, **rollout_stats,
                   "train/actor_lr": self.sac.actor_optim.param_groups[0]["lr"],
                   "model_buffer/size": len(self.model_buffer),
                   "time/rollout_s": times.rollout, "time/sac_s": times.sac, "time/eval_s": times.evaluation,
                   "time/epoch_s": time.perf_counter() - start}
            logger.log(row, self.step)
            if self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs:
                self._save()
                self.write_summary()
            bar.update(1)
            bar.set_postfix(score=f"{last.get('eval/normalized_score', last['eval/return_mean']):.1f}")
        bar.close()
        logger.close()
        return self.write_summary()

    def write_summary(self) -> dict:
        """``summary.json`` from ``metrics.csv`` (final = last evaluation), with the reference returns of the
        normalized score: ``score_reference`` ``[R_min, R_max]``, ``score_reference_source`` (``dataset``,
        ``task``, ``d4rl:<env>``; None without a reference) and ``score_reference_note`` (in words)."""
        import pandas as pd

        metrics = pd.read_csv(self.run_dir / "metrics.csv")
        final = metrics.iloc[-1]
        summary = {"algo": self.config.algo, "dataset": self.config.dataset, "seed": self.config.seed,
                   "env_id": self.env_id, "epochs_completed": int(final["epoch"]), "epochs_total": self.config.epochs,
                   "finished": int(final["epoch"]) >= self.config.epochs,
                   "final_return": float(final["eval/return_mean"]),
                   "final_normalized_score": (float(final["eval/normalized_score"])
                                              if "eval/normalized_score" in metrics else None),
                   "sac_steps": int(final["step"]), "env_kwargs": self.env_kwargs,
                   "score_reference": [self.score_ref.low, self.score_ref.high] if self.score_ref is not None else None,
                   "score_reference_source": self.score_ref.source if self.score_ref is not None else None,
                   "score_reference_note": self.score_ref_note}
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def _action_space(env_id: str, env_kwargs: dict):
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs)
    space = env.action_space
    env.close()
    return space


def evaluate_run(run_dir: str | Path, episodes: int = 10, seed: int = 0,
                 device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray | None]:
    """Re-evaluate the policy of ``run_dir/checkpoints/last.pt`` over ``episodes`` deterministic episodes,
    in the environment and with the score reference recorded in ``summary.json`` (no dataset needed).

    Returns ``(returns (n,), normalized scores (n,) or None)``.

    Raises:
        CheckpointError: the run folder lacks ``summary.json`` or a readable checkpoint.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise CheckpointError(f"{run_dir}: no summary.json (not a run folder, or no epoch finished yet)")
    summary = json.loads((run_dir / "summary.json").read_text())
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt", device)["sac"]
    env_kwargs = summary.get("env_kwargs") or {}
    space = _action_space(summary["env_id"], env_kwargs)
    sac = SAC(state["obs_dim"], state["action_dim"],
              SACConfig(**{**state["config"], "hidden_dims": tuple(state["config"]["hidden_dims"])}),
              torch.as_tensor(space.low), torch.as_tensor(space.high), device)
    sac.load_state_dict(state["model"])
    returns = evaluate_policy(lambda o: sac.act(o, deterministic=True), summary["env_id"], episodes, seed,
                              device, env_kwargs)
    reference = summary.get("score_reference")
    return returns, (normalized_score(tuple(reference), returns) if reference else None)
