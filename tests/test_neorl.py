"""NeoRL npz reader on tiny files in the published layout, built from real Hopper-v5 steps with x in the obs."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_mbrl.data import TransitionDataset, load_dataset, read_neorl
from offline_mbrl.data.neorl import trajectory_starts
from offline_mbrl.errors import DatasetError, DatasetNotFoundError

NAME = "Hopper-v3-low-1000-train-noise.npz"


def _arrays(dataset: TransitionDataset, index_form: str = "end") -> dict[str, np.ndarray]:
    """The file layout: reward/done (N, 1) float32, index float32 END offsets (or START offsets)."""
    ends = np.flatnonzero(dataset.episode_ends) + 1
    index = ends if index_form == "end" else np.concatenate([[0], ends[:-1]])
    return {
        "obs": dataset.obs,
        "next_obs": dataset.next_obs,
        "action": dataset.actions,
        "reward": dataset.rewards[:, None],
        "done": dataset.terminals[:, None].astype(np.float32),
        "index": index.astype(np.float32),
    }


def _write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with open(path, "wb") as file:  # a file object: np.savez would append ".npz" to "x.NPZ"
        np.savez(file, **arrays)
    return path


@pytest.mark.parametrize("index_form", ["end", "start"])
def test_reads_every_field_with_either_index_form(tmp_path, hopper_x_dataset, assert_same, index_form):
    dataset = read_neorl(_write(tmp_path / NAME, _arrays(hopper_x_dataset, index_form)))
    assert_same(dataset, hopper_x_dataset, fields=("obs", "actions", "rewards", "next_obs", "terminals"))
    np.testing.assert_array_equal(dataset.timeouts, hopper_x_dataset.episode_ends & ~hopper_x_dataset.terminals)
    np.testing.assert_array_equal(dataset.episode_starts, hopper_x_dataset.episode_starts)
    assert dataset.qpos is None and dataset.source == str(tmp_path / NAME)


def test_metadata_from_file_name_builds_the_matching_env(tmp_path, hopper_x_dataset):
    dataset = read_neorl(_write(tmp_path / NAME, _arrays(hopper_x_dataset)))
    meta = dataset.metadata
    assert meta["task"] == "neorl-hopper-low" and meta["env_id"] == "Hopper-v5"
    assert meta["env_kwargs"] == {"exclude_current_positions_from_observation": False}
    env = gym.make(meta["env_id"], **meta["env_kwargs"])
    assert env.observation_space.shape == (dataset.obs_dim,)


@pytest.mark.parametrize(
    "name, task",
    [
        ("HalfCheetah-v3-high-100-val-noise.npz", "neorl-halfcheetah-high"),
        ("Walker2d-v3-medium-10000-train-noise.npz", "neorl-walker2d-medium"),
    ],
)
def test_task_names(tmp_path, name, task):
    n = 3
    arrays = {
        "obs": np.zeros((n, 18)),
        "next_obs": np.zeros((n, 18)),
        "action": np.zeros((n, 6)),
        "reward": np.zeros(n),
        "done": np.zeros(n),
        "index": np.array([n]),
    }
    assert read_neorl(_write(tmp_path / name, arrays)).metadata["task"] == task


def test_other_names_have_no_task(tmp_path, hopper_x_dataset):
    dataset = load_dataset(str(_write(tmp_path / "mine.NPZ", _arrays(hopper_x_dataset))))
    assert dataset.metadata == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=12))
def test_end_and_start_offsets_give_the_same_starts(lengths):
    ends = np.cumsum(lengths)
    starts = np.concatenate([[0], ends[:-1]])
    n = int(ends[-1])
    np.testing.assert_array_equal(trajectory_starts(ends.astype(np.float32), n, "f"), starts)
    np.testing.assert_array_equal(trajectory_starts(starts, n, "f"), starts)


@pytest.mark.parametrize(
    "index, message",
    [
        ([5, 10, 12], "is neither end offsets (first > 0, last == N = 20) nor start offsets"),
        ([0, 10, 25], "is neither end offsets"),
        ([0, 10, 10], "must be strictly increasing"),
        ([10, 5, 20], "must be strictly increasing"),
        ([0, 2.5], "must hold whole numbers, found [2.5]"),
        ([], "must be a non-empty 1-D array"),
    ],
)
def test_inconsistent_index_is_rejected(index, message):
    with pytest.raises(DatasetError) as info:
        trajectory_starts(np.asarray(index, dtype=np.float32), 20, "Hopper.npz")
    assert str(info.value).startswith("Hopper.npz: field 'index'") and message in str(info.value)


def test_inconsistent_index_in_a_file(tmp_path, hopper_x_dataset):
    arrays = _arrays(hopper_x_dataset)
    arrays["index"] = arrays["index"] - 1  # end offsets that stop one row short of N
    with pytest.raises(DatasetError, match=rf"{NAME}: field 'index' .* is neither end offsets"):
        read_neorl(_write(tmp_path / NAME, arrays))


def test_done_inside_a_trajectory_is_rejected(tmp_path, hopper_x_dataset):
    arrays = _arrays(hopper_x_dataset)
    arrays["done"] = arrays["done"].copy()
    arrays["done"][2] = 1.0
    with pytest.raises(
        DatasetError,
        match=rf"{NAME}: field 'done' is set at row 2 .1 row.s. in all., which is not "
        "the last row of its trajectory",
    ):
        read_neorl(_write(tmp_path / NAME, arrays))


def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=rf"{NAME}: dataset file not found"):
        read_neorl(tmp_path / NAME)


def test_truncated_and_foreign_files(tmp_path, hopper_x_dataset):
    path = _write(tmp_path / NAME, _arrays(hopper_x_dataset))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=rf"{NAME}: cannot read npz file: not a complete zip archive"):
        read_neorl(path)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as file:
        np.save(file, np.zeros(3))
    with pytest.raises(DatasetError, match=r"single\.npz: cannot read npz file"):
        read_neorl(npy)


def test_missing_key_is_named_and_present_keys_listed(tmp_path, hopper_x_dataset):
    arrays = _arrays(hopper_x_dataset)
    del arrays["next_obs"]
    with pytest.raises(
        DatasetError,
        match=rf"{NAME}: missing key 'next_obs'; keys present: "
        r"\['action', 'done', 'index', 'obs', 'reward'\]",
    ):
        read_neorl(_write(tmp_path / NAME, arrays))


@pytest.mark.parametrize(
    "key, change, message",
    [
        ("action", lambda a: a[:-2], "length mismatch: field 'action' has"),
        ("reward", lambda a: np.zeros((len(a), 2)), "field 'reward' must have rank 1, got shape"),
        (
            "obs",
            lambda a: np.where(np.arange(len(a))[:, None] == 0, np.nan, a),
            "field 'obs' holds 12 NaN/inf value(s)",
        ),
        ("done", lambda a: a * 2, "field 'done' must hold only 0/1"),
    ],
)
def test_bad_arrays_raise_with_file_and_field(tmp_path, hopper_x_dataset, key, change, message):
    arrays = _arrays(hopper_x_dataset)
    arrays[key] = change(arrays[key])
    with pytest.raises(DatasetError) as info:
        read_neorl(_write(tmp_path / NAME, arrays))
    assert str(info.value).startswith(str(tmp_path / NAME)) and message in str(info.value)


def test_empty_file(tmp_path):
    arrays = {
        "obs": np.zeros((0, 12)),
        "next_obs": np.zeros((0, 12)),
        "action": np.zeros((0, 3)),
        "reward": np.zeros(0),
        "done": np.zeros(0),
        "index": np.zeros(0),
    }
    with pytest.raises(DatasetError, match=rf"{NAME}: dataset is empty"):
        read_neorl(_write(tmp_path / NAME, arrays))


def test_obs_without_x_is_unlike_the_named_task(tmp_path, hopper_dataset):
    with pytest.raises(
        DatasetError,
        match=r"file name says task 'neorl-hopper-low' \(obs dim 12\), but field 'obs' "
        r"has dim 11",
    ):
        read_neorl(_write(tmp_path / NAME, _arrays(hopper_dataset)))
