"""Minari datasets: reader and writer (REFERENCE-datasets.md section 3), never touching the network.

Layout: one episode of T steps holds T + 1 observations, T actions/rewards/terminations/
truncations and ``infos``. Episodes are concatenated into one TransitionDataset with
``next_obs = observations[1:]``; terminations -> terminals, truncations -> timeouts; infos
``qpos``, ``qvel``, ``collection_step`` -> the optional fields (T rows, or T + 1 rows in the
DataCollector convention where ``infos[t]`` goes with ``observations[t]``; the first T are used).

Round trip: :func:`write_minari` stores every episode of ``dataset.episode_ends``. Only the
dataset's last episode can end with neither flag (data that stops mid-episode); it is written with
neither flag and read back the same way. On reading, any *other* episode whose last step has
neither flag is cut there too, so its last step is marked as a timeout and a note says so.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer

from ..errors import DatasetError, DatasetNotFoundError
from .dataset import TransitionDataset

_INFO_FIELDS = ("qpos", "qvel", "collection_step")
# Minari's id grammar `[namespace/]name-vN` restricted to ASCII path-safe segments: no '.', '..', empty segment,
# leading '/' or '~'; the version is required (every dataset this package reads or writes has one)
_DATASET_ID = re.compile(r"(?:[A-Za-z0-9_-]+/)*[A-Za-z0-9_-]+-v[0-9]+")


def datasets_root() -> Path:
    """The local Minari root: ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets`` (resolved, not created)."""
    root = os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets"
    return Path(root).expanduser().resolve()


def dataset_path(dataset_id: str) -> Path:
    """The folder of Minari dataset ``dataset_id``, checked to lie inside :func:`datasets_root`.

    Raises:
        DatasetError: ``dataset_id`` does not match ``[namespace/]name-vN`` (segments of letters, digits, ``_``
            and ``-``), or its folder resolves (through a symbolic link) outside the root.
    """
    if not isinstance(dataset_id, str) or not _DATASET_ID.fullmatch(dataset_id):
        raise DatasetError(
            f"minari:{dataset_id}: not a valid Minari dataset id; expected [namespace/]name-vN with "
            f"segments of letters, digits, '_' and '-' (e.g. offline_mbrl/hopper/medium-v0)"
        )
    root = datasets_root()
    path = (root / dataset_id).resolve()
    if not path.is_relative_to(root):
        raise DatasetError(f"minari:{dataset_id}: resolves to {path}, outside the Minari root {root}")
    return path


def read_minari(dataset_id: str) -> TransitionDataset:
    """Load the local Minari dataset ``dataset_id`` (``minari.load_dataset(id, download=False)``).

    Loading never builds or recovers the environment. ``metadata`` gets ``dataset_id``,
    ``env_id`` (from the eval env spec, else the collection env spec), ``env_kwargs`` (when the
    spec has any) and ``ref_min_score``/``ref_max_score`` (when stored; Minari's hosted ``mujoco/...``
    ids store none, and :func:`~.scores.score_reference` then uses the D4RL references of ``env_id``).

    Raises:
        DatasetError: an id outside the grammar or the Minari root (:func:`dataset_path`); nothing is read.
        DatasetNotFoundError: no such dataset under ``$MINARI_DATASETS_PATH`` (default
            ``~/.minari/datasets``); the message says how to create or download it.
        DatasetError: unreadable dataset; non-array (Dict/Tuple) observations or actions; an
            episode without exactly one more observation than actions; a termination or
            truncation before an episode's last step; an info field in some episodes only or with
            the wrong length; NaN/inf, ranks, lengths (TransitionDataset). Messages name
            ``minari:<id>``, the episode and the field.
    """
    source = f"minari:{dataset_id}"
    dataset_path(dataset_id)
    minari_dataset = _load_local(dataset_id, source)
    episodes = [_episode_fields(episode, source) for episode in _iterate(minari_dataset, source)]
    if not episodes:
        raise DatasetError(f"{source}: dataset is empty (0 episodes)")
    fields = {name: _concat_optional([ep[name] for ep in episodes], name, source) for name in episodes[0]}
    metadata = _metadata(minari_dataset)
    fields["timeouts"] = _close_unflagged_episodes(
        fields, [len(ep["rewards"]) for ep in episodes], source, metadata.setdefault("notes", [])
    )
    return TransitionDataset(**fields, metadata=metadata, source=source)


def write_minari(
    dataset: TransitionDataset,
    dataset_id: str,
    *,
    env_id: str,
    ref_min_score: float | None,
    ref_max_score: float | None,
    description: str | None = None,
    overwrite: bool = False,
    env_kwargs: dict | None = None,
    algorithm_name: str | None = None,
    author: str | None = None,
    author_email: str | None = None,
    code_permalink: str | None = None,
) -> None:
    """Write ``dataset`` as the local Minari dataset ``dataset_id`` (under ``$MINARI_DATASETS_PATH``).

    Uses ``minari.create_dataset_from_buffers`` with one ``EpisodeBuffer`` per episode of
    ``dataset.episode_ends`` (no DataCollector, so no jax). ``qpos``/``qvel``/``collection_step``
    go into each episode's ``infos`` (T rows); :func:`read_minari` gives back equal arrays.
    ``env_id`` (+ ``env_kwargs``) is stored as both collection and evaluation env spec; Minari
    builds that env once to read its spaces. The reference returns are stored only as a pair
    (Minari would otherwise roll out a random policy for 100 episodes to estimate the minimum).

    Raises:
        DatasetError: an id outside the grammar or the Minari root (:func:`dataset_path`; nothing is deleted
            then); the dataset exists and ``overwrite`` is False; ``env_id`` is not a
            registered gymnasium id; only one reference score given; ``next_obs[t] != obs[t+1]``
            inside an episode (Minari keeps one observation sequence per episode).
    """
    source = f"minari:{dataset_id}"
    path = dataset_path(dataset_id)
    if (ref_min_score is None) != (ref_max_score is None):
        raise DatasetError(
            f"{source}: give both ref_min_score and ref_max_score or neither (got {ref_min_score}, {ref_max_score})"
        )
    _check_one_obs_sequence(dataset, source)
    spec = _env_spec(env_id, env_kwargs, source)
    if path.exists():
        if not overwrite:
            raise DatasetError(
                f"{source}: a Minari dataset already exists at {path}; pass overwrite=True to replace it"
            )
        shutil.rmtree(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"`(code_permalink|author|author_email|algorithm_name|description)`"
            )
            minari.create_dataset_from_buffers(
                dataset_id,
                list(_episode_buffers(dataset)),
                env=spec,
                eval_env=spec,
                ref_min_score=ref_min_score,
                ref_max_score=ref_max_score,
                description=description,
                algorithm_name=algorithm_name,
                author=author,
                author_email=author_email,
                code_permalink=code_permalink,
            )
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # never leave a half-written dataset behind
        raise


def _load_local(dataset_id: str, source: str) -> minari.MinariDataset:
    """``minari.load_dataset(download=False)`` with project errors."""
    try:
        return minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError as exc:
        root = os.environ.get("MINARI_DATASETS_PATH", "unset, so ~/.minari/datasets")
        raise DatasetNotFoundError(
            f"{source}: no local Minari dataset with this id (MINARI_DATASETS_PATH: {root}); "
            f"create it with `offline-mbrl dataset make ...` or fetch a published one with "
            f"`minari download {dataset_id}`"
        ) from exc
    except (OSError, ValueError, KeyError, AssertionError) as exc:
        raise DatasetError(f"{source}: cannot read Minari dataset: {exc!r}") from exc


def _iterate(minari_dataset: minari.MinariDataset, source: str) -> Iterator:
    """Episodes of the dataset, with unreadable storage reported as DatasetError."""
    try:
        yield from minari_dataset.iterate_episodes()
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{source}: cannot read Minari episodes: {exc!r}") from exc


def _episode_fields(episode, source: str) -> dict[str, np.ndarray | None]:
    """One episode's rows as TransitionDataset fields; T = len(rewards)."""
    where = f"{source}: episode {episode.id}"
    for name in ("observations", "actions"):
        if not isinstance(getattr(episode, name), np.ndarray):
            raise DatasetError(
                f"{where}: field '{name}' is a {type(getattr(episode, name)).__name__}; "
                "only Box (array) observation and action spaces are supported"
            )
    steps = len(episode.actions)
    if len(episode.observations) != steps + 1:
        raise DatasetError(
            f"{where}: field 'observations' has {len(episode.observations)} rows, expected "
            f"{steps + 1} (one more than the {steps} actions)"
        )
    fields = {
        "obs": episode.observations[:-1],
        "next_obs": episode.observations[1:],
        "actions": episode.actions,
        "rewards": episode.rewards,
        "terminals": episode.terminations,
        "timeouts": episode.truncations,
    }
    infos = episode.infos or {}
    for name in _INFO_FIELDS:
        value = infos.get(name)
        if value is not None and len(value) not in (steps, steps + 1):
            raise DatasetError(f"{where}: field 'infos/{name}' has {len(value)} rows, expected {steps} or {steps + 1}")
        fields[name] = None if value is None else np.asarray(value)[:steps]
    return fields


