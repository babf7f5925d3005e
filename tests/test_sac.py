"""SAC: losses against hand computations, batched critics, learning on a fixed batch, checkpoints."""

import math

import numpy as np
import pytest
import torch

from offline_mbrl.agents.sac import (
    SAC,
    BatchedCritic,
    SACConfig,
    TanhGaussianActor,
    actor_loss,
    alpha_loss,
    critic_loss,
    load_actor,
    soft_bellman_target,
)
from offline_mbrl.errors import CheckpointError
from offline_mbrl.persist import save_atomic

D, A = 11, 3


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, D, generator=g),
        "actions": torch.rand(n, A, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, D, generator=g),
        "terminals": (torch.rand(n, generator=g) < 0.2),
    }


def test_critic_loss_matches_numpy():
    rng = np.random.default_rng(0)
    q_pred, next_q = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    r, d, logp = rng.normal(size=5), np.array([0, 1, 0, 0, 1.0]), rng.normal(size=5)
    alpha, gamma = 0.3, 0.99
    target = r + gamma * (1 - d) * (next_q.min(0) - alpha * logp)
    expected = ((q_pred - target) ** 2).mean(1).sum()

    def t(x):
        return torch.as_tensor(x, dtype=torch.float64)

    loss, _ = critic_loss(t(q_pred), t(r), t(d).bool(), t(next_q), t(logp), t(alpha), gamma)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_critic_loss_regresses_on_the_target_hook():
    rng = np.random.default_rng(2)
    q_pred, next_q = torch.as_tensor(rng.normal(size=(2, 5))), torch.as_tensor(rng.normal(size=(2, 5)))
    r, d, logp = (
        torch.as_tensor(rng.normal(size=5)),
        torch.zeros(5, dtype=torch.bool),
        torch.as_tensor(rng.normal(size=5)),
    )
    fixed = torch.as_tensor(rng.normal(size=5))
    loss, _ = critic_loss(q_pred, r, d, next_q, logp, torch.tensor(0.3), 0.99, lambda *args: fixed)
    assert loss.item() == pytest.approx(((q_pred - fixed) ** 2).mean(1).sum().item(), rel=1e-12)


def test_update_with_the_default_target_given_explicitly_is_the_same_update():
    torch.manual_seed(0)
    agents = [SAC(D, A, SACConfig(hidden_dims=(16, 16))) for _ in range(3)]
    for agent in agents[1:]:
        agent.load_state_dict(agents[0].state_dict())
    targets = [None, soft_bellman_target, lambda r, *rest: soft_bellman_target(r - 1.0, *rest)]
    metrics = []
    for agent, target in zip(agents, targets):
        torch.manual_seed(1)
        metrics.append(agent.update(_batch()) if target is None else agent.update(_batch(), target=target))
    for k in metrics[0]:
        torch.testing.assert_close(metrics[0][k], metrics[1][k], rtol=0, atol=0)
    assert metrics[2]["train/critic_loss"].item() != pytest.approx(metrics[0]["train/critic_loss"].item())


def test_actor_and_alpha_loss_match_numpy():
    rng = np.random.default_rng(1)
    q, logp, alpha = rng.normal(size=(2, 7)), rng.normal(size=7), 0.2
    loss, _ = actor_loss(torch.as_tensor(q), torch.as_tensor(logp), torch.tensor(alpha, dtype=torch.float64))
    assert loss.item() == pytest.approx((alpha * logp - q.min(0)).mean(), rel=1e-12)
    log_alpha = torch.tensor(math.log(alpha), dtype=torch.float64)
    loss, _ = alpha_loss(log_alpha, torch.as_tensor(logp), -3.0)
    assert loss.item() == pytest.approx(-(math.log(alpha) * (logp - 3.0)).mean(), rel=1e-12)


def test_batched_critic_equals_separate_networks():
    torch.manual_seed(0)
    critic = BatchedCritic(D, A, (32, 32), num_critics=2)
    obs, act = torch.randn(9, D), torch.randn(9, A)
    q = critic(obs, act)
    assert q.shape == (2, 9)
    for e in range(2):
        x = torch.cat([obs, act], -1)
        for i, layer in enumerate(critic.layers):
            x = x @ layer.weight[e] + layer.bias[e, 0]
            x = torch.relu(x) if i < len(critic.layers) - 1 else x
        torch.testing.assert_close(q[e], x.squeeze(-1))


