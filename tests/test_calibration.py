"""Uncertainty vs model error (ADM paper Fig. 4): scores on known inputs, quantifiers recorded from the roll-out's
own predictions, clipped-state exclusion, behaviour cloning, policies from files and run folders, CLI."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.agents.sac import SAC, SACConfig
from offline_mbrl.analysis.bc import BCConfig, bc_loss, fit_bc
from offline_mbrl.analysis.calibration import (
    calibration_points,
    calibration_summary,
    learned_actor,
    oracle_for,
    quantifiers_for,
    rollout_uncertainties,
    true_errors,
)
from offline_mbrl.cli import main
from offline_mbrl.data.windows import Windows
from offline_mbrl.envs.termination import termination_fn
from offline_mbrl.errors import CheckpointError, ConfigError, DatasetError
from offline_mbrl.models.checkpoint import save_model
from offline_mbrl.persist import save_atomic
from offline_mbrl.uncertainty import get_uncertainty
from tests.test_compounding import PNG_MAGIC, tiny

ENV = "Hopper-v5"


def synthetic_points() -> pd.DataFrame:
    error = np.array([0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0])
    policy = ["random"] * 3 + ["behaviour"] * 3 + ["learned"] * 2
    linear = pd.DataFrame(
        {"model": "m", "policy": policy, "error": error, "quantifier": "linear", "uncertainty": 3.0 * error + 1.0}
    )
    ranked = linear.assign(quantifier="exp", uncertainty=np.exp(error))
    # AUROC input: random U = 3, 5, 7 vs behaviour U = 1, 4, 6
    auroc = linear.assign(quantifier="auroc", uncertainty=[3.0, 5.0, 7.0, 1.0, 4.0, 6.0, 0.0, 2.0])
    return pd.concat([linear, ranked, auroc], ignore_index=True)


def test_scores_on_known_inputs():
    summary = calibration_summary(synthetic_points()).set_index("quantifier")
    # random points have the smallest errors here, so with U increasing in the error they are never more uncertain
    assert summary.loc["linear", ["pearson", "spearman", "auroc"]].tolist() == pytest.approx([1.0, 1.0, 0.0])
    error = synthetic_points().query("quantifier == 'exp'")["error"].to_numpy()
    assert summary.loc["exp", "pearson"] == pytest.approx(np.corrcoef(error, np.exp(error))[0, 1])
    assert summary.loc["exp", "pearson"] < 0.99 and summary.loc["exp", "spearman"] == pytest.approx(1.0)
    # pairs (random, behaviour) with random more uncertain: 3>1, 5>1, 5>4, 7>1, 7>4, 7>6 -> 6 of 9
    assert summary.loc["auroc", "auroc"] == pytest.approx(6 / 9)
    assert (summary["n"] == 8).all()
    flipped = calibration_summary(synthetic_points(), positive="behaviour", negative="random").set_index("quantifier")
    assert flipped.loc["auroc", "auroc"] == pytest.approx(3 / 9)
    no_behaviour = calibration_summary(synthetic_points().query("policy != 'behaviour'"))
    assert no_behaviour["auroc"].isna().all()


def test_quantifiers_per_model_kind(hopper_dataset):
    assert quantifiers_for(tiny("adm", hopper_dataset)) == ("adm_var", "adm_std")
    assert quantifiers_for(tiny("ensemble", hopper_dataset)) == ("ensemble_std", "max_aleatoric")
    with pytest.raises(ConfigError, match="no uncertainty quantifier for a 'boot_rnn' model"):
        quantifiers_for(tiny("boot_rnn", hopper_dataset))


def test_ensemble_uncertainty_is_recorded_from_each_steps_predictions(hopper_dataset):
    ensemble = tiny("ensemble", hopper_dataset)
    with torch.no_grad():  # small random-walk steps (σ ≈ 0.1), so the hopper falls at different steps
        ensemble.layers[-1].weight.mul_(0.01)
        ensemble.layers[-1].bias.zero_()
        ensemble.layers[-1].bias[..., hopper_dataset.obs_dim + 1 :] = -4.6
    windows = Windows(hopper_dataset, 1)
    history = windows.history(torch.arange(0, len(hopper_dataset), 7))
    policy = lambda obs: torch.tanh(obs[:, :3])  # noqa: E731  (deterministic, state-dependent)
    result, values = rollout_uncertainties(
        ensemble, policy, history, 6, termination_fn(ENV), torch.Generator().manual_seed(0)
    )
    assert result.terminals.any() and len(set(result.steps.tolist())) == 6  # trajectories end at different steps
    with torch.no_grad():
        mean, logvar = ensemble(result.obs, result.actions)  # (E, N, D+1)
    mean = torch.cat([mean[..., :-1] + result.obs, mean[..., -1:]], dim=-1)
    for name in ("ensemble_std", "max_aleatoric"):
        torch.testing.assert_close(values[name], get_uncertainty(name)(mean, logvar))


def test_adm_uncertainty_at_the_first_step_uses_every_available_backtrack(hopper_dataset):
    m = 3
    adm = tiny("adm", hopper_dataset, max_backtrack=m, rollout_dropout=False)
    windows = Windows(hopper_dataset, m)
    rows = torch.arange(len(hopper_dataset))
    history = windows.history(rows[windows.steps_from_start >= m - 1][::5])  # full histories
    actions = torch.rand(len(history), 2, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    result, values = rollout_uncertainties(adm, actions, history, 2)
    first = result.steps == 0
    means, logvars = [], []
    with torch.no_grad():
        for k in range(1, m + 1):  # from scratch: start s_{i+1-k}, actions a_{i+1-k} … a_i
            obs0 = history.obs[:, m - k]
            mean, logvar = adm(obs0, torch.cat([history.actions[:, m - k :], actions[:, :1]], dim=1))
            means.append(torch.cat([mean[:, -1, :-1] + obs0, mean[:, -1, -1:]], dim=-1))
            logvars.append(logvar[:, -1])
    for name in ("adm_var", "adm_std"):
        expected = get_uncertainty(name)(torch.stack(means), torch.stack(logvars))
        torch.testing.assert_close(values[name][first], expected, rtol=1e-4, atol=1e-5)


def test_true_errors_and_clipped_states_are_counted_and_excluded(hopper_dataset):
    oracle = oracle_for(hopper_dataset, ENV)
    obs = hopper_dataset.obs[:6].astype(np.float64)
    obs[[1, 4], 7] = -10.0  # a joint velocity at the clip
    predicted = hopper_dataset.next_obs[:6] + 0.5
    errors, clipped, sim_nonfinite = true_errors(oracle, obs, hopper_dataset.actions[:6], predicted)
    assert clipped.tolist() == [False, True, False, False, True, False] and not sim_nonfinite.any()
    assert np.isnan(errors[clipped]).all()
    truth = oracle.step_from_obs(obs[~clipped], hopper_dataset.actions[:6][~clipped]).next_obs
    np.testing.assert_allclose(errors[~clipped], np.linalg.norm(predicted[~clipped] - truth, axis=1))
    np.testing.assert_allclose(errors[0], 0.5 * math.sqrt(11), rtol=1e-5)  # the oracle reproduces row 0

    at_clip = hopper_dataset.obs.copy()
    at_clip[: len(at_clip) // 2, 5] = 10.0  # half the start states sit at the clip
    dataset = replace(hopper_dataset, obs=at_clip)
    policies = {"zero": lambda obs: torch.zeros(len(obs), 3)}
    points, counts = calibration_points({"ens": tiny("ensemble", dataset)}, dataset, policies, oracle, 40, 1)
    row = counts.iloc[0]
    assert row["transitions"] == 40 and 0 < row["excluded_clipped"] < 40
    assert row["used"] == 40 - row["excluded_clipped"] - row["excluded_sim_nonfinite"]
    assert len(points) == 2 * row["used"] and points["error"].notna().all()
    assert (
        at_clip[Windows(dataset, 1).sample_rows(40, torch.Generator().manual_seed(0)).numpy(), 5] == 10.0
    ).sum() == row["excluded_clipped"]


def test_bc_loss_matches_numpy_reference_and_fit_lowers_it(hopper_dataset):
    actor = fit_bc(hopper_dataset, -np.ones(3), np.ones(3), BCConfig(hidden_dims=(8,), steps=1))
    obs, actions = torch.as_tensor(hopper_dataset.obs[:5]), torch.as_tensor(hopper_dataset.actions[:5])
    with torch.no_grad():
        loss, _ = bc_loss(actor, obs, actions)
        mu, log_std = (t.double().numpy() for t in actor.head(actor.trunk(obs)).chunk(2, dim=-1))
    std, a = np.exp(np.clip(log_std, -5, 2)), actions.double().numpy()
    u = np.arctanh(a)
    log_prob = (-0.5 * ((u - mu) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2)).sum(-1)
    assert loss.item() == pytest.approx(-log_prob.mean(), rel=1e-4)

    all_obs, all_actions = torch.as_tensor(hopper_dataset.obs), torch.as_tensor(hopper_dataset.actions)
    fitted = fit_bc(hopper_dataset, -np.ones(3), np.ones(3), BCConfig(hidden_dims=(32,), steps=200, learning_rate=3e-3))
    with torch.no_grad():
        assert bc_loss(fitted, all_obs, all_actions)[0] < bc_loss(actor, all_obs, all_actions)[0] - 0.1
    with pytest.raises(DatasetError, match="rows of field 'actions' lie outside the action box"):
        fit_bc(hopper_dataset, -0.5 * np.ones(3), np.ones(3))


def write_run(run_dir, obs_dim: int = 11, action_dim: int = 3) -> SAC:
    """An offline run folder holding only what the calibration reads: ``checkpoints/last.pt``."""
    torch.manual_seed(0)
    sac = SAC(obs_dim, action_dim, SACConfig(hidden_dims=(16, 16)))
    save_atomic({"sac": sac.full_state()}, run_dir / "checkpoints" / "last.pt")
    return sac


def test_learned_actor_from_run_folder(tmp_path):
    sac = write_run(tmp_path / "run")
    obs = torch.randn(4, 11)
    torch.testing.assert_close(learned_actor(tmp_path / "run")(obs, deterministic=True)[0], sac.act(obs, True))
    with pytest.raises(CheckpointError, match="checkpoint file does not exist"):
        learned_actor(tmp_path / "missing")
    save_atomic({"sac": {"obs_dim": 11}}, tmp_path / "bad" / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="not an offline run checkpoint"):
        learned_actor(tmp_path / "bad")


def test_cli_writes_png_csv_and_markdown(hopper_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("offline_mbrl.data.load.load_dataset", lambda spec: hopper_dataset)
    save_model(tiny("adm", hopper_dataset, max_backtrack=2), tmp_path / "adm.pt")
    save_model(tiny("ensemble", hopper_dataset), tmp_path / "ens.pt")
    write_run(tmp_path / "run")
    actor_file = tmp_path / "actor.pt"
    save_atomic(learned_actor(tmp_path / "run").file_state(), actor_file)
    out = tmp_path / "fig"
    assert (
        main(
            [
                "analyze",
                "calibration",
                "--dataset",
                "hopper.hdf5",
                "--model",
                str(tmp_path / "adm.pt"),
                str(tmp_path / "ens.pt"),
                "--policies",
                "random",
                "behaviour=bc",
                f"learned={tmp_path / 'run'}",
                f"actor={actor_file}",
                "--starts",
                "12",
                "--horizon",
                "3",
                "--bc-steps",
                "5",
                "--out-dir",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    assert (out / "calibration.png").read_bytes()[:8] == PNG_MAGIC
    points = pd.read_csv(out / "calibration_points.csv")
    assert list(points.columns) == ["model", "policy", "start", "step", "error", "quantifier", "uncertainty"]
    assert set(points["policy"]) == {"random", "behaviour", "learned", "actor"}
    summary = pd.read_csv(out / "calibration_summary.csv")
    assert summary[["model", "quantifier"]].values.tolist() == [
        ["adm", "adm_var"],
        ["adm", "adm_std"],
        ["ens", "ensemble_std"],
        ["ens", "max_aleatoric"],
    ]
    assert summary["auroc"].between(0, 1).all()
    markdown = (out / "calibration_summary.md").read_text()
    assert "| model | quantifier | n | pearson | spearman | auroc |" in markdown and "| excluded_clipped |" in markdown
