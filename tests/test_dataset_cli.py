"""`offline-mbrl dataset info` on the three formats, and its error path."""

from __future__ import annotations

import argparse

import h5py
import numpy as np
import pytest

from offline_mbrl.cli import build_parser, dataset_cmd, main
from offline_mbrl.data import write_d4rl, write_minari


def _info(capsys, spec: str) -> dict[str, str]:
    assert main(["dataset", "info", spec]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = dict(line.split("  ", 1) for line in lines if "  " in line and not line.startswith("  -"))
    return {key.strip(): value.strip() for key, value in rows.items()}


def test_info_on_d4rl_file(tmp_path, capsys, hopper_dataset):
    path = write_d4rl(hopper_dataset, tmp_path / "hopper_medium-v2.hdf5")
    rows = _info(capsys, str(path))
    returns = hopper_dataset.episode_returns()
    assert rows["task"] == "hopper-medium-v2" and rows["env id"] == "Hopper-v5"
    assert rows["transitions"] == str(len(hopper_dataset))
    assert rows["episodes"].startswith(f"{hopper_dataset.num_episodes} ")
    assert rows["return mean/min/max"] == f"{returns.mean():.3f} / {returns.min():.3f} / {returns.max():.3f}"
    assert rows["obs dim / action dim"] == "11 / 3"
    assert rows["terminals / timeouts"] == f"{hopper_dataset.terminals.sum()} / {hopper_dataset.timeouts.sum()}"
    assert rows["sim state (qpos/qvel)"] == "yes"
    assert rows["reference returns"] == "task hopper-medium-v2: random -20.272305, expert 3234.3"
    expected = 100 * (returns.mean() + 20.272305) / (3234.3 + 20.272305)
    assert rows["normalized mean return"] == f"{expected:.2f}"


def test_info_on_neorl_file(tmp_path, capsys, hopper_x_dataset):
    path = tmp_path / "Hopper-v3-medium-100-val-noise.npz"
    ends = np.flatnonzero(hopper_x_dataset.episode_ends) + 1
    np.savez(
        path,
        obs=hopper_x_dataset.obs,
        next_obs=hopper_x_dataset.next_obs,
        action=hopper_x_dataset.actions,
        reward=hopper_x_dataset.rewards,
        done=hopper_x_dataset.terminals,
        index=ends,
    )
    rows = _info(capsys, str(path))
    assert rows["task"] == "neorl-hopper-medium" and rows["obs dim / action dim"] == "12 / 3"
    assert (
        rows["sim state (qpos/qvel)"] == "no"
        and rows["reference returns"] == "task neorl-hopper-medium: random 5.0, expert 3294.0"
    )


def test_info_on_minari_dataset(capsys, hopper_dataset):
    write_minari(hopper_dataset, "test/hopper/cli-v0", env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=1000.0)
    rows = _info(capsys, "minari:test/hopper/cli-v0")
    assert rows["source"] == "minari:test/hopper/cli-v0" and rows["env id"] == "Hopper-v5"
    assert rows["reference returns"] == "dataset metadata (ref_min_score/ref_max_score): random 0.0, expert 1000.0"
    assert rows["normalized mean return"] == f"{hopper_dataset.episode_returns().mean() / 10:.2f}"
    assert rows["collection step"] == "yes"


def test_info_prints_notes_and_unknown_reference(tmp_path, capsys, hopper_dataset):
    path = write_d4rl(hopper_dataset, tmp_path / "mine.hdf5")
    with h5py.File(path, "a") as file:
        del file["timeouts"]
    assert main(["dataset", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "reference returns      none, so no normalized score (" in out and "mine.hdf5: no normalization" in out
    assert "normalized mean return" not in out
    assert "notes:\n  - no 'timeouts' key (old D4RL file)" in out


@pytest.mark.parametrize(
    "spec, message",
    [
        ("data.csv", "data.csv: unknown dataset spec; accepted forms: minari:<dataset_id>"),
        ("absent.hdf5", "absent.hdf5: dataset file not found"),
        ("minari:none/here-v0", "minari:none/here-v0: no local Minari dataset"),
    ],
)
def test_errors_are_clean_messages(capsys, spec, message):
    assert main(["dataset", "info", spec]) == 2
    err = capsys.readouterr().err
    assert err.startswith("offline-mbrl: error: ") and message in err and "Traceback" not in err


def test_dataset_group_requires_a_subcommand_and_accepts_new_ones():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dataset"])
    parser = argparse.ArgumentParser()
    added = []
    original = dataset_cmd._SUBCOMMANDS
    try:
        dataset_cmd._SUBCOMMANDS = original + (lambda sub: added.append(sub.add_parser("extra")),)
        dataset_cmd.register(parser.add_subparsers(dest="command"))
    finally:
        dataset_cmd._SUBCOMMANDS = original
    assert added and parser.parse_args(["dataset", "extra"]).dataset_command == "extra"
