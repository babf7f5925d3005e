"""Roll-outs in a learned dynamics model, all in torch on the model's device (DESIGN sections 4 and 6).

``rollout`` is the one roll-out loop, over any ``DynamicsModel``'s stepper (``offline_mbrl.models.base``): per
step the policy acts, the stepper predicts every candidate's Gaussian (ADM: every available backtrack k from
cached hidden states, ``models.adm``; ensemble: every member, ``models.ensemble``; bootstrapping RNN: its own
predictions fed back, ``models.boot_rnn``), the row samples from the candidate the stepper chooses (a drawn k, an
elite), the penalty U uses all candidates, and the stepper advances.

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

import torch
from torch import Tensor, nn

from .data.dataset import MAX_ABS_VALUE
from .data.windows import HistoryBatch
from .envs.termination import TerminationFn
from .errors import ConfigError
from .models.base import DynamicsModel, Stepper
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


def _run(
    stepper: Stepper,
    policy: Policy,
    obs: Tensor,
    rollout_length: int,
    penalty: str | None,
    termination: TerminationFn | None,
    generator: torch.Generator | None,
    shared_choice: bool,
) -> RolloutResult:
    """The roll-out loop over one block of starts obs (b, D) (module docstring)."""
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


def rollout(
    model: DynamicsModel,
    policy: Policy,
    starts: HistoryBatch | Tensor,
    rollout_length: int,
    penalty: str | None = None,
    termination: TerminationFn | None = None,
    generator: torch.Generator | None = None,
    backtrack_sampling: str = "trajectory",
    chunk_size: int | None = DEFAULT_CHUNK,
    observe: Callable[[Stepper], Stepper] | None = None,
) -> RolloutResult:
    """Roll any dynamics model out H steps from B starts through its stepper (``model.stepper``).

    Args:
        model: a fitted ``DynamicsModel`` (ADM, ProbabilisticEnsemble, BootRNN); roll-outs run in train mode
            (head dropout on) when ``model.rollout_dropout``, else in eval mode; the mode is restored after.
        policy: ``policy(obs (B, D)) -> (B, A)``, or open-loop actions (B, H, A).
        starts: start windows (``Windows(dataset, model.window_length).history``), ``model.window_length`` states
            each (a trajectory with a history of length L may backtrack k ≤ min(L + τ, m) at step τ); or start
            states (B, D) for a model with ``window_length`` 1.
        rollout_length: H.
        penalty: a quantifier name (``offline_mbrl.uncertainty``, e.g. ``model.quantifiers``) or None (zeros).
        termination: ``termination_fn(task)`` or None.
        generator: random source on the model's device.
        backtrack_sampling: ADM: ``"trajectory"`` (k per trajectory and step, paper Alg. 1), ``"batch"`` (one
            quantile per step shared by a block, official code) or ``"longest"`` (k = min(L + τ, m), the fixed-k
            baseline of Fig. 2); models without backtracking ignore it (``model.backtrack_samplings``).
        chunk_size: roll out blocks of this many starts one after another (None: all at once). Random numbers
            are drawn per block (a ``"batch"`` k is shared within a block); results are merged.
        observe: optional wrapper of each block's stepper (``stepper -> stepper``), e.g. to record quantifiers
            from the very predictions the roll-out samples from.

    Returns:
        ``RolloutResult`` (N transitions).

    Raises:
        ConfigError: no starts, bad rollout_length/policy shape/chunk_size, unknown penalty; from
            ``model.stepper``: start histories of another length than ``model.window_length`` or an unknown
            ``backtrack_sampling``.
    """
    if isinstance(starts, Tensor):
        starts = HistoryBatch.of_states(starts, model.config.action_dim)
    _check(rollout_length, policy, len(starts), model.config.action_dim)
    history = starts.to(next(model.parameters()).device)

    def run(rows: slice) -> RolloutResult:
        block = history[rows]
        stepper = model.stepper(block, backtrack_sampling)
        return _run(
            observe(stepper) if observe else stepper,
            _rows(policy, rows),
            block.obs[:, -1],
            rollout_length,
            penalty,
            termination,
            generator,
            stepper.shared_choice,
        )

    with _mode(model, model.rollout_dropout):
        return _in_chunks(run, len(history), chunk_size)