def _concat_optional(parts: list[np.ndarray | None], name: str, source: str) -> np.ndarray | None:
    """Concatenate one field over episodes; an info field must be in every episode or in none."""
    missing = [i for i, part in enumerate(parts) if part is None]
    if len(missing) == len(parts):
        return None
    if missing:
        raise DatasetError(
            f"{source}: field 'infos/{name}' is missing from episode {missing[0]} "
            f"({len(missing)} of {len(parts)} episodes) but present in others"
        )
    return np.concatenate(parts)


def _close_unflagged_episodes(
    fields: dict[str, np.ndarray], lengths: list[int], source: str, notes: list[str]
) -> np.ndarray:
    """(N,) timeouts with each episode but the last cut at its last step (see module docstring).

    Raises:
        DatasetError: a termination or truncation before an episode's last step.
    """
    terminals = np.asarray(fields["terminals"], dtype=bool)
    timeouts = np.asarray(fields["timeouts"], dtype=bool).copy()
    lengths = np.asarray(lengths)
    last_rows = np.cumsum(lengths)[lengths > 0] - 1  # (E',) last row of each non-empty episode
    flagged = np.flatnonzero(terminals | timeouts)
    early = np.setdiff1d(flagged, last_rows)
    if early.size:
        episode = int(np.searchsorted(np.cumsum(lengths), early[0], side="right"))
        raise DatasetError(f"{source}: episode {episode} has a termination or truncation before its last step")
    unflagged = last_rows[:-1][~(terminals | timeouts)[last_rows[:-1]]]
    if unflagged.size:
        timeouts[unflagged] = True
        notes.append(
            f"{unflagged.size} episode(s) end with neither termination nor truncation before the dataset's "
            "last episode; their last step is marked as a timeout"
        )
    return timeouts


