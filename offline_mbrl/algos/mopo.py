"""MOPO (Yu et al., 2020; OfflineRL-Kit settings, REFERENCE-algorithms section 1): the probabilistic ensemble
(``models.ensemble``) on the harness, the roll-out reward penalized by the largest member's aleatoric std,
``r̃ = r̂ − λ·max_i ‖σ_i‖₂`` (``rollout.penalty`` ``max_aleatoric``), SAC's own update."""

from __future__ import annotations

from .base import Algorithm


class MOPO(Algorithm):
    """MOPO: a reward penalty at roll-out time (the :class:`Algorithm` default) on ensemble roll-outs."""
