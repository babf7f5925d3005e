"""Shared fixtures: tiny datasets stepped from real MuJoCo (Hopper-v5), and an isolated Minari root."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch

from offline_mbrl.data import TransitionDataset
from tests.models_helpers import hopper_dataset as random_hopper_steps

# Tests use tiny tensors: one intra-op thread avoids OpenMP spin-waiting when jobs share the cores.
torch.set_num_threads(1)

HOPPER_MAX_EPISODE_STEPS = 30  # short, so episodes end by both terminals and timeouts
HOPPER_EPISODES = 8
OPTIONAL_FIELDS = ("qpos", "qvel", "collection_step")
ALL_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts") + OPTIONAL_FIELDS


def collect_hopper(seed: int = 0, num_episodes: int = HOPPER_EPISODES, **env_kwargs) -> TransitionDataset:
    """Uniform-random actions in Hopper-v5 (time limit 30 steps), qpos/qvel recorded before each
    action, collection_step = global environment step."""
    env = gym.make("Hopper-v5", max_episode_steps=HOPPER_MAX_EPISODE_STEPS, **env_kwargs)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in ALL_FIELDS}
    for episode in range(num_episodes):
        obs, _ = env.reset(seed=seed * 1000 + episode)
        done = False
        while not done:
            action = rng.uniform(-1.0, 1.0, size=env.action_space.shape)
            rows["qpos"].append(env.unwrapped.data.qpos.copy())
            rows["qvel"].append(env.unwrapped.data.qvel.copy())
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for name, value in (
                ("obs", obs),
                ("actions", action),
                ("rewards", reward),
                ("next_obs", next_obs),
                ("terminals", terminated),
                ("timeouts", truncated),
                ("collection_step", len(rows["collection_step"])),
            ):
                rows[name].append(value)
            obs, done = next_obs, terminated or truncated
    env.close()
    return TransitionDataset(
        **{name: np.asarray(values) for name, values in rows.items()},
        metadata={"env_id": "Hopper-v5"},
        source="hopper-fixture",
    )


@pytest.fixture(scope="session", autouse=True)
def minari_root(tmp_path_factory):
    """Every test reads and writes Minari datasets under a temporary root, never ~/.minari."""
    root = tmp_path_factory.mktemp("minari_datasets")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="session")
def hopper_dataset() -> TransitionDataset:
    """Real Hopper-v5 steps (11-dim obs): 8 episodes ending by terminals and by timeouts."""
    dataset = collect_hopper()
    assert dataset.terminals.any() and dataset.timeouts.any()
    return dataset


@pytest.fixture(scope="module")
def ds() -> TransitionDataset:
    """400 random Hopper-v5 steps (``tests.models_helpers.hopper_dataset()``), for the windows/models/roll-out
    tests."""
    return random_hopper_steps()


@pytest.fixture(scope="session")
def hopper_x_dataset() -> TransitionDataset:
    """As ``hopper_dataset`` but with the x position in the obs (12 dims), as NeoRL files have it."""
    dataset = collect_hopper(seed=1, exclude_current_positions_from_observation=False)
    assert dataset.obs_dim == 12 and dataset.terminals.any() and dataset.timeouts.any()
    return dataset


def assert_same_arrays(actual: TransitionDataset, expected: TransitionDataset, fields=ALL_FIELDS) -> None:
    """Every named field equal (values, shape and dtype); optional fields both None or both equal."""
    for name in fields:
        a, b = getattr(actual, name), getattr(expected, name)
        if b is None:
            assert a is None, name
            continue
        assert a is not None, name
        assert a.dtype == b.dtype and a.shape == b.shape, (name, a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.fixture
def assert_same():
    """The :func:`assert_same_arrays` helper, as a fixture."""
    return assert_same_arrays
