"""TransitionDataset and the shared reader helpers: episode bounds, validation messages, slicing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_mbrl.data import TransitionDataset
from offline_mbrl.data.dataset import (
    as_flags,
    check_shapes,
    require_file,
    require_keys,
    squeeze_column,
)
from offline_mbrl.errors import DatasetError, DatasetNotFoundError


def _synthetic(terminals, timeouts, obs_dim=3, action_dim=2, seed=0, **kwargs) -> TransitionDataset:
    n = len(terminals)
    rng = np.random.default_rng(seed)
    fields = dict(
        obs=rng.normal(size=(n, obs_dim)),
        actions=rng.uniform(-1, 1, (n, action_dim)),
        rewards=rng.normal(size=n),
        next_obs=rng.normal(size=(n, obs_dim)),
    )
    return TransitionDataset(**{**fields, **kwargs}, terminals=np.asarray(terminals), timeouts=np.asarray(timeouts))


def _episodes_reference(ends: np.ndarray) -> list[list[int]]:
    """Plain-Python episode split: a row ends its episode if flagged or if it is the last row."""
    episodes, current = [], []
    for i, end in enumerate(ends):
        current.append(i)
        if end or i == len(ends) - 1:
            episodes.append(current)
            current = []
    return episodes


flags = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(flags)
def test_episode_bounds_match_plain_python_split(rows):
    terminals, timeouts = (np.array(col, dtype=bool) for col in zip(*rows))
    dataset = _synthetic(terminals, timeouts)
    episodes = _episodes_reference(terminals | timeouts)
    assert dataset.num_episodes == len(episodes)
    np.testing.assert_array_equal(dataset.episode_starts, [ep[0] for ep in episodes])
    np.testing.assert_array_equal(dataset.episode_lengths(), [len(ep) for ep in episodes])
    expected_ids = np.concatenate([[k] * len(ep) for k, ep in enumerate(episodes)])
    np.testing.assert_array_equal(dataset.episode_ids, expected_ids)
    expected_returns = [dataset.rewards[ep].astype(np.float64).sum() for ep in episodes]
    np.testing.assert_allclose(dataset.episode_returns(), expected_returns, rtol=1e-12)


def test_real_hopper_episodes_end_at_flags(hopper_dataset):
    ends = np.flatnonzero(hopper_dataset.episode_ends)
    assert np.all(hopper_dataset.terminals[ends] | hopper_dataset.timeouts[ends])
    assert hopper_dataset.num_episodes == 8
    # inside an episode the next row starts where this one ended
    inside = ~hopper_dataset.episode_ends[:-1]
    np.testing.assert_array_equal(hopper_dataset.next_obs[:-1][inside], hopper_dataset.obs[1:][inside])
    assert hopper_dataset.timeouts.sum() and hopper_dataset.terminals.sum()
    assert np.all(hopper_dataset.episode_lengths() <= 30)


def test_float_fields_become_float32_and_flags_bool():
    dataset = _synthetic(np.array([0.0, 1.0]), np.array([0, 0]))
    assert dataset.obs.dtype == np.float32 and dataset.rewards.dtype == np.float32
    assert dataset.terminals.dtype == bool and dataset.terminals.tolist() == [False, True]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(rewards=np.zeros((4, 2))), "field 'rewards' must have rank 1, got shape (4, 2)"),
        (dict(actions=np.zeros((3, 2))), "length mismatch: field 'actions' has 3 rows, field 'obs' has 4"),
        (dict(next_obs=np.zeros((4, 5))), "field 'next_obs' has dim 5, field 'obs' has dim 3"),
        (dict(qpos=np.zeros(4)), "field 'qpos' must have rank 2"),
        (dict(terminals=np.array([0, 2, 0, 0])), "field 'terminals' must hold only 0/1"),
    ],
)
def test_validation_messages_name_source_and_field(change, message):
    base = dict(
        obs=np.zeros((4, 3)),
        actions=np.zeros((4, 2)),
        rewards=np.zeros(4),
        next_obs=np.zeros((4, 3)),
        terminals=np.zeros(4),
        timeouts=np.zeros(4),
    )
    with pytest.raises(DatasetError) as info:
        TransitionDataset(**{**base, **change}, source="file.hdf5")
    assert str(info.value).startswith("file.hdf5: ") and message in str(info.value)


def test_nan_and_inf_are_counted_per_field():
    rewards = np.array([0.0, np.nan, np.inf, 1.0])
    with pytest.raises(DatasetError, match=r"x\.npz: field 'rewards' holds 2 NaN/inf value\(s\)"):
        TransitionDataset(
            obs=np.zeros((4, 3)),
            actions=np.zeros((4, 2)),
            rewards=rewards,
            next_obs=np.zeros((4, 3)),
            terminals=np.zeros(4),
            timeouts=np.zeros(4),
            source="x.npz",
        )


def test_empty_dataset_is_rejected():
    with pytest.raises(DatasetError, match=r"e\.hdf5: dataset is empty \(field 'obs' has 0 rows\)"):
        TransitionDataset(
            obs=np.zeros((0, 3)),
            actions=np.zeros((0, 2)),
            rewards=np.zeros(0),
            next_obs=np.zeros((0, 3)),
            terminals=np.zeros(0),
            timeouts=np.zeros(0),
            source="e.hdf5",
        )


def test_normalization_stats_match_numpy(hopper_dataset):
    stats = hopper_dataset.normalization_stats()
    np.testing.assert_allclose(stats["obs_mean"], hopper_dataset.obs.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats["action_std"], hopper_dataset.actions.astype(np.float64).std(0), rtol=1e-6)
    constant = _synthetic(np.zeros(3), np.zeros(3), actions=np.ones((3, 2)))
    np.testing.assert_array_equal(constant.normalization_stats()["action_std"], [1.0, 1.0])


def test_subset_and_concatenate_round_trip(hopper_dataset, assert_same):
    cut = int(hopper_dataset.episode_starts[3])
    head, tail = hopper_dataset.subset(slice(0, cut)), hopper_dataset.subset(slice(cut, None))
    assert head.num_episodes == 3 and tail.num_episodes == 5
    assert_same(TransitionDataset.concatenate([head, tail]), hopper_dataset)


def test_concatenate_refuses_to_merge_an_unfinished_episode(hopper_dataset):
    unfinished = hopper_dataset.subset(slice(0, 5))
    assert not (unfinished.terminals[-1] or unfinished.timeouts[-1])
    with pytest.raises(DatasetError, match="last row is neither terminal nor timeout"):
        TransitionDataset.concatenate([unfinished, hopper_dataset])


def test_summary_reports_counts(hopper_dataset):
    summary = hopper_dataset.summary()
    assert summary["transitions"] == len(hopper_dataset) and summary["episodes"] == 8
    assert summary["terminals"] == int(hopper_dataset.terminals.sum())
    assert summary["return_max"] == pytest.approx(hopper_dataset.episode_returns().max())
    assert summary["has_sim_state"] and summary["env_id"] == "Hopper-v5" and summary["task"] is None


# ---------------------------------------------------------------- helpers shared by the readers
def test_require_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nothing.hdf5: dataset file not found"):
        require_file(tmp_path / "nothing.hdf5")
    with pytest.raises(DatasetNotFoundError):
        require_file(tmp_path)  # a folder is not a file


def test_require_keys_names_missing_and_present():
    with pytest.raises(DatasetError, match=r"f\.npz: missing key 'reward'; keys present: \['action', 'obs'\]"):
        require_keys("f.npz", ["obs", "action"], ["obs", "reward"])


def test_squeeze_column_only_squeezes_single_columns():
    assert squeeze_column(np.zeros((5, 1))).shape == (5,)
    assert squeeze_column(np.zeros((5, 2))).shape == (5, 2)
    assert squeeze_column(np.zeros(5)).shape == (5,)


def test_check_shapes_reports_first_problem_and_returns_rows():
    ranks = {"a": 2, "b": 1, "c": 1}
    assert check_shapes("s", {"a": np.zeros((3, 2)), "b": np.zeros(3)}, ranks) == 3
    with pytest.raises(DatasetError, match="s: length mismatch: field 'c' has 2 rows, field 'a' has 3"):
        check_shapes("s", {"a": np.zeros((3, 2)), "b": np.zeros(3), "c": np.zeros(2)}, ranks)


def test_as_flags_accepts_0_1_numbers():
    flags = as_flags("s", "done", np.array([0.0, 1.0, 1.0]))
    assert flags.dtype == bool and flags.tolist() == [False, True, True]
