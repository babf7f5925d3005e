"""D4RL hdf5 reader/writer on tiny files in the published layouts, built from real Hopper-v5 steps."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_mbrl.data import TransitionDataset, load_dataset, read_d4rl, write_d4rl
from offline_mbrl.data.d4rl import d4rl_to_dataset
from offline_mbrl.errors import DatasetError, DatasetNotFoundError

V2_EXTRAS = {
    "infos/action_log_probs": lambda n: np.zeros(n, np.float32),
    "metadata/algorithm": lambda n: np.bytes_(b"SAC"),
    "metadata/iteration": lambda n: np.int32(7),
    "metadata/policy/fc0/weight": lambda n: np.ones((4, 4), np.float32),
}


def _write_layout(
    path: Path, dataset: TransitionDataset, *, next_obs=True, timeouts=True, dtype=np.float32, column=False, extras=True
) -> Path:
    """A file as D4RL publishes it: v2 keys, optional next_observations/timeouts, (N, 1) columns."""
    arrays = {
        "observations": dataset.obs,
        "actions": dataset.actions,
        "rewards": dataset.rewards,
        "terminals": dataset.terminals,
        "infos/qpos": dataset.qpos,
        "infos/qvel": dataset.qvel,
    }
    if next_obs:
        arrays["next_observations"] = dataset.next_obs
    if timeouts:
        arrays["timeouts"] = dataset.timeouts
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            value = value.astype(dtype) if value.dtype.kind == "f" else value
            file.create_dataset(key, data=value[:, None] if column and value.ndim == 1 else value)
        for key, make in V2_EXTRAS.items() if extras else ():
            file.create_dataset(key, data=make(len(dataset)))
    return path


def _successor_reference(dataset: TransitionDataset) -> dict[str, np.ndarray]:
    """Plain-loop reference of the no-next_observations rule: keep row i iff i+1 is in its episode."""
    ends = dataset.terminals | dataset.timeouts
    ends[-1] = True
    rows = {"obs": [], "next_obs": [], "timeouts": [], "qpos": []}
    for i in range(len(dataset) - 1):
        if not ends[i]:
            rows["obs"].append(dataset.obs[i])
            rows["next_obs"].append(dataset.obs[i + 1])
            rows["timeouts"].append(ends[i + 1])
            rows["qpos"].append(dataset.qpos[i])
    return {name: np.asarray(values) for name, values in rows.items()}


@pytest.mark.parametrize("name", ["hopper_medium-v2.hdf5", "hopper-medium-v2.hdf5", "data.h5"])
def test_v2_layout_reads_every_field(tmp_path, hopper_dataset, assert_same, name):
    path = _write_layout(tmp_path / name, hopper_dataset)
    dataset = read_d4rl(path)
    assert_same(
        dataset,
        hopper_dataset,
        fields=("obs", "actions", "rewards", "next_obs", "terminals", "timeouts", "qpos", "qvel"),
    )
    assert dataset.collection_step is None
    assert dataset.source == str(path)
    assert dataset.metadata["notes"] == []
    if name == "data.h5":
        assert "env_id" not in dataset.metadata and "task" not in dataset.metadata
    else:
        assert dataset.metadata["env_id"] == "Hopper-v5" and dataset.metadata["task"] == "hopper-medium-v2"


@pytest.mark.parametrize(
    "stem, task, env_id",
    [
        ("halfcheetah_medium_replay-v2", "halfcheetah-medium-replay-v2", "HalfCheetah-v5"),
        ("walker2d-medium-expert-v2", "walker2d-medium-expert-v2", "Walker2d-v5"),
        ("hopper_full_replay-v1", "hopper-full-replay-v1", "Hopper-v5"),
    ],
)
def test_task_and_env_id_are_guessed_from_d4rl_names(tmp_path, stem, task, env_id):
    n, obs_dim = 4, 11 if stem.startswith("hopper") else 17
    dataset = TransitionDataset(
        obs=np.zeros((n, obs_dim)),
        actions=np.zeros((n, 3)),
        rewards=np.zeros(n),
        next_obs=np.zeros((n, obs_dim)),
        terminals=np.zeros(n),
        timeouts=np.zeros(n),
    )
    loaded = read_d4rl(write_d4rl(dataset, tmp_path / f"{stem}.hdf5"))
    assert loaded.metadata["task"] == task and loaded.metadata["env_id"] == env_id


def test_replay_style_float64_and_column_fields(tmp_path, hopper_dataset, assert_same):
    path = _write_layout(tmp_path / "hopper_medium_replay-v2.hdf5", hopper_dataset, dtype=np.float64, column=True)
    with h5py.File(path) as file:
        assert file["observations"].dtype == np.float64 and file["rewards"].shape == (len(hopper_dataset), 1)
    dataset = read_d4rl(path)
    assert dataset.obs.dtype == np.float32 and dataset.rewards.shape == (len(hopper_dataset),)
    assert_same(dataset, hopper_dataset, fields=("obs", "actions", "rewards", "next_obs", "terminals", "timeouts"))


def test_without_next_observations_drops_each_episode_last_step(tmp_path, hopper_dataset):
    path = _write_layout(tmp_path / "hopper_medium-v0.hdf5", hopper_dataset, next_obs=False)
    dataset = read_d4rl(path)
    expected = _successor_reference(hopper_dataset)
    assert len(dataset) == len(hopper_dataset) - hopper_dataset.num_episodes
    for name, value in expected.items():
        np.testing.assert_array_equal(getattr(dataset, name), value.astype(getattr(dataset, name).dtype), err_msg=name)
    assert not dataset.terminals.any()
    assert dataset.num_episodes == hopper_dataset.num_episodes  # boundaries survive as timeouts
    # every derived next_obs is a true successor: the model never sees a reset state as s'
    real_successors = {row.tobytes() for row in hopper_dataset.next_obs}
    assert all(row.tobytes() in real_successors for row in dataset.next_obs)
    (note,) = dataset.metadata["notes"]
    assert "no 'next_observations' key" in note and f"each of the {hopper_dataset.num_episodes} episodes" in note


def test_without_timeouts_episodes_end_only_at_terminals(tmp_path, hopper_dataset, assert_same):
    dataset = read_d4rl(_write_layout(tmp_path / "old.hdf5", hopper_dataset, timeouts=False))
    assert not dataset.timeouts.any()
    assert_same(dataset, hopper_dataset, fields=("obs", "next_obs", "terminals"))
    last_unflagged = not hopper_dataset.terminals[-1]
    assert dataset.num_episodes == hopper_dataset.terminals.sum() + last_unflagged
    assert any("no 'timeouts' key" in note for note in dataset.metadata["notes"])
    assert "no 'timeouts' key" in "\n".join(dataset.summary()["notes"])


def test_v0_layout_without_both_keys_has_both_notes(tmp_path, hopper_dataset):
    dataset = read_d4rl(_write_layout(tmp_path / "v0.hdf5", hopper_dataset, timeouts=False, next_obs=False))
    ends_at_terminals = np.flatnonzero(hopper_dataset.terminals)
    assert len(dataset) == len(hopper_dataset) - len(ends_at_terminals) - (not hopper_dataset.terminals[-1])
    assert len(dataset.metadata["notes"]) == 2


settings_small = settings(max_examples=50, deadline=None)


@settings_small
@given(st.lists(st.sampled_from(["", "t", "o"]), min_size=2, max_size=30))
def test_successor_rule_matches_plain_loop(flags):
    n = len(flags)
    rng = np.random.default_rng(n)
    source = TransitionDataset(
        obs=rng.normal(size=(n, 2)),
        actions=rng.normal(size=(n, 1)),
        rewards=rng.normal(size=n),
        next_obs=np.zeros((n, 2)),
        terminals=np.array([f == "t" for f in flags]),
        timeouts=np.array([f == "o" for f in flags]),
        qpos=rng.normal(size=(n, 3)),
    )
    arrays = {
        "observations": source.obs,
        "actions": source.actions,
        "rewards": source.rewards,
        "terminals": source.terminals,
        "timeouts": source.timeouts,
        "infos/qpos": source.qpos,
    }
    expected = _successor_reference(source)
    if len(expected["obs"]) == 0:
        with pytest.raises(DatasetError, match="dataset is empty"):
            d4rl_to_dataset(arrays, source="s")
        return
    dataset = d4rl_to_dataset(arrays, source="s")
    for name, value in expected.items():
        np.testing.assert_array_equal(getattr(dataset, name), value, err_msg=name)


def test_write_read_round_trip_is_lossless(tmp_path, hopper_dataset, assert_same):
    path = write_d4rl(hopper_dataset, tmp_path / "collected.hdf5")
    with h5py.File(path) as file:
        assert {"next_observations", "timeouts", "infos/qpos", "infos/qvel", "infos/collection_step"} <= set(
            _all_keys(file)
        )
    assert_same(read_d4rl(path), hopper_dataset)
    assert not list(tmp_path.glob("*.tmp"))


def test_round_trip_keeps_unfinished_last_episode_and_absent_fields(tmp_path, hopper_dataset, assert_same):
    part = hopper_dataset.subset(slice(0, 45))
    bare = TransitionDataset(
        obs=part.obs,
        actions=part.actions,
        rewards=part.rewards,
        next_obs=part.next_obs,
        terminals=part.terminals,
        timeouts=part.timeouts,
    )
    loaded = load_dataset(str(write_d4rl(bare, tmp_path / "bare.HDF5")))
    assert_same(loaded, bare)
    assert not (loaded.terminals[-1] or loaded.timeouts[-1])


def test_writer_reports_unwritable_path(tmp_path, hopper_dataset):
    with pytest.raises(DatasetError, match=r"no_such_dir.*cannot write D4RL file"):
        write_d4rl(hopper_dataset, tmp_path / "no_such_dir" / "x.hdf5")


# ---------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"absent\.hdf5: dataset file not found"):
        read_d4rl(tmp_path / "absent.hdf5")


def test_truncated_file(tmp_path, hopper_dataset):
    path = write_d4rl(hopper_dataset, tmp_path / "cut.hdf5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"cut\.hdf5: cannot read HDF5 file"):
        read_d4rl(path)


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "text.hdf5"
    path.write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"text\.hdf5: cannot read HDF5 file"):
        read_d4rl(path)


def test_missing_key_is_named_and_present_keys_listed(tmp_path, hopper_dataset):
    path = _write_layout(tmp_path / "nokey.hdf5", hopper_dataset)
    with h5py.File(path, "a") as file:
        del file["actions"]
    with pytest.raises(DatasetError) as info:
        read_d4rl(path)
    message = str(info.value)
    assert "nokey.hdf5: missing key 'actions'" in message
    assert "'observations'" in message and "'infos/qpos'" in message and "'metadata/*'" in message
    assert "metadata/policy" not in message


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("rewards", lambda d: d.rewards[:-3], "length mismatch: field 'rewards' has"),
        ("infos/qvel", lambda d: d.qvel[:-1], "length mismatch: field 'infos/qvel' has"),
        ("observations", lambda d: d.obs[:, 0], "field 'observations' must have rank 2"),
        (
            "rewards",
            lambda d: np.where(np.arange(len(d)) % 40 == 3, np.nan, d.rewards),
            "field 'rewards' holds {} NaN/inf value(s)",
        ),
        (
            "next_observations",
            lambda d: np.where(np.arange(len(d))[:, None] == 3, np.inf, d.next_obs),
            "field 'next_obs' holds 11 NaN/inf value(s)",
        ),
        ("terminals", lambda d: np.full(len(d), 3), "field 'terminals' must hold only 0/1"),
    ],
)
def test_bad_arrays_raise_with_file_and_field(tmp_path, hopper_dataset, key, value, message):
    message = message.format((len(hopper_dataset) + 36) // 40)  # NaN rows 3, 43, 83, ...
    path = _write_layout(tmp_path / "bad.hdf5", hopper_dataset)
    with h5py.File(path, "a") as file:
        del file[key]
        file.create_dataset(key, data=value(hopper_dataset))
    with pytest.raises(DatasetError) as info:
        read_d4rl(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.hdf5"
    with h5py.File(path, "w") as file:
        for key, shape in (("observations", (0, 11)), ("actions", (0, 3)), ("rewards", (0,)), ("terminals", (0,))):
            file.create_dataset(key, data=np.zeros(shape))
    with pytest.raises(DatasetError, match=r"empty\.hdf5: dataset is empty \(field 'observations' has 0 rows\)"):
        read_d4rl(path)


def test_obs_dim_unlike_the_named_task(tmp_path, hopper_x_dataset):
    path = _write_layout(tmp_path / "hopper_medium-v2.hdf5", hopper_x_dataset)
    with pytest.raises(
        DatasetError,
        match=r"hopper_medium-v2\.hdf5: file name says task 'hopper-medium-v2' "
        r"\(obs dim 11\), but field 'obs' has dim 12",
    ):
        read_d4rl(path)


def _all_keys(file: h5py.File) -> list[str]:
    keys: list[str] = []
    file.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return keys
