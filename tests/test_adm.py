import numpy as np
import pytest
import torch

from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import CheckpointError, ConfigError, DatasetError
from offline_mbrl.models.checkpoint import load_model, save_model
from offline_mbrl.models.fit import FitConfig, _Selection, evaluate_errors, fit, sample_errors, split_holdout
from tests.models_helpers import (
    assert_checkpoint_roundtrip,
    fit_stats,
    reference_mask,
    tiny_adm,
    tiny_recurrent_config,
)

M = 4


@pytest.fixture()
def model(ds):
    return fit_stats(tiny_adm(), ds).eval()


def test_forward_shapes_and_all_k_pass_equals_per_k_passes(ds, model):
    batch = Windows(ds, M).gather(torch.arange(0, 60, 3))
    with torch.no_grad():
        mean, logvar = model(batch.obs0, batch.actions)
        assert mean.shape == logvar.shape == (20, M, 12)
        for k in range(1, M + 1):
            mean_k, logvar_k = model(batch.obs0, batch.actions[:, :k])
            torch.testing.assert_close(mean_k[:, -1], mean[:, k - 1], atol=1e-6, rtol=0)
            torch.testing.assert_close(logvar_k[:, -1], logvar[:, k - 1], atol=1e-6, rtol=0)
    assert (logvar <= model.logvar_bounds.max_logvar).all() and (logvar >= model.logvar_bounds.min_logvar).all()
    next_obs, reward = model.predict(batch.obs0, batch.actions)
    torch.testing.assert_close(next_obs, batch.obs0[:, None] + mean[..., :-1])
    torch.testing.assert_close(reward, mean[..., -1])


def test_loss_matches_numpy_reference(ds, model):
    rows = np.array([0, 1, 17, 18, 19, 20, 21, 100, 398, 399])  # includes episode ends and the data end
    batch = Windows(ds, M).gather(torch.from_numpy(rows))
    with torch.no_grad():
        loss, metrics = model.loss(batch)
        mean, logvar = (x.double().numpy() for x in model(batch.obs0, batch.actions))
    valid = reference_mask(ds, M)[rows]
    assert not valid.all()  # the batch has masked k
    nll = []
    for b, t in enumerate(rows):
        for j in np.flatnonzero(valid[b]):
            target = np.append(ds.next_obs[t + j] - ds.obs[t], ds.rewards[t + j])
            nll.append(np.mean((mean[b, j] - target) ** 2 * np.exp(-logvar[b, j]) + logvar[b, j]))
    bounds = model.logvar_bounds
    expected = np.mean(nll) + 0.01 * (bounds.max_logvar.sum().item() - bounds.min_logvar.sum().item())
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["dynamics/nll"], np.mean(nll), rtol=1e-5)


def test_masked_k_contributes_no_gradient(ds, model):
    end = int(np.flatnonzero(ds.episode_ends)[0])
    batch = Windows(ds, M).gather(torch.tensor([end - 2, end - 1, end, end + 1]))
    assert not batch.mask.all()
    actions = batch.actions.clone().requires_grad_(True)
    loss, _ = model.loss(batch.__class__(**{**batch.__dict__, "actions": actions}))
    loss.backward()
    grad = actions.grad.abs().sum(dim=-1)  # (B, M)
    assert (grad[~batch.mask] == 0).all() and (grad[batch.mask] > 0).all()
    noisy = {
        **batch.__dict__,
        "next_obs": torch.where(batch.mask[..., None], batch.next_obs, 1e6),
        "rewards": torch.where(batch.mask, batch.rewards, -1e6),
    }
    with torch.no_grad():
        assert torch.equal(model.loss(batch)[0], model.loss(batch.__class__(**noisy))[0])


def test_split_holdout_takes_whole_random_episodes_or_last_rows(ds):
    train, held = split_holdout(ds, FitConfig(holdout_fraction=0.2, seed=1))
    assert len(np.intersect1d(train, held)) == 0 and len(train) + len(held) == len(ds)
    assert len(held) >= 80
    ids = ds.episode_ids
    assert not set(ids[held]) & set(ids[train])  # whole episodes
    other = split_holdout(ds, FitConfig(holdout_fraction=0.2, seed=2))[1]
    assert not np.array_equal(held, other)
    train, held = split_holdout(ds, FitConfig(holdout_split="last", max_holdout=50))
    np.testing.assert_array_equal(held, np.arange(350, 400))
    with pytest.raises(DatasetError, match="too few for a holdout"):
        split_holdout(ds.subset(slice(0, 3)), FitConfig())
    with pytest.raises(ConfigError, match="holdout_split"):
        FitConfig(holdout_split="random")


def test_any_step_selection_is_the_official_rule():
    sel = _Selection("any_step", 3, 0.0)
    assert sel.update(np.array([3.0, 3.0, 3.0])).all()  # first epoch always accepted
    assert not sel.update(np.array([2.0, 5.0, 5.0])).any()  # one k improves but the mean rises
    assert sel.update(np.array([2.0, 3.5, 3.0])).all()  # one k improves and the mean drops
    np.testing.assert_array_equal(sel.best, [2.0, 3.5, 3.0])  # all k replaced on acceptance
    assert not sel.update(np.array([2.0, 3.5, 3.0])).any() and sel.epochs_since_update == 1
    member = _Selection("per_member", 2, 0.01)
    member.update(np.array([1.0, 1.0]))
    np.testing.assert_array_equal(member.update(np.array([0.995, 0.9])), [False, True])  # 1 % rule
    np.testing.assert_array_equal(member.best, [1.0, 0.9])


