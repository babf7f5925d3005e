"""A tiny end-to-end MBPO run on real Hopper-v5 (1250 env steps, 1500 SAC updates) ends with a
deterministic evaluation return well above the uniform-random policy's on the same evaluation seeds.

What this shows is small: on Hopper the alive bonus already rewards a policy that stands still, so this is the
"it learns at all" tier (STYLE 9), not evidence for MBPO's curve; README "Online model-based RL" has the commands
of the real comparison."""

from __future__ import annotations

import torch

from offline_mbrl.algos.online_harness import OnlineTrainer
from offline_mbrl.config import resolve
from offline_mbrl.envs.gym_env import env_spaces, evaluate_policy


def test_a_tiny_mbpo_run_beats_the_random_policy(tmp_path):
    overrides = [
        "steps_per_epoch=250",
        "online.warmup_steps=500",
        "online.utd_ratio=2",
        "online.model_train_freq=250",
        "rollout.rollout_freq=50",
        "rollout.rollout_batch_size=400",
        "dynamics.max_epochs=5",
        "dynamics.ensemble_hidden_dims=[64,64]",
        "dynamics.ensemble_weight_decays=[0,0,0]",
        "sac.hidden_dims=[64,64]",
        "eval_episodes=5",
    ]
    config = resolve("mbpo", overrides=overrides, env_id="Hopper-v5", epochs=3)
    summary = OnlineTrainer(config, tmp_path, progress=False).train()
    _, space = env_spaces("Hopper-v5")
    low, high = torch.as_tensor(space.low), torch.as_tensor(space.high)
    generator = torch.Generator().manual_seed(0)

    def uniform(obs):
        return low + torch.rand(len(obs), len(low), generator=generator) * (high - low)

    epochs = config.epochs
    random_return = evaluate_policy(uniform, "Hopper-v5", 5, seed=1_000_000 + 1000 * epochs).mean()
    assert summary["env_steps"] == 1250
    assert summary["final_return"] > 1.5 * random_return, (summary["final_return"], random_return)
