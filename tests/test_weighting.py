"""Tests for PMAC and TOM transition weights (offline_mbrl/algos/weighting.py)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from offline_mbrl.algos.weighting import (
    DualQNetwork,
    TOMConfig,
    TransitionDiscriminator,
    TransitionTensors,
    chi2_conjugate,
    chi2_conjugate_grad,
    discriminator_loss,
    dual_q_loss,
    dual_residual,
    initial_obs,
    pmac_config,
    pmac_version_weights,
    pmac_weights,
    policy_versions,
    tom_weights,
    train_discriminator,
)
from offline_mbrl.data.dataset import TransitionDataset
from offline_mbrl.errors import ConfigError, DatasetError

torch.set_num_threads(1)

# ---------------------------------------------------------------------------------------------- PMAC


def test_pmac_hand_computed_three_versions():
    # α = 0.9, versions 0, 1, 2 with 2 rows each: masses α² = 0.81, (1 − α)α = 0.09, 1 − α = 0.1.
    expected = [0.405, 0.405, 0.045, 0.045, 0.05, 0.05]
    np.testing.assert_allclose(pmac_version_weights(np.array([0, 0, 1, 1, 2, 2]), 0.9), expected, rtol=1e-12)
    # Same from collection steps, 2 steps per version, rows in any order.
    steps = np.array([5, 0, 3, 1, 4, 2])
    np.testing.assert_allclose(
        pmac_weights(steps, pmac_config("pmac", steps_per_version=2)),
        [0.05, 0.405, 0.045, 0.405, 0.05, 0.045],
        rtol=1e-12,
    )


def test_pmac_warmup_block_is_version_zero():
    # Steps 0-2 are the warm-up block (version 0, mass 0.81 over 3 rows), then 2 steps per version.
    np.testing.assert_array_equal(policy_versions(np.arange(7), 2, warmup_steps=3), [0, 0, 0, 1, 1, 2, 2])
    weights = pmac_weights(np.arange(7), pmac_config("pmac", steps_per_version=2, warmup_steps=3))
    np.testing.assert_allclose(weights, [0.27, 0.27, 0.27, 0.045, 0.045, 0.05, 0.05], rtol=1e-12)


def _iterated_alg1(counts, alpha):
    """Alg. 1 step by step: every old weight × α, the new version gets (1 − α)·Σ old (Eq. 4)."""
    masses = [1.0]
    for _ in counts[1:]:
        masses = [alpha * m for m in masses]
        masses.append((1 - alpha) * sum(masses) / alpha)
    return np.repeat(np.array(masses) / np.array(counts), counts)


def test_pmac_closed_form_matches_iterated_alg1():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 6, size=12)
    versions = np.repeat(np.arange(12), counts)
    expected = _iterated_alg1(counts, 0.8)
    np.testing.assert_allclose(pmac_version_weights(versions, 0.8), expected, rtol=1e-10)
    perm = rng.permutation(len(versions))
    np.testing.assert_allclose(pmac_version_weights(versions[perm], 0.8), expected[perm], rtol=1e-10)


def test_pmac_missing_version_is_renormalized():
    # Version 1 has no rows: masses 0.81 and 0.1 renormalized over 0.91.
    weights = pmac_version_weights(np.array([0, 2]), 0.9)
    np.testing.assert_allclose(weights, [0.81 / 0.91, 0.1 / 0.91], rtol=1e-12)


def test_pmac_tom_preset_long_buffer_does_not_underflow():
    config = pmac_config("pmac-tom")
    assert (config.adaptation_rate, config.steps_per_version, config.warmup_steps) == (0.996, 1, 0)
    weights = pmac_weights(np.arange(200_000), "pmac-tom")
    assert np.isfinite(weights).all() and weights.min() >= 0
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert weights[-1] == pytest.approx(0.004, rel=1e-9)
    assert weights[-2] == pytest.approx(0.004 * 0.996, rel=1e-9)
    # Half-life ln 0.5 / ln 0.996 ≈ 173 versions: the last 173 rows hold about half the mass.
    assert weights[-173:].sum() == pytest.approx(0.5, abs=0.002)


def test_pmac_preset_values_and_errors():
    config = pmac_config("pmac")
    assert (config.adaptation_rate, config.steps_per_version) == (0.9, 250)
    with pytest.raises(ConfigError, match="unknown PMAC preset 'pmc'"):
        pmac_config("pmc")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['alpha'\]"):
        pmac_config("pmac", alpha=0.5)
    with pytest.raises(ConfigError, match="adaptation_rate must lie in"):
        pmac_config("pmac", adaptation_rate=1.0)
    with pytest.raises(ConfigError, match="steps_per_version"):
        policy_versions(np.arange(3), 0)


@pytest.mark.parametrize(
    "steps, problem",
    [
        (np.array([0, -1, 2]), "negative value -1"),
        (np.array([0.0, 1.0]), "must hold integers"),
        (np.zeros((2, 2), dtype=int), "non-empty 1-D"),
        (np.array([], dtype=int), "non-empty 1-D"),
    ],
)
def test_pmac_bad_collection_step(steps, problem):
    with pytest.raises(DatasetError, match=f"'collection_step'.*{problem}"):
        pmac_weights(steps, "pmac")


# ---------------------------------------------------------------------------------------------- χ²


def test_chi2_conjugate_is_the_fenchel_conjugate():
    y = np.linspace(-1.0, 3.0, 41)
    x = np.linspace(0.0, 6.0, 60_001)  # ratio domain x >= 0
    objective = x[None, :] * y[:, None] - 0.5 * (x[None, :] - 1.0) ** 2  # x·y − f(x)
    conj = chi2_conjugate(torch.tensor(y, dtype=torch.float64)).numpy()
    grad = chi2_conjugate_grad(torch.tensor(y, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(conj, objective.max(axis=1), atol=1e-7)
    np.testing.assert_allclose(grad, x[objective.argmax(axis=1)], atol=1e-4)  # f*'(y) = argmax x
    np.testing.assert_allclose(conj, 0.5 * y**2 + y, rtol=1e-12)


def test_chi2_conjugate_grad_matches_autograd_and_clips():
    y = torch.linspace(-0.99, 4.0, 50, dtype=torch.float64, requires_grad=True)
    (autograd,) = torch.autograd.grad(chi2_conjugate(y).sum(), y)
    torch.testing.assert_close(chi2_conjugate_grad(y.detach()), autograd)
    below = torch.tensor([-5.0, -1.5, -1.0])
    torch.testing.assert_close(chi2_conjugate_grad(below), torch.zeros(3))


# ---------------------------------------------------------------------------------------------- TOM losses


def _np_bce(logits, label):
    p = 1.0 / (1.0 + np.exp(-logits))
    return float(np.mean(-(label * np.log(p) + (1 - label) * np.log(1 - p))))


@pytest.mark.parametrize("buffer_label", [0.0, 0.1])
def test_discriminator_loss_matches_numpy(buffer_label):
    rng = np.random.default_rng(1)
    w = rng.normal(size=5)
    target, buffer = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    w_t = torch.tensor(w)
    loss, metrics = discriminator_loss(
        lambda x: x @ w_t, torch.tensor(target), torch.tensor(buffer), buffer_label=buffer_label, grad_penalty_coef=10.0
    )
    bce = _np_bce(target @ w, 1.0) + _np_bce(buffer @ w, buffer_label)
    penalty = 10.0 * (np.linalg.norm(w) - 1.0) ** 2  # ∇_x (x·w) = w for every mixed row
    assert float(metrics["disc/bce"]) == pytest.approx(bce, rel=1e-10)
    assert float(metrics["disc/grad_penalty"]) == pytest.approx(penalty, rel=1e-10)
    assert float(loss) == pytest.approx(bce + penalty, rel=1e-10)


def test_dual_q_loss_and_residual_match_numpy():
    rng = np.random.default_rng(2)
    r, q, next_v, init_v = (rng.normal(size=16) for _ in range(4))
    terminals = (rng.random(16) < 0.3).astype(float)
    e = r + 0.99 * (1 - terminals) * next_v - q
    as_t = lambda a: torch.tensor(a)  # noqa: E731
    residual = dual_residual(as_t(r), as_t(q), as_t(next_v), as_t(terminals), 0.99)
    np.testing.assert_allclose(residual.numpy(), e, rtol=1e-12)
    loss, _ = dual_q_loss(as_t(init_v), residual, 0.99)
    assert float(loss) == pytest.approx(0.01 * init_v.mean() + np.mean(0.5 * e**2 + e), rel=1e-10)


def test_networks_shapes_and_q_init():
    disc = TransitionDiscriminator(obs_dim=3, action_dim=2)
    assert disc(torch.zeros(7, 8)).shape == (7,)
    assert disc.head[0].in_features == 384 and disc.obs_trunk[0].out_features == 128
    q_net = DualQNetwork(obs_dim=3, action_dim=2)
    assert q_net(torch.zeros(7, 3), torch.zeros(7, 2)).shape == (7,)
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in q_net.net if isinstance(m, torch.nn.Linear))


# ---------------------------------------------------------------------------------------------- TOM toy problem


def _toward(center):
    """Linear policy a = center − s: drives s toward ``center``."""
    return lambda obs: center - obs


def _toy_dataset(rng, n_episodes, center, length=10):
    """2-D episodes around ``center``: s0 ~ N(center, 0.3²), a = center − s + N(0, 0.1²), s' = s + 0.1·a."""
    obs = np.empty((n_episodes, length, 2))
    actions = np.empty((n_episodes, length, 2))
    state = rng.normal(center, 0.3, size=(n_episodes, 2))
    for t in range(length):  # over time steps; episodes are vectorized
        obs[:, t] = state
        actions[:, t] = center - state + rng.normal(0.0, 0.1, size=state.shape)
        state = state + 0.1 * actions[:, t]
    next_obs = np.concatenate([obs[:, 1:], state[:, None]], axis=1)
    timeouts = np.zeros((n_episodes, length), dtype=bool)
    timeouts[:, -1] = True
    flat = lambda a: a.reshape(n_episodes * length, *a.shape[2:])  # noqa: E731
    return TransitionDataset(
        obs=flat(obs),
        actions=flat(actions),
        rewards=np.zeros(n_episodes * length),
        next_obs=flat(next_obs),
        terminals=np.zeros(n_episodes * length, dtype=bool),
        timeouts=flat(timeouts),
    )


