"""Score tables over seeds in the layout of the ADM paper's Tables 1 and 2 (tasks as rows, algorithms
as columns, an Average row), as Markdown, LaTeX or CSV.

Protocol (STYLE.md item 8): ``metrics.csv`` already holds, per evaluation, the mean over episodes of each
episode's normalized score, so per-seed numbers are read, never re-normalized. Two per-seed numbers:

- ``final``: the score at the seed's last evaluation (its last ``metrics.csv`` row);
- ``last10``: the mean of the seed's last 10 evaluations (all of them if it has fewer);
- ``reach`` (sample efficiency, given a threshold): the step of the seed's first evaluation scoring at least the
  threshold (environment steps for an online run, SAC steps for an offline one); a seed that never does has none.

``at_step`` N compares runs at equal budget: only evaluations at step ≤ N count, so ``final`` is each seed's score
at N (its last evaluation by then) and ``reach`` is censored at N. A run that stopped before N is unfinished.

A cell is the mean over seeds ± the sample std over seeds (ddof=1, so one seed has no std), followed by
the standard error std/√n in parentheses; a ``reach`` cell averages the seeds that reached the threshold and says
how many did (``[k of n reached]``). The Average row is the mean over tasks of the cell means, given only for
algorithms with a cell on every task row (as in the paper).

Reference columns (``references``, e.g. the behaviour policy's score of each dataset) stand before the algorithms:
a given number per task, not a run, with its Average by the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .runs_io import Run, RunFolderError, dataset_labels, evaluations

LAST_N = 10
SCORE_KINDS = {
    "final": "Final: each seed's score at its last evaluation",
    "last10": f"Last-{LAST_N}: each seed's mean score over its last {LAST_N} evaluations (all, if fewer)",
    "reach": "Reach {threshold:g}: the step of each seed's first evaluation scoring at least {threshold:g}",
}
FORMATS = ("markdown", "latex", "csv")
_VALUE_NAMES = {"normalized": "Normalized score", "return": "Return"}
_KEYS = ["algo", "task", "seed"]


@dataclass(frozen=True)
class ScoreTable:
    """Aggregated scores of one kind (``final`` or ``last10``).

    ``cells``: indexed by (task, algo), columns ``mean, std, sem, n, seeds, unfinished`` (over the ``n`` seeds with
    a value: std with ddof=1, sem = std/√n; ``seeds``: the seeds with an evaluation, more than ``n`` only for
    ``reach``; unfinished = number of seeds whose run is unfinished). ``average``: per algorithm, the mean of its
    cell means over ``tasks``; NaN where the algorithm lacks a task. ``threshold`` of a ``reach`` table.
    ``references``: reference column name -> task -> score (``reference_columns``), shown before the algorithms.
    """

    kind: str
    tasks: list[str]
    algos: list[str]
    cells: pd.DataFrame
    average: pd.Series
    threshold: float | None = None
    references: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """The table's columns after the task: the reference columns, then the algorithms."""
        return [*self.references, *self.algos]

    @property
    def max_seeds(self) -> int:
        """The largest seed count of any cell; cells with fewer show ``[n=k]``."""
        return int(self.cells["seeds"].max())

    @property
    def title(self) -> str:
        """What the table's numbers are (``SCORE_KINDS``, with the threshold of a ``reach`` table)."""
        return SCORE_KINDS[self.kind].format(threshold=self.threshold)


