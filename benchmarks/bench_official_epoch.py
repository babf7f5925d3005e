"""ADMPO-OFF epoch at the official hopper-medium settings against the official ADMPO code, and the roll-out's
fraction of the fp32 matmul roof (issue 15), measured side by side in one run.

Settings (official ``config/d4rl/hopper-medium.yml`` and ``main4offline.py`` defaults; ours from
``configs/admpo_off/d4rl/hopper-medium.yaml``): 50,000 roll-out starts, H = 10, m = 5, ``adm_std`` penalty with
beta = 1, dropout on in roll-outs, 1000 SAC updates per epoch at batch 256 with real_ratio 0.05, fixed alpha 0.05,
Table 3 networks (256, 256), 10 evaluation episodes. Same data on both sides: ``--dataset`` (default the collected
``minari:offline_mbrl/hopper/medium-v0``, read-only). Same model sizes: GRU 3 x 200, 4 residual blocks of 200,
Gaussian head 2 (D + 1). Weights are random (the models are not fitted: roll-out cost does not depend on the
weights once every trajectory runs all H steps), with both models' input normalizers set from the dataset.
Termination is off on both sides (our ``trainer.termination = None``, the peer's ``static_fn`` replaced by one
that never ends a trajectory), so both roll out all 50,000 x 10 transitions, the worst case of a real epoch.

Each round runs one epoch of each side's own training loop, ours (``OfflineTrainer.train``, epochs = 1) and the
official one (``OFFTrainer.run`` driven by ``peers/run_admpo_official.py``, n_epochs = 1), each with
``--starts`` roll-out starts and ``--updates`` SAC updates, and reads the phase times each loop writes to its
``metrics.csv`` (roll-out, SAC, evaluation). Per epoch the times are scaled: roll-out x 50,000 / starts (ours runs
50,000 starts as blocks of ``DEFAULT_CHUNK`` one after another; the official code runs them as one batch, whose
temporaries are larger, so the linear scaling favours it), SAC x 1000 / updates. Evaluation depends on how long
the policy survives, so it is reported apart: both sides' own 10-episode evaluation loops run with their random
policies, environment steps are counted (the MuJoCo env's ``step``), and the epoch figure charges each side its
measured seconds per environment step x 10,000 steps (10 episodes that survive 1000 steps, the same behaviour
on both sides). Then the fp32 matmul roof (``bench_seeds.matmul_roof``) runs as many 256^3 matmuls as our round's
roll-out has FLOP (``torch.utils.flop_counter``, cross-checked with a count by hand).

Run (from ``benchmarks/``, about 7 minutes on the shared 2-core machine):
``ADMPO_OFFICIAL_PATH=/work/peers-src/ADMPO MINARI_DATASETS_PATH=... PYTHONPATH=.. OMP_NUM_THREADS=1
../.venv/bin/python bench_official_epoch.py``; ``--profile`` adds a profile of one block of our roll-out
(``--profile-only``: that alone).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import types
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP
os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm loads: no progress bars on either side

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from bench_seeds import ROOF_SIZE, matmul_roof, roof_matmuls, rounds  # noqa: E402
from peers.run_admpo_official import ALGO, FULL_EPOCHS, RunFolder, budget_parser, build_trainer, peer_setup  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from offline_mbrl.algos.harness import OfflineTrainer, build_dynamics  # noqa: E402
from offline_mbrl.config import resolve  # noqa: E402
from offline_mbrl.models.checkpoint import save_model  # noqa: E402
from offline_mbrl.persist import seeded  # noqa: E402
from offline_mbrl.rollout import DEFAULT_CHUNK, rollout  # noqa: E402

CONFIG_FILE = Path(__file__).resolve().parent.parent / "configs" / "admpo_off" / "d4rl" / "hopper-medium.yaml"
STARTS, H, STEPS, EVAL_STEPS = 50_000, 10, 1000, 10 * 1000  # official epoch: starts, horizon, SAC updates, env steps


class StepCounter:
    """Counts calls of ``env_class.step`` (every environment of that class, both sides' evaluation loops)."""

    def __init__(self, env_class: type) -> None:
        self.count, step = 0, env_class.step

        def counted(env, action):
            self.count += 1
            return step(env, action)

        env_class.step = counted


def phases(run_dir: Path) -> dict[str, float]:
    """The last ``metrics.csv`` row's phase seconds: ``rollout``, ``sac``, ``eval``."""
    row = pd.read_csv(run_dir / "metrics.csv").iloc[-1]
    return {p: float(row[f"time/{p}_s"]) for p in ("rollout", "sac", "eval")} | {"row": row}


class Ours:
    """One epoch of our loop per call, in a fresh run folder, from the same saved random-weight ADM."""

    def __init__(self, args, work: Path) -> None:
        self.config = resolve(
            "admpo-off",
            file=CONFIG_FILE,
            overrides=[
                "epochs=1",
                f"steps_per_epoch={args.updates}",
                f"rollout.rollout_batch_size={args.starts}",
                "eval_episodes=10",
            ],
            dataset=args.dataset,
        )
        self.work, self.calls, self.trainer = work, 0, None
        probe = OfflineTrainer(self.config, work / "probe", progress=False)  # loads the dataset once
        self.dataset, self.env_id = probe.dataset, probe.env_id
        with seeded(0):
            model = build_dynamics(self.config, self.dataset.obs_dim, self.dataset.action_dim)
        model.normalizer.set_stats(self.dataset.normalization_stats())
        self.model_path = work / "adm_random.pt"
        save_model(model, self.model_path)

    def __call__(self) -> dict[str, float]:
        self.calls += 1
        run_dir = self.work / f"ours{self.calls}"
        self.trainer = OfflineTrainer(self.config, run_dir, self.dataset, self.model_path, progress=False)
        self.trainer.termination = None  # every trajectory runs all H steps, as on the official side
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="rollout.penalty_coef")  # random model: break-even warning
            self.trainer.train()
        t = phases(run_dir)
        t["transitions"] = float(t.pop("row")["rollout/num_transitions"])
        return t


