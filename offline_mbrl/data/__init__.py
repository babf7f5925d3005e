"""Dataset layer: TransitionDataset, readers/writers (D4RL, NeoRL, Minari), windows, scores."""

from .dataset import TransitionDataset

__all__ = ["TransitionDataset"]
