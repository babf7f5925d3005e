"""What an offline model-based algorithm decides on the harness (``algos.harness``): where the penalty goes and how
SAC updates. Everything else (data, model, roll-out schedule, model buffer, mixed batches, evaluation, checkpoints)
is the harness's.

The default is a **reward penalty** (ADM paper Eq. 8, Alg. 3 line 6; MOPO): roll-out rewards become
``r̃ = r̂ − β·U(s, a)`` with the quantifier ``rollout.penalty`` and ``β = rollout.penalty_coef``, and SAC updates
with its own soft target. An algorithm that penalizes elsewhere (MOBILE: the Bellman target) overrides
:meth:`Algorithm.rollout_penalty` and :meth:`Algorithm.bellman_target`.
"""

from __future__ import annotations

from torch import Tensor

from ..agents.sac import SAC, BellmanTarget, soft_bellman_target
from ..config import TrainConfig
from ..models import DynamicsModel


class Algorithm:
    """An algorithm on the model-based harness, built from the run config.

    Args:
        config: the resolved run config (``config.algo`` names this algorithm).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def rollout_penalty(self) -> tuple[str | None, float]:
        """``(quantifier name or None, β)``: the roll-out computes U with the quantifier (``offline_mbrl.uncertainty``;
        None: U = 0) and the model buffer stores ``r̂ − β·U`` (Eq. 8). Default: ``rollout.penalty`` and
        ``rollout.penalty_coef``."""
        return self.config.rollout.penalty, self.config.rollout.penalty_coef

    def bellman_target(
        self, sac: SAC, model: DynamicsModel, batch: dict[str, Tensor], num_real: int
    ) -> tuple[BellmanTarget, dict[str, Tensor]]:
        """The critics' target for this batch (arguments as :meth:`update`) and metrics of its own. Default: SAC's soft
        target, no metrics. A seed batch (``harness.SeedBatchTrainer``) calls it once per seed, with that seed's
        single agent and in that seed's random stream, then updates all seeds at once."""
        return soft_bellman_target, {}

    def update(
        self, sac: SAC, model: DynamicsModel, batch: dict[str, Tensor], num_real: int, update_actor: bool = True
    ) -> dict[str, Tensor]:
        """One SAC step on a mixed batch (B rows: the first ``num_real`` from the dataset, then model rows; keys as
        ``SAC.update``), with the fitted dynamics ``model`` (eval mode) at hand -> detached metric tensors: SAC's update
        (Alg. 3 lines 9-11) on the target of :meth:`bellman_target`; ``update_actor=False``: critics only
        (``SAC.update``)."""
        target, metrics = self.bellman_target(sac, model, batch, num_real)
        return sac.update(batch, target=target, update_actor=update_actor) | metrics


class OnlineAlgorithm(Algorithm):
    """An online algorithm on the harness: no roll-out penalty unless ``rollout.penalty_coef`` > 0 (MBPO and
    ADMPO-ON store the model reward as it is; a positive β makes the same loop a penalized one, Eq. 8).

    Attributes:
        uses_model: False for a model-free baseline (``algos.online_sac.OnlineSAC``): the loop then fits no model,
            rolls nothing out and trains SAC on real rows only (``real_ratio`` must be 1).
    """

    uses_model: bool = True

    def rollout_penalty(self) -> tuple[str | None, float]:
        """``(None, 0.0)`` by default (no quantifier is computed); ``(rollout.penalty, β)`` when β > 0."""
        penalty, penalty_coef = super().rollout_penalty()
        return (penalty if penalty_coef > 0 else None), penalty_coef
