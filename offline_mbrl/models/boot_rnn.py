"""Bootstrapping RNN dynamics model, the compounding-error baseline of the ADM paper (Fig. 2, Section 4.1;
REFERENCE-algorithms section 5).

Same GRU + residual head as ADM, but the input is the *actual* state-action history
``(s_{t-k+1}, a_{t-k+1}), …, (s_t, a_t)`` (no start-state repetition) and the output is a Gaussian over
``(s_{t+1} − s_t, r_{t+1})`` (delta relative to the last state), as in the public reproduction
``gslu1115/admpo_reproduction``. The GRU is causal, so one pass over an m-step window trains every
history length 1…m: output j uses the history of length j + 1. Roll-outs feed predictions back
(``BootRNNStepper``, run by ``offline_mbrl.rollout.rollout``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.windows import HistoryBatch, WindowBatch
from .base import check_backtrack_sampling, check_history, to_state_space
from .layers import RecurrentGaussianNet


class BootRNN(RecurrentGaussianNet):
    """Bootstrapping RNN. See ``RecurrentConfig``; ``max_backtrack`` is the longest history m."""

    kind = "boot_rnn"
    quantifiers = ()
    channel = "history"
    backtrack_samplings = ()

    def forward(self, states: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """states (B, K, D), actions (B, K, A) -> mean, logvar (B, K, D + 1); position j predicts
        ``(s_{j+1} − s_j, r_{j+1})`` from the pairs 0…j."""
        inputs = torch.cat([self.normalizer.obs(states), self.normalizer.action(actions)], dim=-1)  # (B, K, D+A)
        features, _ = self.gru(inputs)
        return self.gaussian(features)

    def window_outputs(self, batch: WindowBatch) -> tuple[Tensor, Tensor, Tensor]:
        """One-step predictions at every history length of each window: mean, logvar, target (B, M, D + 1)."""
        states = batch.states  # (B, M, D)
        mean, logvar = self(states, batch.actions)
        target = torch.cat([batch.next_obs - states, batch.rewards[..., None]], dim=-1)
        return mean, logvar, target

    def stepper(self, history: HistoryBatch, backtrack_sampling: str = "trajectory") -> BootRNNStepper:
        """The roll-out stepper over start histories (B, m, ·) on the model's device; ``backtrack_sampling`` is
        checked and ignored (one candidate, no backtracking).

        Raises:
            ConfigError: the history does not hold m states, or an unknown ``backtrack_sampling``.
        """
        check_backtrack_sampling(backtrack_sampling)
        check_history(self, history)
        return BootRNNStepper(self, history)


class BootRNNStepper:
    """The last m (state, action) pairs of each trajectory, right-aligned, re-read every step: each step reads
    the last min(L + τ, m) pairs, predicted states included (one candidate, C = 1). Build it with
    ``BootRNN.stepper``."""

    shared_choice = False

    def __init__(self, model: BootRNN, history: HistoryBatch) -> None:
        self.model, self.m = model, model.config.max_backtrack
        self.states = history.obs  # (B, M, D), last = current state
        self.actions = history.actions  # (B, M-1, A)
        self.lengths = history.lengths.clone()

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, None]:
        """mean, logvar (1, b, D+1) of the one-step prediction from the window ending with ``action`` (b, A)."""
        self.actions = torch.cat([self.actions, action[:, None]], dim=1)  # (b, M, A)
        # left-align the real pairs so the causal GRU never reads padding before them
        index = torch.clamp(torch.arange(self.m, device=obs.device) + (self.m - self.lengths)[:, None], max=self.m - 1)
        states = self.states.gather(1, index[..., None].expand(-1, -1, self.states.shape[-1]))
        actions = self.actions.gather(1, index[..., None].expand(-1, -1, self.actions.shape[-1]))
        mean, logvar = self.model(states, actions)  # (b, M, D+1)
        last = torch.arange(len(obs), device=obs.device), self.lengths - 1
        return to_state_space(mean[last], obs)[None], logvar[last][None], None

    def choose(self, uniform: Tensor) -> Tensor:
        """The one candidate: zeros (b,)."""
        return torch.zeros_like(uniform, dtype=torch.long)

    def sampled_candidates(self) -> None:
        """None: the one candidate."""

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        """Shift the window by the sampled state ``next_obs`` (b, D) and keep rows ``keep`` (b,)."""
        self.states = torch.cat([self.states[:, 1:], next_obs[:, None]], dim=1)[keep]
        self.actions = self.actions[keep, 1:]
        self.lengths = torch.clamp(self.lengths[keep] + 1, max=self.m)
