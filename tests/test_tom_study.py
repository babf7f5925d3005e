"""Tests for the TOM weight-progression study and the weighted-model error table
(offline_mbrl/analysis/tom_weights.py)."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.agents.sac import TanhGaussianActor
from offline_mbrl.algos.collect import save_replay_file
from offline_mbrl.algos.weighting import pmac_weights
from offline_mbrl.analysis import tom_weights as study
from offline_mbrl.cli import main
from offline_mbrl.cli.model_cmd import WEIGHT_METHODS
from offline_mbrl.envs.gym_env import collect_transitions
from offline_mbrl.errors import ConfigError, DatasetError
from offline_mbrl.models.fit import FitConfig
from offline_mbrl.persist import save_atomic
from tests.models_helpers import tiny_adm

TINY_ADM = {"hidden_dim": 16, "gru_layers": 1, "head_blocks": 1}


@pytest.fixture(scope="module")
def random_part():
    """60 uniform-random Hopper-v5 steps (10 environments × 6 steps, each cut by a timeout)."""
    return collect_transitions(None, "Hopper-v5", 60, seed=5)


@pytest.fixture(scope="module")
def combined(random_part, hopper_dataset):
    return study.combine_random_and_replay(random_part, hopper_dataset)


@pytest.fixture(scope="module")
def actor_file(tmp_path_factory):
    """A small random-init actor file standing in for the expert policy."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("policies") / "expert.pt"
    save_atomic(TanhGaussianActor(11, 3, (8, 8)).file_state(), path)
    return path


# ---------------------------------------------------------------------------------------------- combined dataset


def test_combined_dataset_keeps_order_and_marks_the_random_part(combined, random_part, hopper_dataset):
    num_random, num_replay = len(random_part), len(hopper_dataset)
    data = combined.dataset
    assert combined.num_random == num_random == data.metadata["num_random"]
    assert combined.sizes == {"random": num_random, "replay": num_replay}
    np.testing.assert_array_equal(combined.is_random, np.r_[np.ones(num_random, bool), np.zeros(num_replay, bool)])
    for name in ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(data, name)[:num_random], getattr(random_part, name), err_msg=name)
        np.testing.assert_array_equal(getattr(data, name)[num_random:], getattr(hopper_dataset, name), err_msg=name)
    np.testing.assert_array_equal(
        data.collection_step, np.r_[np.arange(num_random), num_random + hopper_dataset.collection_step]
    )
    # episodes of the two parts stay apart: the random part's last row ends an episode
    assert data.episode_starts[random_part.num_episodes] == num_random


def test_combined_dataset_errors(random_part, hopper_dataset, hopper_x_dataset):
    with pytest.raises(DatasetError, match=r"obs/action dims \(11, 3\), hopper-fixture has \(12, 3\)"):
        study.combine_random_and_replay(random_part, hopper_x_dataset)
    shuffled = replace(hopper_dataset, collection_step=hopper_dataset.collection_step[::-1].copy())
    with pytest.raises(DatasetError, match="'collection_step' decreases at row 1"):
        study.combine_random_and_replay(random_part, shuffled)


def test_replay_file_and_random_specs(tmp_path, hopper_dataset):
    path = tmp_path / "hopper_replay.npz"
    save_replay_file(hopper_dataset, "Hopper-v5", path)
    replay = study.load_replay(path)
    np.testing.assert_array_equal(replay.collection_step, hopper_dataset.collection_step)
    assert study.env_id_of(replay) == "Hopper-v5" and study.env_id_of(replay, "Walker2d-v5") == "Walker2d-v5"
    with pytest.raises(DatasetError, match="metadata has no 'env_id'.*--env-id"):
        study.env_id_of(replace(replay, metadata={}))
    assert len(study.load_random("20", "Hopper-v5")) == 20
    with pytest.raises(DatasetError, match="--random 0: need at least 1"):
        study.load_random("0", "Hopper-v5")


# ---------------------------------------------------------------------------------------------- weights and bins


def _reference_bins(weights, num_random, bin_size):
    """Loop reference: each part cut into bin_size rows from its start; mean of w / Σw per bin."""
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    rows = []
    for part, lo, hi in (("random", 0, num_random), ("replay", num_random, len(w))):
        for start in range(lo, hi, bin_size):
            stop = min(start + bin_size, hi)
            rows.append((part, start, stop, stop - start, w[start:stop].mean()))
    return rows