def seed_scores(
    runs: list[Run], value: str = "normalized", at_step: float | None = None, threshold: float | None = None
) -> pd.DataFrame:
    """Per-seed ``final``, ``last10`` and ``reach`` scores (module docstring), one row per run with an evaluation
    (at step ≤ ``at_step`` when given).

    Args:
        value: ``runs_io.VALUE_COLUMNS`` key.
        at_step: count only evaluations at ``step`` ≤ ``at_step`` (env steps online, SAC steps offline).
        threshold: score of ``reach``; None: ``reach`` is NaN for every seed.
    Returns:
        Columns ``algo, task, seed, final, last10, reach`` (step; NaN where the threshold is never reached),
        ``unfinished`` (bool: the run is unfinished and, with ``at_step``, stopped before it).
    Raises:
        RunFolderError: as ``runs_io.evaluations``, or no run has an evaluation (by ``at_step``).
    """
    evals = evaluations(runs, value, at_step).sort_values(_KEYS + ["epoch"])
    if evals.empty:
        by = "" if at_step is None else f" at step <= {at_step:g}"
        raise RunFolderError(f"none of the {len(runs)} runs has completed an evaluation{by} yet")
    grouped = evals.groupby(_KEYS)
    reached = evals[evals["score"] >= threshold] if threshold is not None else evals.iloc[:0]
    per_seed = pd.DataFrame(
        {
            "final": grouped["score"].last(),
            "last10": grouped.tail(LAST_N).groupby(_KEYS)["score"].mean(),
            "reach": reached.groupby(_KEYS)["step"].first().astype(float),
        }
    ).reset_index()
    labels = dataset_labels(run.dataset for run in runs)
    unfinished = {(r.algo, labels[r.dataset], r.seed) for r in open_runs(runs, at_step)}
    per_seed["unfinished"] = [key in unfinished for key in per_seed[_KEYS].itertuples(index=False, name=None)]
    return per_seed


def open_runs(runs: list[Run], at_step: float | None = None) -> list[Run]:
    """The unfinished runs by ``seed_scores``' rule (with ``at_step``: those that stopped before it), runs without
    any evaluation included, sorted by algorithm, dataset and seed."""

    def stopped_early(run: Run) -> bool:
        return at_step is None or run.metrics.empty or run.metrics["step"].max() < at_step

    return sorted((r for r in runs if not r.finished and stopped_early(r)), key=lambda r: (r.algo, r.dataset, r.seed))


def score_table(
    per_seed: pd.DataFrame, kind: str, algos: list[str] | None = None, threshold: float | None = None
) -> ScoreTable:
    """Aggregate per-seed scores of one ``kind`` over seeds into a ``ScoreTable``.

    Args:
        per_seed: output of ``seed_scores``.
        kind: ``"final"``, ``"last10"`` or ``"reach"``.
        algos: columns to show, in this order; default every algorithm, sorted.
        threshold: the threshold ``per_seed`` was computed with (required for ``reach``; its title).
    Raises:
        RunFolderError: unknown ``kind``, ``reach`` without a threshold, or an algorithm in ``algos`` has no run.
    """
    if kind not in SCORE_KINDS:
        raise RunFolderError(f"unknown score kind '{kind}'; use one of {sorted(SCORE_KINDS)}")
    if kind == "reach" and threshold is None:
        raise RunFolderError("the 'reach' score needs a threshold (tabulate --threshold)")
    present = sorted(per_seed["algo"].unique())
    missing = sorted(set(algos or []) - set(present))
    if missing:
        raise RunFolderError(f"no runs for algorithms {missing}; runs exist for {present}")
    algos = list(algos) if algos else present
    per_seed = per_seed[per_seed["algo"].isin(algos)]
    cells = per_seed.groupby(["task", "algo"]).agg(
        mean=(kind, "mean"),
        std=(kind, "std"),
        n=(kind, "count"),
        seeds=("seed", "count"),
        unfinished=("unfinished", "sum"),
    )
    cells.insert(2, "sem", cells["std"] / np.sqrt(cells["n"]))
    tasks = sorted(per_seed["task"].unique())
    means = cells["mean"].unstack("algo").reindex(index=tasks, columns=algos)  # (tasks, algos)
    average = means.mean(axis=0).where(means.notna().all(axis=0))
    return ScoreTable(kind=kind, tasks=tasks, algos=algos, cells=cells, average=average, threshold=threshold)


def reference_columns(
    references: Mapping[str, float], tasks: list[str], algos: list[str]
) -> dict[str, dict[str, float]]:
    """Reference scores as table columns: ``{"NAME": score}`` gives column NAME the score on every task,
    ``{"NAME@TASK": score}`` on that task only (the convention of ``plots.plot_curves``' references).

    Returns:
        column name -> task -> score, columns in the order first named.
    Raises:
        RunFolderError: a reference names a task with no row, or its column name is an algorithm's.
    """
    columns: dict[str, dict[str, float]] = {}
    for key, score in references.items():
        name, _, task = key.partition("@")
        if task and task not in tasks:
            raise RunFolderError(f"reference '{key}': no task '{task}' in the table; its tasks are {tasks}")
        if name in algos:
            raise RunFolderError(f"reference '{key}': '{name}' is an algorithm of the table; name it otherwise")
        columns.setdefault(name, {}).update({row: float(score) for row in ([task] if task else tasks)})
    return columns


