"""Any-step dynamics model (ADM paper Def. 3.1, Fig. 1 left, Eq. 2; official ADMPO ``dynamics/arm*.py``).

``T̂θ(s_{t+k}, r_{t+k} | s_t, a_{t:t+k-1})`` for every k in 1…m: the normalized start state is repeated k
times next to each normalized action, a GRU reads the sequence, and the head maps its output at step j
to a Gaussian over ``(s_{t+j+1} − s_t, r_{t+j+1})``. Because the k-step input is a prefix of the m-step
input and the GRU is causal, one pass over an m-step window yields the predictions of all k
(DESIGN section 4): output j is backtrack k = j + 1.

Roll-outs (ADM paper Alg. 1) use **cached hidden states** (``ADMStepper``). Predicting s_{τ+1} with backtrack
k reads ``(s_{τ+1-k}, a_{τ+1-k:τ})``; at the next step the same start state only appends one action. So the
stepper keeps, per trajectory, one GRU hidden state per start state of the last m steps (a ring of m slots,
stacked as (L, m·B, h)) and advances all of them by one GRU step per roll-out step: the newest start begins
from a zero hidden state in the slot of the one that would exceed m. The cache is first warmed up from the
dataset history window (Alg. 3 line 4). Each step yields the Gaussians of every available k in one batched
pass: the sample comes from the drawn k, the penalty U from all of them. This equals recomputing every k from
scratch (tested to 1e-5) at m GRU steps per roll-out step instead of m(m+1)/2 (plus m(m−1)/2 once for the
warm-up).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config import BACKTRACK_SAMPLING
from ..data.windows import HistoryBatch, WindowBatch
from .base import check_backtrack_sampling, check_history, to_state_space
from .layers import RecurrentGaussianNet


class ADM(RecurrentGaussianNet):
    """Any-step GRU dynamics model. See ``RecurrentConfig`` for sizes (official defaults).

    The Gaussian's mean is the *delta relative to the backtracked start state* plus the reward
    (official ``step``: ``mean[:, :-1] += input_s``); ``predict`` adds the start state back.
    Dropout in roll-outs follows ``config.rollout_dropout`` (``offline_mbrl.rollout``).
    """

    kind = "adm"
    quantifiers = ("adm_var", "adm_std")
    channel = "k"
    backtrack_samplings = BACKTRACK_SAMPLING

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

    def stepper(self, history: HistoryBatch, backtrack_sampling: str = "trajectory") -> ADMStepper:
        """The cached roll-out stepper (module docstring) over start histories (B, m, ·) on the model's device.

        Args:
            backtrack_sampling: ``"trajectory"`` draws k per trajectory and step (paper Alg. 1 line 3);
                ``"batch"`` draws one quantile per step shared by all rows (official code; k = ⌊u·n⌋ + 1 for a
                row with n available lengths); ``"longest"`` always uses the longest available k = min(L + τ, m).

        Raises:
            ConfigError: the history does not hold m states, or an unknown ``backtrack_sampling``.
        """
        check_backtrack_sampling(backtrack_sampling)
        check_history(self, history)
        return ADMStepper(self, history, backtrack_sampling)


class ADMStepper:
    """Ring of m slots per trajectory, each a start state and its GRU hidden state (L, m, B, h). Slot ``head``
    holds the newest start (k = 1) and slot (head + j) mod m backtrack k = j + 1. A step advances all slots with
    one GRU step over m·B rows; the oldest slot is then recycled in place for the new start (zero hidden), so
    nothing is shifted or copied unless trajectories end. Candidates are the m backtracks (C = m); a trajectory
    with a history of length L may backtrack k ≤ min(L + τ, m) at step τ. Build it with ``ADM.stepper``."""

    def __init__(self, model: ADM, history: HistoryBatch, backtrack_sampling: str) -> None:
        self.model, self.m = model, model.config.max_backtrack
        self.longest, self.shared_choice = backtrack_sampling == "longest", backtrack_sampling == "batch"
        m, b, cfg = self.m, len(history), model.config
        self.starts = history.obs.flip(1).transpose(0, 1).contiguous()  # (M, B, D): slot j = k = j + 1
        self.hidden = history.obs.new_zeros(cfg.gru_layers, m, b, cfg.hidden_dim)  # (L, M, B, h)
        for t in range(m - 1):  # warm-up: the history's action t extends the slots of positions ≤ t
            first = m - 1 - t
            _, hidden = self._gru(history.actions[:, t], slice(first, m))
            self.hidden[:, first:] = hidden.view(cfg.gru_layers, t + 1, b, -1)
        self.head = 0
        self.lengths = history.lengths.clone()  # (B,) available backtracks, ≤ M

    def _gru(self, action: Tensor, slots: slice) -> tuple[Tensor, Tensor]:
        """Advance ``slots`` of every trajectory by ``action`` (b, A): features (S·b, h), hidden (L, S·b, h)."""
        starts = self.starts[slots]  # (S, b, D)
        norm = self.model.normalizer
        inputs = torch.cat([norm.obs(starts), norm.action(action)[None].expand(len(starts), -1, -1)], dim=-1)
        hidden = self.hidden[:, slots]
        return self.model.gru_step(
            inputs.view(-1, inputs.shape[-1]), hidden.reshape(hidden.shape[0], -1, hidden.shape[-1])
        )

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Candidates in backtrack order: row j of mean/logvar (M, b, D+1) is k = j + 1; available (M, b)."""
        features, self._advanced = self._gru(action, slice(None))
        mean, logvar = self.model.gaussian(features.view(self.m, len(obs), -1))  # (M, b, D+1), slot order
        mean = to_state_space(mean, self.starts)
        order = (torch.arange(self.m, device=obs.device) + self.head) % self.m  # slot of k = 1 … M
        available = torch.arange(self.m, device=obs.device)[:, None] < self.lengths[None]
        return mean[order], logvar[order], available

    def choose(self, uniform: Tensor) -> Tensor:
        """k − 1 per row (b,): uniform over the available backtracks, or the longest one."""
        if self.longest:
            return self.lengths - 1
        return torch.minimum((uniform * self.lengths).long(), self.lengths - 1)

    def sampled_candidates(self) -> None:
        """None: any available backtrack may be drawn (``predict``'s ``available``)."""

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        """Keep rows ``keep`` (b,) and recycle the oldest slot for the new start ``next_obs`` (b, D)."""
        hidden = self._advanced.view(self.hidden.shape[0], self.m, -1, self.hidden.shape[-1])
        starts, lengths = self.starts, self.lengths
        if not keep.all():
            hidden, starts, lengths, next_obs = hidden[:, :, keep], starts[:, keep], lengths[keep], next_obs[keep]
        self.head = (self.head - 1) % self.m  # the oldest slot becomes k = 1
        hidden[:, self.head] = 0.0
        starts[self.head] = next_obs
        self.hidden, self.starts = hidden, starts
        self.lengths = torch.clamp(lengths + 1, max=self.m)
