"""Learning curves: evaluation score vs SAC step (offline) or environment step (online algorithms) per algorithm ×
dataset or environment, mean and a band over seeds.

Drawn with seaborn ``relplot(kind="line")``: one panel per dataset, one line per algorithm, the line the
mean over seeds at each step and the band ``errorbar="sd"`` (mean ± sample std over seeds, ddof=1) or
``errorbar="se"`` (mean ± std/√n, as the ADM paper's Fig. 3). The numbers plotted are written to a CSV
next to the PNG, so every curve can be checked or re-plotted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .runs_io import Run, RunFolderError, evaluations

BANDS = ("sd", "se")
_Y_LABELS = {"normalized": "normalized score", "return": "return", "model_error": "model MSE on fresh real data"}


def curve_summary(evals: pd.DataFrame, band: str = "sd") -> pd.DataFrame:
    """What ``plot_curves`` draws, per (task, algo, step): the mean over seeds and the band.

    Args:
        evals: ``runs_io.evaluations`` output.
        band: ``"sd"`` or ``"se"`` (module docstring).
    Returns:
        Columns ``task, algo, step, mean, std`` (ddof=1), ``sem, n, band_low, band_high``; ``std``,
        ``sem`` and the band are NaN where only one seed reached the step.
    Raises:
        RunFolderError: unknown ``band``.
    """
    if band not in BANDS:
        raise RunFolderError(f"unknown band '{band}'; use one of {list(BANDS)}")
    summary = evals.groupby(["task", "algo", "step"])["score"].agg(mean="mean", std="std", n="count").reset_index()
    summary["sem"] = summary["std"] / np.sqrt(summary["n"])
    half = summary["std" if band == "sd" else "sem"]
    summary["band_low"], summary["band_high"] = summary["mean"] - half, summary["mean"] + half
    return summary


def plot_curves(
    runs: list[Run],
    out: str | Path,
    value: str = "normalized",
    band: str = "sd",
    references: Mapping[str, float] | None = None,
    at_step: float | None = None,
) -> tuple[Path, Path]:
    """Draw the learning curves of ``runs`` into the PNG ``out`` and write the plotted numbers next to it.

    Args:
        at_step: draw only evaluations at step ≤ ``at_step`` (env steps online, SAC steps offline): every curve on
            the same budget, as ``tabulate --at-step``.
        references: name -> score drawn as a dashed horizontal line labelled ``name`` in every panel (e.g.
            ``{"behaviour": 33.7}``: the dataset's behaviour policy, in the units of ``value``); a name
            ``NAME@TASK`` draws its line only in the panel of that task (a dataset's own behaviour score).
    Returns:
        (PNG path, CSV path), the CSV being ``out`` with suffix ``.csv`` (``curve_summary`` output).
    Raises:
        RunFolderError: ``out`` does not end in ``.png``, unknown ``band``/``value``, no evaluations yet, a
            reference names a task with no panel, or as ``runs_io.evaluations``.
    """
    import matplotlib.pyplot as plt  # heavy imports kept out of `offline-mbrl` start-up

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise RunFolderError(f"curves output '{out}' must be a .png file")
    evals = evaluations(runs, value, at_step)
    if evals.empty:
        by = "" if at_step is None else f" at step <= {at_step:g}"
        raise RunFolderError(f"none of the {len(runs)} runs has completed an evaluation{by} yet")
    summary = curve_summary(evals, band)
    grid = draw_curves(evals, value, band, references or {})
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.savefig(out, dpi=120)
    plt.close(grid.figure)
    csv = out.with_suffix(".csv")
    summary.to_csv(csv, index=False)
    return out, csv


def step_label(online: Iterable[bool]) -> str:
    """The x-axis label of curves of runs with these ``Run.online`` flags: ``environment step`` when every run is
    online (their ``step`` column counts env steps, ``algos.online_harness``), ``SAC step`` when none is, else both."""
    return {frozenset([True]): "environment step", frozenset([False]): "SAC step"}.get(
        frozenset(bool(flag) for flag in online), "SAC step (offline) / environment step (online)"
    )


#: curves with at most this many evaluation steps get point markers
MARKED_POINTS = 30


def draw_curves(evals: pd.DataFrame, value: str, band: str, references: Mapping[str, float]):
    """The seaborn ``FacetGrid`` of ``plot_curves`` (one panel per task), with the reference lines drawn."""
    import seaborn as sns
    from matplotlib.ticker import EngFormatter

    tasks = sorted(evals["task"].unique())
    # few evaluations (online iterations, a run that just started): mark them, or a one-point curve is invisible
    few = evals.groupby(["task", "algo"])["step"].nunique().min() <= MARKED_POINTS
    grid = sns.relplot(
        data=evals,
        x="step",
        y="score",
        hue="algo",
        hue_order=sorted(evals["algo"].unique()),
        col="task",
        col_order=tasks,
        col_wrap=min(3, len(tasks)),
        kind="line",
        errorbar=band,
        height=3.0,
        aspect=1.3,
        facet_kws={"sharey": False},
        **({"marker": "o", "markersize": 4} if few else {}),
    )
    grid.set_titles("{col_name}").set_axis_labels(step_label(evals["online"].unique()), _Y_LABELS[value])
    for ax in grid.axes.flat:  # 20k, 1M: full step numbers run into each other on a 3-inch panel
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    for key, score in references.items():
        name, _, task = key.partition("@")
        if task and task not in grid.axes_dict:
            raise RunFolderError(f"reference '{key}': no panel '{task}'; the panels are {tasks}")
        for ax in [grid.axes_dict[task]] if task else grid.axes.flat:
            ax.axhline(score, color="0.35", linestyle="--", linewidth=1.0)
            ax.annotate(
                f"{name} {score:g}",
                (0.01, score),
                xycoords=("axes fraction", "data"),
                textcoords="offset points",
                xytext=(0, 3),
                fontsize=8,
                color="0.35",
            )
    return grid
