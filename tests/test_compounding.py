"""Compounding error (ADM paper Fig. 2): segment choice, error formula, overflow counting, roll-out alignment, CLI."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.analysis.compounding import (
    F32_MAX,
    compounding_error,
    evaluation_segments,
    holdout_mask,
    model_rollout,
    rollout_segments,
    segment_errors,
    select_segments,
    summarize_errors,
)
from offline_mbrl.cli import main
from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import ConfigError
from offline_mbrl.models import build_model
from offline_mbrl.models.checkpoint import save_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = {"hidden_dim": 16, "gru_layers": 1, "head_blocks": 1}


def tiny(kind: str, dataset, seed: int = 0, **fields):
    """A tiny model of ``kind`` with the dataset's input statistics (untrained: the tests check bookkeeping)."""
    torch.manual_seed(seed)
    sizes = {
        "ensemble": {"ensemble_size": 3, "num_elites": 2, "hidden_dims": (16, 16), "weight_decays": (1e-5, 1e-5, 1e-5)}
    }.get(kind, TINY)
    model = build_model(kind, dataset.obs_dim, dataset.action_dim, **{**sizes, **fields})
    model.normalizer.set_stats(dataset.normalization_stats())
    return model.eval()


def test_segment_errors_match_numpy_reference():
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(4, 3, 2))
    predictions = targets + rng.normal(size=targets.shape)
    predictions[0, 2] = np.nan  # missing step (dropped trajectory)
    predictions[1, 0, 1] = np.inf  # non-finite prediction
    predictions[2, 1, 0] = 1e200  # finite but the error overflows float32
    predictions[3, 2, 0] = 1e19  # squared error 1e38 < F32_MAX: kept
    l2, squared, overflow = segment_errors(predictions, targets)
    with np.errstate(over="ignore"):
        for s, h in np.ndindex(4, 3):
            diff = predictions[s, h] - targets[s, h]
            bad = not np.all(np.isfinite(diff)) or np.sqrt(np.sum(diff**2)) > F32_MAX
            assert overflow[s, h] == bad
            assert l2[s, h] == (F32_MAX if bad else np.sqrt(np.sum(diff**2)))
            np.testing.assert_array_equal(squared[s, h], np.full(2, F32_MAX) if bad else diff**2)
    assert overflow.sum() == 3
    summary = summarize_errors(l2, overflow)
    np.testing.assert_array_equal(summary["n_overflow"], [1, 1, 1])
    np.testing.assert_allclose(summary["mean"], l2.mean(axis=0))
    assert (summary["ci_low"] <= summary["mean"]).all() and (summary["mean"] <= summary["ci_high"]).all()
    with pytest.raises(ConfigError, match=r"must\s+both be \(S, H, D\)"):
        segment_errors(predictions[:, :2], targets)


def test_bootstrap_interval_is_seeded_and_shrinks_to_constant():
    l2 = np.random.default_rng(1).exponential(size=(50, 4))
    no_overflow = np.zeros_like(l2, dtype=bool)
    pd.testing.assert_frame_equal(summarize_errors(l2, no_overflow, seed=3), summarize_errors(l2, no_overflow, seed=3))
    constant = summarize_errors(np.full((10, 2), 2.5), np.zeros((10, 2), dtype=bool))
    np.testing.assert_allclose(constant[["mean", "ci_low", "ci_high"]].to_numpy(), 2.5)


def brute_force_starts(dataset, length: int, allowed: np.ndarray) -> list[int]:
    ids = dataset.episode_ids
    return [
        t
        for t in range(len(dataset) - length + 1)
        if len(set(ids[t : t + length])) == 1 and allowed[t : t + length].all()
    ]


