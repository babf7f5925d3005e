"""Roll-outs in a learned dynamics model, all in torch on the model's device (DESIGN sections 4 and 6).

* ``rollout_adm`` — ADM paper Alg. 1 with **cached hidden states**. Predicting s_{τ+1} with backtrack k reads
  ``(s_{τ+1-k}, a_{τ+1-k:τ})``; at the next step the same start state only appends one action. So the
  roll-out keeps, per trajectory, one GRU hidden state per start state of the last m steps (a ring of m
  slots, stacked as (L, m·B, h)) and advances all of them by one GRU step per roll-out step: the newest
  start begins from a zero hidden state in the slot of the one that would exceed m. The cache is first
  warmed up from the dataset history window (Alg. 3 line 4). Each step yields the Gaussians of every
  available k in one batched pass: the sample comes from the drawn k, the penalty U from all of them.
  This equals recomputing every k from scratch (tested to 1e-5) at m GRU steps per roll-out step
  instead of m(m+1)/2 (plus m(m−1)/2 once for the warm-up).
* ``rollout_ensemble`` — MBPO/MOPO: all members predict in one ``(E, B, ·)`` pass, each row samples from a
  random **elite** (never a non-elite), the penalty uses all members (OfflineRL-Kit).
* ``rollout_boot_rnn`` — the bootstrapping RNN fed its own predictions (compounding-error baseline, Fig. 2).

Common behaviour: ``policy`` is a callable ``policy(obs (B, D)) -> actions (B, A)`` (a stochastic sample) or,
for open-loop evaluation, a tensor of actions (B, H, A). A trajectory stops at its first terminal
(``termination(obs, action, next_obs) -> (B,) bool``, see ``offline_mbrl.envs.termination``; None: never).
A step whose sample or penalty is NaN/inf or larger than ``MAX_ABS_VALUE`` (1e6) in magnitude is **dropped and
ends its trajectory**; it is counted in ``stats["rollout/num_nonfinite"]``, so nothing non-finite or absurd reaches
the output. Random numbers come from
``generator`` (on the model's device; None = torch's default) in a fixed order per step: the policy's own
draws, then U[0, 1) for the candidate choice (B,) (or (1,) when shared by the batch), then N(0, 1) noise
(B, D + 1); draws are indexed by trajectory, so results do not depend on which trajectories ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Protocol

import torch
from torch import Tensor, nn

from .config import BACKTRACK_SAMPLING
from .data.dataset import MAX_ABS_VALUE
from .data.windows import HistoryBatch
from .envs.termination import TerminationFn
from .errors import ConfigError
from .models.adm import ADM
from .models.boot_rnn import BootRNN
from .models.ensemble import ProbabilisticEnsemble
from .uncertainty import get_uncertainty

Policy = Callable[[Tensor], Tensor] | Tensor
# starts per block: keeps each step's temporaries (L, m·block, h) under glibc's mmap threshold on CPU; at
# B = 20,000 whole-batch steps spent 40 % of their time in page faults (benchmarks/README.md)
DEFAULT_CHUNK = 2048


@dataclass(frozen=True)
class RolloutResult:
    """Flat model transitions, ready for a replay buffer (N rows; per block of starts, step-major).

    Attributes:
        obs (N, D), actions (N, A), next_obs (N, D): the transition.
        rewards: (N,) model reward r̂ (not penalized).
        penalties: (N,) uncertainty U(s, a) ≥ 0 (zeros without a penalty).
        terminals: (N,) bool, the termination function fired (the trajectory ended here).
        start_ids: (N,) int64, index of the trajectory's start in the input batch.
        steps: (N,) int64, roll-out step τ in 0…H − 1.
        stats: ``rollout/num_transitions``, ``rollout/mean_penalty``, ``rollout/num_terminated``,
            ``rollout/num_nonfinite`` (dropped steps), ``rollout/mean_length`` (transitions per start).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    penalties: Tensor
    next_obs: Tensor
    terminals: Tensor
    start_ids: Tensor
    steps: Tensor
    stats: dict[str, float]

    def penalized_rewards(self, penalty_coef: float) -> Tensor:
        """ADM paper Eq. 8 / Alg. 3 line 6: ``r̃ = r̂ − β·U`` (N,)."""
        return self.rewards - penalty_coef * self.penalties


