"""Project exceptions. Every message names the file (or object), the field and the problem."""


class OfflineMBRLError(Exception):
    """Base class of every error this package raises on purpose."""


class DatasetError(OfflineMBRLError, ValueError):
    """A dataset file or array is malformed: missing key, wrong rank, length mismatch, NaN/inf, empty."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset file or Minari id does not exist locally (no network call is ever attempted)."""


class ConfigError(OfflineMBRLError, ValueError):
    """A config file or `--set key=value` override names an unknown key or has the wrong type."""


class CheckpointError(OfflineMBRLError, ValueError):
    """A checkpoint file is missing, truncated or does not match the object it is loaded into."""


class RunFolderError(CheckpointError):
    """A run folder is missing, malformed, or clashes with another one (message names the path)."""


class ScoreError(OfflineMBRLError, KeyError):
    """No normalization reference is known for a task or dataset."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class WriteError(OfflineMBRLError, OSError):
    """A file could not be written (disk full, no permission, a directory in the way); the message names the file.
    No temporary file is left behind."""


class RunLockedError(OfflineMBRLError, RuntimeError):
    """Another live process holds the run folder's lock file; the message names the folder and the holder's pid."""


class DivergenceError(OfflineMBRLError, ArithmeticError):
    """Training produced non-finite values (losses, weights or every model prediction); the run stops and its last
    good checkpoint is kept."""
