import numpy as np
import pytest
import torch

from offline_mbrl.data.windows import Windows
from offline_mbrl.models.fit import FitConfig, fit
from tests.models_helpers import (
    assert_checkpoint_roundtrip,
    fit_stats,
    reference_mask,
    tiny_boot_rnn,
)

M = 4


@pytest.fixture()
def model(ds):
    return fit_stats(tiny_boot_rnn(), ds).eval()


def test_targets_are_deltas_to_the_last_real_state(ds, model):
    rows = np.arange(0, 400, 7)
    batch = Windows(ds, M).gather(torch.from_numpy(rows))
    with torch.no_grad():
        mean, logvar, target = model.window_outputs(batch)
    assert mean.shape == logvar.shape == target.shape == (len(rows), M, 12)
    valid = reference_mask(ds, M)[rows]
    for b, t in enumerate(rows):
        for j in np.flatnonzero(valid[b]):
            expected = np.append(ds.next_obs[t + j] - ds.obs[t + j], ds.rewards[t + j])
            np.testing.assert_allclose(target[b, j].numpy(), expected, atol=1e-6)


def test_output_j_reads_only_pairs_up_to_j(ds, model):
    batch = Windows(ds, M).gather(torch.arange(10))
    states, actions = batch.states, batch.actions
    with torch.no_grad():
        mean, _ = model(states, actions)
        changed, _ = model(
            torch.cat([states[:, :2], states[:, 2:] + 5.0], 1), torch.cat([actions[:, :2], -actions[:, 2:]], 1)
        )
    torch.testing.assert_close(changed[:, :2], mean[:, :2])
    assert not torch.allclose(changed[:, 2:], mean[:, 2:])


def test_fit_learns_one_step_predictions(ds):
    model = tiny_boot_rnn(seed=2)
    result = fit(model, ds, FitConfig(max_epochs=3, batch_size=32, learning_rate=3e-3))
    assert result.holdout_errors.shape == (M,)
    untrained = fit_stats(tiny_boot_rnn(seed=2), ds).eval()
    batch = Windows(ds, M).gather(torch.arange(len(ds)))
    with torch.no_grad():
        before, valid = untrained.prediction_errors(batch)
        after, _ = model.prediction_errors(batch)
    assert after[valid].mean() < before[valid].mean()


def test_checkpoint_roundtrip(ds, model, tmp_path):
    batch = Windows(ds, M).gather(torch.arange(6))
    assert_checkpoint_roundtrip(model, lambda m: m(batch.states, batch.actions), tmp_path)
