"""The online loop (MBPO, ADMPO-ON; ``algos.online_harness``) on real Hopper-v5 at tiny sizes: it calls env steps,
model fits, roll-outs and SAC updates the configured number of times; the real buffer grows by one coherent row per
env step and the model's windows and histories never cross its episode ends (terminals and timeouts); PMAC and TOM
weights reach the fits; the CLI trains, resumes, tabulates and plots against env steps; bad flags are named errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.algos.game_harness import GameTrainer
from offline_mbrl.algos.online_harness import OnlineTrainer, fresh_model_error
from offline_mbrl.algos.online_sac import OnlineSACConfig, OnlineSACTrainer
from offline_mbrl.algos.weighting import PMACConfig, pmac_weights
from offline_mbrl.analysis.runs_io import read_run
from offline_mbrl.cli import main
from offline_mbrl.config import resolve
from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import ConfigError

WARMUP, EPOCHS, STEPS, TRAIN_FREQ, ROLLOUT_FREQ, UTD = 60, 2, 50, 20, 25, 2
TINY = [
    f"steps_per_epoch={STEPS}",
    f"online.warmup_steps={WARMUP}",
    f"online.utd_ratio={UTD}",
    f"online.model_train_freq={TRAIN_FREQ}",
    f"rollout.rollout_freq={ROLLOUT_FREQ}",
    "rollout.rollout_batch_size=64",
    "online.rollout_schedule=[60, 120, 1, 3]",
    "online.tom_q_steps=10",
    "online.tom_disc_epochs=2",
    "online.tom_policy_pool=30",
    "dynamics.max_epochs=2",
    "dynamics.batch_size=32",
    "eval_episodes=1",
    "sac.hidden_dims=[16,16]",
    "sac.batch_size=32",
    "dynamics.ensemble_hidden_dims=[16,16]",
    "dynamics.ensemble_weight_decays=[0,0,0]",
    "dynamics.hidden_dim=16",
    "dynamics.gru_layers=1",
    "dynamics.head_blocks=1",
    "dynamics.max_backtrack=3",
]


def tiny_config(algo: str, epochs: int = EPOCHS, extra: tuple[str, ...] = (), env_id: str = "Hopper-v5"):
    return resolve(algo, overrides=[*TINY, *extra], env_id=env_id, epochs=epochs)


class Counting(OnlineTrainer):
    """Counts the phases and cuts episodes at 15 steps, so the buffer holds both terminals and timeouts."""

    def _setup(self, state):
        super()._setup(state)
        self.max_episode_steps = 15
        self.calls = dict.fromkeys(("env", "fit", "rollout", "update"), 0)
        update = self.algorithm.update

        def counted(*args):
            self.calls["update"] += 1
            return update(*args)

        self.algorithm.update = counted

    def env_step_once(self):
        self.calls["env"] += 1
        return super().env_step_once()

    def train_model(self):
        self.calls["fit"] += 1
        return super().train_model()

    def rollout(self):
        self.calls["rollout"] += 1
        return super().rollout()


@pytest.mark.parametrize("algo, weights", [("mbpo", "uniform"), ("admpo-on", "pmac"), ("mbpo", "tom")])
def test_the_loop_calls_each_phase_the_configured_number_of_times(algo, weights, tmp_path):
    trainer = Counting(tiny_config(algo, extra=(f"model_weights={weights}",)), tmp_path, progress=False)
    summary = trainer.train()
    policy_steps = EPOCHS * STEPS
    assert trainer.calls == {
        "env": WARMUP + policy_steps,
        "fit": math.ceil(policy_steps / TRAIN_FREQ),
        "rollout": math.ceil(policy_steps / ROLLOUT_FREQ),
        "update": UTD * policy_steps,
    }
    assert (trainer.fits, trainer.rollouts, trainer.step) == (5, 4, UTD * policy_steps)
    assert (tmp_path / "dynamics.pt").is_file()
    assert summary["env_steps"] == WARMUP + policy_steps and summary["sac_steps"] == UTD * policy_steps
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert list(metrics["step"]) == [WARMUP + STEPS, WARMUP + 2 * STEPS]
    assert list(metrics["real_buffer/size"]) == list(metrics["step"])
    assert list(metrics["rollout/length"]) == [1.0, 3.0]  # H(t) of the schedule [60, 120, 1, 3] at t = 85, 135
    assert metrics["model/fresh_mse"].gt(0).all() and metrics["eval/return_mean"].notna().all()
    if weights != "uniform":
        assert metrics["weights/newest_epoch_mass"].between(0, 1).all()
    assert read_run(tmp_path).algo == (algo if weights == "uniform" else f"{algo}+{weights}")  # its own curve
    # the model buffer keeps one epoch of roll-outs: ceil(50 / 25) roll-outs x 64 starts x H(t)
    assert trainer.model_buffer.capacity == 2 * 64 * 3


@pytest.mark.parametrize("weights", ["uniform", "pmac", "tom"])
def test_rollout_starts_are_drawn_by_the_model_weights(weights, tmp_path):
    """PMAC (seeds/000 Alg. 2 line 8) and TOM draw roll-out starts from D_env by their weights; uniform does not."""
    extra = (f"model_weights={weights}", "online.pmac_steps_per_version=20")
    trainer = OnlineTrainer(tiny_config("mbpo", epochs=1, extra=extra), tmp_path, progress=False)
    trainer.train()
    dataset = trainer.real_dataset()
    starts = trainer._real_windows().sample_weights
    if weights == "uniform":
        assert starts is None
        return
    n = len(dataset)
    if weights == "pmac":  # w_k of the whole current buffer: newer policy versions weigh more
        pmac = PMACConfig(0.9, 20, WARMUP)
        np.testing.assert_allclose(starts.cpu().numpy(), pmac_weights(dataset.collection_step, pmac), rtol=1e-6)
    else:  # the last fit's TOM weights, rows collected after it at their mean
        fitted = trainer.fit_weights
        np.testing.assert_allclose(starts[: len(fitted)].cpu().numpy(), fitted.numpy(), rtol=1e-6)
        np.testing.assert_allclose(starts[len(fitted) :].cpu().numpy(), float(fitted.mean()), rtol=1e-6)
    assert starts.shape == (n,) and len(set(np.round(starts.cpu().numpy(), 12))) > 1


def test_the_sac_baseline_runs_the_same_loop_without_a_model(tmp_path):
    trainer = Counting(tiny_config("sac"), tmp_path, progress=False)
    summary = trainer.train()
    assert trainer.calls == {"env": WARMUP + EPOCHS * STEPS, "fit": 0, "rollout": 0, "update": UTD * EPOCHS * STEPS}
    assert summary["env_steps"] == WARMUP + EPOCHS * STEPS and not (tmp_path / "dynamics.pt").exists()
    assert trainer.sac.target_entropy == -3.0  # online.target_entropy None: −|A| (Hopper: A = 3)
    with pytest.raises(ConfigError, match="real_ratio must be 1"):
        OnlineTrainer(tiny_config("sac", extra=("real_ratio=0.5",)), tmp_path)


def test_actor_freq_steps_the_actor_and_temperature_every_kth_update(tmp_path):
    """``online.actor_freq`` (official ADMPO): the critics step on every update, the actor and the learned temperature
    on every 3rd (counted from the run's first update), and the logged actor metrics average those steps only.
    ``online.target_entropy`` (ADM Table 4, MBPO's configs) is the temperature's target."""
    extra = ("online.actor_freq=3", "online.target_entropy=-0.5")
    trainer = OnlineTrainer(tiny_config("sac", extra=extra), tmp_path, progress=False)
    trainer.train()
    assert trainer.sac.target_entropy == -0.5
    updates = UTD * EPOCHS * STEPS

    def adam_steps(optim):
        return {int(state["step"]) for state in optim.state_dict()["state"].values()}

    assert adam_steps(trainer.sac.critic_optim) == {updates}
    assert adam_steps(trainer.sac.actor_optim) == adam_steps(trainer.sac.alpha_optim) == {updates // 3}
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics[["train/actor_loss", "train/entropy", "train/critic_loss"]].notna().all().all()


@pytest.mark.parametrize(
    "algo, env_id, obs_dim", [("admpo-on", "AntTruncatedObs-v5", 27), ("mbpo", "HumanoidTruncatedObs-v5", 45)]
)
def test_the_loop_runs_on_mbpos_truncated_ant_and_humanoid(algo, env_id, obs_dim, tmp_path):
    """The registered truncated-observation ids (``envs/registration.py``) through the whole loop, with their
    termination rules in the roll-outs."""
    trainer = Counting(tiny_config(algo, epochs=1, env_id=env_id), tmp_path, progress=False)  # 15-step episodes
    summary = trainer.train()
    assert trainer.real_buffer.storage["obs"].shape[-1] == obs_dim and summary["env_steps"] == WARMUP + STEPS
    assert pd.read_csv(tmp_path / "metrics.csv")["eval/return_mean"].notna().all()


def test_a_longer_rollout_grows_the_model_buffer_and_keeps_its_rows(tmp_path):
    """MBPO's retention: the buffer holds one epoch of roll-outs of the current H, and when H grows the rows of the
    shorter roll-outs stay (oldest first), so the buffer never loses data it has room for."""
    trainer = OnlineTrainer(tiny_config("mbpo"), tmp_path, progress=False)
    trainer._setup(None)
    while trainer.env_step < WARMUP:
        trainer.env_step_once()
    assert trainer.rollout_length == 1 and trainer.model_buffer.capacity == 2 * 64
    trainer.rollout()
    kept = trainer.model_buffer.ordered()
    trainer.env_step = 120  # H = 3 on the schedule [60, 120, 1, 3]
    trainer.rollout()
    assert trainer.model_buffer.capacity == 2 * 64 * 3 and len(trainer.model_buffer) > len(kept["obs"])
    rows = trainer.model_buffer.ordered()
    assert all(torch.equal(rows[k][: len(v)], v) for k, v in kept.items())


def test_the_real_buffer_is_coherent_and_windows_respect_episode_ends(tmp_path):
    trainer = Counting(tiny_config("admpo-on", epochs=1), tmp_path, progress=False)
    trainer.train()
    data = trainer.real_dataset()
    n = WARMUP + STEPS
    assert len(data) == n and np.array_equal(data.collection_step, np.arange(n))
    ends = data.terminals | data.timeouts
    assert data.terminals.any() and data.timeouts.any()  # the 15-step cut makes timeouts
    assert not (data.terminals & data.timeouts).any()
    inside = ~ends[:-1]  # row t and t + 1 belong to one episode: the buffer is one coherent stream
    np.testing.assert_array_equal(data.next_obs[:-1][inside], data.obs[1:][inside])
    windows = Windows(data, 3)
    batch = windows.gather(torch.arange(n))
    for j in range(1, 3):  # step j of a window is valid iff no episode ends at rows t … t + j - 1
        crossed = np.array([ends[t : t + j].any() or t + j >= n for t in range(n)])
        np.testing.assert_array_equal(batch.mask[:, j].numpy(), ~crossed)
    history = windows.history(torch.arange(n))
    starts = np.r_[0, np.flatnonzero(ends[:-1]) + 1]
    since_start = np.arange(n) - starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
    np.testing.assert_array_equal(history.lengths.numpy(), np.minimum(since_start + 1, 3))
    error = fresh_model_error(trainer.model, windows, torch.arange(n - 20, n))
    assert math.isfinite(error) and error > 0


@pytest.mark.parametrize(("trainer", "algo"), [(OnlineTrainer, "mbpo"), (GameTrainer, "pal")])
def test_online_trainers_name_a_missing_env_or_a_given_dataset(trainer, algo, tmp_path):
    with pytest.raises(ConfigError, match=f"algo '{algo}' is online and needs env_id"):
        trainer(resolve(algo), tmp_path)
    with pytest.raises(
        ConfigError, match=f"algo '{algo}' learns online in env_id and reads no dataset; got dataset 'x'"
    ):
        trainer(resolve(algo, env_id="Hopper-v5", dataset="x"), tmp_path)
    assert not any(tmp_path.iterdir())  # refused before any file is written


def test_online_config_errors_are_named(tmp_path, capsys):
    with pytest.raises(ConfigError, match="is offline"):
        OnlineTrainer(resolve("mopo", env_id="Hopper-v5"), tmp_path)
    with pytest.raises(ConfigError, match="model buffer would hold"):
        OnlineTrainer(tiny_config("mbpo", extra=("rollout.rollout_batch_size=100000000",)), tmp_path)
    with pytest.raises(ConfigError, match="online.rollout_schedule"):
        tiny_config("mbpo", extra=("online.rollout_schedule=[10, 5, 1, 3]",))
    with pytest.raises(ConfigError, match="model_weights"):
        tiny_config("mbpo", extra=("model_weights=nope",))
    with pytest.raises(
        ConfigError, match="key 'model_weights' is not read by algo 'admpo-off' \\(only by sac, mbpo, admpo-on\\)"
    ):
        resolve("admpo-off", overrides=["model_weights=pmac"])
    with pytest.raises(ConfigError, match="env 'Nope-v0'"):
        OnlineSACTrainer(OnlineSACConfig(env_id="Nope-v0"), tmp_path)
    with pytest.raises(ConfigError, match="env_id 'Pendulum-v1' is not a MuJoCo environment"):
        OnlineSACTrainer(OnlineSACConfig(env_id="Pendulum-v1"), tmp_path)
    assert main(["train", "--algo", "mbpo", "--runs", str(tmp_path)]) != 0
    assert "--algo mbpo is online and needs --env" in capsys.readouterr().err
    assert main(["train", "--algo", "admpo-on", "--env", "Hopper-v5", "--dataset", "x", "--runs", str(tmp_path)]) != 0
    assert "drop --dataset" in capsys.readouterr().err
    assert main(["train", "--algo", "mbpo", "--env", "Hopper-v5", "--seeds", "0", "1", "--runs", str(tmp_path)]) != 0
    assert "--seeds is for offline algorithms" in capsys.readouterr().err
    assert main(["train", "--algo", "sac", "--env", "Hopper-v5", "--compile", "--runs", str(tmp_path)]) != 0
    assert "--compile is not available" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_trains_resumes_tabulates_and_plots_env_steps(tmp_path, capsys):
    runs = tmp_path / "runs"
    flags = ["--env", "Hopper-v5", "--runs", str(runs), "--no-progress"] + [f"--set={s}" for s in TINY]
    assert main(["train", "--algo", "mbpo", "--epochs", "1", *flags]) == 0
    run = next(runs.rglob("summary.json")).parent
    assert run.relative_to(runs).parts[:2] == ("mbpo", "Hopper-v5")
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert list(pd.read_csv(run / "metrics.csv")["step"]) == [WARMUP + STEPS, WARMUP + 2 * STEPS]
    capsys.readouterr()
    assert main(["tabulate", str(runs), "--value", "return"]) == 0
    table = capsys.readouterr().out
    assert "mbpo" in table and "Hopper-v5" in table
    out = tmp_path / "curves.png"
    assert main(["analyze", "curves", str(runs), "--value", "return", "--out", str(out)]) == 0
    assert list(pd.read_csv(out.with_suffix(".csv"))["step"]) == [WARMUP + STEPS, WARMUP + 2 * STEPS]
    assert main(["analyze", "curves", str(runs), "--value", "model_error", "--out", str(out)]) == 0
    errors = pd.read_csv(out.with_suffix(".csv"))["mean"]
    np.testing.assert_allclose(errors, pd.read_csv(run / "metrics.csv")["model/fresh_mse"])
