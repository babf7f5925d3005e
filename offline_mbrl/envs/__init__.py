"""Environment helpers: termination functions, the MuJoCo oracle, gymnasium construction; importing the package
registers MBPO's truncated-observation Ant and Humanoid ids (:mod:`.registration`)."""

from .registration import register_truncated_obs_envs

register_truncated_obs_envs()