def _metadata(minari_dataset: minari.MinariDataset) -> dict:
    """dataset_id, env_id, env_kwargs and reference returns from Minari's metadata (no env built)."""
    stored = minari_dataset.storage.metadata
    metadata = {"dataset_id": minari_dataset.id}
    spec_json = stored.get("eval_env_spec") or stored.get("env_spec")  # EnvSpec JSON strings
    if spec_json:
        spec = json.loads(spec_json)
        metadata["env_id"] = spec["id"]
        if spec.get("kwargs"):
            metadata["env_kwargs"] = dict(spec["kwargs"])
    for key in ("ref_min_score", "ref_max_score"):
        if stored.get(key) is not None:
            metadata[key] = float(stored[key])
    return metadata


def _check_one_obs_sequence(dataset: TransitionDataset, source: str) -> None:
    """Minari keeps one observation sequence per episode: next_obs[t] must equal obs[t+1] inside it."""
    inside = ~dataset.episode_ends[:-1]  # (N-1,) row t and t+1 are in one episode
    differs = np.flatnonzero(inside & np.any(dataset.next_obs[:-1] != dataset.obs[1:], axis=1))
    if differs.size:
        raise DatasetError(
            f"{source}: field 'next_obs' row {differs[0]} differs from 'obs' row {differs[0] + 1} "
            f"inside one episode ({differs.size} rows in all); the Minari layout cannot store that"
        )


def _env_spec(env_id: str, env_kwargs: dict | None, source: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id`` with ``env_kwargs`` added (no env is built here)."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise DatasetError(f"{source}: env_id '{env_id}' is not a registered gymnasium id: {exc}") from exc
    return dataclasses.replace(spec, kwargs={**spec.kwargs, **(env_kwargs or {})})


def _episode_buffers(dataset: TransitionDataset) -> Iterator[EpisodeBuffer]:
    """One EpisodeBuffer per episode: T + 1 observations (obs rows, then the last next_obs)."""
    stops = np.flatnonzero(dataset.episode_ends) + 1
    for start, stop in zip(np.concatenate([[0], stops[:-1]]), stops):
        rows = slice(start, stop)
        infos = {name: getattr(dataset, name)[rows] for name in _INFO_FIELDS if getattr(dataset, name) is not None}
        yield EpisodeBuffer(
            observations=np.concatenate([dataset.obs[rows], dataset.next_obs[stop - 1 : stop]]),
            actions=dataset.actions[rows],
            rewards=dataset.rewards[rows],
            terminations=dataset.terminals[rows],
            truncations=dataset.timeouts[rows],
            infos=infos,
        )
