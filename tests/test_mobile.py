"""MOBILE (``algos.mobile``): its Bellman target against a NumPy reference on a hand-made batch with mocked model
predictions and critics, a tiny end-to-end run on real Hopper-v5 data, and ``train --algo mobile`` from the CLI."""

import numpy as np
import pandas as pd
import pytest
import torch

from offline_mbrl.algos.harness import OfflineTrainer
from offline_mbrl.algos.mobile import MOBILE, NUM_SAMPLES, bellman_disagreement, bellman_penalty
from offline_mbrl.cli import main
from offline_mbrl.config import resolve
from test_offline import TINY

B, D, A, E, GAMMA = 5, 3, 2, 4, 0.99
ELITES = np.array([True, False, True, True])  # the stepper samples from members 0, 2, 3


class _Stepper:
    """Fixed Gaussians per member: mean (E, B, D + 1) = obs-dependent, logvar fixed."""

    def __init__(self, logvar):
        self.logvar = logvar

    def predict(self, obs, action):
        members = torch.arange(E, dtype=obs.dtype)[:, None, None]  # (E, 1, 1)
        mean = torch.cat([obs + 0.1 * members * action.sum(-1, keepdim=True), action[:, :1].expand(E, -1, -1)], -1)
        return mean, self.logvar, None

    def sampled_candidates(self):
        return torch.as_tensor(ELITES)


class _Model:
    def __init__(self, logvar):
        self.logvar = logvar

    def stepper(self, history):
        return _Stepper(self.logvar)


class _SAC:
    """A deterministic policy a = tanh(s W), linear twin target critics, and an update that returns its target."""

    def __init__(self, rng):
        self.w = torch.as_tensor(rng.normal(size=(D, A)))
        self.q_obs = torch.as_tensor(rng.normal(size=(2, D)))
        self.q_act = torch.as_tensor(rng.normal(size=(2, A)))
        self.next_q = torch.as_tensor(rng.normal(size=(2, B)))
        self.alpha = torch.tensor(0.3, dtype=torch.float64)

    def act(self, obs):
        return torch.tanh(obs @ self.w)

    def critic_target(self, obs, action):
        return self.q_obs @ obs.T + self.q_act @ action.T  # (2, n)

    def update(self, batch, target, update_actor=True):
        y = target(
            batch["rewards"], batch["terminals"], self.next_q, torch.zeros(B, dtype=torch.float64), self.alpha, GAMMA
        )
        return {"y": y}


def _reference(batch, logvar, sac, noise, beta, num_real):
    """MOBILE's target in NumPy (OfflineRL-Kit compute_lcb + learn): noise (N, E, B, D + 1) for every member."""
    obs, act = batch["obs"].numpy(), batch["actions"].numpy()
    members = np.arange(E)[:, None, None]
    mean = np.concatenate(
        [obs + 0.1 * members * act.sum(-1, keepdims=True), np.broadcast_to(act[:, :1], (E, B, 1))], -1
    )
    samples = (mean + np.exp(0.5 * logvar.numpy()) * noise)[:, ELITES, :, :D]  # (N, E', B, D)
    a = np.tanh(samples @ sac.w.numpy())
    q = [samples @ sac.q_obs.numpy()[j] + a @ sac.q_act.numpy()[j] for j in range(2)]  # (N, E', B) each
    q_min = np.minimum(*q)
    penalty = q_min.mean(axis=0).std(axis=0, ddof=1)  # (B,)
    penalty[:num_real] = 0.0
    r, d = batch["rewards"].numpy(), batch["terminals"].numpy().astype(float)
    return np.maximum(0.0, r - beta * penalty + GAMMA * (1 - d) * sac.next_q.numpy().min(0))


