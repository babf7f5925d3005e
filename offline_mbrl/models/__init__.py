"""Dynamics models: ADM (any-step GRU), probabilistic ensemble, bootstrapping RNN, their public interface
(``base.DynamicsModel``, ``base.Stepper``) and the registry that builds them by kind (used by checkpoints, the
CLI and the training harness)."""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from .adm import ADM
from .base import DynamicsModel, Stepper
from .boot_rnn import BootRNN
from .ensemble import EnsembleConfig, ProbabilisticEnsemble
from .layers import RecurrentConfig

__all__ = ["MODEL_CLASSES", "DynamicsModel", "Stepper", "build_config", "build_model", "fields_from", "model_fields"]

# kind -> (model class, config class)
MODEL_CLASSES = {
    "adm": (ADM, RecurrentConfig),
    "boot_rnn": (BootRNN, RecurrentConfig),
    "ensemble": (ProbabilisticEnsemble, EnsembleConfig),
}


def _classes(kind: str) -> tuple[type, type]:
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"model: unknown kind {kind!r}; choose one of {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[kind]


def model_fields(kind: str) -> tuple[str, ...]:
    """The size fields of ``kind``'s config (all but ``obs_dim`` and ``action_dim``).

    Raises:
        ConfigError: unknown kind.
    """
    return tuple(f.name for f in dataclasses.fields(_classes(kind)[1]) if f.name not in ("obs_dim", "action_dim"))


def fields_from(kind: str, section: object) -> dict[str, object]:
    """``kind``'s config fields read from a settings object such as the run config's ``dynamics`` section: each
    field ``name`` from ``section.<kind>_<name>`` if it exists (``ensemble_hidden_dims``), else ``section.<name>``;
    fields the section lacks keep their defaults.

    Raises:
        ConfigError: unknown kind.
    """
    fields = {}
    for name in model_fields(kind):
        for key in (f"{kind}_{name}", name):
            if hasattr(section, key):
                fields[name] = getattr(section, key)
                break
    return fields


def build_config(kind: str, obs_dim: int, action_dim: int, **config_fields):
    """The config of a ``kind`` model (``RecurrentConfig`` or ``EnsembleConfig``) with default sizes except
    ``config_fields``.

    Raises:
        ConfigError: unknown kind, or a field its config does not have / rejects.
    """
    config_cls = _classes(kind)[1]
    try:
        return config_cls(obs_dim=obs_dim, action_dim=action_dim, **config_fields)
    except TypeError as exc:
        raise ConfigError(f"model '{kind}': {exc}") from exc


def build_model(kind: str, obs_dim: int, action_dim: int, **config_fields) -> DynamicsModel:
    """A fresh model of ``kind`` (``adm``, ``boot_rnn``, ``ensemble``) with default sizes except ``config_fields``.

    Raises:
        ConfigError: unknown kind, or a field its config does not have / rejects.
    """
    return _classes(kind)[0](build_config(kind, obs_dim, action_dim, **config_fields))
