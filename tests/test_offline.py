"""The offline loop (Alg. 3) end to end on a tiny real Hopper-v5 dataset, for both algorithms, and
stop/resume: a run killed after a checkpoint resumes to the same result with a continuous metrics.csv."""

import json
import shutil

import pandas as pd
import pytest
import yaml

from offline_mbrl.algos.harness import OfflineTrainer, evaluate_run
from offline_mbrl.cli import main
from offline_mbrl.config import resolve
from offline_mbrl.errors import ConfigError
from offline_mbrl.models.fit import fit_progress
from offline_mbrl.runs import run_dir_for

TINY = [
    "steps_per_epoch=20",
    "eval_episodes=2",
    "rollout.rollout_batch_size=64",
    "rollout.rollout_freq=10",
    "rollout.rollout_length=3",
    "dynamics.max_epochs=1",
    "dynamics.hidden_dim=16",
    "dynamics.gru_layers=1",
    "dynamics.head_blocks=1",
    "dynamics.max_backtrack=3",
    "dynamics.ensemble_hidden_dims=[16,16]",
    "dynamics.ensemble_weight_decays=[1e-5,1e-5,1e-5]",
    "dynamics.ensemble_size=3",
    "dynamics.num_elites=2",
    "sac.hidden_dims=[16,16]",
    "sac.batch_size=32",
]


def DETERMINISTIC_COLUMNS(df):
    return df[[c for c in df.columns if not c.startswith("time/")]]


@pytest.fixture
def dataset(hopper_dataset):
    from dataclasses import replace

    return replace(
        hopper_dataset,
        metadata={**hopper_dataset.metadata, "env_id": "Hopper-v5", "ref_min_score": -20.0, "ref_max_score": 3000.0},
    )


def _config(algo, epochs=2, extra=()):
    return resolve(algo, overrides=TINY + [f"epochs={epochs}", *extra], dataset="tiny")


@pytest.mark.parametrize("algo", ["admpo-off", "mopo"])
def test_loop_runs_and_writes_the_run_folder(algo, dataset, tmp_path):
    summary = OfflineTrainer(_config(algo), tmp_path, dataset, progress=False).train()
    assert summary["finished"] and summary["sac_steps"] == 40 and summary["epochs_completed"] == 2
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2] and list(metrics["step"]) == [20, 40]
    assert metrics["rollout/num_nonfinite"].eq(0).all() and (metrics["model_buffer/size"] > 0).all()
    assert metrics["eval/normalized_score"].notna().all()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["algo"] == algo
    assert json.loads((tmp_path / "summary.json").read_text())["final_return"] == pytest.approx(
        metrics["eval/return_mean"].iloc[-1]
    )
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and (tmp_path / "dynamics.pt").is_file()
    assert fit_progress(tmp_path / "dynamics.pt").epochs == 1  # the run's model keeps its fit's record
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
    returns, scores = evaluate_run(tmp_path, episodes=2)
    assert returns.shape == (2,) and scores.shape == (2,)


class _Killed(Exception):
    pass


class _KilledAfter(OfflineTrainer):
    """Stops (like a kill) during the evaluation of epoch ``kill_at``, after earlier checkpoints."""

    kill_at = 3

    def evaluate(self):
        if self.epoch == self.kill_at:
            raise _Killed
        return super().evaluate()


def test_killed_run_resumes_exactly(dataset, tmp_path):
    config = _config("admpo-off", epochs=4, extra=["checkpoint_every=2"])
    full = tmp_path / "full"
    OfflineTrainer(config, full, dataset, progress=False).train()
    killed = tmp_path / "killed"
    shutil.copytree(
        full, killed, ignore=shutil.ignore_patterns("checkpoints", "metrics.csv", "summary.json", "events.*")
    )  # reuse the fitted dynamics.pt
    with pytest.raises(_Killed):
        _KilledAfter(config, killed, dataset, progress=False).train()
    assert list(pd.read_csv(killed / "metrics.csv")["epoch"]) == [1, 2]
    OfflineTrainer(config, killed, dataset, progress=False).train()
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    assert list(b["epoch"]) == [1, 2, 3, 4] and list(b["step"]) == [20, 40, 60, 80]
    pd.testing.assert_frame_equal(DETERMINISTIC_COLUMNS(a), DETERMINISTIC_COLUMNS(b))


def test_rows_logged_after_the_last_checkpoint_are_redone_once(dataset, tmp_path):
    config = _config("admpo-off", epochs=3, extra=["checkpoint_every=2"])
    _KilledAfter.kill_at = 3
    with pytest.raises(_Killed):
        _KilledAfter(config, tmp_path, dataset, progress=False).train()
    with open(tmp_path / "metrics.csv", "a") as f:  # a row written after the epoch-2 checkpoint, then killed
        f.write(open(tmp_path / "metrics.csv").read().splitlines()[-1].replace("2,40,", "3,60,", 1) + "\n")
    OfflineTrainer(config, tmp_path, dataset, progress=False).train()
    assert list(pd.read_csv(tmp_path / "metrics.csv")["epoch"]) == [1, 2, 3]


