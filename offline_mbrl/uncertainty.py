"""Model-uncertainty quantifiers U(s, a) ≥ 0 for the penalized reward r̃ = r̂ − β·U (ADM paper Eq. 8; MOPO).

A registry of torch functions chosen by name (``get_uncertainty``), all with one signature:

    quantifier(mean, logvar, mask=None) -> U (B,)

* ``mean``: (C, B, D + 1) predicted means of the **next state in state space** (not a delta) followed by the
  reward, one row per candidate: C = backtrack lengths k (ADM) or ensemble members E.
* ``logvar``: (C, B, D + 1) predicted log-variances (the variance of a delta equals that of the state).
* ``mask``: optional (C, B) bool, which candidates are available (ADM: k ≤ history length); at least one
  per row. Unavailable candidates are ignored; ``None`` means all are available.

Quantifiers:

* ``adm_var`` — Eq. 4 (Def. 3.2): the mixture variance over available k, L1 over the state dims:
  ``Σ_d [(1/n) Σ_k (σ_k,d² + μ_k,d²) − μ̄_d²] = Σ_d [Var_k μ_k,d + mean_k σ_k,d²]`` (computed in the second,
  non-negative form).
* ``adm_std`` — official ADMPO roll-out code: ``sqrt(mean_d Var_k μ_k,d)`` (ddof 0, means only, state dims).
* ``ensemble_std`` — OfflineRL-Kit ``ensemble_std``: the same formula over ensemble members; the official
  ADM code is exactly this formula taken across k (REFERENCE-algorithms 2.4), so both names share it.
* ``max_aleatoric`` — MOPO / OfflineRL-Kit ``aleatoric``: ``max_c ‖σ_c‖₂`` over all D + 1 dims (reward included).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .errors import ConfigError

Quantifier = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def _prepare(mean: Tensor, logvar: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes; return mean and logvar with unavailable candidates zeroed (their values, even NaN, never
    reach U) and (C, B, 1) candidate weights 1/n over the available ones."""
    if mean.dim() != 3 or logvar.shape != mean.shape:
        raise ConfigError(
            f"uncertainty: 'mean' and 'logvar' must both have shape (C, B, D + 1), "
            f"got {tuple(mean.shape)} and {tuple(logvar.shape)}"
        )
    if mask is None:
        return mean, logvar, mean.new_full((*mean.shape[:2], 1), 1.0 / mean.shape[0])
    if mask.shape != mean.shape[:2]:
        raise ConfigError(
            f"uncertainty: 'mask' must have shape (C, B) = {tuple(mean.shape[:2])}, got {tuple(mask.shape)}"
        )
    keep = mask[..., None]
    weights = mask.to(mean.dtype)
    return (torch.where(keep, mean, 0.0), torch.where(keep, logvar, 0.0), (weights / weights.sum(dim=0))[..., None])


def _state_spread(mean: Tensor, weights: Tensor) -> Tensor:
    """Var over candidates (ddof 0) of the state-dim means: (C, B, D + 1) -> (B, D)."""
    state = mean[..., :-1]
    center = (weights * state).sum(dim=0)
    return (weights * (state - center).pow(2)).sum(dim=0)


def adm_var(mean: Tensor, logvar: Tensor, mask: Tensor | None = None) -> Tensor:
    """ADM paper Eq. 4: ``Σ_d [Var_k μ_k,d + mean_k σ_k,d²]`` over state dims -> (B,)."""
    mean, logvar, weights = _prepare(mean, logvar, mask)
    aleatoric = (weights * torch.exp(logvar[..., :-1])).sum(dim=0)  # (B, D)
    return (_state_spread(mean, weights) + aleatoric).sum(dim=-1)


def std_of_means(mean: Tensor, logvar: Tensor, mask: Tensor | None = None) -> Tensor:
    """``sqrt(mean_d Var_c μ_c,d)`` over state dims -> (B,) (official ADMPO penalty; OfflineRL-Kit ensemble_std)."""
    mean, _, weights = _prepare(mean, logvar, mask)
    return _state_spread(mean, weights).mean(dim=-1).sqrt()


def max_aleatoric(mean: Tensor, logvar: Tensor, mask: Tensor | None = None) -> Tensor:
    """MOPO: ``max_c ‖σ_c‖₂`` over all D + 1 dims -> (B,)."""
    _, logvar, weights = _prepare(mean, logvar, mask)
    norms = torch.exp(logvar).sum(dim=-1).sqrt()  # (C, B)
    return torch.where(weights[..., 0] > 0, norms, 0.0).amax(dim=0)


def dimension_spread(mean: Tensor, logvar: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Where the uncertainty sits, per dimension: ``(Var_c μ_c,d over the D state dims (B, D), mean_c σ_c,d² over
    all D + 1 dims, reward last (B, D + 1))`` (the epistemic and aleatoric terms of Eq. 4, before the sum)."""
    mean, logvar, weights = _prepare(mean, logvar, mask)
    return _state_spread(mean, weights), (weights * torch.exp(logvar)).sum(dim=0)


def break_even_coef(rewards: Tensor, penalties: Tensor) -> float:
    """The penalty coefficient β* at which the mean penalized reward ``mean(r̂ − β·U)`` (Eq. 8) is zero:
    ``mean(r̂) / mean(U)`` over the N transitions of rewards (N,) and penalties (N,); ``inf`` when U is all zero.
    Past β* a roll-out earns less than nothing on average, so ending it (falling) is the better policy.

    Raises:
        ConfigError: no transitions, or shapes differ.
    """
    if rewards.shape != penalties.shape or rewards.numel() == 0:
        raise ConfigError(
            f"break_even_coef: needs equal non-empty (N,) rewards and penalties, got "
            f"{tuple(rewards.shape)} and {tuple(penalties.shape)}"
        )
    mean_penalty = penalties.double().mean().item()
    return rewards.double().mean().item() / mean_penalty if mean_penalty > 0 else float("inf")


UNCERTAINTY: dict[str, Quantifier] = {
    "adm_var": adm_var,
    "adm_std": std_of_means,
    "ensemble_std": std_of_means,
    "max_aleatoric": max_aleatoric,
}


def get_uncertainty(name: str) -> Quantifier:
    """The quantifier registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    if name not in UNCERTAINTY:
        raise ConfigError(f"uncertainty: unknown quantifier {name!r}; choose one of {sorted(UNCERTAINTY)}")
    return UNCERTAINTY[name]
