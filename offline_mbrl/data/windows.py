"""M-step state-action windows over a TransitionDataset (DESIGN section 3; ADM paper Eq. 2 and Alg. 3 line 4).

Two views of the same contiguous tensors, both built by index arithmetic (no Python loop over samples):

* **Training windows** for max backtrack m: the window at row t is
  ``(s_t, a_t … a_{t+m-1}, r_{t+1} … r_{t+m}, s_{t+1} … s_{t+m})``. Every row starts a window, so every
  transition trains k = 1. A window never crosses an episode end: step j of the window is valid
  (``mask[:, j]``, i.e. backtrack k = j + 1 is trainable) only while row t + j is in the episode of row t.
  A terminal or timeout at step j therefore makes every k > j + 1 invalid. Invalid steps repeat the
  episode's last row (finite values), so a masked loss never sees NaN.
* **History windows** for roll-out starts (Alg. 3 line 4): ``(s_{i-m+1}, a_{i-m+1}, …, a_{i-1}, s_i)``,
  m states and m − 1 actions ending at the roll-out start state ``s_i = obs[i]``. Choice made here:
  **every row can start a roll-out** (the start-state distribution is the dataset's, as in MOPO);
  near an episode start the history is shorter and is *left-padded with zeros* and a length
  ``lengths`` (1…m) says how many states are real. Roll-outs use only backtracks k ≤ available
  length (``offline_mbrl.rollout``). Histories never reach into the previous episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DatasetError
from .dataset import TransitionDataset


@dataclass(frozen=True)
class WindowBatch:
    """B training windows of length M (tensors on the windows' device).

    Attributes:
        rows: (B,) int64, dataset row t of each window's start.
        obs0: (B, D) start state s_t.
        actions: (B, M, A) actions a_t … a_{t+M-1}.
        next_obs: (B, M, D) states s_{t+1} … s_{t+M} (``next_obs[:, j]`` is the target of backtrack k = j + 1).
        rewards: (B, M) rewards r_{t+1} … r_{t+M}.
        terminals: (B, M) bool, terminal flag of each step.
        mask: (B, M) bool, step j lies inside the start row's episode (k = j + 1 is valid).
    """

    rows: Tensor
    obs0: Tensor
    actions: Tensor
    next_obs: Tensor
    rewards: Tensor
    terminals: Tensor
    mask: Tensor

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def states(self) -> Tensor:
        """(B, M, D): the visited states s_t … s_{t+M-1} (input of the bootstrapping RNN)."""
        return torch.cat([self.obs0[:, None], self.next_obs[:, :-1]], dim=1)


@dataclass(frozen=True)
class HistoryBatch:
    """B roll-out start histories, right-aligned: position M − 1 is the start state s_i.

    Attributes:
        rows: (B,) int64, dataset row i of the start state.
        obs: (B, M, D) states s_{i-M+1} … s_i; the first ``M - lengths`` positions are zero padding.
        actions: (B, M - 1, A) actions a_{i-M+1} … a_{i-1}; padding positions are zero.
        lengths: (B,) int64 in 1…M, number of real states (``obs[b, M - lengths[b]:]``).
    """

    rows: Tensor
    obs: Tensor
    actions: Tensor
    lengths: Tensor

    @classmethod
    def of_states(cls, obs: Tensor, action_dim: int) -> HistoryBatch:
        """Histories of one state (M = 1) from start states obs (B, D), as ``Windows(dataset, 1).history`` gives
        them; ``rows`` are −1 (no dataset row is known)."""
        batch = len(obs)
        return cls(
            rows=torch.full((batch,), -1, dtype=torch.int64, device=obs.device),
            obs=obs[:, None],
            actions=obs.new_zeros(batch, 0, action_dim),
            lengths=torch.ones(batch, dtype=torch.int64, device=obs.device),
        )

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def max_backtrack(self) -> int:
        return int(self.obs.shape[1])

    def __getitem__(self, rows: slice | Tensor) -> HistoryBatch:
        """The histories ``rows`` (a slice or an index tensor)."""
        return HistoryBatch(*(t[rows] for t in (self.rows, self.obs, self.actions, self.lengths)))

    def to(self, device: torch.device | str) -> HistoryBatch:
        """The same histories on ``device``."""
        return HistoryBatch(*(t.to(device) for t in (self.rows, self.obs, self.actions, self.lengths)))


def check_sample_weights(weights: np.ndarray | Tensor, num_rows: int, source: str) -> Tensor:
    """Validate per-transition sampling weights and return them as a float64 tensor (N,).

    Raises:
        DatasetError: wrong shape, NaN/inf, a negative value, or a zero sum. The message names ``source``.
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.shape != (num_rows,):
        raise DatasetError(f"{source}: field 'sample_weights' must have shape ({num_rows},), got {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise DatasetError(f"{source}: field 'sample_weights' holds NaN/inf values")
    if (w < 0).any():
        raise DatasetError(f"{source}: field 'sample_weights' holds negative values (min {w.min().item():.3g})")
    if w.sum() <= 0:
        raise DatasetError(f"{source}: field 'sample_weights' sums to 0; no row could be sampled")
    return w


class Windows:
    """Training and history windows of one dataset as contiguous tensors on ``device``.

    Args:
        dataset: the transitions (its episode ends: terminal, timeout or last row).
        max_backtrack: m ≥ 1, the window length M.
        device: where the tensors live (default CPU).
        sample_weights: optional (N,) non-negative per-transition weights; ``sample``/``sample_history``
            then draw start rows with probability ∝ weight (TOM Alg. 2 line 15, resampling).

    Raises:
        ConfigError: ``max_backtrack`` < 1.
        DatasetError: bad ``sample_weights`` (see ``check_sample_weights``).
    """

    def __init__(
        self,
        dataset: TransitionDataset,
        max_backtrack: int,
        device: torch.device | str | None = None,
        sample_weights: np.ndarray | Tensor | None = None,
    ) -> None:
        if int(max_backtrack) != max_backtrack or max_backtrack < 1:
            raise ConfigError(f"windows: 'max_backtrack' must be an integer >= 1, got {max_backtrack!r}")
        self.max_backtrack = int(max_backtrack)
        self.source = dataset.source
        self.device = torch.device(device or "cpu")

        def put(arr: np.ndarray) -> Tensor:
            return torch.as_tensor(arr, device=self.device).contiguous()

        self.obs = put(dataset.obs)  # (N, D)
        self.actions = put(dataset.actions)  # (N, A)
        self.rewards = put(dataset.rewards)  # (N,)
        self.next_obs = put(dataset.next_obs)  # (N, D)
        self.terminals = put(dataset.terminals)  # (N,)
        row = np.arange(len(dataset))
        episode_ids = dataset.episode_ids
        end_rows = np.flatnonzero(dataset.episode_ends)[episode_ids]
        self.steps_to_end = put(end_rows - row + 1)  # (N,) rows left in the episode, current included
        self.steps_from_start = put(row - dataset.episode_starts[episode_ids])  # (N,) 0 at an episode's first row
        self.sample_weights = (
            None
            if sample_weights is None
            else check_sample_weights(sample_weights, len(dataset), self.source).to(self.device)
        )

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    # ------------------------------------------------------------------ training windows
    def gather(self, rows: Tensor) -> WindowBatch:
        """The training windows starting at ``rows`` (B,) int64 (any device)."""
        rows = rows.to(self.device)
        offsets = torch.arange(self.max_backtrack, device=self.device)  # (M,)
        left = self.steps_to_end[rows]  # (B,)
        mask = offsets[None, :] < left[:, None]  # (B, M)
        idx = rows[:, None] + torch.minimum(offsets[None, :], left[:, None] - 1)  # (B, M), clamped at episode end
        return WindowBatch(
            rows=rows,
            obs0=self.obs[rows],
            actions=self.actions[idx],
            next_obs=self.next_obs[idx],
            rewards=self.rewards[idx],
            terminals=self.terminals[idx],
            mask=mask,
        )

    def sample_rows(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """(B,) int64 rows drawn with replacement: uniformly, or ∝ ``sample_weights`` when given."""
        gen_device = generator.device if generator is not None else torch.device("cpu")
        if self.sample_weights is None:
            rows = torch.randint(len(self), (batch_size,), generator=generator, device=gen_device)
        else:
            rows = torch.multinomial(
                self.sample_weights.to(gen_device), batch_size, replacement=True, generator=generator
            )
        return rows.to(self.device)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> WindowBatch:
        """B training windows with start rows from ``sample_rows``."""
        return self.gather(self.sample_rows(batch_size, generator))

    # ------------------------------------------------------------------ roll-out histories
    def history(self, rows: Tensor) -> HistoryBatch:
        """Roll-out start histories ending at ``rows`` (B,) (see the module docstring for padding)."""
        rows = rows.to(self.device)
        back = torch.arange(self.max_backtrack - 1, -1, -1, device=self.device)  # (M,) M-1 … 0 steps back
        lengths = torch.clamp(self.steps_from_start[rows] + 1, max=self.max_backtrack)  # (B,)
        real = back[None, :] < lengths[:, None]  # (B, M)
        idx = torch.where(real, rows[:, None] - back[None, :], rows[:, None])  # (B, M)
        obs = torch.where(real[..., None], self.obs[idx], 0.0)  # (B, M, D)
        actions = torch.where(real[:, :-1, None], self.actions[idx[:, :-1]], 0.0)  # (B, M-1, A)
        return HistoryBatch(rows=rows, obs=obs, actions=actions, lengths=lengths)

    def sample_history(self, batch_size: int, generator: torch.Generator | None = None) -> HistoryBatch:
        """B roll-out start histories with start rows from ``sample_rows``."""
        return self.history(self.sample_rows(batch_size, generator))