TOY_CONFIG = TOMConfig(disc_epochs=25, q_steps=150, q_batch_size=128, q_hidden=(64, 64), eval_batch_size=300)


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(3)
    dataset = TransitionDataset.concatenate([_toy_dataset(rng, 40, +1.0), _toy_dataset(rng, 40, -1.0)])
    is_target_like = np.arange(len(dataset)) < 400
    target = _toy_dataset(rng, 30, +1.0)
    device = torch.device("cpu")
    inputs = (
        TransitionTensors.from_dataset(dataset, device),
        TransitionTensors.from_dataset(target, device),
        initial_obs(dataset, device),
        _toward(1.0),
    )
    return inputs, is_target_like


def test_tom_weights_separate_target_transitions(toy):
    inputs, is_target_like = toy
    result = tom_weights(*inputs, TOY_CONFIG, seed=0)
    weights = result.weights.numpy()
    assert weights.shape == (800,) and weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert roc_auc_score(is_target_like, weights) > 0.9
    assert roc_auc_score(is_target_like, result.log_ratio.numpy()) > 0.95
    # Half the buffer looks like the target, so target-vs-buffer AUROC is capped near 0.5 + 0.5 / 2.
    assert 0.7 < result.disc_auroc < 0.8 and 0.65 < result.disc_accuracy < 0.8
    assert result.disc_loss_history.shape == (25,) and result.q_loss_history.shape == (150,)
    assert result.q_loss == result.q_loss_history[-1]
    clipped = result.xi.clamp(max=10.0)
    torch.testing.assert_close(result.weights, clipped / clipped.sum())