class _Stepper(Protocol):
    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """-> mean (C, b, D+1) in state space, logvar (C, b, D+1), available (C, b) or None."""

    def choose(self, uniform: Tensor) -> Tensor:
        """U[0, 1) draws (b,) -> candidate index (b,) int64."""

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        """Move to the next step, keeping rows ``keep`` (b,) bool."""


def _to_state_space(mean: Tensor, base: Tensor) -> Tensor:
    """Delta means (..., b, D+1) relative to ``base`` (..., b, D) -> next-state means (reward column unchanged)."""
    return torch.cat([mean[..., :-1] + base, mean[..., -1:]], dim=-1)


class _ADMCache:
    """Ring of m slots per trajectory, each a start state and its GRU hidden state (L, m, B, h). Slot ``head``
    holds the newest start (k = 1) and slot (head + j) mod m backtrack k = j + 1. A step advances all slots with
    one GRU step over m·B rows; the oldest slot is then recycled in place for the new start (zero hidden), so
    nothing is shifted or copied unless trajectories end."""

    def __init__(self, model: ADM, history: HistoryBatch, longest: bool = False) -> None:
        self.model, self.m, self.longest = model, model.config.max_backtrack, longest
        m, b, cfg = self.m, len(history), model.config
        self.starts = history.obs.flip(1).transpose(0, 1).contiguous()  # (M, B, D): slot j = k = j + 1
        self.hidden = history.obs.new_zeros(cfg.gru_layers, m, b, cfg.hidden_dim)  # (L, M, B, h)
        for t in range(m - 1):  # warm-up: the history's action t extends the slots of positions ≤ t
            first = m - 1 - t
            _, hidden = self._gru(history.actions[:, t], slice(first, m))
            self.hidden[:, first:] = hidden.view(cfg.gru_layers, t + 1, b, -1)
        self.head = 0
        self.lengths = history.lengths.clone()  # (B,) available backtracks, ≤ M

    def _gru(self, action: Tensor, slots: slice) -> tuple[Tensor, Tensor]:
        """Advance ``slots`` of every trajectory by ``action`` (b, A): features (S·b, h), hidden (L, S·b, h)."""
        starts = self.starts[slots]  # (S, b, D)
        norm = self.model.normalizer
        inputs = torch.cat([norm.obs(starts), norm.action(action)[None].expand(len(starts), -1, -1)], dim=-1)
        hidden = self.hidden[:, slots]
        return self.model.gru_step(
            inputs.view(-1, inputs.shape[-1]), hidden.reshape(hidden.shape[0], -1, hidden.shape[-1])
        )

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Candidates in backtrack order: row j of mean/logvar (M, b, D+1) is k = j + 1."""
        features, self._advanced = self._gru(action, slice(None))
        mean, logvar = self.model.gaussian(features.view(self.m, len(obs), -1))  # (M, b, D+1), slot order
        mean = _to_state_space(mean, self.starts)
        order = (torch.arange(self.m, device=obs.device) + self.head) % self.m  # slot of k = 1 … M
        available = torch.arange(self.m, device=obs.device)[:, None] < self.lengths[None]
        return mean[order], logvar[order], available

    def choose(self, uniform: Tensor) -> Tensor:
        """k − 1 per row: uniform over the available backtracks, or the longest one."""
        if self.longest:
            return self.lengths - 1
        return torch.minimum((uniform * self.lengths).long(), self.lengths - 1)

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        hidden = self._advanced.view(self.hidden.shape[0], self.m, -1, self.hidden.shape[-1])
        starts, lengths = self.starts, self.lengths
        if not keep.all():
            hidden, starts, lengths, next_obs = hidden[:, :, keep], starts[:, keep], lengths[keep], next_obs[keep]
        self.head = (self.head - 1) % self.m  # the oldest slot becomes k = 1
        hidden[:, self.head] = 0.0
        starts[self.head] = next_obs
        self.hidden, self.starts = hidden, starts
        self.lengths = torch.clamp(lengths + 1, max=self.m)


class _EnsembleStep:
    """Stateless: all members predict; a row samples from a uniformly drawn elite."""

    def __init__(self, model: ProbabilisticEnsemble) -> None:
        self.model = model

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, None]:
        mean, logvar = self.model(obs, action)  # (E, b, D+1)
        return _to_state_space(mean, obs), logvar, None

    def choose(self, uniform: Tensor) -> Tensor:
        elites = self.model.elites
        return elites[torch.clamp((uniform * len(elites)).long(), max=len(elites) - 1)]

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        pass


class _BootRNNWindow:
    """The last m (state, action) pairs of each trajectory, right-aligned, re-read every step."""

    def __init__(self, model: BootRNN, history: HistoryBatch) -> None:
        self.model, self.m = model, model.config.max_backtrack
        self.states = history.obs  # (B, M, D), last = current state
        self.actions = history.actions  # (B, M-1, A)
        self.lengths = history.lengths.clone()

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, None]:
        self.actions = torch.cat([self.actions, action[:, None]], dim=1)  # (b, M, A)
        # left-align the real pairs so the causal GRU never reads padding before them
        index = torch.clamp(torch.arange(self.m, device=obs.device) + (self.m - self.lengths)[:, None], max=self.m - 1)
        states = self.states.gather(1, index[..., None].expand(-1, -1, self.states.shape[-1]))
        actions = self.actions.gather(1, index[..., None].expand(-1, -1, self.actions.shape[-1]))
        mean, logvar = self.model(states, actions)  # (b, M, D+1)
        last = torch.arange(len(obs), device=obs.device), self.lengths - 1
        return _to_state_space(mean[last], obs)[None], logvar[last][None], None

    def choose(self, uniform: Tensor) -> Tensor:
        return torch.zeros_like(uniform, dtype=torch.long)

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        self.states = torch.cat([self.states[:, 1:], next_obs[:, None]], dim=1)[keep]
        self.actions = self.actions[keep, 1:]
        self.lengths = torch.clamp(self.lengths[keep] + 1, max=self.m)


@contextmanager
def _mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Run with ``model.train(training)`` (dropout switch) and no autograd, restoring the mode after."""
    was_training = model.training
    model.train(training)
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _check_history(model: ADM | BootRNN, history: HistoryBatch, rollout_length: int, policy: Policy) -> HistoryBatch:
    """Check a recurrent model's start histories and move them to the model's device."""
    if history.max_backtrack != model.config.max_backtrack:
        raise ConfigError(
            f"rollout: history holds {history.max_backtrack} states, the {model.kind} model's "
            f"max_backtrack is {model.config.max_backtrack}"
        )
    _check(rollout_length, policy, len(history), model.config.action_dim)
    return history.to(next(model.parameters()).device)


