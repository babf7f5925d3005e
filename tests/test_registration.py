"""MBPO's truncated-observation Ant and Humanoid (``envs/registration.py``): the observation is exactly qpos[2:] and
qvel of the v5 simulator, the v5 time limit is kept, and registering again leaves the ids as they are."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offline_mbrl.envs.registration import TRUNCATED_OBS_ENVS, register_truncated_obs_envs


@pytest.mark.parametrize(
    "env_id, obs_dim, action_dim", [("AntTruncatedObs-v5", 27, 8), ("HumanoidTruncatedObs-v5", 45, 17)]
)
def test_truncated_observation_is_qpos_without_xy_and_qvel(env_id, obs_dim, action_dim):
    env = gym.make(env_id)
    assert env.observation_space.shape == (obs_dim,) and env.action_space.shape == (action_dim,)
    assert env.spec.max_episode_steps == gym.spec(TRUNCATED_OBS_ENVS[env_id][0]).max_episode_steps == 1000
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        data = env.unwrapped.data
        np.testing.assert_array_equal(obs, np.concatenate([data.qpos[2:], data.qvel]))
        obs, *_ = env.step(env.action_space.sample())
    env.close()


def test_registering_again_keeps_the_ids():
    before = {env_id: gym.spec(env_id) for env_id in TRUNCATED_OBS_ENVS}
    register_truncated_obs_envs()
    assert all(gym.spec(env_id) is spec for env_id, spec in before.items())