def test_tom_deterministic_under_seed_and_leaves_global_rng(toy):
    inputs, _ = toy
    config = TOMConfig(disc_epochs=2, q_steps=5, q_batch_size=32, q_hidden=(16, 16))
    rng_state = torch.get_rng_state()
    first = tom_weights(*inputs, config, seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state)
    second = tom_weights(*inputs, config, seed=7)
    other = tom_weights(*inputs, config, seed=8)
    assert torch.equal(first.weights, second.weights) and torch.equal(first.log_ratio, second.log_ratio)
    assert not torch.equal(first.weights, other.weights)


def test_tom_max_weight_none_keeps_raw_ratio(toy):
    inputs, _ = toy
    config = TOMConfig(disc_epochs=2, q_steps=5, q_batch_size=32, q_hidden=(16, 16), max_weight=None)
    result = tom_weights(*inputs, config, seed=0)
    torch.testing.assert_close(result.weights, result.xi / result.xi.sum())


def test_discriminator_trains_all_parameters(toy):
    (buffer, target, _, _), _ = toy
    config = TOMConfig(disc_epochs=1)
    torch.manual_seed(0)
    init = TransitionDiscriminator(2, 2).state_dict()
    torch.manual_seed(0)
    disc, history = train_discriminator(target, buffer, config)
    assert history.shape == (1,)
    for name, value in disc.state_dict().items():
        assert not torch.equal(value, init[name]), f"{name} was not trained"