def _check(rollout_length: int, policy: Policy, batch: int, action_dim: int) -> None:
    if batch < 1:
        raise ConfigError("rollout: no start states (B = 0)")
    if rollout_length < 1:
        raise ConfigError(f"rollout: 'rollout_length' must be >= 1, got {rollout_length}")
    if isinstance(policy, Tensor) and (
        policy.dim() != 3
        or policy.shape[0] != batch
        or policy.shape[1] < rollout_length
        or policy.shape[2] != action_dim
    ):
        raise ConfigError(
            f"rollout: open-loop 'policy' actions must have shape (B={batch}, H>={rollout_length}, "
            f"A={action_dim}), got {tuple(policy.shape)}"
        )


def _rollout(
    stepper: _Stepper,
    policy: Policy,
    obs: Tensor,
    rollout_length: int,
    penalty: str | None,
    termination: TerminationFn | None,
    generator: torch.Generator | None,
    shared_choice: bool,
) -> RolloutResult:
    """The roll-out loop shared by all models (module docstring)."""
    quantifier = get_uncertainty(penalty) if penalty else None
    num_starts, obs_dim = obs.shape
    live = torch.arange(num_starts, device=obs.device)  # (b,) trajectory ids still running
    records: list[tuple[Tensor, ...]] = []
    nonfinite = 0
    for step in range(rollout_length):
        action = policy[live, step] if isinstance(policy, Tensor) else policy(obs)  # (b, A)
        uniform = torch.rand(1 if shared_choice else num_starts, generator=generator, device=obs.device)
        noise = torch.randn(num_starts, obs_dim + 1, generator=generator, device=obs.device)[live]  # (b, D+1)
        uniform = uniform.expand(num_starts)[live]
        mean, logvar, available = stepper.predict(obs, action)  # (C, b, D+1)
        rows, pick = torch.arange(len(live), device=obs.device), stepper.choose(uniform)
        sample = mean[pick, rows] + torch.exp(0.5 * logvar[pick, rows]) * noise  # (b, D+1)
        next_obs, reward = sample[:, :-1], sample[:, -1]
        penalties = quantifier(mean, logvar, available) if quantifier else torch.zeros_like(reward)
        finite = bounded(sample).all(dim=1) & bounded(penalties)
        if termination is None:
            terminal = torch.zeros_like(finite)
        else:
            terminal = termination(obs, action, next_obs) & finite
        steps = torch.full_like(live, step)
        records.append(tuple(t[finite] for t in (obs, action, reward, penalties, next_obs, terminal, live, steps)))
        nonfinite += int((~finite).sum())
        keep = finite & ~terminal
        live, obs = live[keep], next_obs[keep]
        if len(live) == 0:
            break
        stepper.advance(next_obs, keep)
    return _finish([torch.cat(column) for column in zip(*records)], num_starts, nonfinite)


