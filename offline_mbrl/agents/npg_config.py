"""Settings of the model-based NPG learner (``agents.npg``), torch-free so that the run config (``config``) can
compose them as its ``npg`` section (as ``agents.sac_config`` for SAC)."""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_section
from ..errors import ConfigError


@dataclass(frozen=True)
class NPGConfig:
    """Model-based NPG settings; defaults are the paper's Table 1 and MJRL's NPG defaults.

    Fields:
        policy_hidden_dims: policy mean MLP widths (Table 1: (64, 64)).
        init_log_std, min_log_std, max_log_std: initial log σ (Appendix B: −1) and MJRL's clamp [−3, 1].
        value_hidden_dims: value MLP widths (Table 1: (128, 128)).
        gamma, gae_lambda: discount γ = 0.995 and GAE λ = 0.97 (Table 1).
        step_size: normalized NPG step size δ = 0.05 (Table 1); the step's KL is about δ / 2.
        cg_iters, cg_damping: conjugate-gradient iterations and damping λ_d of (F + λ_d I) (MJRL: 10, 1e-4).
        value_lr, value_weight_decay, value_batch_size, value_epochs: the baseline's Adam fit (MJRL: 1e-3, 1e-3,
            128, 1).

    Raises:
        ConfigError: naming the key ``npg.<field>``: a non-finite float; cg_iters or value_batch_size < 1,
            value_epochs < 0; step_size or value_lr <= 0; gamma or gae_lambda outside [0, 1]; cg_damping or
            value_weight_decay < 0; init_log_std outside [min_log_std, max_log_std]; a hidden width < 1.
    """

    policy_hidden_dims: tuple[int, ...] = (64, 64)
    init_log_std: float = -1.0
    min_log_std: float = -3.0
    max_log_std: float = 1.0
    value_hidden_dims: tuple[int, ...] = (128, 128)
    gamma: float = 0.995
    gae_lambda: float = 0.97
    step_size: float = 0.05
    cg_iters: int = 10
    cg_damping: float = 1e-4
    value_lr: float = 1e-3
    value_weight_decay: float = 1e-3
    value_batch_size: int = 128
    value_epochs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_hidden_dims", tuple(self.policy_hidden_dims))
        object.__setattr__(self, "value_hidden_dims", tuple(self.value_hidden_dims))
        check_section(
            self,
            "npg.",
            at_least={"cg_iters": 1, "value_batch_size": 1, "value_epochs": 0},
            positive=("step_size", "value_lr"),
        )
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"config: key 'npg.{name}' must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("cg_damping", "value_weight_decay"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config: key 'npg.{name}' must be >= 0, got {getattr(self, name)!r}")
        if not self.min_log_std <= self.init_log_std <= self.max_log_std:
            raise ConfigError(
                f"config: key 'npg.init_log_std' must lie in [min_log_std={self.min_log_std}, "
                f"max_log_std={self.max_log_std}], got {self.init_log_std!r}"
            )
        for name in ("policy_hidden_dims", "value_hidden_dims"):
            if any(width < 1 for width in getattr(self, name)):
                raise ConfigError(f"config: key 'npg.{name}' must hold widths >= 1, got {getattr(self, name)!r}")

    @property
    def target_kl(self) -> float:
        """δ / 2: the mean KL(π_old ‖ π_new) one step reaches under the quadratic (Fisher) model of the KL."""
        return self.step_size / 2
