"""Persistence, the bottom floor every layer may use: atomic writes (checkpoints and text files), checkpoint loading
(``weights_only=True``), output-path and device checks, RNG state capture and a scoped seeding helper.

A file written here is written to a temporary file and moved into place with ``os.replace`` (atomic on POSIX), so a
stopped process never leaves a half-written file; a failed write (disk full) removes the temporary file and names the
target.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, WriteError


def _write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` then ``os.replace(tmp, path)``; on any OSError the temporary file is removed.

    Raises:
        WriteError: the folder cannot be made, the write failed (e.g. disk full) or ``path`` is a directory;
            the message names ``path`` and the OS error.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"{path}: cannot write ({exc.strerror or exc}); nothing was replaced") from exc


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` through ``path.tmp`` + ``os.replace``: never a half-written file.

    Raises:
        WriteError: the write failed (disk full, ``path`` is a directory, ...); ``path.tmp`` is removed.
    """
    _write_atomic(path, lambda tmp: torch.save(obj, tmp))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through ``path.tmp`` + ``os.replace`` (``config.yaml``, ``summary.json``).

    Raises:
        WriteError: as :func:`save_atomic`.
    """
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def check_output_file(path: str | Path, flag: str) -> Path:
    """Check, before any work, that ``path`` can be written as a file: not an existing directory, and no
    existing file where one of its parent folders should be.

    Raises:
        ConfigError: naming ``flag`` and the path.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory; give a file path")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise ConfigError(f"{flag} {path}: {blocking} is a file, not a folder")
    return path


def parse_device(text: str, flag: str = "--device") -> torch.device:
    """``torch.device(text)``, checked to be usable here (CUDA/MPS present, index in range).

    Raises:
        ConfigError: naming ``flag``: torch rejects the string, or the device is not available.
    """
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise ConfigError(f"{flag} {text!r}: {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{flag} {text!r}: CUDA is not available on this machine (use --device cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"{flag} {text!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{flag} {text!r}: MPS is not available on this machine (use --device cpu)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{flag} {text!r}: unsupported device type; use cpu, cuda or cuda:<index>")
    return device


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; CheckpointError names the file on failure."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or unsafe content
        raise CheckpointError(f"{path}: cannot load checkpoint ({type(exc).__name__}: {exc})") from exc


def rng_state(device: torch.device | str = "cpu") -> dict:
    """Python, NumPy (legacy global), torch CPU and, for a CUDA ``device``, CUDA RNG states as tensors
    (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": np_state[2],
        "python": torch.tensor(random.getstate()[1], dtype=torch.int64),
        "python_pos": random.getstate()[2] if random.getstate()[2] is not None else -1,
    }
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _rng_devices(device: torch.device) -> list[int]:
    """Device indices whose RNG ``fork_rng`` must save/restore for ``device`` (none for CPU)."""
    if device.type == "cpu":
        return []
    index = device.index
    return [torch.get_device_module(device.type).current_device() if index is None else index]


def derived_seed(*key: int) -> int:
    """A deterministic 32-bit seed for the random stream named by ``key`` (e.g. ``(run_seed, fit_index, phase)``):
    ``numpy.random.SeedSequence(key)``'s first state word. Keys that differ anywhere give unrelated streams, unlike
    ``seed + i``, where run seed 1's first stream is run seed 0's second.

    Raises:
        ValueError: a negative key entry (``SeedSequence``'s own check).
    """
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block with torch's CPU and ``device`` RNGs seeded by ``seed``; the caller's states are restored
    afterwards (``torch.random.fork_rng``), so a seeded computation never shifts the caller's random stream."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=_rng_devices(device), device_type=device.type):
        torch.manual_seed(seed)
        yield


def set_rng_state(state: dict, device: torch.device | str = "cpu") -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(
        ("MT19937", state["numpy_keys"].cpu().numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0)
    )
    pos = state["python_pos"]
    random.setstate((3, tuple(int(v) for v in state["python"].tolist()), None if pos == -1 else pos))
    if "cuda" in state and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
