"""Small real-Hopper datasets and tiny models for the windows/models/roll-out tests."""

from __future__ import annotations

from functools import lru_cache

import gymnasium as gym
import numpy as np
import torch

from offline_mbrl.data.dataset import TransitionDataset
from offline_mbrl.models.adm import ADM
from offline_mbrl.models.boot_rnn import BootRNN
from offline_mbrl.models.checkpoint import load_model, save_model
from offline_mbrl.models.ensemble import EnsembleConfig, ProbabilisticEnsemble
from offline_mbrl.models.layers import RecurrentConfig


@lru_cache(maxsize=4)
def hopper_dataset(num_steps: int = 400, seed: int = 0, max_episode_steps: int = 30) -> TransitionDataset:
    """``num_steps`` real Hopper-v5 transitions with uniform random actions (seeded).

    Episodes end by termination (the hopper falls) or by a timeout after ``max_episode_steps``;
    the last episode is cut by the data end (no flag), as in real files.
    """
    env = gym.make("Hopper-v5", max_episode_steps=max_episode_steps)
    env.action_space.seed(seed)
    rows = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts")}
    obs, _ = env.reset(seed=seed)
    for _ in range(num_steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, terminated, truncated and not terminated)):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return TransitionDataset(**{k: np.asarray(v) for k, v in rows.items()}, metadata={"env_id": "Hopper-v5"},
                             source=f"hopper-random-{num_steps}-seed{seed}")


def reference_mask(ds: TransitionDataset, m: int) -> np.ndarray:
    """(N, m) loop reference: window step j of row t is valid iff rows t … t+j-1 hold no episode end."""
    ends = ds.episode_ends
    mask = np.zeros((len(ds), m), dtype=bool)
    for t in range(len(ds)):
        for j in range(m):
            if t + j >= len(ds):
                break
            mask[t, j] = True
            if ends[t + j]:
                break
    return mask


def tiny_recurrent_config(obs_dim: int = 11, action_dim: int = 3, max_backtrack: int = 4, **kw) -> RecurrentConfig:
    kw = {"hidden_dim": 16, "gru_layers": 2, "head_blocks": 2, **kw}
    return RecurrentConfig(obs_dim=obs_dim, action_dim=action_dim, max_backtrack=max_backtrack, **kw)


def tiny_adm(seed: int = 0, **kw) -> ADM:
    torch.manual_seed(seed)
    return ADM(tiny_recurrent_config(**kw))


def tiny_boot_rnn(seed: int = 0, **kw) -> BootRNN:
    torch.manual_seed(seed)
    return BootRNN(tiny_recurrent_config(**kw))


def tiny_ensemble(seed: int = 0, obs_dim: int = 11, action_dim: int = 3, **kw) -> ProbabilisticEnsemble:
    torch.manual_seed(seed)
    kw = {"ensemble_size": 4, "num_elites": 2, "hidden_dims": (16, 16), "weight_decays": (1e-5, 2e-5, 3e-5), **kw}
    return ProbabilisticEnsemble(EnsembleConfig(obs_dim=obs_dim, action_dim=action_dim, **kw))


def fit_stats(model: torch.nn.Module, dataset: TransitionDataset) -> torch.nn.Module:
    """Give ``model`` the dataset's input statistics (what ``fit`` does first)."""
    model.normalizer.set_stats(dataset.normalization_stats())
    return model


def linear_policy(obs_dim: int = 11, action_dim: int = 3, seed: int = 0):
    """A deterministic policy ``tanh(obs @ W)`` (B, D) -> (B, A) that draws no random numbers."""
    weight = torch.randn(obs_dim, action_dim, generator=torch.Generator().manual_seed(seed)) * 0.3
    return lambda obs: torch.tanh(obs @ weight.to(obs.device))


def assert_checkpoint_roundtrip(model: torch.nn.Module, call, tmp_path) -> torch.nn.Module:
    """save → load gives the same class, config, state and outputs ``call(model)``; no temp file is left."""
    path = tmp_path / f"{model.kind}.pt"
    save_model(model, path)
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    model.eval()
    with torch.no_grad():
        for a, b in zip(call(model), call(loaded)):
            assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    return loaded
