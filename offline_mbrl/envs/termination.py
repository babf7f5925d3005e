"""Static termination functions ``fn(obs, action, next_obs) -> terminals`` for model roll-outs, batched in torch
(REFERENCE-datasets 4.3 and 2.3; official ADMPO ``components/static_fns``; OfflineRL-Kit ``termination_fns``).

All rules read ``next_obs`` (B, D) and return (B,) bool; a non-finite next state always terminates.
Inequalities are strict, as in the environments.

* hopper (gymnasium v5 / gym v3 ``is_healthy``, D = 11): z = o'[0] > 0.7, |angle = o'[1]| < 0.2,
  every o'[1:] in (−100, 100). The MBPO-lineage code only checks the upper bound (``abs`` applied to a
  boolean); the environment checks both, and so does this function.
* walker2d (D = 17): 0.8 < z = o'[0] < 2.0 and −1 < angle = o'[1] < 1 (no state-range check, as the env and ADMPO).
* halfcheetah (D = 17): the environment never terminates; as in official ADMPO and OfflineRL-Kit a state with
  any |o'| ≥ 100 ends the roll-out (it only fires on model blow-ups).
* invertedpendulum (``InvertedPendulum-v5``, D = 4, o' = (cart x, pole angle, their velocities)): the pole angle
  |o'[1]| ≤ 0.2 (the environment terminates when it is > 0.2; MBPO's ``static_fns/inverted_pendulum.py`` likewise).
  Online only (PAL, MAL, MBPO, SAC on the smallest v5 task); no dataset or score reference exists for it.
* anttruncatedobs (``AntTruncatedObs-v5``, D = 27; ``ant``: ``Ant-v5``, D = 105): 0.2 ≤ z = o'[0] ≤ 1.0, inclusive
  as the environment's ``is_healthy`` (and MBPO's ``static_fns/ant.py``).
* humanoidtruncatedobs (``HumanoidTruncatedObs-v5``, D = 45; ``humanoid``: ``Humanoid-v5``, D = 348):
  1.0 < z = o'[0] < 2.0 (MBPO's ``static_fns/humanoid.py``). The truncated ids: ``envs/registration.py``.
* neorl-hopper / neorl-walker2d (D = 12 / 18, o'[0] is the x position): the same rules shifted by one,
  with o'[3:] in (−100, 100) (NeoRL ``*_done.py``); neorl-halfcheetah (D = 18) never terminates.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import ConfigError

#: ``fn(obs (B, D), action (B, A), next_obs (B, D)) -> (B,) bool``, True where the transition ends its episode
TerminationFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _between(x: Tensor, low: float, high: float) -> Tensor:
    """Elementwise ``low < x < high`` (strict, as the environments' ranges)."""
    return (x > low) & (x < high)


def _hopper_healthy(next_obs: Tensor, offset: int, state_from: int) -> Tensor:
    """Hopper's ``is_healthy`` on next_obs (B, D) -> (B,): z = o'[offset] > 0.7, |angle = o'[offset + 1]| < 0.2,
    every o'[state_from:] in (−100, 100)."""
    z, angle = next_obs[:, offset], next_obs[:, offset + 1]
    state_ok = _between(next_obs[:, state_from:], -100.0, 100.0).all(dim=1)
    return (z > 0.7) & _between(angle, -0.2, 0.2) & state_ok


def _walker2d_healthy(next_obs: Tensor, offset: int, state_from: int | None) -> Tensor:
    """Walker2d's ``is_healthy`` on next_obs (B, D) -> (B,): 0.8 < z = o'[offset] < 2.0, −1 < angle < 1, and (NeoRL
    only, ``state_from`` set) every o'[state_from:] in (−100, 100)."""
    z, angle = next_obs[:, offset], next_obs[:, offset + 1]
    healthy = _between(z, 0.8, 2.0) & _between(angle, -1.0, 1.0)
    if state_from is not None:
        healthy &= _between(next_obs[:, state_from:], -100.0, 100.0).all(dim=1)
    return healthy


def _ant_healthy(next_obs: Tensor) -> Tensor:
    """Ant's ``is_healthy`` on next_obs (B, D) -> (B,): 0.2 ≤ z = o'[0] ≤ 1.0 (inclusive, as the environment)."""
    return (next_obs[:, 0] >= 0.2) & (next_obs[:, 0] <= 1.0)


def _humanoid_healthy(next_obs: Tensor) -> Tensor:
    """Humanoid's ``is_healthy`` on next_obs (B, D) -> (B,): 1.0 < z = o'[0] < 2.0."""
    return _between(next_obs[:, 0], 1.0, 2.0)


# task -> (obs dim, healthy(next_obs) -> (B,) bool)
_RULES: dict[str, tuple[int, Callable[[Tensor], Tensor]]] = {
    "hopper": (11, lambda o: _hopper_healthy(o, offset=0, state_from=1)),
    "walker2d": (17, lambda o: _walker2d_healthy(o, offset=0, state_from=None)),
    "halfcheetah": (17, lambda o: (o.abs() < 100.0).all(dim=1)),
    "invertedpendulum": (4, lambda o: o[:, 1].abs() <= 0.2),
    "anttruncatedobs": (27, _ant_healthy),
    "ant": (105, _ant_healthy),
    "humanoidtruncatedobs": (45, _humanoid_healthy),
    "humanoid": (348, _humanoid_healthy),
    "neorl-hopper": (12, lambda o: _hopper_healthy(o, offset=1, state_from=3)),
    "neorl-walker2d": (18, lambda o: _walker2d_healthy(o, offset=1, state_from=3)),
    "neorl-halfcheetah": (18, lambda o: torch.ones(o.shape[0], dtype=torch.bool, device=o.device)),
}


#: the tasks :func:`task_name` finds in a name (NeoRL's are these with the prefix ``neorl-``)
TASKS = (
    "hopper",
    "walker2d",
    "halfcheetah",
    "invertedpendulum",
    "anttruncatedobs",
    "ant",
    "humanoidtruncatedobs",
    "humanoid",
)
# the truncated ids first (leftmost match, alternatives in order); bare ant/humanoid only as whole words
_TASK_PATTERN = (
    r"hopper|walker2d|halfcheetah|invertedpendulum|anttruncatedobs|humanoidtruncatedobs|"
    r"(?<![a-z])ant(?![a-z])|(?<![a-z])humanoid(?![a-z])"
)


def task_name(name: str) -> str:
    """Normalize an env or dataset name to a key of the rules: ``Hopper-v5``, ``hopper-medium-v2``,
    ``mujoco/hopper/expert-v0`` -> ``hopper``; ``InvertedPendulum-v5`` -> ``invertedpendulum``;
    ``AntTruncatedObs-v5`` -> ``anttruncatedobs``, ``Ant-v5`` -> ``ant`` (not ``antmaze``); ``neorl-hopper``,
    ``neorl:Hopper-v3-low`` -> ``neorl-hopper``.

    Raises:
        ConfigError: no known task (:data:`TASKS`) in ``name``.
    """
    lower = name.lower().replace("_", "").replace("half-cheetah", "halfcheetah")
    found = re.search(_TASK_PATTERN, lower)
    if found is None:
        raise ConfigError(
            f"termination: no termination function for {name!r}; known tasks: {', '.join(TASKS)} "
            "(prefix 'neorl' for NeoRL's hopper, walker2d, halfcheetah)"
        )
    key = ("neorl-" if "neorl" in lower else "") + found.group(0)
    if key not in _RULES:
        raise ConfigError(
            f"termination: no termination function for {name!r} (NeoRL has hopper, walker2d, halfcheetah)"
        )
    return key


def termination_fn(name: str) -> TerminationFn:
    """Batched termination function for the task in ``name`` (see :func:`task_name`; rules in the module
    docstring).

    The returned ``fn(obs (B, D), action (B, A), next_obs (B, D)) -> (B,) bool`` reads ``next_obs`` only and is
    True where the rule fails or ``next_obs`` is non-finite.

    Raises:
        ConfigError: no known task in ``name`` (from :func:`task_name`). The returned ``fn`` raises ConfigError when
            ``next_obs`` is not (B, D) with the task's obs dim D (e.g. a NeoRL dataset with a gymnasium name).
    """
    key = task_name(name)
    dim, healthy = _RULES[key]

    def fn(obs: Tensor, action: Tensor, next_obs: Tensor) -> Tensor:
        if next_obs.dim() != 2 or next_obs.shape[1] != dim:
            raise ConfigError(
                f"termination '{key}': 'next_obs' must have shape (B, {dim}), got {tuple(next_obs.shape)}"
            )
        return ~(healthy(next_obs) & torch.isfinite(next_obs).all(dim=1))

    fn.__name__ = f"termination_{key.replace('-', '_')}"
    return fn