def test_tom_input_errors(toy):
    (buffer, target, init, policy), _ = toy
    wide = TransitionTensors(target.obs, torch.zeros(len(target), 3), target.next_obs, target.terminals)
    with pytest.raises(DatasetError, match=r"target has obs/action dims \(2, 3\), buffer has \(2, 2\)"):
        tom_weights(buffer, wide, init, policy, seed=0)
    with pytest.raises(DatasetError, match=r"init_obs has shape \(4, 3\)"):
        tom_weights(buffer, target, torch.zeros(4, 3), policy, seed=0)
    with pytest.raises(DatasetError, match=r"policy returned actions of shape \(32, 1\)"):
        tom_weights(buffer, target, init, lambda obs: obs[:, :1], TOMConfig(disc_epochs=1, q_batch_size=32), seed=0)
    with pytest.raises(DatasetError, match="field 'terminals' has shape"):
        TransitionTensors(target.obs, target.actions, target.next_obs, target.terminals[:-1])
    with pytest.raises(ConfigError, match="TOMConfig.buffer_label must lie in"):
        TOMConfig(buffer_label=1.0)
    with pytest.raises(ConfigError, match="TOMConfig.q_steps must be > 0"):
        TOMConfig(q_steps=0)


# ---------------------------------------------------------------------------------------------- real MuJoCo


def test_tensors_and_initial_obs_from_hopper_dataset():
    env = gym.make("Hopper-v5")
    rows, resets = [], []
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        resets.append(obs)
        env.action_space.seed(episode)
        for t in range(5):
            action = env.action_space.sample()
            next_obs, reward, terminated, _, _ = env.step(action)
            rows.append((obs, action, reward, next_obs, terminated, t == 4 and not terminated))
            obs = next_obs
            if terminated:
                break
    obs, actions, rewards, next_obs, terminals, timeouts = map(np.array, zip(*rows))
    dataset = TransitionDataset(
        obs=obs, actions=actions, rewards=rewards, next_obs=next_obs, terminals=terminals, timeouts=timeouts
    )
    tensors = TransitionTensors.from_dataset(dataset, "cpu")
    assert tensors.sas().shape == (len(dataset), 11 + 3 + 11) and tensors.terminals.dtype == torch.float32
    torch.testing.assert_close(initial_obs(dataset, "cpu"), torch.tensor(np.array(resets), dtype=torch.float32))
