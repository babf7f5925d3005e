"""MBPO (Janner et al. 2019, seeds/002, Alg. 2): a probabilistic ensemble refitted on the real buffer every 250 env
steps, short branched roll-outs from replay states (a random elite per row and step), SAC on 5 % real and 95 % model
rows with G updates per env step, no penalty. Everything is the online harness's (``algos.online_harness``); the
per-task settings of Appendix C Table 1 live in ``configs/mbpo/``."""

from __future__ import annotations

from .base import OnlineAlgorithm


class MBPO(OnlineAlgorithm):
    """MBPO on the online harness: the model reward unpenalized, SAC's own update."""