def format_tables(
    runs: list[Run],
    fmt: str = "markdown",
    kinds: tuple[str, ...] = ("final", "last10"),
    value: str = "normalized",
    algos: list[str] | None = None,
    decimals: int = 1,
    at_step: float | None = None,
    threshold: float | None = None,
    references: Mapping[str, float] | None = None,
) -> str:
    """Text of the score tables of ``kinds`` for ``runs`` in format ``fmt`` (``at_step``, ``threshold``: as
    ``seed_scores``; ``references``: reference columns, as ``reference_columns``, e.g. ``{"behaviour@TASK": 33.7}``).

    Markdown and LaTeX print one table per kind with its definition, then notes: the seed count, and a
    † footnote listing each unfinished run with epochs completed/total. CSV is tidy, one row per
    (kind, task, algo) with numeric ``mean, std, sem, n, seeds, unfinished`` at full precision, Average rows last.

    Raises:
        RunFolderError: unknown ``fmt``/``kind``/``value``, references with a ``reach`` table (a score is not a
            step), or as ``seed_scores``/``score_table``/``reference_columns``.
    """
    if fmt not in FORMATS:
        raise RunFolderError(f"unknown table format '{fmt}'; use one of {list(FORMATS)}")
    if references and "reach" in kinds:
        raise RunFolderError("reference scores cannot stand in a 'reach' table (its cells are steps, not scores)")
    per_seed = seed_scores(runs, value, at_step, threshold)
    tables = [score_table(per_seed, kind, algos, threshold) for kind in kinds]
    tables = [replace(t, references=reference_columns(references or {}, t.tasks, t.algos)) for t in tables]
    if fmt == "csv":
        return _csv(tables)
    symbols = _LATEX if fmt == "latex" else _MARKDOWN
    render = _latex if fmt == "latex" else _markdown
    head = f"{_VALUE_NAMES[value]}: mean {symbols.pm} std over seeds (ddof=1), (standard error = std/√n)."
    if at_step is not None:
        head += f" Evaluations up to step {at_step:,.0f} only (environment steps online, SAC steps offline)."
    note = _comment if fmt == "latex" else str
    notes = _notes(tables, runs, symbols, per_seed, at_step)
    blocks = [note(head)] + [render(table, decimals) for table in tables] + [note(notes)]
    return "\n\n".join(blocks) + "\n"


@dataclass(frozen=True)
class _Symbols:
    pm: str
    dagger: str
    empty: str


_MARKDOWN = _Symbols(pm="±", dagger="†", empty="—")
_LATEX = _Symbols(pm=r"$\pm$", dagger=r"$^\dagger$", empty="--")
_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"}


def markdown_rows(rows: list[list[str]]) -> str:
    """Rows of cell strings as a Markdown table (no trailing newline); the first row is the header.

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("markdown_rows: need at least a header row")
    lines = [rows[0], ["---"] * len(rows[0]), *rows[1:]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _markdown(table: ScoreTable, decimals: int) -> str:
    header, body, average = _grid(table, _MARKDOWN, decimals)
    return f"{table.title}.\n\n" + markdown_rows([header, *body, average])


def _latex(table: ScoreTable, decimals: int) -> str:
    header, body, average = _grid(table, _LATEX, decimals, label=_latex_escape)
    rows = [" & ".join(row) + r" \\" for row in [header] + body + [average]]
    return "\n".join(
        [
            _comment(f"{table.title}."),
            f"\\begin{{tabular}}{{l{'c' * len(table.columns)}}}",
            r"\toprule",
            rows[0],
            r"\midrule",
            *rows[1:-1],
            r"\midrule",
            rows[-1],
            r"\bottomrule",
            r"\end{tabular}",
        ]
    )


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _grid(
    table: ScoreTable, symbols: _Symbols, decimals: int, label=str
) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, task rows and Average row of ``table`` as cell strings; ``label`` formats names."""
    body = [
        [label(task)] + [_cell(table, task, column, symbols, decimals) for column in table.columns]
        for task in table.tasks
    ]
    averages = [_reference_average(table, name) for name in table.references] + [table.average[a] for a in table.algos]
    average = ["Average"] + [_number(value, decimals, symbols) for value in averages]
    return ["Task"] + [label(column) for column in table.columns], body, average


