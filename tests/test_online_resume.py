"""A killed online run (MBPO, ADMPO-ON) resumes to exactly the uninterrupted run: the same metrics, SAC, model,
real buffer and model buffer, whether it died in a model fit, a roll-out, an env step, a SAC update or while writing
its checkpoint (pattern of tests/test_kill_resume.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from offline_mbrl.algos.online_harness import OnlineTrainer
from offline_mbrl.runs import LOCK_NAME
from test_offline import DETERMINISTIC_COLUMNS
from test_online import WARMUP, tiny_config

EPOCHS = 3
KILL_STEP = WARMUP + 50 + 30  # mid-epoch 2 (epoch 1 ends at env step WARMUP + 50), a fit step


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the package cleans up after it."""


class _KillInFit(OnlineTrainer):
    def train_model(self):
        if self.env_step == KILL_STEP:  # a fit step: (140 - 60) % 20 == 0
            raise _Killed
        return super().train_model()


class _KillInRollout(OnlineTrainer):
    def rollout(self):
        if self.env_step == KILL_STEP - 5:
            raise _Killed
        return super().rollout()


class _KillInEnv(OnlineTrainer):
    def env_step_once(self):
        if self.env_step == KILL_STEP:
            raise _Killed
        return super().env_step_once()


class _KillInSAC(OnlineTrainer):
    def sac_batch(self):
        if self.env_step == KILL_STEP + 3:
            raise _Killed
        return super().sac_batch()


def _kill_in_checkpoint_write(monkeypatch):
    real = torch.save

    def save(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("counters", {}).get("epoch") == 2:
            open(path, "wb").write(b"half a checkpoint")
            raise _Killed
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory):
    runs = {}
    for algo in ("admpo-on", "mbpo"):
        runs[algo] = tmp_path_factory.mktemp(f"full-{algo}")
        OnlineTrainer(tiny_config(algo, EPOCHS), runs[algo], progress=False).train()
    return runs


@pytest.mark.parametrize(
    "algo, phase",
    [("admpo-on", "fit"), ("admpo-on", "rollout"), ("admpo-on", "env"), ("admpo-on", "checkpoint"), ("mbpo", "sac")],
)
def test_killed_online_run_resumes_to_the_uninterrupted_result(algo, phase, full_runs, tmp_path, monkeypatch):
    full = full_runs[algo]
    config, run = tiny_config(algo, EPOCHS), tmp_path / "run"
    trainer_cls = {"fit": _KillInFit, "rollout": _KillInRollout, "env": _KillInEnv, "sac": _KillInSAC}
    if phase == "checkpoint":
        _kill_in_checkpoint_write(monkeypatch)
    with pytest.raises(_Killed):
        trainer_cls.get(phase, OnlineTrainer)(config, run, progress=False).train()
    monkeypatch.undo()
    (run / LOCK_NAME).write_text("999999999\n")  # a real kill leaves its lock: a dead pid's lock is taken over
    OnlineTrainer(config, run, progress=False).train()
    a, b = pd.read_csv(full / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(DETERMINISTIC_COLUMNS(a), DETERMINISTIC_COLUMNS(b), check_exact=True)
    sa = torch.load(full / "checkpoints" / "last.pt", weights_only=True)
    sb = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "real_buffer", "model_buffer"):
        for key, value in sa[part].items():
            if isinstance(value, dict):  # a buffer's storage
                assert all(torch.equal(v, value_b) for v, value_b in zip(value.values(), sb[part][key].values()))
            elif isinstance(value, torch.Tensor):
                assert torch.equal(value, sb[part][key]), (part, key)
            else:
                assert value == sb[part][key], (part, key)
    assert all(torch.equal(v, sb["sac"]["model"][k]) for k, v in sa["sac"]["model"].items())
    assert sa["counters"] == sb["counters"]
    assert not list(run.rglob("*.tmp")) and not (run / LOCK_NAME).exists()
