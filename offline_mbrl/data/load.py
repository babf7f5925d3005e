"""One entry point for every dataset spec: ``minari:<dataset_id>`` or a file path by extension."""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .d4rl import read_d4rl
from .dataset import TransitionDataset
from .minari_io import read_minari
from .neorl import read_neorl

MINARI_PREFIX = "minari:"
_READERS = {".hdf5": read_d4rl, ".h5": read_d4rl, ".npz": read_neorl}
ACCEPTED_SPECS = (
    "minari:<dataset_id> (local Minari dataset)",
    "<path>.hdf5 or <path>.h5 (D4RL layout)",
    "<path>.npz (NeoRL layout)",
)


def load_dataset(spec: str | Path) -> TransitionDataset:
    """Load a dataset from a spec string (DESIGN section 3, "Formats").

    ``minari:<dataset_id>`` reads a local Minari dataset (:func:`~.minari_io.read_minari`);
    otherwise ``spec`` is a path: ``.hdf5``/``.h5`` -> D4RL reader, ``.npz`` -> NeoRL reader
    (extension case-insensitive).

    Raises:
        DatasetError: unknown extension (the message lists the accepted forms), or any reader error.
        DatasetNotFoundError: no such file or local Minari dataset.
    """
    text = str(spec)
    if text.startswith(MINARI_PREFIX):
        return read_minari(text[len(MINARI_PREFIX) :])
    reader = _READERS.get(Path(text).suffix.lower())
    if reader is None:
        raise DatasetError(f"{text}: unknown dataset spec; accepted forms: {'; '.join(ACCEPTED_SPECS)}")
    return reader(text)
