"""Any-step dynamics model (ADM paper Def. 3.1, Fig. 1 left, Eq. 2; official ADMPO ``dynamics/arm*.py``).

``T̂θ(s_{t+k}, r_{t+k} | s_t, a_{t:t+k-1})`` for every k in 1…m: the normalized start state is repeated k
times next to each normalized action, a GRU reads the sequence, and the head maps its output at step j
to a Gaussian over ``(s_{t+j+1} − s_t, r_{t+j+1})``. Because the k-step input is a prefix of the m-step
input and the GRU is causal, one pass over an m-step window yields the predictions of all k
(DESIGN section 4): output j is backtrack k = j + 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.windows import WindowBatch
from .layers import RecurrentGaussianNet


class ADM(RecurrentGaussianNet):
    """Any-step GRU dynamics model. See ``RecurrentConfig`` for sizes (official defaults).

    The Gaussian's mean is the *delta relative to the backtracked start state* plus the reward
    (official ``step``: ``mean[:, :-1] += input_s``); ``predict`` adds the start state back.
    Dropout in roll-outs follows ``config.rollout_dropout`` (``offline_mbrl.rollout``).
    """

    kind = "adm"

    def inputs(self, obs0: Tensor, actions: Tensor) -> Tensor:
        """Normalized GRU input: obs0 (B, D) repeated K times next to actions (B, K, A) -> (B, K, D + A)."""
        state = self.normalizer.obs(obs0)[:, None].expand(-1, actions.shape[1], -1)  # (B, K, D)
        return torch.cat([state, self.normalizer.action(actions)], dim=-1)

    def forward(self, obs0: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """All backtracks in one pass: obs0 (B, D), actions (B, K, A) -> mean, logvar (B, K, D + 1).

        Position j is the k = j + 1 step prediction of ``(s_{t+k} − s_t, r_{t+k})``.
        """
        features, _ = self.gru(self.inputs(obs0, actions))  # (B, K, h)
        return self.gaussian(features)

    @torch.no_grad()
    def predict(self, obs0: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Mean predictions in state space: next_obs (B, K, D) = obs0 + Δs, reward (B, K)."""
        mean, _ = self(obs0, actions)
        return obs0[:, None] + mean[..., :-1], mean[..., -1]

    def window_outputs(self, batch: WindowBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Eq. 2 for all k of each window: mean, logvar, target (B, M, D + 1) with target
        ``(s_{t+k} − s_t, r_{t+k})``."""
        mean, logvar = self(batch.obs0, batch.actions)
        target = torch.cat([batch.next_obs - batch.obs0[:, None], batch.rewards[..., None]], dim=-1)
        return mean, logvar, target
