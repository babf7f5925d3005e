"""Normalized scores: 100 · (R − R_min) / (R_max − R_min) (D4RL ``get_normalized_score`` × 100).

Reference returns (REFERENCE-datasets.md):
- D4RL (1.4; d4rl/infos.py, the ``{env}-random-v0`` values copied into every v0/v1/v2 dataset kind).
- NeoRL (2.3; random and expert returns, HalfCheetah −298/12284, Hopper 5/3294, Walker2d 1/5143).
- Minari and our collected datasets: the dataset's own ``ref_min_score``/``ref_max_score``.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ScoreError
from .dataset import TransitionDataset

D4RL_REF_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}
D4RL_KINDS = ("random", "medium", "expert", "medium-replay", "full-replay", "medium-expert")
NEORL_REF_SCORES = {
    "hopper": (5.0, 3294.0),
    "halfcheetah": (-298.0, 12284.0),
    "walker2d": (1.0, 5143.0),
}
NEORL_LEVELS = ("low", "medium", "high")

# task name without version suffix -> (R_min, R_max)
_TASKS = {
    **{f"{env}-{kind}": refs for env, refs in D4RL_REF_SCORES.items() for kind in D4RL_KINDS},
    **{f"neorl-{env}-{level}": refs for env, refs in NEORL_REF_SCORES.items() for level in NEORL_LEVELS},
}
_D4RL_VERSION = re.compile(r"-v[012]$")

TaskOrDataset = str | TransitionDataset | tuple[float, float]


def known_tasks() -> list[str]:
    """Every task name with a reference (D4RL names may also end in -v0, -v1 or -v2)."""
    return sorted(_TASKS)


def reference_scores(task_or_dataset: TaskOrDataset) -> tuple[float, float]:
    """``(R_min, R_max)``, the random and expert reference returns.

    Accepts a task name (``hopper-medium-v2``, ``hopper-medium``, ``hopper_medium-v2``,
    ``neorl-hopper-low``; case-insensitive), a TransitionDataset (its ``ref_min_score``/
    ``ref_max_score`` metadata, else its ``task``) or an ``(R_min, R_max)`` pair.

    Raises:
        ScoreError: unknown task (the message lists the known ones); a dataset with neither
            reference returns nor a known task; a pair that is not two finite numbers with
            R_max > R_min.
    """
    if isinstance(task_or_dataset, TransitionDataset):
        return _dataset_refs(task_or_dataset)
    if isinstance(task_or_dataset, str):
        return _task_refs(task_or_dataset)
    return _checked_pair(task_or_dataset, "reference pair")


def normalized_score(task_or_dataset: TaskOrDataset, returns: float | np.ndarray) -> float | np.ndarray:
    """100 · (R − R_min) / (R_max − R_min), elementwise over ``returns`` (any shape).

    Source: D4RL ``get_normalized_score`` (0–1) times 100, as papers report it.

    Returns:
        float64 array of the shape of ``returns`` (a NumPy float for a scalar).

    Raises:
        ScoreError: see :func:`reference_scores`.
    """
    low, high = reference_scores(task_or_dataset)
    return (100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low))[()]


def normalize_std(task_or_dataset: TaskOrDataset, std: float | np.ndarray) -> float | np.ndarray:
    """A standard deviation of returns in normalized-score units: std · 100 / (R_max − R_min).

    A spread is only scaled, never shifted by R_min (STYLE.md "never normalize a std with the offset").

    Raises:
        ScoreError: see :func:`reference_scores`.
    """
    low, high = reference_scores(task_or_dataset)
    return (np.asarray(std, dtype=np.float64) * 100.0 / (high - low))[()]


def _task_refs(task: str) -> tuple[float, float]:
    name = task.strip().lower().replace("_", "-")
    if not name.startswith("neorl-"):
        name = _D4RL_VERSION.sub("", name)
    refs = _TASKS.get(name)
    if refs is None:
        raise ScoreError(f"no normalization reference for task '{task}'; known tasks: {', '.join(known_tasks())} "
                         "(D4RL names may end in -v0, -v1 or -v2)")
    return refs


def _dataset_refs(dataset: TransitionDataset) -> tuple[float, float]:
    meta = dataset.metadata
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        return _checked_pair((meta["ref_min_score"], meta["ref_max_score"]), f"{dataset.source}: metadata ref scores")
    if meta.get("task"):
        return _task_refs(meta["task"])
    raise ScoreError(f"{dataset.source}: no normalization reference: metadata has neither "
                     "'ref_min_score'/'ref_max_score' nor a 'task'")


def _checked_pair(pair, what: str) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in pair)
    except (TypeError, ValueError) as exc:
        raise ScoreError(f"{what}: expected (R_min, R_max), got {pair!r}") from exc
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ScoreError(f"{what}: need finite R_min < R_max, got ({low}, {high})")
    return low, high
