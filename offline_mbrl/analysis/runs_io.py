"""Run folders as analysis sees them (DESIGN section 7): each read through ``runs.RunFolder`` into a :class:`Run`,
many pooled over seeds, and their evaluations as one frame.

A run folder (``runs`` module docstring) holds ``config.yaml`` (resolved config: ``algo``, ``dataset``, ``task``,
``seed``, ``epochs``), ``metrics.csv`` (one row per completed epoch: ``epoch``, ``step``, ``eval/normalized_score``,
``eval/return_mean``, ...) and ``summary.json`` (``epochs_completed``, ``epochs_total``, ``finished``). A run is
unfinished when ``summary.json`` is missing or says ``finished: false``; its ``metrics.csv`` is read regardless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from ..errors import RunFolderError
from ..runs import METRICS_FILE, RunFolder

VALUE_COLUMNS = {
    "normalized": "eval/normalized_score",
    "return": "eval/return_mean",
    "model_error": "model/fresh_mse",
}
"""What a table or curve shows -> the ``metrics.csv`` column holding it (per-episode-normalized mean; ``model_error``:
an online run's model error on the real transitions collected since its previous fit, ADM paper Fig. 5)."""
SPARSE_VALUES = ("model_error",)
"""Values an epoch may lack (no fit of that epoch had fresh data, e.g. the first): those epochs are left out."""


@dataclass(frozen=True, eq=False)
class Run:
    """One training run (one seed) as read from its folder.

    ``dataset`` is the dataset spec, or for an online run (no dataset) its ``env_id``; its ``metrics`` ``step`` then
    counts environment steps. ``variant`` is the config-hash folder name (the seed folder's parent): runs of one
    algorithm on one dataset with different variants come from different configs and are never pooled as seeds.
    ``online``: the run trained on an environment, not a dataset (its ``step`` counts environment steps).
    ``metrics`` is ``metrics.csv`` sorted by epoch (zero rows if no epoch has completed yet) and
    ``epochs_completed`` its number of rows, the epochs evaluated. A run's ``summary.json`` counts only the
    epochs of its last checkpoint, which can be fewer: while the run writes an epoch, between checkpoints
    (``checkpoint_every`` > 1), after a stop before the next checkpoint, or while a finished run is extended
    (``--epochs`` raised); ``--resume`` recomputes those epochs.
    """

    path: Path
    algo: str
    dataset: str
    task: str | None
    variant: str
    seed: int
    online: bool
    epochs_completed: int
    epochs_total: int
    finished: bool
    metrics: pd.DataFrame


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run folders given directly or found below the given folders (any folder holding ``metrics.csv``).

    Returns:
        Sorted, de-duplicated folder paths.
    Raises:
        RunFolderError: a path does not exist, or no run folder is found under any of them.
    """
    found: set[Path] = set()
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.is_dir():
            raise RunFolderError(f"runs path '{path}' is not an existing folder")
        found.update(csv.parent.resolve() for csv in path.rglob(METRICS_FILE))
    if not found:
        raise RunFolderError(f"no run folder (one holding metrics.csv) under {[str(p) for p in paths]}")
    return sorted(found)


def read_run(path: str | Path) -> Run:
    """Read one run folder.

    Raises:
        RunFolderError: ``config.yaml`` or ``metrics.csv`` missing or unreadable, a required config key
            or metrics column missing, repeated or unordered epochs, NaN in ``step``, or a ``summary.json``
            that counts more completed epochs than ``metrics.csv`` holds (rows were lost).
    """
    folder = RunFolder(path)
    # summary.json first: a run appends its metrics row before it checkpoints and writes the summary, so read in
    # this order the summary never counts more epochs than metrics.csv holds, even while the run is writing them
    config, summary, metrics = folder.read_config(), folder.read_summary(), folder.read_metrics()
    saved = int(summary.get("epochs_completed", len(metrics)))
    if saved > len(metrics):
        raise RunFolderError(
            f"{folder.summary_file}: epochs_completed = {saved} but metrics.csv has {len(metrics)} rows"
        )
    return Run(
        path=folder.path,
        algo=algo_label(config),
        dataset=str(config["dataset"] or config.get("env_id") or ""),  # an online run: its environment
        task=config.get("task"),
        variant=folder.path.parent.name,
        seed=int(config["seed"]),
        online=not config["dataset"],
        epochs_completed=len(metrics),
        epochs_total=int(summary.get("epochs_total", config["epochs"])),
        finished=bool(summary.get("finished", False)),
        metrics=metrics,
    )


def algo_label(config: dict) -> str:
    """The algorithm label of a run's ``config.yaml``: ``algo``, with ``+<model_weights>`` when an online run weights
    its model fits (``admpo-on+pmac``, ADM Fig. 3's "+PMAC"), so that weighted and uniform runs are separate lines."""
    weights = config.get("model_weights", "uniform")
    return str(config["algo"]) + ("" if weights == "uniform" else f"+{weights}")


def read_runs(paths: Iterable[str | Path], labels: Sequence[str | None] | None = None) -> list[Run]:
    """Read every run folder under ``paths`` (see ``find_run_dirs``) and check that they can be pooled.

    Args:
        labels: one per path, or None: a label replaces the algorithm label (``Run.algo``) of every run found
            under its path, so that variants of one algorithm (two configs, a peer's code) stand side by side as
            separate columns and curves instead of being refused as a mix of configs.
    Raises:
        RunFolderError: as ``find_run_dirs``/``read_run``; ``labels`` not one per path, or an empty label; one
            folder found under two paths with different labels; two folders hold the same algo, dataset and
            seed; or one algo × dataset has runs from more than one config (variant).
    """
    paths = list(paths)
    labels = [None] * len(paths) if labels is None else list(labels)
    if len(labels) != len(paths) or "" in labels:
        raise RunFolderError(f"runs labels {labels}: need one non-empty label or None per path {paths}")
    label_of: dict[Path, str | None] = {}
    for path, label in zip(paths, labels):
        for folder in find_run_dirs([path]):
            if label_of.setdefault(folder, label) != label:
                raise RunFolderError(
                    f"run folder {folder} is under two runs paths labelled {label_of[folder]} and {label}"
                )
    runs = []
    for folder, label in sorted(label_of.items()):
        run = read_run(folder)
        runs.append(replace(run, algo=label) if label else run)
    seen: dict[tuple, Path] = {}
    variants: dict[tuple, set[str]] = {}
    for run in runs:
        key = (run.algo, run.dataset, run.seed)
        if key in seen:
            raise RunFolderError(
                f"two run folders for {run.algo} / {run.dataset} / seed {run.seed}: {seen[key]} and {run.path}; "
                f"if they are variants (two configs, two codes), label their paths apart (LABEL=PATH)"
            )
        seen[key] = run.path
        variants.setdefault((run.algo, run.dataset), set()).add(run.variant)
    for (algo, dataset), names in variants.items():
        if len(names) > 1:
            raise RunFolderError(
                f"{algo} / {dataset} has runs from {len(names)} configs {sorted(names)}; pass the folders of one "
                f"config so that only seeds are pooled, or label each config's folder apart (LABEL=PATH)"
            )
    return runs


def dataset_labels(specs: Iterable[str]) -> dict[str, str]:
    """Short row labels for dataset spec strings: the scheme prefix (``minari:``) dropped and a file path
    reduced to its stem (``/data/hopper-medium-v2.hdf5`` -> ``hopper-medium-v2``). Where two specs would
    get the same label, both keep their full spec.
    """
    specs = sorted(set(specs))
    short = {spec: _short_label(spec) for spec in specs}
    counts = pd.Series(list(short.values())).value_counts()
    return {spec: label if counts[label] == 1 else spec for spec, label in short.items()}


def evaluations(runs: list[Run], value: str = "normalized", at_step: float | None = None) -> pd.DataFrame:
    """All evaluations of all runs as one long frame; with ``at_step``, only those at ``step`` ≤ ``at_step``
    (environment steps online, SAC steps offline: every run on the same budget).

    Returns:
        Columns ``algo, dataset, task`` (the row label from ``dataset_labels``), ``seed, online, finished`` (of
        the run), ``epoch, step, score`` (the ``VALUE_COLUMNS[value]`` column), one row per run and
        completed epoch.
    Raises:
        RunFolderError: ``value`` unknown, ``runs`` empty, or a run's metrics lack that column or hold NaN in it.
    """
    if value not in VALUE_COLUMNS:
        raise RunFolderError(f"unknown value '{value}'; use one of {sorted(VALUE_COLUMNS)}")
    if not runs:
        raise RunFolderError("no runs to read evaluations from")
    column = VALUE_COLUMNS[value]
    labels = dataset_labels(run.dataset for run in runs)
    frames = []
    for run in runs:
        if column not in run.metrics.columns:
            raise RunFolderError(f"{run.path / 'metrics.csv'}: no column '{column}'")
        metrics = run.metrics.dropna(subset=[column]) if value in SPARSE_VALUES else run.metrics
        scores = metrics[column]
        if scores.isna().any():
            raise RunFolderError(
                f"{run.path / 'metrics.csv'}: '{column}' is empty at epochs "
                f"{run.metrics.loc[scores.isna(), 'epoch'].tolist()[:5]}"
            )
        frames.append(
            pd.DataFrame(
                {
                    "algo": run.algo,
                    "dataset": run.dataset,
                    "task": labels[run.dataset],
                    "seed": run.seed,
                    "online": run.online,
                    "finished": run.finished,
                    "epoch": metrics["epoch"],
                    "step": metrics["step"],
                    "score": scores.astype(float),
                }
            )
        )
    evals = pd.concat(frames, ignore_index=True)
    return evals if at_step is None else evals[evals["step"] <= at_step].reset_index(drop=True)


def _short_label(spec: str) -> str:
    spec = re.sub(r"^[A-Za-z0-9_]+:", "", spec)
    path = Path(spec)
    return path.stem if path.suffix in (".hdf5", ".h5", ".npz") else spec
