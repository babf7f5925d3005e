"""analysis.trend: the fitted line against a plain NumPy reference, the extrapolated crossing, the verdicts, the
steps used (every seed's, the tail only) and the errors; `analyze trend` end to end on run folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offline_mbrl.analysis.runs_io import RunFolderError
from offline_mbrl.analysis.trend import curve_trends
from offline_mbrl.cli import main
from test_tables import make_run

TASK = "hopper-medium"
STEPS = np.arange(1, 201) * 1000.0


def evals(curves: dict[str, list[np.ndarray]], steps: np.ndarray = STEPS) -> pd.DataFrame:
    """``runs_io.evaluations``-like rows: algo -> one score array per seed (seed ``i`` has ``len(array)`` steps)."""
    rows = [
        pd.DataFrame({"task": TASK, "algo": algo, "seed": seed, "step": steps[: len(s)], "score": s})
        for algo, seeds in curves.items()
        for seed, s in enumerate(seeds)
    ]
    return pd.concat(rows, ignore_index=True)


def log_line(slope: float, intercept: float, steps: np.ndarray = STEPS) -> np.ndarray:
    return intercept + slope * np.log10(steps)


def test_rising_line_matches_numpy_reference_and_crosses_where_the_line_reaches_the_reference():
    rng = np.random.default_rng(0)
    seeds = [log_line(5.0, 10.0 + offset) + rng.normal(0, 0.5, STEPS.size) for offset in (-1.0, 0.0, 1.0)]
    row = curve_trends(evals({"admpo-off": seeds}), {"behaviour": 40.0}).iloc[0]
    tail = STEPS > 100_000
    mean = np.mean(seeds, axis=0)[tail]
    slope, intercept = np.polyfit(np.log10(STEPS[tail]), mean, 1)
    assert row.slope == pytest.approx(slope) and row.slope == pytest.approx(5.0, abs=0.5)
    assert row.level == pytest.approx(intercept + slope * np.log10(200_000))
    assert row.crossing_step == pytest.approx(10 ** ((40.0 - intercept) / slope))
    assert row.budget_ratio == pytest.approx(row.crossing_step / 200_000)
    per_seed = [np.polyfit(np.log10(STEPS[tail]), s[tail], 1)[0] for s in seeds]
    assert (row.slope_min, row.slope_max) == pytest.approx((min(per_seed), max(per_seed)))
    assert (row.points, row.seeds, row.fit_from, row.last_step) == (100, 3, 100_000, 200_000)
    assert row.verdict.startswith("below, rising: reaches it at")


@pytest.mark.parametrize(
    ("slope", "intercept", "verdict"),
    [
        (-4.0, 60.0, "above, falling: down to it at"),
        (2.0, 40.0, "above"),
        (-3.0, 20.0, "below, not rising: never on this trend"),
        (0.0, 10.0, "below, not rising: never on this trend"),
        (1e-6, 10.0, "below, rising too slowly to reach it"),
    ],
)
def test_verdicts(slope, intercept, verdict):
    row = curve_trends(evals({"mopo": [log_line(slope, intercept)] * 2}), {"behaviour": 33.7}).iloc[0]
    assert row.verdict.startswith(verdict)
    assert np.isnan(row.crossing_step) == (verdict == "above" or slope == 0 or "never" in verdict)
    assert np.isinf(row.crossing_step) == ("too slowly" in verdict)


def test_only_steps_every_seed_reached_and_only_the_tail_are_fitted():
    # seed 1 stopped at step 120k; seed 0's later, much higher scores must not enter the mean curve
    full, short = log_line(1.0, 5.0), log_line(1.0, 5.0)[:120]
    full[120:] = 1000.0
    row = curve_trends(evals({"sac": [full, short]}), {"b": 50.0}, tail=0.5).iloc[0]
    assert row.last_step == 120_000 and row.fit_from == 60_000 and row.points == 60
    assert row.slope == pytest.approx(1.0)


def test_references_per_task_and_for_all_tasks():
    frame = evals({"mopo": [log_line(1.0, 0.0)]})
    trends = curve_trends(frame, {"behaviour@hopper-medium": 30.0, "expert": 90.0})
    assert list(trends["reference"]) == ["behaviour", "expert"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tail": 0.0}, r"tail must be in \(0, 1\]"),
        ({"references": {}}, "no reference score"),
        ({"references": {"b@walker": 1.0}}, "no task 'walker'"),
    ],
)
def test_bad_arguments_raise_named_errors(kwargs, message):
    frame = evals({"mopo": [log_line(1.0, 0.0)]})
    with pytest.raises(RunFolderError, match=message):
        curve_trends(frame, **{"references": {"b": 1.0}, **kwargs})


def test_too_few_evaluations_in_the_tail_name_the_curve():
    frame = evals({"mopo": [log_line(1.0, 0.0)[:4]]})
    with pytest.raises(RunFolderError, match="mopo on hopper-medium: 2 evaluation"):
        curve_trends(frame, {"b": 1.0})


def test_cli_trend_prints_the_table_and_writes_the_csv(tmp_path, capsys):
    for seed in range(2):
        make_run(
            tmp_path / "runs", "admpo-off", "minari:offline_mbrl/hopper/medium-v0", seed, [10.0 + s for s in range(8)]
        )
    out = tmp_path / "trend.csv"
    args = ["analyze", "trend", str(tmp_path / "runs"), "--reference", "behaviour=33.7", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| admpo-off | 2 |" in printed and "below, rising" in printed
    assert pd.read_csv(out)["verdict"].str.startswith("below, rising").all()