@pytest.mark.parametrize("num_random, bin_size", [(23, 7), (0, 10), (60, 60), (21, 7)])
def test_bin_means_match_numpy_reference(num_random, bin_size):
    weights = np.random.default_rng(num_random).random(60) ** 3
    bins = study.bin_means(weights, num_random, bin_size)
    expected = _reference_bins(weights, num_random, bin_size)
    assert bins["bin"].tolist() == list(range(len(expected)))
    assert list(zip(bins["part"], bins["start"], bins["stop"], bins["rows"])) == [row[:4] for row in expected]
    np.testing.assert_allclose(bins["mean_weight"], [row[4] for row in expected], rtol=1e-12)
    np.testing.assert_allclose(bins["relative_weight"], bins["mean_weight"] * 60, rtol=1e-12)


def test_bin_means_uniform_and_errors():
    np.testing.assert_allclose(study.bin_means(np.full(50, 3.0), 20, 8)["relative_weight"], 1.0)
    with pytest.raises(ConfigError, match="bin size must be >= 1"):
        study.bin_means(np.ones(5), 2, 0)
    with pytest.raises(DatasetError, match="with 6 random rows"):
        study.bin_means(np.ones(5), 6, 2)


def test_progression_stats():
    bins = study.bin_means(np.r_[np.full(10, 0.5), np.arange(1.0, 31.0)], 10, 5)
    stats = study.progression_stats(bins)
    assert stats["replay_spearman"] == pytest.approx(1.0)
    w = np.r_[np.full(10, 0.5), np.arange(1.0, 31.0)]
    relative = w * len(w) / w.sum()
    assert stats["random_relative_weight"] == pytest.approx(relative[:10].mean())
    assert stats["replay_relative_weight"] == pytest.approx(relative[10:].mean())


def test_weight_summary_matches_formulas():
    w = np.array([0.0, 1.0, 1.0, 2.0])
    s = study.weight_summary(w)
    assert s["ess"] == pytest.approx(16 / 6) and s["ess_fraction"] == pytest.approx(16 / 24)
    assert (s["max_relative"], s["min_relative"], s["zero_rows"], s["rows"]) == (2.0, 0.0, 1, 4)
    assert "effective sample size 2.7 of 4 rows (66.67 %)" in study.format_weight_summary("x", w)
    with pytest.raises(DatasetError, match="got 2 weights summing to 0"):
        study.weight_summary(np.zeros(2))


def test_transition_weights_methods(combined, hopper_dataset):
    assert WEIGHT_METHODS == study.WEIGHT_METHODS  # the CLI's copy of the names
    uniform, result = study.transition_weights("uniform", combined.dataset)
    np.testing.assert_allclose(uniform, 1 / len(combined.dataset))
    assert result is None
    pmac, _ = study.transition_weights("pmac-tom", combined.dataset)
    np.testing.assert_allclose(pmac, pmac_weights(combined.dataset.collection_step, "pmac-tom"), rtol=1e-12)
    no_steps = replace(hopper_dataset, collection_step=None, source="hopper-medium.hdf5")
    with pytest.raises(
        DatasetError, match=r"hopper-medium.hdf5: weights 'pmac' need field 'collection_step'.*medium-replay"
    ):
        study.transition_weights("pmac", no_steps)
    with pytest.raises(ConfigError, match="weights 'tom' need a target policy"):
        study.transition_weights("tom", combined.dataset)
    with pytest.raises(ConfigError, match="unknown weights 'recency'"):
        study.transition_weights("recency", combined.dataset)


def test_tom_target_is_deterministic_under_a_seed(actor_file):
    first = study.tom_target(actor_file, "Hopper-v5", 30, seed=3)
    rng_state = torch.get_rng_state()
    second = study.tom_target(actor_file, "Hopper-v5", 30, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_state)
    np.testing.assert_array_equal(first.transitions.actions, second.transitions.actions)
    other = study.target_test_set(first, "Hopper-v5", 30, seed=3)
    assert not np.array_equal(other.obs, first.transitions.obs)
    with pytest.raises(DatasetError, match="need at least 1 roll-out step"):
        study.target_test_set(first, "Hopper-v5", 0)


# ---------------------------------------------------------------------------------------------- model error


def _frozen_adm():
    """m = 1 ADM predicting Δs = 0 with negligible variance: every prediction is the current state."""
    model = tiny_adm(max_backtrack=1)
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias.zero_()
        model.logvar_bounds.max_logvar.fill_(-40.0)
        model.logvar_bounds.min_logvar.fill_(-50.0)
    return model.eval()


