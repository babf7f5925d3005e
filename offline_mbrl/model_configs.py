"""Sizes and fitting settings of the dynamics models: the one declaration of each (``models.layers``,
``models.ensemble`` and ``models.fit`` use them; the run config's ``dynamics`` section takes its defaults from
them). Torch-free and importing no model, so the run config can build on it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .models.base import DynamicsModel

#: largest m: the history windows hold N x m x D floats (m = 5 000 000 asked for 246 GB on a 1M-row dataset)
MAX_BACKTRACK = 64
#: ``episodes``: whole random episodes held out; ``last``: the last rows in buffer order (official ADMPO)
HOLDOUT_SPLITS = ("episodes", "last")


@dataclass(frozen=True)
class RecurrentConfig:
    """Sizes of ADM / the bootstrapping RNN. Defaults are the official ADMPO architecture (GRU 3 × 200, four
    residual Swish blocks with dropout 0.1).

    Fields:
        obs_dim, action_dim: D and A.
        max_backtrack: m, the longest backtrack (ADM) or history (bootstrapping RNN).
        hidden_dim, gru_layers, head_blocks, dropout: network sizes.
        rollout_dropout: keep head dropout on during roll-outs and penalties (official ADMPO-OFF: on,
            because its trainer never calls ``eval()``; REFERENCE-algorithms 2.2).
    """

    obs_dim: int
    action_dim: int
    max_backtrack: int = 5
    hidden_dim: int = 200
    gru_layers: int = 3
    head_blocks: int = 4
    dropout: float = 0.1
    rollout_dropout: bool = True

    def __post_init__(self) -> None:
        for name in ("obs_dim", "action_dim", "max_backtrack", "hidden_dim", "gru_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model config: field '{name}' must be >= 1, got {getattr(self, name)}")
        if self.max_backtrack > MAX_BACKTRACK:
            raise ConfigError(
                f"model config: field 'max_backtrack' must be <= {MAX_BACKTRACK}, got {self.max_backtrack}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model config: field 'dropout' must be in [0, 1), got {self.dropout}")

    @property
    def window_length(self) -> int:
        """m = ``max_backtrack``: states of a roll-out start history and steps of a training window."""
        return self.max_backtrack


@dataclass(frozen=True)
class EnsembleConfig:
    """Ensemble sizes (defaults: OfflineRL-Kit MOPO).

    Fields:
        obs_dim, action_dim: D and A.
        ensemble_size: E members; num_elites: members used in roll-outs (lowest holdout MSE).
        hidden_dims: widths of the hidden layers.
        weight_decays: one L2 coefficient per layer (hidden layers, then the output layer), applied to
            weights only as ``wd · 0.5 · Σ W²``.
    """

    obs_dim: int
    action_dim: int
    ensemble_size: int = 7
    num_elites: int = 5
    hidden_dims: tuple[int, ...] = (200, 200, 200, 200)
    weight_decays: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        object.__setattr__(self, "weight_decays", tuple(self.weight_decays))
        if not 1 <= self.num_elites <= self.ensemble_size:
            raise ConfigError(
                f"ensemble config: 'num_elites' must be in [1, ensemble_size={self.ensemble_size}], "
                f"got {self.num_elites}"
            )
        if len(self.weight_decays) != len(self.hidden_dims) + 1:
            raise ConfigError(
                f"ensemble config: 'weight_decays' needs {len(self.hidden_dims) + 1} values "
                f"(hidden layers + output), got {len(self.weight_decays)}"
            )

    @property
    def window_length(self) -> int:
        """1: roll-outs start from single states and train on single transitions (no backtracking)."""
        return 1


@dataclass(frozen=True)
class FitConfig:
    """Training settings (defaults: official ADMPO; ``for_model`` gives the ensemble's MBPO values).

    Fields:
        batch_size: windows (or transitions per member) per gradient step.
        learning_rate: Adam step size.
        max_epochs: cap on epochs (None: stop only by patience).
        patience: epochs without an accepted snapshot before stopping.
        min_improvement: relative holdout improvement a channel needs (0 for ADM, 0.01 for the ensemble).
        holdout_fraction, max_holdout: holdout size ``min(int(fraction · N), max_holdout)`` rows.
        holdout_split: ``"episodes"`` (whole random episodes, default) or ``"last"`` (the last rows in
            buffer order, official ADMPO).
        eval_batch_size: windows per forward pass when computing holdout errors.
        validation_batch: how each epoch's holdout errors are measured. None (default): every holdout window,
            model in eval mode (deterministic). B: one batch of B windows drawn per channel, model in train mode
            (dropout on), the official ADMPO validation (``learn_dynamics_from``: 256 windows per k). Its noise is
            what ends an official ADM fit: under the any-improvement rule a deterministic error that still falls
            by a fraction of a percent per epoch keeps the fit going (our hopper-medium ADM fit still improved at
            epoch 413; the batch rule replayed on its record stopped at a median epoch 169 to 250,
            ``analysis/official_stop.py``).
        seed: seeds the split, the batch sampling and the network's dropout (in a scope: the caller's torch
            random stream is the same after ``fit`` as before).
    """

    batch_size: int = 256
    learning_rate: float = 3e-4
    max_epochs: int | None = None
    patience: int = 25
    min_improvement: float = 0.0
    holdout_fraction: float = 0.2
    max_holdout: int = 1000
    holdout_split: str = "episodes"
    eval_batch_size: int = 4096
    validation_batch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.holdout_split not in HOLDOUT_SPLITS:
            raise ConfigError(
                f"fit config: 'holdout_split' must be one of {HOLDOUT_SPLITS}, got {self.holdout_split!r}"
            )
        if self.max_epochs is not None and self.max_epochs < 1:
            raise ConfigError(f"fit config: 'max_epochs' must be >= 1 or None, got {self.max_epochs}")
        if self.validation_batch is not None and self.validation_batch < 1:
            raise ConfigError(f"fit config: 'validation_batch' must be >= 1 or None, got {self.validation_batch}")
        for name in ("batch_size", "patience", "max_holdout", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"fit config: '{name}' must be >= 1, got {getattr(self, name)}")

    @classmethod
    def for_model(cls, model: DynamicsModel, **overrides) -> FitConfig:
        """Defaults for ``model.selection`` (``per_member``, the ensemble: lr 1e-3, patience 5, 1 % rule) with
        ``overrides`` applied."""
        per_member = model.selection == "per_member"
        base = cls(learning_rate=1e-3, patience=5, min_improvement=0.01) if per_member else cls()
        return replace(base, **overrides)
