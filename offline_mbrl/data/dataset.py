"""TransitionDataset: validated flat transition arrays with episode boundaries (DESIGN section 3),
and the validation helpers every reader shares.

Every reader (D4RL hdf5, NeoRL npz, Minari) and the collector return this one type. Rows are in
collection order; an episode ends at a row whose ``terminal`` or ``timeout`` flag is set, or at the
last row of the dataset (data that stops mid-episode).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError, DatasetNotFoundError

# Gym-MuJoCo locomotion tasks shared by D4RL and NeoRL: lower-case name -> (gymnasium id, obs dim
# without the x position). REFERENCE-datasets.md 1.2 and 4.1; NeoRL obs hold x too (2.3).
MUJOCO_TASKS = {
    "hopper": ("Hopper-v5", 11),
    "halfcheetah": ("HalfCheetah-v5", 17),
    "walker2d": ("Walker2d-v5", 17),
}

#: largest magnitude a dataset value or a model output may have: beyond it float32 training overflows (squares,
#: variances) long before a real MuJoCo state or reward gets near it
MAX_ABS_VALUE = 1e6
_FLOAT_FIELDS = ("obs", "actions", "rewards", "next_obs")
_OPTIONAL_FLOAT_FIELDS = ("qpos", "qvel")
_RANKS = {
    "obs": 2,
    "actions": 2,
    "rewards": 1,
    "next_obs": 2,
    "terminals": 1,
    "timeouts": 1,
    "qpos": 2,
    "qvel": 2,
    "collection_step": 1,
}


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path after checking that it is an existing file.

    Raises:
        DatasetNotFoundError: the path does not exist or is not a regular file.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: dataset file not found")
    return path


def require_keys(source: str, available: Iterable[str], required: Iterable[str]) -> None:
    """Check that every ``required`` key is in ``available``.

    Raises:
        DatasetError: naming ``source``, the first missing key and every key that is there.
    """
    available = sorted(available)
    for key in required:
        if key not in available:
            raise DatasetError(f"{source}: missing key '{key}'; keys present: {available}")


def squeeze_column(value: np.ndarray) -> np.ndarray:
    """(N, 1) -> (N,); any other shape is returned unchanged (rank errors are reported by
    :func:`check_shapes`). D4RL rewards/terminals and NeoRL reward/done may be stored (N, 1)."""
    value = np.asarray(value)
    return value[:, 0] if value.ndim == 2 and value.shape[1] == 1 else value


def check_shapes(source: str, arrays: Mapping[str, np.ndarray | None], ranks: Mapping[str, int]) -> int:
    """Check ranks and row counts of named arrays before any row arithmetic is done on them.

    ``ranks`` maps each name to its rank; its first name is the reference for the row count.
    Names absent from ``arrays`` (or mapped to None) are optional and skipped.

    Returns:
        N, the number of rows.

    Raises:
        DatasetError: wrong rank, zero rows, or a row count that differs from the reference's;
            the message names ``source`` and the field.
    """
    present = {name: np.asarray(arrays[name]) for name in ranks if arrays.get(name) is not None}
    for name, value in present.items():
        if value.ndim != ranks[name]:
            raise DatasetError(f"{source}: field '{name}' must have rank {ranks[name]}, got shape {value.shape}")
    reference = next(iter(ranks))
    n = len(present[reference])
    if n == 0:
        raise DatasetError(f"{source}: dataset is empty (field '{reference}' has 0 rows)")
    for name, value in present.items():
        if len(value) != n:
            raise DatasetError(
                f"{source}: length mismatch: field '{name}' has {len(value)} rows, field '{reference}' has {n}"
            )
    return n


def as_flags(source: str, name: str, value: np.ndarray) -> np.ndarray:
    """Episode flags as a contiguous bool array (booleans or 0/1 numbers accepted).

    Raises:
        DatasetError: a value other than 0/1, naming ``source`` and the field.
    """
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{source}: field '{name}' must hold booleans or 0/1 numbers, got dtype {arr.dtype}")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise DatasetError(
                f"{source}: field '{name}' must hold only 0/1 or booleans, found values {np.unique(arr)[:5].tolist()}"
            )
        arr = arr.astype(bool)
    return np.ascontiguousarray(arr)


def read_layout(
    path: str | Path,
    read_arrays: Callable[[Path], dict[str, np.ndarray]],
    to_dataset: Callable[..., TransitionDataset],
    names_from_file: Callable[[Path], tuple[dict[str, Any], int | None]],
) -> TransitionDataset:
    """The steps every file reader shares: check the file exists, read its raw arrays, build the
    dataset with the metadata its file name gives (``task``, ``env_id``, ...), and check the obs dim
    that name announces.

    Raises:
        DatasetNotFoundError: no such file.
        DatasetError: whatever ``read_arrays``/``to_dataset`` raise, or an obs dim unlike the one
            of the task named by the file (the message names the file, the task and both dims).
    """
    path = require_file(path)
    metadata, obs_dim = names_from_file(path)
    dataset = to_dataset(read_arrays(path), source=str(path), metadata=metadata)
    if obs_dim is not None and dataset.obs_dim != obs_dim:
        raise DatasetError(
            f"{path}: file name says task '{metadata['task']}' (obs dim {obs_dim}), "
            f"but field 'obs' has dim {dataset.obs_dim}"
        )
    return dataset


@dataclass(frozen=True, eq=False)
class TransitionDataset:
    """Flat offline-RL transitions ``(s, a, r, s', terminal, timeout)``, validated on construction.

    Shapes (N transitions, D = obs_dim, A = action_dim):
        obs (N, D) float32, actions (N, A) float32, rewards (N,) float32, next_obs (N, D) float32,
        terminals (N,) bool (the environment ended the episode: s' is absorbing),
        timeouts (N,) bool (the time limit cut the episode: s' is a real, non-terminal state),
        qpos (N, nq) / qvel (N, nv) float32 or None: simulator state *before* the action,
        collection_step (N,) int64 or None: environment step at which a replay row was collected.

    ``metadata`` holds what the source knew: ``env_id`` (gymnasium id for evaluation),
    ``ref_min_score``/``ref_max_score`` (normalization returns), ``dataset_id``, and ``notes``
    (a list of strings the summary prints, e.g. "file has no timeouts"). ``source`` names the file.

    Raises:
        DatasetError: empty dataset, wrong rank, length mismatch between fields, obs/next_obs dim
            mismatch, a non-numeric dtype, NaN/inf or a magnitude above ``MAX_ABS_VALUE`` in any float
            field. The message names ``source``, the field and the problem. Float fields are cast to
            float32 (D4RL replay files are float64); nothing else is converted, dropped or repaired.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    qpos: np.ndarray | None = None
    qvel: np.ndarray | None = None
    collection_step: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        for name in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS + ("collection_step",):
            value = getattr(self, name)
            if value is not None and np.asarray(value).dtype.kind not in "biuf":
                raise DatasetError(
                    f"{self.source}: field '{name}' must be numeric, got dtype {np.asarray(value).dtype}"
                )
        for name in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, np.ascontiguousarray(value, dtype=np.float32))
        for name in ("terminals", "timeouts"):
            object.__setattr__(self, name, as_flags(self.source, name, getattr(self, name)))
        if self.collection_step is not None:
            object.__setattr__(self, "collection_step", np.ascontiguousarray(self.collection_step, dtype=np.int64))
        self._validate()

    def _validate(self) -> None:
        check_shapes(self.source, {name: getattr(self, name) for name in _RANKS}, _RANKS)
        if self.next_obs.shape[1] != self.obs.shape[1]:
            raise DatasetError(
                f"{self.source}: field 'next_obs' has dim {self.next_obs.shape[1]}, "
                f"field 'obs' has dim {self.obs.shape[1]}"
            )
        for name in _FLOAT_FIELDS + _OPTIONAL_FLOAT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            if bad:
                raise DatasetError(f"{self.source}: field '{name}' holds {bad} NaN/inf value(s)")
            huge = int(np.count_nonzero(np.abs(value) > MAX_ABS_VALUE))
            if huge:
                raise DatasetError(
                    f"{self.source}: field '{name}' holds {huge} value(s) of magnitude above "
                    f"{MAX_ABS_VALUE:g} (largest {float(np.abs(value).max()):g}); rescale or clean it"
                )

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.obs)

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    # ------------------------------------------------------------------ episodes
    @property
    def episode_ends(self) -> np.ndarray:
        """(N,) bool: row i is the last of its episode (terminal, timeout, or last row of the data)."""
        ends = self.terminals | self.timeouts
        ends = ends.copy()
        ends[-1] = True
        return ends

    @property
    def episode_starts(self) -> np.ndarray:
        """(E,) int64: index of the first row of each episode, in order."""
        ends = np.flatnonzero(self.episode_ends)
        return np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)

    @property
    def episode_ids(self) -> np.ndarray:
        """(N,) int64: episode index of every row (0 for the first episode)."""
        ends = self.episode_ends.astype(np.int64)
        return np.concatenate([[0], np.cumsum(ends[:-1])]).astype(np.int64)

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ends.sum())

    def episode_returns(self) -> np.ndarray:
        """(E,) float64: undiscounted return of each episode (sum of its rewards)."""
        return np.bincount(self.episode_ids, weights=self.rewards.astype(np.float64), minlength=self.num_episodes)

    def episode_lengths(self) -> np.ndarray:
        """(E,) int64: number of transitions of each episode."""
        return np.bincount(self.episode_ids, minlength=self.num_episodes).astype(np.int64)

    # ------------------------------------------------------------------ statistics
    def normalization_stats(self, eps: float = 1e-12) -> dict[str, np.ndarray]:
        """Per-dimension mean/std of obs and actions (float32), std below ``eps`` set to 1.

        Returns ``{"obs_mean": (D,), "obs_std": (D,), "action_mean": (A,), "action_std": (A,)}``.
        """
        stats = {}
        for key, arr in (("obs", self.obs), ("action", self.actions)):
            mean = arr.mean(axis=0, dtype=np.float64)
            std = arr.std(axis=0, dtype=np.float64)
            std = np.where(std < eps, 1.0, std)
            stats[f"{key}_mean"] = mean.astype(np.float32)
            stats[f"{key}_std"] = std.astype(np.float32)
        return stats

    def summary(self) -> dict[str, Any]:
        """Summary statistics: sizes, dims, episode count, return mean/min/max, flags, env id, task, notes."""
        returns = self.episode_returns()
        lengths = self.episode_lengths()
        return {
            "source": self.source,
            "transitions": len(self),
            "episodes": self.num_episodes,
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "terminals": int(self.terminals.sum()),
            "timeouts": int(self.timeouts.sum()),
            "return_mean": float(returns.mean()),
            "return_min": float(returns.min()),
            "return_max": float(returns.max()),
            "length_mean": float(lengths.mean()),
            "has_sim_state": self.qpos is not None,
            "has_collection_step": self.collection_step is not None,
            "env_id": self.metadata.get("env_id"),
            "task": self.metadata.get("task"),
            "notes": list(self.metadata.get("notes", [])),
        }

    # ------------------------------------------------------------------ slicing
    def subset(self, index: np.ndarray | slice) -> TransitionDataset:
        """Rows ``index`` as a new dataset (same metadata). Use whole episodes to keep boundaries."""
        kwargs = {name: (None if getattr(self, name) is None else getattr(self, name)[index]) for name in _RANKS}
        return replace(self, **kwargs)

    @staticmethod
    def concatenate(parts: list[TransitionDataset], source: str = "<concatenated>") -> TransitionDataset:
        """Concatenate datasets row-wise (e.g. medium + expert). Optional fields are kept only if
        every part has them. Metadata is taken from the first part."""
        if not parts:
            raise DatasetError(f"{source}: nothing to concatenate")
        kwargs: dict[str, Any] = {}
        for name in _RANKS:
            values = [getattr(p, name) for p in parts]
            kwargs[name] = None if any(v is None for v in values) else np.concatenate(values)
        for p in parts[:-1]:
            if not (p.terminals[-1] or p.timeouts[-1]):
                raise DatasetError(
                    f"{p.source}: last row is neither terminal nor timeout; concatenating "
                    "would merge its unfinished episode with the next part"
                )
        return TransitionDataset(**kwargs, metadata=dict(parts[0].metadata), source=source)
