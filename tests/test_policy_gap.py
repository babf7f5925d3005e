"""Policy gap: the real-env closed loop against plain gymnasium stepping, the study's bookkeeping (start sets,
per-step fractions, summary sums, determinism), its errors and the `analyze policy-gap` CLI."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.algos.collect import random_policy
from offline_mbrl.analysis.policy_gap import policy_gap, start_rows
from offline_mbrl.cli import main
from offline_mbrl.envs.oracle import get_oracle
from offline_mbrl.envs.termination import termination_fn
from offline_mbrl.errors import ConfigError, DatasetError
from offline_mbrl.models.checkpoint import save_model
from tests.test_compounding import PNG_MAGIC, tiny

ENV = "Hopper-v5"


def lean_forward(obs: torch.Tensor) -> torch.Tensor:
    """A deterministic closed-loop policy (B, D) -> (B, 3) that makes the hopper fall within a few dozen steps."""
    return torch.tanh(torch.stack([obs[:, 1], -obs[:, 2], obs[:, 5]], dim=1) * 3 + 0.6)


def test_real_rollout_matches_gymnasium_stepping(hopper_dataset):
    rows = np.array([0, 7, 31])
    horizon = 40
    out = get_oracle(ENV).rollout_from_state(
        hopper_dataset.qpos[rows], hopper_dataset.qvel[rows], lean_forward, horizon
    )
    env = gym.make(ENV).unwrapped
    env.reset(seed=0)
    for i, row in enumerate(rows):
        env.set_state(hopper_dataset.qpos[row].astype(np.float64), hopper_dataset.qvel[row].astype(np.float64))
        obs, rewards = env._get_obs(), []
        for _ in range(horizon):
            action = lean_forward(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            obs, reward, terminated, _, _ = env.step(action)
            rewards.append(reward)
            if terminated:
                break
        taken = len(rewards)
        assert out.alive[i].sum() == taken and out.alive[i, :taken].all()
        assert out.terminals[i].sum() == (taken < horizon) and np.isnan(out.rewards[i, taken:]).all()
        np.testing.assert_allclose(out.rewards[i, :taken], rewards, rtol=1e-9)
    assert out.terminals.any(), "the policy should make at least one hopper fall"
    with pytest.raises(ConfigError, match="'horizon' must be an integer >= 1"):
        get_oracle(ENV).rollout_from_state(hopper_dataset.qpos[:1], hopper_dataset.qvel[:1], lean_forward, 0)


def test_study_bookkeeping_and_determinism(hopper_dataset):
    model = tiny("ensemble", hopper_dataset)
    term = termination_fn(ENV)

    def run():
        return policy_gap(
            model,
            hopper_dataset,
            {"lean": lean_forward, "random": random_policy(ENV, 0)},
            get_oracle(ENV),
            num_starts=12,
            horizon=6,
            termination=term,
            penalty="max_aleatoric",
            penalty_coef=2.0,
            seed=3,
        )

    study = run()
    steps = study.steps
    assert len(steps) == 2 * 2 * 2 * 6  # policies x start sets x sources x steps
    assert study.num_starts == {"dataset": 12, "episode_start": min(12, len(hopper_dataset.episode_starts))}
    for _, part in steps.groupby(["policy", "starts", "source"]):
        alive = part["alive"].to_numpy()
        assert alive[0] == 1.0 and (np.diff(alive) <= 1e-12).all()  # every start takes step 1; never revives
    real, model_rows = steps[steps["source"] == "real"], steps[steps["source"] == "model"]
    assert real["penalty"].isna().all() and (model_rows["penalty"].dropna() >= 0).all()
    running = model_rows.dropna(subset=["reward"])
    np.testing.assert_allclose(running["penalized"], running["reward"] - 2.0 * running["penalty"])
    summary = study.summary.set_index(["policy", "starts", "source"])
    for key, part in steps.groupby(["policy", "starts", "source"]):
        assert summary.loc[key, "steps_survived"] == pytest.approx(part["alive"].sum())
        assert summary.loc[key, "return"] == pytest.approx((part["alive"] * part["reward"].fillna(0)).sum())
    assert summary.xs("real", level="source")["penalized_return"].isna().all()
    again = run()  # the random policy's own generator restarts from its seed in a fresh policy
    pd.testing.assert_frame_equal(steps, again.steps)
    pd.testing.assert_frame_equal(study.summary, again.summary)


def test_episode_starts_are_first_rows_and_errors(hopper_dataset):
    starts = start_rows(hopper_dataset, 5, seed=0)
    assert set(starts["episode_start"]) <= set(hopper_dataset.episode_starts.tolist())
    assert len(starts["dataset"]) == 5 and len(set(starts["dataset"])) == 5
    no_state = dataclasses.replace(hopper_dataset, qpos=None, qvel=None)
    with pytest.raises(DatasetError, match="hopper-fixture: the policy gap needs the simulator state"):
        start_rows(no_state, 5)
    model = tiny("ensemble", hopper_dataset)
    args = (model, hopper_dataset, {"lean": lean_forward}, get_oracle(ENV), 4, 2, termination_fn(ENV))
    with pytest.raises(ConfigError, match="no quantifier 'adm_std'"):
        policy_gap(*args, penalty="adm_std")
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="'penalty_coef' must be a finite number >= 0"):
            policy_gap(*args, penalty_coef=bad)
    with pytest.raises(ConfigError, match="'horizon' must be >= 1, got 0"):
        policy_gap(*args[:5], 0, args[6])
    with pytest.raises(ConfigError, match="'num_starts' must be >= 1, got 0"):
        start_rows(hopper_dataset, 0)
    with pytest.raises(ConfigError, match="at least one policy"):
        policy_gap(model, hopper_dataset, {}, get_oracle(ENV), 4, 2, termination_fn(ENV))


def test_cli_writes_figure_and_tables(hopper_dataset, tmp_path, capsys, monkeypatch):
    from offline_mbrl.data import load as load_module

    save_model(tiny("ensemble", hopper_dataset), tmp_path / "ens.pt")
    monkeypatch.setattr(load_module, "load_dataset", lambda spec: hopper_dataset)
    code = main(
        [
            "analyze",
            "policy-gap",
            "--dynamics",
            str(tmp_path / "ens.pt"),
            "--dataset",
            "tiny",
            "--policies",
            "random",
            "--starts",
            "6",
            "--horizon",
            "4",
            "--penalty",
            "max_aleatoric",
            "--penalty-coef",
            "1.5",
            "--out-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "policy gap over H = 4 steps" in out and "r - 1.5 * max_aleatoric" in out
    assert (tmp_path / "out" / "policy_gap.png").read_bytes()[:8] == PNG_MAGIC
    summary = pd.read_csv(tmp_path / "out" / "policy_gap_summary.csv")
    assert len(summary) == 4 and set(summary["source"]) == {"model", "real"}
    assert "| random | episode_start | real |" in (tmp_path / "out" / "policy_gap_summary.md").read_text()
