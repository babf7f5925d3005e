"""NeoRL npz reader (REFERENCE-datasets.md section 2), without the ``neorl`` package.

File keys -> TransitionDataset fields: ``obs``, ``next_obs``, ``action`` -> actions,
``reward`` -> rewards, ``done`` -> terminals; ``index`` gives the trajectory boundaries. The last
row of a trajectory that is not done becomes a timeout. NeoRL obs hold the x position first
(gym v3 with ``exclude_current_positions_from_observation=False``).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .dataset import (
    MUJOCO_TASKS,
    TransitionDataset,
    as_flags,
    check_shapes,
    read_layout,
    require_keys,
    squeeze_column,
)

# file key -> TransitionDataset field
_FIELDS = {"obs": "obs", "action": "actions", "reward": "rewards", "next_obs": "next_obs", "done": "terminals"}
_RANKS = {"obs": 2, "action": 2, "reward": 1, "next_obs": 2, "done": 1}
_REQUIRED = (*_RANKS, "index")
_NEORL_NAME = re.compile(r"^(halfcheetah|hopper|walker2d)-v3-(low|medium|high|expert)-\d+-(train|val)(-noise)?$")
# gymnasium v5 with the x position kept, as NeoRL's gym v3 envs (REFERENCE-datasets.md 2.3)
NEORL_ENV_KWARGS = {"exclude_current_positions_from_observation": False}


def read_neorl(path: str | Path) -> TransitionDataset:
    """Read a NeoRL npz file (e.g. ``Hopper-v3-low-1000-train-noise.npz``).

    ``index`` may hold trajectory END offsets (as in the files: last value == N) or START offsets
    (as the ``neorl`` package returns them: first value 0); see :func:`trajectory_starts`.
    From a NeoRL file name, ``metadata`` gets ``env_id`` (gymnasium v5 id), ``env_kwargs``
    (``exclude_current_positions_from_observation=False``) and ``task`` (``neorl-hopper-low``).

    Raises:
        DatasetNotFoundError: no such file.
        DatasetError: unreadable or truncated file; missing key (the message lists the keys that
            are there); wrong rank, length mismatch, NaN/inf, empty; bad ``index``; a done row
            inside a trajectory; obs dim unlike the task the file name announces. Every message
            names the file.
    """
    return read_layout(path, _read_npz, neorl_to_dataset, _names_from_file)


def neorl_to_dataset(
    arrays: dict[str, np.ndarray], source: str, metadata: dict[str, Any] | None = None
) -> TransitionDataset:
    """Build a TransitionDataset from NeoRL arrays keyed by file key (``obs``, ``action``, ...).

    ``done`` -> terminals; the last row of each trajectory that is not done -> timeout.

    Raises:
        DatasetError: missing key, wrong rank, length mismatch, bad ``index``, non-0/1 ``done``, a
            done row that is not the last row of its trajectory; each message names ``source``.
    """
    require_keys(source, arrays, _REQUIRED)
    arrays = {key: squeeze_column(value) if _RANKS.get(key) == 1 else value for key, value in arrays.items()}
    n = check_shapes(source, arrays, _RANKS)
    terminals = as_flags(source, "done", arrays["done"])
    starts = trajectory_starts(arrays["index"], n, source)
    last_rows = np.zeros(n, dtype=bool)  # (N,) last row of each trajectory
    last_rows[np.append(starts[1:] - 1, n - 1)] = True
    inside = np.flatnonzero(terminals & ~last_rows)
    if inside.size:
        raise DatasetError(
            f"{source}: field 'done' is set at row {inside[0]} ({inside.size} row(s) in all), "
            "which is not the last row of its trajectory according to 'index'"
        )
    fields = {field: arrays[key] for key, field in _FIELDS.items()}
    fields["terminals"] = terminals
    return TransitionDataset(**fields, timeouts=last_rows & ~terminals, metadata=dict(metadata or {}), source=source)


def trajectory_starts(index: np.ndarray, n: int, source: str) -> np.ndarray:
    """(E,) int64 start row of each trajectory, from a NeoRL ``index`` of either form.

    END offsets (the files; NeoRL utils.py inserts a 0 in front when loading): strictly
    increasing, first > 0, last == n. START offsets (what ``neorl`` returns): strictly
    increasing, first == 0, last < n. The two cannot be confused: an END form starts above 0, a
    START form ends below n.

    Raises:
        DatasetError: non-integer values, not strictly increasing, or neither form for ``n`` rows;
            the message names ``source``, the field and the values at fault.
    """
    index = squeeze_column(index)
    if index.ndim != 1 or index.size == 0:
        raise DatasetError(f"{source}: field 'index' must be a non-empty 1-D array, got shape {index.shape}")
    whole = np.isfinite(index) & (np.round(index) == index)
    if not whole.all():
        raise DatasetError(f"{source}: field 'index' must hold whole numbers, found {index[~whole][:3]}")
    offsets = index.astype(np.int64)
    if np.any(np.diff(offsets) <= 0):
        raise DatasetError(f"{source}: field 'index' must be strictly increasing (trajectory offsets)")
    if offsets[0] > 0 and offsets[-1] == n:
        return np.concatenate([[0], offsets[:-1]])
    if offsets[0] == 0 and offsets[-1] < n:
        return offsets
    raise DatasetError(
        f"{source}: field 'index' (first {offsets[0]}, last {offsets[-1]}) is neither end "
        f"offsets (first > 0, last == N = {n}) nor start offsets (first == 0, last < N)"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the npz file (all are needed)."""
    if not zipfile.is_zipfile(path):
        raise DatasetError(f"{path}: cannot read npz file: not a complete zip archive (truncated or another format)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # damaged member
        raise DatasetError(f"{path}: cannot read npz file: {exc}") from exc


def _names_from_file(path: Path) -> tuple[dict[str, Any], int | None]:
    """(metadata, obs dim) from a NeoRL file name, ``({}, None)`` for any other name."""
    match = _NEORL_NAME.match(path.stem.lower())
    if match is None:
        return {}, None
    env, level = match.group(1), match.group(2)
    env_id, obs_dim = MUJOCO_TASKS[env]
    metadata = {"env_id": env_id, "env_kwargs": dict(NEORL_ENV_KWARGS), "task": f"neorl-{env}-{level}"}
    return metadata, obs_dim + 1
