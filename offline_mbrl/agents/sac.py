"""Soft Actor-Critic, the policy optimizer of every algorithm here (ADM paper, Appendix C.3, Table 3).

Defaults follow Table 3 of the ADM paper and the official ADMPO / OfflineRL-Kit code
(REFERENCE-algorithms.md sections 1.3 and 2.1): two critics FC(256, 256) ReLU held as ONE batched
module (one forward, one backward, one optimizer step for both), a tanh-squashed Gaussian actor
FC(256, 256) ReLU with log-std clamped to [-5, 2], tau = 5e-3, gamma = 0.99, actor lr 1e-4, critic
lr 3e-4, Adam, batch 256, alpha fixed or learned with target entropy -|A|.

Losses are pure functions of explicit tensors returning ``(loss, metrics)``; :meth:`SAC.update`
only orchestrates (zero_grad, backward, step, Polyak averaging).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError
from ..persist import load_checkpoint
from .sac_config import SACConfig

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_ADAM_KW = {"foreach": True}


class BatchedLinear(nn.Module):
    """``E`` independent linear layers evaluated as one batched matmul.

    Input ``(B, in)`` (shared by all members) or ``(E, B, in)``; output ``(E, B, out)``.
    Initialised like ``nn.Linear`` (Kaiming-uniform weights, uniform bias), per member.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_members, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:  # (B, in) shared by every member
            return torch.einsum("bi,eio->ebo", x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)  # (E, B, in) @ (E, in, out)


class BatchedCritic(nn.Module):
    """``num_critics`` Q-networks FC(hidden) ReLU as one module: ``(B, D), (B, A) -> Q (E, B)``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dims: tuple[int, ...], num_critics: int = 2) -> None:
        super().__init__()
        dims = (obs_dim + action_dim, *hidden_dims, 1)
        self.layers = nn.ModuleList(BatchedLinear(num_critics, i, o) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        x = torch.cat([obs, action], dim=-1)  # (B, D + A)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))  # (E, B, h)
        return self.layers[-1](x).squeeze(-1)  # (E, B)


class TanhGaussianActor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy: ``obs (B, D) -> action (B, A)`` in ``[low, high]``.

    ``action = scale * tanh(u) + bias``, ``u ~ N(mu(s), sigma(s))``, log-std clamped to [-5, 2]
    (OfflineRL-Kit ``TanhDiagGaussian``). ``low``/``high`` are the action-space bounds ``(A,)``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        low: Tensor | None = None,
        high: Tensor | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim, self.hidden_dims = obs_dim, action_dim, tuple(hidden_dims)
        layers: list[nn.Module] = []
        last = obs_dim
        for h in hidden_dims:
            layers += [nn.Linear(last, h), nn.ReLU()]
            last = h
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(last, 2 * action_dim)
        low = torch.full((action_dim,), -1.0) if low is None else torch.as_tensor(low, dtype=torch.float32)
        high = torch.full((action_dim,), 1.0) if high is None else torch.as_tensor(high, dtype=torch.float32)
        self.register_buffer("action_scale", (high - low) / 2)
        self.register_buffer("action_bias", (high + low) / 2)

    def forward(
        self, obs: Tensor, deterministic: bool = False, with_log_prob: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Return ``(action (B, A), log_prob (B,) or None)``; log-prob includes the tanh correction."""
        mu, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        if deterministic:
            return torch.tanh(mu) * self.action_scale + self.action_bias, None
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        u = mu + std * torch.randn_like(mu)
        action = torch.tanh(u)
        log_prob = None
        if with_log_prob:
            # log N(u; mu, std) - sum log(scale * (1 - tanh(u)^2)), the second term in a stable form
            gauss = (-0.5 * ((u - mu) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
            squash = (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1) + self.action_scale.log().sum()
            log_prob = gauss - squash
        return action * self.action_scale + self.action_bias, log_prob

    def file_state(self) -> dict:
        """A standalone actor file (weights, sizes, action bounds), loadable with ``weights_only=True``."""
        return {
            "actor": self.state_dict(),
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden_dims": list(self.hidden_dims),
        }


# ---------------------------------------------------------------------------------------- losses
#: ``target(rewards (B,), terminals (B,) bool, next_q (E, B), next_log_prob (B,), alpha, gamma) -> y (B,)``: the
#: Bellman target of the critics, the hook through which an algorithm penalizes it (MOBILE)
BellmanTarget = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, float], Tensor]


