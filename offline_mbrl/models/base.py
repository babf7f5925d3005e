"""The public dynamics-model interface (DESIGN section 2): everything the fit, the roll-out loop, the training
harness and the analyses may ask of a model, so that none of them branches on its kind.

Shapes: B starts (rows), M = ``max_backtrack`` (the model's ``window_length``), C candidates per roll-out step
(backtracks k for ADM, members E for the ensemble, 1 for the bootstrapping RNN), D obs dim, A action dim.

A roll-out (``offline_mbrl.rollout.rollout``) asks the model for a **stepper** over B start histories and then,
per step, for the Gaussians of every candidate (``predict``), which candidate each row samples from (``choose``)
and to move on with the kept rows (``advance``). How a model starts is its ``window_length``: ADM and the
bootstrapping RNN read history windows of m states (``Windows(dataset, m).history``), the ensemble single states
(windows of one state).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..config import BACKTRACK_SAMPLING
from ..data.windows import HistoryBatch, WindowBatch
from ..errors import ConfigError


class Stepper(Protocol):
    """One model's state over a block of b live roll-outs (b shrinks as trajectories end).

    Attributes:
        shared_choice: True when one U[0, 1) draw per step is shared by all rows (ADM ``"batch"`` sampling).
    """

    shared_choice: bool

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """obs (b, D), action (b, A) -> mean (C, b, D + 1) of (next state in state space, reward), logvar
        (C, b, D + 1), available (C, b) bool (None: every candidate is available)."""

    def choose(self, uniform: Tensor) -> Tensor:
        """U[0, 1) draws (b,) -> candidate index (b,) int64 each row samples from."""

    def sampled_candidates(self) -> Tensor | None:
        """(C,) bool: the candidates ``choose`` may ever return (the ensemble's elites); None: any available one.
        Lets a caller that draws from the candidates itself (MOBILE's next-state samples) use the same ones."""

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        """Move to the next step with the sampled next states (b, D), keeping rows ``keep`` (b,) bool."""


class DynamicsModel(Protocol):
    """What ADM, the probabilistic ensemble and the bootstrapping RNN declare (all are ``nn.Module``s).

    Attributes:
        kind: registry name (``"adm"``, ``"ensemble"``, ``"boot_rnn"``), written into checkpoints.
        config: the model's frozen config (``RecurrentConfig`` or ``EnsembleConfig``; ``obs_dim``, ``action_dim``).
        window_length: states a roll-out start and a training window hold: m = ``max_backtrack`` for ADM and the
            bootstrapping RNN, 1 for the ensemble. A name of its own because it is not a backtrack length for the
            ensemble (which has none); everywhere else m is ``max_backtrack``.
        quantifiers: names of the ``offline_mbrl.uncertainty`` quantifiers that apply to its candidates (ADM
            ``("adm_var", "adm_std")``, ensemble ``("ensemble_std", "max_aleatoric")``, RNN none).
        selection: the fit's model-selection rule, ``"any_step"`` (channels = window positions) or
            ``"per_member"`` (channels = members, each with its own bootstrap and best weights; such a model also
            has ``member_parameter_names``, ``config.ensemble_size`` and ``set_elites``).
        channel, first_channel: what a model-selection channel is (``"k"``, ``"history"``, ``"member"``) and the
            number of the first one (1 for k and history lengths, 0 for members), for holdout tables.
        backtrack_samplings: the ``backtrack_sampling`` values that change its roll-outs (ADM: all of
            ``BACKTRACK_SAMPLING``; others none: they ignore the argument).
        rollout_dropout: whether roll-outs keep the head's dropout on (``train`` mode) or run in eval mode.
    """

    kind: str
    config: object
    window_length: int
    quantifiers: tuple[str, ...]
    selection: str
    channel: str
    first_channel: int
    backtrack_samplings: tuple[str, ...]
    rollout_dropout: bool

    def loss(self, batch: WindowBatch) -> tuple[Tensor, dict[str, float]]:
        """Training loss on windows of ``window_length`` steps -> (scalar loss, ``dynamics/`` metrics)."""

    def prediction_errors(self, batch: WindowBatch) -> tuple[Tensor, Tensor]:
        """Squared error of the mean per window and channel: errors (B, C), valid (B, C) bool."""

    def stepper(self, history: HistoryBatch, backtrack_sampling: str = "trajectory") -> Stepper:
        """A stepper over start histories of ``window_length`` states (on the model's device).

        Raises:
            ConfigError: the history holds another number of states, or an unknown ``backtrack_sampling``.
        """


def to_state_space(mean: Tensor, base: Tensor) -> Tensor:
    """Delta means (..., b, D + 1) relative to ``base`` (..., b, D) -> next-state means (reward column unchanged)."""
    return torch.cat([mean[..., :-1] + base, mean[..., -1:]], dim=-1)


def check_backtrack_sampling(backtrack_sampling: str) -> None:
    """Raises ConfigError unless ``backtrack_sampling`` is one of ``BACKTRACK_SAMPLING``."""
    if backtrack_sampling not in BACKTRACK_SAMPLING:
        raise ConfigError(
            f"rollout: 'backtrack_sampling' must be one of {BACKTRACK_SAMPLING}, got {backtrack_sampling!r}"
        )


def check_data_dims(model: DynamicsModel, source: str, obs_dim: int, action_dim: int, label: str | None = None) -> None:
    """Raises ConfigError unless data of ``obs_dim`` D and ``action_dim`` A (from ``source``, a dataset's spec or
    file, named in the message) fit the model's ``config`` dims; ``label`` names the model (default: its kind)."""
    if (model.config.obs_dim, model.config.action_dim) != (obs_dim, action_dim):
        raise ConfigError(
            f"{source}: obs/action dims ({obs_dim}, {action_dim}) differ from the {label or model.kind} model's "
            f"({model.config.obs_dim}, {model.config.action_dim})"
        )


def check_history(model: DynamicsModel, history: HistoryBatch) -> None:
    """Raises ConfigError unless ``history`` (B, M, ·) holds the model's ``window_length`` states."""
    if history.max_backtrack != model.window_length:
        raise ConfigError(
            f"rollout: history holds {history.max_backtrack} states, the {model.kind} model's "
            f"max_backtrack is {model.window_length}"
        )


class StepperWrapper:
    """A stepper that forwards everything to ``stepper``; subclasses override ``predict``/``advance`` to observe
    a roll-out (``rollout(..., observe=...)``) and call ``super()`` to keep it unchanged."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper, self.shared_choice = stepper, stepper.shared_choice

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """As ``Stepper.predict``."""
        return self.stepper.predict(obs, action)

    def choose(self, uniform: Tensor) -> Tensor:
        """As ``Stepper.choose``."""
        return self.stepper.choose(uniform)

    def sampled_candidates(self) -> Tensor | None:
        """As ``Stepper.sampled_candidates``."""
        return self.stepper.sampled_candidates()

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        """As ``Stepper.advance``."""
        self.stepper.advance(next_obs, keep)
