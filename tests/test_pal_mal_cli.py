"""`offline-mbrl train --algo pal|mal --env Hopper-v5` (``algos.game_harness``) on real Hopper-v5 at tiny sizes: the run
folder (config without the SAC keys, one metrics row per iteration with env steps in ``step``, summary, checkpoint,
model), ``tabulate`` and ``evaluate`` read it, ``--resume`` with more epochs continues exactly, and bad flags and keys
are named errors that write nothing."""

from __future__ import annotations

from dataclasses import fields

import pandas as pd
import pytest
import yaml

from offline_mbrl.algos.game_harness import game_config
from offline_mbrl.algos.pal_mal import GameConfig, GameLoop
from offline_mbrl.cli import main
from offline_mbrl.config import CONFIG_DIR, GameSettings, config_hash, resolve, to_dict
from offline_mbrl.errors import ConfigError

INIT, PER_ITERATION = 200, 100
TINY = [
    f"game.init_samples={INIT}",
    f"game.samples_per_iteration={PER_ITERATION}",
    "game.num_trajectories=4",
    "game.rollouts_per_start=1",
    "game.rollout_length=10",
    "game.fit_epochs=1",
    "game.hidden_dims=[16]",
    "game.ensemble_size=2",
    "game.npg_steps=2",
    "npg.policy_hidden_dims=[8]",
    "npg.value_hidden_dims=[8]",
    "eval_episodes=1",
]


def train(runs, *flags: str) -> int:
    return main(
        ["train", "--env", "Hopper-v5", "--runs", str(runs), "--no-progress", *[f"--set={s}" for s in TINY], *flags]
    )


def without_times(metrics: pd.DataFrame) -> pd.DataFrame:
    return metrics[[c for c in metrics.columns if not c.startswith("time/")]]


@pytest.mark.parametrize("algo", ["pal", "mal"])
def test_cli_trains_tabulates_evaluates_and_resumes_exactly(algo, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert train(runs, "--algo", algo, "--epochs", "1") == 0
    run = next(runs.rglob("summary.json")).parent
    assert run.relative_to(runs).parts[:2] == (algo, "Hopper-v5")
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert {"game", "npg", "env_id"} <= set(config) and not {"sac", "rollout", "dynamics", "online"} & set(config)
    assert config["game"]["npg_steps"] == 2 and config["game"]["fit_epochs"] == 1
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "dynamics.pt").is_file()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    resumed = pd.read_csv(run / "metrics.csv")
    assert list(resumed["epoch"]) == [1, 2]
    assert list(resumed["step"]) == [INIT + PER_ITERATION, INIT + 2 * PER_ITERATION]
    assert list(resumed["npg/steps"]) == [2, 2] and list(resumed["dynamics/fits"]) == (
        [1, 1] if algo == "pal" else [2, 1]
    )
    summary = yaml.safe_load((run / "summary.json").read_text())
    assert summary["finished"] and summary["env_steps"] == INIT + 2 * PER_ITERATION
    assert summary["epochs_extended_from"] == [1]

    # an uninterrupted 2-iteration run gives the same metrics
    straight = tmp_path / "straight"
    assert train(straight, "--algo", algo, "--epochs", "2") == 0
    pd.testing.assert_frame_equal(
        without_times(pd.read_csv(next(straight.rglob("metrics.csv")))), without_times(resumed)
    )

    capsys.readouterr()
    assert main(["tabulate", str(runs), "--value", "return"]) == 0
    assert algo in capsys.readouterr().out
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0
    assert "return" in capsys.readouterr().out


def test_cli_trains_model_free_npg_on_inverted_pendulum_and_evaluates_it(tmp_path, capsys):
    """``train --algo npg`` (seed 003's model-free counterpart): the shipped InvertedPendulum-v5 config with a small
    N; no model, so no ``dynamics.pt``; ``tabulate`` and ``evaluate`` read its NPG policy."""
    runs = tmp_path / "runs"
    flags = ["--set=game.samples_per_iteration=200", "--set=npg.policy_hidden_dims=[8]", "--set=eval_episodes=1"]
    args = ["train", "--algo", "npg", "--env", "InvertedPendulum-v5", "--epochs", "2", "--runs", str(runs)]
    assert main([*args, "--no-progress", *flags]) == 0
    run = next(runs.rglob("summary.json")).parent
    assert run.relative_to(runs).parts[:2] == ("npg", "InvertedPendulum-v5") and not (run / "dynamics.pt").exists()
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["step"]) == [200, 400] and list(metrics["npg/num_samples"]) == [200, 200]
    assert list(metrics["dynamics/fits"]) == [0, 0] and metrics["eval/return_mean"].notna().all()
    capsys.readouterr()
    assert main(["tabulate", str(runs), "--value", "return"]) == 0 and "npg" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--episodes", "1"]) == 0


