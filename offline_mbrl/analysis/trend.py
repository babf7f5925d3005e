"""Where a learning curve is heading: the budget at which it would reach a reference score (issue #12's fallback,
"the budget at which the curves cross, estimated from the measured trend").

Per task × algorithm: the mean curve over seeds (the steps every seed reached), its last part (``tail``, the
evaluations after ``(1 - tail)`` × the last step), and a least-squares line of the score against ``log10(step)``
through it (``numpy.polyfit``). The line is extrapolated to the step at which it equals each reference score (e.g.
the dataset's behaviour policy). A line in log(step) is the usual shape of a learning curve's later part and the
cautious choice: it reaches a higher score later than a line in step. The same line is fitted to each seed's
curve, and the spread of those slopes says whether the trend is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import RunFolderError
from .tables import markdown_rows, reference_columns

#: columns of :func:`curve_trends`
TREND_COLUMNS = [
    "task",
    "algo",
    "seeds",
    "fit_from",
    "last_step",
    "points",
    "slope",
    "slope_min",
    "slope_max",
    "level",
    "reference",
    "reference_score",
    "crossing_step",
    "budget_ratio",
    "verdict",
]
#: fewest evaluations a line is fitted through
MIN_POINTS = 3
#: slopes (score per decade of steps) below this in magnitude are rounding: the curve is flat
FLAT = 1e-9


def _line(steps: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(slope per decade of steps, intercept) of the least-squares line of ``scores`` against ``log10(steps)``; a
    slope within rounding of 0 (a flat curve) is 0."""
    slope, intercept = np.polyfit(np.log10(steps), scores, 1)
    return (0.0 if abs(slope) < FLAT else float(slope)), float(intercept)


def _crossing(level: float, slope: float, intercept: float, reference: float) -> float:
    """The step at which the line reaches ``reference`` from where it is at the last step (``level``): ahead, in
    the direction it heads; NaN when it heads away or is flat (inf past 1e308 steps)."""
    if slope == 0 or (level < reference) != (slope > 0):
        return float("nan")
    with np.errstate(over="ignore"):
        return float(np.power(10.0, (reference - intercept) / slope))


def _verdict(level: float, slope: float, reference: float, crossing: float, last_step: float) -> str:
    """One phrase: where the fitted line is at the last step against ``reference`` and where it is heading."""
    if level >= reference:
        return "above" if slope >= 0 else f"above, falling: down to it at {crossing:.3g} steps"
    if slope <= 0:
        return "below, not rising: never on this trend"
    if np.isinf(crossing):
        return f"below, rising too slowly to reach it ({slope:+.2g} per decade: past 1e308 steps)"
    return f"below, rising: reaches it at {crossing:.3g} steps ({crossing / last_step:.3g}x the budget)"


def _tail(group: pd.DataFrame, tail: float) -> tuple[pd.DataFrame, float]:
    """The evaluations of one task × algorithm at the steps every seed reached, cut to the tail; and the step
    after which the tail starts."""
    seeds = group["seed"].nunique()
    counts = group.groupby("step")["seed"].nunique()
    common = group[group["step"].isin(counts.index[counts == seeds])]
    fit_from = (1.0 - tail) * common["step"].max()
    return common[common["step"] > fit_from], fit_from


def curve_trends(evals: pd.DataFrame, references: Mapping[str, float], tail: float = 0.5) -> pd.DataFrame:
    """Fit and extrapolate the trend of every task × algorithm curve in ``evals`` (module docstring).

    Args:
        evals: ``runs_io.evaluations`` output (``task, algo, seed, step, score``; steps in SAC steps offline,
            environment steps online; scores in the units of the evaluations, e.g. normalized).
        references: ``{"NAME": score}`` for every task or ``{"NAME@TASK": score}`` for one (as ``analyze curves``),
            in the units of the scores.
        tail: the fraction of the run fitted: evaluations at step > ``(1 - tail)`` × the last step every seed
            reached.
    Returns:
        ``TREND_COLUMNS``, one row per task × algorithm × reference of that task: ``slope`` (score per decade of
        steps, mean curve), ``slope_min``/``slope_max`` (over the seeds' own lines), ``level`` (the line at
        ``last_step``), ``crossing_step`` (where the line reaches the reference, heading on from ``last_step``; NaN
        when it heads away or is flat),
        ``budget_ratio`` (``crossing_step / last_step``) and ``verdict`` (:func:`_verdict`).
    Raises:
        RunFolderError: ``tail`` outside (0, 1], no references, a reference names a task with no runs, or a curve
            has fewer than ``MIN_POINTS`` evaluations in its tail.
    """
    if not 0.0 < tail <= 1.0:
        raise RunFolderError(f"tail must be in (0, 1], got {tail}")
    if not references:
        raise RunFolderError("no reference score to extrapolate to (--reference NAME[@TASK]=SCORE)")
    tasks, algos = sorted(evals["task"].unique()), sorted(evals["algo"].unique())
    columns = reference_columns(references, tasks, algos)
    rows = []
    for (task, algo), group in evals.groupby(["task", "algo"]):
        part, fit_from = _tail(group, tail)
        mean = part.groupby("step")["score"].mean()
        if len(mean) < MIN_POINTS:
            raise RunFolderError(
                f"{algo} on {task}: {len(mean)} evaluation(s) after step {fit_from:g}; a trend needs {MIN_POINTS}"
            )
        steps = mean.index.to_numpy(dtype=float)
        slope, intercept = _line(steps, mean.to_numpy())
        per_seed = [_line(s["step"].to_numpy(float), s["score"].to_numpy())[0] for _, s in part.groupby("seed")]
        level = slope * np.log10(steps[-1]) + intercept
        for name, scores in columns.items():
            if task not in scores:
                continue
            reference = scores[task]
            crossing = _crossing(level, slope, intercept, reference)
            rows.append(
                {
                    "task": task,
                    "algo": algo,
                    "seeds": part["seed"].nunique(),
                    "fit_from": fit_from,
                    "last_step": steps[-1],
                    "points": len(steps),
                    "slope": slope,
                    "slope_min": min(per_seed),
                    "slope_max": max(per_seed),
                    "level": level,
                    "reference": name,
                    "reference_score": reference,
                    "crossing_step": crossing,
                    "budget_ratio": crossing / steps[-1],
                    "verdict": _verdict(level, slope, reference, crossing, steps[-1]),
                }
            )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)


def trend_markdown(trends: pd.DataFrame) -> str:
    """:func:`curve_trends` as a Markdown table for the terminal and the README."""
    header = ["task", "algo", "seeds", "fitted steps", "slope / decade (seeds)", "level", "reference", "verdict"]
    body = [
        [
            r.task,
            r.algo,
            str(r.seeds),
            f"{r.fit_from:.3g}-{r.last_step:.3g}",
            f"{r.slope:+.1f} ({r.slope_min:+.1f} to {r.slope_max:+.1f})",
            f"{r.level:.1f}",
            f"{r.reference} {r.reference_score:g}",
            r.verdict,
        ]
        for r in trends.itertuples()
    ]
    return markdown_rows([header, *body])


def write_trends(trends: pd.DataFrame, out: str | Path) -> Path:
    """Write ``trends`` to the CSV ``out``.

    Raises:
        RunFolderError: ``out`` does not end in ``.csv``.
    """
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise RunFolderError(f"trend output '{out}' must be a .csv file")
    out.parent.mkdir(parents=True, exist_ok=True)
    trends.to_csv(out, index=False)
    return out
