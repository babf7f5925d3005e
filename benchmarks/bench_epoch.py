"""Wall time of one ADMPO-OFF epoch and its split: 1000 SAC steps (batch 256, Table 3 networks) + one roll-out
of 50,000 trajectories x H = 5 with m = 5 (official ADM sizes, adm_std penalty) + 10 evaluation episodes.

It runs the real loop (``offline_mbrl.algos.harness.OfflineTrainer``) for one epoch on a Hopper-v5 dataset of
``--dataset-steps`` uniform-random transitions, with an ADM fitted for one epoch (fit time not counted). The
termination function is switched off so that every trajectory runs the full H steps (the worst case; with it,
roll-outs of a weak policy end early). Prints the per-phase times from the run's metrics.csv.

    python benchmarks/bench_epoch.py [--device cpu|cuda] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import pandas as pd
import torch

from offline_mbrl.algos.harness import OfflineTrainer
from offline_mbrl.config import resolve
from offline_mbrl.envs.gym_env import collect_transitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset-steps", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = collect_transitions(
        None, "Hopper-v5", args.dataset_steps, seed=0, metadata={"ref_min_score": -20.272305, "ref_max_score": 3234.3}
    )
    config = resolve(
        "admpo-off",
        overrides=[
            "epochs=1",
            "dynamics.max_epochs=1",
            "rollout.rollout_length=5",
            "dynamics.max_backtrack=5",
            "rollout.rollout_batch_size=50000",
        ],
        dataset="hopper-random (benchmark)",
    )
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = OfflineTrainer(config, run_dir, dataset, device=args.device, progress=False)
        trainer.termination = None  # full-length roll-outs
        start = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - start
        row = pd.read_csv(f"{run_dir}/metrics.csv").iloc[0]
    print(f"device {args.device}, threads {args.threads}; ADMPO-OFF epoch = 1000 SAC steps + roll-out 50000 x H=5, m=5")
    print(f"rollout     {row['time/rollout_s']:8.2f} s  ({row['rollout/num_transitions']:.0f} transitions)")
    print(f"sac         {row['time/sac_s']:8.2f} s  (1000 updates)")
    print(f"evaluation  {row['time/eval_s']:8.2f} s  (10 episodes)")
    print(f"epoch       {row['time/epoch_s']:8.2f} s  (model fitting and set-up excluded; whole call {total:.1f} s)")


if __name__ == "__main__":
    main()
