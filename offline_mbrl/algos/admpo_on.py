"""ADMPO-ON (ADM paper, seeds/004, Alg. 2): MBPO's loop with the any-step dynamics model in place of the ensemble,
trained by Eq. 2 on m-step windows of the growing real buffer and rolled out from m-step replay histories with
random backtracking (Alg. 1). Everything is the online harness's (``algos.online_harness``); the per-task settings
of Table 4 live in ``configs/admpo_on/``."""

from __future__ import annotations

from .base import OnlineAlgorithm


class ADMPOOn(OnlineAlgorithm):
    """ADMPO-ON on the online harness: the model reward unpenalized (ADM uncertainty is an offline penalty), SAC's
    own update."""
