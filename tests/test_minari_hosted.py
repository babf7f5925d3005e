"""Minari's hosted MuJoCo datasets (``mujoco/<env>/<kind>-v0``), rebuilt locally in their layout from real
Hopper-v5 steps: they load, ``dataset info`` and ``train`` state the D4RL reference they fall back to (the hosted
files carry no ``ref_min_score``/``ref_max_score``), the shipped config is picked, and a dataset of an env with no
D4RL counterpart trains without a normalized score and says so."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import h5py
import minari
import numpy as np
import pandas as pd
import pytest
import yaml
from minari.data_collector import EpisodeBuffer
from minari.storage.datasets_root_dir import get_dataset_path

from offline_mbrl.cli import main
from offline_mbrl.config import CONFIG_DIR, resolve, to_dict
from offline_mbrl.data import TransitionDataset, read_minari
from tests.test_dataset_cli import _info
from tests.test_offline import TINY

HOPPER_D4RL = (-20.272305, 3234.3)
HOSTED_METADATA = dict(
    algorithm_name="SB3/SAC",
    author="Farama Foundation",
    author_email="contact@farama.org",
    code_permalink="https://github.com/Farama-Foundation/minari-dataset-generation-scripts",
    description="Hopper-v5 steps of an SB3 SAC policy (test copy in the hosted layout)",
    requirements=["mujoco>=3"],
)


def write_hosted_layout(dataset: TransitionDataset, dataset_id: str, env_id: str = "Hopper-v5") -> None:
    """Write ``dataset`` as Minari's hosted MuJoCo datasets are stored: one group per episode with T + 1 float64
    observations, T float32 actions, T float64 rewards, bool terminations/truncations and an empty ``infos``
    (DataCollector's default ``record_infos=False``); metadata with the env spec as both collection and evaluation
    spec, author/algorithm/code fields, requirements, and no reference scores."""
    stops = np.flatnonzero(dataset.episode_ends) + 1
    buffers = []
    for i, (a, b) in enumerate(zip(np.concatenate([[0], stops[:-1]]), stops)):
        observations = np.concatenate([dataset.obs[a:b], dataset.next_obs[b - 1 : b]]).astype(np.float64)  # (T+1, D)
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=i,
                observations=observations,
                actions=dataset.actions[a:b].astype(np.float32),
                rewards=dataset.rewards[a:b].astype(np.float64),
                terminations=dataset.terminals[a:b],
                truncations=dataset.timeouts[a:b],
                infos={},
            )
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env=gym.spec(env_id), eval_env=gym.spec(env_id), **HOSTED_METADATA
        )


@pytest.fixture(scope="module")
def hosted(hopper_dataset) -> dict[str, str]:
    """``mujoco/hopper/{medium,simple}-v0`` in the hosted layout, written once for this module; kind -> spec."""
    for kind in ("medium", "simple"):
        write_hosted_layout(hopper_dataset, f"mujoco/hopper/{kind}-v0")
    return {kind: f"minari:mujoco/hopper/{kind}-v0" for kind in ("medium", "simple")}


@pytest.fixture
def unknown_env():
    """A registered env id with Hopper-v5 dynamics (so roll-outs have a termination rule) but no D4RL counterpart."""
    gym.register("UnitTestHopper-v0", entry_point="gymnasium.envs.mujoco.hopper_v5:HopperEnv", max_episode_steps=1000)
    yield "UnitTestHopper-v0"
    gym.registry.pop("UnitTestHopper-v0")


def test_the_written_files_have_the_hosted_layout(hosted, hopper_dataset):
    path = get_dataset_path("mujoco/hopper/medium-v0") / "data"
    metadata = json.loads((path / "metadata.json").read_text())
    assert "ref_min_score" not in metadata and "ref_max_score" not in metadata
    assert json.loads(metadata["env_spec"])["id"] == json.loads(metadata["eval_env_spec"])["id"] == "Hopper-v5"
    assert metadata["total_steps"] == len(hopper_dataset) and metadata["dataset_id"] == "mujoco/hopper/medium-v0"
    with h5py.File(path / "main_data.hdf5") as file:
        episode = file["episode_0"]
        assert set(episode) == {"observations", "actions", "rewards", "terminations", "truncations", "infos"}
        assert len(episode["observations"]) == len(episode["actions"]) + 1 == episode.attrs["total_steps"] + 1
        assert (episode["observations"].dtype, episode["actions"].dtype) == (np.float64, np.float32)


def test_hosted_layout_loads_with_the_right_arrays(hosted, hopper_dataset):
    loaded = read_minari("mujoco/hopper/medium-v0")
    for name in ("obs", "next_obs", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_allclose(getattr(loaded, name), getattr(hopper_dataset, name), rtol=1e-6, err_msg=name)
    assert loaded.qpos is None and loaded.qvel is None and loaded.collection_step is None
    assert loaded.metadata == {"dataset_id": "mujoco/hopper/medium-v0", "env_id": "Hopper-v5", "notes": []}


def test_dataset_info_states_the_d4rl_fallback(hosted, hopper_dataset, capsys):
    rows = _info(capsys, hosted["medium"])
    reference = "D4RL hopper (dataset has none; env Hopper-v5): random -20.272305, expert 3234.3"
    assert rows["reference returns"] == reference
    expected = 100 * (hopper_dataset.episode_returns().mean() - HOPPER_D4RL[0]) / (HOPPER_D4RL[1] - HOPPER_D4RL[0])
    assert rows["normalized mean return"] == f"{expected:.2f}"


def _train(spec: str, algo: str, runs, capsys) -> tuple[dict, pd.DataFrame, dict, str]:
    """One tiny CLI training run: its summary, metrics, resolved config and stdout."""
    args = ["train", "--algo", algo, "--dataset", spec, "--runs", str(runs), "--no-progress", "--epochs", "1"]
    assert main(args + [x for o in TINY for x in ("--set", o)]) == 0
    run_dir = next(runs.rglob("summary.json")).parent
    return (
        json.loads((run_dir / "summary.json").read_text()),
        pd.read_csv(run_dir / "metrics.csv"),
        yaml.safe_load((run_dir / "config.yaml").read_text()),
        capsys.readouterr().out,
    )


@pytest.mark.parametrize("algo, kind", [("admpo-off", "medium"), ("mopo", "simple")])
def test_hosted_dataset_trains_end_to_end_with_a_stated_d4rl_reference(hosted, algo, kind, tmp_path, capsys):
    summary, metrics, config, out = _train(hosted[kind], algo, tmp_path, capsys)
    shipped = CONFIG_DIR / algo.replace("-", "_") / "minari" / "mujoco" / f"hopper-{kind}.yaml"
    assert config == to_dict(resolve(algo, shipped, TINY, dataset=hosted[kind], epochs=1))
    assert summary["score_reference"] == list(HOPPER_D4RL) and summary["score_reference_source"] == "d4rl:hopper"
    expected = 100 * (summary["final_return"] - HOPPER_D4RL[0]) / (HOPPER_D4RL[1] - HOPPER_D4RL[0])
    assert summary["final_normalized_score"] == pytest.approx(expected)
    assert list(metrics["eval/score_reference_source"]) == ["d4rl:hopper"]
    assert "score reference: D4RL hopper (dataset has none; env Hopper-v5): random -20.272305" in out


def test_env_without_d4rl_counterpart_trains_without_a_normalized_score(hopper_dataset, unknown_env, tmp_path, capsys):
    write_hosted_layout(hopper_dataset, "test/unittesthopper/medium-v0", env_id=unknown_env)
    spec = "minari:test/unittesthopper/medium-v0"
    assert _info(capsys, spec)["reference returns"].startswith("none, so no normalized score")
    summary, metrics, _, out = _train(spec, "admpo-off", tmp_path, capsys)
    assert summary["final_normalized_score"] is None and summary["score_reference"] is None
    assert summary["score_reference_source"] is None
    assert "'UnitTestHopper-v0' has no D4RL counterpart" in summary["score_reference_note"]
    assert "eval/normalized_score" not in metrics and list(metrics["eval/score_reference_source"]) == ["none"]
    assert "normalized score" not in next(line for line in out.splitlines() if line.startswith("admpo-off on "))
    assert "score reference: none, so no normalized score" in out
