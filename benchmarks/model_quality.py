"""Dynamics-model quality on a real Hopper-v5 dataset: uniform random actions plus the shipped SAC "medium"
behaviour policy (``datasets/policies/hopper_medium.pt``, sampled), 20k steps by default.

Prints
  (1) the 1-step holdout MSE (mean over the 11 obs dims + reward, held-out episodes of the fit) of ADM (k = 1)
      and of the ensemble (mean over its elites, and its best member);
  (2) the open-loop error of 20-step roll-outs on held-out episodes (the recorded actions, predictions fed back,
      Gaussian sampling on; ``offline_mbrl.analysis.compounding``): mean L2 error ‖ŝ_h − s_h‖₂ over segments at
      h = 1, 5, 10, 20 for ADM (random backtracking, and k = m), the bootstrapping RNN and the ensemble.

All models use the official sizes and ``fit`` defaults (holdout: random whole episodes, min(20 %, 1000) rows),
with epoch caps so the run stays short. Run: ``.venv/bin/python benchmarks/model_quality.py`` (1 thread).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_models.py

import torch  # noqa: E402

from offline_mbrl.agents.sac import load_actor  # noqa: E402
from offline_mbrl.algos.collect import stochastic  # noqa: E402
from offline_mbrl.analysis.compounding import compounding_error, evaluation_segments  # noqa: E402
from offline_mbrl.data.dataset import TransitionDataset  # noqa: E402
from offline_mbrl.envs.gym_env import collect_transitions  # noqa: E402
from offline_mbrl.models import build_model  # noqa: E402
from offline_mbrl.models.fit import FitConfig, fit  # noqa: E402

ENV_ID = "Hopper-v5"
MEDIUM_POLICY = Path(__file__).resolve().parents[1] / "datasets" / "policies" / "hopper_medium.pt"


def make_dataset(random_steps: int, policy_steps: int, seed: int) -> TransitionDataset:
    medium = stochastic(load_actor(MEDIUM_POLICY))
    parts = [
        collect_transitions(None, ENV_ID, random_steps, seed=seed),
        collect_transitions(medium, ENV_ID, policy_steps, seed=seed + 100),
    ]
    return TransitionDataset.concatenate(parts, source=f"{ENV_ID} random {random_steps} + medium policy {policy_steps}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--random-steps", type=int, default=10_000)
    parser.add_argument("--policy-steps", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=16, help="epoch cap of ADM and the bootstrapping RNN")
    parser.add_argument("--ensemble-epochs", type=int, default=40, help="epoch cap of the ensemble")
    parser.add_argument("--max-backtrack", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=20)
    parser.add_argument("--segments", type=int, default=300, help="held-out segments for the open-loop error")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    dataset = make_dataset(args.random_steps, args.policy_steps, args.seed)
    info = dataset.summary()
    print(
        f"dataset: {info['source']}: {info['transitions']} transitions, {info['episodes']} episodes "
        f"(mean length {info['length_mean']:.0f}), {info['terminals']} terminals"
    )

    models, results = {}, {}
    for name, kind, epochs in (
        ("ADM", "adm", args.epochs),
        ("BootRNN", "boot_rnn", args.epochs),
        ("ensemble", "ensemble", args.ensemble_epochs),
    ):
        fields = {} if kind == "ensemble" else {"max_backtrack": args.max_backtrack}
        models[name] = build_model(kind, dataset.obs_dim, dataset.action_dim, **fields)
        t0 = time.perf_counter()
        results[name] = fit(models[name], dataset, FitConfig.for_model(models[name], max_epochs=epochs, seed=args.seed))
        r = results[name]
        print(
            f"fit {name}: {r.epochs} epochs (kept {r.best_epoch}), {time.perf_counter() - t0:.0f} s, "
            f"{r.num_train} train / {r.num_holdout} holdout rows"
        )

    elites = models["ensemble"].elites.tolist()
    member_errors = results["ensemble"].holdout_errors
    print("\n(1) 1-step holdout MSE (same held-out episodes)")
    print(
        f"    ADM k=1                {results['ADM'].holdout_errors[0]:.5f}   (k=1…{args.max_backtrack}: "
        f"{' '.join(f'{e:.4f}' for e in results['ADM'].holdout_errors)})"
    )
    print(f"    BootRNN history 1      {results['BootRNN'].holdout_errors[0]:.5f}")
    print(f"    ensemble, elite mean   {member_errors[elites].mean():.5f}   (best member {member_errors.min():.5f})")

    segments = evaluation_segments(
        dataset, list(models.values()), args.horizon, "holdout", num_segments=args.segments, fit_seed=args.seed
    )
    summary = compounding_error(models, dataset, segments, seed=args.seed).summary
    steps = sorted({1, 5, 10, args.horizon})
    table = summary[summary["h"].isin(steps)].pivot(index="model", columns="h", values="mean")
    print(f"\n(2) open-loop mean L2 error over {len(segments)} held-out segments (history {segments.max_backtrack})")
    print(table.to_string(float_format=lambda x: f"{x:.4f}"))
    overflow = summary.groupby("model")["n_overflow"].sum()
    print(f"    overflow points (counted as float32 max): {overflow.to_dict()}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