def test_fit_learns_and_is_deterministic(ds):
    config = FitConfig(max_epochs=3, batch_size=32, learning_rate=3e-3)
    untrained = fit_stats(tiny_adm(seed=5), ds)
    holdout = Windows(ds.subset(split_holdout(ds, config)[1]), M)
    before = evaluate_errors(untrained, holdout)
    a, b = tiny_adm(seed=5), tiny_adm(seed=5)
    result = fit(a, ds, config)
    fit(b, ds, config)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert result.epochs == 3 and result.holdout_errors.shape == (M,)
    assert result.num_train + result.num_holdout == len(ds)
    np.testing.assert_allclose(result.holdout_errors, evaluate_errors(a, holdout).numpy(), rtol=1e-5)
    assert (result.holdout_errors < before.numpy()).all()
    assert not a.training


def test_fit_stops_after_patience_without_improvement(ds):
    result = fit(tiny_adm(), ds, FitConfig(learning_rate=0.0, patience=2, batch_size=64))
    assert result.epochs == 3 and result.best_epoch == 1
    assert [h["accepted"] for h in result.history] == [True, False, False]


def test_weighted_holdout_errors_and_bad_weights(ds, model):
    weights = np.random.default_rng(0).uniform(0, 2, len(ds))
    weights[:50] = 0.0
    windows = Windows(ds, M, sample_weights=weights)
    errors, valid = model.prediction_errors(windows.gather(torch.arange(len(ds))))
    w = torch.as_tensor(weights, dtype=torch.float32)[:, None] * valid
    expected = (errors * w).sum(0) / w.sum(0)
    torch.testing.assert_close(evaluate_errors(model, windows, batch_size=64), expected, rtol=1e-5, atol=0)
    with pytest.raises(DatasetError, match="sample_weights"):
        fit(tiny_adm(), ds, FitConfig(max_epochs=1), sample_weights=np.ones(10))


def test_holdout_without_long_windows_is_named(ds, model):
    short = ds.subset(np.flatnonzero(ds.episode_lengths()[ds.episode_ids] < 3))  # episodes of 1-2 steps
    with pytest.raises(DatasetError, match=r"no holdout window .* valid for channels \[3, 4\]"):
        evaluate_errors(model, Windows(short, M))


def test_sample_errors_is_one_dropout_on_batch_per_k(ds):
    """The official validation: per k, one batch of B windows of its own (rows from the generator), the mean
    over those valid for k, dropout on."""
    model = fit_stats(tiny_adm(dropout=0.3), ds)
    windows = Windows(ds, M)
    torch.manual_seed(1)
    errors = sample_errors(model, windows, 32, torch.Generator().manual_seed(4))
    assert model.training and errors.shape == (M,)
    torch.manual_seed(1)
    generator, expected = torch.Generator().manual_seed(4), []
    with torch.no_grad():
        for k in range(M):
            batch = windows.gather(windows.sample_rows(32, generator))
            all_k, valid = model.prediction_errors(batch)
            expected.append(all_k[:, k].numpy()[valid[:, k].numpy()].mean())
    np.testing.assert_allclose(errors.numpy(), expected, rtol=1e-6)
    torch.manual_seed(2)  # other dropout masks on the same windows: another error
    assert not torch.equal(sample_errors(model, windows, 32, torch.Generator().manual_seed(4)), errors)
    short = ds.subset(np.flatnonzero(ds.episode_lengths()[ds.episode_ids] < 3))
    with pytest.raises(DatasetError, match=r"no valid holdout window for channel 3 in 100 batches of 8"):
        sample_errors(model, Windows(short, M), 8, torch.Generator())


def test_batch_validation_is_seeded_and_noisy(ds):
    """``validation_batch`` selects on one-batch errors: the same under the same seed, and moving from epoch to
    epoch even when the weights do not (learning rate 0), where the whole-holdout error stays the same."""
    config = FitConfig(max_epochs=4, batch_size=32, validation_batch=16, seed=2)
    a, b = fit(tiny_adm(seed=5), ds, config), fit(tiny_adm(seed=5), ds, config)
    assert a.history == b.history
    frozen = dict(learning_rate=0.0, max_epochs=3, patience=5, batch_size=64, seed=1)
    batch = fit(tiny_adm(), ds, FitConfig(validation_batch=8, **frozen)).history
    full = fit(tiny_adm(), ds, FitConfig(**frozen)).history
    assert len({h["holdout_mse"] for h in full}) == 1 and len({h["holdout_mse"] for h in batch}) == 3


def test_checkpoint_roundtrip(ds, model, tmp_path):
    batch = Windows(ds, M).gather(torch.arange(8))
    with torch.no_grad():
        model.logvar_bounds.max_logvar.add_(0.1)  # non-default state must survive
    loaded = assert_checkpoint_roundtrip(model, lambda m: m(batch.obs0, batch.actions), tmp_path)
    assert torch.equal(loaded.normalizer.obs_std, torch.from_numpy(ds.normalization_stats()["obs_std"]))


def test_bad_checkpoints_raise_checkpoint_error(model, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load_model(tmp_path / "junk.pt")
    path = tmp_path / "adm.pt"
    save_model(model, path)
    payload = torch.load(path, weights_only=True)
    for change, message in (
        ({"kind": "mlp"}, "field 'kind'"),
        ({"format": 0}, "field 'format'"),
        ({"config": {**payload["config"], "hidden_dim": 8}}, "does not match"),
    ):
        torch.save({**payload, **change}, path)
        with pytest.raises(CheckpointError, match=message):
            load_model(path)


def test_config_validation():
    with pytest.raises(ConfigError, match="'validation_batch' must be >= 1 or None, got 0"):
        FitConfig(validation_batch=0)
    with pytest.raises(ConfigError, match="max_backtrack"):
        tiny_recurrent_config(max_backtrack=0)
    with pytest.raises(ConfigError, match="dropout"):
        tiny_recurrent_config(dropout=1.5)
