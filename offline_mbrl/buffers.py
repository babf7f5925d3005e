"""Fixed-capacity FIFO transition buffer held as preallocated torch tensors on one device.

Used as SAC's online replay buffer and as the model buffer of the offline loop (roll-outs are
added as whole batches, the oldest rows are overwritten first). Sampling is index arithmetic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import CheckpointError


class TensorBuffer:
    """FIFO ring buffer of named tensor fields.

    Args:
        capacity: maximum number of rows kept.
        fields: ``{name: (per_row_shape, dtype)}``, e.g. ``{"obs": ((D,), torch.float32)}``.
        device: where the storage lives (samples come out on it).
    """

    def __init__(self, capacity: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
                 device: str | torch.device = "cpu") -> None:
        if capacity <= 0:
            raise ValueError(f"TensorBuffer: capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.storage = {name: torch.zeros((self.capacity, *shape), dtype=dtype, device=self.device)
                        for name, (shape, dtype) in fields.items()}
        self.ptr = 0  # next row to write
        self.size = 0  # rows filled
        self.total_added = 0  # rows ever added (the write position, unwrapped)

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: Tensor) -> None:
        """Append a batch: every field as a tensor of shape ``(n, *per_row_shape)`` (same n)."""
        if set(batch) != set(self.storage):
            raise KeyError(f"TensorBuffer.add: expected fields {sorted(self.storage)}, got {sorted(batch)}")
        n = len(next(iter(batch.values())))
        if n > self.capacity:  # only the newest rows survive anyway
            batch = {k: v[-self.capacity:] for k, v in batch.items()}
            self.total_added += n - self.capacity
            n = self.capacity
        idx = (self.ptr + torch.arange(n, device=self.device)) % self.capacity
        for name, value in batch.items():
            self.storage[name][idx] = value.to(self.device, self.storage[name].dtype)
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self.total_added += n

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """``batch_size`` rows drawn uniformly with replacement: ``{name: (batch_size, ...)}``."""
        if self.size == 0:
            raise ValueError("TensorBuffer.sample: the buffer is empty")
        idx = torch.randint(0, self.size, (batch_size,), device=self.device, generator=generator)
        return {name: value[idx] for name, value in self.storage.items()}

    def ordered(self) -> dict[str, Tensor]:
        """All rows, oldest first: ``{name: (size, ...)}``."""
        start = self.ptr if self.size == self.capacity else 0
        idx = (start + torch.arange(self.size, device=self.device)) % self.capacity
        return {name: value[idx] for name, value in self.storage.items()}

    def state_dict(self) -> dict:
        """Filled rows (oldest first) and counters; loadable with ``torch.load(weights_only=True)``."""
        return {"rows": self.ordered(), "total_added": self.total_added, "capacity": self.capacity}

    def load_state_dict(self, state: dict) -> None:
        rows = len(next(iter(state["rows"].values())))
        if rows > self.capacity or set(state["rows"]) != set(self.storage):
            raise CheckpointError(f"TensorBuffer: checkpoint has {rows} rows of fields {sorted(state['rows'])}, "
                                  f"buffer holds {self.capacity} rows of {sorted(self.storage)}")
        self.ptr = self.size = 0
        self.add(**state["rows"])
        self.total_added = state["total_added"]