@pytest.mark.parametrize("holdout", [True, False])
def test_segments_stay_inside_one_episode_and_the_holdout(hopper_dataset, holdout):
    horizon, history = 6, 3
    allowed = holdout_mask(hopper_dataset) if holdout else np.ones(len(hopper_dataset), dtype=bool)
    segments = select_segments(hopper_dataset, horizon, history, allowed if holdout else None)
    assert segments.rows.tolist() == brute_force_starts(hopper_dataset, history - 1 + horizon, allowed)
    assert 0 < len(segments) < len(hopper_dataset)
    rows = segments.rows[:, None] + np.arange(history - 1 + horizon)  # (S, L)
    ids = hopper_dataset.episode_ids[rows]
    assert (ids == ids[:, :1]).all() and allowed[rows].all()
    # an episode end may only sit at a segment's last row
    assert not hopper_dataset.episode_ends[rows[:, :-1]].any()


def test_holdout_mask_is_the_fit_holdout(hopper_dataset):
    from offline_mbrl.models.fit import FitConfig, split_holdout

    mask = holdout_mask(hopper_dataset, fit_seed=4)
    np.testing.assert_array_equal(np.flatnonzero(mask), split_holdout(hopper_dataset, FitConfig(seed=4))[1])
    assert not np.array_equal(mask, holdout_mask(hopper_dataset, fit_seed=5))


def test_segment_count_seeded_and_errors(hopper_dataset):
    every = select_segments(hopper_dataset, 4, 2)
    drawn = select_segments(hopper_dataset, 4, 2, num_segments=10, seed=1)
    assert len(drawn) == 10 and set(drawn.rows) <= set(every.rows) and len(set(drawn.rows)) == 10
    np.testing.assert_array_equal(drawn.rows, select_segments(hopper_dataset, 4, 2, num_segments=10, seed=1).rows)
    with pytest.raises(ConfigError, match=f"{len(every)} segments of 5 rows"):
        select_segments(hopper_dataset, 4, 2, num_segments=len(every) + 1)
    with pytest.raises(ConfigError, match="0 segments of 40 rows"):
        select_segments(hopper_dataset, 40, 1)
    with pytest.raises(ConfigError, match="segments_from"):
        evaluation_segments(hopper_dataset, [], 4, segments_from="train")


def test_recorded_next_states_give_zero_error_at_every_h(hopper_dataset):
    segments = select_segments(hopper_dataset, 5, 3)
    # independent path: inside an episode, the state after row t is the obs of row t + 1 (so skip segments
    # whose last row ends its episode)
    segments = replace(segments, rows=segments.rows[~hopper_dataset.episode_ends[segments.rows + 6]])
    assert len(segments) > 10
    predictions = np.stack([[hopper_dataset.obs[t0 + 3 + h] for h in range(5)] for t0 in segments.rows])
    np.testing.assert_array_equal(segments.targets(hopper_dataset), predictions)
    np.testing.assert_array_equal(segments.actions(hopper_dataset)[:, 0], hopper_dataset.actions[segments.rows + 2])
    l2, squared, overflow = segment_errors(predictions, segments.targets(hopper_dataset))
    summary = summarize_errors(l2, overflow)
    assert (l2 == 0).all() and (squared == 0).all() and not overflow.any()
    assert (summary[["mean", "ci_low", "ci_high", "n_overflow"]].to_numpy() == 0).all()


def test_longest_backtrack_first_m_steps_read_recorded_data(hopper_dataset):
    m = 3
    adm = tiny("adm", hopper_dataset, max_backtrack=m, rollout_dropout=False)
    with torch.no_grad():  # near-zero variance: the sample is the mean
        adm.logvar_bounds.max_logvar.fill_(-40.0)
        adm.logvar_bounds.min_logvar.fill_(-50.0)
    segments = select_segments(hopper_dataset, 4, m)
    predictions, nonfinite = rollout_segments(adm, hopper_dataset, segments, backtrack="longest")
    assert predictions.shape == (len(segments), 4, 11) and nonfinite == 0
    for tau in range(m):  # step τ, k = m: start s_{t0+τ}, actions a_{t0+τ} … a_{t0+τ+m-1}, all recorded
        obs0 = torch.as_tensor(hopper_dataset.obs[segments.rows + tau])
        actions = torch.as_tensor(hopper_dataset.actions[segments.rows[:, None] + tau + np.arange(m)])
        expected = adm.predict(obs0, actions)[0][:, -1]
        np.testing.assert_allclose(predictions[:, tau], expected.double().numpy(), atol=1e-5)


