"""`analysis/official_stop.py`: the vectorized replay of the official any-improvement rule stops where a plain
epoch-by-epoch loop of the rule does."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "official_stop", Path(__file__).resolve().parents[1] / "analysis" / "official_stop.py"
)
official_stop = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(official_stop)


def _loop_rule(noisy: np.ndarray, patience: int) -> int:
    best, since = np.inf, 0
    for epoch, error in enumerate(noisy, start=1):
        best, since = (error, 0) if error < best else (best, since + 1)
        if since >= patience:
            return epoch
    return 0


def test_noiseless_replay_stops_patience_epochs_after_the_last_improvement():
    history = np.array([5.0, 4.0, 3.0, 3.5, 2.95, 2.9, 2.8, 3.3, 2.8, 3.6])  # kept 1, 2, 3, 5, 6, 7 (2.8 = no gain)
    stops = official_stop.stop_epochs(history, np.ones(1), patience=3, simulations=4, seed=0)
    np.testing.assert_array_equal(stops, [10, 10, 10, 10])  # epochs 8, 9, 10 without improvement
    assert (official_stop.stop_epochs(history, np.ones(1), patience=5, simulations=2, seed=0) == 0).all()


def test_noisy_replay_matches_the_epoch_loop():
    history = 1.0 * 0.995 ** np.arange(300)
    noise = np.random.default_rng(1).lognormal(0.0, 0.16, 200)
    stops = official_stop.stop_epochs(history, noise, patience=25, simulations=50, seed=7)
    rng = np.random.default_rng(7)
    noisy = history[None, :] * rng.choice(noise, size=(50, len(history)))
    assert stops.tolist() == [_loop_rule(row, 25) for row in noisy]
    assert (stops > 0).any() and (stops < 300).all()


def test_a_per_epoch_std_rescales_the_noise():
    history = 1.0 * 0.995 ** np.arange(300)
    noise = np.random.default_rng(1).lognormal(0.0, 0.16, 200)
    noise = noise / noise.mean()
    plain = official_stop.stop_epochs(history, noise, patience=25, simulations=50, seed=7)
    same = official_stop.stop_epochs(history, noise, 25, 50, 7, std=np.full(300, noise.std()))
    np.testing.assert_array_equal(plain, same)  # the measured std at every epoch: the plain replay
    quiet = official_stop.stop_epochs(history, noise, 25, 50, 7, std=np.full(300, 1e-6))
    assert (quiet == 0).all()  # no noise on a falling error: never stops
