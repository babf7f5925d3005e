"""Progress of run folders (``offline-mbrl status``): per run, the epochs done of those planned, whether a process
trains it now, its latest scores and, at the pace of its recent epochs, the wall time it still needs.

Long runs stop with a session and are resumed later (``--resume``); this answers "where does each run stand and
how long until it is done" without opening every ``metrics.csv``. A run is ``running`` while a live process holds
its lock (``runs.lock_holder``), ``finished`` when its ``summary.json`` says so, and ``stopped`` otherwise (killed,
or not resumed yet). The pace is the median ``time/epoch_s`` of the last ``pace_epochs`` epochs, as measured under
the load the run had then; the seeds of one seed batch (``train --seeds``) each record the batch's epoch time, so
their remaining times overlap rather than add up. Runs without ``time/epoch_s`` (PAL, MAL) have no pace.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..runs import lock_holder
from .runs_io import VALUE_COLUMNS, Run, dataset_labels
from .tables import markdown_rows

PACE_COLUMN = "time/epoch_s"
PACE_EPOCHS = 5
COLUMNS = ("run", "algo", "task", "seed", "epochs", "state", "return", "score", "last10", "s_per_epoch", "eta_h")


def run_progress(run: Run, pace_epochs: int = PACE_EPOCHS) -> dict:
    """One run's progress.

    Returns:
        ``run`` (folder), ``algo``, ``seed``, ``epochs`` ("done/total"), ``state`` (``finished``,
        ``running (pid N)`` or ``stopped``), ``return`` (last evaluation's mean return), ``score`` and
        ``last10`` (last normalized score and the mean of the last 10; NaN when the run has no normalized score,
        e.g. an environment without reference returns), ``s_per_epoch`` (median wall seconds of the last
        ``pace_epochs`` epochs; NaN without ``time/epoch_s``) and ``eta_h`` (remaining epochs × pace, hours;
        0 when finished). All NaN where no epoch has completed.
    Raises:
        ConfigError: ``pace_epochs`` < 1 (a ``ValueError``).
    """
    if pace_epochs < 1:
        raise ConfigError(f"pace_epochs must be at least 1, got {pace_epochs}")
    metrics, pid = run.metrics, lock_holder(run.path)
    state = "finished" if run.finished else (f"running (pid {pid})" if pid is not None else "stopped")
    scores = _column(metrics, VALUE_COLUMNS["normalized"])
    pace = float(_column(metrics, PACE_COLUMN).tail(pace_epochs).median())
    remaining = 0 if run.finished else max(run.epochs_total - run.epochs_completed, 0)
    return {
        "run": str(run.path),
        "algo": run.algo,
        "seed": run.seed,
        "epochs": f"{run.epochs_completed}/{run.epochs_total}",
        "state": state,
        "return": _last(_column(metrics, VALUE_COLUMNS["return"])),
        "score": _last(scores),
        "last10": float(scores.tail(10).mean()),
        "s_per_epoch": pace,
        "eta_h": 0.0 if remaining == 0 else remaining * pace / 3600,
    }


def progress_table(runs: list[Run], root: str | Path | None = None, pace_epochs: int = PACE_EPOCHS) -> pd.DataFrame:
    """``run_progress`` of every run as one frame (columns ``COLUMNS``), sorted by folder; ``task`` is the short
    dataset label of ``runs_io.dataset_labels``; with ``root``, folders are shown relative to it where they lie
    below it."""
    labels = dataset_labels(run.dataset for run in runs)
    rows = [run_progress(run, pace_epochs) | {"task": labels[run.dataset]} for run in runs]
    frame = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("run", ignore_index=True)
    if root is not None:
        frame["run"] = [_relative(path, Path(root)) for path in frame["run"]]
    return frame


def format_progress(frame: pd.DataFrame, decimals: int = 1) -> str:
    """``progress_table``'s frame as a Markdown table (NaN as ``—``; ``eta_h`` as ``h:mm``) and a last line with
    the number of runs per state."""
    shown = frame.copy()
    for name in ("return", "score", "last10", "s_per_epoch"):
        shown[name] = [_number(v, decimals) for v in frame[name]]
    shown["eta_h"] = [_duration(v) for v in frame["eta_h"]]
    shown = shown.rename(columns={"s_per_epoch": "s/epoch", "eta_h": "left (h:mm)", "last10": "last-10"})
    rows = [list(shown.columns), *([str(v) for v in row] for row in shown.itertuples(index=False))]
    states = frame["state"].str.split(" ").str[0].value_counts()
    counts = ", ".join(f"{n} {state}" for state, n in states.sort_index().items())
    return markdown_rows(rows) + f"\n\n{len(frame)} run{'s' * (len(frame) != 1)}: {counts}\n"


def _column(metrics: pd.DataFrame, name: str) -> pd.Series:
    return metrics[name].astype(float) if name in metrics.columns else pd.Series(dtype=float)


def _last(values: pd.Series) -> float:
    return float(values.iloc[-1]) if len(values) else math.nan


def _number(value: float, decimals: int) -> str:
    return "—" if math.isnan(value) else f"{value:.{decimals}f}"


def _duration(hours: float) -> str:
    if math.isnan(hours):
        return "—"
    minutes = round(hours * 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _relative(path: str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root.resolve()))
    except ValueError:
        return path
