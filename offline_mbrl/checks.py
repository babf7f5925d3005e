"""Config validation shared by every config section (run configs and component configs alike): no imports
but the errors, so a config class anywhere in the tree can use it without pulling torch or the run config in."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .errors import ConfigError


def fail(key: str, rule: str, value: Any) -> None:
    """Raise :class:`ConfigError` saying that ``key`` must be ``rule`` and what it was."""
    raise ConfigError(f"config: key '{key}' must be {rule}, got {value!r}")


def check_section(
    section: Any,
    prefix: str,
    at_least: dict[str, int] | None = None,
    positive: tuple[str, ...] = (),
    choices: dict[str, tuple] | None = None,
) -> None:
    """Shared checks of one config section (``prefix`` like ``"rollout."``): every float (also inside tuples) is
    finite; ``at_least`` keys are >= their bound (None allowed: "not set"); ``positive`` keys are > 0 or None;
    ``choices`` keys are one of their values.

    Raises:
        ConfigError: naming the dotted key, the rule and the value.
    """
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            fail(prefix + f.name, "finite (no nan/inf)", value)
    for key, low in (at_least or {}).items():
        if getattr(section, key) is not None and getattr(section, key) < low:
            fail(prefix + key, f">= {low}", getattr(section, key))
    for key in positive:
        if getattr(section, key) is not None and getattr(section, key) <= 0:
            fail(prefix + key, "> 0", getattr(section, key))
    for key, allowed in (choices or {}).items():
        if getattr(section, key) not in allowed:
            fail(prefix + key, f"one of {allowed}", getattr(section, key))
