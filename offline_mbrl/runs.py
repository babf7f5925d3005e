"""Run folders: atomic checkpoints and text files, the run-folder lock, device parsing, RNG state capture, and
the metrics logger (CSV + TensorBoard).

A run that is stopped loses at most the work since its last checkpoint: checkpoints, ``config.yaml`` and
``summary.json`` are written to a temporary file and moved into place with ``os.replace`` (atomic on POSIX);
a failed write (disk full) removes the temporary file and names the target. Checkpoints are loaded with
``torch.load(weights_only=True)``. One process at a time writes a run folder (:func:`run_lock`).
"""

from __future__ import annotations

import csv
import os
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, RunLockedError, WriteError

LOCK_NAME = ".lock"


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _take_lock(path: Path) -> bool:
    """Create ``path`` holding this pid with O_EXCL; False if it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()}\n")
    return True


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` (this pid, created with O_EXCL) for the block; removed afterwards. A lock left by a
    dead process (a killed run) is taken over with a warning on stderr.

    Raises:
        RunLockedError: another live process holds the lock; the message names the folder and its pid.
    """
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    while not _take_lock(path):
        try:
            holder = int(path.read_text().strip() or -1)
        except (FileNotFoundError, ValueError):
            holder = -1  # removed meanwhile, or half-written by a process that died: retry / take over
        if holder > 0 and _pid_alive(holder):
            raise RunLockedError(
                f"{run_dir}: run folder is in use by process {holder} (lock file {path}); "
                f"wait for it to finish or stop it"
            )
        print(
            f"offline-mbrl: warning: {path}: taking over the stale lock of process {holder} (no longer running)",
            file=sys.stderr,
        )
        path.unlink(missing_ok=True)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


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


class MetricsLogger:
    """Appends one row per call to ``metrics.csv`` (and optionally TensorBoard) in ``run_dir``.

    The CSV header is fixed by the first row written; a resumed run keeps the existing file and,
    when given ``resume_after``, first drops rows whose ``key`` exceeds it (work done after the
    checkpoint that is being resumed), so the file stays continuous.
    """

    def __init__(
        self, run_dir: str | Path, tensorboard: bool = True, resume_after: int | None = None, key: str = "epoch"
    ) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fieldnames: list[str] | None = None
        if resume_after is not None and self.path.exists():
            self._truncate(resume_after, key)
        elif self.path.exists():
            self.path.unlink()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.path.parent))

    def _truncate(self, resume_after: int, key: str) -> None:
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            self.fieldnames = list(reader.fieldnames or [])
            rows = [row for row in reader if int(float(row[key])) <= resume_after]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def _rewrite_header(self, fieldnames: list[str]) -> None:
        rows = []
        if self.path.exists() and self.fieldnames:
            with self.path.open(newline="") as f:
                rows = list(csv.DictReader(f))
        self.fieldnames = fieldnames
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, row: dict[str, float], step: int) -> None:
        """Write ``row`` (scalars) to the CSV and, if enabled, to TensorBoard at ``step``."""
        row = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in row.items()}
        new_keys = [k for k in row if k not in (self.fieldnames or [])]
        if new_keys:  # first row, or a metric that appears later (e.g. losses after warm-up)
            self._rewrite_header((self.fieldnames or []) + new_keys)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fieldnames).writerow(row)
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and "/" in k:
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
