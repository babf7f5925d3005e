"""Ray's overhead per trial in ``offline-mbrl sweep``: the same tiny trials run directly, one after the other in
this process (``offline_mbrl.cli.main``), and as a sweep on a local Ray of one CPU (so also one after the other).

The trials train ADMPO-OFF for one epoch of 20 SAC steps on 400 uniform-random Hopper-v5 steps with a tiny model,
a few seconds each: what is left of the sweep's time after the direct time is the overhead (task submission,
worker start and imports, the bookkeeping files). A sweep of one trial gives the fixed part (Ray's start and
shutdown, the first worker and its imports); a sweep of ``--trials`` trials the part each further trial adds.

    python benchmarks/bench_sweep.py [--trials 6]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import yaml

TINY = {
    "steps_per_epoch": 20,
    "eval_episodes": 2,
    "rollout.rollout_batch_size": 64,
    "rollout.rollout_freq": 10,
    "rollout.rollout_length": 3,
    "dynamics.max_epochs": 1,
    "dynamics.hidden_dim": 16,
    "dynamics.gru_layers": 1,
    "dynamics.head_blocks": 1,
    "dynamics.max_backtrack": 3,
    "sac.hidden_dims": [[16, 16]],
    "sac.batch_size": 32,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    os.environ["OMP_NUM_THREADS"] = "1"
    os.chdir(root)

    import torch

    from offline_mbrl import sweep
    from offline_mbrl.cli import main as cli
    from offline_mbrl.data.minari_io import write_minari
    from offline_mbrl.envs.gym_env import collect_transitions

    torch.set_num_threads(1)
    data = collect_transitions(None, "Hopper-v5", 400, num_envs=4)
    write_minari(data, "bench/hopper/random-v0", env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=1000.0)

    def trials(runs: str) -> list:
        spec = {"algos": ["admpo-off"], "datasets": ["minari:bench/hopper/random-v0"], "epochs": 1}
        spec |= {"seeds": list(range(args.trials)), "set": TINY, "runs": runs}
        (root / "spec.yaml").write_text(yaml.safe_dump(spec))
        return sweep.expand(sweep.load_spec(root / "spec.yaml"))

    cli(list(trials("warm-up")[0].argv))  # imports and first-call costs, paid by each Ray worker too
    start = time.perf_counter()
    for trial in trials("direct"):
        assert cli(list(trial.argv)) == 0
    direct = time.perf_counter() - start

    def swept(runs: str, count: int) -> float:
        todo = trials(runs)[:count]
        start = time.perf_counter()
        results = sweep.run_sweep(todo, Path(runs), num_cpus=1, echo=lambda line: None)
        assert len(results) == count and all(error is None for error in results.values()), results
        return time.perf_counter() - start

    n, per_trial = args.trials, direct / args.trials
    one, many = swept("swept-one", 1), swept("swept-many", n)
    print(f"direct: {per_trial:.2f} s per trial ({n} trials in {direct:.1f} s)")
    print(f"sweep of 1 trial on a 1-CPU local Ray: {one:.1f} s; of {n} trials: {many:.1f} s")
    print(f"fixed overhead per sweep (Ray start/stop, first worker and its imports): {one - per_trial:.1f} s")
    print(f"overhead per further trial: {(many - one) / (n - 1) - per_trial:.2f} s")


if __name__ == "__main__":
    main()
