"""The offline model-based harness (ADM paper Alg. 3, MOPO, MOBILE): everything but where the penalty goes and how SAC
updates, which the algorithm decides (``algos.base.Algorithm``; ``algos.admpo_off``, ``algos.mopo``).

    1  fit the dynamics model on the dataset (or load one made by `offline-mbrl model fit`)
    2  for each epoch, for each of ``steps_per_epoch`` SAC steps:
    3-7   every ``rollout_freq`` steps: sample ``rollout_batch_size`` starts from the dataset (ADM: history windows,
          Alg. 3 line 4; ensemble: single states), roll out H steps with the current policy (Alg. 1 / MOPO), store
          ``r~ = r - beta * U`` with the algorithm's roll-out penalty (Eq. 8; none for MOBILE) in the model buffer (it
          keeps ``model_retain_epochs`` roll-outs, FIFO)
    9-11  one algorithm update (SAC, possibly with a penalized Bellman target) on a batch of ``real_ratio`` dataset
          rows followed by model rows
       then: cosine step of the actor lr, deterministic evaluation in the real environment, metrics, checkpoint.

The run folder (DESIGN section 7; layout, writing and reading in ``runs.RunFolder``) holds ``config.yaml``,
``metrics.csv``, TensorBoard events, ``dynamics.pt``, ``checkpoints/last.pt`` (everything needed to resume: SAC with
its optimizers and schedule, model buffer, counters, RNG states, the config it was made with) and ``summary.json``.

Reliability: every check (config ranges, device, env and dataset dims, a given model's kind, dims and m, the
checkpoint's config against ``config.yaml``) runs before anything is written; one process at a time holds the
folder (``.lock``); a roll-out row whose penalized reward is non-finite or absurd never reaches the model buffer;
a non-finite SAC loss or weight stops the run with :class:`DivergenceError`, keeping the last good checkpoint.

Several seeds of one config train in one process with :class:`SeedBatchTrainer` (``train --seeds``): one batched SAC
update for all seeds, everything else per seed as in a single-seed run, each seed in its own run folder.
"""

from __future__ import annotations

import importlib
import math
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..agents.sac import SAC
from ..buffers import TensorBuffer
from ..config import TrainConfig, from_dict, resume_conflicts, to_dict
from ..data.dataset import TransitionDataset
from ..data.scores import ScoreReference, normalized_score, score_reference
from ..data.windows import Windows
from ..envs.gym_env import env_spaces, evaluate_policy
from ..envs.termination import termination_fn
from ..errors import CheckpointError, ConfigError, DivergenceError, RunFolderError, ScoreError
from ..models import DynamicsModel, build_config, build_model, fields_from
from ..models.checkpoint import load_model, save_model
from ..models.fit import FitConfig, fit, fit_record
from ..persist import parse_device, rng_state, seeded, set_rng_state
from ..registry import algorithm_entry
from ..rollout import bounded, rollout
from ..runs import MetricsLogger, RunFolder, run_lock
from ..seeds import SeedStreams, capture, kept
from ..uncertainty import break_even_coef
from .base import Algorithm


def algorithm_class(name: str) -> type:
    """The class that ``registry.ALGORITHMS[name]`` names by dotted path: its :class:`Algorithm` subclass (loop
    ``sac``) or the loop the game trainer drives (loop ``game``: ``algos.pal_mal.GameLoop``).

    Raises:
        ConfigError: an unknown algorithm.
    """
    module, cls = algorithm_entry(name).algorithm.split(":")
    return getattr(importlib.import_module(module), cls)


def check_model_kind(config: TrainConfig) -> None:
    """Raises ConfigError unless ``config.dynamics.model`` is the model kind of ``config.algo``'s registry entry."""
    model_kind = algorithm_entry(config.algo).model
    if config.dynamics.model != model_kind:
        raise ConfigError(
            f"config: algo '{config.algo}' needs dynamics.model '{model_kind}', got '{config.dynamics.model}'"
        )


def check_online_source(config: TrainConfig) -> None:
    """Raises ConfigError unless ``config`` names an environment to learn in (``env_id``) and no dataset: the
    source check of every online trainer (``OnlineTrainer``, ``GameTrainer``)."""
    if config.dataset:
        raise ConfigError(
            f"config: algo '{config.algo}' learns online in env_id and reads no dataset; got dataset {config.dataset!r}"
        )
    if not config.env_id:
        raise ConfigError(f"config: algo '{config.algo}' is online and needs env_id (--env), e.g. Hopper-v5")


