"""Policy-aware transition weights for model learning: PMAC (recency) and TOM (occupancy matching).

Both return per-transition sample weights ``(N,)`` that are **normalized to sum to 1**: a sampling
distribution over the N dataset rows (TOM's official code resamples model minibatches and roll-out
starts with ``p = w / sum(w)``; TOM Section 5.2 / Fig. 3 plots bin means of ``w / sum(w)``). Multiply
by N for weights with mean 1 (a weighted mean loss ``mean(N * w * loss)``).

* PMAC (Wang, Wongkamjan, Huang, "Live in the Moment", 2022; seeds/000, Alg. 1, Eq. 4): each policy
  version's mass decays by the adaptation rate α when a newer version arrives; the newest keeps
  1 − α. Closed form in REFERENCE-algorithms.md section 4. Vectorized NumPy, float64.
* TOM (Ma et al., "Transition Occupancy Matching", 2022; seeds/001, Eq. 21-23, Alg. 2, Table A.2;
  official code ``kausiksivakumar/TOM`` at 4d196c3): a discriminator c(s, a, s') gives the log-ratio
  R = logit c; a dual Q trained with the χ² objective (Eq. 22) gives importance weights
  ξ = f*'(R + γ(1 − d)V(s') − Q(s, a)) (Eq. 23). Torch, on the device of the input tensors.

Shape letters: N buffer rows, T target rows, S episode-initial states, B batch, D obs dim, A action dim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import Tensor, nn

from ..data.dataset import TransitionDataset
from ..errors import ConfigError, DatasetError, OfflineMBRLError
from ..persist import seeded

Policy = Callable[[Tensor], Tensor]
"""A target policy: ``policy(obs (B, D)) -> actions (B, A)``, on the obs' device; may sample."""


# ====================================================================== PMAC


@dataclass(frozen=True)
class PMACConfig:
    """PMAC policy-adaptation weights (seeds/000, Alg. 1 and Section D.1).

    Attributes:
        adaptation_rate: α in (0, 1); every older version's mass is multiplied by α per new version.
        steps_per_version: collection steps per policy version (Δ); PMAC updates its weights every
            250 interaction steps; TOM's re-implementation changes the policy about every env step.
        warmup_steps: rows with ``collection_step < warmup_steps`` form the initial exploration block
            (version 0, whatever its length; PMAC used 5000 random warm-up steps). 0: no block, version
            0 is the first ``steps_per_version`` steps.

    Raises:
        ConfigError: α outside (0, 1), ``steps_per_version < 1`` or ``warmup_steps < 0``.
    """

    adaptation_rate: float
    steps_per_version: int
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.adaptation_rate < 1.0:
            raise ConfigError(f"PMACConfig.adaptation_rate must lie in (0, 1), got {self.adaptation_rate}")
        if self.steps_per_version < 1:
            raise ConfigError(f"PMACConfig.steps_per_version must be >= 1, got {self.steps_per_version}")
        if self.warmup_steps < 0:
            raise ConfigError(f"PMACConfig.warmup_steps must be >= 0, got {self.warmup_steps}")


PMAC_PRESETS: dict[str, PMACConfig] = {
    # PMAC paper: α = 0.9 ("0.9 is the best rate", C.2), weights updated every 250 steps (D.1).
    "pmac": PMACConfig(adaptation_rate=0.9, steps_per_version=250),
    # TOM Table A.2 "PMAC decay rate 0.996", read as one policy version per collection step.
    "pmac-tom": PMACConfig(adaptation_rate=0.996, steps_per_version=1),
}


