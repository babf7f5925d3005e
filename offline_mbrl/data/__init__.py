"""Dataset layer: TransitionDataset, readers/writers (D4RL, NeoRL, Minari), windows, scores."""

from .d4rl import read_d4rl, write_d4rl
from .dataset import TransitionDataset
from .load import load_dataset
from .minari_io import read_minari, write_minari
from .neorl import read_neorl
from .scores import ScoreReference, normalize_std, normalized_score, reference_scores, score_reference

__all__ = [
    "ScoreReference",
    "TransitionDataset",
    "load_dataset",
    "normalize_std",
    "normalized_score",
    "read_d4rl",
    "read_minari",
    "read_neorl",
    "reference_scores",
    "score_reference",
    "write_d4rl",
    "write_minari",
]