def soft_bellman_target(
    rewards: Tensor, terminals: Tensor, next_q: Tensor, next_log_prob: Tensor, alpha: Tensor, gamma: float
) -> Tensor:
    """SAC's soft target ``y = r + gamma (1 - d) (min_e Q'_e(s', a') - alpha log pi(a'|s'))`` (B,), ``a' ~ pi(s')``;
    ``next_q (E, B)`` from the target critics, ``rewards``/``terminals``/``next_log_prob (B,)``."""
    soft_v = next_q.min(dim=0).values - alpha * next_log_prob
    return rewards + gamma * (1.0 - terminals.to(rewards.dtype)) * soft_v  # (B,)


def critic_loss(
    q_pred: Tensor,
    rewards: Tensor,
    terminals: Tensor,
    next_q: Tensor,
    next_log_prob: Tensor,
    alpha: Tensor,
    gamma: float,
    target: BellmanTarget = soft_bellman_target,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Bellman loss for all critics at once: sum over critics of the MSE to ``target(...)`` (B,), computed without
    gradients (default :func:`soft_bellman_target`).

    ``q_pred (E, B)`` current Q of every critic; ``next_q (E, B)`` target critics at ``(s', a')``,
    ``a' ~ pi(s')``; ``next_log_prob (B,)``; ``rewards``/``terminals (B,)``.
    """
    with torch.no_grad():
        y = target(rewards, terminals, next_q, next_log_prob, alpha, gamma)  # (B,)
    loss = (q_pred - y).pow(2).mean(dim=1).sum()
    return loss, {"train/critic_loss": loss.detach(), "train/q_mean": q_pred.detach().mean()}


def actor_loss(q_new: Tensor, log_prob: Tensor, alpha: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """``mean(alpha log pi(a|s) - min_e Q_e(s, a))`` with ``a ~ pi(s)`` reparameterised; ``q_new (E, B)``."""
    loss = (alpha * log_prob - q_new.min(dim=0).values).mean()
    return loss, {"train/actor_loss": loss.detach(), "train/entropy": -log_prob.detach().mean()}


def alpha_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Temperature loss ``-log_alpha * mean(log pi + target_entropy)`` (SAC v2, learned alpha)."""
    loss = -(log_alpha * (log_prob.detach() + target_entropy)).mean()
    return loss, {"train/alpha_loss": loss.detach()}