def bounded(values: Tensor) -> Tensor:
    """Elementwise (same shape, bool): finite and at most ``MAX_ABS_VALUE`` in magnitude (a larger model output
    is treated as NaN)."""
    return torch.isfinite(values) & (values.abs() <= MAX_ABS_VALUE)


def _finish(fields: list[Tensor], num_starts: int, nonfinite: int) -> RolloutResult:
    """RolloutResult of the flat ``fields`` (in field order) with its stats."""
    rewards, penalties, terminals = fields[2], fields[3], fields[5]
    stats = {
        "rollout/num_transitions": float(len(rewards)),
        "rollout/mean_penalty": penalties.mean().item() if len(rewards) else 0.0,
        "rollout/num_terminated": float(terminals.sum()),
        "rollout/num_nonfinite": float(nonfinite),
        "rollout/mean_length": len(rewards) / num_starts,
    }
    return RolloutResult(*fields, stats=stats)


def _in_chunks(run: Callable[[slice], RolloutResult], num_starts: int, chunk_size: int | None) -> RolloutResult:
    """``run`` on consecutive blocks of ``chunk_size`` starts, merged into one result (global start ids)."""
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"rollout: 'chunk_size' must be >= 1 or None, got {chunk_size}")
    size = chunk_size or num_starts
    parts = [(start, run(slice(start, min(start + size, num_starts)))) for start in range(0, num_starts, size)]
    if len(parts) == 1:
        return parts[0][1]
    names = [f.name for f in fields(RolloutResult) if f.name != "stats"]
    merged = [
        torch.cat([getattr(part, name) + (start if name == "start_ids" else 0) for start, part in parts])
        for name in names
    ]
    return _finish(merged, num_starts, int(sum(part.stats["rollout/num_nonfinite"] for _, part in parts)))


def _rows(policy: Policy, rows: slice) -> Policy:
    """The policy for a block of starts (open-loop actions are sliced)."""
    return policy[rows] if isinstance(policy, Tensor) else policy


