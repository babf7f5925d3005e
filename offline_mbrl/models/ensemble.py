"""Probabilistic ensemble dynamics model of MBPO/MOPO (REFERENCE-algorithms section 1.1, after OfflineRL-Kit
``nets/ensemble_linear.py``, ``modules/dynamics_module.py``, ``dynamics/ensemble_dynamics.py``).

E members (default 7, 5 elites), each an MLP 4 × 200 with Swish, computed together as one batched
``(E, B, ·)`` computation (``torch.baddbmm``; no loop over members). Each member outputs a Gaussian over
``(s' − s, r)`` with log-variance soft-clamped between learned bounds shared by all members. Inputs
``[s, a]`` are z-scored; targets are not. Roll-outs (MBPO/MOPO, ``EnsembleStepper``): all members predict in
one ``(E, B, ·)`` pass, each row samples from a random **elite** (never a non-elite), the penalty uses all
members (OfflineRL-Kit).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.windows import HistoryBatch, WindowBatch
from ..model_configs import EnsembleConfig
from .base import check_backtrack_sampling, check_history, to_state_space
from .layers import LogVarBounds, Normalizer, gaussian_nll


def _target(batch: WindowBatch) -> Tensor:
    """Length-1 windows -> regression target ``(s' − s, r)`` (B, D + 1)."""
    return torch.cat([batch.next_obs[:, 0] - batch.obs0, batch.rewards[:, :1]], dim=-1)


class EnsembleLinear(nn.Module):
    """E independent linear layers: x (E, B, in) -> (E, B, out). Weight (E, in, out) initialized
    ``trunc_normal(std = 1 / (2 √in))``, bias (E, 1, out) zero (OfflineRL-Kit ``EnsembleLinear``)."""

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int, weight_decay: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_dim))
        nn.init.trunc_normal_(self.weight, std=1.0 / (2.0 * math.sqrt(in_dim)))
        self.weight_decay = weight_decay

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def decay_loss(self) -> Tensor:
        """Scalar ``weight_decay · 0.5 · Σ W²``."""
        return self.weight_decay * 0.5 * self.weight.pow(2).sum()