def _reference_average(table: ScoreTable, name: str) -> float:
    """A reference column's mean over the tasks, NaN unless it has every task (the Average row's rule)."""
    scores = table.references[name]
    return float(np.mean([scores[task] for task in table.tasks])) if set(table.tasks) <= set(scores) else np.nan


def _cell(table: ScoreTable, task: str, algo: str, symbols: _Symbols, decimals: int) -> str:
    if algo in table.references:
        return _number(table.references[algo].get(task, np.nan), decimals, symbols)
    if (task, algo) not in table.cells.index:
        return symbols.empty
    cell = table.cells.loc[(task, algo)]
    n, seeds = int(cell["n"]), int(cell["seeds"])
    text = _number(cell["mean"], decimals, symbols) if n else "not reached"
    if n > 1:
        text += f" {symbols.pm} {cell['std']:.{decimals}f} ({cell['sem']:.{decimals}f})"
    if n < seeds:
        text += f" [{n} of {seeds} reached]"
    elif seeds < table.max_seeds:
        text += f" [n={seeds}]"
    return text + (symbols.dagger if cell["unfinished"] else "")


def _number(value: float, decimals: int, symbols: _Symbols) -> str:
    return symbols.empty if pd.isna(value) else f"{value:.{decimals}f}"


def _comment(text: str) -> str:
    return "\n".join("% " + line for line in text.splitlines())


def _notes(
    tables: list[ScoreTable], runs: list[Run], symbols: _Symbols, per_seed: pd.DataFrame, at_step: float | None
) -> str:
    notes = [
        f"Cells: n = {tables[0].max_seeds} seeds unless marked [n=k]; {symbols.empty} = no run. "
        "Average: mean over tasks of the cell means, only for algorithms with every task."
    ]
    if tables[0].references:
        names = ", ".join(tables[0].references)
        notes.append(f"{names}: reference scores given with --reference (not runs).")
    if any(table.kind == "reach" for table in tables):
        notes.append(
            "[k of n reached]: the mean is over the k seeds that reached the threshold; the others never did "
            "in the evaluations counted."
        )
    scored = set(per_seed[_KEYS].itertuples(index=False, name=None))
    labels = dataset_labels(run.dataset for run in runs)
    unscored = [r for r in runs if not r.metrics.empty and (r.algo, labels[r.dataset], r.seed) not in scored]
    if unscored:
        notes.append(f"Not in the tables, no evaluation up to step {at_step:,.0f}:")
        notes += [f"- {r.algo} / {r.dataset} seed {r.seed} ({_shown(r.path)})" for r in unscored]
    unfinished = open_runs(runs, at_step)
    if unfinished:
        stopped = "" if at_step is None else f", stopped before step {at_step:,.0f}"
        notes.append(f"{symbols.dagger} unfinished runs{stopped} (epochs completed/total):")
        notes += [
            f"- {r.algo} / {r.dataset} seed {r.seed}: {r.epochs_completed}/{r.epochs_total} ({_shown(r.path)})"
            for r in unfinished
        ]
    return "\n".join(notes)


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it lies below it (the same text in any checkout)."""
    try:
        return path.relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _csv(tables: list[ScoreTable]) -> str:
    frames = []
    for table in tables:
        cells = table.cells.reset_index()
        average = pd.DataFrame({"task": "Average", "algo": table.algos, "mean": table.average[table.algos].values})
        references = pd.DataFrame(
            [(task, name, score) for name, scores in table.references.items() for task, score in scores.items()]
            + [("Average", name, _reference_average(table, name)) for name in table.references],
            columns=["task", "algo", "mean"],
        )
        parts = [references, cells, average] if table.references else [cells, average]
        frames.append(pd.concat(parts, ignore_index=True).assign(kind=table.kind))
    tidy = pd.concat(frames, ignore_index=True)
    tidy["n"] = tidy["n"].astype("Int64")
    tidy["unfinished"] = tidy["unfinished"].astype("Int64")
    tidy["seeds"] = tidy["seeds"].astype("Int64")
    return tidy[["kind", "task", "algo", "mean", "std", "sem", "n", "seeds", "unfinished"]].to_csv(index=False)
