"""TensorBuffer: FIFO order, exact state round trip after wrapping, and capacity changes on load."""

import pytest
import torch

from offline_mbrl.buffers import TensorBuffer, ordered_rows, state_from_rows
from offline_mbrl.errors import CheckpointError

FIELDS = {"x": ((2,), torch.float32), "flag": ((), torch.bool)}


def _filled(capacity: int, n: int, chunk: int = 3) -> TensorBuffer:
    buffer = TensorBuffer(capacity, FIELDS)
    for start in range(0, n, chunk):
        rows = torch.arange(start, min(start + chunk, n), dtype=torch.float32)
        buffer.add(x=rows[:, None].expand(-1, 2), flag=rows.long() % 2 == 0)
    return buffer


def test_wrapped_buffer_restores_exactly():
    a = _filled(10, 23)
    assert a.size == 10 and a.ptr == 3
    b = TensorBuffer(10, FIELDS)
    b.load_state_dict(a.state_dict())
    for name in FIELDS:
        assert torch.equal(a.storage[name], b.storage[name])
    draws = [buf.sample(64, torch.Generator().manual_seed(5))["x"] for buf in (a, b)]
    assert torch.equal(*draws)
    for buf in (a, b):  # the same rows are overwritten next
        buf.add(x=torch.full((2, 2), -1.0), flag=torch.zeros(2, dtype=torch.bool))
    assert torch.equal(a.ordered()["x"], b.ordered()["x"])
    assert list(a.ordered()["x"][:, 0]) == [15.0, 16, 17, 18, 19, 20, 21, 22, -1, -1]


def test_ordered_rows_and_state_from_rows_round_trip():
    a = _filled(10, 23)
    rows = ordered_rows(a.state_dict())
    assert torch.equal(rows["x"], a.ordered()["x"])
    b = TensorBuffer(10, FIELDS)
    b.load_state_dict(state_from_rows(rows))
    assert torch.equal(b.ordered()["x"], a.ordered()["x"])


def test_unwrapped_state_loads_into_a_larger_buffer_but_a_wrapped_one_does_not():
    bigger = TensorBuffer(30, FIELDS)
    bigger.load_state_dict(_filled(10, 7).state_dict())
    assert bigger.size == 7 and bigger.ptr == 7
    with pytest.raises(CheckpointError, match="capacity 10, 10 rows"):
        bigger.load_state_dict(_filled(10, 23).state_dict())
    with pytest.raises(CheckpointError, match="fields"):
        TensorBuffer(10, {"y": ((2,), torch.float32)}).load_state_dict(_filled(10, 5).state_dict())
