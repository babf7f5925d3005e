"""Gymnasium ids for MBPO's truncated-observation Ant and Humanoid, on their v5 environments.

MBPO (seeds/002, Appendix C; jannerm/mbpo ``env/ant.py``, ``env/humanoid.py``) and the official ADMPO code (its
``config/mujoco/AntTruncatedObs.yml``, ``HumanoidTruncatedObs.yml``) learn Ant and Humanoid on observations without
the contact forces (and, for Humanoid, without the inertia, COM velocity and actuator forces): the joint positions
(without x, y) and velocities only. Gymnasium v5 builds the same observations from keyword arguments:

* ``AntTruncatedObs-v5``: ``Ant-v5`` with ``include_cfrc_ext_in_observation=False``, obs (27,) = qpos[2:] (13),
  qvel (14); action (8,).
* ``HumanoidTruncatedObs-v5``: ``Humanoid-v5`` with the cinert, cvel, qfrc_actuator and cfrc_ext parts left out,
  obs (45,) = qpos[2:] (22), qvel (23); action (17,).

Both keep the v5 rewards, termination and 1000-step limit. Importing ``offline_mbrl.envs`` registers them, so
``gymnasium.make``, ``--env`` and ``offline-mbrl evaluate`` know them.
"""

from __future__ import annotations

import gymnasium as gym

_HUMANOID_PARTS = ("cinert", "cvel", "qfrc_actuator", "cfrc_ext")

#: id -> (the v5 id it truncates, its keyword arguments)
TRUNCATED_OBS_ENVS: dict[str, tuple[str, dict[str, bool]]] = {
    "AntTruncatedObs-v5": ("Ant-v5", {"include_cfrc_ext_in_observation": False}),
    "HumanoidTruncatedObs-v5": (
        "Humanoid-v5",
        {f"include_{part}_in_observation": False for part in _HUMANOID_PARTS},
    ),
}


def register_truncated_obs_envs() -> None:
    """Register :data:`TRUNCATED_OBS_ENVS` with gymnasium (once; an id already registered is left as it is)."""
    for env_id, (base, kwargs) in TRUNCATED_OBS_ENVS.items():
        if env_id in gym.registry:
            continue
        spec = gym.spec(base)
        gym.register(
            id=env_id,
            entry_point=spec.entry_point,
            max_episode_steps=spec.max_episode_steps,
            kwargs={**spec.kwargs, **kwargs},
        )
