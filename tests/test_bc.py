"""Behaviour cloning (``analysis.bc``): the tanh-Gaussian NLL with an asymmetric action box and actions on its
bounds against NumPy, the input checks of ``BCConfig`` and ``fit_bc``, and a seeded fit that leaves the caller's
random stream alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from offline_mbrl.agents.sac import LOG_STD_MAX, LOG_STD_MIN, TanhGaussianActor
from offline_mbrl.analysis.bc import BCConfig, bc_loss, fit_bc
from offline_mbrl.errors import ConfigError

LOW, HIGH = np.array([-1.0, -2.0, 0.5]), np.array([1.0, 1.0, 3.0])


def test_bc_loss_matches_numpy_with_scaled_bounds_and_actions_on_them():
    torch.manual_seed(0)
    actor = TanhGaussianActor(4, 3, (8,), torch.as_tensor(LOW), torch.as_tensor(HIGH))
    rng = np.random.default_rng(0)
    obs = torch.as_tensor(rng.normal(size=(6, 4)), dtype=torch.float32)
    actions = rng.uniform(LOW, HIGH, size=(6, 3))
    actions[0], actions[1] = LOW, HIGH  # infinite pre-tanh values without the clamp
    eps = 1e-2
    with torch.no_grad():
        loss, metrics = bc_loss(actor, obs, torch.as_tensor(actions, dtype=torch.float32), action_eps=eps)
        mu, log_std = (t.double().numpy() for t in actor.head(actor.trunk(obs)).chunk(2, dim=-1))
    scale, bias = (HIGH - LOW) / 2, (HIGH + LOW) / 2
    y = np.clip((actions - bias) / scale, -(1 - eps), 1 - eps)  # tanh(u)
    u, std = np.arctanh(y), np.exp(np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX))
    gauss = -0.5 * ((u - mu) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    log_prob = (gauss - np.log(1 - y**2) - np.log(scale)).sum(-1)
    assert loss.item() == pytest.approx(-log_prob.mean(), rel=1e-4) and metrics["bc/nll"] == loss.item()


@pytest.mark.parametrize(
    "fields, key",
    [
        ({"steps": 0}, "'steps'"),
        ({"batch_size": 0}, "'batch_size'"),
        ({"hidden_dims": (8, 0)}, "'hidden_dims'"),
        ({"learning_rate": 0.0}, "'learning_rate'"),
        ({"learning_rate": float("nan")}, "'learning_rate'"),
        ({"action_eps": 1.0}, "'action_eps'"),
    ],
)
def test_config_rejects_bad_fields(fields, key):
    with pytest.raises(ConfigError, match=f"bc config: {key}"):
        BCConfig(**fields)


@pytest.mark.parametrize(
    "low, high",
    [
        (-np.ones(2), np.ones(2)),  # another action dim
        (-np.ones(3), np.array([1.0, -1.0, 1.0])),  # high below low
        (-np.ones(3), np.array([1.0, np.inf, 1.0])),  # unbounded
    ],
)
def test_fit_rejects_bad_action_bounds(hopper_dataset, low, high):
    with pytest.raises(ConfigError, match=r"hopper-fixture: fit_bc needs finite action bounds of shape \(3,\)"):
        fit_bc(hopper_dataset, low, high, BCConfig(hidden_dims=(8,), steps=1))


def test_fit_is_seeded_and_keeps_the_callers_random_stream(hopper_dataset):
    config = BCConfig(hidden_dims=(8,), steps=3, batch_size=16, seed=5)
    torch.manual_seed(1)
    first = fit_bc(hopper_dataset, -np.ones(3), np.ones(3), config)
    after = torch.rand(3)
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(2)  # another caller stream: the same fit
    second = fit_bc(hopper_dataset, -np.ones(3), np.ones(3), config)
    assert torch.equal(after, expected)
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
