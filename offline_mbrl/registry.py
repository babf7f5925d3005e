"""The algorithms, one entry each: CLI name, dynamics-model kind, whether it trains online (on ``--env``) or offline
(on ``--dataset``), which trainer runs it (``loop``: the SAC harness, or PAL/MAL's game loop), config defaults, config
folder and the class that implements it.

Plain data on the bottom floor (it imports only ``errors``) because both sides of the import stack read it:
``config`` (its defaults, names and folders) sits below ``algos`` and must not import it, while ``algos.harness``
and ``cli`` sit above. So the class is named by dotted path and imported only by the harness
(``algos.harness.algorithm_class``), never by ``config``. Adding an algorithm = one entry here, its file under
``algos/`` and its ``configs/<config_folder>/`` tree.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class AlgorithmEntry:
    """One algorithm.

    Fields:
        name: the ``--algo`` choice and the config's ``algo`` value.
        model: the dynamics-model kind it needs (``offline_mbrl.models.MODEL_CLASSES``), also its default
            ``dynamics.model``.
        algorithm: ``"module:Class"`` of its ``algos.base.Algorithm`` subclass (loop ``sac``), or of the loop object
            the game trainer drives (loop ``game``: ``algos.pal_mal.GameLoop``).
        config_folder: its folder under ``configs/`` (``<folder>/d4rl``, ``/neorl``, ``/minari``).
        summary: one line for ``--help``, with the source.
        online: True when it collects its own data in ``env_id`` (``algos.online_harness``; configs
            ``configs/<config_folder>/<env>.yaml``), False when it learns from a fixed dataset (``algos.harness``).
        loop: which trainer runs it (:data:`LOOPS`): ``sac`` (the SAC harness: ``algos.harness`` offline,
            ``algos.online_harness`` online; policy: the SAC actor) or ``game`` (``algos.game_harness``, PAL/MAL's
            iterations of model fits, NPG steps and collections; policy: the NPG Gaussian policy). It also decides
            which run-config keys the algorithm reads (``config.UNREAD_KEYS``).
        defaults: overrides of the run config's dataclass defaults (nested dict, as a config file); read it through
            :meth:`config_defaults`.
    """

    name: str
    model: str
    algorithm: str
    config_folder: str
    summary: str
    online: bool = False
    loop: str = "sac"
    defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.loop not in LOOPS:
            raise ConfigError(f"registry: algo '{self.name}': loop must be one of {LOOPS}, got {self.loop!r}")
        if self.loop == "game" and not self.online:
            raise ConfigError(f"registry: algo '{self.name}': the game loop is online (it collects its own data)")

    def config_defaults(self) -> dict[str, Any]:
        """A fresh nested dict of :attr:`defaults` with ``dynamics.model`` set to :attr:`model` (SAC loop; the game loop
        builds its ensemble from its ``game`` section and reads no ``dynamics`` section)."""
        defaults = copy.deepcopy(self.defaults)
        if self.loop == "sac":
            defaults.setdefault("dynamics", {})["model"] = self.model
        return defaults


#: the trainers (``AlgorithmEntry.loop``): the SAC harness (offline and online) and the PAL/MAL game loop
LOOPS = ("sac", "game")

#: defaults shared by the online algorithms (MBPO Appendix C Table 1; official ADMPO online, REFERENCE-algorithms.md
#: section 6): 1000 env steps per epoch, one roll-out of 100,000 starts (M = 400 per env step x 250 steps) and one
#: model fit every 250 env steps, the model buffer keeps one epoch of roll-outs, 5 % real rows per SAC batch, SAC with
#: lr 3e-4, learned temperature from 1.0 and no actor-lr schedule; no roll-out penalty
ONLINE_DEFAULTS: dict[str, Any] = {
    "steps_per_epoch": 1000,
    "real_ratio": 0.05,
    "rollout": {
        "rollout_length": 1,
        "rollout_batch_size": 100_000,
        "rollout_freq": 250,
        "model_retain_epochs": 1,
        "penalty_coef": 0.0,
    },
    "sac": {"actor_lr": 3e-4, "alpha_lr": 3e-4, "alpha": 1.0, "auto_alpha": True, "lr_schedule": False},
}

ALGORITHMS: dict[str, AlgorithmEntry] = {
    entry.name: entry
    for entry in (
        AlgorithmEntry(
            name="admpo-off",
            model="adm",
            algorithm="offline_mbrl.algos.admpo_off:ADMPOOff",
            config_folder="admpo_off",
            summary="ADMPO-OFF (ADM paper Alg. 3): any-step model, reward penalty (Eq. 8)",
        ),
        AlgorithmEntry(
            name="mopo",
            model="ensemble",
            algorithm="offline_mbrl.algos.mopo:MOPO",
            config_folder="mopo",
            summary="MOPO (Yu et al. 2020): ensemble, reward penalty max aleatoric std (OfflineRL-Kit settings)",
            defaults={
                "rollout": {"penalty": "max_aleatoric", "penalty_coef": 0.5},
                "sac": {"auto_alpha": True, "alpha": 1.0},
            },
        ),
        AlgorithmEntry(
            name="mobile",
            model="ensemble",
            algorithm="offline_mbrl.algos.mobile:MOBILE",
            config_folder="mobile",
            summary="MOBILE (Sun et al. 2023): ensemble, Bellman-target penalty (OfflineRL-Kit settings)",
            defaults={  # OfflineRL-Kit run_mobile.py argument defaults
                "epochs": 3000,
                "dynamics": {"max_epochs": 30},
                "rollout": {"rollout_length": 1, "penalty_coef": 1.5},
                "sac": {"auto_alpha": True, "alpha": 1.0},
            },
        ),
        AlgorithmEntry(
            name="sac",
            model="ensemble",
            algorithm="offline_mbrl.algos.online_sac:OnlineSAC",
            config_folder="sac",
            summary="SAC (Haarnoja et al. 2018): online, model-free baseline of ADM Fig. 3 (real rows only; "
            "the model kind is unused)",
            online=True,
            defaults={**ONLINE_DEFAULTS, "real_ratio": 1.0, "online": {"utd_ratio": 1}},
        ),
        AlgorithmEntry(
            name="mbpo",
            model="ensemble",
            algorithm="offline_mbrl.algos.mbpo:MBPO",
            config_folder="mbpo",
            summary="MBPO (Janner et al. 2019, Alg. 2): online, ensemble, branched roll-outs from replay states",
            online=True,
            defaults=ONLINE_DEFAULTS,
        ),
        AlgorithmEntry(
            name="admpo-on",
            model="adm",
            algorithm="offline_mbrl.algos.admpo_on:ADMPOOn",
            config_folder="admpo_on",
            summary="ADMPO-ON (ADM paper Alg. 2): online, any-step model, roll-outs from replay histories (Alg. 1)",
            online=True,
            defaults=ONLINE_DEFAULTS,
        ),
        AlgorithmEntry(
            name="pal",
            model="ensemble",
            algorithm="offline_mbrl.algos.pal_mal:GameLoop",
            config_folder="pal",
            summary="PAL (game-theoretic MBRL, Alg. 3): online, policy as leader: small recent buffer, model fit, "
            "few NPG steps in it (Table 2)",
            online=True,
            loop="game",
        ),
        AlgorithmEntry(
            name="mal",
            model="ensemble",
            algorithm="offline_mbrl.algos.pal_mal:GameLoop",
            config_folder="mal",
            summary="MAL (game-theoretic MBRL, Alg. 4): online, model as leader: many NPG steps in the model, then "
            "collect, aggregate, refit (Table 3)",
            online=True,
            loop="game",
        ),
        AlgorithmEntry(
            name="npg",
            model="ensemble",
            algorithm="offline_mbrl.algos.pal_mal:GameLoop",
            config_folder="npg",
            summary="NPG (Kakade 2001; seed 003's model-free counterpart of PAL/MAL): online, one natural-gradient "
            "step per N real samples of the current policy, no model (the model kind is unused)",
            online=True,
            loop="game",
        ),
    )
}


def algorithm_entry(name: str, where: str = "config") -> AlgorithmEntry:
    """The entry of ``name``.

    Raises:
        ConfigError: an unknown name, naming ``where`` and the known names.
    """
    if name not in ALGORITHMS:
        raise ConfigError(f"{where}: key 'algo' must be one of {tuple(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name]
