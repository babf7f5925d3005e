"""D4RL hdf5 layout: reader and writer (REFERENCE-datasets.md section 1).

File keys -> TransitionDataset fields: ``observations`` -> obs, ``actions``, ``rewards``,
``next_observations`` -> next_obs, ``terminals``, ``timeouts``, ``infos/qpos``, ``infos/qvel``,
``infos/collection_step`` (ours). ``metadata/*`` and other ``infos/*`` are ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import h5py
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
_FIELDS = {
    "observations": "obs",
    "actions": "actions",
    "rewards": "rewards",
    "next_observations": "next_obs",
    "terminals": "terminals",
    "timeouts": "timeouts",
    "infos/qpos": "qpos",
    "infos/qvel": "qvel",
    "infos/collection_step": "collection_step",
}
_REQUIRED = ("observations", "actions", "rewards", "terminals")
_RANKS = {
    "observations": 2,
    "actions": 2,
    "rewards": 1,
    "terminals": 1,
    "timeouts": 1,
    "next_observations": 2,
    "infos/qpos": 2,
    "infos/qvel": 2,
    "infos/collection_step": 1,
}
_D4RL_NAME = re.compile(
    r"^(hopper|halfcheetah|walker2d)[_-](random|medium|expert|medium[_-]replay|full[_-]replay|medium[_-]expert)"
    r"-(v\d+)$"
)


def read_d4rl(path: str | Path) -> TransitionDataset:
    """Read a D4RL-layout hdf5 file (official v0/v1/v2 files, or one written by :func:`write_d4rl`).

    ``(N, 1)`` rewards/terminals/timeouts are squeezed; float64 (replay) files become float32.
    ``metadata["env_id"]`` (gymnasium v5 id) and ``metadata["task"]`` (e.g. ``hopper-medium-v2``)
    are guessed from a D4RL file name (``hopper_medium-v2.hdf5`` or ``hopper-medium-v2.hdf5``);
    other names leave them absent. See :func:`d4rl_to_dataset` for missing ``next_observations``
    or ``timeouts``.

    Raises:
        DatasetNotFoundError: no such file.
        DatasetError: unreadable or truncated file; missing key (the message lists the keys that
            are there); wrong rank, length mismatch, NaN/inf, empty; obs dim unlike the task the
            file name announces. Every message names the file.
    """
    return read_layout(path, _read_hdf5, d4rl_to_dataset, _names_from_file)


def d4rl_to_dataset(
    arrays: dict[str, np.ndarray], source: str, metadata: dict[str, Any] | None = None
) -> TransitionDataset:
    """Build a TransitionDataset from D4RL arrays keyed by file key (``observations``, ...).

    - With ``next_observations``: rows are taken as they are.
    - Without it (v0 files): ``next_obs[i] = observations[i+1]`` inside an episode, and the last
      row of each episode is dropped, since ``observations[i+1]`` is there the next episode's
      reset state (D4RL ``qlearning_dataset`` keeps terminal rows with that wrong target; a
      dynamics model must not learn it). Each episode's new last row is marked as a timeout (its
      s' is a real, non-terminal state). A note in ``metadata["notes"]`` says so.
    - Without ``timeouts`` (old files): timeouts are all False, so episodes end only at terminals;
      a note says so.

    Raises:
        DatasetError: missing required key, wrong rank, length mismatch, non-0/1 flags, NaN/inf,
            empty result; each message names ``source`` and the field.
    """
    arrays = {key: squeeze_column(value) if _RANKS.get(key) == 1 else value for key, value in arrays.items()}
    require_keys(source, arrays, _REQUIRED)
    check_shapes(source, arrays, _RANKS)
    metadata = dict(metadata or {})
    notes = list(metadata.get("notes", []))
    fields = {field: arrays.get(key) for key, field in _FIELDS.items()}
    fields["terminals"] = as_flags(source, "terminals", fields["terminals"])
    if fields["timeouts"] is None:
        fields["timeouts"] = np.zeros_like(fields["terminals"])
        notes.append(
            "no 'timeouts' key (old D4RL file): episodes end only at terminals; time-limit boundaries are unknown"
        )
    fields["timeouts"] = as_flags(source, "timeouts", fields["timeouts"])
    if fields["next_obs"] is None:
        fields, note = _next_obs_from_successors(fields)
        notes.append(note)
    metadata["notes"] = notes
    return TransitionDataset(**fields, metadata=metadata, source=source)


def _next_obs_from_successors(fields: dict[str, np.ndarray | None]) -> tuple[dict[str, np.ndarray | None], str]:
    """next_obs[i] = obs[i+1] inside episodes; drops each episode's last row (see d4rl_to_dataset)."""
    ends = fields["terminals"] | fields["timeouts"]  # (N,)
    ends[-1] = True
    keep = ~ends  # rows whose successor is in the same episode
    rows = np.flatnonzero(keep)
    kept = {name: (None if value is None else value[rows]) for name, value in fields.items()}
    kept["next_obs"] = fields["obs"][rows + 1]
    kept["terminals"] = np.zeros(len(rows), dtype=bool)
    kept["timeouts"] = ends[rows + 1]
    dropped = int(ends.sum())
    note = (
        f"no 'next_observations' key: next_obs[i] = observations[i+1] inside an episode; the last row "
        f"of each of the {dropped} episodes was dropped ({int(fields['terminals'].sum())} terminal rows "
        f"among them) and each episode's new last row is marked as a timeout"
    )
    return kept, note


def write_d4rl(dataset: TransitionDataset, path: str | Path) -> Path:
    """Write ``dataset`` in the D4RL v2 layout, with ``next_observations``, ``timeouts``,
    ``infos/qpos``, ``infos/qvel`` and ``infos/collection_step`` (when present).

    :func:`read_d4rl` gives back equal arrays (lossless round trip); ``metadata`` is not stored
    (the reader takes ``task``/``env_id`` from a D4RL file name). The file is written to a
    temporary name and renamed, so a crash never leaves a half-written file at ``path``.

    Returns:
        The path written.

    Raises:
        DatasetError: the file cannot be written (e.g. missing folder), naming the path.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with h5py.File(tmp, "w") as file:
            for key, field in _FIELDS.items():
                value = getattr(dataset, field)
                if value is not None:
                    file.create_dataset(key, data=value)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DatasetError(f"{path}: cannot write D4RL file: {exc}") from exc
    return path


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    """The datasets named in ``_RANKS`` that the file holds, as NumPy arrays."""
    try:
        with h5py.File(path, "r") as file:
            keys: list[str] = []
            file.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
            listed = [key for key in keys if not key.startswith("metadata/")]
            require_keys(str(path), listed + ["metadata/*"] * (len(listed) < len(keys)), _REQUIRED)
            return {key: file[key][()] for key in _RANKS if key in listed}
    except OSError as exc:  # not hdf5, truncated, unreadable
        raise DatasetError(f"{path}: cannot read HDF5 file: {exc}") from exc


def _names_from_file(path: Path) -> tuple[dict[str, str], int | None]:
    """``({"env_id": "Hopper-v5", "task": "hopper-medium-v2"}, 11)`` (metadata, obs dim) from a D4RL
    file name, ``({}, None)`` for any other name."""
    match = _D4RL_NAME.match(path.stem.lower())
    if match is None:
        return {}, None
    env, kind, version = match.groups()
    env_id, obs_dim = MUJOCO_TASKS[env]
    return {"env_id": env_id, "task": f"{env}-{kind.replace('_', '-')}-{version}"}, obs_dim
