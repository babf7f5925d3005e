"""Minari writer/reader on real Hopper-v5 steps, in a temporary MINARI_DATASETS_PATH (conftest)."""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from offline_mbrl.data import TransitionDataset, load_dataset, read_minari, write_minari
from offline_mbrl.errors import DatasetError, DatasetNotFoundError

_ids = (f"test/hopper/case{i}-v0" for i in itertools.count())
HOPPER_REFS = dict(ref_min_score=-20.272305, ref_max_score=3234.3)


def _write(dataset: TransitionDataset, **kwargs) -> str:
    dataset_id = next(_ids)
    write_minari(dataset, dataset_id, env_id="Hopper-v5", **{**HOPPER_REFS, **kwargs})
    return dataset_id


def _write_raw(episodes: list[dict]) -> str:
    """A Minari dataset written by Minari itself from raw episode dicts (foreign layouts)."""
    dataset_id = next(_ids)
    env = gym.make("Hopper-v5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id,
            [EpisodeBuffer(**ep) for ep in episodes],
            observation_space=env.observation_space,
            action_space=env.action_space,
        )
    return dataset_id


def _raw_episode(dataset: TransitionDataset, episode: int, **changes) -> dict:
    rows = dataset.episode_ids == episode
    stop = np.flatnonzero(rows)[-1]
    fields = dict(
        observations=np.concatenate([dataset.obs[rows], dataset.next_obs[stop : stop + 1]]).astype(np.float64),
        actions=dataset.actions[rows],
        rewards=dataset.rewards[rows].astype(np.float64),
        terminations=dataset.terminals[rows],
        truncations=dataset.timeouts[rows],
        infos={},
    )
    return {**fields, **changes}


def test_round_trip_is_lossless(hopper_dataset, assert_same):
    dataset_id = _write(hopper_dataset, description="fixture")
    loaded = read_minari(dataset_id)
    assert_same(loaded, hopper_dataset)
    assert loaded.source == f"minari:{dataset_id}"
    assert loaded.metadata == {"dataset_id": dataset_id, "env_id": "Hopper-v5", "notes": [], **HOPPER_REFS}
    stored = minari.load_dataset(dataset_id)
    assert stored.total_episodes == hopper_dataset.num_episodes and stored.total_steps == len(hopper_dataset)
    first = next(stored.iterate_episodes())
    assert len(first.observations) == len(first.actions) + 1
    assert set(first.infos) == {"qpos", "qvel", "collection_step"}


def test_round_trip_of_unfinished_last_episode_and_no_sim_state(hopper_dataset, assert_same):
    part = hopper_dataset.subset(slice(0, 50))
    bare = TransitionDataset(
        obs=part.obs,
        actions=part.actions,
        rewards=part.rewards,
        next_obs=part.next_obs,
        terminals=part.terminals,
        timeouts=part.timeouts,
    )
    loaded = load_dataset(f"minari:{_write(bare, ref_min_score=None, ref_max_score=None)}")
    assert_same(loaded, bare)
    assert not (loaded.terminals[-1] or loaded.timeouts[-1])
    assert "ref_min_score" not in loaded.metadata and loaded.metadata["notes"] == []


def test_env_kwargs_round_trip(hopper_x_dataset, assert_same):
    kwargs = {"exclude_current_positions_from_observation": False}
    loaded = read_minari(_write(hopper_x_dataset, env_kwargs=kwargs))
    assert_same(loaded, hopper_x_dataset)
    assert loaded.metadata["env_kwargs"] == kwargs


def test_reading_never_builds_the_environment(hopper_dataset, monkeypatch):
    dataset_id = _write(hopper_dataset)

    def no_make(*args, **kwargs):
        raise AssertionError("gym.make called while loading")

    monkeypatch.setattr(gym, "make", no_make)
    assert len(read_minari(dataset_id)) == len(hopper_dataset)


def test_unknown_id_says_how_to_create_it_and_never_downloads(monkeypatch, minari_root):
    def no_download(*args, **kwargs):
        raise AssertionError("network download attempted")

    monkeypatch.setattr(minari.storage.hosting, "download_dataset", no_download)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("minari:mujoco/hopper/nothing-v0")
    message = str(info.value)
    assert message.startswith("minari:mujoco/hopper/nothing-v0: no local Minari dataset")
    assert "offline-mbrl dataset make" in message and "minari download mujoco/hopper/nothing-v0" in message
    assert str(minari_root) in message


def test_existing_dataset_needs_overwrite(hopper_dataset, assert_same):
    dataset_id = _write(hopper_dataset)
    with pytest.raises(DatasetError, match=rf"minari:{dataset_id}: a Minari dataset already exists"):
        write_minari(hopper_dataset, dataset_id, env_id="Hopper-v5", **HOPPER_REFS)
    part = hopper_dataset.subset(slice(0, int(hopper_dataset.episode_starts[2])))
    write_minari(part, dataset_id, env_id="Hopper-v5", **HOPPER_REFS, overwrite=True)
    assert_same(read_minari(dataset_id), part)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=None), "give both ref_min_score and ref_max_score"),
        (dict(env_id="NoSuchEnv-v0", **HOPPER_REFS), "env_id 'NoSuchEnv-v0' is not a registered gymnasium id"),
    ],
)
def test_writer_argument_errors(hopper_dataset, minari_root, kwargs, message):
    with pytest.raises(DatasetError, match=message):
        write_minari(hopper_dataset, "test/hopper/bad-v0", **kwargs)
    assert not (minari_root / "test" / "hopper" / "bad-v0").exists()


