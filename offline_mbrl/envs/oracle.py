"""True one-step dynamics from the MuJoCo simulator: set the state, apply the action, read the next obs.

The reference every learned model is measured against (compounding error, uncertainty calibration).
Follows REFERENCE-datasets.md section 4.2: rebuild ``qpos``/``qvel`` from an observation (the excluded
root x does not change the dynamics, so x = 0), ``env.unwrapped.set_state`` and ``env.unwrapped.step``
(the unwrapped env, so no TimeLimit counting). Reward and termination are the v5 env's own.

Caveats, by design visible to the caller:
- Hopper and Walker2d observations hold ``clip(qvel, -10, 10)``. A row whose observed velocity has
  ``|v| >= 10`` may have been clipped, so its state cannot be rebuilt: such rows are flagged in
  ``OracleStep.reconstructible`` and get NaN next obs and reward. Stored ``qpos/qvel`` (D4RL
  ``infos/qpos``, our collected datasets) are never clipped: use ``step_from_state`` for them.
- Walker2d-v5's default model gives both feet friction 1.9; v2-v4 (and so D4RL) use right 0.9 / left 1.9.
  ``d4rl_model=True`` loads gymnasium's ``walker2d.xml`` (0.9 / 1.9) to match D4RL; the default is the
  v5 env as is, which our datasets are collected in.
- v5 pays the healthy reward only while healthy; gym v2/v3 (D4RL) also paid it on the unhealthy terminal
  step, so rewards of terminal D4RL rows differ by 1.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import gymnasium.envs.mujoco
import numpy as np
import torch

from ..data.dataset import TransitionDataset
from ..errors import ConfigError, DatasetError

VELOCITY_CLIP = 10.0
"""Hopper/Walker2d observations clip joint velocities at +-10 (gymnasium ``_get_obs``)."""

# env id -> whether its observation clips velocities at +-VELOCITY_CLIP
_SUPPORTED_ENVS = {"Hopper-v5": True, "Walker2d-v5": True, "HalfCheetah-v5": False}
_D4RL_XML = {"Walker2d-v5": "walker2d.xml"}  # D4RL-era model where v5's default differs


@dataclass(frozen=True)
class OracleStep:
    """Result of one true simulator step for N rows.

    Attributes:
        next_obs: (N, D) float64 true next observation; NaN rows where ``reconstructible`` is False.
        rewards: (N,) float64 v5 reward; NaN where ``reconstructible`` is False.
        terminals: (N,) bool v5 ``terminated`` flag; False where ``reconstructible`` is False, so
            read it only through the mask (``terminals[reconstructible]``).
        reconstructible: (N,) bool, False for rows whose state could not be rebuilt (clipped velocity).
    """

    next_obs: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    reconstructible: np.ndarray

    @property
    def num_unreconstructible(self) -> int:
        """Number of rows left as NaN because their state could not be rebuilt."""
        return int((~self.reconstructible).sum())


@dataclass(frozen=True)
class OracleRollout:
    """Closed-loop real-env trajectories of N starts over H steps (``MujocoOracle.rollout_from_state``).

    Attributes:
        rewards: (N, H) float64 v5 reward of step h; NaN once the trajectory has ended.
        terminals: (N, H) bool, step h ended the trajectory (``terminated``).
        alive: (N, H) bool, step h was taken.
    """

    rewards: np.ndarray
    terminals: np.ndarray
    alive: np.ndarray


class MujocoOracle:
    """One gymnasium MuJoCo v5 env used as the true dynamics for batches of rows.

    Args:
        env_id: ``"Hopper-v5"``, ``"Walker2d-v5"`` or ``"HalfCheetah-v5"``.
        include_x: observations hold the root x as ``obs[0]`` (NeoRL layout,
            ``exclude_current_positions_from_observation=False``); D = nq + nv instead of nq - 1 + nv.
        d4rl_model: load the MuJoCo model D4RL used where v5's differs (Walker2d feet friction 0.9 / 1.9).

    Raises:
        ConfigError: ``env_id`` is not supported.

    Source: REFERENCE-datasets.md section 4 (gymnasium 1.4 ``hopper_v5.py``, ``walker2d_v5.py``,
    ``half_cheetah_v5.py``; ``MujocoEnv.set_state``).
    """

    def __init__(self, env_id: str, *, include_x: bool = False, d4rl_model: bool = False) -> None:
        if env_id not in _SUPPORTED_ENVS:
            raise ConfigError(f"oracle: env_id '{env_id}' is not supported; use one of {sorted(_SUPPORTED_ENVS)}")
        kwargs = {"exclude_current_positions_from_observation": not include_x}
        if d4rl_model and env_id in _D4RL_XML:
            assets = os.path.join(os.path.dirname(gymnasium.envs.mujoco.__file__), "assets")
            kwargs["xml_file"] = os.path.join(assets, _D4RL_XML[env_id])
        self.env_id = env_id
        self.include_x = include_x
        self.d4rl_model = d4rl_model
        self.clips_velocity = _SUPPORTED_ENVS[env_id]
        self._env = gym.make(env_id, **kwargs)
        self._env.reset(seed=0)  # OrderEnforcing requires one reset before stepping
        self._sim = self._env.unwrapped
        self.nq, self.nv = int(self._sim.model.nq), int(self._sim.model.nv)
        self.action_dim = int(self._sim.model.nu)
        self.obs_dim = self.nq + self.nv - (0 if include_x else 1)

    def __repr__(self) -> str:
        return f"MujocoOracle({self.env_id!r}, include_x={self.include_x}, d4rl_model={self.d4rl_model})"

    def state_from_obs(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rebuild the simulator state from observations (root x = 0 when the obs excludes it).

        Args:
            obs: (N, D) observations.
        Returns:
            qpos (N, nq) and qvel (N, nv) float64. Velocities are the observed (possibly clipped) ones.
        Raises:
            DatasetError: wrong shape or non-finite values.
        """
        obs = self._rows("obs", obs, self.obs_dim)
        num_pos = self.nq if self.include_x else self.nq - 1
        qpos = obs[:, :num_pos]  # (N, nq) or (N, nq - 1)
        if not self.include_x:
            qpos = np.concatenate([np.zeros((len(obs), 1)), qpos], axis=1)  # root x = 0
        return qpos, obs[:, num_pos:]

    def reconstructible(self, obs: np.ndarray) -> np.ndarray:
        """(N,) bool: True where no observed velocity reaches the clip bound (|v| >= 10), so the state
        rebuilt by ``state_from_obs`` is the true one. Always True for HalfCheetah (no clipping).

        Raises:
            DatasetError: wrong shape or non-finite values.
        """
        return self._unclipped(self.state_from_obs(obs)[1])

    def step_from_obs(self, obs: np.ndarray, actions: np.ndarray) -> OracleStep:
        """True next obs, reward and termination for each (obs, action) row.

        Args:
            obs: (N, D) observations; actions: (N, A) actions.
        Returns:
            OracleStep; rows with a possibly clipped velocity are flagged and NaN (never simulated).
        Raises:
            DatasetError: wrong shapes, mismatched N or non-finite values.
        """
        qpos, qvel = self.state_from_obs(obs)
        return self._step_masked(qpos, qvel, actions, self._unclipped(qvel))

    def step_from_state(self, qpos: np.ndarray, qvel: np.ndarray, actions: np.ndarray) -> OracleStep:
        """True next obs, reward and termination from stored, unclipped simulator states.

        Args:
            qpos: (N, nq) positions including root x; qvel: (N, nv); actions: (N, A).
        Returns:
            OracleStep with every row reconstructible.
        Raises:
            DatasetError: wrong shapes, mismatched N or non-finite values.
        """
        qpos = self._rows("qpos", qpos, self.nq)
        return self._step_masked(qpos, qvel, actions, np.ones(len(qpos), dtype=bool))

    def rollout_from_state(
        self,
        qpos: np.ndarray,
        qvel: np.ndarray,
        policy: Callable[[torch.Tensor], torch.Tensor],
        horizon: int,
        device: torch.device | str = "cpu",
    ) -> OracleRollout:
        """Closed-loop roll-outs of ``policy`` in the real v5 env from stored simulator states.

        Per step the policy acts on the observations of the trajectories still running (one batched call), then
        each of them takes one true MuJoCo step; a trajectory stops at its first ``terminated`` step (no time
        limit within ``horizon``).

        Args:
            qpos: (N, nq) start positions including root x; qvel: (N, nv).
            policy: ``policy(obs (B, D) float32 tensor) -> actions (B, A)``, on ``device``.
            horizon: H ≥ 1, steps per trajectory.
            device: where the policy runs (observations go there once per step, actions come back to the CPU).
        Returns:
            OracleRollout with (N, H) arrays.
        Raises:
            DatasetError: wrong shapes or non-finite states. ConfigError: ``horizon`` < 1.
        """
        if int(horizon) != horizon or horizon < 1:
            raise ConfigError(f"oracle roll-out: 'horizon' must be an integer >= 1, got {horizon!r}")
        qpos, qvel = self._rows("qpos", qpos, self.nq).copy(), self._rows("qvel", qvel, self.nv).copy()
        n, sim = len(qpos), self._sim
        rewards, alive = np.full((n, horizon), np.nan), np.zeros((n, horizon), dtype=bool)
        terminals = np.zeros((n, horizon), dtype=bool)
        running = np.ones(n, dtype=bool)
        obs = np.empty((n, self.obs_dim))
        for i in range(n):
            sim.set_state(qpos[i], qvel[i])
            obs[i] = sim._get_obs()
        for h in range(horizon):
            rows = np.flatnonzero(running)
            if not len(rows):
                break
            with torch.no_grad():
                actions = policy(torch.as_tensor(obs[rows], dtype=torch.float32, device=device)).cpu().numpy()
            for row, action in zip(rows, actions):  # MuJoCo steps one state at a time
                sim.data.qacc_warmstart[:] = 0.0
                sim.set_state(qpos[row], qvel[row])
                obs[row], rewards[row, h], terminals[row, h], _, _ = sim.step(action)
                qpos[row], qvel[row] = sim.data.qpos, sim.data.qvel
            alive[rows, h] = True
            running[rows] = ~terminals[rows, h]
        return OracleRollout(rewards, terminals, alive)

    def step_transitions(self, dataset: TransitionDataset) -> OracleStep:
        """Oracle step for every row of a dataset: from its ``qpos/qvel`` where stored, else from ``obs``.

        Raises:
            DatasetError: the dataset's shapes do not match this env (message names ``dataset.source``).
        """
        try:
            if dataset.qpos is not None and dataset.qvel is not None:
                return self.step_from_state(dataset.qpos, dataset.qvel, dataset.actions)
            return self.step_from_obs(dataset.obs, dataset.actions)
        except DatasetError as exc:
            raise DatasetError(f"{dataset.source}: {exc}") from exc

    def _unclipped(self, qvel: np.ndarray) -> np.ndarray:
        if not self.clips_velocity:
            return np.ones(len(qvel), dtype=bool)
        return ~(np.abs(qvel) >= VELOCITY_CLIP).any(axis=1)  # (N,)

    def _step_masked(self, qpos: np.ndarray, qvel: np.ndarray, actions: np.ndarray, mask: np.ndarray) -> OracleStep:
        qvel = self._rows("qvel", qvel, self.nv)
        actions = self._rows("actions", actions, self.action_dim)
        if not len(qpos) == len(qvel) == len(actions):
            raise DatasetError(
                f"{self!r}: row counts differ: state {len(qpos)}, qvel {len(qvel)}, actions {len(actions)}"
            )
        n = len(actions)
        next_obs = np.full((n, self.obs_dim), np.nan)  # (N, D)
        rewards = np.full(n, np.nan)
        terminals = np.zeros(n, dtype=bool)
        rows = np.flatnonzero(mask)
        next_obs[rows], rewards[rows], terminals[rows] = self._simulate(qpos[rows], qvel[rows], actions[rows])
        return OracleStep(next_obs, rewards, terminals, mask.copy())

    def _simulate(
        self, qpos: np.ndarray, qvel: np.ndarray, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One v5 step per row; the loop over rows is unavoidable (MuJoCo steps one state at a time)."""
        sim, data = self._sim, self._sim.data
        next_obs = np.empty((len(actions), self.obs_dim))
        rewards = np.empty(len(actions))
        terminals = np.empty(len(actions), dtype=bool)
        for i in range(len(actions)):
            data.qacc_warmstart[:] = 0.0  # each row independent of the previous one
            sim.set_state(qpos[i], qvel[i])
            next_obs[i], rewards[i], terminals[i], _, _ = sim.step(actions[i])
        return next_obs, rewards, terminals

    def _rows(self, name: str, value: np.ndarray, width: int) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise DatasetError(f"{self!r}: '{name}' must have shape (N, {width}), got {arr.shape}")
        if not np.isfinite(arr).all():
            bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
            raise DatasetError(f"{self!r}: '{name}' has NaN/inf in {len(bad)} rows (first {bad[:5].tolist()})")
        return arr


@functools.cache
def get_oracle(env_id: str, *, include_x: bool = False, d4rl_model: bool = False) -> MujocoOracle:
    """The process-wide ``MujocoOracle`` for these arguments (one env per process, built on first use).

    Raises:
        ConfigError: ``env_id`` is not supported.
    """
    return MujocoOracle(env_id, include_x=include_x, d4rl_model=d4rl_model)
