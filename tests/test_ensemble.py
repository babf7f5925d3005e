import numpy as np
import pytest
import torch

from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import ConfigError
from offline_mbrl.models.ensemble import EnsembleConfig
from offline_mbrl.models.fit import FitConfig, _keep_snapshot, evaluate_errors, fit, split_holdout
from tests.models_helpers import (
    assert_checkpoint_roundtrip,
    fit_stats,
    tiny_ensemble,
)

E = 4


@pytest.fixture()
def model(ds):
    return fit_stats(tiny_ensemble(), ds)


def member_forward(model, e, obs, actions):
    """Member e alone, with plain matmuls: the batched (E, B, ·) pass must equal this."""
    x = torch.cat([model.normalizer.obs(obs), model.normalizer.action(actions)], dim=-1)
    for i, layer in enumerate(model.layers):
        x = x @ layer.weight[e] + layer.bias[e, 0]
        if i < len(model.layers) - 1:
            x = x * torch.sigmoid(x)  # Swish
    mean, raw = x.chunk(2, dim=-1)
    hi, lo = model.logvar_bounds.max_logvar, model.logvar_bounds.min_logvar
    raw = hi - torch.nn.functional.softplus(hi - raw)
    return mean, lo + torch.nn.functional.softplus(raw - lo)


def test_batched_members_equal_separate_members(ds, model):
    obs, actions = torch.from_numpy(ds.obs[:9]), torch.from_numpy(ds.actions[:9])
    with torch.no_grad():
        mean, logvar = model(obs, actions)
        assert mean.shape == logvar.shape == (E, 9, 12)
        for e in range(E):
            ref_mean, ref_logvar = member_forward(model, e, obs, actions)
            torch.testing.assert_close(mean[e], ref_mean, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(logvar[e], ref_logvar, atol=1e-5, rtol=1e-5)
        per_member = model(obs.expand(E, -1, -1), actions.expand(E, -1, -1))
        torch.testing.assert_close(per_member[0], mean)


def test_loss_matches_numpy_reference(ds, model):
    rows = torch.arange(4 * E)  # member e trains rows 4e … 4e+3
    with torch.no_grad():
        loss, metrics = model.loss(Windows(ds, 1).gather(rows))
        mean, logvar = model(
            torch.from_numpy(ds.obs[:16]).view(E, 4, -1), torch.from_numpy(ds.actions[:16]).view(E, 4, -1)
        )
    mean, logvar = mean.double().numpy(), logvar.double().numpy()
    target = np.concatenate([ds.next_obs[:16] - ds.obs[:16], ds.rewards[:16, None]], axis=1).reshape(E, 4, -1)
    nll = sum(np.mean((mean[e] - target[e]) ** 2 * np.exp(-logvar[e])) + np.mean(logvar[e]) for e in range(E))
    decay = sum(
        wd * 0.5 * (layer.weight.double() ** 2).sum().item()
        for wd, layer in zip(model.config.weight_decays, model.layers)
    )
    bounds = 0.01 * (model.logvar_bounds.max_logvar.sum() - model.logvar_bounds.min_logvar.sum()).item()
    np.testing.assert_allclose(loss.item(), nll + decay + bounds, rtol=1e-5)
    np.testing.assert_allclose(metrics["dynamics/decay"], decay, rtol=1e-5)


def test_keep_snapshot_copies_only_improved_members(model):
    best = {k: v.clone() for k, v in model.state_dict().items()}
    original = {k: v.clone() for k, v in best.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    _keep_snapshot(model, best, np.array([False, True, False, True]))
    current = model.state_dict()
    for name in model.member_parameter_names:
        assert torch.equal(best[name][[1, 3]], current[name][[1, 3]])
        assert torch.equal(best[name][[0, 2]], original[name][[0, 2]])
    assert torch.equal(best["logvar_bounds.max_logvar"], current["logvar_bounds.max_logvar"])


def test_fit_selects_elites_with_lowest_holdout_error(ds):
    model = tiny_ensemble(seed=3)
    config = FitConfig.for_model(model, max_epochs=3, batch_size=64)
    assert (config.learning_rate, config.patience, config.min_improvement) == (1e-3, 5, 0.01)
    result = fit(model, ds, config)
    assert result.holdout_errors.shape == (E,)
    np.testing.assert_array_equal(model.elites.numpy(), np.sort(np.argsort(result.holdout_errors)[:2]))
    holdout = Windows(ds.subset(split_holdout(ds, config)[1]), 1)
    np.testing.assert_allclose(evaluate_errors(model, holdout).numpy(), result.holdout_errors, rtol=1e-5)


def test_checkpoint_roundtrip_keeps_elites(ds, model, tmp_path):
    model.set_elites(torch.tensor([0.5, 0.1, 0.9, 0.2]))
    assert model.elites.tolist() == [1, 3]
    obs, actions = torch.from_numpy(ds.obs[:5]), torch.from_numpy(ds.actions[:5])
    loaded = assert_checkpoint_roundtrip(model, lambda m: m(obs, actions), tmp_path)
    assert loaded.elites.tolist() == [1, 3] and loaded.config.hidden_dims == (16, 16)


def test_config_validation():
    with pytest.raises(ConfigError, match="num_elites"):
        EnsembleConfig(obs_dim=3, action_dim=1, ensemble_size=3, num_elites=4)
    with pytest.raises(ConfigError, match="weight_decays"):
        EnsembleConfig(obs_dim=3, action_dim=1, hidden_dims=(8,), weight_decays=(1e-4,))