class ProbabilisticEnsemble(nn.Module):
    """Probabilistic ensemble of E Gaussian MLPs with elite indices stored as a buffer (saved in checkpoints).

    Model-selection channel = the member: each member keeps its own best weights (``selection = "per_member"``,
    MBPO's 1 % rule in ``fit``), and the ``num_elites`` members with the lowest holdout MSE become elites.
    """

    kind = "ensemble"
    selection = "per_member"
    quantifiers = ("ensemble_std", "max_aleatoric")
    channel, first_channel = "member", 0
    backtrack_samplings = ()
    rollout_dropout = False  # no dropout: roll-outs run in eval mode

    def __init__(self, config: EnsembleConfig) -> None:
        super().__init__()
        self.config = config
        d, a, e = config.obs_dim, config.action_dim, config.ensemble_size
        widths = (d + a, *config.hidden_dims, 2 * (d + 1))
        self.normalizer = Normalizer(d, a)
        self.layers = nn.ModuleList(
            EnsembleLinear(e, i, o, wd) for i, o, wd in zip(widths[:-1], widths[1:], config.weight_decays)
        )
        self.logvar_bounds = LogVarBounds(d + 1)
        self.register_buffer("elites", torch.arange(config.num_elites))

    @property
    def window_length(self) -> int:
        """``config.window_length`` (= 1)."""
        return self.config.window_length

    @property
    def member_parameter_names(self) -> tuple[str, ...]:
        """State-dict keys whose leading dim is the member (selected per member by ``fit``)."""
        return tuple(f"layers.{name}" for name, _ in self.layers.named_parameters())

    def forward(self, obs: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """obs (B, D) and actions (B, A) shared by all members, or (E, B, D) and (E, B, A) one batch per member
        -> mean (E, B, D + 1) of ``(s' − s, r)``, bounded logvar (E, B, D + 1)."""
        x = torch.cat([self.normalizer.obs(obs), self.normalizer.action(actions)], dim=-1)
        if x.dim() == 2:
            x = x.expand(self.config.ensemble_size, -1, -1)  # (E, B, D+A)
        for layer in self.layers[:-1]:
            x = F.silu(layer(x))
        mean, raw_logvar = self.layers[-1](x).chunk(2, dim=-1)
        return mean, self.logvar_bounds(raw_logvar)

    def _member_batch(self, batch: WindowBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Length-1 windows, member-major (E·B rows) -> obs (E, B, D), actions (E, B, A), target (E, B, D + 1)."""
        e = self.config.ensemble_size
        return (
            batch.obs0.view(e, -1, self.config.obs_dim),
            batch.actions[:, 0].view(e, -1, self.config.action_dim),
            _target(batch).view(e, -1, self.config.obs_dim + 1),
        )

    def loss(self, batch: WindowBatch) -> tuple[Tensor, dict[str, float]]:
        """OfflineRL-Kit ensemble loss on member-major length-1 windows (rows e·B … (e+1)·B − 1 train member e):
        ``Σ_e mean_{b}[gaussian_nll] + Σ_layers decay + 0.01·(Σ max_logvar − Σ min_logvar)``.

        Returns ``(loss, {"dynamics/nll": …, "dynamics/decay": …})``.
        """
        obs, actions, target = self._member_batch(batch)
        mean, logvar = self(obs, actions)
        nll = gaussian_nll(mean, logvar, target).mean(dim=1).sum()
        decay = sum(layer.decay_loss() for layer in self.layers)
        return nll + decay + self.logvar_bounds.penalty(), {"dynamics/nll": nll.item(), "dynamics/decay": decay.item()}

    def prediction_errors(self, batch: WindowBatch) -> tuple[Tensor, Tensor]:
        """Squared error of every member's mean on the same B transitions, averaged over the D + 1 dims:
        errors (B, E), valid (B, E) (all true)."""
        mean, _ = self(batch.obs0, batch.actions[:, 0])  # (E, B, D+1)
        errors = (mean - _target(batch)).pow(2).mean(dim=-1).T  # (B, E)
        return errors, torch.ones_like(errors, dtype=torch.bool)

    def set_elites(self, holdout_errors: Tensor) -> None:
        """Make the ``num_elites`` members with the lowest holdout errors (E,) the elites (sorted indices)."""
        best = torch.argsort(torch.as_tensor(holdout_errors, device=self.elites.device))[: self.config.num_elites]
        self.elites.copy_(torch.sort(best).values)

    def stepper(self, history: HistoryBatch, backtrack_sampling: str = "trajectory") -> EnsembleStepper:
        """The roll-out stepper from the start states of histories of one state (B, 1, D); ``backtrack_sampling``
        is checked and ignored (no backtracking: each row draws an elite).

        Raises:
            ConfigError: the histories hold more than one state, or an unknown ``backtrack_sampling``.
        """
        check_backtrack_sampling(backtrack_sampling)
        check_history(self, history)
        return EnsembleStepper(self)


class EnsembleStepper:
    """Stateless: all E members predict (C = E); a row samples from a uniformly drawn elite. Build it with
    ``ProbabilisticEnsemble.stepper``."""

    shared_choice = False

    def __init__(self, model: ProbabilisticEnsemble) -> None:
        self.model = model

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, None]:
        """obs (b, D), action (b, A) -> mean, logvar (E, b, D+1) of every member, None (all available)."""
        mean, logvar = self.model(obs, action)  # (E, b, D+1)
        return to_state_space(mean, obs), logvar, None

    def choose(self, uniform: Tensor) -> Tensor:
        """Member index (b,) of a uniformly drawn elite per row."""
        elites = self.model.elites
        return elites[torch.clamp((uniform * len(elites)).long(), max=len(elites) - 1)]

    def sampled_candidates(self) -> Tensor:
        """(E,) bool, true for the elites (the only members ``choose`` returns)."""
        mask = torch.zeros(self.model.config.ensemble_size, dtype=torch.bool, device=self.model.elites.device)
        return mask.index_fill_(0, self.model.elites, True)

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        """Nothing to carry: the loop passes the kept next states as the next step's obs."""
