"""Bootstrapping RNN dynamics model, the compounding-error baseline of the ADM paper (Fig. 2, Section 4.1;
REFERENCE-algorithms section 5).

Same GRU + residual head as ADM, but the input is the *actual* state-action history
``(s_{t-k+1}, a_{t-k+1}), …, (s_t, a_t)`` (no start-state repetition) and the output is a Gaussian over
``(s_{t+1} − s_t, r_{t+1})`` (delta relative to the last state), as in the public reproduction
``gslu1115/admpo_reproduction``. The GRU is causal, so one pass over an m-step window trains every
history length 1…m: output j uses the history of length j + 1. Roll-outs feed predictions back
(``offline_mbrl.rollout.rollout_boot_rnn``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.windows import WindowBatch
from .layers import RecurrentGaussianNet


class BootRNN(RecurrentGaussianNet):
    """Bootstrapping RNN. See ``RecurrentConfig``; ``max_backtrack`` is the longest history m."""

    kind = "boot_rnn"

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