def test_writer_refuses_next_obs_unlike_following_obs(hopper_dataset):
    next_obs = hopper_dataset.next_obs.copy()
    next_obs[4] += 1.0
    broken = TransitionDataset(
        obs=hopper_dataset.obs,
        actions=hopper_dataset.actions,
        rewards=hopper_dataset.rewards,
        next_obs=next_obs,
        terminals=hopper_dataset.terminals,
        timeouts=hopper_dataset.timeouts,
    )
    with pytest.raises(DatasetError, match="field 'next_obs' row 4 differs from 'obs' row 5 inside one episode"):
        write_minari(broken, "test/hopper/broken-v0", env_id="Hopper-v5", **HOPPER_REFS)


# ---------------------------------------------------------------- foreign layouts written by Minari itself
def test_float64_episodes_and_datacollector_infos(hopper_dataset, assert_same):
    episodes = []
    for k in range(3):
        raw = _raw_episode(hopper_dataset, k)
        rows = hopper_dataset.episode_ids == k
        final_state = np.zeros((1, hopper_dataset.qpos.shape[1]))
        raw["infos"] = {
            "qpos": np.concatenate([hopper_dataset.qpos[rows], final_state]),  # T + 1 rows
            "x_position": np.zeros(rows.sum() + 1),
        }
        episodes.append(raw)
    loaded = read_minari(_write_raw(episodes))
    expected = hopper_dataset.subset(hopper_dataset.episode_ids < 3)
    assert_same(loaded, expected, fields=("obs", "actions", "rewards", "next_obs", "terminals", "timeouts", "qpos"))
    assert loaded.obs.dtype == np.float32 and loaded.qvel is None
    assert "env_id" not in loaded.metadata  # no env spec stored


def test_episode_with_wrong_observation_count(hopper_dataset):
    bad = _raw_episode(hopper_dataset, 1)
    bad["observations"] = bad["observations"][:-1]
    dataset_id = _write_raw([_raw_episode(hopper_dataset, 0), bad])
    with pytest.raises(
        DatasetError,
        match=rf"minari:{dataset_id}: episode 1: field 'observations' has \d+ rows, "
        r"expected \d+ \(one more than the \d+ actions\)",
    ):
        read_minari(dataset_id)


def test_unflagged_middle_episode_becomes_timeout_with_note(hopper_dataset):
    first = _raw_episode(hopper_dataset, 0)
    first["terminations"] = np.zeros_like(first["terminations"])
    first["truncations"] = np.zeros_like(first["truncations"])
    loaded = read_minari(_write_raw([first, _raw_episode(hopper_dataset, 1)]))
    length = len(first["actions"])
    assert loaded.timeouts[length - 1] and not loaded.terminals[length - 1]
    assert loaded.num_episodes == 2
    assert loaded.metadata["notes"] == [
        "1 episode(s) end with neither termination nor truncation before the "
        "dataset's last episode; their last step is marked as a timeout"
    ]


def test_flag_before_the_last_step_is_rejected(hopper_dataset):
    second = _raw_episode(hopper_dataset, 1)
    second["terminations"] = second["terminations"].copy()
    second["terminations"][3] = True
    dataset_id = _write_raw([_raw_episode(hopper_dataset, 0), second])
    with pytest.raises(DatasetError, match=rf"minari:{dataset_id}: episode 1 has a termination or truncation before"):
        read_minari(dataset_id)


def _with_infos(dataset: TransitionDataset, infos: list[dict]) -> str:
    """Two raw episodes with the given infos (field name -> first rows of that field, or all with None)."""
    episodes = []
    for k, wanted in enumerate(infos):
        rows = dataset.episode_ids == k
        infos_k = {name: getattr(dataset, name)[rows][:count] for name, count in wanted.items()}
        episodes.append(_raw_episode(dataset, k, infos=infos_k))
    return _write_raw(episodes)


def test_info_field_in_some_episodes_only(hopper_dataset):
    with pytest.raises(DatasetError, match=r"field 'infos/qvel' is missing from episode 0 \(1 of 2 episodes\)"):
        read_minari(_with_infos(hopper_dataset, [{}, {"qvel": None}]))


def test_info_field_with_wrong_length(hopper_dataset):
    with pytest.raises(DatasetError, match=r"episode 0: field 'infos/qpos' has 3 rows, expected \d+ or \d+"):
        read_minari(_with_infos(hopper_dataset, [{"qpos": 3}, {"qpos": None}]))


def test_unreadable_dataset(hopper_dataset, minari_root):
    dataset_id = _write(hopper_dataset)
    (minari_root / dataset_id / "data" / "main_data.hdf5").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=rf"minari:{dataset_id}: cannot read Minari"):
        read_minari(dataset_id)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(rewards=lambda r: np.where(np.arange(len(r)) == 2, np.nan, r)),
            "field 'rewards' holds 1 NaN/inf value(s)",
        ),
        (dict(actions=lambda a: a[:, 0]), "field 'actions' must have rank 2, got shape"),
    ],
)
def test_bad_arrays_name_the_dataset_and_field(hopper_dataset, change, message):
    ((name, edit),) = change.items()
    first = _raw_episode(hopper_dataset, 0)
    dataset_id = _write_raw([_raw_episode(hopper_dataset, 0, **{name: edit(first[name])})])
    with pytest.raises(DatasetError) as info:
        read_minari(dataset_id)
    assert str(info.value).startswith(f"minari:{dataset_id}: ") and message in str(info.value)


def test_dataset_without_episodes_is_empty():
    dataset_id = _write_raw([])
    with pytest.raises(DatasetError, match=rf"minari:{dataset_id}: dataset is empty \(0 episodes\)"):
        read_minari(dataset_id)