def test_bad_keys_and_flags_are_named_and_write_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    cases = [
        (["--algo", "pal", "--set", "steps_per_epoch=5"], "key 'steps_per_epoch' is not read by algo 'pal'"),
        (["--algo", "mal", "--set", "game.bogus=1"], "unknown key 'game.bogus'"),
        (["--algo", "pal", "--set", "npg.nope=1"], "unknown key 'npg.nope'"),
        (["--algo", "mal", "--set", "game.init_samples=0"], "key 'game.init_samples' must be >= 1"),
        (["--algo", "npg", "--set", "game.init_samples=5"], "model-free npg learns from each iteration's own"),
        (["--algo", "pal", "--set", "npg.gamma=2"], "key 'npg.gamma' must be in"),
        (["--algo", "pal", "--dataset", "minari:x"], "drop --dataset"),
        (["--algo", "pal", "--compile"], "--compile is not available"),
    ]
    for flags, message in cases:
        assert train(runs, *flags) != 0, flags
        assert message in capsys.readouterr().err, flags
    assert main(["train", "--algo", "mal", "--runs", str(runs)]) != 0
    assert "needs --env" in capsys.readouterr().err
    assert not runs.exists()
    with pytest.raises(ConfigError, match="key 'game' is not read by algo 'mbpo'"):
        resolve("mbpo", overrides=["game.npg_steps=3"], env_id="Hopper-v5")


#: hashes of the shipped online configs on main before the game keys were added (their run folders must keep them)
ONLINE_HASHES = {"sac": "17e9cd32", "mbpo": "1d53ee75", "admpo-on": "269d8203"}


@pytest.mark.parametrize("algo", sorted(ONLINE_HASHES))
def test_the_game_keys_leave_the_online_configs_and_hashes_alone(algo):
    config = resolve(algo, CONFIG_DIR / algo.replace("-", "_") / "hopper.yaml", env_id="Hopper-v5")
    assert not {"game", "npg"} & set(to_dict(config)) and config_hash(config) == ONLINE_HASHES[algo]
    pal = resolve("pal", env_id="Hopper-v5")
    assert config_hash(resolve("pal", env_id="Hopper-v5", overrides=["game.npg_steps=3"])) != config_hash(pal)


class Stop(Exception):
    """Stands for the process being killed."""


def test_a_run_stopped_mid_iteration_resumes_exactly(tmp_path, monkeypatch):
    real_npg_step, calls = GameLoop.npg_step, []

    def npg_step_then_stop(self):
        calls.append(1)
        if len(calls) == 3:  # the first NPG step of iteration 2 is done, the second is not
            raise Stop
        return real_npg_step(self)

    runs = tmp_path / "runs"
    monkeypatch.setattr(GameLoop, "npg_step", npg_step_then_stop)
    with pytest.raises(Stop):
        train(runs, "--algo", "pal", "--epochs", "2")
    monkeypatch.setattr(GameLoop, "npg_step", real_npg_step)
    run = next(runs.rglob("config.yaml")).parent
    assert len(pd.read_csv(run / "metrics.csv")) == 1
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    straight = tmp_path / "straight"
    assert train(straight, "--algo", "pal", "--epochs", "2") == 0
    pd.testing.assert_frame_equal(
        without_times(pd.read_csv(next(straight.rglob("metrics.csv")))), without_times(pd.read_csv(run / "metrics.csv"))
    )


def test_the_game_section_holds_every_game_config_field_but_the_top_level_ones():
    top_level = {"algo", "env_id", "seed", "eval_episodes", "npg"}
    assert [f.name for f in fields(GameSettings)] == [f.name for f in fields(GameConfig) if f.name not in top_level]
    config = resolve("mal", env_id="Hopper-v5", seed=3, overrides=["eval_episodes=2", "game.npg_steps=7"])
    assert game_config(config) == GameConfig.paper("mal", "Hopper-v5", seed=3, eval_episodes=2, npg_steps=7)