def test_errors_of_a_frozen_model_match_numpy(hopper_dataset):
    model, horizon = _frozen_adm(), 4
    obs, next_obs = hopper_dataset.obs.astype(np.float64), hopper_dataset.next_obs.astype(np.float64)
    assert study.one_step_mse(model, hopper_dataset, batch_size=50) == pytest.approx(
        np.mean((obs - next_obs) ** 2), rel=1e-5
    )
    ends = hopper_dataset.episode_ends
    starts = [t for t in range(len(obs) - horizon + 1) if not ends[t : t + horizon - 1].any()]
    expected = [np.mean([np.mean((obs[t] - next_obs[t + h]) ** 2) for t in starts]) for h in range(horizon)]
    errors, counts = study.open_loop_mse(model, hopper_dataset, horizon)
    np.testing.assert_allclose(errors, expected, rtol=1e-5)
    np.testing.assert_array_equal(counts, len(starts))
    with pytest.raises(DatasetError, match="no episode has 31 rows"):
        study.open_loop_mse(model, hopper_dataset, 31)


def test_model_error_study_reports_a_failed_fit(hopper_dataset):
    fit_config = FitConfig(max_epochs=1, seed=0, holdout_split="last")
    weights = {"uniform": np.ones(len(hopper_dataset)), "zero": np.zeros(len(hopper_dataset))}
    table = study.model_error_study(
        hopper_dataset,
        weights,
        hopper_dataset,
        horizon=3,
        fit_config=fit_config,
        model_fields={"max_backtrack": 2, **TINY_ADM},
    )
    assert table["method"].tolist() == ["uniform", "zero"]
    uniform, failed = table.iloc[0], table.iloc[1]
    assert uniform["note"] == "" and uniform["epochs"] == 1 and np.isfinite(uniform["one_step_mse"])
    assert uniform["open_loop_mse_mean"] == pytest.approx(
        uniform[["open_loop_mse_h1", "open_loop_mse_h2", "open_loop_mse_h3"]].mean()
    )
    assert failed["note"] == "fit failed: hopper-fixture: field 'sample_weights' sums to 0; no row could be sampled"
    assert np.isnan(failed["one_step_mse"]) and np.isnan(failed["epochs"])


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_writes_figure_csv_and_model_error_table(tmp_path, hopper_dataset, actor_file, capsys):
    replay = tmp_path / "hopper_replay.npz"
    save_replay_file(hopper_dataset, "Hopper-v5", replay)
    out = tmp_path / "study"
    args = [
        "analyze",
        "tom-weights",
        "--random",
        "60",
        "--replay",
        str(replay),
        "--target-policy",
        str(actor_file),
        "--target-steps",
        "50",
        "--tom-q-steps",
        "5",
        "--tom-disc-epochs",
        "2",
        "--bin-size",
        "40",
        "--out-dir",
        str(out),
        "--model-error",
        "--test-steps",
        "60",
        "--horizon",
        "3",
        "--fit-epochs",
        "1",
        "--max-backtrack",
        "2",
        "--hidden-dim",
        "16",
        "--gru-layers",
        "1",
        "--head-blocks",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    num_rows = 60 + len(hopper_dataset)
    assert f"combined dataset: 60 random + {len(hopper_dataset)} replay rows" in printed
    assert "TOM discriminator: balanced accuracy" in printed and "weights tom: effective sample size" in printed
    assert (out / "weight_progression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bins = pd.read_csv(out / "weight_progression.csv")
    saved = np.load(out / "weights.npz")
    assert saved["is_random"].sum() == 60 and len(saved["is_random"]) == num_rows
    for method in ("tom", "pmac", "pmac-tom"):
        frame = bins[bins["method"] == method].reset_index(drop=True)
        expected = study.bin_means(saved[method], 60, 40)
        pd.testing.assert_frame_equal(frame.drop(columns="method"), expected, check_dtype=False)
        assert saved[method].sum() == pytest.approx(1.0)
    assert bins[bins["method"] == "tom"]["part"].tolist() == ["random", "random", "replay"] + ["replay"] * (
        -(-len(hopper_dataset) // 40) - 1
    )
    table = pd.read_csv(out / "model_error.csv", keep_default_na=False)
    assert table["method"].tolist() == ["uniform", "tom", "pmac", "pmac-tom"]
    assert (table["note"] == "").all() and (table["open_loop_starts"] > 0).all()
    markdown = (out / "model_error.md").read_text()
    assert "| method | ess_fraction | epochs | one_step_mse | open_loop_mse_h3 |" in markdown
    assert "errors on 60 held-out target-policy steps, open loop over H = 3" in markdown
    assert "ADM (m = 2, hidden_dim 16, gru_layers 1, head_blocks 1, at most 1 epochs" in markdown


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "TOM weights need --target-policy"),
        (["--random", "random.xyz", "--target-policy", "a.pt"], "random.xyz: unknown dataset spec"),
    ],
)
def test_cli_errors_are_clean(tmp_path, hopper_dataset, capsys, extra, message):
    replay = tmp_path / "hopper_replay.npz"
    save_replay_file(hopper_dataset, "Hopper-v5", replay)
    args = ["analyze", "tom-weights", "--random", "10", "--replay", str(replay), "--out-dir", str(tmp_path), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
