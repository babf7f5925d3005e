"""The one SAC config: the ``sac`` section of an offline run config (``config.TrainConfig``), of the online SAC
that collects datasets (``algos.online_sac``), and what :class:`agents.sac.SAC` is built from. Torch-free, so the
run config can compose it without importing torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..checks import check_section, fail


@dataclass(frozen=True)
class SACConfig:
    """SAC hyper-parameters (Table 3 of the ADM paper; alpha per task from the official configs).

    ``hidden_dims``: widths of the actor and of both critics. Learning rates in Adam units. ``alpha`` is the fixed
    temperature, or the initial one when ``auto_alpha`` is set (learned with target entropy -|A|); ``tau`` per
    update; ``batch_size`` rows per update.

    ``lr_schedule``: anneal the actor lr with a cosine over ``lr_schedule_epochs`` epochs (official code: over the
    run's ``epochs``, the default None). Setting it to the full run's length (e.g. 5000) lets a shortened run follow
    the first part of the full run's schedule instead of a compressed copy of it.

    Field order is the key order of the ``sac`` section in a run folder's ``config.yaml``.

    Raises:
        ConfigError: a value out of range, naming the dotted key ``sac.<field>``.
    """

    hidden_dims: tuple[int, ...] = (256, 256)
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 1e-4
    alpha: float = 0.1
    auto_alpha: bool = False
    gamma: float = 0.99
    tau: float = 5e-3
    batch_size: int = 256
    lr_schedule: bool = True
    lr_schedule_epochs: int | None = None

    def __post_init__(self) -> None:
        check_section(
            self,
            "sac.",
            at_least={"batch_size": 1, "lr_schedule_epochs": 1},
            positive=("actor_lr", "critic_lr", "alpha_lr", "alpha"),
        )
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            fail("sac.hidden_dims", "a non-empty list of widths >= 1", self.hidden_dims)
        for key in ("gamma", "tau"):
            if not 0.0 < getattr(self, key) <= 1.0:
                fail(f"sac.{key}", "in (0, 1]", getattr(self, key))

    @classmethod
    def from_record(cls, record: dict) -> SACConfig:
        """The config recorded in a SAC checkpoint (``SAC.full_state()["config"]``). Keys that are not fields are
        ignored: checkpoints written before this was the one SAC config also hold ``target_entropy`` (always None,
        i.e. -|A|) and ``num_critics`` (always 2), and lack the schedule keys, which evaluation does not use."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in record.items() if k in names}
        return cls(**{**values, "hidden_dims": tuple(values["hidden_dims"])})
