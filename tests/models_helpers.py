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
from offline_mbrl.uncertainty import get_uncertainty


@lru_cache(maxsize=8)
def env_dataset(
    env_id: str = "Hopper-v5", num_steps: int = 400, seed: int = 0, max_episode_steps: int = 30, **make_kwargs
) -> TransitionDataset:
    """``num_steps`` real MuJoCo transitions with uniform random actions (seeded).

    Episodes end by termination (e.g. the hopper falls) or by a timeout after ``max_episode_steps``;
    the last episode is cut by the data end (no flag), as in real files.
    """
    env = gym.make(env_id, max_episode_steps=max_episode_steps, **make_kwargs)
    env.action_space.seed(seed)
    rows = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts")}
    obs, _ = env.reset(seed=seed)
    for _ in range(num_steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, terminated, truncated and not terminated)):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return TransitionDataset(
        **{k: np.asarray(v) for k, v in rows.items()},
        metadata={"env_id": env_id},
        source=f"{env_id}-random-{num_steps}-seed{seed}",
    )


def hopper_dataset(num_steps: int = 400, seed: int = 0) -> TransitionDataset:
    """400 random Hopper-v5 steps (about 19 episodes, terminals and timeouts)."""
    return env_dataset("Hopper-v5", num_steps, seed)


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


def recompute_rollout(
    model,
    policy,
    history,
    rollout_length: int,
    generator: torch.Generator,
    penalty: str | None = None,
    shared_choice: bool = False,
) -> dict[str, torch.Tensor]:
    """From-scratch reference roll-out (no termination), row by row in Python, drawing the same random numbers
    as ``offline_mbrl.rollout``. Each step re-runs every candidate sequence: ADM ``model(s_{τ+1-k}, a_{τ+1-k:τ})``
    for every available k, the bootstrapping RNN ``model(s_{τ-n+1:τ}, a_{τ-n+1:τ})`` on its last n ≤ m pairs."""
    quantifier = get_uncertainty(penalty) if penalty else None
    m, b_total = history.max_backtrack, len(history)
    states = [list(history.obs[b, m - n :]) for b, n in enumerate(history.lengths.tolist())]
    actions = [list(history.actions[b, m - n :]) for b, n in enumerate(history.lengths.tolist())]
    out = {key: [] for key in ("obs", "actions", "next_obs", "rewards", "penalties")}
    model.eval()
    with torch.no_grad():
        for _ in range(rollout_length):
            obs = torch.stack([s[-1] for s in states])
            action = policy(obs)
            uniform = torch.rand(1 if shared_choice else b_total, generator=generator).expand(b_total)
            noise = torch.randn(b_total, obs.shape[1] + 1, generator=generator)
            for b in range(b_total):
                actions[b].append(action[b])
                n = min(len(states[b]), m)
                if isinstance(model, ADM):
                    outputs = [model(states[b][-k][None], torch.stack(actions[b][-k:])[None]) for k in range(1, n + 1)]
                    bases = [states[b][-k] for k in range(1, n + 1)]
                else:
                    outputs = [model(torch.stack(states[b][-n:])[None], torch.stack(actions[b][-n:])[None])]
                    bases = [states[b][-1]]
                means = torch.stack(
                    [torch.cat([o[0][0, -1, :-1] + base, o[0][0, -1, -1:]]) for o, base in zip(outputs, bases)]
                )
                logvars = torch.stack([o[1][0, -1] for o in outputs])
                pick = min(int((uniform[b] * len(means)).long()), len(means) - 1)
                sample = means[pick] + torch.exp(0.5 * logvars[pick]) * noise[b]
                for key, value in zip(
                    out,
                    (
                        obs[b],
                        action[b],
                        sample[:-1],
                        sample[-1],
                        quantifier(means[:, None], logvars[:, None])[0] if quantifier else 0 * sample[-1],
                    ),
                ):
                    out[key].append(value)
                states[b].append(sample[:-1])
    return {key: torch.stack(value) for key, value in out.items()}
