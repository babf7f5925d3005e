"""MujocoOracle against transitions recorded from the real v5 envs (random actions, seeded)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offline_mbrl.data.dataset import TransitionDataset
from offline_mbrl.envs.oracle import VELOCITY_CLIP, MujocoOracle, get_oracle
from offline_mbrl.errors import ConfigError, DatasetError

NUM_STEPS = 300


def record(env_id: str, include_x: bool = False, seed: int = 0) -> dict[str, np.ndarray]:
    """Steps of ``env_id`` with uniform random actions, resetting at termination; state before each step."""
    env = gym.make(env_id, exclude_current_positions_from_observation=not include_x)
    sim, rng = env.unwrapped, np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = {key: [] for key in ("obs", "actions", "next_obs", "rewards", "terminals", "qpos", "qvel")}
    for t in range(NUM_STEPS):
        action = rng.uniform(-1.0, 1.0, sim.model.nu)
        rows["qpos"].append(sim.data.qpos.copy())
        rows["qvel"].append(sim.data.qvel.copy())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(
            ("obs", "actions", "next_obs", "rewards", "terminals"), (obs, action, next_obs, reward, terminated)
        ):
            rows[key].append(value)
        obs = env.reset(seed=seed + t + 1)[0] if terminated or truncated else next_obs
    return {key: np.asarray(value) for key, value in rows.items()}


@pytest.fixture(scope="module", params=["Hopper-v5", "Walker2d-v5"])
def recorded(request):
    return request.param, record(request.param)


def clipped_rows(obs: np.ndarray, nq: int) -> np.ndarray:
    return (np.abs(obs[:, nq - 1 :]) >= VELOCITY_CLIP).any(axis=1)


def test_from_obs_reproduces_unclipped_rows_and_flags_clipped(recorded):
    env_id, rec = recorded
    oracle = get_oracle(env_id)
    result = oracle.step_from_obs(rec["obs"], rec["actions"])
    clipped = clipped_rows(rec["obs"], oracle.nq)
    np.testing.assert_array_equal(result.reconstructible, ~clipped)
    assert result.num_unreconstructible == clipped.sum()
    ok = ~clipped
    assert ok.sum() > 50
    np.testing.assert_allclose(result.next_obs[ok], rec["next_obs"][ok], atol=1e-6, rtol=0)
    np.testing.assert_allclose(result.rewards[ok], rec["rewards"][ok], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(result.terminals[ok], rec["terminals"][ok])
    assert np.isnan(result.next_obs[clipped]).all() and np.isnan(result.rewards[clipped]).all()


def test_from_state_reproduces_every_row_including_clipped(recorded):
    env_id, rec = recorded
    result = get_oracle(env_id).step_from_state(rec["qpos"], rec["qvel"], rec["actions"])
    assert result.reconstructible.all()
    np.testing.assert_allclose(result.next_obs, rec["next_obs"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(result.rewards, rec["rewards"], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(result.terminals, rec["terminals"])
    assert rec["terminals"].any()  # the recording covers terminal transitions


def test_walker2d_recording_has_clipped_rows_that_obs_cannot_rebuild():
    rec = record("Walker2d-v5")
    oracle = get_oracle("Walker2d-v5")
    clipped = clipped_rows(rec["obs"], oracle.nq)
    assert clipped.sum() >= 10
    # had the clipped rows been simulated anyway, their next obs would be wrong: the mask matters
    qpos, qvel = oracle.state_from_obs(rec["obs"][clipped])
    forced = oracle.step_from_state(qpos, qvel, rec["actions"][clipped])
    assert np.abs(forced.next_obs - rec["next_obs"][clipped]).max() > 1e-3


def test_halfcheetah_and_neorl_layout_with_x():
    for env_id in ("HalfCheetah-v5", "Hopper-v5"):
        rec = record(env_id, include_x=True, seed=3)
        oracle = get_oracle(env_id, include_x=True)
        assert oracle.obs_dim == oracle.nq + oracle.nv == rec["obs"].shape[1]
        result = oracle.step_from_obs(rec["obs"], rec["actions"])
        ok = result.reconstructible
        if env_id == "HalfCheetah-v5":
            assert ok.all()  # HalfCheetah never clips velocities
        np.testing.assert_allclose(result.next_obs[ok], rec["next_obs"][ok], atol=1e-6, rtol=0)
        assert np.abs(rec["obs"][:, 0]).max() > 0.1  # x really is part of the obs and reproduced


def test_step_transitions_prefers_stored_state():
    rec = record("Walker2d-v5")
    common = dict(
        obs=rec["obs"],
        actions=rec["actions"],
        rewards=rec["rewards"],
        next_obs=rec["next_obs"],
        terminals=rec["terminals"],
        timeouts=np.zeros(NUM_STEPS, bool),
    )
    oracle = get_oracle("Walker2d-v5")
    with_state = oracle.step_transitions(TransitionDataset(qpos=rec["qpos"], qvel=rec["qvel"], **common))
    obs_only = oracle.step_transitions(TransitionDataset(**common))
    assert with_state.reconstructible.all()
    np.testing.assert_array_equal(obs_only.reconstructible, ~clipped_rows(rec["obs"], oracle.nq))
    # stored states are float32 in a TransitionDataset
    np.testing.assert_allclose(with_state.next_obs, rec["next_obs"], atol=1e-3, rtol=0)


def test_rows_are_independent_of_batch_order():
    rec = record("Hopper-v5")
    oracle = get_oracle("Hopper-v5")
    forward = oracle.step_from_state(rec["qpos"], rec["qvel"], rec["actions"])
    reverse = oracle.step_from_state(rec["qpos"][::-1], rec["qvel"][::-1], rec["actions"][::-1])
    np.testing.assert_array_equal(forward.next_obs, reverse.next_obs[::-1])


def foot_friction(oracle: MujocoOracle) -> tuple[float, float]:
    model = oracle._sim.model
    return tuple(float(model.geom(name).friction[0]) for name in ("foot_geom", "foot_left_geom"))


def test_d4rl_model_changes_walker2d_friction_only():
    assert foot_friction(get_oracle("Walker2d-v5")) == (1.9, 1.9)
    assert foot_friction(get_oracle("Walker2d-v5", d4rl_model=True)) == (0.9, 1.9)
    hopper = get_oracle("Hopper-v5", d4rl_model=True)._sim.model.geom_friction
    np.testing.assert_array_equal(hopper, get_oracle("Hopper-v5")._sim.model.geom_friction)


def test_bad_input_raises_named_errors():
    oracle = get_oracle("Hopper-v5")
    with pytest.raises(ConfigError, match="Ant-v5"):
        MujocoOracle("Ant-v5")
    with pytest.raises(DatasetError, match=r"'obs' must have shape \(N, 11\), got \(4, 12\)"):
        oracle.step_from_obs(np.zeros((4, 12)), np.zeros((4, 3)))
    with pytest.raises(DatasetError, match="row counts differ"):
        oracle.step_from_obs(np.zeros((4, 11)), np.zeros((3, 3)))
    obs = np.zeros((4, 11))
    obs[2, 5] = np.nan
    with pytest.raises(DatasetError, match=r"'obs' has NaN/inf in 1 rows \(first \[2\]\)"):
        oracle.step_from_obs(obs, np.zeros((4, 3)))
    bad = TransitionDataset(
        obs=np.zeros((2, 17)),
        actions=np.zeros((2, 6)),
        rewards=np.zeros(2),
        next_obs=np.zeros((2, 17)),
        terminals=np.zeros(2),
        timeouts=np.zeros(2),
        source="walker.hdf5",
    )
    with pytest.raises(DatasetError, match="walker.hdf5"):
        oracle.step_transitions(bad)
