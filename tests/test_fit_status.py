"""Where a fit stands, read from its checkpoint (`models.fit.fit_progress`, `offline-mbrl model status`): the fields
agree with the fit's own result, the trend is the log-linear slope of the holdout MSE, bad paths are refused by name."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from offline_mbrl.cli import main
from offline_mbrl.errors import CheckpointError
from offline_mbrl.models.checkpoint import load_model, save_model
from offline_mbrl.models.fit import FitConfig, fit, fit_progress, fit_record
from tests.test_compounding import tiny


def _partial_fit(tmp_path, dataset, epochs=3):
    model = tiny("adm", dataset, seed=7).train()
    partial = tmp_path / "adm.pt.partial"
    result = fit(model, dataset, FitConfig(max_epochs=epochs, seed=3, batch_size=64), checkpoint=partial)
    return partial, result, model


def test_progress_agrees_with_the_fit_result(hopper_dataset, tmp_path):
    partial, result, _ = _partial_fit(tmp_path, hopper_dataset)
    progress = fit_progress(partial)
    assert (progress.kind, progress.dataset, progress.rows) == ("adm", hopper_dataset.source, len(hopper_dataset))
    assert (progress.patience, progress.min_improvement) == (25, 0.0)
    assert progress.epochs == result.epochs == 3
    assert progress.best_epoch == result.best_epoch
    assert progress.epochs_since_update == result.epochs - result.best_epoch
    assert progress.holdout_mse == pytest.approx(float(np.mean(result.holdout_errors)))
    assert progress.last_holdout_mse == pytest.approx(result.history[-1]["holdout_mse"])


def _synthetic(path, mse, accepted):
    history = [
        {"epoch": i + 1, "train_loss": 0.0, "holdout_mse": m, "accepted": a}
        for i, (m, a) in enumerate(zip(mse, accepted))
    ]
    fingerprint = {
        "model": {"kind": "ensemble"},
        "dataset": "d",
        "rows": 10,
        "fit": {"patience": 5, "min_improvement": 0.01},
    }
    best = torch.tensor([min(mse), min(mse) * 3])
    torch.save({"fingerprint": fingerprint, "history": history, "selection_best": best, "epochs_since_update": 2}, path)


def test_trend_is_the_log_linear_slope_over_the_window(tmp_path):
    rng = np.random.default_rng(0)
    mse = 0.5 * 0.98 ** np.arange(50) * np.exp(rng.normal(0, 0.01, 50))
    _synthetic(tmp_path / "e.pt.partial", mse.tolist(), [True] * 47 + [False] * 3)
    progress = fit_progress(tmp_path / "e.pt.partial", window=20)
    slope = np.polyfit(np.arange(20), np.log(mse[-20:]), 1)[0]  # NumPy reference on the last 20 epochs
    assert progress.trend == pytest.approx(math.exp(slope) - 1)
    assert -0.03 < progress.trend < -0.01  # about 2 % lower per epoch
    assert (progress.epochs, progress.best_epoch, progress.epochs_since_update) == (50, 47, 2)
    assert progress.holdout_mse == pytest.approx(2 * mse.min())  # mean of the per-member record
    _synthetic(tmp_path / "one.pt.partial", [0.3], [True])
    assert math.isnan(fit_progress(tmp_path / "one.pt.partial").trend)


def test_a_model_saved_with_its_fit_record_reads_as_the_finished_fit(hopper_dataset, tmp_path):
    partial, result, model = _partial_fit(tmp_path, hopper_dataset)
    running = fit_progress(partial)
    save_model(model, tmp_path / "adm.pt", fit_record=fit_record(partial))
    partial.unlink()
    done = fit_progress(tmp_path / "adm.pt")
    assert done.saved and not running.saved
    assert dataclasses.replace(done, path=running.path, saved=False) == running
    assert load_model(tmp_path / "adm.pt").kind == "adm"  # the record does not disturb loading
    save_model(model, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"bare.pt: a saved model without its fit's record"):
        fit_progress(tmp_path / "bare.pt")


def test_bad_checkpoints_are_refused_by_name(tmp_path):
    torch.save({"format": 1, "kind": "adm"}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"m.pt: not a fit checkpoint \(no fingerprint, history"):
        fit_progress(tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"missing.partial: checkpoint file does not exist"):
        fit_progress(tmp_path / "missing.partial")
    with pytest.raises(ValueError, match="window must be >= 2"):
        fit_progress(tmp_path / "m.pt", window=1)


def test_model_status_lists_fits_in_progress_and_saved_models(hopper_dataset, tmp_path, capsys):
    partial, result, model = _partial_fit(tmp_path, hopper_dataset, epochs=2)
    save_model(model, tmp_path / "sub" / "done.pt")
    save_model(model, tmp_path / "sub" / "fitted.pt", fit_record=fit_record(partial))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "sub" / "actor.pt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"sac": {}}, tmp_path / "run" / "checkpoints" / "last.pt")  # a run's training checkpoint: left out
    assert main(["model", "status", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| fit | kind | dataset | state | epochs | kept epoch | since kept |")
    in_progress, actor, saved, fitted = lines[2:]
    assert in_progress.startswith(f"| {tmp_path / 'adm.pt'} | adm | {hopper_dataset.source} | in progress | 2 | ")
    assert f"| {result.epochs - result.best_epoch}/25 |" in in_progress
    assert actor.startswith(f"| {tmp_path / 'sub' / 'actor.pt'} | — | — | not a model | — |")
    assert saved.startswith(f"| {tmp_path / 'sub' / 'done.pt'} | adm | — | saved | — |")
    assert fitted.startswith(f"| {tmp_path / 'sub' / 'fitted.pt'} | adm | {hopper_dataset.source} | saved | 2 | ")
    assert main(["model", "status", str(tmp_path / "adm.pt")]) == 0  # X.pt names its fit in progress
    assert "| in progress | 2 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nothing.pt", r"nothing.pt: no such file or folder \(nor a fit in progress, nothing.pt.partial\)"),
        ("notes.txt", r"notes.txt: not a model file \(\*.pt\) or fit checkpoint"),
        ("empty", r"empty: no model file \(\*.pt or \*.pt.partial\) in this folder"),
    ],
)
def test_model_status_refuses_bad_paths(tmp_path, capsys, name, message):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    assert main(["model", "status", str(tmp_path / name)]) == 2
    assert re.search(message, capsys.readouterr().err)