def test_target_matches_numpy_reference():
    rng = np.random.default_rng(0)
    batch = {
        "obs": torch.as_tensor(rng.normal(size=(B, D))),
        "actions": torch.as_tensor(rng.uniform(-1, 1, size=(B, A))),
        "rewards": torch.as_tensor(rng.normal(size=B) + 1.0),
        "next_obs": torch.as_tensor(rng.normal(size=(B, D))),
        "terminals": torch.tensor([False, True, False, False, True]),
    }
    logvar = torch.as_tensor(rng.normal(size=(E, B, D + 1)) - 1.0)
    sac, beta, num_real = _SAC(rng), 1.7, 2
    algorithm = MOBILE(resolve("mobile", overrides=[f"rollout.penalty_coef={beta}"], dataset="x"))
    torch.manual_seed(3)
    y = algorithm.update(sac, _Model(logvar), batch, num_real)["y"]
    torch.manual_seed(3)  # the library's one draw: N(0, 1) noise for the elites (N, E', B, D + 1)
    elite_noise = torch.randn(NUM_SAMPLES, int(ELITES.sum()), B, D + 1, dtype=torch.float32).double().numpy()
    noise = np.zeros((NUM_SAMPLES, E, B, D + 1))
    noise[:, ELITES] = elite_noise
    expected = _reference(batch, logvar, sac, noise, beta, num_real)
    np.testing.assert_allclose(y.numpy(), expected, rtol=0, atol=1e-6)
    assert (expected[num_real:] < _reference(batch, logvar, sac, noise, 0.0, num_real)[num_real:]).any()  # β bites


def test_disagreement_is_zero_when_members_agree_and_checks_shapes():
    same = torch.randn(NUM_SAMPLES, 1, 6).expand(-1, 5, -1)
    assert torch.equal(bellman_disagreement(same), torch.zeros(6))
    next_q = np.random.default_rng(1).normal(size=(NUM_SAMPLES, 3, 6))
    np.testing.assert_allclose(
        bellman_disagreement(torch.as_tensor(next_q)).numpy(), next_q.mean(axis=0).std(axis=0, ddof=1), rtol=1e-12
    )
    for bad in (torch.zeros(NUM_SAMPLES, 1, 6), torch.zeros(NUM_SAMPLES, 6)):
        with pytest.raises(ValueError, match="E' >= 2"):
            bellman_disagreement(bad)
    with pytest.raises(ValueError, match="num_samples must be >= 1, got 0"):
        bellman_penalty(
            _Model(torch.zeros(E, B, D + 1)), _SAC(np.random.default_rng(0)), torch.zeros(B, D), torch.zeros(B, A), 0
        )


def test_tiny_mobile_run_writes_the_run_folder(hopper_dataset, tmp_path):
    from dataclasses import replace

    dataset = replace(
        hopper_dataset,
        metadata={**hopper_dataset.metadata, "env_id": "Hopper-v5", "ref_min_score": -20.0, "ref_max_score": 3000.0},
    )
    config = resolve("mobile", overrides=[*TINY, "epochs=2"], dataset="tiny")
    summary = OfflineTrainer(config, tmp_path, dataset, progress=False).train()
    assert summary["finished"] and summary["algo"] == "mobile" and summary["sac_steps"] == 40
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert (metrics["train/bellman_penalty"] > 0).all() and (metrics["rollout/mean_penalty"] == 0).all()
    assert (tmp_path / "checkpoints" / "last.pt").is_file() and (tmp_path / "dynamics.pt").is_file()


def test_train_cli_mobile(hopper_dataset, tmp_path, capsys):
    from offline_mbrl.data.minari_io import write_minari

    write_minari(hopper_dataset, "test/hopper/mobile-v0", env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3e3)
    args = ["train", "--algo", "mobile", "--dataset", "minari:test/hopper/mobile-v0", "--runs", str(tmp_path)]
    args += ["--no-progress", "--epochs", "1"] + [x for o in TINY for x in ("--set", o)]
    assert main(args) == 0
    assert "mobile on minari:test/hopper/mobile-v0: epoch 1/1" in capsys.readouterr().out
    assert next(tmp_path.rglob("summary.json")).parent.parts[-4] == "mobile"