def model_buffer(capacity: int, obs_dim: int, action_dim: int, device: torch.device) -> TensorBuffer:
    """An empty model buffer D_model (Alg. 3's roll-out data) of ``capacity`` rows: ``obs``, ``next_obs`` (D,)
    float32, ``actions`` (A,) float32, ``rewards`` () float32, ``terminals`` () bool."""
    f32, D, A = torch.float32, obs_dim, action_dim
    fields = {
        "obs": ((D,), f32),
        "actions": ((A,), f32),
        "rewards": ((), f32),
        "next_obs": ((D,), f32),
        "terminals": ((), torch.bool),
    }
    return TensorBuffer(capacity, fields, device)


def build_dynamics(config: TrainConfig, obs_dim: int, action_dim: int) -> DynamicsModel:
    """A fresh model of kind ``config.dynamics.model`` sized by the ``dynamics`` section (``models.fields_from``)."""
    kind = config.dynamics.model
    return build_model(kind, obs_dim, action_dim, **fields_from(kind, config.dynamics))


def fit_dynamics(
    config: TrainConfig,
    dataset: TransitionDataset,
    device: torch.device,
    progress: bool = False,
    checkpoint: Path | None = None,
) -> DynamicsModel:
    """Build and fit the dynamics model of ``config`` on ``dataset`` (Alg. 3 line 1); ``checkpoint``: a fit
    checkpoint file that makes a stopped fit resume (``models.fit.fit``)."""
    model = build_dynamics(config, dataset.obs_dim, dataset.action_dim).to(device)
    fit(model, dataset, fit_config(config, model), progress=progress, checkpoint=checkpoint)
    return model


def fit_config(config: TrainConfig, model: DynamicsModel, seed: int | None = None) -> FitConfig:
    """The ``FitConfig`` of ``model`` (``FitConfig.for_model``) with the ``dynamics`` section's fit settings and
    ``seed`` (default ``config.seed``)."""
    d = config.dynamics
    overrides = {
        "max_epochs": d.max_epochs,
        "holdout_split": d.holdout_split,
        "batch_size": d.batch_size,
        "validation_batch": d.validation_batch,
        "seed": config.seed if seed is None else seed,
    }
    if d.learning_rate is not None:
        overrides["learning_rate"] = d.learning_rate
    return FitConfig.for_model(model, **overrides)


