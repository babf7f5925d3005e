import numpy as np
import pytest
import torch

from offline_mbrl.envs.termination import task_name, termination_fn
from offline_mbrl.errors import ConfigError
from tests.models_helpers import env_dataset


def apply(name, ds):
    obs, actions, next_obs = (torch.from_numpy(x) for x in (ds.obs, ds.actions, ds.next_obs))
    return termination_fn(name)(obs, actions, next_obs).numpy()


@pytest.mark.parametrize(
    "name, env_id, kwargs, falls",
    [
        ("Hopper-v5", "Hopper-v5", {}, 5),
        ("walker2d-medium-v2", "Walker2d-v5", {}, 5),
        ("neorl-hopper", "Hopper-v5", {"exclude_current_positions_from_observation": False}, 5),
        ("neorl:Walker2d-v3-low", "Walker2d-v5", {"exclude_current_positions_from_observation": False}, 5),
        ("InvertedPendulum-v5", "InvertedPendulum-v5", {}, 5),
        ("HumanoidTruncatedObs-v5", "HumanoidTruncatedObs-v5", {}, 5),
        ("Humanoid-v5", "Humanoid-v5", {}, 5),
        ("AntTruncatedObs-v5", "AntTruncatedObs-v5", {}, 1),  # random actions rarely tip the ant over
        ("Ant-v5", "Ant-v5", {}, 1),
    ],
)
def test_matches_the_real_environment(name, env_id, kwargs, falls):
    ds = env_dataset(env_id, 300, 1, 1000, **kwargs)
    assert ds.terminals.sum() >= falls  # the test sees real falls
    np.testing.assert_array_equal(apply(name, ds), ds.terminals)


@pytest.mark.parametrize("name, dim", [("AntTruncatedObs-v5", 27), ("HumanoidTruncatedObs-v5", 45)])
def test_ant_and_humanoid_height_bounds(name, dim):
    """Ant: 0.2 <= z <= 1.0 inclusive (its ``is_healthy``); Humanoid: 1.0 < z < 2.0 strict."""
    z = torch.tensor([0.2, 1.0, 0.19, 1.01, 1.5, 2.0])
    next_obs = torch.zeros(len(z), dim)
    next_obs[:, 0] = z
    done = termination_fn(name)(next_obs, torch.zeros(len(z), 8), next_obs).tolist()
    expected = {27: [False, False, True, True, True, True], 45: [True, True, True, False, False, True]}[dim]
    assert done == expected


@pytest.mark.parametrize("name, dim", [("HalfCheetah-v5", 17), ("neorl-halfcheetah", 18)])
def test_halfcheetah_ends_only_on_blow_ups(name, dim):
    next_obs = torch.zeros(4, dim)
    next_obs[1, 3] = 150.0  # model blow-up
    next_obs[2, 0] = float("nan")
    done = termination_fn(name)(next_obs, torch.zeros(4, 6), next_obs)
    assert done.tolist() == [False, name == "HalfCheetah-v5", True, False]


def test_inverted_pendulum_ends_past_the_angle_bound():
    next_obs = torch.zeros(5, 4)
    next_obs[:, 1] = torch.tensor([0.2, -0.2, 0.2001, -0.25, float("nan")])
    done = termination_fn("InvertedPendulum-v5")(next_obs, torch.zeros(5, 1), next_obs)
    assert done.tolist() == [False, False, True, True, True]


def test_hopper_rules_at_the_bounds():
    healthy = torch.tensor([1.0, 0.0] + [0.0] * 9)
    cases = {
        (0, 0.7): True,
        (0, 0.71): False,
        (1, 0.2): True,
        (1, -0.19): False,
        (5, -100.0): True,
        (5, 99.0): False,
        (5, float("inf")): True,
    }
    for (dim, value), expected in cases.items():
        o = healthy.clone()
        o[dim] = value
        assert termination_fn("hopper")(o[None], torch.zeros(1, 3), o[None]).item() is expected, (dim, value)


def test_walker2d_rules_at_the_bounds():
    """0.8 < z < 2.0 and −1 < angle < 1, strict; no state-range check (gymnasium) but NeoRL's o'[3:] in (−100, 100)."""
    cases = {(0, 0.8): True, (0, 0.81): False, (0, 2.0): True, (1, 1.0): True, (1, -0.99): False, (5, 150.0): False}
    for (dim, value), expected in cases.items():
        o = torch.tensor([1.2, 0.0] + [0.0] * 15)
        o[dim] = value
        assert termination_fn("walker2d")(o[None], torch.zeros(1, 6), o[None]).item() is expected, (dim, value)
    neorl = torch.tensor([5.0, 1.2, 0.0] + [0.0] * 15)[None].repeat(2, 1)
    neorl[1, 4] = -100.0
    assert termination_fn("neorl-walker2d")(neorl, torch.zeros(2, 6), neorl).tolist() == [False, True]


@pytest.mark.parametrize(
    "name, key",
    [
        ("Hopper-v5", "hopper"),
        ("hopper-medium-replay-v2", "hopper"),
        ("mujoco/walker2d/expert-v0", "walker2d"),
        ("half_cheetah", "halfcheetah"),
        ("InvertedPendulum-v5", "invertedpendulum"),
        ("AntTruncatedObs-v5", "anttruncatedobs"),
        ("mujoco/ant/expert-v0", "ant"),
        ("HumanoidTruncatedObs-v5", "humanoidtruncatedobs"),
        ("Humanoid-v5", "humanoid"),
        ("neorl-hopper", "neorl-hopper"),
        ("NeoRL:HalfCheetah-v3-high", "neorl-halfcheetah"),
    ],
)
def test_names(name, key):
    assert task_name(name) == key


def test_errors_name_the_problem():
    for name in ("InvertedDoublePendulum-v5", "antmaze-umaze-v2", "HumanoidStandup-v5", "neorl-ant"):
        with pytest.raises(ConfigError, match=f"no termination function for '{name}'"):
            termination_fn(name)
    with pytest.raises(ConfigError, match=r"termination 'neorl-hopper'.*\(B, 12\)"):
        termination_fn("neorl-hopper")(torch.zeros(2, 11), torch.zeros(2, 3), torch.zeros(2, 11))
