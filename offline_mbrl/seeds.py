"""One random stream per seed for several seeds trained in one process (issue 15, ``train --seeds``).

A single-seed run draws every random number (network initialisation, batch rows, the policy's noise, roll-out noise,
dropout) from torch's global generators, seeded by ``persist.seeded``. :class:`SeedStreams` keeps, for each seed of a
seed batch, the state those generators would have in that seed's single-seed run, and swaps it in for a block
(:meth:`SeedStreams.use`), so every draw made for seed ``i`` comes from seed ``i``'s stream in the same order as in its
own run. States are swapped, never re-seeded; a seed batch runs inside :func:`kept` (see
``algos.harness.SeedBatchTrainer``), so the caller's stream is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor


def _accelerator(device: torch.device) -> torch.device | None:
    """The accelerator whose generator draws for ``device`` (None for CPU)."""
    if device.type == "cpu":
        return None
    module = torch.get_device_module(device.type)
    return torch.device(device.type, module.current_device() if device.index is None else device.index)


def capture(device: torch.device | str = "cpu") -> tuple[Tensor, Tensor | None]:
    """``(CPU state, device state or None)`` of torch's global generators: what :class:`SeedStreams` holds per seed."""
    accelerator = _accelerator(torch.device(device))
    device_state = None
    if accelerator is not None:
        device_state = torch.get_device_module(accelerator.type).get_rng_state(accelerator)
    return torch.get_rng_state(), device_state


def restore(state: tuple[Tensor, Tensor | None], device: torch.device | str = "cpu") -> None:
    """Inverse of :func:`capture`."""
    torch.set_rng_state(state[0])
    accelerator = _accelerator(torch.device(device))
    if accelerator is not None and state[1] is not None:
        torch.get_device_module(accelerator.type).set_rng_state(state[1], accelerator)


@contextmanager
def kept(device: torch.device | str = "cpu") -> Iterator[None]:
    """Run the block and put torch's global generators (CPU and ``device``) back in the state they had before."""
    outer = capture(device)
    try:
        yield
    finally:
        restore(outer, device)


class SeedStreams:
    """The torch random streams of ``S`` seeds on one device.

    Args:
        states: one :func:`capture` per seed, e.g. taken right after seeding each seed's run.
        device: the device whose generator (besides the CPU's) each stream covers.

    Raises:
        ValueError: no states.
    """

    def __init__(self, states: Sequence[tuple[Tensor, Tensor | None]], device: torch.device | str = "cpu") -> None:
        if not states:
            raise ValueError("SeedStreams: at least one seed's state is needed")
        self.states = list(states)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return len(self.states)

    @contextmanager
    def use(self, index: int) -> Iterator[None]:
        """Run the block with seed ``index``'s stream in torch's global generators; afterwards the stream keeps what
        the block drew and the generators are back in the state they had before."""
        outer = capture(self.device)
        restore(self.states[index], self.device)
        try:
            yield
        finally:
            self.states[index] = capture(self.device)
            restore(outer, self.device)

    def randn(self, *shape: int, device: torch.device | str | None = None) -> Tensor:
        """Standard normal draws ``(S, *shape)``: row ``i`` is ``torch.randn(*shape)`` from seed ``i``'s stream
        (a loop over seeds, not over samples)."""
        device = self.device if device is None else device
        rows = []
        for index in range(len(self)):
            with self.use(index):
                rows.append(torch.randn(*shape, device=device))
        return torch.stack(rows)
