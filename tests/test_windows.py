import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_mbrl.data.dataset import TransitionDataset
from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import ConfigError, DatasetError
from tests.models_helpers import hopper_dataset, reference_mask


def numbered_dataset(terminals, timeouts) -> TransitionDataset:
    """Row i has obs [i, -i], action [i], reward i, next_obs [i + 0.5, 0]."""
    n = len(terminals)
    i = np.arange(n, dtype=np.float32)
    return TransitionDataset(
        obs=np.stack([i, -i], 1),
        actions=i[:, None],
        rewards=i,
        next_obs=np.stack([i + 0.5, 0 * i], 1),
        terminals=terminals,
        timeouts=timeouts,
    )


flags = st.lists(st.sampled_from(["", "terminal", "timeout"]), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(flags=flags, m=st.integers(1, 6))
def test_windows_never_cross_an_episode_end(flags, m):
    ds = numbered_dataset(np.array([f == "terminal" for f in flags]), np.array([f == "timeout" for f in flags]))
    batch = Windows(ds, m).gather(torch.arange(len(ds)))
    mask = batch.mask.numpy()
    np.testing.assert_array_equal(mask, reference_mask(ds, m))
    rows_used = batch.actions[..., 0].numpy().astype(int)  # action value = row index
    ids = ds.episode_ids
    assert (ids[rows_used] == ids[:, None]).all()  # even padding stays in the episode
    t = np.arange(len(ds))[:, None] + np.arange(m)[None]
    np.testing.assert_array_equal(rows_used[mask], t[mask])  # valid steps are consecutive rows
    np.testing.assert_array_equal(batch.rewards.numpy()[mask], t[mask])
    np.testing.assert_array_equal(batch.next_obs[..., 0].numpy()[mask], t[mask] + 0.5)


def test_mask_at_terminal_and_timeout():
    ds = numbered_dataset(np.array([0, 0, 1, 0, 0, 0, 0], bool), np.array([0, 0, 0, 0, 1, 0, 0], bool))
    mask = Windows(ds, 3).gather(torch.tensor([0, 1, 2, 3, 5, 6])).mask
    expected = [
        [1, 1, 1],  # terminal at step 2 ends the window after k = 3
        [1, 1, 0],  # terminal at step 1: k > 2 invalid
        [1, 0, 0],  # the terminal row itself trains only k = 1
        [1, 1, 0],  # timeout at step 1
        [1, 1, 0],  # data end
        [1, 0, 0],
    ]
    np.testing.assert_array_equal(mask.numpy(), np.array(expected, bool))


def test_real_hopper_windows_match_a_loop():
    ds = hopper_dataset()
    m = 4
    batch = Windows(ds, m).gather(torch.arange(len(ds)))
    mask = reference_mask(ds, m)
    np.testing.assert_array_equal(batch.mask.numpy(), mask)
    for t in (0, 5, 37, len(ds) - 2):
        for j in np.flatnonzero(mask[t]):
            np.testing.assert_array_equal(batch.actions[t, j].numpy(), ds.actions[t + j])
            np.testing.assert_array_equal(batch.next_obs[t, j].numpy(), ds.next_obs[t + j])
            assert batch.terminals[t, j].item() == ds.terminals[t + j]
    np.testing.assert_array_equal(
        batch.states[:, 1:][batch.mask[:, :-1]].numpy(), batch.next_obs[:, :-1][batch.mask[:, :-1]].numpy()
    )


@settings(max_examples=40, deadline=None)
@given(flags=flags, m=st.integers(1, 5))
def test_history_is_right_aligned_inside_the_episode(flags, m):
    ds = numbered_dataset(np.array([f == "terminal" for f in flags]), np.array([f == "timeout" for f in flags]))
    hist = Windows(ds, m).history(torch.arange(len(ds)))
    starts = ds.episode_starts[ds.episode_ids]
    expected_len = np.minimum(np.arange(len(ds)) - starts + 1, m)
    np.testing.assert_array_equal(hist.lengths.numpy(), expected_len)
    for i in range(len(ds)):
        length = expected_len[i]
        np.testing.assert_array_equal(hist.obs[i, m - length :, 0].numpy(), np.arange(i - length + 1, i + 1))
        np.testing.assert_array_equal(hist.actions[i, m - length :, 0].numpy(), np.arange(i - length + 1, i))
        assert (hist.obs[i, : m - length] == 0).all() and (hist.actions[i, : m - length] == 0).all()


def test_sampling_is_seeded_and_follows_weights():
    ds = hopper_dataset()
    windows = Windows(ds, 3)
    a = windows.sample(64, torch.Generator().manual_seed(3))
    b = windows.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(a.rows, b.rows) and torch.equal(a.actions, b.actions)
    weights = np.zeros(len(ds))
    weights[[7, 11]] = [1.0, 3.0]
    rows = Windows(ds, 3, sample_weights=weights).sample_rows(4000, torch.Generator().manual_seed(0))
    assert set(rows.tolist()) == {7, 11}
    assert abs((rows == 11).float().mean().item() - 0.75) < 0.03
    hist = Windows(ds, 3, sample_weights=weights).sample_history(10, torch.Generator().manual_seed(0))
    assert set(hist.rows.tolist()) <= {7, 11}


@pytest.mark.parametrize(
    "weights, problem",
    [(np.ones(3), "shape"), (-np.ones(400), "negative"), (np.zeros(400), "sums to 0"), (np.full(400, np.nan), "NaN")],
)
def test_bad_sample_weights_are_named(weights, problem):
    with pytest.raises(DatasetError, match=problem):
        Windows(hopper_dataset(), 2, sample_weights=weights)


@pytest.mark.parametrize("m", [0, -1, 2.5])
def test_bad_max_backtrack(m):
    with pytest.raises(ConfigError, match="max_backtrack"):
        Windows(hopper_dataset(), m)
