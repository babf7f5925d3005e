"""Backtracking-length ablation (ADM paper Fig. 6): one ADM per m, holdout error per k, compounding error on shared
holdout segments, run scores per m, CLI outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offline_mbrl.analysis.backtracking import check_max_backtracks, run_scores
from offline_mbrl.analysis.compounding import holdout_mask, select_segments
from offline_mbrl.cli import main
from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import ConfigError
from offline_mbrl.models.checkpoint import load_model
from offline_mbrl.models.fit import evaluate_errors
from test_tables import HOPPER, make_run
from tests.test_compounding import PNG_MAGIC

SCORES = {(1, 0): [10.0, 20.0, 30.0], (1, 1): [12.0, 24.0, 36.0], (2, 0): [5.0, 50.0, 55.0]}  # (m, seed) -> evals


@pytest.fixture
def runs(tmp_path) -> list[str]:
    """``M=RUN_DIR`` arguments: two seeds for m = 1 and one for m = 2 (distinct config folders)."""
    return [
        f"{m}={make_run(tmp_path / 'runs', 'admpo-off', HOPPER, seed, scores, variant=f'm{m}')}"
        for (m, seed), scores in SCORES.items()
    ]


def test_cli_fits_each_m_and_writes_png_and_csvs(hopper_dataset, tmp_path, monkeypatch, runs, capsys):
    monkeypatch.setattr("offline_mbrl.data.load.load_dataset", lambda spec: hopper_dataset)
    out = tmp_path / "fig"
    assert (
        main(
            [
                "analyze",
                "backtracking",
                "--dataset",
                "hopper.hdf5",
                "--m",
                "2",
                "1",
                "--epochs",
                "1",
                "--hidden-dim",
                "16",
                "--gru-layers",
                "1",
                "--head-blocks",
                "1",
                "--horizon",
                "3",
                "--seed",
                "2",
                "--no-progress",
                "--out-dir",
                str(out),
                "--runs",
                *runs,
            ]
        )
        == 0
    )
    assert "mean holdout MSE over k, per m" in capsys.readouterr().out
    assert (out / "backtracking.png").read_bytes()[:8] == PNG_MAGIC

    holdout = pd.read_csv(out / "backtracking_holdout.csv")
    assert holdout[["m", "k"]].values.tolist() == [[1, 1], [2, 1], [2, 2]]
    held = hopper_dataset.subset(np.flatnonzero(holdout_mask(hopper_dataset, fit_seed=2)))
    for m in (1, 2):  # the saved model is the kept snapshot and the CSV holds its holdout error per k
        model = load_model(out / "models" / f"adm-m{m}.pt")
        assert model.config.max_backtrack == m and model.config.hidden_dim == 16
        np.testing.assert_allclose(
            holdout.query("m == @m")["holdout_mse"], evaluate_errors(model, Windows(held, m)).numpy(), rtol=1e-5
        )

    compounding = pd.read_csv(out / "backtracking_compounding.csv")
    assert compounding[["model", "m", "h"]].values.tolist() == [
        ["m=1", 1, 1],
        ["m=1", 1, 2],
        ["m=1", 1, 3],
        ["m=2", 2, 1],
        ["m=2", 2, 2],
        ["m=2", 2, 3],
    ]
    shared = select_segments(hopper_dataset, 3, 2, holdout_mask(hopper_dataset, fit_seed=2))
    assert (compounding["n_segments"] == len(shared)).all()

    scores = pd.read_csv(out / "backtracking_scores.csv")
    assert scores[["m", "seed"]].values.tolist() == [list(key) for key in SCORES]
    np.testing.assert_allclose(scores["final"], [evals[-1] for evals in SCORES.values()])
    np.testing.assert_allclose(scores["last10"], [np.mean(evals) for evals in SCORES.values()])


def test_bad_inputs(hopper_dataset, tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="every m must be >= 1"):
        check_max_backtracks([2, 0])
    assert check_max_backtracks([5, 1, 5]) == [1, 5]
    assert list(run_scores([]).columns) == ["m", "run", "seed", "final", "last10", "unfinished"]
    monkeypatch.setattr("offline_mbrl.data.load.load_dataset", lambda spec: hopper_dataset)
    base = ["analyze", "backtracking", "--dataset", "x", "--m", "1", "--epochs", "1", "--out-dir", str(tmp_path)]
    assert main(base + ["--runs", f"one={tmp_path}"]) == 2
    assert "integer M, got one=" in capsys.readouterr().err
    assert main(base + ["--runs", f"1={tmp_path / 'missing'}"]) == 2  # read before any fitting
    assert "missing" in capsys.readouterr().err and not (tmp_path / "models").exists()