def test_roll_outs_are_seeded(hopper_dataset):
    adm = tiny("adm", hopper_dataset, max_backtrack=2)  # dropout on in roll-outs (official)
    segments = select_segments(hopper_dataset, 3, 2)
    first, _ = rollout_segments(adm, hopper_dataset, segments, seed=5)
    np.testing.assert_array_equal(first, rollout_segments(adm, hopper_dataset, segments, seed=5)[0])
    assert not np.array_equal(first, rollout_segments(adm, hopper_dataset, segments, seed=6)[0])


def test_exploding_model_counts_every_point_as_overflow(hopper_dataset):
    ensemble = tiny("ensemble", hopper_dataset)
    with torch.no_grad():  # Δs = 2e38: step 1 is finite with an error > F32_MAX, step 2 is inf (dropped)
        ensemble.layers[-1].bias[..., : hopper_dataset.obs_dim] = 2e38
    segments = select_segments(hopper_dataset, 3, 1)
    result = compounding_error({"exploding": ensemble}, hopper_dataset, segments)
    np.testing.assert_array_equal(result.summary["n_overflow"], len(segments))
    np.testing.assert_array_equal(result.summary["mean"], F32_MAX)
    assert result.num_nonfinite == {"exploding": len(segments)}
    assert (result.per_dim["mse"] == F32_MAX).all()


def test_model_rollout_rejects_bad_requests(hopper_dataset):
    ensemble, adm = tiny("ensemble", hopper_dataset), tiny("adm", hopper_dataset, max_backtrack=2)
    history = Windows(hopper_dataset, 1).history(torch.tensor([5, 6]))
    actions = torch.zeros(2, 3, 3)
    with pytest.raises(ConfigError, match="'longest' for ADM only"):
        model_rollout(ensemble, actions, history, 3, backtrack="longest")
    with pytest.raises(ConfigError, match="history holds 1 states, the adm model reads 2"):
        model_rollout(adm, actions, history, 3)
    with pytest.raises(ConfigError, match="reads 2 states, the segments hold 1"):
        rollout_segments(adm, hopper_dataset, select_segments(hopper_dataset, 3, 1))


def test_cli_writes_png_and_csvs(hopper_dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("offline_mbrl.data.load.load_dataset", lambda spec: hopper_dataset)
    paths = {}
    for name, kind, fields in (
        ("adm", "adm", {"max_backtrack": 2}),
        ("ens", "ensemble", {}),
        ("rnn", "boot_rnn", {"max_backtrack": 2}),
    ):
        paths[name] = tmp_path / f"{name}.pt"
        save_model(tiny(kind, hopper_dataset, **fields), paths[name])
    out = tmp_path / "fig"
    assert (
        main(
            [
                "analyze",
                "compounding-error",
                "--dataset",
                "hopper.hdf5",
                "--horizon",
                "4",
                "--out-dir",
                str(out),
                "--models",
                *(f"{name}={path}" for name, path in paths.items()),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    assert (out / "compounding_error.png").read_bytes()[:8] == PNG_MAGIC
    summary = pd.read_csv(out / "compounding_error.csv")
    assert list(summary.columns) == ["model", "h", "mean", "ci_low", "ci_high", "n_segments", "n_overflow", "mse"]
    assert list(dict.fromkeys(summary["model"])) == ["adm", "adm (k=m=2)", "ens", "rnn"]
    assert summary.groupby("model")["h"].apply(list).map(lambda h: h == [1, 2, 3, 4]).all()
    per_dim = pd.read_csv(out / "compounding_error_per_dim.csv")
    assert len(per_dim) == 4 * 4 * hopper_dataset.obs_dim
    merged = per_dim.groupby(["model", "h"])["mse"].mean().reset_index().merge(summary, on=["model", "h"])
    np.testing.assert_allclose(merged["mse_x"], merged["mse_y"])
    assert main(["analyze", "compounding-error", "--dataset", "x", "--models", "bad"]) == 2  # a bare name: no file
