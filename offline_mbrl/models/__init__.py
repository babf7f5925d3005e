"""Dynamics models: ADM (any-step GRU), probabilistic ensemble, bootstrapping RNN, and the registry that builds
them by kind (used by checkpoints and the CLI)."""

from __future__ import annotations

from ..errors import ConfigError
from .adm import ADM
from .boot_rnn import BootRNN
from .ensemble import EnsembleConfig, ProbabilisticEnsemble
from .layers import RecurrentConfig

# kind -> (model class, config class)
MODEL_CLASSES = {
    "adm": (ADM, RecurrentConfig),
    "boot_rnn": (BootRNN, RecurrentConfig),
    "ensemble": (ProbabilisticEnsemble, EnsembleConfig),
}


def build_model(kind: str, obs_dim: int, action_dim: int, **config_fields):
    """A fresh model of ``kind`` (``adm``, ``boot_rnn``, ``ensemble``) with default sizes except ``config_fields``.

    Raises:
        ConfigError: unknown kind, or a field its config does not have / rejects.
    """
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"model: unknown kind {kind!r}; choose one of {sorted(MODEL_CLASSES)}")
    model_cls, config_cls = MODEL_CLASSES[kind]
    try:
        return model_cls(config_cls(obs_dim=obs_dim, action_dim=action_dim, **config_fields))
    except TypeError as exc:
        raise ConfigError(f"model '{kind}': {exc}") from exc
