"""Model-based natural policy gradient, the policy optimizer of PAL and MAL (game-theoretic MBRL, seed 003:
Appendix B, Subroutine 1 and Table 1).

Source: the paper builds on MJRL's NPG (``mjrl/algos/npg_cg.py``, ``mjrl/algos/mbrl/model_based_npg.py``,
``mjrl/policies/gaussian_mlp.py``, ``mjrl/baselines/mlp_baseline.py``, ``mjrl/utils/process_samples.py``); this
module follows it, written for batched torch tensors:

* **Policy**: Gaussian with an MLP mean (64, 64, tanh; last layer scaled by 0.01 at init, as MJRL) and a learned
  diagonal, state-independent log-std initialised at −1 (σ = e⁻¹, Appendix B "Policy As Leader"), kept in
  [``min_log_std``, ``max_log_std``] = [−3, 1] (MJRL's clamp). Actions are not squashed (the environment clips).
* **Advantages**: GAE(γ = 0.995, λ = 0.97) on the trajectories (Table 1), with V(s') = 0 after a terminal and the
  value of the last next state bootstrapped where a trajectory was truncated (at H, or at a dropped non-finite
  model step); normalized to mean 0, std 1 over the batch (MJRL ``process_paths``).
* **Natural gradient** (Subroutine 1 lines 12-13): g = ∇θ mean(log πθ(a|s) Â); x = (F + λ_d I)⁻¹ g by conjugate
  gradient (10 iterations, damping λ_d = 1e-4, MJRL ``FIM_invert_args``) on Fisher-vector products, F the Hessian of
  the mean KL(π_old ‖ πθ) at θ_old (double back-propagation); θ ← θ + √(δ / gᵀx) x with the normalized step size
  δ = 0.05 (Table 1). The quadratic model of the KL then gives KL(π_old ‖ π_new) ≈ ½ αx F αx = δ / 2 (MJRL: the
  normalized step size is "twice the desired KL distance").
* **Value baseline** (Subroutine 1 line 14): an MLP (128, 128, ReLU) on ``clip(obs, −10, 10) / 10`` (MJRL's
  features without its time features: model trajectories start mid-episode), fitted after the policy step for
  ``value_epochs`` epochs of Adam (lr 1e-3, weight decay 1e-3, batches of 128; MJRL ``MLPBaseline`` as the
  paper's script builds it) to the discounted returns, bootstrapped with V(s') where a trajectory was truncated
  (MJRL's returns stop at the horizon with 0).

Shapes: N transitions (all trajectories, flat), T trajectories, H horizon, D obs dim, A action dim, P policy
parameters. Everything is one batched computation over the N transitions (GAE loops over the H steps only,
vectorized over trajectories); all tensors live on the learner's device. Random numbers come from explicit
``torch.Generator``s; the global RNG is never re-seeded.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConfigError, DivergenceError
from ..persist import seeded
from .npg_config import NPGConfig


def _mlp(sizes: tuple[int, ...], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class GaussianMLPPolicy(nn.Module):
    """π(a|s) = N(μθ(s), diag σ²): MLP mean with tanh, state-independent learned log σ (MJRL ``gaussian_mlp.MLP``).

    Args:
        obs_dim, action_dim: D and A.
        hidden_dims: mean MLP widths.
        init_log_std, min_log_std, max_log_std: initial log σ (A,) and its clamp (applied by ``clamp_log_std``).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden_dims: tuple[int, ...] = (64, 64),
        init_log_std: float = -1.0,
        min_log_std: float = -3.0,
        max_log_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.min_log_std, self.max_log_std = min_log_std, max_log_std
        self.mean_net = _mlp((obs_dim, *hidden_dims, action_dim), nn.Tanh)
        with torch.no_grad():
            for param in self.mean_net[-1].parameters():  # small initial means (MJRL)
                param.mul_(1e-2)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def forward(self, obs: Tensor) -> Tensor:
        """obs (B, D) -> mean action μθ(s) (B, A)."""
        return self.mean_net(obs)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """log πθ(a|s) (B,) of actions (B, A) at obs (B, D) (diagonal Gaussian, nats)."""
        z = (actions - self(obs)) / self.log_std.exp()
        return -0.5 * z.pow(2).sum(-1) - self.log_std.sum() - 0.5 * self.action_dim * math.log(2 * math.pi)

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Actions a ~ πθ(·|s) (B, A) for obs (B, D), without gradient; noise from ``generator`` (None: torch's
        default generator of obs's device)."""
        with torch.no_grad():
            mean = self(obs)
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            return mean + self.log_std.exp() * noise

    def sampler(self, generator: torch.Generator | None = None) -> Callable[[Tensor], Tensor]:
        """``obs (B, D) -> actions (B, A)`` drawing from the policy with ``generator`` (a roll-out policy)."""
        return lambda obs: self.sample(obs, generator)

    def deterministic(self) -> Callable[[Tensor], Tensor]:
        """``obs (B, D) -> μθ(s) (B, A)`` without gradient (evaluation, as MJRL's ``evaluation`` action)."""

        def act(obs: Tensor) -> Tensor:
            with torch.no_grad():
                return self(obs)

        return act

    def clamp_log_std(self) -> None:
        """Keep log σ in [min_log_std, max_log_std] (MJRL's ``set_param_values``)."""
        with torch.no_grad():
            self.log_std.clamp_(self.min_log_std, self.max_log_std)


def gaussian_kl(mean_old: Tensor, log_std_old: Tensor, mean_new: Tensor, log_std_new: Tensor) -> Tensor:
    """KL(N(μ_old, σ_old²) ‖ N(μ_new, σ_new²)) per row (B,) in nats, summed over the A diagonal dims: the closed form
    Σ_a log(σ_new/σ_old) + (σ_old² + (μ_old − μ_new)²) / (2 σ_new²) − ½ (MJRL ``gaussian_mlp.MLP.mean_kl``); the
    KL whose Hessian is the Fisher of the NPG step (seed 003, Subroutine 1 line 13).

    Args:
        mean_old, mean_new: (B, A). log_std_old, log_std_new: (A,) or (B, A).
    """
    var_old, var_new = (2 * log_std_old).exp(), (2 * log_std_new).exp()
    per_dim = log_std_new - log_std_old + (var_old + (mean_old - mean_new).pow(2)) / (2 * var_new) - 0.5
    return per_dim.sum(-1)


class ValueFunction(nn.Module):
    """V_ψ(s): MLP (ReLU) on the features ``clip(obs, −10, 10) / 10`` (MJRL ``MLPBaseline``): obs (B, D) -> (B,)."""

    def __init__(self, obs_dim: int, hidden_dims: tuple[int, ...] = (128, 128)) -> None:
        super().__init__()
        self.net = _mlp((obs_dim, *hidden_dims, 1), nn.ReLU)

    def forward(self, obs: Tensor) -> Tensor:
        """obs (B, D) -> V_ψ(s) (B,) (units of the discounted return)."""
        return self.net(obs.clamp(-10.0, 10.0) / 10.0).squeeze(-1)


@dataclass(frozen=True)
class TrajectoryBatch:
    """N flat transitions of T trajectories (any order), e.g. a model roll-out (``offline_mbrl.rollout``).

    Attributes:
        obs (N, D), actions (N, A), rewards (N,), next_obs (N, D): the transitions.
        terminals: (N,) bool, the trajectory ended in a terminal state here (V(s') = 0).
        trajectory_ids: (N,) int64 in 0…T − 1 (a trajectory's steps need not be contiguous).
        steps: (N,) int64, the step τ of the transition within its trajectory (0, 1, … without gaps).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    next_obs: Tensor
    terminals: Tensor
    trajectory_ids: Tensor
    steps: Tensor

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def check(self, obs_dim: int, action_dim: int) -> None:
        """Validate the batch for a learner with D = ``obs_dim`` and A = ``action_dim``, before any work is done.

        Raises:
            ConfigError: naming the field: the batch is empty; a field is not of its documented shape (obs, next_obs
                (N, D), actions (N, A), the rest (N,)); terminals is not bool or trajectory_ids/steps not int64 ≥ 0;
                a (trajectory, step) pair occurs twice or a trajectory's steps are not 0, 1, … without gaps (GAE
                would silently overwrite a row or cut the recursion there).
        """
        n = len(self)
        if n == 0:
            raise ConfigError("npg: the trajectory batch is empty (every roll-out ended before its first step)")
        shapes = {"obs": (n, obs_dim), "actions": (n, action_dim), "rewards": (n,), "next_obs": (n, obs_dim)}
        shapes |= {"terminals": (n,), "trajectory_ids": (n,), "steps": (n,)}
        for name, shape in shapes.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ConfigError(
                    f"npg: trajectory field '{name}' must have shape {shape}, got {tuple(getattr(self, name).shape)}"
                )
        if self.terminals.dtype != torch.bool:
            raise ConfigError(f"npg: trajectory field 'terminals' must be bool, got {self.terminals.dtype}")
        for name in ("trajectory_ids", "steps"):
            value = getattr(self, name)
            if value.dtype != torch.int64 or int(value.min()) < 0:
                raise ConfigError(
                    f"npg: trajectory field '{name}' must be int64 >= 0, got {value.dtype}, min {value.min().item()}"
                )
        self._check_steps()

    def _check_steps(self) -> None:
        """Raise ConfigError unless every trajectory's steps are 0, 1, …, last, each once (``check``)."""
        ids, steps = self.trajectory_ids, self.steps
        if torch.unique(ids * (int(steps.max()) + 1) + steps).numel() != len(self):
            raise ConfigError("npg: trajectory fields 'trajectory_ids' and 'steps' repeat a (trajectory, step) pair")
        counts = torch.bincount(ids)  # (T,) rows per trajectory
        last = torch.zeros_like(counts).scatter_reduce(0, ids, steps, "amax")  # (T,) its largest step
        gapped = torch.nonzero((counts > 0) & (counts != last + 1)).flatten()
        if len(gapped) > 0:
            raise ConfigError(
                f"npg: trajectory field 'steps' must run 0, 1, … without gaps; trajectories {gapped[:10].tolist()} skip"
            )


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminals: Tensor,
    trajectory_ids: Tensor,
    steps: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Generalized advantage estimation (Schulman et al. 2016, Eq. 16; MJRL ``compute_advantages``) on flat
    transitions, vectorized over trajectories (a loop over the H steps only).

    ``δ_t = r_t + γ (1 − terminal_t) V(s'_t) − V(s_t)`` and ``Â_t = δ_t + γλ Â_{t+1}`` inside a trajectory; the
    last recorded step of a trajectory has ``Â = δ`` (a terminal: V(s') = 0; a truncation: bootstrapped with V(s')).

    Args:
        rewards, values (V(s_t)), next_values (V(s'_t)): (N,) float.
        terminals: (N,) bool. trajectory_ids, steps: (N,) int64 (as ``TrajectoryBatch.check`` requires).
        gamma, lam: γ and λ (λ = 1: discounted return minus V(s_t), bootstrapped at truncations).

    Returns:
        Â (N,) in the input's row order.
    """
    num_traj = int(trajectory_ids.max()) + 1
    horizon = int(steps.max()) + 1
    flat = trajectory_ids * horizon + steps  # (N,) slot in the (T, H) grid
    delta = rewards + gamma * torch.where(terminals, torch.zeros_like(next_values), next_values) - values  # (N,)
    grid = torch.zeros(num_traj * horizon, dtype=delta.dtype, device=delta.device)
    present = torch.zeros(num_traj * horizon, dtype=torch.bool, device=delta.device)
    grid[flat], present[flat] = delta, True
    grid, present = grid.view(num_traj, horizon), present.view(num_traj, horizon)  # (T, H)
    advantages = torch.zeros_like(grid)
    running = torch.zeros(num_traj, dtype=delta.dtype, device=delta.device)  # Â_{t+1} (0 past the end)
    for t in range(horizon - 1, -1, -1):
        running = torch.where(present[:, t], grid[:, t] + gamma * lam * running, torch.zeros_like(running))
        advantages[:, t] = running
    return advantages.view(-1)[flat]


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Approximate solution x (P,) of ``A x = b`` for a symmetric positive definite A given as ``matvec`` (the
    standard linear CG, Nocedal & Wright Alg. 5.2, as TRPO Appendix C and MJRL ``cg_solve``, started at x = 0); seed
    003 Subroutine 1 line 13 uses it for x ≈ F⁻¹ g.

    Args:
        matvec: ``v (P,) -> A v (P,)``.
        b: the right-hand side (P,).
        iters: at most this many iterations (products with A).
        residual_tol: stop early once the squared residual ‖b − A x‖² is at most this.
    """
    x = torch.zeros_like(b)
    r, p = b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr <= residual_tol:
            break
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def _policy(obs_dim: int, action_dim: int, config: NPGConfig) -> GaussianMLPPolicy:
    """The policy ``config`` describes for D = ``obs_dim``, A = ``action_dim`` (weights from torch's CPU RNG)."""
    return GaussianMLPPolicy(
        obs_dim, action_dim, config.policy_hidden_dims, config.init_log_std, config.min_log_std, config.max_log_std
    )


def policy_from_state(state: dict, device: str | torch.device = "cpu") -> GaussianMLPPolicy:
    """The policy of an :meth:`NPG.state_dict` (its ``config``, ``dims`` and ``policy`` weights), in eval mode on
    ``device``: what ``runs.RunFolder.read_npg_policy`` reads from a PAL/MAL checkpoint.

    Raises:
        KeyError, TypeError, RuntimeError, ConfigError: ``state`` is not an NPG state (missing entries, another
            config's shapes); the caller names the file.
    """
    obs_dim, action_dim = (int(d) for d in state["dims"])
    policy = _policy(obs_dim, action_dim, NPGConfig(**state["config"]))
    policy.load_state_dict(state["policy"])
    return policy.to(device).eval()


class NPG:
    """Natural policy gradient learner with a value baseline (module docstring; paper Subroutine 1).

    Args:
        obs_dim, action_dim: D and A.
        config: ``NPGConfig``.
        device: where the policy, the value function and every tensor live.
        seed: initial weights are drawn in a scope seeded with it (the caller's random stream is kept).

    ``update`` does one NPG step and one value fit on a trajectory batch; ``state_dict``/``load_state_dict`` hold
    the policy, the value function and the value optimizer (with the generator the caller keeps, an exact resume).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        config: NPGConfig | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        self.config = config or NPGConfig()
        self.device = torch.device(device)
        self.obs_dim, self.action_dim = obs_dim, action_dim
        cfg = self.config
        with seeded(seed, "cpu"):
            self.policy = _policy(obs_dim, action_dim, cfg)
            self.value = ValueFunction(obs_dim, cfg.value_hidden_dims)
        self.policy.to(self.device)
        self.value.to(self.device)
        self.value_optimizer = torch.optim.Adam(
            self.value.parameters(), lr=cfg.value_lr, weight_decay=cfg.value_weight_decay
        )

    # ------------------------------------------------------------------ natural gradient pieces
    def fisher_operator(self, obs: Tensor) -> Callable[[Tensor], Tensor]:
        """``v (P,) -> (F + λ_d I) v (P,)``: F the Hessian of mean_s KL(π_old(·|s) ‖ πθ(·|s)) at θ = θ_old over obs
        (N, D), by double back-propagation (MJRL ``HVP``); v is over ``policy.parameters()`` in order. The KL's
        gradient graph is built once and reused by every product (one backward pass per product)."""
        params = list(self.policy.parameters())
        mean = self.policy(obs)
        kl = gaussian_kl(mean.detach(), self.policy.log_std.detach(), mean, self.policy.log_std).mean()
        flat = torch.cat([g.reshape(-1) for g in torch.autograd.grad(kl, params, create_graph=True)])

        def product(vector: Tensor) -> Tensor:
            hvp = torch.autograd.grad(flat @ vector, params, retain_graph=True)
            return torch.cat([h.reshape(-1) for h in hvp]) + self.config.cg_damping * vector

        return product

    def policy_gradient(self, obs: Tensor, actions: Tensor, advantages: Tensor) -> Tensor:
        """Vanilla policy gradient g = ∇θ mean(log πθ(a|s) Â) (P,) (Subroutine 1 line 12)."""
        objective = (self.policy.log_prob(obs, actions) * advantages).mean()
        grads = torch.autograd.grad(objective, list(self.policy.parameters()))
        return torch.cat([g.reshape(-1) for g in grads])

    def natural_step(self, obs: Tensor, actions: Tensor, advantages: Tensor) -> dict[str, float]:
        """One normalized NPG step on (obs (N, D), actions (N, A), advantages (N,)) (Subroutine 1 line 13):
        θ ← θ + √(δ / gᵀx) x with x = CG((F + λ_d I), g); then log σ is clamped.

        Returns:
            ``npg/kl`` (mean KL(π_old ‖ π_new), ≈ δ / 2), ``npg/surrogate_improvement`` (mean(ratio·Â) − mean(Â),
            MJRL's CPI surrogate), ``npg/alpha`` (the step length), ``npg/grad_norm`` (‖g‖), ``npg/g_dot_x``.

        Raises:
            DivergenceError: the gradient or the step is not finite (the policy is left unchanged).
        """
        with torch.no_grad():
            old_mean = self.policy(obs)
            old_log_std = self.policy.log_std.detach().clone()
            old_log_prob = self.policy.log_prob(obs, actions)
        g = self.policy_gradient(obs, actions, advantages)
        x = conjugate_gradient(self.fisher_operator(obs), g, self.config.cg_iters)
        g_dot_x = g @ x
        alpha = torch.sqrt(self.config.step_size / (g_dot_x.abs() + 1e-20))
        if not (torch.isfinite(g).all() and torch.isfinite(x).all() and torch.isfinite(alpha)):
            raise DivergenceError("npg: the policy gradient or its natural direction is not finite; no step taken")
        params = list(self.policy.parameters())
        with torch.no_grad():  # in place: each parameter keeps its own storage (a resumed learner computes alike)
            for param, step in zip(params, torch.split(alpha * x, [p.numel() for p in params])):
                param.add_(step.view_as(param))
        self.policy.clamp_log_std()
        with torch.no_grad():
            kl = gaussian_kl(old_mean, old_log_std, self.policy(obs), self.policy.log_std).mean()
            ratio = (self.policy.log_prob(obs, actions) - old_log_prob).exp()
            improvement = (ratio * advantages).mean() - advantages.mean()
        return {
            "npg/kl": kl.item(),
            "npg/surrogate_improvement": improvement.item(),
            "npg/alpha": alpha.item(),
            "npg/grad_norm": g.norm().item(),
            "npg/g_dot_x": g_dot_x.item(),
        }

    # ------------------------------------------------------------------ value baseline
    def fit_value(self, obs: Tensor, returns: Tensor, generator: torch.Generator | None = None) -> dict[str, float]:
        """``value_epochs`` epochs of Adam minibatch MSE regression of V(obs (N, D)) on returns (N,), in an order
        drawn from ``generator`` (MJRL ``MLPBaseline.fit``: ⌊N / batch⌋ − 1 batches per epoch, at least one).

        Returns:
            ``npg/value_error_before``, ``npg/value_error_after``: Σ(R − V)² / Σ R² on the whole batch.
        """
        cfg = self.config
        before = self._relative_error(obs, returns)
        n = len(returns)
        size = min(cfg.value_batch_size, n)
        num_batches = max(1, n // size - 1)
        for _ in range(cfg.value_epochs):
            order = torch.randperm(n, generator=generator, device=generator.device if generator else "cpu")
            order = order.to(obs.device)
            for i in range(num_batches):
                rows = order[i * size : (i + 1) * size]
                loss = (self.value(obs[rows]) - returns[rows]).pow(2).mean()
                self.value_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.value_optimizer.step()
        return {"npg/value_error_before": before, "npg/value_error_after": self._relative_error(obs, returns)}

    @torch.no_grad()
    def _relative_error(self, obs: Tensor, returns: Tensor) -> float:
        return ((returns - self.value(obs)).pow(2).sum() / (returns.pow(2).sum() + 1e-8)).item()

    # ------------------------------------------------------------------ one update
    def update(self, batch: TrajectoryBatch, generator: torch.Generator | None = None) -> dict[str, float]:
        """One model-based NPG update on sampled trajectories (Subroutine 1 lines 11-14): GAE advantages with the
        current V, the normalized natural step, then the value fit (order drawn from ``generator``).

        Returns:
            ``natural_step``'s and ``fit_value``'s metrics, ``npg/num_samples`` (N), ``npg/num_trajectories``,
            ``npg/mean_reward`` and ``npg/mean_return`` (undiscounted model return per trajectory).

        Raises:
            ConfigError: a malformed batch, or one of other dims than the learner's (``TrajectoryBatch.check``).
            DivergenceError: non-finite rewards, advantages or gradient.
        """
        batch.check(self.obs_dim, self.action_dim)
        cfg = self.config
        obs, next_obs = batch.obs.to(self.device), batch.next_obs.to(self.device)
        actions, rewards = batch.actions.to(self.device), batch.rewards.to(self.device)
        terminals = batch.terminals.to(self.device)
        ids, steps = batch.trajectory_ids.to(self.device), batch.steps.to(self.device)
        if not torch.isfinite(rewards).all():
            raise DivergenceError("npg: the trajectory rewards hold NaN/inf")
        with torch.no_grad():
            values, next_values = self.value(obs), self.value(next_obs)
        advantages = gae(rewards, values, next_values, terminals, ids, steps, cfg.gamma, cfg.gae_lambda)
        returns = gae(rewards, values, next_values, terminals, ids, steps, cfg.gamma, 1.0) + values
        normalized = (advantages - advantages.mean()) / (advantages.std(unbiased=False) + 1e-6)
        metrics = self.natural_step(obs, actions, normalized)
        metrics.update(self.fit_value(obs, returns, generator))
        num_traj = int(torch.unique(ids).numel())
        metrics.update(
            {
                "npg/num_samples": float(len(rewards)),
                "npg/num_trajectories": float(num_traj),
                "npg/mean_reward": rewards.mean().item(),
                "npg/mean_return": rewards.sum().item() / num_traj,
                "npg/log_std_mean": self.policy.log_std.mean().item(),
            }
        )
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Policy, value function, value optimizer and the config (``torch.load(weights_only=True)``-safe)."""
        return {
            "policy": self.policy.state_dict(),
            "value": self.value.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "config": asdict(self.config),
            "dims": [self.obs_dim, self.action_dim],
        }

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`.

        Raises:
            CheckpointError: the state was made with other dims or another config (names the differing keys).
        """
        try:
            saved = NPGConfig(**state["config"])
        except (KeyError, TypeError, ConfigError) as exc:
            raise CheckpointError(f"npg: the checkpoint's config cannot be read ({exc})") from exc
        differing = [f.name for f in fields(NPGConfig) if getattr(saved, f.name) != getattr(self.config, f.name)]
        if list(state.get("dims", [])) != [self.obs_dim, self.action_dim] or differing:
            raise CheckpointError(
                f"npg: checkpoint made with dims {state.get('dims')} and other npg keys {differing}; this learner "
                f"has dims {[self.obs_dim, self.action_dim]}"
            )
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
