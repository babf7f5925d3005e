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

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import CheckpointError
from ..persist import load_checkpoint
from .sac_config import SACConfig

if TYPE_CHECKING:
    from ..seeds import SeedStreams

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_ADAM_KW = {"foreach": True}


class BatchedLinear(nn.Module):
    """``E`` independent linear layers evaluated as one batched matmul.

    Input ``(B, in)`` (shared by all members) or ``(E, B, in)``; output ``(E, B, out)``.
    Initialised like ``nn.Linear`` (Kaiming-uniform weights, uniform bias), per member.

    With ``num_seeds`` S (a seed batch, ``train --seeds``): weight ``(S, E, in, out)``, bias ``(S, E, 1, out)``, each
    seed's slice laid out as a single-seed layer's; input ``(S, B, in)`` (shared by a seed's members) or
    ``(S, E, B, in)``, output ``(S, E, B, out)``, all ``S·E`` members in one batched matmul.
    """

    def __init__(self, num_members: int, in_features: int, out_features: int, num_seeds: int | None = None) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        lead = (num_members,) if num_seeds is None else (num_seeds, num_members)
        self.weight = nn.Parameter(torch.empty(*lead, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*lead, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.dim() == 4:  # seed batch: (S, B, in) or (S, E, B, in) -> (S, E, B, out)
            num_seeds, num_members, size_in, size_out = self.weight.shape
            if x.dim() == 3:  # each seed's input shared by its members
                x = x.unsqueeze(1).expand(num_seeds, num_members, *x.shape[1:])
            x = x.reshape(num_seeds * num_members, -1, size_in)
            out = torch.baddbmm(self.bias.flatten(0, 1), x, self.weight.flatten(0, 1))
            return out.view(num_seeds, num_members, -1, size_out)
        if x.dim() == 2:  # (B, in) shared by every member
            return torch.einsum("bi,eio->ebo", x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)  # (E, B, in) @ (E, in, out)


class SeedLinear(nn.Module):
    """``S`` independent ``nn.Linear`` layers, one per seed of a seed batch: weight ``(S, out, in)``, bias ``(S, out)``
    (seed ``i``'s slice is an ``nn.Linear``'s state); input ``(S, B, in)``, output ``(S, B, out)`` in one batched
    matmul. Initialised like ``nn.Linear``, per seed."""

    def __init__(self, num_seeds: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(num_seeds, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_seeds, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))  # (S, B, out)


class BatchedCritic(nn.Module):
    """``num_critics`` Q-networks FC(hidden) ReLU as one module: ``(B, D), (B, A) -> Q (E, B)``; with ``num_seeds`` S,
    one such set per seed: ``(S, B, D), (S, B, A) -> Q (S, E, B)``."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        num_critics: int = 2,
        num_seeds: int | None = None,
    ) -> None:
        super().__init__()
        dims = (obs_dim + action_dim, *hidden_dims, 1)
        self.layers = nn.ModuleList(BatchedLinear(num_critics, i, o, num_seeds) for i, o in zip(dims[:-1], dims[1:]))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        x = torch.cat([obs, action], dim=-1)  # (B, D + A) or (S, B, D + A)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))  # (E, B, h) or (S, E, B, h)
        return self.layers[-1](x).squeeze(-1)  # (E, B) or (S, E, B)


class TanhGaussianActor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy: ``obs (B, D) -> action (B, A)`` in ``[low, high]``.

    ``action = scale * tanh(u) + bias``, ``u ~ N(mu(s), sigma(s))``, log-std clamped to [-5, 2]
    (OfflineRL-Kit ``TanhDiagGaussian``). ``low``/``high`` are the action-space bounds ``(A,)``.

    With ``num_seeds`` S (a seed batch): one actor per seed (:class:`SeedLinear` layers, bounds ``(S, A)``),
    ``obs (S, B, D) -> action (S, B, A)``; seed ``i``'s slice of every parameter and buffer is a single actor's state.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...],
        low: Tensor | None = None,
        high: Tensor | None = None,
        num_seeds: int | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim, self.hidden_dims = obs_dim, action_dim, tuple(hidden_dims)

        def linear(size_in: int, size_out: int) -> nn.Module:
            return nn.Linear(size_in, size_out) if num_seeds is None else SeedLinear(num_seeds, size_in, size_out)

        layers: list[nn.Module] = []
        last = obs_dim
        for h in hidden_dims:
            layers += [linear(last, h), nn.ReLU()]
            last = h
        self.trunk = nn.Sequential(*layers)
        self.head = linear(last, 2 * action_dim)
        low = torch.full((action_dim,), -1.0) if low is None else torch.as_tensor(low, dtype=torch.float32)
        high = torch.full((action_dim,), 1.0) if high is None else torch.as_tensor(high, dtype=torch.float32)
        scale, bias = (high - low) / 2, (high + low) / 2
        if num_seeds is not None:
            scale, bias = scale.expand(num_seeds, action_dim).clone(), bias.expand(num_seeds, action_dim).clone()
        self.register_buffer("action_scale", scale)
        self.register_buffer("action_bias", bias)

    def forward(
        self, obs: Tensor, deterministic: bool = False, with_log_prob: bool = True, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Return ``(action (B, A), log_prob (B,) or None)``; log-prob includes the tanh correction. ``noise``: the
        standard normal draws of the sample, shaped as the action (default: drawn from torch's stream). A seed batch
        takes and returns a leading seed dim."""
        mu, log_std = self.head(self.trunk(obs)).chunk(2, dim=-1)
        scale, bias = self.action_scale.unsqueeze(-2), self.action_bias.unsqueeze(-2)  # (1, A) or (S, 1, A)
        if deterministic:
            return torch.tanh(mu) * scale + bias, None
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        u = mu + std * (torch.randn_like(mu) if noise is None else noise)
        action = torch.tanh(u)
        log_prob = None
        if with_log_prob:
            # log N(u; mu, std) - sum log(scale * (1 - tanh(u)^2)), the second term in a stable form
            gauss = (-0.5 * ((u - mu) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
            squash = (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1) + self.action_scale.log().sum(-1, True)
            log_prob = gauss - squash
        return action * scale + bias, log_prob

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

# Every loss takes an optional leading seed dim S (a seed batch) on all its tensors and then returns one value per
# seed (S,); the update sums them, so each seed's gradient is that of its own loss.


def soft_bellman_target(
    rewards: Tensor, terminals: Tensor, next_q: Tensor, next_log_prob: Tensor, alpha: Tensor, gamma: float
) -> Tensor:
    """SAC's soft target ``y = r + gamma (1 - d) (min_e Q'_e(s', a') - alpha log pi(a'|s'))`` (B,), ``a' ~ pi(s')``;
    ``next_q (E, B)`` from the target critics, ``rewards``/``terminals``/``next_log_prob (B,)``."""
    soft_v = next_q.min(dim=-2).values - alpha * next_log_prob
    return rewards + gamma * (1.0 - terminals.to(rewards.dtype)) * soft_v  # (B,)


def per_seed_target(targets: Sequence[BellmanTarget]) -> BellmanTarget:
    """One :data:`BellmanTarget` per seed of a seed batch as one target over ``(S, ...)`` tensors: seed ``i``'s rows go
    through ``targets[i]`` (a loop over seeds; e.g. MOBILE's target holds each seed's own penalty)."""

    def target(
        rewards: Tensor, terminals: Tensor, next_q: Tensor, next_log_prob: Tensor, alpha: Tensor, gamma: float
    ) -> Tensor:
        return torch.stack(
            [t(rewards[i], terminals[i], next_q[i], next_log_prob[i], alpha[i], gamma) for i, t in enumerate(targets)]
        )

    return target


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
    loss = (q_pred - y.unsqueeze(-2)).pow(2).mean(dim=-1).sum(dim=-1)
    return loss, {"train/critic_loss": loss.detach(), "train/q_mean": q_pred.detach().flatten(-2).mean(-1)}


def actor_loss(q_new: Tensor, log_prob: Tensor, alpha: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """``mean(alpha log pi(a|s) - min_e Q_e(s, a))`` with ``a ~ pi(s)`` reparameterised; ``q_new (E, B)``."""
    loss = (alpha * log_prob - q_new.min(dim=-2).values).mean(-1)
    return loss, {"train/actor_loss": loss.detach(), "train/entropy": -log_prob.detach().mean(-1)}


def alpha_loss(log_alpha: Tensor, log_prob: Tensor, target_entropy: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Temperature loss ``-log_alpha * mean(log pi + target_entropy)`` (SAC v2, learned alpha); ``log_alpha`` scalar,
    or ``(S, 1)`` in a seed batch."""
    loss = -(log_alpha * (log_prob.detach() + target_entropy)).mean(-1)
    return loss, {"train/alpha_loss": loss.detach()}


def _per_row(x: Tensor) -> Tensor:
    """A per-seed value ``(S,)`` as ``(S, 1)`` to broadcast over a seed's rows; a scalar stays a scalar."""
    return x.unsqueeze(-1) if x.dim() else x


def _total(loss: Tensor) -> Tensor:
    """The sum over seeds of per-seed losses ``(S,)`` (a scalar loss as it is): what ``backward`` runs on."""
    return loss.sum() if loss.dim() else loss


# ---------------------------------------------------------------------------------------- agent
class SAC(nn.Module):
    """SAC agent: actor, batched twin critics and their target, temperature, and all optimizers.

    Args:
        obs_dim, action_dim: D and A.
        config: :class:`SACConfig`.
        action_low, action_high: action-space bounds ``(A,)`` (default [-1, 1]).
        device: torch device of every parameter and of the tensors passed to :meth:`update`.
        num_seeds: None for one agent; S for a **seed batch** (``train --seeds``): S independent agents whose
            actors, critics, targets and temperatures carry a leading seed dim (``log_alpha (S,)``; seed ``i``'s slice
            of every tensor is a single agent's), updated together in one batched computation. Each seed's loss
            touches only its slice and the update sums the per-seed losses, so gradients, Adam (elementwise) and
            Polyak averaging stay per seed. Batches and results then carry the seed dim: ``obs (S, B, D)`` etc.
        streams: a seed batch's per-seed random streams (``seeds.SeedStreams``): the policy noise of seed ``i`` is
            drawn from stream ``i`` in the order a single-seed update draws it, so seed ``i`` updates as a single
            agent of that stream would (to float rounding). None: noise from torch's stream.
        compile: ``torch.compile`` the actor and both critic modules in place (``nn.Module.compile``; the state dict
            is unchanged). The policy noise is then drawn outside the compiled code from the same stream as the eager
            agent's, so results equal the eager agent's to float rounding. Off by default: on this project's CPU it
            was not faster (``benchmarks/README.md``); the eager agent is the reference in tests.

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
        num_seeds: int | None = None,
        streams: SeedStreams | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if streams is not None and len(streams) != num_seeds:
            raise ValueError(f"SAC: {len(streams)} seed streams for num_seeds={num_seeds}")
        self.config, self.num_seeds, self.streams = config, num_seeds, streams
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.target_entropy = -float(action_dim)
        self.actor = TanhGaussianActor(obs_dim, action_dim, config.hidden_dims, action_low, action_high, num_seeds)
        self.critic = BatchedCritic(obs_dim, action_dim, config.hidden_dims, num_seeds=num_seeds)
        self.critic_target = BatchedCritic(obs_dim, action_dim, config.hidden_dims, num_seeds=num_seeds)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        log_alpha = torch.full((num_seeds,) if num_seeds else (), math.log(config.alpha))
        self.log_alpha = nn.Parameter(log_alpha, requires_grad=config.auto_alpha)
        self.to(device)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, **_ADAM_KW)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, **_ADAM_KW)
        self.alpha_optim = (
            torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, **_ADAM_KW) if config.auto_alpha else None
        )
        self._target_params = list(self.critic_target.parameters())
        self._online_params = list(self.critic.parameters())
        self.compiled = compile
        if compile:
            for module in (self.actor, self.critic, self.critic_target):
                module.compile()

    @property
    def device(self) -> torch.device:
        return self.log_alpha.device

    @property
    def alpha(self) -> Tensor:
        """The temperature: a scalar, or ``(S,)`` in a seed batch."""
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions ``(B, A)`` for observations ``(B, D)`` (a stochastic sample unless deterministic); a seed batch
        maps ``(S, B, D) -> (S, B, A)``."""
        noise = None if deterministic else self._noise(obs.shape[-2])
        return self.actor(obs, deterministic=deterministic, with_log_prob=False, noise=noise)[0]

    def _noise(self, rows: int) -> Tensor | None:
        """The policy's standard normal draws for ``rows`` samples: ``(S, rows, A)`` from the seed streams, else
        ``(rows, A)`` from torch's stream when compiled (drawn as the eager actor draws them); otherwise None (the
        actor draws)."""
        if self.streams is not None:
            return self.streams.randn(rows, self.action_dim, device=self.device)
        if self.compiled:
            return torch.randn(rows, self.action_dim, device=self.device)
        return None

    def update(
        self,
        batch: dict[str, Tensor],
        target: BellmanTarget | Sequence[BellmanTarget] = soft_bellman_target,
        update_actor: bool = True,
    ) -> dict[str, Tensor]:
        """One SAC update on ``batch`` with keys ``obs (B, D)``, ``actions (B, A)``, ``rewards (B,)``,
        ``next_obs (B, D)``, ``terminals (B,)``; the critics regress on ``target`` (default: SAC's soft target; an
        algorithm that penalizes the Bellman target passes its own, e.g. MOBILE). Returns detached metric tensors
        (no host sync). ``update_actor=False`` updates the critics and their targets only: no actor or temperature
        step and no ``train/actor_loss``, ``train/entropy`` or ``train/alpha_loss`` metric (the official ADMPO
        ``actor_freq``: one actor step every ``actor_freq`` critic steps).

        A seed batch takes every field with a leading seed dim ``(S, B, ...)``, ``target`` as one target over the
        seed dim or one per seed (:func:`per_seed_target`), and returns metrics ``(S,)``.
        """
        if not callable(target):
            target = per_seed_target(target)
        obs, actions = batch["obs"], batch["actions"]
        alpha = self.alpha
        rows = obs.shape[-2]
        with torch.no_grad():
            next_actions, next_log_prob = self.actor(batch["next_obs"], noise=self._noise(rows))
            next_q = self.critic_target(batch["next_obs"], next_actions)
        loss_c, metrics = critic_loss(
            self.critic(obs, actions),
            batch["rewards"],
            batch["terminals"],
            next_q,
            next_log_prob,
            _per_row(alpha),
            self.config.gamma,
            target,
        )
        self.critic_optim.zero_grad(set_to_none=True)
        _total(loss_c).backward()
        self.critic_optim.step()
        if update_actor:
            metrics |= self._update_actor(obs, alpha, rows)
        metrics["train/alpha"] = alpha

        with torch.no_grad():  # Polyak averaging of every target parameter in one fused call
            torch._foreach_lerp_(self._target_params, self._online_params, self.config.tau)
        return metrics

    def _update_actor(self, obs: Tensor, alpha: Tensor, rows: int) -> dict[str, Tensor]:
        """The actor step and, when learned, the temperature step of :meth:`update`; their metrics."""
        new_actions, log_prob = self.actor(obs, noise=self._noise(rows))
        self.critic.requires_grad_(False)
        loss_a, metrics = actor_loss(self.critic(obs, new_actions), log_prob, _per_row(alpha))
        self.critic.requires_grad_(True)
        self.actor_optim.zero_grad(set_to_none=True)
        _total(loss_a).backward()
        self.actor_optim.step()

        if self.alpha_optim is not None:
            loss_t, m = alpha_loss(_per_row(self.log_alpha), log_prob, self.target_entropy)
            metrics |= m
            self.alpha_optim.zero_grad(set_to_none=True)
            _total(loss_t).backward()
            self.alpha_optim.step()
            with torch.no_grad():
                self.log_alpha.clamp_(max=0.0)  # alpha <= 1, as OfflineRL-Kit
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

    # ------------------------------------------------------------------ seed batch <-> single agents
    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        optims = {"actor_optim": self.actor_optim, "critic_optim": self.critic_optim}
        return optims | ({"alpha_optim": self.alpha_optim} if self.alpha_optim is not None else {})

    def seed_full_state(self, index: int) -> dict:
        """Seed ``index``'s agent of a seed batch as a single agent's :meth:`full_state` (same keys and shapes; copies,
        so the file holds only that seed): what a seed's run folder checkpoints.

        Raises:
            ValueError: not a seed batch, or ``index`` out of range.
        """
        self._check_seed(index)

        def one(value: Tensor) -> Tensor:  # Adam's step count is one scalar shared by all seeds
            return value[index].clone() if value.dim() else value.clone()

        state = {
            "model": {k: v[index].clone() for k, v in self.state_dict().items()},
            "config": asdict(self.config),
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
        }
        for name, optim in self._optimizers().items():
            full = optim.state_dict()
            per_param = {i: {k: one(v) for k, v in st.items()} for i, st in full["state"].items()}
            state[name] = {"state": per_param, "param_groups": copy.deepcopy(full["param_groups"])}
        return state

    def load_seed_full_states(self, states: Sequence[dict]) -> None:
        """Load one single agent's :meth:`full_state` per seed (e.g. each seed's checkpoint, or fresh agents built
        in each seed's stream) into this seed batch: every tensor is the stack of theirs. The optimizers' step
        counts and learning rates are taken from seed 0's (a seed batch steps all seeds together).

        Raises:
            ValueError: not a seed batch, or not one state per seed.
            CheckpointError: states of other sizes than this agent, or of seeds at different optimizer steps.
        """
        if self.num_seeds is None or len(states) != self.num_seeds:
            raise ValueError(f"SAC.load_seed_full_states: {len(states)} states for num_seeds={self.num_seeds}")
        try:
            self.load_state_dict({k: torch.stack([st["model"][k] for st in states]) for k in states[0]["model"]})
            for name, optim in self._optimizers().items():
                parts = [st[name] for st in states]
                stacked = {}
                for i, first in parts[0]["state"].items():
                    stacked[i] = {
                        k: torch.stack([p["state"][i][k] for p in parts]) if v.dim() or k != "step" else v
                        for k, v in first.items()
                    }
                    if any(not torch.equal(p["state"][i]["step"], first["step"]) for p in parts):
                        raise CheckpointError(f"{name}: the seeds are at different optimizer steps")
                optim.load_state_dict({"state": stacked, "param_groups": parts[0]["param_groups"]})
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"SAC: per-seed states do not fit this seed batch ({exc})") from exc

    def seed_module_state(self, index: int, name: str = "actor") -> dict[str, Tensor]:
        """Seed ``index``'s slice of the module ``name`` (``actor``, ``critic``, ``critic_target``) as a single agent's
        module ``state_dict`` (views, not copies: for loading into a single agent's module, e.g. for a roll-out).

        Raises:
            ValueError: not a seed batch, or ``index`` out of range.
        """
        self._check_seed(index)
        return {k: v[index] for k, v in getattr(self, name).state_dict().items()}

    def _check_seed(self, index: int) -> None:
        if self.num_seeds is None or not 0 <= index < self.num_seeds:
            raise ValueError(f"SAC: seed index {index} is not in a seed batch of num_seeds={self.num_seeds}")


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
