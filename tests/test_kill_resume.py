"""Kills during model fit, roll-out, SAC and checkpoint write each leave a run that resumes (or refits) to the same
final weights and metrics as an uninterrupted one; divergence stops a run and keeps its last good checkpoint; a
model without one finite step is a named error; extending ``epochs`` on resume is allowed only with a fixed
actor-lr period and is recorded."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pandas as pd
import pytest
import torch

import offline_mbrl.algos.harness as harness
from offline_mbrl.algos.harness import OfflineTrainer
from offline_mbrl.errors import CheckpointError, DivergenceError
from offline_mbrl.models import build_model
from offline_mbrl.models.checkpoint import save_model
from offline_mbrl.runs import LOCK_NAME
from test_offline import DETERMINISTIC_COLUMNS, _config

KILL_CONFIG = dict(algo="admpo-off", epochs=4, extra=["checkpoint_every=2", "rollout.model_retain_epochs=1"])


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the package cleans up after it."""


@pytest.fixture(scope="module")
def data(hopper_dataset):
    return replace(
        hopper_dataset,
        metadata={**hopper_dataset.metadata, "env_id": "Hopper-v5", "ref_min_score": -20.0, "ref_max_score": 3000.0},
    )


@pytest.fixture(scope="module")
def full_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    OfflineTrainer(_config(**KILL_CONFIG), run, data, progress=False).train()
    return run


class _KillInRollout(OfflineTrainer):
    def rollout(self):
        if self.epoch == 2 and self.step % 20 == 10:  # mid-epoch 3, after the epoch-2 checkpoint
            raise _Killed
        return super().rollout()


class _KillInSAC(OfflineTrainer):
    def sac_batch(self):
        if self.epoch == 2 and self.step % 20 == 15:
            raise _Killed
        return super().sac_batch()


def _kill_in_fit(monkeypatch):
    real = harness.fit

    def fit_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise _Killed  # the fitted model is lost before it is saved

    monkeypatch.setattr(harness, "fit", fit_then_die)


def _kill_in_checkpoint_write(monkeypatch):
    real = torch.save

    def save(obj, path, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 4:
            open(path, "wb").write(b"half a checkpoint")
            raise _Killed
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


@pytest.mark.parametrize("phase", ["fit", "rollout", "sac", "checkpoint"])
def test_killed_run_resumes_to_the_uninterrupted_result(phase, data, full_run, tmp_path, monkeypatch):
    config, run = _config(**KILL_CONFIG), tmp_path / "run"
    if phase != "fit":  # reuse the fitted model: the kill comes later
        run.mkdir()
        shutil.copy(full_run / "dynamics.pt", run / "dynamics.pt")
    trainer_cls = {"rollout": _KillInRollout, "sac": _KillInSAC}.get(phase, OfflineTrainer)
    {"fit": _kill_in_fit, "checkpoint": _kill_in_checkpoint_write}.get(phase, lambda m: None)(monkeypatch)
    with pytest.raises(_Killed):
        trainer_cls(config, run, data, progress=False).train()
    monkeypatch.undo()
    if phase == "fit":
        assert not (run / "dynamics.pt").exists() and not (run / "checkpoints").exists()
    (run / LOCK_NAME).write_text("999999999\n")  # a real kill leaves its lock: a dead pid's lock is taken over
    OfflineTrainer(config, run, data, progress=False).train()
    a, b = pd.read_csv(full_run / "metrics.csv"), pd.read_csv(run / "metrics.csv")
    pd.testing.assert_frame_equal(DETERMINISTIC_COLUMNS(a), DETERMINISTIC_COLUMNS(b), check_exact=True)
    wa = torch.load(full_run / "checkpoints" / "last.pt", weights_only=True)["sac"]["model"]
    wb = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["sac"]["model"]
    assert all(torch.equal(value, wb[key]) for key, value in wa.items())
    assert not list(run.rglob("*.tmp")) and not (run / LOCK_NAME).exists()


class _Diverging(OfflineTrainer):
    def sac_batch(self):
        batch = super().sac_batch()
        return {**batch, "rewards": batch["rewards"] * float("nan")} if self.epoch == 1 else batch


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(data, full_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(full_run / "dynamics.pt", run / "dynamics.pt")
    config = _config("admpo-off", epochs=3)
    with pytest.raises(DivergenceError, match=r"epoch 2 .*last good checkpoint .*last.pt \(epoch 1\) is kept"):
        _Diverging(config, run, data, progress=False).train()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["sac"]["model"].values())
    assert list(pd.read_csv(run / "metrics.csv")["epoch"]) == [1]
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 1


def _broken_ensemble(path, fill=None):
    model = build_model(
        "ensemble", 11, 3, ensemble_size=3, num_elites=2, hidden_dims=(16, 16), weight_decays=(1e-5,) * 3
    )
    if fill is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(fill)
    save_model(model, path)
    return path


@pytest.mark.parametrize(
    "fill, extra, words",
    [
        (float("nan"), [], "no finite step"),
        (
            None,
            ["rollout.penalty_coef=1e300"],
            "non-finite penalized rewards",
        ),  # finite outputs, -inf after the penalty
    ],
)
def test_a_model_without_one_finite_step_is_a_named_error(fill, extra, words, data, tmp_path):
    path = _broken_ensemble(tmp_path / "ensemble.pt", fill)
    with pytest.raises(DivergenceError, match=words):
        OfflineTrainer(_config("mopo", extra=extra), tmp_path / "run", data, dynamics=path, progress=False).train()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_extending_epochs_needs_a_fixed_lr_period_and_is_recorded(data, full_run, tmp_path):
    for name, extra in (("fixed", ["sac.lr_schedule_epochs=10"]), ("follows", [])):
        run = tmp_path / name
        run.mkdir()
        shutil.copy(full_run / "dynamics.pt", run / "dynamics.pt")
        OfflineTrainer(_config("admpo-off", epochs=1, extra=extra), run, data, progress=False).train()
        longer = OfflineTrainer(_config("admpo-off", epochs=2, extra=extra), run, data, progress=False)
        if not extra:
            with pytest.raises(CheckpointError, match="epochs: 1 -> 2 .*lr_schedule_epochs"):
                longer.train()
            continue
        summary = longer.train()
        assert summary["epochs_completed"] == 2 and summary["epochs_extended_from"] == [1]
        assert "epochs: 2" in (run / "config.yaml").read_text()
