"""Normalized scores: 100 · (R − R_min) / (R_max − R_min) (D4RL ``get_normalized_score`` × 100).

Reference returns (REFERENCE-datasets.md):
- D4RL (1.4; d4rl/infos.py, the ``{env}-random-v0`` values copied into every v0/v1/v2 dataset kind).
- NeoRL (2.3; random and expert returns, HalfCheetah −298/12284, Hopper 5/3294, Walker2d 1/5143).
- Minari and our collected datasets: the dataset's own ``ref_min_score``/``ref_max_score``.
- A dataset without either (Minari's hosted ``mujoco/{hopper,walker2d,halfcheetah}/*-v0`` carry none): the D4RL
  references of its environment when its ``env_id`` is a gymnasium Hopper/Walker2d/HalfCheetah id (any version).
  They are the returns of D4RL's random and expert policies in the gym v2 envs, so on v5 data they are a shared
  scale rather than an exact 0-100 range (REFERENCE-datasets.md 4.2: v5 pays the healthy reward only while
  healthy; Walker2d-v5's foot friction differs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
_GYM_ID = re.compile(r"^(\w+)-v\d+$")  # gymnasium id: name, version


@dataclass(frozen=True)
class ScoreReference:
    """The random (``low``) and expert (``high``) reference returns and where they come from.

    ``source`` is ``"dataset"`` (the dataset's ``ref_min_score``/``ref_max_score``), ``"task"`` (the published
    references of a D4RL or NeoRL task name), ``"d4rl:<env>"`` (D4RL's references for the dataset's environment,
    because the dataset has none) or ``"pair"`` (given as numbers). ``label`` says the same in words.
    """

    low: float
    high: float
    source: str
    label: str

    def describe(self) -> str:
        """One line for people, e.g.
        ``D4RL hopper (dataset has none; env Hopper-v5): random -20.272305, expert 3234.3``."""
        return f"{self.label}: random {self.low}, expert {self.high}"


TaskOrDataset = str | TransitionDataset | tuple[float, float] | ScoreReference


def known_tasks() -> list[str]:
    """Every task name with a reference (D4RL names may also end in -v0, -v1 or -v2)."""
    return sorted(_TASKS)


def score_reference(task_or_dataset: TaskOrDataset) -> ScoreReference:
    """The reference returns for a task or dataset, with their source.

    Accepts a task name (``hopper-medium-v2``, ``hopper-medium``, ``hopper_medium-v2``, ``neorl-hopper-low``;
    case-insensitive), a TransitionDataset, an ``(R_min, R_max)`` pair or a ScoreReference (returned as is).
    A dataset uses, in this order: its ``ref_min_score``/``ref_max_score`` metadata, its ``task``, the D4RL
    references of its ``env_id`` (``Hopper-v5`` -> D4RL hopper; see the module docstring).

    Raises:
        ScoreError: unknown task (the message lists the known ones); a dataset with neither reference returns,
            nor a task, nor an env with a D4RL counterpart; a pair that is not two finite numbers with
            R_max > R_min.
    """
    if isinstance(task_or_dataset, ScoreReference):
        return task_or_dataset
    if isinstance(task_or_dataset, TransitionDataset):
        return _dataset_refs(task_or_dataset)
    if isinstance(task_or_dataset, str):
        return ScoreReference(*_task_refs(task_or_dataset), "task", f"task {task_or_dataset}")
    return ScoreReference(*_checked_pair(task_or_dataset, "reference pair"), "pair", "given pair")


def reference_scores(task_or_dataset: TaskOrDataset) -> tuple[float, float]:
    """``(R_min, R_max)``, the random and expert reference returns of :func:`score_reference`.

    Raises:
        ScoreError: see :func:`score_reference`.
    """
    ref = score_reference(task_or_dataset)
    return ref.low, ref.high


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
        raise ScoreError(
            f"no normalization reference for task '{task}'; known tasks: {', '.join(known_tasks())} "
            "(D4RL names may end in -v0, -v1 or -v2)"
        )
    return refs


def _dataset_refs(dataset: TransitionDataset) -> ScoreReference:
    meta = dataset.metadata
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        pair = _checked_pair((meta["ref_min_score"], meta["ref_max_score"]), f"{dataset.source}: metadata ref scores")
        return ScoreReference(*pair, "dataset", "dataset metadata (ref_min_score/ref_max_score)")
    if meta.get("task"):
        return ScoreReference(*_task_refs(meta["task"]), "task", f"task {meta['task']}")
    env = d4rl_env(meta.get("env_id"))
    if env is None:
        raise ScoreError(
            f"{dataset.source}: no normalization reference: metadata has neither "
            f"'ref_min_score'/'ref_max_score' nor a 'task', and its env_id {meta.get('env_id')!r} has no "
            f"D4RL counterpart (known: Hopper, Walker2d, HalfCheetah, any version)"
        )
    return ScoreReference(*D4RL_REF_SCORES[env], f"d4rl:{env}", f"D4RL {env} (dataset has none; env {meta['env_id']})")


def d4rl_env(env_id: str | None) -> str | None:
    """The D4RL environment (``hopper``, ``walker2d``, ``halfcheetah``) of a gymnasium id such as ``Hopper-v5``
    (case-insensitive, any version); None for any other id or None."""
    found = _GYM_ID.match(env_id or "")
    name = found.group(1).lower() if found else None
    return name if name in D4RL_REF_SCORES else None


def _checked_pair(pair, what: str) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in pair)
    except (TypeError, ValueError) as exc:
        raise ScoreError(f"{what}: expected (R_min, R_max), got {pair!r}") from exc
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ScoreError(f"{what}: need finite R_min < R_max, got ({low}, {high})")
    return low, high
