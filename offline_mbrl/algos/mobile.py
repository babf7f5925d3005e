"""MOBILE (Sun et al., ICML 2023, "Model-Bellman Inconsistency for Model-based Offline RL") on the harness: the
probabilistic ensemble's roll-outs enter the model buffer **unpenalized**; the penalty goes into the critics' Bellman
target instead, as the disagreement of the ensemble's Bellman estimates.

Facts from the reference implementation (OfflineRL-Kit ``policy/model_based/mobile.py`` ``compute_lcb``/``learn``,
``dynamics/ensemble_dynamics.py`` ``sample_next_obss``, ``run_example/run_mobile.py``; REFERENCE-algorithms.md
sections 1.2 and 5):

* For every row (s, a) of the mixed batch, draw ``NUM_SAMPLES`` (N = 10) next states ``s'_{n,e} = μ_e + σ_e·ε`` from
  each **elite** member e (E' = 5 of 7; the members a roll-out samples from, ``Stepper.sampled_candidates``).
* ``a'_{n,e} ~ π(s'_{n,e})`` (a stochastic sample) and ``Q̄_{n,e} = min_j Q^targ_j(s'_{n,e}, a'_{n,e})`` over the two
  target critics.
* Penalty ``U(s, a) = std_e( mean_n Q̄_{n,e} )``, the unbiased (n − 1) std over elites. The paper's Bellman estimate
  is ``r_e + γ·Q̄``; the reference code leaves out the model reward and γ (β absorbs γ), and so do we.
* Real rows (the first ``num_real`` of the batch) get U = 0.
* Target ``y = max(0, (r − β·U) + γ(1 − d)·min_j Q^targ_j(s', a'))``, a' ~ π(s'): a deterministic backup (no
  ``−α log π`` term; ``deterministic_backup=True`` in ``run_mobile.py``) clamped at 0.

β is ``rollout.penalty_coef`` (one name for the penalty coefficient of every algorithm); ``rollout.penalty`` is not
used (no reward penalty).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..agents.sac import SAC, BellmanTarget
from ..data.windows import HistoryBatch
from ..models import DynamicsModel
from .base import Algorithm

NUM_SAMPLES = 10
"""Next states drawn per elite and row (OfflineRL-Kit ``num_samples``)."""


def bellman_disagreement(next_q: Tensor) -> Tensor:
    """MOBILE's penalty from target-Q values ``next_q (N, E', B)`` of N samples per member: the unbiased std over
    members of the per-member sample mean, (B,), in the units of Q (OfflineRL-Kit ``compute_lcb``:
    ``pred_next_qs.mean(0).std(0)``; Sun et al. 2023, the Model-Bellman inconsistency).

    Raises:
        ValueError: ``next_q`` is not 3-d with E' >= 2.
    """
    if next_q.dim() != 3 or next_q.shape[1] < 2:
        raise ValueError(f"bellman_disagreement: next_q must be (N, E' >= 2, B), got {tuple(next_q.shape)}")
    return next_q.mean(dim=0).std(dim=0)


@torch.no_grad()
def bellman_penalty(model: DynamicsModel, sac: SAC, obs: Tensor, actions: Tensor, num_samples: int) -> Tensor:
    """U(s, a) (B,) for obs (B, D), actions (B, A): ``num_samples`` next states from each member the model's stepper
    samples from (the elites), actions from ``sac``'s stochastic policy, min over its target critics, then
    :func:`bellman_disagreement` (OfflineRL-Kit ``compute_lcb`` with ``sample_next_obss``). Draws from torch's
    current random stream. The stepper's availability mask is not read: every ensemble member is available.

    Raises:
        ValueError: ``num_samples`` < 1, or the stepper samples from fewer than 2 members.
        ConfigError: the model reads more than one state of history (``model.stepper``).
    """
    if num_samples < 1:
        raise ValueError(f"bellman_penalty: num_samples must be >= 1, got {num_samples}")
    stepper = model.stepper(HistoryBatch.of_states(obs, actions.shape[-1]))
    mean, logvar, _ = stepper.predict(obs, actions)  # (C, B, D+1), next state in state space, then reward
    members = stepper.sampled_candidates()
    if members is not None:
        mean, logvar = mean[members], logvar[members]  # (E', B, D+1)
    noise = torch.randn(num_samples, *mean.shape, device=mean.device)  # (N, E', B, D+1)
    next_obs = (mean + torch.exp(0.5 * logvar) * noise)[..., :-1]  # (N, E', B, D)
    flat = next_obs.reshape(-1, next_obs.shape[-1])
    next_q = sac.critic_target(flat, sac.act(flat)).min(dim=0).values  # (N·E'·B,)
    return bellman_disagreement(next_q.view(next_obs.shape[:-1]))


def mobile_target(penalty: Tensor, beta: float) -> BellmanTarget:
    """The critics' target with the penalty (B,): ``y = max(0, (r − β·U) + γ(1 − d)·min_j Q'_j(s', a'))`` over
    rewards/terminals (B,) and target-critic values ``next_q`` (E, B), an ``agents.sac.BellmanTarget`` (the entropy
    term and α are not used: deterministic backup; OfflineRL-Kit ``MOBILEPolicy.learn``)."""

    def target(
        rewards: Tensor, terminals: Tensor, next_q: Tensor, next_log_prob: Tensor, alpha: Tensor, gamma: float
    ) -> Tensor:
        not_done = 1.0 - terminals.to(rewards.dtype)
        return ((rewards - beta * penalty) + gamma * not_done * next_q.min(dim=0).values).clamp(min=0.0)

    return target


class MOBILE(Algorithm):
    """MOBILE on the harness (module docstring): no roll-out penalty; each update penalizes the Bellman target of the
    model rows by ``β·U``. Logs ``train/bellman_penalty``, the mean U over the model rows."""

    def rollout_penalty(self) -> tuple[str | None, float]:
        """No reward penalty: ``(None, 0.0)``."""
        return None, 0.0

    def bellman_target(
        self, sac: SAC, model: DynamicsModel, batch: dict[str, Tensor], num_real: int
    ) -> tuple[BellmanTarget, dict[str, Tensor]]:
        """U (B,) for every row of ``batch`` (``obs (B, D)``, ``actions (B, A)``; 0 for the first ``num_real``, the
        dataset rows, as OfflineRL-Kit's ``learn`` does) and :func:`mobile_target` with β = ``rollout.penalty_coef``;
        the mean U over the model rows as ``train/bellman_penalty``."""
        penalty = bellman_penalty(model, sac, batch["obs"], batch["actions"], NUM_SAMPLES)  # (B,)
        penalty[:num_real] = 0.0
        target = mobile_target(penalty, self.config.rollout.penalty_coef)
        return target, {"train/bellman_penalty": penalty.sum() / max(1, len(penalty) - num_real)}
