"""Real gymnasium MuJoCo environments: construction, batched policy evaluation, and D4RL-style
transition collection with the simulator state before each action.

Episodes of several environments are stepped in lock-step so that the policy runs on a batch of
observations at once (one forward pass per time step instead of one per environment).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from ..data.dataset import TransitionDataset
from ..errors import ConfigError
from ..persist import seeded

# a policy maps observations (B, D) float32 tensor -> actions (B, A) tensor
Policy = Callable[[torch.Tensor], torch.Tensor]


#: training episodes of the online loops reset with seeds from here up; every evaluation seed lies far below (the
#: loops' evaluation seeds are under 2**31 + ``eval_episodes``)
TRAINING_SEEDS = 2**40


def training_episode_seed(run_seed: int, episode: int) -> int:
    """The env reset seed of training episode ``episode`` (0-based) of an online run seeded ``run_seed``:
    ``TRAINING_SEEDS + run_seed * 2**32 + episode``.

    Distinct for every (run seed, episode) pair with fewer than 2**32 episodes, and above every evaluation seed (the
    loops call ``evaluate_policy`` with base seeds below 2**31, episode i adding i), so no training episode starts
    from the reset of an evaluation episode or of another seed's training episode.

    Raises:
        ValueError: a negative ``run_seed`` or ``episode``, or ``episode`` >= 2**32.
    """
    if run_seed < 0 or not 0 <= episode < 2**32:
        raise ValueError(
            f"training_episode_seed: need run_seed >= 0 and 0 <= episode < 2**32, got {run_seed}, {episode}"
        )
    return TRAINING_SEEDS + run_seed * 2**32 + episode


def make_env(env_id: str, seed: int | None = None, **env_kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **env_kwargs)``, reset once with ``seed`` so it can be stepped."""
    env = gym.make(env_id, **env_kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def env_spaces(env_id: str, env_kwargs: dict | None = None) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """The observation and action spaces of ``env_id`` (the env is built once and closed).

    Raises:
        ConfigError: ``env_id`` is not a registered gymnasium id, cannot be built with ``env_kwargs``, or has
            non-Box (non-array) spaces; the message names the id.
    """
    try:
        env = gym.make(env_id, **(env_kwargs or {}))
    except (gym.error.Error, TypeError, ValueError, ImportError) as exc:
        raise ConfigError(f"env '{env_id}': cannot build this gymnasium environment ({exc})") from exc
    spaces = env.observation_space, env.action_space
    env.close()
    for name, space in zip(("observation", "action"), spaces):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"env '{env_id}': {name} space {space} is not a flat Box; only vector spaces work")
    return spaces


def _sim_state(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    data = env.unwrapped.data
    return data.qpos.copy(), data.qvel.copy()


def _act(policy: Policy, obs: np.ndarray, device: torch.device | str) -> np.ndarray:
    with torch.no_grad():
        return policy(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()


def evaluate_policy(
    policy: Policy,
    env_id: str,
    n_episodes: int = 10,
    seed: int = 0,
    device: torch.device | str = "cpu",
    env_kwargs: dict | None = None,
) -> np.ndarray:
    """Undiscounted return of ``n_episodes`` full episodes, run as one lock-step batch.

    Episode ``i`` uses its own environment reset with seed ``seed + i``; the policy is called on
    the ``(live, D)`` batch of observations each step. Returns ``(n_episodes,)`` float64 returns.
    """
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(n_episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(n_episodes)
    live = np.arange(n_episodes)
    while live.size:
        actions = _act(policy, obs[live], device)
        still = []
        for j, i in enumerate(live):
            o, r, terminated, truncated, _ = envs[i].step(actions[j])
            obs[i] = o
            returns[i] += r
            if not (terminated or truncated):
                still.append(i)
        live = np.asarray(still, dtype=np.int64)
    for env in envs:
        env.close()
    return returns


def collect_transitions(
    policy: Policy | None,
    env_id: str,
    num_steps: int,
    seed: int = 0,
    num_envs: int = 10,
    device: torch.device | str = "cpu",
    env_kwargs: dict | None = None,
    metadata: dict | None = None,
) -> TransitionDataset:
    """Roll out ``policy`` (``None``: uniform random actions) for exactly ``num_steps`` transitions.

    D4RL recipe (REFERENCE-datasets.md 1.2): every row records ``qpos``/``qvel`` *before* the
    action, ``terminal`` when the environment terminates, ``timeout`` when the time limit truncates.
    ``num_envs`` environments (seeds ``seed + i``) each collect ``num_steps / num_envs`` steps in
    lock-step; each environment's last, unfinished episode is cut at its budget and its last row is
    flagged ``timeout`` (the budget is a time limit). Rows are ordered environment by environment,
    so episodes stay contiguous. The policy's own sampling is seeded with ``seed`` too (torch's global
    RNG, restored afterwards), so the same arguments give the same dataset.
    """
    with seeded(seed, device):
        return _collect(policy, env_id, num_steps, seed, num_envs, device, env_kwargs, metadata)


def _collect(
    policy: Policy | None,
    env_id: str,
    num_steps: int,
    seed: int,
    num_envs: int,
    device: torch.device | str,
    env_kwargs: dict | None,
    metadata: dict | None,
) -> TransitionDataset:
    budgets = np.full(num_envs, num_steps // num_envs)
    budgets[: num_steps % num_envs] += 1
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(num_envs)]
    rng = np.random.default_rng(seed)
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    rows: list[list[tuple]] = [[] for _ in range(num_envs)]
    live = np.flatnonzero(budgets > 0)
    while live.size:
        if policy is None:
            low, high = envs[0].action_space.low, envs[0].action_space.high
            actions = rng.uniform(low, high, size=(live.size, len(low))).astype(np.float32)
        else:
            actions = _act(policy, obs[live], device)
        for j, i in enumerate(live):
            qpos, qvel = _sim_state(envs[i])
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[j])
            last = len(rows[i]) + 1 == budgets[i]
            rows[i].append(
                (
                    obs[i].copy(),
                    actions[j],
                    reward,
                    next_obs,
                    terminated,
                    (truncated or last) and not terminated,
                    qpos,
                    qvel,
                )
            )
            obs[i] = envs[i].reset()[0] if (terminated or truncated) else next_obs
        live = np.asarray([i for i in live if len(rows[i]) < budgets[i]], dtype=np.int64)
    for env in envs:
        env.close()
    cols = list(zip(*[row for env_rows in rows for row in env_rows]))
    return TransitionDataset(
        obs=np.stack(cols[0]),
        actions=np.stack(cols[1]),
        rewards=np.asarray(cols[2]),
        next_obs=np.stack(cols[3]),
        terminals=np.asarray(cols[4]),
        timeouts=np.asarray(cols[5]),
        qpos=np.stack(cols[6]),
        qvel=np.stack(cols[7]),
        metadata={"env_id": env_id, **(metadata or {})},
        source=f"<collected {env_id}>",
    )
