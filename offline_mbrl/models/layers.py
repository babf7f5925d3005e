"""Building blocks shared by the dynamics models: input normalizer, log-variance bounds, Gaussian NLL,
the residual Swish block and the GRU + head network of ADM and the bootstrapping RNN.

Sources: official ADMPO ``dynamics/arm.py`` and ``dynamics/arm_dynamics.py`` (ResBlock, soft clamp,
learned log-variance bounds, loss) and OfflineRL-Kit ``modules/dynamics_module.py`` (ensemble loss),
summarized in REFERENCE-algorithms.md sections 1.1 and 2.2.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.windows import WindowBatch
from ..errors import ConfigError
from ..model_configs import RecurrentConfig


def soft_clamp(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Differentiable clamp of ``x`` into (low, high): ``high - softplus(high - x)`` then ``low + softplus(· - low)``
    (official ADMPO ``soft_clamp``; MBPO/PETS log-variance bounds). Shapes broadcast."""
    x = high - F.softplus(high - x)
    return low + F.softplus(x - low)


def gaussian_nll(mean: Tensor, logvar: Tensor, target: Tensor) -> Tensor:
    """Per-sample Gaussian NLL without constants, averaged over the feature dim:
    ``mean_f[(μ − y)² e^{−logvar} + logvar]``, shapes (..., F) -> (...). The official ADM loss (Eq. 2 as coded)
    and OfflineRL-Kit's ensemble loss are means of this quantity."""
    return ((mean - target).pow(2) * torch.exp(-logvar) + logvar).mean(dim=-1)


class Normalizer(nn.Module):
    """Z-scores model inputs with dataset statistics stored as buffers (saved in checkpoints).

    ``set_stats`` takes ``TransitionDataset.normalization_stats()``: obs_mean/obs_std (D,), action_mean/action_std (A,).
    """

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        for name, dim in (("obs", obs_dim), ("action", action_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def set_stats(self, stats: dict[str, np.ndarray]) -> None:
        """Copy ``stats`` into the buffers (device kept).

        Raises:
            ConfigError: a key is missing or has the wrong shape.
        """
        for name, buf in self.named_buffers():
            if name not in stats or np.shape(stats[name]) != tuple(buf.shape):
                raise ConfigError(
                    f"normalizer: statistics field '{name}' must have shape {tuple(buf.shape)}, "
                    f"got {None if name not in stats else np.shape(stats[name])}"
                )
            buf.copy_(torch.as_tensor(stats[name], dtype=buf.dtype))

    def obs(self, obs: Tensor) -> Tensor:
        """(..., D) -> (..., D) normalized."""
        return (obs - self.obs_mean) / self.obs_std

    def action(self, action: Tensor) -> Tensor:
        """(..., A) -> (..., A) normalized."""
        return (action - self.action_mean) / self.action_std


class LogVarBounds(nn.Module):
    """Learned soft bounds of the predicted log-variance (max init 0.5, min init −10, one per output dim F)
    and their regularizer ``0.01·(Σ max_logvar − Σ min_logvar)`` (MBPO/OfflineRL-Kit/official ADMPO)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.max_logvar = nn.Parameter(torch.full((dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((dim,), -10.0))

    def forward(self, raw_logvar: Tensor) -> Tensor:
        """(..., F) -> (..., F) soft-clamped between the learned bounds."""
        return soft_clamp(raw_logvar, self.min_logvar, self.max_logvar)

    def penalty(self) -> Tensor:
        """Scalar ``0.01·(Σ max_logvar − Σ min_logvar)``."""
        return 0.01 * (self.max_logvar.sum() - self.min_logvar.sum())


class ResBlock(nn.Module):
    """``LayerNorm(x + Dropout(Swish(Linear(x))))`` of width h (official ADMPO ``ResBlock``; Swish = SiLU)."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.dropout(F.silu(self.linear(x))))


class RecurrentGaussianNet(nn.Module):
    """GRU + residual head emitting a Gaussian over ``(Δs, r)`` (D + 1 dims), the network of ADM and of the
    bootstrapping RNN. Subclasses define ``window_outputs(batch) -> (mean, logvar, target)``, all (B, M, D + 1).

    Model-selection channel = the window position j (backtrack k = j + 1 for ADM, history length j + 1 for
    the bootstrapping RNN); holdout errors are reported per channel.
    """

    kind = ""
    selection = "any_step"  # fit.py: accept an epoch if some channel improves and the channel mean drops
    first_channel = 1

    def __init__(self, config: RecurrentConfig) -> None:
        super().__init__()
        self.config = config
        d, a, h = config.obs_dim, config.action_dim, config.hidden_dim
        self.normalizer = Normalizer(d, a)
        self.gru = nn.GRU(d + a, h, num_layers=config.gru_layers, batch_first=True)
        blocks = [ResBlock(h, config.dropout) for _ in range(config.head_blocks)]
        self.head = nn.Sequential(*blocks, nn.Linear(h, 2 * (d + 1)))
        self.logvar_bounds = LogVarBounds(d + 1)

    @property
    def window_length(self) -> int:
        """``config.window_length`` (= m, ``max_backtrack``)."""
        return self.config.window_length

    @property
    def rollout_dropout(self) -> bool:
        """``config.rollout_dropout``: roll-outs run in train mode (head dropout on) when True."""
        return self.config.rollout_dropout

    def gaussian(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """GRU outputs (..., h) -> mean (..., D + 1), bounded logvar (..., D + 1); last dim is the reward."""
        mean, raw_logvar = self.head(features).chunk(2, dim=-1)
        return mean, self.logvar_bounds(raw_logvar)

    def gru_step(self, inputs: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """One GRU step for N sequences: normalized inputs (N, D + A), hidden (L, N, h) -> features (N, h),
        new hidden (L, N, h). Used by the cached roll-out (DESIGN section 4)."""
        out, hidden = self.gru(inputs[:, None], hidden)
        return out[:, 0], hidden

    def window_outputs(self, batch: WindowBatch) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def loss(self, batch: WindowBatch) -> tuple[Tensor, dict[str, float]]:
        """Eq. 2 for all window positions in one pass: masked mean over (window, position) of ``gaussian_nll``
        plus the log-variance bound penalty. Masked positions contribute neither value nor gradient.

        Returns ``(loss, {"dynamics/nll": …})``.
        """
        mean, logvar, target = self.window_outputs(batch)  # (B, M, D+1) each
        nll = torch.where(batch.mask, gaussian_nll(mean, logvar, target), 0.0)  # (B, M)
        nll = nll.sum() / batch.mask.sum()
        return nll + self.logvar_bounds.penalty(), {"dynamics/nll": nll.item()}

    def prediction_errors(self, batch: WindowBatch) -> tuple[Tensor, Tensor]:
        """Squared error of the mean, averaged over the D + 1 output dims, per window and position:
        errors (B, M), valid mask (B, M). Model selection averages it over valid windows per position."""
        mean, _, target = self.window_outputs(batch)
        return (mean - target).pow(2).mean(dim=-1), batch.mask
