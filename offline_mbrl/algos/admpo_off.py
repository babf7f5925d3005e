"""ADMPO-OFF (ADM paper Alg. 3): the any-step model (``models.adm``) on the harness, the roll-out reward penalized
by ADM's uncertainty, ``r̃ = r̂ − β·U`` (Eq. 8; ``rollout.penalty`` ``adm_std`` as the official code, or ``adm_var``,
Eq. 4), SAC's own update."""

from __future__ import annotations

from .base import Algorithm


class ADMPOOff(Algorithm):
    """ADMPO-OFF: a reward penalty at roll-out time (the :class:`Algorithm` default) on ADM roll-outs."""