def compile_model(model: DynamicsModel) -> DynamicsModel:
    """``torch.compile`` every submodule of ``model`` in place (``nn.Module.compile``: state dict, file format and
    results to float rounding unchanged), so the roll-out step (the stepper's calls into them) runs compiled. Returns
    ``model``. Used by ``train --compile``; off by default (``benchmarks/README.md``)."""
    for module in model.children():
        module.compile()
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
        dynamics: path of an existing model saved by ``offline-mbrl model fit`` (skips fitting).
        device: torch device for models, buffers and SAC.

    The constructor validates everything and writes nothing; :meth:`train` writes.

    Raises:
        ConfigError: the model kind does not match the algorithm; an unusable device; no env id, an env that cannot
            be built or whose obs/action dims differ from the dataset's; ``dynamics`` is not a file; a saved model
            (given, or the run's ``dynamics.pt``) of another kind, obs/action dim or max_backtrack than the config.
        CheckpointError: a saved model that cannot be read.
        DatasetError: the dataset cannot be loaded.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        dataset: TransitionDataset | None = None,
        dynamics: str | Path | None = None,
        device: str | torch.device = "cpu",
        progress: bool = True,
        compile: bool = False,
    ) -> None:
        from ..data.load import load_dataset

        check_model_kind(config)
        self.config, self.run_dir, self.progress, self.compile = config, Path(run_dir), progress, compile
        self.folder = RunFolder(self.run_dir)
        self.algorithm = algorithm_class(config.algo)(config)
        self.device = parse_device(str(device))
        self.dataset = dataset if dataset is not None else load_dataset(config.dataset)
        self.env_id = config.env_id or self.dataset.metadata.get("env_id")
        if not self.env_id:
            raise ConfigError(f"{self.dataset.source}: the dataset names no environment; set env_id (--env)")
        self.env_kwargs = self.dataset.metadata.get("env_kwargs") or {}
        self.action_space = self._check_env()
        if dynamics is not None and not Path(dynamics).is_file():
            raise ConfigError(f"--dynamics {dynamics}: no such model file (make one with `offline-mbrl model fit`)")
        self.dynamics_given = str(Path(dynamics).resolve()) if dynamics else None  # recorded in checkpoints
        self.dynamics_path = Path(dynamics) if dynamics else self.folder.dynamics_file
        self.model = self._load_dynamics() if self.dynamics_path.is_file() else None
        self.termination = termination_fn(config.task or self.dataset.metadata.get("task") or self.env_id)
        self.score_ref, self.score_ref_note = self._score_reference()
        self.saved_epoch: int | None = None  # epoch of the last checkpoint written or loaded
        self.epochs_extended_from: list[int] = []

    # ------------------------------------------------------------------ setup (validation only: nothing written)
    def _check_env(self):
        """The env's action space, after checking that its obs/action dims are the dataset's."""
        obs_space, action_space = env_spaces(self.env_id, self.env_kwargs)
        for name, space, dim in (
            ("obs", obs_space, self.dataset.obs_dim),
            ("action", action_space, self.dataset.action_dim),
        ):
            if space.shape[0] != dim:
                raise ConfigError(
                    f"env '{self.env_id}': {name} dim {space.shape[0]} differs from the dataset's "
                    f"({self.dataset.source}: {dim}); pass the env the data came from (--env)"
                )
        return action_space

    def _load_dynamics(self) -> DynamicsModel:
        """The saved model at ``dynamics_path``, checked against the config and the dataset."""
        model = load_model(self.dynamics_path, self.device)
        d, where = self.config.dynamics, self.dynamics_path
        if model.kind != d.model:
            raise ConfigError(f"{where}: holds a '{model.kind}' model, the config needs '{d.model}'")
        for name in ("obs_dim", "action_dim"):
            if getattr(model.config, name) != getattr(self.dataset, name):
                raise ConfigError(
                    f"{where}: model {name} {getattr(model.config, name)} differs from the dataset's "
                    f"({self.dataset.source}: {getattr(self.dataset, name)})"
                )
        expected = build_config(d.model, model.config.obs_dim, model.config.action_dim, **fields_from(d.model, d))
        if model.window_length != expected.window_length:
            raise ConfigError(
                f"{where}: model max_backtrack {model.window_length} differs from the config's "
                f"dynamics.max_backtrack {d.max_backtrack}; pass --set dynamics.max_backtrack="
                f"{model.window_length} or fit with --max-backtrack {d.max_backtrack}"
            )
        return model

    def _score_reference(self) -> tuple[ScoreReference | None, str]:
        """The reference returns that normalize scores (of ``config.task``, else of the dataset) and a line
        saying where they come from; ``(None, why)`` when there are none, and then no score is normalized."""
        try:
            ref = score_reference(self.config.task or self.dataset)
        except ScoreError as exc:
            return None, f"none, so no normalized score ({exc})"
        return ref, ref.describe()

    def _read_checkpoint(self) -> dict:
        """The checkpoint to resume, after checking that it was made with this config (or with fewer ``epochs``).

        Raises:
            CheckpointError: unreadable, or made with another config (e.g. ``config.yaml`` edited by hand); the
                message names the differing keys.
        """
        state = self.folder.read_checkpoint(self.device)
        if "config" not in state:  # written before checkpoints recorded their config: nothing to compare
            return state
        try:
            recorded = from_dict(state["config"], f"{self.checkpoint_path}: field 'config'")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from exc
        conflicts = resume_conflicts(recorded, self.config)
        if state.get("dynamics") != self.dynamics_given:
            conflicts.append(
                f"dynamics: {state.get('dynamics') or 'fitted in the run folder'} -> "
                f"{self.dynamics_given or 'fitted in the run folder'}"
            )
        if conflicts:
            raise CheckpointError(
                f"{self.checkpoint_path}: was written with another config than this run's "
                f"({'; '.join(conflicts)}); restore {self.run_dir / 'config.yaml'} or start a new "
                f"run"
            )
        self.epochs_extended_from = [int(e) for e in state.get("epochs_extended_from", [])]
        if recorded.epochs != self.config.epochs:
            self.epochs_extended_from.append(recorded.epochs)
        return state

    def _fit_dynamics(self) -> DynamicsModel:
        """Fit the model of the config (initial weights seeded by ``config.seed``) and save it, with the fit's record,
        to ``dynamics_path``; a stopped fit resumes from ``dynamics.pt.partial``."""
        partial = self.dynamics_path.with_name(self.dynamics_path.name + ".partial")
        with seeded(self.config.seed, self.device):
            model = fit_dynamics(self.config, self.dataset, self.device, self.progress, partial)
        save_model(model, self.dynamics_path, fit_record=fit_record(partial))
        partial.unlink()
        return model

    def _setup(self, state: dict | None) -> None:
        """SAC, its schedule, the model buffer and the counters, restored from ``state`` when resuming."""
        self.model.eval()
        if self.compile:
            compile_model(self.model)
        self.windows = Windows(self.dataset, self.model.window_length, self.device)
        cfg, space = self.config, self.action_space
        self.sac = SAC(
            self.dataset.obs_dim,
            self.dataset.action_dim,
            cfg.sac,
            torch.as_tensor(space.low),
            torch.as_tensor(space.high),
            self.device,
            compile=self.compile,
        )
        self.scheduler = self.sac.actor_lr_scheduler(cfg.epochs)
        r = cfg.rollout
        capacity = r.rollout_batch_size * r.rollout_length * r.model_retain_epochs
        self.model_buffer = model_buffer(capacity, self.dataset.obs_dim, self.dataset.action_dim, self.device)
        self.epoch, self.step = 0, 0
        if state is not None:
            self._load(state)

    @property
    def checkpoint_path(self) -> Path:
        return self.folder.checkpoint_file

    def _save(self) -> None:
        state = {
            "sac": self.sac.full_state(),
            "model_buffer": self.model_buffer.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "rng": rng_state(self.device),
            "config": to_dict(self.config),
            "dynamics": self.dynamics_given,
            "epochs_extended_from": self.epochs_extended_from,
        }
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        self.folder.save_checkpoint(state)
        self.saved_epoch = self.epoch

    def _load(self, state: dict) -> None:
        try:
            self.sac.load_full_state(state["sac"])
            self.model_buffer.load_state_dict(state["model_buffer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{self.checkpoint_path}: does not match this run's config ({exc})") from exc
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.saved_epoch = self.epoch
        set_rng_state(state["rng"], self.device)

    # ------------------------------------------------------------------ phases
    @property
    def rollout_length(self) -> int:
        """H of the next roll-out: ``rollout.rollout_length`` (the online harness follows its schedule)."""
        return self.config.rollout.rollout_length

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The current stochastic policy, for roll-outs: ``(B, D) -> (B, A)``."""
        return self.sac.act(obs)

    def rollout(self) -> dict[str, float]:
        """Roll out the model from dataset starts and add penalized transitions to the model buffer. Rows whose
        penalized reward is non-finite or above ``MAX_ABS_VALUE`` are dropped and counted in
        ``rollout/num_nonfinite``.

        Raises:
            DivergenceError: not one step of the roll-out was finite: SAC's weights are non-finite, else a broken
                model (the message names it).
        """
        r = self.config.rollout
        penalty, penalty_coef = self.algorithm.rollout_penalty()
        rows = self.windows.sample_rows(r.rollout_batch_size)
        result = rollout(
            self.model,
            self.policy,
            self.windows.history(rows),
            self.rollout_length,
            penalty,
            self.termination,
            backtrack_sampling=r.backtrack_sampling,
        )
        rewards = result.penalized_rewards(penalty_coef)  # (N,)
        keep = bounded(rewards)  # (N,) checked after the penalty
        if not keep.any():
            self._check_diverged({})  # a diverged policy (NaN actions) is the more likely culprit
            raise DivergenceError(
                f"{self.dynamics_path}: the dynamics model gave no finite step in a roll-out from "
                f"{r.rollout_batch_size} starts ({int(result.stats['rollout/num_nonfinite'])} "
                f"non-finite predictions, {len(rewards) - int(keep.sum())} non-finite penalized "
                f"rewards); refit it or lower rollout.penalty_coef"
            )
        self.model_buffer.add(
            obs=result.obs[keep],
            actions=result.actions[keep],
            rewards=rewards[keep],
            next_obs=result.next_obs[keep],
            terminals=result.terminals[keep],
        )
        dropped = len(rewards) - int(keep.sum())
        stats = {
            **result.stats,
            "rollout/num_transitions": result.stats["rollout/num_transitions"] - dropped,
            "rollout/num_nonfinite": result.stats["rollout/num_nonfinite"] + dropped,
        }
        stats["rollout/mean_reward"] = result.rewards[keep].mean().item()
        stats["rollout/break_even_coef"] = break_even_coef(result.rewards[keep], result.penalties[keep])
        if self.step == 0:
            self._check_break_even(stats, penalty, penalty_coef)
        return stats

    def _check_break_even(self, stats: dict[str, float], penalty: str | None, penalty_coef: float) -> None:
        """Warn when the roll-out's β (``penalty_coef``) is at or past the break-even β* of the first roll-out
        (``analysis.penalty``)."""
        beta = stats["rollout/break_even_coef"]
        if 0 < penalty_coef and beta <= penalty_coef:
            where = (
                f"at or past the break-even {beta:.3g}"
                if beta > 0
                else "applied to a non-positive mean predicted reward"
            )
            warnings.warn(
                f"rollout.penalty_coef = {penalty_coef:g} is {where} of the first roll-out (mean predicted "
                f"reward {stats['rollout/mean_reward']:.3g}, mean {penalty} "
                f"{stats['rollout/mean_penalty']:.3g}): penalized rewards average <= 0, so ending roll-outs "
                f"early (falling) pays as well as staying up. See `offline-mbrl analyze penalty`.",
                RuntimeWarning,
                stacklevel=2,
            )

    @property
    def num_real(self) -> int:
        """Dataset rows per SAC batch: ``int(batch_size x real_ratio)`` (OfflineRL-Kit's rounding)."""
        return int(self.config.sac.batch_size * self.config.real_ratio)

    def sac_batch(self) -> dict[str, torch.Tensor]:
        """:attr:`num_real` dataset rows followed by model-buffer rows (``sac.batch_size`` in all)."""
        num_real, w = self.num_real, self.windows
        rows = torch.randint(len(w), (num_real,), device=self.device)
        real = {
            "obs": w.obs[rows],
            "actions": w.actions[rows],
            "rewards": w.rewards[rows],
            "next_obs": w.next_obs[rows],
            "terminals": w.terminals[rows],
        }
        fake = self.model_buffer.sample(self.config.sac.batch_size - num_real)
        return {k: torch.cat([real[k], fake[k]]) for k in real}

    def evaluate(self) -> dict[str, float]:
        """``eval_episodes`` deterministic episodes in the real environment: return and normalized score
        (normalized per episode, then mean and std over episodes), and the reference's source
        (``eval/score_reference_source``: a :class:`ScoreReference` source, or ``none``)."""
        returns = evaluate_policy(
            lambda o: self.sac.act(o, deterministic=True),
            self.env_id,
            self.config.eval_episodes,
            seed=1_000_000 + 1000 * self.epoch,
            device=self.device,
            env_kwargs=self.env_kwargs,
        )
        out = {
            "eval/return_mean": float(returns.mean()),
            "eval/return_std": float(returns.std()),
            "eval/score_reference_source": self.score_ref.source if self.score_ref is not None else "none",
        }
        if self.score_ref is not None:
            scores = normalized_score(self.score_ref, returns)
            out |= {"eval/normalized_score": float(scores.mean()), "eval/normalized_score_std": float(scores.std())}
        return out

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = True) -> dict:
        """Run (or resume) to ``config.epochs``; returns the summary written to ``summary.json``.

        Raises:
            RunLockedError: another live process trains in ``run_dir``.
            CheckpointError: the checkpoint to resume was made with another config (nothing is written then).
            DivergenceError: a non-finite SAC loss or weight, or a model without one finite step; the last
                checkpoint stays as it was.
            WriteError: a file of the run folder cannot be written (its temporary file is removed).
        """
        with run_lock(self.run_dir):
            state = self._read_checkpoint() if resume and self.checkpoint_path.is_file() else None
            self.folder.write_config(to_dict(self.config))
            if self.model is None:
                self.model = self._fit_dynamics()
            # the policy phase starts the same whether the model was fitted or loaded; the caller's stream is kept
            with seeded(self.config.seed + 1, self.device):
                self._setup(state)
                return self._loop()

    def _loop(self) -> dict:
        """Epochs from ``self.epoch`` to ``config.epochs`` (module docstring, lines 2-11)."""
        cfg = self.config
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
                metrics = self.algorithm.update(self.sac, self.model, self.sac_batch(), self.num_real)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                times.sac += time.perf_counter() - t
                self.step += 1
            self._check_diverged(sums)
            if self.scheduler is not None:
                self.scheduler.step()
            last = self.end_epoch(logger, sums, rollout_stats, times, start)
            bar.update(1)
            bar.set_postfix(score=f"{last.get('eval/normalized_score', last['eval/return_mean']):.1f}")
        bar.close()
        logger.close()
        return self.write_summary()

    def end_epoch(
        self,
        logger: MetricsLogger,
        sums: dict[str, torch.Tensor],
        rollout_stats: dict[str, float],
        times: EpochTimes,
        start: float,
    ) -> dict[str, float]:
        """What follows an epoch's SAC steps, its divergence check and actor-lr step (module docstring): evaluation,
        the ``metrics.csv`` row (``sums``: per-step metrics summed over the epoch; ``start``: ``perf_counter()`` at
        the epoch's start) and, when due, checkpoint and summary. Returns the evaluation's metrics."""
        cfg = self.config
        self.epoch += 1
        t = time.perf_counter()
        last = self.evaluate()
        times.evaluation = time.perf_counter() - t
        row = {
            "epoch": self.epoch,
            "step": self.step,
            **last,
            **{k: float(v) / cfg.steps_per_epoch for k, v in sums.items()},
            **rollout_stats,
            "train/actor_lr": self.sac.actor_optim.param_groups[0]["lr"],
            "model_buffer/size": len(self.model_buffer),
            "time/rollout_s": times.rollout,
            "time/sac_s": times.sac,
            "time/eval_s": times.evaluation,
            "time/epoch_s": time.perf_counter() - start,
        }
        logger.log(row, self.step)
        if self.epoch % cfg.checkpoint_every == 0 or self.epoch == cfg.epochs:
            self._save()
            self.write_summary()
        return last

    def _check_diverged(self, sums: dict[str, torch.Tensor]) -> None:
        """Stop before anything of this epoch is logged or saved if a summed loss or a SAC weight is non-finite.

        Raises:
            DivergenceError: naming the epoch, the first non-finite metrics or weights and the kept checkpoint.
        """
        bad = [k for k, v in sums.items() if not math.isfinite(float(v))]
        bad += [f"weights {name}" for name, p in self.sac.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            kept = (
                f"the last good checkpoint {self.checkpoint_path} (epoch {self.saved_epoch}) is kept"
                if self.saved_epoch is not None
                else "no checkpoint was written yet"
            )
            raise DivergenceError(
                f"{self.run_dir}: SAC diverged in epoch {self.epoch + 1} (non-finite "
                f"{', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); {kept}; lower the learning "
                f"rates or rollout.penalty_coef"
            )

    def write_summary(self) -> dict:
        """``summary.json`` from ``metrics.csv`` (final = last evaluation), with the reference returns of the
        normalized score: ``score_reference`` ``[R_min, R_max]``, ``score_reference_source`` (``dataset``,
        ``task``, ``d4rl:<env>``; None without a reference) and ``score_reference_note`` (in words)."""
        metrics = self.folder.read_metrics()
        final = metrics.iloc[-1]
        summary = {
            "algo": self.config.algo,
            "dataset": self.config.dataset,
            "seed": self.config.seed,
            "env_id": self.env_id,
            "epochs_completed": int(final["epoch"]),
            "epochs_total": self.config.epochs,
            "finished": int(final["epoch"]) >= self.config.epochs,
            "final_return": float(final["eval/return_mean"]),
            "final_normalized_score": (
                float(final["eval/normalized_score"]) if "eval/normalized_score" in metrics else None
            ),
            "sac_steps": int(final["step"]),
            "env_kwargs": self.env_kwargs,
            "dynamics": self.dynamics_given,
            "score_reference": [self.score_ref.low, self.score_ref.high] if self.score_ref is not None else None,
            "score_reference_source": self.score_ref.source if self.score_ref is not None else None,
            "score_reference_note": self.score_ref_note,
        }
        if self.epochs_extended_from:
            summary["epochs_extended_from"] = self.epochs_extended_from
        self.folder.write_summary(summary)
        return summary


class SeedBatchTrainer:
    """Several seeds of one run config trained in one process as one batched computation (``train --seeds``, issue 15).

    Args:
        members: one :class:`OfflineTrainer` per seed, built as for single-seed runs (same config but ``seed``, each
            with its own run folder from ``runs.run_dir_for``), so every check runs before anything is written.

    The SAC agents of all seeds are one seed-batched :class:`SAC` (``num_seeds``): one forward, backward and optimizer
    step per SAC step for all seeds. Everything else stays per seed and is the member's own code: its dynamics model
    (fitted in its folder by its seed, the papers' way, or the shared ``--dynamics`` model, loaded once), roll-outs
    with its policy, model buffer, batches, evaluation, ``metrics.csv``, checkpoints and summary, in the formats of a
    single-seed run. Each seed draws from its own random stream (``seeds.SeedStreams``) in the order its single-seed
    run draws, so seed ``s`` of a seed batch gives the results of the single-seed run of seed ``s`` to float rounding
    (``tests/test_seed_batch.py``), and each folder resumes on its own (``train --resume RUN_DIR``) or with the batch.
    Roll-outs run one seed after another: they go in blocks of ``rollout.DEFAULT_CHUNK`` starts anyway, and one batch
    for all seeds would draw dropout masks and noise from one stream.

    An algorithm's own Bellman target (``Algorithm.bellman_target``, MOBILE's penalty) is computed per seed with that
    seed's agent (its actor and target critics copied from the batch) and model, then all seeds update at once.

    ``time/sac_s`` in each seed's ``metrics.csv`` is the batch's SAC time (all seeds), ``time/rollout_s`` likewise.

    Raises:
        ConfigError: no members; members whose configs differ in more than ``seed``, with repeated seeds, on other
            devices or dynamics; an algorithm that overrides ``Algorithm.update`` itself.
    """

    def __init__(self, members: list[OfflineTrainer]) -> None:
        if not members:
            raise ConfigError("train --seeds: at least one seed is needed")
        first = members[0]
        seeds = [m.config.seed for m in members]
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"train --seeds: each seed once, got {seeds}")
        base = to_dict(replace(first.config, seed=0))
        for m in members[1:]:
            if to_dict(replace(m.config, seed=0)) != base or m.device != first.device:
                raise ConfigError(f"train --seeds: {m.run_dir} differs from {first.run_dir} in more than the seed")
            if m.dynamics_given != first.dynamics_given:
                raise ConfigError(f"train --seeds: {m.run_dir} uses other dynamics than {first.run_dir}")
        if type(first.algorithm).update is not Algorithm.update:
            raise ConfigError(
                f"train --seeds: algo '{first.config.algo}' updates SAC its own way (not through "
                f"Algorithm.bellman_target), so its seeds cannot share one update; train them one by one (--seed)"
            )
        if first.dynamics_given is not None:  # one shared model, loaded once
            for m in members[1:]:
                m.model = first.model
        self.members, self.config, self.device = members, first.config, first.device

    def train(self, resume: bool = True) -> list[dict]:
        """Run (or resume) every seed to ``config.epochs``; returns each seed's summary (as ``OfflineTrainer.train``).

        Raises:
            RunLockedError: another live process trains in one of the run folders.
            CheckpointError: a checkpoint made with another config, or seeds stopped at different epochs (resume
                those one by one); nothing is written then.
            DivergenceError: a non-finite SAC loss or weight in any seed; every seed keeps its last checkpoint.
            WriteError: a file of a run folder cannot be written.
        """
        with ExitStack() as stack:
            for m in self.members:
                stack.enter_context(run_lock(m.run_dir))
            states = [m._read_checkpoint() if resume and m.checkpoint_path.is_file() else None for m in self.members]
            epochs = {str(m.run_dir): (0 if st is None else int(st["epoch"])) for m, st in zip(self.members, states)}
            if len(set(epochs.values())) > 1:
                raise CheckpointError(
                    f"train --seeds: the seeds' checkpoints are at different epochs ({epochs}); resume each with "
                    f"train --resume RUN_DIR, or run the seeds at the same epoch together"
                )
            for m in self.members:
                m.folder.write_config(to_dict(m.config))
            for m in self.members:
                if m.model is None:
                    m.model = m._fit_dynamics()
            with kept(self.device):  # the caller's random stream is left as it was
                streams = []
                for m, state in zip(self.members, states):  # each seed set up in its stream, as a single run
                    with seeded(m.config.seed + 1, self.device):
                        m._setup(state)
                        streams.append(capture(self.device))
                self.streams = SeedStreams(streams, self.device)
                self._setup()
                return self._loop()

    def _setup(self) -> None:
        """The seed-batched SAC and actor-lr schedule, holding the members' (fresh or resumed) states."""
        first = self.members[0]
        space = first.action_space
        self.sac = SAC(
            first.dataset.obs_dim,
            first.dataset.action_dim,
            self.config.sac,
            torch.as_tensor(space.low),
            torch.as_tensor(space.high),
            self.device,
            num_seeds=len(self.members),
            streams=self.streams,
            compile=first.compile,
        )
        self.sac.load_seed_full_states([m.sac.full_state() for m in self.members])
        self.scheduler = self.sac.actor_lr_scheduler(self.config.epochs)
        if self.scheduler is not None:
            self.scheduler.load_state_dict(first.scheduler.state_dict())

    def _sync(self, index: int, names: tuple[str, ...] = ("actor",)) -> None:
        """Member ``index``'s modules ``names`` <- its seed's slices (before its roll-out or its Bellman target)."""
        for name in names:
            getattr(self.members[index].sac, name).load_state_dict(self.sac.seed_module_state(index, name))

    def _loop(self) -> list[dict]:
        """Epochs of all seeds in lockstep (``OfflineTrainer._loop``, with one batched SAC step for all seeds)."""
        cfg, members, streams = self.config, self.members, self.streams
        own_target = type(members[0].algorithm).bellman_target is not Algorithm.bellman_target  # MOBILE
        loggers = [MetricsLogger(m.run_dir, resume_after=m.epoch) for m in members]
        bar = tqdm(
            total=cfg.epochs,
            initial=members[0].epoch,
            desc=f"{cfg.algo} x{len(members)} seeds",
            disable=not members[0].progress,
        )
        while members[0].epoch < cfg.epochs:
            start, times, sums = time.perf_counter(), EpochTimes(), {}
            rollout_stats: list[dict[str, float]] = [{} for _ in members]
            for _ in range(cfg.steps_per_epoch):
                if members[0].step % cfg.rollout.rollout_freq == 0:
                    t = time.perf_counter()
                    for i, m in enumerate(members):
                        self._sync(i)
                        with streams.use(i):
                            rollout_stats[i] = m.rollout()
                    times.rollout += time.perf_counter() - t
                t = time.perf_counter()
                parts, targets, extras = [], [], []
                for i, m in enumerate(members):  # each seed's batch and Bellman target, as its single run draws them
                    with streams.use(i):
                        parts.append(m.sac_batch())
                        if own_target:
                            self._sync(i, ("actor", "critic_target"))
                        target, extra = m.algorithm.bellman_target(m.sac, m.model, parts[-1], m.num_real)
                    targets.append(target)
                    extras.append(extra)
                batch = {k: torch.stack([p[k] for p in parts]) for k in parts[0]}  # (S, B, ...)
                same = all(target is targets[0] for target in targets)  # SAC's own target: one call for all seeds
                metrics = self.sac.update(batch, target=targets[0] if same else targets)
                metrics |= {k: torch.stack([e[k] for e in extras]) for k in extras[0]}
                for k, v in metrics.items():  # (S,) per metric
                    sums[k] = sums.get(k, 0.0) + v
                times.sac += time.perf_counter() - t
                for m in members:
                    m.step += 1
            if self.scheduler is not None:
                self.scheduler.step()
            for i, m in enumerate(members):  # each member's state for its checks, row and checkpoint
                m.sac.load_full_state(self.sac.seed_full_state(i))
                if m.scheduler is not None:
                    m.scheduler.load_state_dict(self.scheduler.state_dict())
            for i, m in enumerate(members):  # no seed's epoch is saved if one diverged
                m._check_diverged({k: v[i] for k, v in sums.items()})
            last = []
            for i, (m, logger) in enumerate(zip(members, loggers)):
                with streams.use(i):  # its checkpoint records its own stream
                    last.append(m.end_epoch(logger, {k: v[i] for k, v in sums.items()}, rollout_stats[i], times, start))
            bar.update(1)
            scores = (e.get("eval/normalized_score", e["eval/return_mean"]) for e in last)
            bar.set_postfix(score=" ".join(f"{score:.1f}" for score in scores))
        bar.close()
        for logger in loggers:
            logger.close()
        return [m.write_summary() for m in members]


def evaluate_run(
    run_dir: str | Path, episodes: int = 10, seed: int = 0, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Re-evaluate the policy of ``run_dir/checkpoints/last.pt`` (``RunFolder.read_policy``: SAC actor or NPG
    policy) over ``episodes`` deterministic episodes,
    in the environment and with the score reference recorded in ``summary.json`` (no dataset needed).

    Returns ``(returns (n,), normalized scores (n,) or None)``.

    Raises:
        ConfigError: ``episodes`` < 1, an unusable device, or an env that cannot be built.
        CheckpointError: the run folder lacks a valid ``summary.json`` or a readable checkpoint.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    device = parse_device(str(device))
    folder = RunFolder(run_dir)
    summary = folder.read_summary(required=True)
    if not isinstance(summary.get("env_id"), str):
        raise RunFolderError(f"{folder.summary_file}: must be a mapping with a string field 'env_id'")
    policy = folder.read_policy(device)
    env_kwargs = summary.get("env_kwargs") or {}
    env_spaces(summary["env_id"], env_kwargs)  # an env that cannot be built is a ConfigError before any episode
    returns = evaluate_policy(
        policy,
        summary["env_id"],
        episodes,
        seed,
        device,
        env_kwargs,
    )
    reference = summary.get("score_reference")
    return returns, (normalized_score(tuple(reference), returns) if reference else None)