def test_algo_and_model_must_match(dataset, tmp_path):
    config = resolve("admpo-off", overrides=TINY + ["dynamics.model=ensemble"], dataset="tiny")
    with pytest.raises(ConfigError, match="needs dynamics.model 'adm'"):
        OfflineTrainer(config, tmp_path, dataset, progress=False)


def test_train_cli_two_step_path_and_resume(dataset, tmp_path, capsys):
    from offline_mbrl.algos.harness import fit_dynamics
    from offline_mbrl.data.minari_io import write_minari
    from offline_mbrl.models.checkpoint import save_model

    write_minari(dataset, "test/hopper/tiny-v0", env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0)
    config = _config("admpo-off")
    save_model(fit_dynamics(config, dataset, "cpu"), tmp_path / "adm.pt")
    args = [
        "train",
        "--algo",
        "admpo-off",
        "--dataset",
        "minari:test/hopper/tiny-v0",
        "--runs",
        str(tmp_path / "runs"),
        "--dynamics",
        str(tmp_path / "adm.pt"),
        "--no-progress",
        "--epochs",
        "1",
    ] + [x for o in TINY for x in ("--set", o)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "normalized score" in out
    run_dir = next((tmp_path / "runs").rglob("summary.json")).parent
    assert not (run_dir / "dynamics.pt").exists()  # the given model was used, not refitted
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 0
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0  # finished: resumes to a no-op
    assert len(pd.read_csv(run_dir / "metrics.csv")) == 1


def test_run_dir_is_deterministic():
    a = resolve("mopo", dataset="minari:offline_mbrl/hopper/medium-v0", seed=1)
    path = run_dir_for(__import__("pathlib").Path("runs"), a)
    assert path.parts[:3] == ("runs", "mopo", "offline_mbrl_hopper_medium-v0") and path.name == "seed1"
    assert path == run_dir_for(__import__("pathlib").Path("runs"), resolve("mopo", dataset=a.dataset, seed=1))


def test_killed_run_resumes_bit_exactly_after_the_model_buffer_wrapped(dataset, tmp_path):
    import torch

    # capacity 64 x 3 x 1 = 192 rows: the second roll-out of epoch 1 already overwrites the first
    config = _config("admpo-off", epochs=4, extra=["checkpoint_every=2", "rollout.model_retain_epochs=1"])
    full = tmp_path / "full"
    OfflineTrainer(config, full, dataset, progress=False).train()
    killed = tmp_path / "killed"
    shutil.copytree(
        full, killed, ignore=shutil.ignore_patterns("checkpoints", "metrics.csv", "summary.json", "events.*")
    )
    _KilledAfter.kill_at = 3
    with pytest.raises(_Killed):
        _KilledAfter(config, killed, dataset, progress=False).train()
    state = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)["model_buffer"]
    assert state["total_added"] > state["capacity"] and state["ptr"] != 0  # wrapped, mid-ring
    OfflineTrainer(config, killed, dataset, progress=False).train()
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(killed / "metrics.csv")
    pd.testing.assert_frame_equal(DETERMINISTIC_COLUMNS(a), DETERMINISTIC_COLUMNS(b), check_exact=True)
    wa = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    wb = torch.load(killed / "checkpoints" / "last.pt", weights_only=True)
    for key, value in wa["sac"]["model"].items():
        assert torch.equal(value, wb["sac"]["model"][key]), key
    for key, value in wa["model_buffer"]["storage"].items():
        assert torch.equal(value, wb["model_buffer"]["storage"][key]), key


@pytest.mark.parametrize("period", [None, 100])
def test_actor_lr_follows_the_cosine_period(period, dataset, tmp_path):
    import math

    extra = [] if period is None else [f"sac.lr_schedule_epochs={period}"]
    OfflineTrainer(_config("mopo", epochs=2, extra=extra), tmp_path, dataset, progress=False).train()
    lr = pd.read_csv(tmp_path / "metrics.csv")["train/actor_lr"]
    t_max = period or 2
    expected = [1e-4 * (1 + math.cos(math.pi * e / t_max)) / 2 for e in (1, 2)]
    assert list(lr) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_break_even_is_logged_and_a_coef_past_it_warns(dataset, tmp_path):
    with pytest.warns(RuntimeWarning, match="penalized rewards average <= 0"):
        OfflineTrainer(
            _config("mopo", epochs=1, extra=["rollout.penalty_coef=1e3"]), tmp_path / "a", dataset, progress=False
        ).train()
    metrics = pd.read_csv(tmp_path / "a" / "metrics.csv")
    ratio = metrics["rollout/mean_reward"] / metrics["rollout/mean_penalty"]
    assert metrics["rollout/break_even_coef"].to_numpy() == pytest.approx(ratio.to_numpy(), rel=1e-4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        OfflineTrainer(
            _config("mopo", epochs=1, extra=["rollout.penalty_coef=0"]), tmp_path / "b", dataset, progress=False
        ).train()
