"""Penalty diagnostic: break-even β and per-dimension spreads against NumPy, the rule β, the study's bookkeeping
(sources, shapes, β* makes the behaviour mean zero, determinism) and the `analyze penalty` CLI."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.algos.collect import random_policy
from offline_mbrl.analysis.penalty import penalty_study, rule_penalty_coef
from offline_mbrl.cli import main
from offline_mbrl.errors import ConfigError
from offline_mbrl.models.checkpoint import save_model
from offline_mbrl.uncertainty import adm_var, break_even_coef, dimension_spread
from tests.test_compounding import PNG_MAGIC, tiny

ENV = "Hopper-v5"


def test_break_even_coef_matches_numpy():
    rng = np.random.default_rng(0)
    rewards, penalties = rng.normal(3.0, 1.0, 50), rng.uniform(0.1, 1.0, 50)
    beta = break_even_coef(torch.as_tensor(rewards), torch.as_tensor(penalties))
    assert beta == pytest.approx(rewards.mean() / penalties.mean())
    assert np.mean(rewards - beta * penalties) == pytest.approx(0.0, abs=1e-12)
    assert break_even_coef(torch.ones(3), torch.zeros(3)) == math.inf
    with pytest.raises(ConfigError, match="non-empty"):
        break_even_coef(torch.ones(0), torch.ones(0))


def test_dimension_spread_matches_numpy_and_sums_to_eq4():
    rng = np.random.default_rng(1)
    mean, logvar = rng.normal(size=(4, 6, 3)), rng.normal(size=(4, 6, 3))
    mask = rng.uniform(size=(4, 6)) < 0.7
    mask[0] = True
    epistemic, aleatoric = dimension_spread(*(torch.as_tensor(x) for x in (mean, logvar, mask)))
    for b in range(6):
        m = mask[:, b]
        np.testing.assert_allclose(epistemic[b].numpy(), mean[m, b, :-1].var(axis=0), rtol=1e-10)
        np.testing.assert_allclose(aleatoric[b].numpy(), np.exp(logvar[m, b]).mean(axis=0), rtol=1e-10)
    total = epistemic.sum(-1) + aleatoric[:, :-1].sum(-1)
    torch.testing.assert_close(total, adm_var(*(torch.as_tensor(x) for x in (mean, logvar, mask))))


def test_rule_is_half_the_break_even_at_two_digits_capping_the_published_beta():
    assert rule_penalty_coef(4.97) == 2.5 and rule_penalty_coef(0.0123) == 0.0062
    assert rule_penalty_coef(4.58, published=5.0) == 2.3  # MOPO hopper-medium: the paper's beta is past the cap
    assert rule_penalty_coef(42.5, published=1.0) == 1.0  # ADMPO-OFF: the paper's beta is safely below it
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ConfigError, match="positive and finite"):
            rule_penalty_coef(bad)
    with pytest.raises(ConfigError, match="published β must be a finite number >= 0"):
        rule_penalty_coef(4.0, published=-1.0)
    assert rule_penalty_coef(4.0, fraction=1.0) == 4.0 and rule_penalty_coef(4.0, fraction=0.25) == 1.0
    for bad in (0.0, -0.5, 1.5, math.nan):
        with pytest.raises(ConfigError, match=r"fraction of β\* must be in \(0, 1\]"):
            rule_penalty_coef(4.0, fraction=bad)


@pytest.mark.parametrize("kind", ["adm", "ensemble"])
def test_study_sources_break_even_and_determinism(kind, hopper_dataset):
    model = tiny(kind, hopper_dataset)

    def run(coef=None):  # fresh policies: random_policy's generator is part of its state
        policies = {"behaviour": random_policy(ENV, 3), "random": random_policy(ENV, 4)}
        return penalty_study(model, hopper_dataset, policies, 40, 4, None, coef, seed=2)

    study = run()
    quantifiers = {"adm": {"adm_var", "adm_std"}, "ensemble": {"ensemble_std", "max_aleatoric"}}[kind]
    assert set(study.summary["source"]) == {"dataset", "behaviour", "random"}
    assert set(study.summary["quantifier"]) == quantifiers and len(study.summary) == 6
    points = study.points
    assert (points.loc[points["source"] == "dataset", "step"] == 0).all()
    assert points.loc[points["source"] == "behaviour", "step"].max() == 3
    assert (points["uncertainty"] >= 0).all()
    for row in study.summary.itertuples():
        group = points[(points["source"] == row.source) & (points["quantifier"] == row.quantifier)]
        assert row.break_even_coef == pytest.approx(group["reward"].mean() / group["uncertainty"].mean())
    behaviour = study.summary[study.summary["source"] == "behaviour"]
    expected = [rule_penalty_coef(b) if b > 0 else math.nan for b in behaviour["break_even_coef"]]
    np.testing.assert_array_equal(behaviour["rule_penalty_coef"], expected)
    undefined = study.summary["penalty_coef"].isna()  # no rule β: the penalized columns are undefined too
    assert study.summary.loc[undefined, ["penalized_mean", "penalized_negative_fraction"]].isna().all().all()
    beta = float(behaviour["break_even_coef"].iloc[0])  # an untrained model may predict a negative mean reward
    if beta > 0:
        first = run(beta).summary.query("source == 'behaviour'").iloc[0]
        assert first["penalized_mean"] == pytest.approx(0.0, abs=1e-6)
    else:
        assert math.isnan(behaviour["rule_penalty_coef"].iloc[0])
    fixed = run(0.3)  # every row's penalized columns against NumPy at one explicit β
    for row in fixed.summary.itertuples():
        group = fixed.points[(fixed.points["source"] == row.source) & (fixed.points["quantifier"] == row.quantifier)]
        penalized = group["reward"].to_numpy() - 0.3 * group["uncertainty"].to_numpy()
        assert row.penalty_coef == 0.3 and row.penalized_mean == pytest.approx(penalized.mean())
        assert row.penalized_negative_fraction == pytest.approx(np.mean(penalized < 0))
    shares = study.dimensions.groupby("source")[["epistemic_share", "aleatoric_share"]].sum()
    np.testing.assert_allclose(shares.to_numpy(), 1.0)
    assert len(study.dimensions) == 3 * (hopper_dataset.obs_dim + 1)
    pd.testing.assert_frame_equal(study.points, run().points)


def test_study_rejects_a_quantifier_of_another_model_and_a_bad_beta(hopper_dataset):
    model = tiny("ensemble", hopper_dataset)
    policies = {"behaviour": random_policy(ENV)}
    with pytest.raises(ConfigError, match=r"\['adm_var'\] do not apply to a 'ensemble' model"):
        penalty_study(model, hopper_dataset, policies, 8, 2, None, quantifiers=("adm_var",))
    with pytest.raises(ConfigError, match="--penalty-coef must be a finite number"):
        penalty_study(model, hopper_dataset, policies, 8, 2, None, penalty_coef=float("nan"))
    with pytest.raises(ConfigError, match="needs a 'behaviour' policy"):
        penalty_study(model, hopper_dataset, {"random": random_policy(ENV)}, 8, 2, None)
    with pytest.raises(ConfigError, match="--published-coef adm_std=1.0: needs a measured quantifier"):
        penalty_study(model, hopper_dataset, policies, 8, 2, None, published_coefs={"adm_std": 1.0})
    with pytest.raises(ConfigError, match="listed twice"):
        penalty_study(model, hopper_dataset, policies, 8, 2, None, quantifiers=("max_aleatoric", "max_aleatoric"))
    with pytest.raises(ConfigError, match="may not be named 'dataset'"):
        penalty_study(model, hopper_dataset, {**policies, "dataset": random_policy(ENV)}, 8, 2, None)
    with pytest.raises(ConfigError, match="starts and horizon must be >= 1"):
        penalty_study(model, hopper_dataset, policies, 8, 0, None)


def test_published_beta_caps_the_rule_of_its_quantifier_only(hopper_dataset):
    model = tiny("ensemble", hopper_dataset, seed=3)  # an untrained model whose behaviour β* is positive

    def run(published):
        policies = {"behaviour": random_policy(ENV, 3), "random": random_policy(ENV, 4)}
        return penalty_study(model, hopper_dataset, policies, 40, 3, None, seed=2, published_coefs=published)

    plain = run(None).summary.set_index(["source", "quantifier"])
    assert plain.loc[("behaviour", "max_aleatoric"), "rule_penalty_coef"] > 1e-3
    capped = run({"max_aleatoric": 1e-4}).summary.set_index(["source", "quantifier"])
    assert capped.loc[("behaviour", "max_aleatoric"), "rule_penalty_coef"] == 1e-4
    assert capped.loc[("behaviour", "max_aleatoric"), "published_coef"] == 1e-4
    assert math.isnan(capped.loc[("behaviour", "ensemble_std"), "published_coef"])
    cols = ["rule_penalty_coef", "penalty_coef"]
    pd.testing.assert_series_equal(
        capped.loc[("behaviour", "ensemble_std"), cols], plain.loc[("behaviour", "ensemble_std"), cols]
    )


def test_cli_writes_figure_tables_and_prints_break_even(hopper_dataset, tmp_path, capsys, monkeypatch):
    from offline_mbrl.data import load as load_module

    model = tiny("ensemble", hopper_dataset)
    save_model(model, tmp_path / "ens.pt")
    dataset = hopper_dataset.__class__(
        **{**hopper_dataset.__dict__, "metadata": {**hopper_dataset.metadata, "env_id": ENV}}
    )
    monkeypatch.setattr(load_module, "load_dataset", lambda spec: dataset)
    code = main(
        [
            "analyze",
            "penalty",
            "--dynamics",
            str(tmp_path / "ens.pt"),
            "--dataset",
            "tiny",
            "--starts",
            "30",
            "--horizon",
            "3",
            "--bc-steps",
            "20",
            "--penalty",
            "max_aleatoric",
            "--published-coef",
            "max_aleatoric=0.001",
            "--out-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "max_aleatoric behaviour" in out and "β*" in out
    assert "rule β = min(published 0.001, 0.5 · β*(behaviour)) for max_aleatoric: 0.001" in out
    assert (tmp_path / "out" / "penalty.png").read_bytes()[:8] == PNG_MAGIC
    summary = pd.read_csv(tmp_path / "out" / "penalty_summary.csv")
    assert list(summary["quantifier"].unique()) == ["max_aleatoric"] and len(summary) == 3
    assert "| behaviour | max_aleatoric |" in (tmp_path / "out" / "penalty_summary.md").read_text()
