"""The run-folder trainer of PAL, MAL (``registry.AlgorithmEntry.loop`` ``game``; seed 003 Alg. 3/4) and their
model-free counterpart ``npg``: drives ``algos.pal_mal.GameLoop`` one iteration (an epoch of ``train --epochs``) at a
time, with the run folder, lock, metrics and resume checks of the other algorithms (``runs``,
``algos.harness.OfflineTrainer``).

    config.yaml          the resolved run config (``game`` and ``npg`` sections; the SAC keys are left out)
    metrics.csv          one row per iteration: ``epoch`` (iteration), ``step`` (real env steps so far, the x axis of
                         ``tabulate`` and ``analyze curves``) and the iteration's record (``GameLoop.step``)
    checkpoints/last.pt  ``{"game": GameLoop.state_dict(), "config": ..., "dynamics": None, ...}``, written after
                         every phase of an iteration (each model fit, NPG step, collection, evaluation), so a stopped
                         run loses at most one phase and ``--resume`` continues exactly
    dynamics.pt          the ensemble after every iteration (``models.checkpoint.save_model``), for analyses (PAL
                         and MAL; model-free ``npg`` has no model and writes none)
    summary.json         as the online harness's (``env_steps``; returns, no normalized score)
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import TrainConfig, to_dict
from ..errors import ConfigError
from ..models.checkpoint import save_model
from ..persist import parse_device
from ..registry import algorithm_entry
from ..runs import MetricsLogger, RunFolder, run_lock
from .harness import OfflineTrainer, algorithm_class, check_online_source
from .pal_mal import GameConfig, GameLoop


def game_config(config: TrainConfig) -> GameConfig:
    """The ``GameConfig`` of a PAL/MAL run config: ``GameConfig.paper(algo, env_id)`` (Tables 1-3 and the env's
    horizon) with the ``game`` section's set fields, ``seed``, ``eval_episodes`` and the ``npg`` section.

    Raises:
        ConfigError: ``env_id`` unknown to gymnasium or without a time limit; a bad ``game`` value (the message names
            the key as ``game.<key>``).
    """
    try:
        return GameConfig.paper(
            config.algo,
            config.env_id,
            **config.game.overrides(),
            seed=config.seed,
            eval_episodes=config.eval_episodes,
            npg=config.npg,
        )
    except ConfigError as exc:
        raise ConfigError(re.sub(r"key '(?!npg\.)", "key 'game.", str(exc))) from exc


class GameTrainer(OfflineTrainer):
    """Runs a PAL, MAL or model-free NPG :class:`TrainConfig` in ``run_dir`` (module docstring). It shares the offline
    harness's run-folder parts (``_read_checkpoint``: the checkpoint's config against this one; ``write_summary``),
    none of its SAC phases.

    Args:
        config: the resolved run config; ``env_id`` names the environment, ``dataset`` must be empty.
        run_dir: the run folder; an existing ``checkpoints/last.pt`` is resumed by :meth:`train`.
        device: torch device of the networks, the ensemble and the loop's generator.
        progress: show a tqdm bar over iterations.

    The constructor validates everything (and builds the loop, seeded) and writes nothing; :meth:`train` writes.

    Raises:
        ConfigError: not a game-loop algorithm; a ``dataset`` given; no ``env_id``, or one without a time limit or a
            termination function; a bad ``game``/``npg`` value; an unusable device.
    """

    def __init__(
        self, config: TrainConfig, run_dir: str | Path, device: str | torch.device = "cpu", progress: bool = True
    ) -> None:
        if algorithm_entry(config.algo).loop != "game":
            raise ConfigError(f"config: algo '{config.algo}' is not run by the game loop (PAL/MAL)")
        check_online_source(config)
        self.config, self.progress = config, progress
        self.folder = RunFolder(run_dir)
        self.run_dir = self.folder.path
        self.device = parse_device(str(device))
        self.env_id, self.env_kwargs = config.env_id, {}
        self.loop: GameLoop = algorithm_class(config.algo)(game_config(config), self.device)
        self.dynamics_given = None  # the model is always fitted in the run
        self.score_ref, self.score_ref_note = None, "none: an online run reports returns"
        self.saved_epoch: int | None = None
        self.epochs_extended_from: list[int] = []

    def _save(self) -> None:
        """``checkpoints/last.pt`` (the loop's whole state and the run config) and ``dynamics.pt``."""
        self.folder.save_checkpoint(
            {
                "game": self.loop.state_dict(),
                "config": to_dict(self.config),
                "dynamics": None,
                "epochs_extended_from": self.epochs_extended_from,
            }
        )
        self.saved_epoch = self.loop.iteration

    def train(self, resume: bool = True) -> dict:
        """Run (or resume) to ``config.epochs`` iterations; returns the summary written to ``summary.json``.

        Raises:
            RunLockedError: another live process trains in ``run_dir``.
            CheckpointError: the checkpoint to resume was made with another config (nothing is written then).
            DivergenceError: a non-finite NPG step; the last checkpoint (at most one phase old) stays.
        """
        with run_lock(self.run_dir):
            state = self._read_checkpoint() if resume and self.checkpoint_path.is_file() else None
            if state is not None:
                self.loop.load_state_dict(state["game"])
                self.saved_epoch = self.loop.iteration
            self.folder.write_config(to_dict(self.config))
            return self._loop()

    def _loop(self) -> dict:
        """Iterations from the loop's to ``config.epochs``: one ``metrics.csv`` row, checkpoint and summary each."""
        loop, epochs = self.loop, self.config.epochs
        logger = MetricsLogger(self.run_dir, resume_after=loop.iteration)
        bar = tqdm(total=epochs, initial=loop.iteration, desc=self.config.algo, disable=not self.progress)
        while loop.iteration < epochs:
            record = loop.step(after_phase=self._save)
            logger.log({"epoch": loop.iteration, "step": loop.env_steps, **record}, loop.env_steps)
            self._save()
            if loop.model is not None:  # model-free NPG has none
                save_model(loop.model, self.folder.dynamics_file)
            self.write_summary()
            bar.update(1)
            bar.set_postfix(env_step=loop.env_steps, eval_return=f"{record['eval/return_mean']:.0f}")
        bar.close()
        logger.close()
        return self.write_summary()

    def write_summary(self) -> dict:
        """The offline summary (``OfflineTrainer.write_summary``) with ``online`` and ``env_steps`` (the ``step``
        column) in place of ``sac_steps``."""
        summary = super().write_summary()
        summary.pop("sac_steps")
        summary |= {"online": True, "env_steps": int(self.folder.read_metrics().iloc[-1]["step"])}
        self.folder.write_summary(summary)
        return summary