class Official:
    """One epoch of the official ``OFFTrainer.run`` per call (the trainer persists across calls)."""

    def __init__(self, args, work: Path) -> None:
        argv = ["--dataset", args.dataset, "--epochs", "1", "--steps-per-epoch", str(args.updates)]
        argv += ["--rollout-batch-size", str(args.starts), "--eval-episodes", "10", "--out", str(work / "official")]
        pargs_in = budget_parser("official", FULL_EPOCHS).parse_args(argv)
        _, dataset, env_id, env_kwargs, pargs = peer_setup(pargs_in)
        self.run = RunFolder(pargs_in, ALGO, dataset, env_id, env_kwargs)
        cwd = os.getcwd()
        self.trainer = build_trainer(pargs, self.run, None)
        os.chdir(cwd)
        agent = self.trainer.agent
        agent.dynamics.set_mu_std(*self.trainer.memory.cal_mu_std())  # as its fit does; weights stay random
        agent.learn_dynamics_from = lambda *_, **__: 0.0  # no model fit
        never = lambda obs, act, next_obs: np.zeros((len(obs), 1), dtype=bool)  # noqa: E731
        agent.static_fn = types.SimpleNamespace(termination_fn=never)
        self.run.open_metrics()

    def __call__(self) -> dict[str, float]:
        cwd = os.getcwd()
        os.chdir(self.run.peer_dir)
        try:
            self.run.restart_clock()
            stored = self.trainer.model_memory.cnt
            self.trainer.run()
        finally:
            os.chdir(cwd)
        t = phases(self.run.path)
        t.pop("row")
        memory = self.trainer.model_memory  # a ring buffer: transitions stored by this epoch's roll-out
        t["transitions"] = float((memory.cnt - stored) % memory.capacity or memory.capacity)
        return t


def rollout_block(ours: Ours, rows: int):
    """A call that rolls our model out from ``rows`` dataset starts (blocks of ``DEFAULT_CHUNK``) for H steps with
    the trainer's policy and the ``adm_std`` penalty, termination off: the roll-out of an epoch without the
    sampling of starts and the buffer write."""
    trainer = ours.trainer
    history = trainer.windows.history(trainer.windows.sample_rows(rows))
    return lambda: rollout(trainer.model, trainer.policy, history, H, "adm_std")


