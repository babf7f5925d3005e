"""Fixed-capacity FIFO transition buffer held as preallocated torch tensors on one device.

Used as SAC's online replay buffer and as the model buffer of the offline loop (roll-outs are
added as whole batches, the oldest rows are overwritten first). Sampling is index arithmetic.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import CheckpointError, DivergenceError


class TensorBuffer:
    """FIFO ring buffer of named tensor fields.

    Args:
        capacity: maximum number of rows kept.
        fields: ``{name: (per_row_shape, dtype)}``, e.g. ``{"obs": ((D,), torch.float32)}``.
        device: where the storage lives (samples come out on it).
    """

    def __init__(
        self, capacity: int, fields: dict[str, tuple[tuple[int, ...], torch.dtype]], device: str | torch.device = "cpu"
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"TensorBuffer: capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.device = torch.device(device)
        self.storage = {
            name: torch.zeros((self.capacity, *shape), dtype=dtype, device=self.device)
            for name, (shape, dtype) in fields.items()
        }
        self.ptr = 0  # next row to write
        self.size = 0  # rows filled
        self.total_added = 0  # rows ever added (the write position, unwrapped)

    def __len__(self) -> int:
        return self.size

    def add(self, **batch: Tensor) -> None:
        """Append a batch: every field as a tensor of shape ``(n, *per_row_shape)`` (same n).

        Raises:
            KeyError: other field names than the buffer's.
            DivergenceError: a floating-point field holds NaN/inf (nothing is added).
        """
        if set(batch) != set(self.storage):
            raise KeyError(f"TensorBuffer.add: expected fields {sorted(self.storage)}, got {sorted(batch)}")
        for name, value in batch.items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise DivergenceError(f"TensorBuffer.add: field '{name}' holds NaN/inf; the buffer never stores them")
        n = len(next(iter(batch.values())))
        if n > self.capacity:  # only the newest rows survive anyway
            batch = {k: v[-self.capacity :] for k, v in batch.items()}
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
        """The filled part of the raw storage (slot order, not age order) with the write position and counters,
        so that :meth:`load_state_dict` restores the exact layout: after a resume the same random indices draw
        the same rows and the same rows are overwritten next. Loadable with ``torch.load(weights_only=True)``."""
        return {
            "storage": {name: value[: self.size] for name, value in self.storage.items()},
            "ptr": self.ptr,
            "size": self.size,
            "total_added": self.total_added,
            "capacity": self.capacity,
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`. A state of another capacity loads only if it never wrapped and fits
        (its rows are then oldest first from slot 0, e.g. an online run resumed with a larger step budget).

        Raises:
            CheckpointError: the state has other fields or inconsistent counters, or another capacity after
                wrapping or with more rows than this buffer holds.
        """
        storage, size = state.get("storage"), state.get("size", -1)
        same_layout = state.get("capacity") == self.capacity or (state.get("total_added") == size <= self.capacity)
        if (
            not isinstance(storage, dict)
            or set(storage) != set(self.storage)
            or not same_layout
            or any(len(v) != size for v in storage.values())
        ):
            found = sorted(storage) if isinstance(storage, dict) else "no raw storage"
            raise CheckpointError(
                f"TensorBuffer: checkpoint (capacity {state.get('capacity')}, {size} rows, fields "
                f"{found}) does not match this buffer (capacity {self.capacity}, fields "
                f"{sorted(self.storage)})"
            )
        for name, value in storage.items():
            self.storage[name][:size] = value.to(self.device, self.storage[name].dtype)
        self.size, self.total_added = int(size), int(state["total_added"])
        self.ptr = int(state["ptr"]) if state["capacity"] == self.capacity else self.size % self.capacity


def ordered_rows(state: dict) -> dict[str, Tensor]:
    """The rows of a :meth:`TensorBuffer.state_dict`, oldest first: ``{name: (size, ...)}``."""
    start = state["ptr"] if state["size"] == state["capacity"] else 0
    return {name: torch.roll(value, -start, dims=0) for name, value in state["storage"].items()}


def state_from_rows(rows: dict[str, Tensor], capacity: int | None = None) -> dict:
    """A :meth:`TensorBuffer.state_dict` holding ``rows`` (oldest first) as if added in one batch to an empty
    buffer of ``capacity`` rows (default: exactly the rows)."""
    n = len(next(iter(rows.values())))
    capacity = n if capacity is None else capacity
    if n > capacity:
        raise CheckpointError(f"TensorBuffer: {n} rows do not fit a capacity of {capacity}")
    return {"storage": dict(rows), "ptr": n % capacity, "size": n, "total_added": n, "capacity": capacity}