def test_actor_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    low, high = torch.tensor([-2.0, -1.0, 0.0]), torch.tensor([2.0, 1.0, 1.0])
    actor = TanhGaussianActor(D, A, (16,), low, high).double()
    obs = torch.randn(4, D, dtype=torch.float64)
    torch.manual_seed(1)
    action, logp = actor(obs)
    assert ((action >= low) & (action <= high)).all()
    mu, log_std = actor.head(actor.trunk(obs)).chunk(2, -1)
    std = log_std.clamp(-5, 2).exp()
    y = (action - actor.action_bias) / actor.action_scale
    u = torch.atanh(y)
    expected = (torch.distributions.Normal(mu, std).log_prob(u) - torch.log(actor.action_scale * (1 - y**2))).sum(-1)
    torch.testing.assert_close(logp, expected, rtol=1e-6, atol=1e-6)


def test_update_reduces_critic_loss_on_fixed_batch():
    torch.manual_seed(0)
    sac = SAC(D, A, SACConfig(hidden_dims=(64, 64), critic_lr=1e-3))
    batch = _batch()
    first = sac.update(batch)["train/critic_loss"].item()
    for _ in range(200):
        last = sac.update(batch)["train/critic_loss"].item()
    assert last < 0.5 * first


def test_update_changes_alpha_only_when_learned():
    for auto in (False, True):
        sac = SAC(D, A, SACConfig(hidden_dims=(16,), alpha=0.5, auto_alpha=auto))
        sac.update(_batch())
        assert (sac.alpha.item() != pytest.approx(0.5)) == auto


def test_a_critic_only_update_leaves_the_actor_and_temperature_alone():
    torch.manual_seed(0)
    sac = SAC(D, A, SACConfig(hidden_dims=(16,), alpha=0.5, auto_alpha=True))
    actor = [p.clone() for p in sac.actor.parameters()]
    critic = [p.clone() for p in sac.critic.parameters()]
    metrics = sac.update(_batch(), update_actor=False)
    assert all(torch.equal(a, b) for a, b in zip(actor, sac.actor.parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(critic, sac.critic.parameters()))
    assert sac.alpha.item() == pytest.approx(0.5)
    assert "train/critic_loss" in metrics and not {"train/actor_loss", "train/alpha_loss"} & set(metrics)
    assert {"train/actor_loss", "train/alpha_loss"} <= set(sac.update(_batch()))


def test_full_state_round_trip_continues_identically(tmp_path):
    torch.manual_seed(0)
    a = SAC(D, A, SACConfig(hidden_dims=(16, 16)))
    for _ in range(3):
        a.update(_batch())
    save_atomic(a.full_state(), tmp_path / "sac.pt")
    b = SAC(D, A, SACConfig(hidden_dims=(16, 16)))
    b.load_full_state(torch.load(tmp_path / "sac.pt", weights_only=True))
    torch.manual_seed(5)
    ma = a.update(_batch(seed=3))
    torch.manual_seed(5)
    mb = b.update(_batch(seed=3))
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k])


def test_actor_file_round_trip_and_errors(tmp_path):
    actor = TanhGaussianActor(D, A, (8, 8), -torch.ones(A) * 2, torch.ones(A) * 2)
    save_atomic(actor.file_state(), tmp_path / "actor.pt")
    loaded = load_actor(tmp_path / "actor.pt")
    obs = torch.randn(5, D)
    torch.testing.assert_close(loaded(obs, deterministic=True)[0], actor(obs, deterministic=True)[0])
    with pytest.raises(CheckpointError, match="does not exist"):
        load_actor(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_actor(tmp_path / "junk.pt")


def test_seeded_block_repeats_its_draws_and_leaves_the_caller_stream_alone():
    from offline_mbrl.persist import seeded

    torch.manual_seed(123)
    expected_after = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7):
        first = torch.rand(4)
    with seeded(7):
        second = torch.rand(4)
    assert torch.equal(first, second)
    assert torch.equal(torch.rand(3), expected_after)  # the caller's stream did not move


def test_config_from_an_older_checkpoint_record_ignores_settings_that_are_gone():
    record = {"hidden_dims": [16, 16], "alpha": 0.5, "auto_alpha": True, "target_entropy": None, "num_critics": 2}
    assert SACConfig.from_record(record) == SACConfig(hidden_dims=(16, 16), alpha=0.5, auto_alpha=True)