def pmac_config(name: str, **overrides: float) -> PMACConfig:
    """The preset ``name`` (``"pmac"`` or ``"pmac-tom"``) with fields replaced by ``overrides``.

    Raises:
        ConfigError: unknown preset name or field, or an invalid value (see PMACConfig).
    """
    if name not in PMAC_PRESETS:
        raise ConfigError(f"unknown PMAC preset '{name}'; known: {sorted(PMAC_PRESETS)}")
    known = {f.name for f in fields(PMACConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"PMAC preset '{name}': unknown field(s) {unknown}; known: {sorted(known)}")
    return replace(PMAC_PRESETS[name], **overrides)


def _check_index_array(values: np.ndarray, field: str) -> np.ndarray:
    """(N,) int64 copy of ``values``; DatasetError if empty, not 1-D, not integer or negative."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise DatasetError(f"PMAC: field '{field}' must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(f"PMAC: field '{field}' must hold integers, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise DatasetError(f"PMAC: field '{field}' holds negative value {int(arr.min())}")
    return arr.astype(np.int64)


def policy_versions(collection_step: np.ndarray, steps_per_version: int, warmup_steps: int = 0) -> np.ndarray:
    """Policy version of each row from its collection step.

    Rows with ``collection_step < warmup_steps`` are version 0 (the initial exploration block); the
    others are ``1 + (step - warmup_steps) // steps_per_version``, or ``step // steps_per_version``
    when ``warmup_steps == 0``.

    Args:
        collection_step: (N,) int, environment step at which each row was collected (any order).
        steps_per_version: Δ >= 1.
        warmup_steps: length of the initial block, >= 0.

    Returns:
        (N,) int64 versions.

    Raises:
        DatasetError: ``collection_step`` empty, not 1-D, not integer or negative.
        ConfigError: invalid ``steps_per_version`` or ``warmup_steps``.
    """
    PMACConfig(0.5, steps_per_version, warmup_steps)  # validates the two integers
    steps = _check_index_array(collection_step, "collection_step")
    if warmup_steps == 0:
        return steps // steps_per_version
    return np.where(steps < warmup_steps, 0, 1 + (steps - warmup_steps) // steps_per_version)


def pmac_version_weights(versions: np.ndarray, adaptation_rate: float) -> np.ndarray:
    """PMAC mixture weights of rows collected by policy versions ``versions`` (newest = max).

    Closed form of Alg. 1 / Eq. 4 (REFERENCE-algorithms.md section 4), with N the newest version and
    n_j the number of rows of version j:

        P(i) = (1 − α) · α^(N − j(i)) / n_{j(i)}   for j(i) >= 1,
        P(i) = α^N / n_0                           for version 0 (the initial block),

    version 0 starting with the whole mass 1 (Alg. 1 needs a starting mixture; TOM's
    ``utils.update_litm_prob`` starts from the uniform exploration pool). A version's mass is split
    equally among its rows (an implementation choice, as in TOM's code). Versions with no rows hold
    no mass and the result is renormalized (it sums to 1 exactly when every version 0..N has rows).
    Computed in log space, so α^(N − j) never underflows the newest rows.

    Args:
        versions: (N,) int >= 0, policy version of each row (any order).
        adaptation_rate: α in (0, 1).

    Returns:
        (N,) float64 weights summing to 1.

    Raises:
        DatasetError: ``versions`` empty, not 1-D, not integer or negative.
        ConfigError: α outside (0, 1).
    """
    PMACConfig(adaptation_rate, 1)  # validates α
    versions = _check_index_array(versions, "versions")
    counts = np.bincount(versions)  # (V,)
    version_ids = np.arange(len(counts))
    log_mass = (versions.max() - version_ids) * np.log(adaptation_rate)
    log_mass += np.where(version_ids == 0, 0.0, np.log1p(-adaptation_rate))
    log_weight = (log_mass - np.log(np.maximum(counts, 1)))[versions]  # (N,)
    weights = np.exp(log_weight - log_weight.max())
    return weights / weights.sum()


def pmac_weights(collection_step: np.ndarray, config: PMACConfig | str = "pmac") -> np.ndarray:
    """PMAC sample weights from each row's collection step (``policy_versions`` + ``pmac_version_weights``).

    For a TransitionDataset pass ``dataset.collection_step``, or ``np.arange(len(dataset))`` where it
    has none (rows are stored in collection order).

    Args:
        collection_step: (N,) int >= 0.
        config: a PMACConfig or a preset name (``"pmac"``, ``"pmac-tom"``).

    Returns:
        (N,) float64 weights summing to 1.

    Raises:
        DatasetError: bad ``collection_step``. ConfigError: unknown preset.
    """
    if isinstance(config, str):
        config = pmac_config(config)
    versions = policy_versions(collection_step, config.steps_per_version, config.warmup_steps)
    return pmac_version_weights(versions, config.adaptation_rate)


# ====================================================================== TOM: data


@dataclass(frozen=True)
class TransitionTensors:
    """Transitions as tensors on one device: the replay buffer or the target policy's transitions.

    Attributes:
        obs: (N, D) float32. actions: (N, A) float32. next_obs: (N, D) float32.
        terminals: (N,) float32 in {0, 1} (timeouts are not terminals).

    Raises:
        DatasetError: empty, wrong rank, row-count or obs/next_obs dim mismatch, mixed devices.
    """

    obs: Tensor
    actions: Tensor
    next_obs: Tensor
    terminals: Tensor

    def __post_init__(self) -> None:
        n = len(self.obs)
        for name, rank in (("obs", 2), ("actions", 2), ("next_obs", 2), ("terminals", 1)):
            value = getattr(self, name)
            if value.ndim != rank or len(value) != n or n == 0:
                raise DatasetError(
                    f"TransitionTensors: field '{name}' has shape {tuple(value.shape)}; "
                    f"expected rank {rank} and {n} (> 0) rows like 'obs'"
                )
            if value.device != self.obs.device:
                raise DatasetError(
                    f"TransitionTensors: field '{name}' is on {value.device}, 'obs' on {self.obs.device}"
                )
        if self.next_obs.shape[1] != self.obs.shape[1]:
            raise DatasetError(
                f"TransitionTensors: field 'next_obs' has dim {self.next_obs.shape[1]}, 'obs' has {self.obs.shape[1]}"
            )

    @classmethod
    def from_dataset(cls, dataset: TransitionDataset, device: torch.device | str) -> TransitionTensors:
        """The dataset's ``(obs, actions, next_obs, terminals)`` as float32 tensors on ``device``."""

        def put(arr: np.ndarray) -> Tensor:
            return torch.as_tensor(arr, dtype=torch.float32, device=device)

        return cls(put(dataset.obs), put(dataset.actions), put(dataset.next_obs), put(dataset.terminals))

    def __len__(self) -> int:
        return len(self.obs)

    @property
    def dims(self) -> tuple[int, int]:
        """(D, A): obs and action dims."""
        return int(self.obs.shape[1]), int(self.actions.shape[1])

    def take(self, index: Tensor | slice) -> TransitionTensors:
        """Rows ``index`` (B,) as a new TransitionTensors."""
        return TransitionTensors(self.obs[index], self.actions[index], self.next_obs[index], self.terminals[index])

    def sas(self, index: Tensor | slice = slice(None)) -> Tensor:
        """Discriminator input ``[s, a, s']`` of rows ``index``: (B, 2D + A)."""
        return torch.cat([self.obs[index], self.actions[index], self.next_obs[index]], dim=1)


def initial_obs(dataset: TransitionDataset, device: torch.device | str) -> Tensor:
    """The dataset's episode-initial states s0 (first row of each episode): (S, D) float32 on ``device``."""
    return torch.as_tensor(dataset.obs[dataset.episode_starts], dtype=torch.float32, device=device)


# ====================================================================== TOM: χ² pieces


def chi2_conjugate(y: Tensor) -> Tensor:
    """Fenchel conjugate of the χ² generator f(x) = ½(x − 1)²: f*(y) = ½y² + y, elementwise.

    As in TOM's official code (``smodice_pytorch.py``, ``--f chi``), without the branch for y < −1
    (where the conjugate over the ratio domain x >= 0 would be the constant −½). Shape-preserving.
    """
    return 0.5 * y**2 + y


def chi2_conjugate_grad(y: Tensor) -> Tensor:
    """f*'(y) = relu(y + 1): the optimal ratio x* = argmax_{x >= 0} x·y − f(x) (TOM Eq. 23).

    Equals the derivative of ``chi2_conjugate`` for y >= −1 and clips the ratio at 0 below.
    Shape-preserving.
    """
    return torch.relu(y + 1.0)


# ====================================================================== TOM: networks


class TransitionDiscriminator(nn.Module):
    """c(s, a, s') as a logit (TOM Eq. 21; official ``Discriminator_SAS``).

    Three ``Linear + Tanh`` trunks of width ``trunk_width`` for s, a and s', concatenated (3·width)
    → ``Linear(3·width, hidden) + Tanh`` → ``Linear(hidden, 1)``. PyTorch default init (as official).
    """

    def __init__(self, obs_dim: int, action_dim: int, trunk_width: int = 128, hidden: int = 256) -> None:
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.obs_trunk = nn.Sequential(nn.Linear(obs_dim, trunk_width), nn.Tanh())
        self.action_trunk = nn.Sequential(nn.Linear(action_dim, trunk_width), nn.Tanh())
        self.next_obs_trunk = nn.Sequential(nn.Linear(obs_dim, trunk_width), nn.Tanh())
        self.head = nn.Sequential(nn.Linear(3 * trunk_width, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, sas: Tensor) -> Tensor:
        """``sas`` (B, 2D + A) = ``[s, a, s']`` → logits (B,)."""
        obs, actions, next_obs = sas.split([self.obs_dim, self.action_dim, self.obs_dim], dim=1)
        features = torch.cat([self.obs_trunk(obs), self.action_trunk(actions), self.next_obs_trunk(next_obs)], dim=1)
        return self.head(features).squeeze(1)  # (B,)


class DualQNetwork(nn.Module):
    """Q(s, a) of TOM's dual objective (Eq. 22; official ``networks_pytorch.QNetwork``).

    MLP over ``[s, a]`` with ReLU hidden layers ``hidden`` (default 256 × 256) and a scalar output;
    Xavier-uniform weights and zero biases as in the official code.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        widths = (obs_dim + action_dim, *hidden)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        for module in self.net:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``obs`` (B, D), ``actions`` (B, A) → Q values (B,)."""
        return self.net(torch.cat([obs, actions], dim=1)).squeeze(1)


# ====================================================================== TOM: losses


def discriminator_loss(
    disc: Callable[[Tensor], Tensor],
    target_sas: Tensor,
    buffer_sas: Tensor,
    buffer_label: float = 0.0,
    grad_penalty_coef: float = 10.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """BCE of c(s, a, s') between target (label 1) and buffer (label ``buffer_label``) + gradient penalty.

    ``BCE(D(x_T), 1) + BCE(D(x_B), buffer_label) + coef · mean_b (‖∇_x D(x_mix,b)‖₂ − 1)²`` with
    ``x_mix = u·x_T + (1 − u)·x_B``, u ~ U(0, 1) per row (torch global RNG). Hard label 0 is TOM
    Eq. 21 (optimum c* = d^π / (d^π + d^D), so logit c* = log d^π/d^D); the official code uses 0.1.

    Args:
        disc: maps (B, 2D + A) to logits (B,).
        target_sas, buffer_sas: (B, 2D + A) each, same B.

    Returns:
        (scalar loss, metrics ``disc/bce``, ``disc/grad_penalty``, detached).
    """
    target_logits, buffer_logits = disc(target_sas), disc(buffer_sas)  # (B,), (B,)
    bce = F.binary_cross_entropy_with_logits(
        target_logits, torch.ones_like(target_logits)
    ) + F.binary_cross_entropy_with_logits(buffer_logits, torch.full_like(buffer_logits, buffer_label))
    mix_coef = torch.rand(len(target_sas), 1, device=target_sas.device)
    mix = (mix_coef * target_sas + (1.0 - mix_coef) * buffer_sas).requires_grad_(True)  # (B, 2D + A)
    (grad,) = torch.autograd.grad(disc(mix).sum(), mix, create_graph=True)
    grad_penalty = grad_penalty_coef * (grad.norm(dim=1) - 1.0).pow(2).mean()
    return bce + grad_penalty, {"disc/bce": bce.detach(), "disc/grad_penalty": grad_penalty.detach()}


def dual_residual(log_ratio: Tensor, q: Tensor, next_v: Tensor, terminals: Tensor, gamma: float) -> Tensor:
    """e(s, a, s') = R + γ(1 − d)·V(s') − Q(s, a), all (B,) → (B,) (TOM Eq. 22-23)."""
    return log_ratio + gamma * (1.0 - terminals) * next_v - q


def dual_q_loss(init_v: Tensor, residual: Tensor, gamma: float) -> tuple[Tensor, dict[str, Tensor]]:
    """χ² dual objective (TOM Eq. 22): ``(1 − γ)·mean V(s0) + mean f*(e)``, to minimize.

    Args:
        init_v: (B0,) Q(s0, π(s0)) at episode-initial states.
        residual: (B,) e from ``dual_residual``.

    Returns:
        (scalar loss, metrics ``tom/q_loss_init``, ``tom/q_loss_conjugate``, detached).
    """
    init_term = (1.0 - gamma) * init_v.mean()
    conjugate_term = chi2_conjugate(residual).mean()
    metrics = {"tom/q_loss_init": init_term.detach(), "tom/q_loss_conjugate": conjugate_term.detach()}
    return init_term + conjugate_term, metrics


# ====================================================================== TOM: config and training


@dataclass(frozen=True)
class TOMConfig:
    """TOM weight hyper-parameters; defaults from TOM Table A.2 and the official code.

    Attributes:
        gamma: discount γ (0.99).
        disc_epochs: discriminator epochs (Table A.2 "discriminator update steps per iteration 100";
            the code runs 100 epochs over ``zip(target_loader, buffer_loader)``): each epoch pairs
            min(T, N) shuffled target and buffer rows in batches of ``disc_batch_size``.
        disc_batch_size: 256. disc_lr: Adam lr, 3e-4.
        disc_trunk_width: width of each s/a/s' trunk, 128. disc_hidden: joint layer width, 256.
        grad_penalty_coef: 10. buffer_label: BCE label of buffer rows, 0 (Eq. 21); 0.1 = official code.
        q_steps: dual Q update steps (1000). q_batch_size: 256 buffer rows and 256 initial states.
        q_lr: Adam lr, 3e-4. q_weight_decay: Adam weight decay, 1e-4. q_hidden: (256, 256).
        max_weight: clip ξ at this value before normalizing (official: 10); None: no clip.
        eval_batch_size: rows per chunk when evaluating R and ξ over the whole buffer.

    Raises:
        ConfigError: a non-positive size/count/lr, γ outside [0, 1), buffer_label outside [0, 1),
            negative penalty/weight decay, or max_weight <= 0.
    """

    gamma: float = 0.99
    disc_epochs: int = 100
    disc_batch_size: int = 256
    disc_lr: float = 3e-4
    disc_trunk_width: int = 128
    disc_hidden: int = 256
    grad_penalty_coef: float = 10.0
    buffer_label: float = 0.0
    q_steps: int = 1000
    q_batch_size: int = 256
    q_lr: float = 3e-4
    q_weight_decay: float = 1e-4
    q_hidden: tuple[int, ...] = (256, 256)
    max_weight: float | None = 10.0
    eval_batch_size: int = 65536

    def __post_init__(self) -> None:
        positive = (
            "disc_epochs",
            "disc_batch_size",
            "disc_lr",
            "disc_trunk_width",
            "disc_hidden",
            "q_steps",
            "q_batch_size",
            "q_lr",
            "eval_batch_size",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"TOMConfig.{name} must be > 0, got {getattr(self, name)}")
        checks = (
            ("gamma", 0.0 <= self.gamma < 1.0, "lie in [0, 1)"),
            ("buffer_label", 0.0 <= self.buffer_label < 1.0, "lie in [0, 1)"),
            ("grad_penalty_coef", self.grad_penalty_coef >= 0.0, "be >= 0"),
            ("q_weight_decay", self.q_weight_decay >= 0.0, "be >= 0"),
            ("q_hidden", len(self.q_hidden) > 0 and min(self.q_hidden) > 0, "be a non-empty tuple of widths > 0"),
            ("max_weight", self.max_weight is None or self.max_weight > 0.0, "be > 0 or None"),
        )
        for name, ok, rule in checks:
            if not ok:
                raise ConfigError(f"TOMConfig.{name} must {rule}, got {getattr(self, name)}")


def _policy_actions(policy: Policy, obs: Tensor, action_dim: int) -> Tensor:
    """``policy(obs)`` (B, A) without gradients; DatasetError if its shape or device is wrong."""
    with torch.no_grad():
        actions = policy(obs)
    if tuple(actions.shape) != (len(obs), action_dim) or actions.device != obs.device:
        raise DatasetError(
            f"TOM: policy returned actions of shape {tuple(actions.shape)} on {actions.device} "
            f"for obs {tuple(obs.shape)} on {obs.device}; expected ({len(obs)}, {action_dim}) "
            "like the dataset's 'actions'"
        )
    return actions


def _residual(q_net: DualQNetwork, policy: Policy, batch: TransitionTensors, log_ratio: Tensor, gamma: float) -> Tensor:
    """e = R + γ(1 − d)·Q(s', a' ~ π(s')) − Q(s, a) for the rows of ``batch``: (B,)."""
    next_v = q_net(batch.next_obs, _policy_actions(policy, batch.next_obs, batch.dims[1]))  # (B,)
    return dual_residual(log_ratio, q_net(batch.obs, batch.actions), next_v, batch.terminals, gamma)


def _chunked(fn: Callable[[slice], Tensor], n: int, chunk: int) -> Tensor:
    """``cat([fn(rows) for rows in chunks of 0..n])`` without gradients: (n, ...)."""
    with torch.no_grad():
        return torch.cat([fn(slice(start, start + chunk)) for start in range(0, n, chunk)])


def train_discriminator(
    target: TransitionTensors, buffer: TransitionTensors, config: TOMConfig
) -> tuple[TransitionDiscriminator, Tensor]:
    """Train c(s, a, s') between ``target`` (positives) and ``buffer`` (negatives), TOM Alg. 2 line 4.

    A fresh ``TransitionDiscriminator`` (official: re-initialized every round); Adam over **all** its
    parameters. The official code passes only the joint ``trunk`` to Adam, so its three input trunks
    stay at their random init; that bug is not reproduced. Each epoch pairs min(T, N) rows drawn
    without replacement from each set. Uses the torch global RNG (seed it, or use ``tom_weights``).

    Returns:
        (trained discriminator, (disc_epochs,) mean loss per epoch on the training device).
    """
    device = buffer.obs.device
    disc = TransitionDiscriminator(*buffer.dims, config.disc_trunk_width, config.disc_hidden).to(device)
    optimizer = torch.optim.Adam(disc.parameters(), lr=config.disc_lr)
    n_pairs = min(len(target), len(buffer))
    history = torch.zeros(config.disc_epochs, device=device)
    for epoch in range(config.disc_epochs):
        target_index = torch.randperm(len(target), device=device)[:n_pairs]
        buffer_index = torch.randperm(len(buffer), device=device)[:n_pairs]
        for t_idx, b_idx in zip(target_index.split(config.disc_batch_size), buffer_index.split(config.disc_batch_size)):
            loss, _ = discriminator_loss(
                disc, target.sas(t_idx), buffer.sas(b_idx), config.buffer_label, config.grad_penalty_coef
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history[epoch] += loss.detach() * (len(t_idx) / n_pairs)
    return disc, history


def train_dual_q(
    buffer: TransitionTensors, log_ratio: Tensor, init_obs: Tensor, policy: Policy, config: TOMConfig
) -> tuple[DualQNetwork, Tensor]:
    """Train the dual Q on Eq. 22 (TOM Alg. 2 lines 6-10): ``config.q_steps`` Adam steps.

    Each step draws ``q_batch_size`` buffer rows and as many initial states uniformly with
    replacement (official: rows with replacement; it takes all s0 when fewer than a batch exist),
    V(s) = Q(s, a ~ π(s)) with one policy sample. Uses the torch global RNG.

    Caution: Q(s0, π(s0)) enters only the (1 − γ) term (s0 is never an s'), so where the data do
    not cover π's actions at s0 the objective is unbounded below and Q drifts down with more steps,
    held back only by the network's smoothness and the weight decay; watch ``history``. On the
    test's toy problem, weight AUROC was 1.0 after 150 steps, 0.83 after 1000, 0.67 after 3000.

    Args:
        buffer: N transitions. log_ratio: (N,) R of each buffer row. init_obs: (S, D) s0.

    Returns:
        (trained Q network, (q_steps,) loss per step on the training device).
    """
    device = buffer.obs.device
    q_net = DualQNetwork(*buffer.dims, config.q_hidden).to(device)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=config.q_lr, weight_decay=config.q_weight_decay)
    history = torch.zeros(config.q_steps, device=device)
    for step in range(config.q_steps):
        index = torch.randint(len(buffer), (config.q_batch_size,), device=device)
        s0 = init_obs[torch.randint(len(init_obs), (config.q_batch_size,), device=device)]  # (B, D)
        init_v = q_net(s0, _policy_actions(policy, s0, buffer.dims[1]))  # (B,)
        residual = _residual(q_net, policy, buffer.take(index), log_ratio[index], config.gamma)  # (B,)
        loss, _ = dual_q_loss(init_v, residual, config.gamma)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history[step] = loss.detach()
    return q_net, history


@dataclass(frozen=True)
class TOMResult:
    """Output of ``tom_weights``.

    Attributes:
        weights: (N,) float32, clipped ξ normalized to sum 1, on the buffer's device.
        xi: (N,) float32 raw importance weights ξ = relu(e + 1) (before clipping and normalizing).
        log_ratio: (N,) float32 R = logit c(s, a, s') of each buffer row.
        disc_accuracy: balanced accuracy (threshold logit 0) on the discriminator's training data.
        disc_auroc: ROC AUC of the logits, target (positive) vs buffer rows, on the same data.
        disc_loss_history: (disc_epochs,) mean discriminator loss per epoch.
        q_loss_history: (q_steps,) dual Q loss per step.
    """

    weights: Tensor
    xi: Tensor
    log_ratio: Tensor
    disc_accuracy: float
    disc_auroc: float
    disc_loss_history: np.ndarray
    q_loss_history: np.ndarray

    @property
    def q_loss(self) -> float:
        """Dual Q loss at the last step."""
        return float(self.q_loss_history[-1])


def _check_tom_inputs(buffer: TransitionTensors, target: TransitionTensors, init_obs: Tensor) -> None:
    """DatasetError where target/init_obs disagree with the buffer in dims or device."""
    if target.dims != buffer.dims:
        raise DatasetError(f"TOM: target has obs/action dims {target.dims}, buffer has {buffer.dims}")
    if init_obs.ndim != 2 or len(init_obs) == 0 or init_obs.shape[1] != buffer.dims[0]:
        raise DatasetError(f"TOM: init_obs has shape {tuple(init_obs.shape)}; expected (S > 0, {buffer.dims[0]})")
    for name, tensor in (("target.obs", target.obs), ("init_obs", init_obs)):
        if tensor.device != buffer.obs.device:
            raise DatasetError(f"TOM: {name} is on {tensor.device}, buffer.obs on {buffer.obs.device}")


def _discriminator_scores(
    disc: TransitionDiscriminator, target: TransitionTensors, log_ratio: Tensor, chunk: int
) -> tuple[float, float]:
    """(balanced accuracy at logit 0, AUROC) of target (label 1) vs buffer (label 0) logits."""
    target_logits = _chunked(lambda rows: disc(target.sas(rows)), len(target), chunk)  # (T,)
    logits = torch.cat([target_logits, log_ratio]).cpu().numpy()
    labels = np.concatenate([np.ones(len(target_logits)), np.zeros(len(log_ratio))])
    return float(balanced_accuracy_score(labels, logits > 0)), float(roc_auc_score(labels, logits))


def tom_weights(
    buffer: TransitionTensors,
    target: TransitionTensors,
    init_obs: Tensor,
    policy: Policy,
    config: TOMConfig = TOMConfig(),
    *,
    seed: int,
) -> TOMResult:
    """TOM importance weights of every buffer row for a target policy (TOM Alg. 2 lines 3-11, offline).

    1. Discriminator c(s, a, s') between ``target`` (transitions of π) and ``buffer``; R = logit c
       (Eq. 21, ``train_discriminator``).
    2. Dual Q on the χ² objective (Eq. 22, ``train_dual_q``) with s0 = ``init_obs``.
    3. ξ = relu(R + γ(1 − d)·Q(s', π(s')) − Q(s, a) + 1) without gradients (Eq. 23), clipped at
       ``config.max_weight`` and normalized to sum 1 (official ``mdn.train``: clip 10, ``w / sum(w)``).

    Everything runs on the buffer's device. All randomness (network init, batches, gradient-penalty
    mixing, the policy's own sampling through the torch global RNG) is seeded with ``seed`` inside
    ``torch.random.fork_rng``: the caller's CPU and ``device`` RNG states are restored afterwards,
    and a rerun with the same seed on the same device gives identical weights.

    Args:
        buffer: N dataset transitions to weight (``TransitionTensors.from_dataset``).
        target: T transitions of the target policy (discriminator positives).
        init_obs: (S, D) episode-initial states of the buffer (``initial_obs(dataset, device)``).
        policy: ``policy(obs (B, D)) -> actions (B, A)`` on the same device.
        config: TOMConfig. seed: int.

    Returns:
        TOMResult (weights (N,), xi (N,), log_ratio (N,), discriminator accuracy/AUROC, loss histories).

    Raises:
        DatasetError: dims/devices of ``target``/``init_obs``/policy actions disagree with ``buffer``.
        OfflineMBRLError: every ξ is 0, so there is nothing to normalize.
    """
    _check_tom_inputs(buffer, target, init_obs)
    device, chunk = buffer.obs.device, config.eval_batch_size
    with seeded(seed, device):
        disc, disc_history = train_discriminator(target, buffer, config)
        log_ratio = _chunked(lambda rows: disc(buffer.sas(rows)), len(buffer), chunk)  # (N,)
        q_net, q_history = train_dual_q(buffer, log_ratio, init_obs, policy, config)
        residual = _chunked(
            lambda rows: _residual(q_net, policy, buffer.take(rows), log_ratio[rows], config.gamma), len(buffer), chunk
        )  # (N,)
        xi = chi2_conjugate_grad(residual)
    clipped = xi if config.max_weight is None else xi.clamp(max=config.max_weight)
    total = clipped.sum()
    if not total > 0:
        raise OfflineMBRLError(
            f"TOM: all {len(xi)} importance weights xi = relu(e + 1) are 0; "
            "nothing to normalize (check the discriminator and dual Q losses)"
        )
    accuracy, auroc = _discriminator_scores(disc, target, log_ratio, chunk)
    return TOMResult(
        weights=clipped / total,
        xi=xi,
        log_ratio=log_ratio,
        disc_accuracy=accuracy,
        disc_auroc=auroc,
        disc_loss_history=disc_history.cpu().numpy(),
        q_loss_history=q_history.cpu().numpy(),
    )
