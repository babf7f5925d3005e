"""When would the official ADMPO validation have stopped a model fit that runs with our deterministic one?

    python analysis/official_stop.py --fit MODEL.pt.partial --dataset SPEC [--batch 256] [--noise-draws 200]

``offline-mbrl model fit`` measures each epoch's holdout error on every holdout window in eval mode (default);
the official code measures it on one dropout-on batch of 256 windows per k (``--validation-batch 256``,
``models.fit.sample_errors``). Under ADM's any-improvement rule (patience 25) the batch error's noise is what ends
a fit: a deterministic error that still falls by a fraction of a percent per epoch keeps it going.

This script reads a running fit's checkpoint (``<out>.partial``) or a finished fit's model (``model fit`` keeps
the fit's record in it), measures the noise of the official batch error
on its kept weights (``--noise-draws`` batch errors over the whole-holdout error), then replays the official rule
on the fit's own per-epoch holdout errors, each multiplied by a noise factor drawn from those measurements
(independent across epochs), ``--simulations`` times. It prints the noise, the fraction of simulated official
fits that would have stopped within the epochs run so far, and the quantiles of their stopping epoch. Only holdout
data and the fit's own record are read, never returns.

The noise grows as the model improves (hopper-medium ADM: relative std 0.05 after 2 epochs, 0.11 at epoch 67, 0.16
at epoch 409), so the noise of the kept weights, standing for every epoch, makes the replays stop early. Earlier
measurements (``--noise-at EPOCH=STD``, from earlier runs of this script) give a second replay in which the relative
std grows linearly between them and the one measured now (the measured noise's shape, rescaled).

The run root's rule (README, "Results"): a result fit that runs with the deterministic error is ended (``model
fit --epochs <epochs done>``, which keeps its best snapshot) once at least 90 % of the simulated official fits
would have stopped, i.e. once it has trained at least as long as the official rule would have, nine times in ten.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from offline_mbrl.data.load import load_dataset
from offline_mbrl.data.windows import Windows
from offline_mbrl.models import build_model
from offline_mbrl.models.fit import FitConfig, evaluate_errors, sample_errors, split_holdout
from offline_mbrl.persist import load_checkpoint


def stop_epochs(
    history: np.ndarray, noise: np.ndarray, patience: int, simulations: int, seed: int, std: np.ndarray | None = None
) -> np.ndarray:
    """Stopping epochs (1-based; 0 = not stopped) of ``simulations`` replays of the any-improvement rule on
    ``history`` (E,) per-epoch holdout errors times noise factors drawn from ``noise`` (mean-1 factors, with
    replacement); with ``std`` (E,), each epoch's factors are rescaled to that relative std (floored at 0.001)."""
    rng = np.random.default_rng(seed)
    factors = rng.choice(noise, size=(simulations, len(history)))  # (S, E)
    if std is not None:
        factors = np.maximum(1.0 + (factors - 1.0) * (std / noise.std())[None, :], 1e-3)
    noisy = history[None, :] * factors
    best = np.minimum.accumulate(noisy, axis=1)
    accepted = np.concatenate([np.ones((simulations, 1), bool), noisy[:, 1:] < best[:, :-1]], axis=1)  # (S, E)
    stops = np.zeros(simulations, dtype=int)
    for s in range(simulations):
        kept = np.flatnonzero(accepted[s]) + 1  # epochs accepted
        gaps = np.diff(np.append(kept, len(history) + 1)) - 1  # epochs without acceptance after each kept one
        late = np.flatnonzero(gaps >= patience)
        stops[s] = kept[late[0]] + patience if len(late) else 0
    return stops


def _summary(label: str, stops: np.ndarray, epochs: int) -> str:
    stopped = stops[stops > 0]
    text = f"{label}: {len(stopped) / len(stops):.1%} of {len(stops)} simulated official fits stopped by epoch {epochs}"
    if len(stopped):
        q10, q50, q90 = np.quantile(stopped, [0.1, 0.5, 0.9])
        text += f"; their stopping epoch: median {q50:.0f}, 10-90 % {q10:.0f}-{q90:.0f}"
    return text


def _noise_point(text: str) -> tuple[int, float]:
    epoch, _, std = text.partition("=")
    try:
        return int(epoch), float(std)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--noise-at wants EPOCH=STD (e.g. 67=0.114), got {text!r}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fit", required=True, help="a running fit's checkpoint (<out>.partial) or a model `model fit` saved"
    )
    parser.add_argument("--dataset", required=True, help="the fit's dataset spec")
    parser.add_argument("--batch", type=int, default=256, help="official validation batch (default 256)")
    parser.add_argument("--noise-draws", type=int, default=200, help="batch errors measured (default 200)")
    parser.add_argument("--simulations", type=int, default=2000, help="replays of the official rule (default 2000)")
    parser.add_argument(
        "--noise-at",
        type=_noise_point,
        nargs="*",
        default=[],
        metavar="EPOCH=STD",
        help="relative std measured earlier in the fit (e.g. 109=0.056): adds a replay with growing noise",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    saved = load_checkpoint(args.fit)
    if "state_dict" in saved:  # a model saved with its fit's record (`model fit`): its weights are the kept ones
        saved = {**saved["fit"], "best_state": saved["state_dict"]}
    fingerprint = saved["fingerprint"]
    dataset = load_dataset(args.dataset)
    model_fields = {k: v for k, v in fingerprint["model"].items() if k not in ("kind", "obs_dim", "action_dim")}
    model = build_model(fingerprint["model"]["kind"], dataset.obs_dim, dataset.action_dim, **model_fields)
    model.normalizer.set_stats(dataset.normalization_stats())
    model.load_state_dict(saved["best_state"])
    config = FitConfig(**fingerprint["fit"])
    holdout = Windows(dataset.subset(split_holdout(dataset, config)[1]), model.window_length)

    full = evaluate_errors(model, holdout, config.eval_batch_size).mean().item()
    generator = torch.Generator().manual_seed(args.seed)
    draws = [sample_errors(model, holdout, args.batch, generator).mean().item() for _ in range(args.noise_draws)]
    noise = np.array(draws) / full
    history = np.array([h["holdout_mse"] for h in saved["history"]])
    epochs, now = len(history), noise.std() / noise.mean()
    print(f"{args.fit}: {epochs} epochs run, whole-holdout error of the kept weights {full:.6g}")
    print(
        f"official batch error ({args.batch} windows per channel, dropout on): mean {noise.mean():.3f} x the "
        f"whole-holdout error, relative std {now:.3f} (--noise-at {epochs}={now:.3f}), 5-95 % "
        f"{np.quantile(noise, 0.05):.3f}-{np.quantile(noise, 0.95):.3f}"
    )
    factors = noise / noise.mean()
    stops = stop_epochs(history, factors, config.patience, args.simulations, args.seed)
    print(_summary(f"noise {now:.3f} at every epoch", stops, epochs))
    if args.noise_at:
        points = sorted([*args.noise_at, (epochs, now)])
        std = np.interp(np.arange(1, epochs + 1), [e for e, _ in points], [v for _, v in points])
        stops = stop_epochs(history, factors, config.patience, args.simulations, args.seed, std=std)
        print(_summary("noise growing through " + ", ".join(f"{e}={v:.3f}" for e, v in points), stops, epochs))


if __name__ == "__main__":
    main()
