"""The run folder: its lock and the metrics logger (CSV + TensorBoard).

A run that is stopped loses at most the work since its last checkpoint: checkpoints, ``config.yaml`` and
``summary.json`` are written atomically (``persist``). One process at a time writes a run folder (:func:`run_lock`).
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import RunLockedError

LOCK_NAME = ".lock"


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