def parameter_count(module: torch.nn.Module) -> int:
    """Trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def rollout_flops(ours: Ours, rows: int = 256) -> int:
    """FLOP per transition of our ADM roll-out (penalty, dropout, the SAC policy included) counted by
    ``torch.utils.flop_counter`` on ``rows`` starts x H steps, termination off."""
    trainer = ours.trainer
    history = trainer.windows.history(torch.arange(rows) + trainer.model.window_length)
    with FlopCounterMode(display=False) as counter:
        rollout(trainer.model, trainer.policy, history, H, "adm_std")
    return counter.get_total_flops() // (rows * H)


def analytic_flops(obs_dim: int, action_dim: int, h: int = 200, layers: int = 3, blocks: int = 4, m: int = 5) -> int:
    """FLOP per transition by hand (2 per multiply-add, matmuls only): per step m GRU row-steps (layer 1 reads
    D + A inputs, the others h; 3 gates of h each for input and hidden) and m heads (``blocks`` h x h layers and
    the h -> 2 (D + 1) output), plus the cache's warm-up of m (m - 1) / 2 GRU row-steps per trajectory spread
    over H steps, plus the policy (D -> 256 -> 256 -> 2A)."""
    gru = 2 * 3 * h * ((obs_dim + action_dim) + h) + (layers - 1) * 2 * 3 * h * (2 * h)
    head = 2 * (blocks * h * h + h * 2 * (obs_dim + 1))
    policy = 2 * (obs_dim * 256 + 256 * 256 + 256 * 2 * action_dim)
    return m * (gru + head) + (m * (m - 1) // 2) * gru // H + policy


def profile_rollout(ours: Ours, rows: int, flops: int) -> None:
    """Where the time of one block of our roll-out goes: torch profiler, top operators by own CPU time; then the
    matmuls' (``aten::addmm``, ``aten::mm``) own CPU time against the roof run on the same FLOP right after, so
    that share of the roof = matmul share of the time x matmul speed / roof speed (``flops``: per transition)."""
    from torch.profiler import ProfilerActivity, profile

    trainer = ours.trainer
    history = trainer.windows.history(torch.arange(rows) + trainer.model.window_length)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        rollout(trainer.model, trainer.policy, history, H, "adm_std")
    print(f"profile of one roll-out block ({rows} starts x H={H}), top operators by own CPU time:")
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::addmm", "aten::mm")) / 1e6
    count = roof_matmuls(flops * rows * H)
    roof = rounds({"roof": matmul_roof(count, torch.device("cpu"))}, 1, torch.device("cpu"))["roof"][1]
    print(
        f"matmuls: {matmul / total:.0%} of the profiled CPU time, at {flops * rows * H / matmul / 1e9:.1f} GFLOP/s; "
        f"roof right after (CPU time) {count * 2 * ROOF_SIZE**3 / roof / 1e9:.1f} GFLOP/s"
    )


def main() -> None:
    """Parse the flags, run the rounds (or only the profile) and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="minari:offline_mbrl/hopper/medium-v0")
    parser.add_argument("--starts", type=int, default=DEFAULT_CHUNK, help="roll-out starts per round and side")
    parser.add_argument("--updates", type=int, default=100, help="SAC updates per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also profile one block of our roll-out")
    parser.add_argument("--profile-only", action="store_true", help="one epoch of ours, then only the profile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"threads 1, torch {torch.__version__}, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, "
        f"load average {os.getloadavg()[0]:.2f}; per round and side: {args.starts} starts x H={H}, "
        f"{args.updates} SAC updates, 10 evaluation episodes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.profile_only:
            (ours := Ours(args, work))()
            return profile_rollout(ours, DEFAULT_CHUNK, rollout_flops(ours))
        ours, official = Ours(args, work), Official(args, work)
        steps = StepCounter(type(gymnasium.make(ours.env_id).unwrapped))
        times: dict[str, list[dict[str, float]]] = {"ours": [], "official": [], "roof": []}
        flops = roof_count = None
        for r in range(args.rounds):
            for name, side in (("ours", ours), ("official", official)):
                before = steps.count
                t = side()
                t["eval_steps"] = steps.count - before
                times[name].append(t)
            if flops is None:
                flops = rollout_flops(ours)
                roof_count = roof_matmuls(flops * args.starts * H)
                roof = matmul_roof(roof_count, torch.device("cpu"))
                block = rollout_block(ours, args.starts)
            t = rounds({"rollout": block, "roof": roof}, 1, torch.device("cpu"))  # (wall, CPU) s
            times["roof"].append({f"{n}_{c}": t[n][i] for n in t for i, c in enumerate(("wall", "cpu"))})
            print(
                f"  round {r + 1}: ours {fmt(times['ours'][-1])} | official {fmt(times['official'][-1])} | "
                f"one roll-out call {t['rollout'][0]:.2f} s (CPU {t['rollout'][1]:.2f} s), roof "
                f"{t['roof'][0]:.2f} s (CPU {t['roof'][1]:.2f} s)",
                flush=True,
            )
        report(args, ours, official, times, flops, roof_count)
        if args.profile:
            profile_rollout(ours, DEFAULT_CHUNK, flops)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def fmt(t: dict[str, float]) -> str:
    """One side's phase seconds, environment steps and transitions of one round, as a line."""
    return (
        f"roll-out {t['rollout']:.2f} s, SAC {t['sac']:.2f} s, evaluation {t['eval']:.2f} s "
        f"({t['eval_steps']:.0f} env steps), {t['transitions']:.0f} transitions"
    )


def median(rows: list[dict[str, float]], key: str) -> float:
    """Median over the rounds of ``key``."""
    return statistics.median(r[key] for r in rows)


def report(args, ours: Ours, official: Official, times: dict, flops: int, roof_count: int) -> None:
    """Print the medians scaled to an official epoch, the ratios and the roll-out's fraction of the roof."""
    model, theirs = ours.trainer.model, official.trainer.agent.dynamics
    print(
        f"model sizes: ours ADM {parameter_count(model):,} parameters, official ARMDynamics "
        f"{parameter_count(theirs):,} (weights random, normalizers from the dataset; termination off)"
    )
    epoch = {}
    for name in ("ours", "official"):
        rows = times[name]
        roll = median(rows, "rollout") * STARTS / args.starts
        sac = median(rows, "sac") * STEPS / args.updates
        per_step = statistics.median(r["eval"] / max(r["eval_steps"], 1) for r in rows)
        evaluation = per_step * EVAL_STEPS
        epoch[name] = (roll, sac, evaluation)
        print(
            f"{name:8s} per epoch: roll-out {roll:8.1f} s | SAC {sac:6.1f} s | roll-out + SAC {roll + sac:8.1f} s | "
            f"evaluation {per_step * 1e3:.2f} ms per env step -> {evaluation:5.1f} s for 10 x 1000 steps | "
            f"epoch {roll + sac + evaluation:8.1f} s"
        )
    (ro, so, eo), (rt, st, et) = epoch["ours"], epoch["official"]
    print(
        f"ratios (official / ours): roll-out {rt / ro:.2f}x | SAC {st / so:.2f}x | roll-out + SAC "
        f"{(rt + st) / (ro + so):.2f}x | evaluation per env step {et / eo:.2f}x"
    )
    print(f"admpo-off epoch vs official: {(rt + st + et) / (ro + so + eo):.2f}x")
    paired = [(o["rollout"] + o["sac"]) / (t["rollout"] + t["sac"]) for o, t in zip(times["ours"], times["official"])]
    print(f"    (per round, official / ours roll-out + SAC, unscaled: {' '.join(f'{1 / p:.2f}' for p in paired)})")
    print(
        f"roll-out FLOP per transition: {flops / 1e6:.2f} M counted (torch.utils.flop_counter), "
        f"{analytic_flops(ours.dataset.obs_dim, ours.dataset.action_dim) / 1e6:.2f} M by hand"
    )
    roof_flops, transitions = roof_count * 2 * ROOF_SIZE**3, args.starts * H
    for clock in ("wall", "cpu"):
        rows = times["roof"]
        rate = statistics.median(transitions / r[f"rollout_{clock}"] for r in rows)
        roof_rate = statistics.median(roof_flops / r[f"roof_{clock}"] for r in rows)
        share = statistics.median(r[f"roof_{clock}"] / r[f"rollout_{clock}"] for r in rows)  # same FLOP on both
        print(
            f"roll-out ({clock} time) {rate:,.0f} transitions/s ({args.starts} starts in blocks of {DEFAULT_CHUNK}, "
            f"H={H}; 50,000 starts are {STARTS / DEFAULT_CHUNK:.1f} such blocks one after another) = "
            f"{flops * rate / 1e9:.1f} GFLOP/s; matmul roof ({roof_count} fp32 matmuls {ROOF_SIZE}^3, same rounds) "
            f"{roof_rate / 1e9:.1f} GFLOP/s; median of the rounds' ratios {share:.0%}"
        )
    print(f"roll-out: {share:.0%} of the roof (CPU time)")


if __name__ == "__main__":
    main()
