"""``offline-mbrl status``: run states from the lock, scores and time left from synthetic run folders."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offline_mbrl.analysis.progress import format_progress, progress_table, run_progress
from offline_mbrl.analysis.runs_io import read_run
from offline_mbrl.cli import main
from offline_mbrl.runs import LOCK_NAME, lock_holder
from tests.test_tables import HOPPER, make_run

EPOCH_S = [10.0, 10.0, 100.0, 20.0, 30.0, 40.0, 50.0]  # pace over the last 5 epochs: median(100, 20, 30, 40, 50) = 40


def with_epoch_times(path: Path, seconds: list[float]) -> Path:
    metrics = pd.read_csv(path / "metrics.csv")
    metrics["time/epoch_s"] = seconds
    metrics.to_csv(path / "metrics.csv", index=False)
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (a lock naming it is stale)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_states_from_lock_and_summary(tmp_path):
    scores = [float(s) for s in range(len(EPOCH_S))]
    running = with_epoch_times(make_run(tmp_path, "mopo", HOPPER, 0, scores, finished=False, epochs_total=10), EPOCH_S)
    stopped = with_epoch_times(make_run(tmp_path, "mopo", HOPPER, 1, scores, finished=False, epochs_total=10), EPOCH_S)
    finished = make_run(tmp_path, "mopo", HOPPER, 2, scores, finished=True, epochs_total=len(scores))
    (running / LOCK_NAME).write_text(f"{os.getpid()}\n")
    (stopped / LOCK_NAME).write_text(f"{dead_pid()}\n")

    assert lock_holder(running) == os.getpid()
    assert lock_holder(stopped) is None and lock_holder(finished) is None
    rows = {row["seed"]: row for row in (run_progress(read_run(p)) for p in (running, stopped, finished))}
    assert rows[0]["state"] == f"running (pid {os.getpid()})"
    assert rows[1]["state"] == "stopped"
    assert rows[2]["state"] == "finished" and rows[2]["eta_h"] == 0.0
    assert rows[0]["epochs"] == "7/10"
    assert rows[0]["s_per_epoch"] == 40.0
    assert rows[0]["eta_h"] == pytest.approx(3 * 40.0 / 3600)


def test_scores_are_last_and_mean_of_last_10(tmp_path):
    scores = list(np.linspace(-5.0, 30.0, 13))
    row = run_progress(read_run(make_run(tmp_path, "admpo-off", HOPPER, 0, scores, finished=False, epochs_total=20)))
    assert row["score"] == pytest.approx(scores[-1])
    assert row["last10"] == pytest.approx(np.mean(scores[-10:]))
    assert row["return"] == pytest.approx(10.0 * scores[-1])  # make_run writes return = 10 x score
    assert math.isnan(row["s_per_epoch"]) and math.isnan(row["eta_h"])  # no time/epoch_s: no pace


def test_run_without_normalized_score_or_epochs(tmp_path):
    online = make_run(tmp_path, "mbpo", "InvertedPendulum-v5", 0, [1.0, 2.0], finished=False, epochs_total=5)
    metrics = pd.read_csv(online / "metrics.csv").drop(columns=["eval/normalized_score", "eval/normalized_score_std"])
    metrics.to_csv(online / "metrics.csv", index=False)
    empty = make_run(tmp_path, "sac", "InvertedPendulum-v5", 1, [], finished=None, epochs_total=5)
    frame = progress_table([read_run(online), read_run(empty)], root=tmp_path)
    assert frame["run"].tolist() == ["mbpo/InvertedPendulum-v5/cfg0/seed0", "sac/InvertedPendulum-v5/cfg0/seed1"]
    assert math.isnan(frame.loc[0, "score"]) and frame.loc[0, "return"] == 20.0
    assert frame.loc[1, "epochs"] == "0/5" and math.isnan(frame.loc[1, "return"])
    text = format_progress(frame)
    assert "| mbpo/InvertedPendulum-v5/cfg0/seed0 | mbpo | InvertedPendulum-v5 | 0 | 2/5 | stopped | 20.0 | — |" in text
    assert text.endswith("2 runs: 2 stopped\n")


def test_pace_epochs_must_be_positive(tmp_path):
    run = read_run(make_run(tmp_path, "mopo", HOPPER, 0, [1.0]))
    with pytest.raises(ValueError, match="pace_epochs must be at least 1, got 0"):
        run_progress(run, pace_epochs=0)


def test_cli_prints_table_and_counts(tmp_path, capsys, monkeypatch):
    scores = [float(s) for s in range(len(EPOCH_S))]
    with_epoch_times(make_run(tmp_path, "mopo", HOPPER, 0, scores, finished=False, epochs_total=10), EPOCH_S)
    make_run(tmp_path, "mopo", HOPPER, 1, scores, finished=True, epochs_total=len(scores))
    monkeypatch.chdir(tmp_path)
    assert main(["status", "."]) == 0
    out = capsys.readouterr().out
    assert (
        "| mopo/minari-offline-mbrl-hopper-medium-v0/cfg0/seed0 | mopo | offline_mbrl/hopper/medium-v0 | 0 | 7/10 |"
        in out
    )
    assert "| 40.0 | 0:02 |" in out  # 3 epochs left at 40 s
    assert out.endswith("2 runs: 1 finished, 1 stopped\n")
    assert main(["status", str(tmp_path / "missing")]) == 2
    assert "is not an existing folder" in capsys.readouterr().err
    assert main(["status", ".", "--pace-epochs", "0"]) == 2


def test_metrics_logger_replaces_the_file_atomically(tmp_path, monkeypatch):
    """A header rewrite (a metric that appears later) and a resume's truncation replace metrics.csv in one step, so
    that ``status`` never reads it empty; appended rows keep every earlier value."""
    import offline_mbrl.persist as persist
    from offline_mbrl.runs import MetricsLogger

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(
        persist.os, "replace", lambda src, dst: (replaced.append(Path(dst).name), real_replace(src, dst))
    )
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.log({"epoch": 1, "step": 10, "eval/return_mean": 1.5}, step=10)
    logger.log({"epoch": 2, "step": 20, "eval/return_mean": 2.5, "model/fresh_mse": 0.25}, step=20)
    logger.log({"epoch": 3, "step": 30, "eval/return_mean": 3.5, "model/fresh_mse": 0.5}, step=30)
    assert replaced == ["metrics.csv", "metrics.csv"]  # the first header, then the one with model/fresh_mse
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert metrics["eval/return_mean"].tolist() == [1.5, 2.5, 3.5] and math.isnan(metrics["model/fresh_mse"][0])
    MetricsLogger(tmp_path, tensorboard=False, resume_after=2)
    assert replaced[-1] == "metrics.csv" and pd.read_csv(tmp_path / "metrics.csv")["epoch"].tolist() == [1, 2]