def rollout_adm(
    model: ADM,
    policy: Policy,
    history: HistoryBatch,
    rollout_length: int,
    penalty: str | None = "adm_std",
    termination: TerminationFn | None = None,
    generator: torch.Generator | None = None,
    backtrack_sampling: str = "trajectory",
    chunk_size: int | None = DEFAULT_CHUNK,
) -> RolloutResult:
    """ADM roll-out (Alg. 1) from B start histories with cached hidden states; the penalty uses every available k.

    Args:
        model: a fitted ADM; head dropout follows ``model.config.rollout_dropout``.
        policy: ``policy(obs (B, D)) -> (B, A)``, or open-loop actions (B, H, A).
        history: start windows (``Windows.history``), m = ``model.config.max_backtrack`` states each; a
            trajectory with a history of length L may backtrack k ≤ min(L + τ, m) at step τ.
        rollout_length: H.
        penalty: a quantifier name (``offline_mbrl.uncertainty``; official default ``adm_std``) or None.
        termination: ``termination_fn(task)`` or None.
        generator: random source on the model's device.
        backtrack_sampling: ``"trajectory"`` draws k per trajectory and step (paper Alg. 1 line 3);
            ``"batch"`` draws one quantile per step shared by all rows (official code; k = ⌊u·n⌋ + 1 for a
            row with n available lengths, i.e. one k for the batch when histories are full); ``"longest"``
            always uses the longest available k = min(L + τ, m) (the fixed-k baseline of Fig. 2).
        chunk_size: roll out blocks of this many starts one after another (None: all at once). Random numbers
            are drawn per block (a ``"batch"`` k is shared within a block); results are merged.

    Raises:
        ConfigError: history length differs from m, bad rollout_length/policy shape, unknown penalty or sampling.
    """
    if backtrack_sampling not in BACKTRACK_SAMPLING:
        raise ConfigError(
            f"rollout: 'backtrack_sampling' must be one of {BACKTRACK_SAMPLING}, got {backtrack_sampling!r}"
        )
    history = _check_history(model, history, rollout_length, policy)

    def run(rows: slice) -> RolloutResult:
        block = history[rows]
        return _rollout(
            _ADMCache(model, block, longest=backtrack_sampling == "longest"),
            _rows(policy, rows),
            block.obs[:, -1],
            rollout_length,
            penalty,
            termination,
            generator,
            shared_choice=backtrack_sampling == "batch",
        )

    with _mode(model, model.config.rollout_dropout):
        return _in_chunks(run, len(history), chunk_size)


def rollout_ensemble(
    model: ProbabilisticEnsemble,
    policy: Policy,
    obs: Tensor,
    rollout_length: int,
    penalty: str | None = "max_aleatoric",
    termination: TerminationFn | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> RolloutResult:
    """MBPO/MOPO ensemble roll-out from start states obs (B, D): each row samples from a random elite per step,
    the penalty (default MOPO ``max_aleatoric``) uses all members. Arguments as ``rollout_adm``.

    Raises:
        ConfigError: bad rollout_length/policy shape or unknown penalty.
    """
    _check(rollout_length, policy, len(obs), model.config.action_dim)
    obs = obs.to(next(model.parameters()).device)

    def run(rows: slice) -> RolloutResult:
        return _rollout(
            _EnsembleStep(model),
            _rows(policy, rows),
            obs[rows],
            rollout_length,
            penalty,
            termination,
            generator,
            shared_choice=False,
        )

    with _mode(model, False):
        return _in_chunks(run, len(obs), chunk_size)


def rollout_boot_rnn(
    model: BootRNN,
    policy: Policy,
    history: HistoryBatch,
    rollout_length: int,
    penalty: str | None = None,
    termination: TerminationFn | None = None,
    generator: torch.Generator | None = None,
    chunk_size: int | None = DEFAULT_CHUNK,
) -> RolloutResult:
    """Bootstrapping-RNN roll-out: each step re-reads the last min(L + τ, m) (state, action) pairs, predicted
    states included, and samples the next state. Arguments as ``rollout_adm`` (no backtrack choice).

    Raises:
        ConfigError: history length differs from m, bad rollout_length/policy shape, unknown penalty.
    """
    history = _check_history(model, history, rollout_length, policy)

    def run(rows: slice) -> RolloutResult:
        block = history[rows]
        return _rollout(
            _BootRNNWindow(model, block),
            _rows(policy, rows),
            block.obs[:, -1],
            rollout_length,
            penalty,
            termination,
            generator,
            shared_choice=False,
        )

    with _mode(model, model.config.rollout_dropout):
        return _in_chunks(run, len(history), chunk_size)
