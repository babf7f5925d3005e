"""Model-based NPG (offline_mbrl.agents.npg): log-probs, Fisher-vector products, the CG solution and the KL of a
step against NumPy references on a tiny policy; GAE against a per-trajectory NumPy loop; exact state round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from offline_mbrl.agents.npg import (
    NPG,
    GaussianMLPPolicy,
    NPGConfig,
    TrajectoryBatch,
    conjugate_gradient,
    gae,
    gaussian_kl,
)
from offline_mbrl.errors import CheckpointError, ConfigError, DivergenceError

D, A = 3, 2


def _tiny_learner(**overrides) -> NPG:
    config = NPGConfig(policy_hidden_dims=(4,), value_hidden_dims=(8,), **overrides)
    learner = NPG(D, A, config, seed=1)
    with torch.no_grad():  # larger last layer than the 0.01-scaled init, so the Jacobian is not tiny
        learner.policy.mean_net[-1].weight.normal_(generator=torch.Generator().manual_seed(3))
    return learner


def _batch(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, D, generator=gen)
    actions = torch.randn(n, A, generator=gen)
    advantages = torch.randn(n, generator=gen)
    return obs, actions, advantages


def _explicit_fisher(policy: GaussianMLPPolicy, obs: torch.Tensor) -> np.ndarray:
    """Analytic Fisher of a diagonal Gaussian with state-independent σ, assembled in NumPy:
    F = mean_n J_n^T diag(σ^-2) J_n over the mean parameters and 2 I over log σ (no cross terms)."""
    params = list(policy.parameters())
    names = [name for name, _ in policy.named_parameters()]
    sizes = [p.numel() for p in params]
    jac = torch.autograd.functional.jacobian(lambda *ps: _mean_with(policy, names, ps, obs), tuple(params))
    # jac[i]: (N, A, *param_i.shape) -> (N, A, P)
    j = np.concatenate([t.reshape(obs.shape[0], A, -1).numpy() for t in jac], axis=2).astype(np.float64)
    inv_var = np.exp(-2.0 * policy.log_std.detach().numpy().astype(np.float64))  # (A,)
    fisher = np.einsum("nap,a,naq->pq", j, inv_var, j) / obs.shape[0]
    start = sum(sizes[: names.index("log_std")])
    fisher[start : start + A, start : start + A] += 2.0 * np.eye(A)
    return fisher


def _mean_with(policy, names, values, obs):
    state = dict(zip(names, values))
    return torch.func.functional_call(policy, state, (obs,))


def test_log_prob_matches_the_gaussian_density():
    learner = _tiny_learner()
    obs, actions, _ = _batch(8)
    mean = learner.policy(obs).detach().numpy().astype(np.float64)
    std = np.exp(learner.policy.log_std.detach().numpy().astype(np.float64))
    a = actions.numpy().astype(np.float64)
    expected = (-0.5 * ((a - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)
    np.testing.assert_allclose(learner.policy.log_prob(obs, actions).detach().numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(std, np.exp(-1.0), rtol=1e-6)  # σ initialised at exp(-1) (paper, Appendix B)


def test_fisher_vector_product_and_cg_solution_match_numpy():
    learner = _tiny_learner(cg_damping=1e-3, cg_iters=200)
    obs, actions, advantages = _batch()
    fisher = _explicit_fisher(learner.policy, obs)
    damped = fisher + 1e-3 * np.eye(len(fisher))
    v = torch.randn(len(fisher), generator=torch.Generator().manual_seed(5))
    fisher_times = learner.fisher_operator(obs)
    np.testing.assert_allclose(fisher_times(v).detach().numpy(), damped @ v.numpy(), rtol=1e-4, atol=1e-6)
    g = learner.policy_gradient(obs, actions, advantages)
    x = conjugate_gradient(fisher_times, g, iters=200)
    expected = np.linalg.solve(damped, g.detach().numpy().astype(np.float64))
    np.testing.assert_allclose(x.detach().numpy(), expected, rtol=1e-3, atol=1e-4)


def test_conjugate_gradient_solves_a_spd_system():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6))
    a = m @ m.T + 0.5 * np.eye(6)
    b = rng.normal(size=6)
    at = torch.as_tensor(a, dtype=torch.float64)
    x = conjugate_gradient(lambda v: at @ v, torch.as_tensor(b), iters=50)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-8)


def test_natural_step_reaches_the_kl_of_its_normalized_step_size_and_improves_the_surrogate():
    learner = NPG(D, A, NPGConfig(policy_hidden_dims=(16, 16), step_size=0.01, cg_iters=50, cg_damping=0.1), seed=1)
    obs, _, advantages = _batch(256)
    actions = learner.policy.sample(obs, torch.Generator().manual_seed(0))
    old_mean, old_log_std = learner.policy(obs).detach(), learner.policy.log_std.detach().clone()
    theta = torch.nn.utils.parameters_to_vector(learner.policy.parameters()).detach().clone()
    fisher = _explicit_fisher(learner.policy, obs)
    damped = fisher + learner.config.cg_damping * np.eye(len(theta))
    metrics = learner.natural_step(obs, actions, advantages)
    step = (torch.nn.utils.parameters_to_vector(learner.policy.parameters()).detach() - theta).numpy()
    # the quadratic model of the KL with the damped Fisher: 1/2 step^T (F + λ I) step = δ/2 (float32 CG: 2 %)
    assert 0.5 * step @ damped @ step == pytest.approx(learner.config.target_kl, rel=0.02)
    new_kl = gaussian_kl(old_mean, old_log_std, learner.policy(obs).detach(), learner.policy.log_std.detach())
    assert metrics["npg/kl"] == pytest.approx(new_kl.mean().item(), rel=1e-5)
    # the true KL: as the (undamped) quadratic model predicts, and within the constraint δ/2
    assert metrics["npg/kl"] == pytest.approx(0.5 * step @ fisher @ step, rel=0.05)
    assert 0.5 * learner.config.target_kl < metrics["npg/kl"] <= learner.config.target_kl
    assert metrics["npg/surrogate_improvement"] > 0


def _numpy_gae(rewards, values, next_values, terminals, ids, steps, gamma, lam):
    """Per-trajectory backward loop, the MJRL ``compute_advantages`` recursion."""
    out = np.zeros(len(rewards))
    for traj in np.unique(ids):
        rows = np.flatnonzero(ids == traj)
        rows = rows[np.argsort(steps[rows])]
        running = 0.0
        for i, row in enumerate(rows[::-1]):
            delta = rewards[row] + gamma * (0.0 if terminals[row] else next_values[row]) - values[row]
            running = delta + (gamma * lam * running if i > 0 else 0.0)
            out[row] = running
    return out


def test_gae_matches_a_numpy_loop_with_terminations_and_truncations():
    rng = np.random.default_rng(1)
    lengths = [5, 1, 3, 7]  # trajectory 1 ends at once; 0 and 2 terminate, 3 is truncated
    ids = np.concatenate([np.full(n, i) for i, n in enumerate(lengths)])
    steps = np.concatenate([np.arange(n) for n in lengths])
    terminals = np.zeros(len(ids), dtype=bool)
    ends = np.cumsum(lengths) - 1
    terminals[ends[[0, 2]]] = True
    order = rng.permutation(len(ids))  # rows in any order (a roll-out is step-major)
    ids, steps, terminals = ids[order], steps[order], terminals[order]
    rewards, values, next_values = (rng.normal(size=len(ids)) for _ in range(3))
    for lam in (0.97, 1.0):
        got = gae(
            *(torch.as_tensor(x) for x in (rewards, values, next_values, terminals, ids, steps)), gamma=0.9, lam=lam
        )
        np.testing.assert_allclose(
            got.numpy(), _numpy_gae(rewards, values, next_values, terminals, ids, steps, 0.9, lam), rtol=1e-10
        )


def _trajectory_batch(seed: int = 0) -> TrajectoryBatch:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 2, 9, 4])
    ids = torch.repeat_interleave(torch.arange(4), lengths)
    steps = torch.cat([torch.arange(int(n)) for n in lengths])
    terminals = torch.zeros(len(ids), dtype=torch.bool)
    terminals[torch.cumsum(lengths, 0)[:2] - 1] = True
    n = len(ids)
    return TrajectoryBatch(
        obs=torch.randn(n, D, generator=gen),
        actions=torch.randn(n, A, generator=gen),
        rewards=torch.randn(n, generator=gen),
        next_obs=torch.randn(n, D, generator=gen),
        terminals=terminals,
        trajectory_ids=ids,
        steps=steps,
    )


def test_update_is_exactly_resumable_from_its_state_dict(tmp_path):
    from offline_mbrl.persist import load_checkpoint, save_atomic

    first = _tiny_learner()
    gen = torch.Generator().manual_seed(0)
    first.update(_trajectory_batch(0), gen)
    save_atomic({"npg": first.state_dict(), "gen": gen.get_state()}, tmp_path / "npg.pt")
    expected = first.update(_trajectory_batch(1), gen)

    second = _tiny_learner()
    state = load_checkpoint(tmp_path / "npg.pt")
    second.load_state_dict(state["npg"])
    gen2 = torch.Generator()
    gen2.set_state(state["gen"])
    assert second.update(_trajectory_batch(1), gen2) == expected
    for a, b in zip(first.value.parameters(), second.value.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(first.policy.parameters(), second.policy.parameters()):
        assert torch.equal(a, b)


def test_value_fit_reduces_the_error_and_counts_its_batches():
    learner = _tiny_learner(value_epochs=5, value_batch_size=8)
    batch = _trajectory_batch()
    metrics = learner.update(batch, torch.Generator().manual_seed(0))
    assert metrics["npg/value_error_after"] < metrics["npg/value_error_before"]
    assert metrics["npg/num_samples"] == len(batch) and metrics["npg/num_trajectories"] == 4
    assert learner.value_optimizer.state_dict()["state"][0]["step"].item() == 5 * (len(batch) // 8 - 1)


def test_bad_config_and_checkpoint_are_named():
    with pytest.raises(ConfigError, match="npg.step_size"):
        NPGConfig(step_size=0.0)
    with pytest.raises(ConfigError, match="npg.init_log_std"):
        NPGConfig(init_log_std=-5.0)
    with pytest.raises(ConfigError, match="npg.gae_lambda"):
        NPGConfig(gae_lambda=1.5)
    learner = _tiny_learner()
    other = NPG(D, A, NPGConfig(policy_hidden_dims=(4,), value_hidden_dims=(8,), gamma=0.9))
    with pytest.raises(CheckpointError, match="gamma"):
        other.load_state_dict(learner.state_dict())
    with pytest.raises(ConfigError, match="empty"):
        learner.update(
            TrajectoryBatch(*(t[:0] for t in vars(_trajectory_batch()).values())), torch.Generator().manual_seed(0)
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("obs", torch.zeros(21, D + 1), r"'obs' must have shape \(21, 3\)"),
        ("actions", torch.zeros(21), r"'actions' must have shape \(21, 2\)"),
        ("terminals", torch.zeros(21), "'terminals' must be bool"),
        ("steps", torch.zeros(21, dtype=torch.float32), "'steps' must be int64"),
        ("trajectory_ids", torch.full((21,), -1), "'trajectory_ids' must be int64 >= 0"),
        ("steps", torch.zeros(21, dtype=torch.int64), r"repeat a \(trajectory, step\) pair"),
    ],
)
def test_a_malformed_batch_is_named_before_any_work(field, value, message):
    learner = _tiny_learner()
    before = [p.clone() for p in learner.policy.parameters()]
    batch = _trajectory_batch()
    with pytest.raises(ConfigError, match=message):
        learner.update(TrajectoryBatch(**{**vars(batch), field: value}), torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))


def test_a_trajectory_with_a_gap_in_its_steps_is_named():
    batch = _trajectory_batch()  # trajectory lengths 6, 2, 9, 4
    steps = batch.steps.clone()
    steps[8:17] += 1  # trajectory 2 runs 1…9: no step 0
    with pytest.raises(ConfigError, match=r"without gaps; trajectories \[2\]"):
        TrajectoryBatch(**{**vars(batch), "steps": steps}).check(D, A)
    batch.check(D, A)


def test_a_non_finite_batch_raises_and_leaves_the_policy_unchanged():
    learner = _tiny_learner()
    before = [p.clone() for p in learner.policy.parameters()]
    obs, actions, advantages = _batch()
    with pytest.raises(DivergenceError, match="not finite"):
        learner.natural_step(obs, actions, advantages * float("nan"))
    batch = _trajectory_batch()
    rewards = batch.rewards.clone()
    rewards[3] = float("inf")
    with pytest.raises(DivergenceError, match="rewards"):
        learner.update(TrajectoryBatch(**{**vars(batch), "rewards": rewards}), torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))
