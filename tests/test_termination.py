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
    "name, env_id, kwargs",
    [
        ("Hopper-v5", "Hopper-v5", {}),
        ("walker2d-medium-v2", "Walker2d-v5", {}),
        ("neorl-hopper", "Hopper-v5", {"exclude_current_positions_from_observation": False}),
        ("neorl:Walker2d-v3-low", "Walker2d-v5", {"exclude_current_positions_from_observation": False}),
        ("InvertedPendulum-v5", "InvertedPendulum-v5", {}),
    ],
)
def test_matches_the_real_environment(name, env_id, kwargs):
    ds = env_dataset(env_id, 300, 1, 1000, **kwargs)
    assert ds.terminals.sum() >= 5  # the test sees real falls
    np.testing.assert_array_equal(apply(name, ds), ds.terminals)


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


@pytest.mark.parametrize(
    "name, key",
    [
        ("Hopper-v5", "hopper"),
        ("hopper-medium-replay-v2", "hopper"),
        ("mujoco/walker2d/expert-v0", "walker2d"),
        ("half_cheetah", "halfcheetah"),
        ("InvertedPendulum-v5", "invertedpendulum"),
        ("neorl-hopper", "neorl-hopper"),
        ("NeoRL:HalfCheetah-v3-high", "neorl-halfcheetah"),
    ],
)
def test_names(name, key):
    assert task_name(name) == key


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="no termination function for 'Ant-v5'"):
        termination_fn("Ant-v5")
    with pytest.raises(ConfigError, match="no termination function for 'InvertedDoublePendulum-v5'"):
        termination_fn("InvertedDoublePendulum-v5")
    with pytest.raises(ConfigError, match=r"termination 'neorl-hopper'.*\(B, 12\)"):
        termination_fn("neorl-hopper")(torch.zeros(2, 11), torch.zeros(2, 3), torch.zeros(2, 11))
