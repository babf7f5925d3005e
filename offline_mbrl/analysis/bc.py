"""Behaviour cloning: a tanh-Gaussian policy fitted to a dataset's actions by maximum likelihood.

Stands in for the behaviour policy of a dataset when its collecting actor is not shipped (the calibration
analysis, ADM paper Section 4.3.3, rolls models out with "the behavior policy of the dataset"). The policy is
the SAC actor (``agents.sac.TanhGaussianActor``: FC(256, 256) ReLU, ``a = scale·tanh(u) + bias``,
``u ~ N(μ(s), σ(s))``, log σ clamped to [−5, 2]), so it samples like the collecting policy did. The loss is
the negative log-likelihood of the dataset action under that squashed Gaussian (the BC behaviour-policy fit
of BEAR/BRAC-style offline RL), computed with ``torch.distributions`` (Normal → TanhTransform →
AffineTransform). Actions on the bounds have infinite pre-tanh values, so they are evaluated at
``(1 − action_eps)`` of the half-range (the dataset itself is not changed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.distributions import AffineTransform, Independent, Normal, TanhTransform, TransformedDistribution
from tqdm.auto import tqdm

from ..agents.sac import LOG_STD_MAX, LOG_STD_MIN, TanhGaussianActor
from ..data.dataset import TransitionDataset
from ..errors import ConfigError, DatasetError
from ..persist import seeded


@dataclass(frozen=True)
class BCConfig:
    """Behaviour-cloning settings.

    Fields:
        hidden_dims: actor widths (SAC's FC(256, 256)).
        steps: gradient steps; batch_size: dataset rows per step (uniform, with replacement).
        learning_rate: Adam step size.
        action_eps: actions are evaluated at most ``1 − action_eps`` of the half-range from the centre.
        seed: seeds the initialization and the batches.

    Raises:
        ConfigError: ``steps``/``batch_size`` < 1, a hidden width < 1, ``learning_rate`` not a finite number > 0,
            or ``action_eps`` outside (0, 1).
    """

    hidden_dims: tuple[int, ...] = (256, 256)
    steps: int = 10_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    action_eps: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bc config: '{name}' must be >= 1, got {getattr(self, name)}")
        if any(width < 1 for width in self.hidden_dims):
            raise ConfigError(f"bc config: 'hidden_dims' must be widths >= 1, got {self.hidden_dims}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ConfigError(f"bc config: 'learning_rate' must be a finite number > 0, got {self.learning_rate}")
        if not 0.0 < self.action_eps < 1.0:
            raise ConfigError(f"bc config: 'action_eps' must be in (0, 1), got {self.action_eps}")


def action_distribution(actor: TanhGaussianActor, obs: Tensor) -> TransformedDistribution:
    """The actor's action distribution for obs (B, D): ``scale·tanh(N(μ, σ)) + bias`` over (B, A) actions."""
    mu, log_std = actor.head(actor.trunk(obs)).chunk(2, dim=-1)  # (B, A) each
    base = Independent(Normal(mu, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()), 1)
    return TransformedDistribution(base, [TanhTransform(), AffineTransform(actor.action_bias, actor.action_scale)])


def bc_loss(
    actor: TanhGaussianActor, obs: Tensor, actions: Tensor, action_eps: float = 1e-6
) -> tuple[Tensor, dict[str, float]]:
    """Mean negative log-likelihood (nats per action vector) of actions (B, A) given obs (B, D) under
    :func:`action_distribution` (actions clamped to ``bias ± (1 − action_eps)·scale``): the behaviour-cloning loss of
    the module docstring. Returns ``(loss (), {"bc/nll": loss as a float})``."""
    limit = actor.action_scale * (1.0 - action_eps)
    inside = torch.maximum(torch.minimum(actions - actor.action_bias, limit), -limit) + actor.action_bias
    nll = -action_distribution(actor, obs).log_prob(inside).mean()
    return nll, {"bc/nll": nll.item()}


def fit_bc(
    dataset: TransitionDataset,
    action_low: np.ndarray,
    action_high: np.ndarray,
    config: BCConfig = BCConfig(),
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> TanhGaussianActor:
    """Fit a ``TanhGaussianActor`` with action bounds (A,) ``action_low``/``action_high`` (the environment's
    action box) to ``dataset`` (obs -> actions) by maximum likelihood (:func:`bc_loss`, Adam on uniform batches).

    Returns:
        The actor in eval mode on ``device``.
    Raises:
        ConfigError: the bounds are not finite (A,) arrays with ``low < high``, A the dataset's action dim.
        DatasetError: a dataset action lies outside the bounds (the message names the source and the count).
    """
    bounds = np.asarray(action_low, dtype=np.float32), np.asarray(action_high, dtype=np.float32)
    shaped = all(b.shape == (dataset.action_dim,) and np.isfinite(b).all() for b in bounds)
    if not (shaped and (bounds[0] < bounds[1]).all()):
        raise ConfigError(
            f"{dataset.source}: fit_bc needs finite action bounds of shape ({dataset.action_dim},) with low < high, "
            f"got low {bounds[0].tolist()} and high {bounds[1].tolist()}"
        )
    low, high = (torch.as_tensor(bound, device=device) for bound in bounds)
    obs = torch.as_tensor(dataset.obs, device=device)  # (N, D)
    actions = torch.as_tensor(dataset.actions, device=device)  # (N, A)
    outside = int(((actions < low) | (actions > high)).any(dim=1).sum())
    if outside:
        raise DatasetError(
            f"{dataset.source}: {outside} rows of field 'actions' lie outside the action box "
            f"[{low.tolist()}, {high.tolist()}]"
        )
    generator = torch.Generator().manual_seed(config.seed)
    with seeded(config.seed, device):  # the actor's initial weights; the caller's random stream is kept
        actor = TanhGaussianActor(dataset.obs_dim, dataset.action_dim, config.hidden_dims, low, high).to(device)
        optimizer = torch.optim.Adam(actor.parameters(), lr=config.learning_rate)
        bar = tqdm(range(config.steps), desc="fit bc", disable=not progress, leave=False)
        for _ in bar:
            rows = torch.randint(len(dataset), (config.batch_size,), generator=generator).to(device)
            loss, metrics = bc_loss(actor, obs[rows], actions[rows], config.action_eps)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(nll=f"{metrics['bc/nll']:.3g}")
    return actor.eval()