# ---------------------------------------------------------------------------------------- agent
class SAC(nn.Module):
    """SAC agent: actor, batched twin critics and their target, temperature, and all optimizers.

    Args:
        obs_dim, action_dim: D and A.
        config: :class:`SACConfig`.
        action_low, action_high: action-space bounds ``(A,)`` (default [-1, 1]).
        device: torch device of every parameter and of the tensors passed to :meth:`update`.

    :meth:`state_dict` holds networks, target, optimizers and ``log_alpha``, so a loaded agent
    continues training exactly (the caller checkpoints RNG states and counters).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: SACConfig = SACConfig(),
        action_low: Tensor | None = None,
        action_high: Tensor | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        self.config = config
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.target_entropy = -float(action_dim)
        self.actor = TanhGaussianActor(obs_dim, action_dim, config.hidden_dims, action_low, action_high)
        self.critic = BatchedCritic(obs_dim, action_dim, config.hidden_dims)
        self.critic_target = BatchedCritic(obs_dim, action_dim, config.hidden_dims)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.alpha)), requires_grad=config.auto_alpha)
        self.to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, **_ADAM_KW)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, **_ADAM_KW)
        self.alpha_optim = (
            torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, **_ADAM_KW) if config.auto_alpha else None
        )
        self._target_params = list(self.critic_target.parameters())
        self._online_params = list(self.critic.parameters())

    @property
    def device(self) -> torch.device:
        return self.log_alpha.device

    @property
    def alpha(self) -> Tensor:
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions ``(B, A)`` for observations ``(B, D)`` (a stochastic sample unless deterministic)."""
        return self.actor(obs, deterministic=deterministic, with_log_prob=False)[0]

    def update(self, batch: dict[str, Tensor], target: BellmanTarget = soft_bellman_target) -> dict[str, Tensor]:
        """One SAC update on ``batch`` with keys ``obs (B, D)``, ``actions (B, A)``, ``rewards (B,)``,
        ``next_obs (B, D)``, ``terminals (B,)``; the critics regress on ``target`` (default: SAC's soft target; an
        algorithm that penalizes the Bellman target passes its own, e.g. MOBILE). Returns detached metric tensors
        (no host sync)."""
        obs, actions = batch["obs"], batch["actions"]
        alpha = self.alpha
        with torch.no_grad():
            next_actions, next_log_prob = self.actor(batch["next_obs"])
            next_q = self.critic_target(batch["next_obs"], next_actions)
        loss_c, metrics = critic_loss(
            self.critic(obs, actions),
            batch["rewards"],
            batch["terminals"],
            next_q,
            next_log_prob,
            alpha,
            self.config.gamma,
            target,
        )
        self.critic_optim.zero_grad(set_to_none=True)
        loss_c.backward()
        self.critic_optim.step()

        new_actions, log_prob = self.actor(obs)
        self.critic.requires_grad_(False)
        loss_a, m = actor_loss(self.critic(obs, new_actions), log_prob, alpha)
        self.critic.requires_grad_(True)
        metrics |= m
        self.actor_optim.zero_grad(set_to_none=True)
        loss_a.backward()
        self.actor_optim.step()

        if self.alpha_optim is not None:
            loss_t, m = alpha_loss(self.log_alpha, log_prob, self.target_entropy)
            metrics |= m
            self.alpha_optim.zero_grad(set_to_none=True)
            loss_t.backward()
            self.alpha_optim.step()
            with torch.no_grad():
                self.log_alpha.clamp_(max=0.0)  # alpha <= 1, as OfflineRL-Kit
        metrics["train/alpha"] = alpha

        with torch.no_grad():  # Polyak averaging of every target parameter in one fused call
            torch._foreach_lerp_(self._target_params, self._online_params, self.config.tau)
        return metrics

    def actor_lr_scheduler(self, epochs: int) -> torch.optim.lr_scheduler.CosineAnnealingLR | None:
        """The cosine annealing of the actor lr that ``config.lr_schedule`` asks for, over
        ``config.lr_schedule_epochs`` epochs (None: ``epochs``, the run's length); None when the schedule is off.
        The caller steps it once per epoch and checkpoints it."""
        if not self.config.lr_schedule:
            return None
        return torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_optim, self.config.lr_schedule_epochs or epochs)

    def full_state(self) -> dict:
        """Everything needed to continue training: networks, target, optimizers, alpha, config."""
        state = {
            "model": self.state_dict(),
            "actor_optim": self.actor_optim.state_dict(),
            "critic_optim": self.critic_optim.state_dict(),
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
        }
        if self.alpha_optim is not None:
            state["alpha_optim"] = self.alpha_optim.state_dict()
        return state

    def load_full_state(self, state: dict) -> None:
        """Inverse of :meth:`full_state` (the agent must have been built with the same sizes)."""
        self.load_state_dict(state["model"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        if self.alpha_optim is not None:
            self.alpha_optim.load_state_dict(state["alpha_optim"])


def load_actor(path, device: str | torch.device = "cpu") -> TanhGaussianActor:
    """Load an actor file written from :meth:`TanhGaussianActor.file_state` (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, unreadable or lacks actor fields.
    """
    state = load_checkpoint(path, device)
    try:
        actor = TanhGaussianActor(int(state["obs_dim"]), int(state["action_dim"]), tuple(state["hidden_dims"]))
        actor.load_state_dict(state["actor"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not an actor file ({exc})") from exc
    return actor.to(device).eval()
