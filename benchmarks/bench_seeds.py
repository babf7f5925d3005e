"""Seeds as a batch dimension and compiled hot paths (issue 15): ratios measured side by side in one run.

(a) Per-seed SAC updates/s with S = 1, 3, 5 seeds: one seed-batched ``SAC(num_seeds=S)`` with per-seed random
    streams (what ``train --seeds`` runs) against S separate single-seed agents updated one after another in the same
    process (what S single-seed runs do, minus the process). Each update includes stacking the S batches, as in the
    trainer. Prints ``seeds speed-up: N.NNx`` for S = 5.
(b) Compiled (``SAC(compile=True)``, ``train --compile``) against eager SAC updates, one agent and a batch of 5
    seeds, after a warm-up that compiles (its time is printed); and the largest parameter difference after 20
    updates from the same state and noise.
(c) Compiled (``harness.compile_model``) against eager ADM roll-outs (official sizes: GRU 3 x 200, 4 residual
    blocks, m = 5, dropout on, ``adm_std`` penalty), one block of ``DEFAULT_CHUNK`` starts, H = 5.
(d) Only with ``ADMPO_OFFICIAL_PATH`` set (a checkout of the official ADMPO code, ``benchmarks/peers/README.md``):
    per-seed updates/s of 5 official ``SACAgent``s updated one after another against our seed batch of 5.

Hopper sizes (D = 11, A = 3), Table 3 networks (256, 256), batch 256, random weights and data. Every comparison runs
its variants in alternating rounds and reports the median round, so that other jobs on the machine weigh on both
sides alike; wall and CPU-time ratios are printed, with the load average at the start and the end.

Run: ``OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_seeds.py --threads 1`` (``--device cuda`` on a GPU;
``--skip-compile`` to leave out (b) and (c); ``--profile`` for a profile of a seed-batched update instead).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_models import M, make_policy, random_dataset  # noqa: E402
from peers.peer_harness import peer_root  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from offline_mbrl.agents.sac import SAC, SACConfig  # noqa: E402
from offline_mbrl.algos.harness import compile_model  # noqa: E402
from offline_mbrl.data.windows import Windows  # noqa: E402
from offline_mbrl.models import build_model  # noqa: E402
from offline_mbrl.persist import seeded  # noqa: E402
from offline_mbrl.rollout import DEFAULT_CHUNK, rollout  # noqa: E402
from offline_mbrl.seeds import SeedStreams, capture  # noqa: E402

D, A, B = 11, 3, 256
CONFIG = SACConfig(auto_alpha=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def rounds(variants: dict, num_rounds: int, device: torch.device) -> dict[str, tuple[float, float]]:
    """``{name: fn}`` run in alternating rounds -> ``{name: (median wall s, median CPU s)}`` of one call."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(num_rounds):
        for name, fn in variants.items():
            sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)) for name, ts in times.items()
    }


def batches(num_seeds: int, count: int, device: torch.device) -> list[list[dict[str, torch.Tensor]]]:
    """``count`` SAC batches per seed, rows drawn from a random 100,000-row dataset."""
    g = torch.Generator().manual_seed(0)
    n = 100_000
    data = {
        "obs": torch.randn(n, D, generator=g),
        "actions": torch.rand(n, A, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, D, generator=g),
        "terminals": torch.rand(n, generator=g) < 0.01,
    }
    data = {k: v.to(device) for k, v in data.items()}
    out = []
    for _ in range(num_seeds):
        rows = [torch.randint(n, (B,), generator=g).to(device) for _ in range(count)]
        out.append([{k: v[r] for k, v in data.items()} for r in rows])
    return out


def seed_agents(num_seeds: int, device: torch.device, compile: bool = False) -> tuple[list[SAC], SAC]:
    """S single agents built in their seeds' streams and the seed batch holding the same states."""
    singles, states = [], []
    for s in range(num_seeds):
        with seeded(s + 1, device):
            singles.append(SAC(D, A, CONFIG, device=device))
            states.append(capture(device))
    batch = SAC(D, A, CONFIG, device=device, num_seeds=num_seeds, streams=SeedStreams(states, device), compile=compile)
    batch.load_seed_full_states([a.full_state() for a in singles])
    return singles, batch


def stacked(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}


ROOF_SIZE = 256  # the roof's matmuls are ROOF_SIZE x ROOF_SIZE x ROOF_SIZE, fp32


def roof_matmuls(flops: int) -> int:
    """How many ``ROOF_SIZE``-cubed fp32 matmuls (``2 * ROOF_SIZE**3`` FLOP each) make ``flops`` (rounded down, at
    least one)."""
    return max(1, flops // (2 * ROOF_SIZE**3))


def matmul_roof(count: int, device: torch.device) -> Callable[[], None]:
    """The fp32 matmul roof of this device: a call that runs ``count`` ``torch.mm`` of a ``(ROOF_SIZE, ROOF_SIZE)``
    by a ``(ROOF_SIZE, ROOF_SIZE)`` random matrix, i.e. ``count * 2 * ROOF_SIZE**3`` FLOP. Timed in the same rounds as
    the code it bounds, ``FLOP / seconds`` of the call is the matmul throughput reachable at the time."""
    x, w = torch.randn(ROOF_SIZE, ROOF_SIZE, device=device), torch.randn(ROOF_SIZE, ROOF_SIZE, device=device)

    def roof() -> None:
        for _ in range(count):
            torch.mm(x, w)

    return roof


def update_flops(device: torch.device) -> int:
    """Floating-point operations of one single-agent SAC update (``torch.utils.flop_counter``: matmuls, forward and
    backward), the same per seed in a seed batch."""
    agent = SAC(D, A, CONFIG, device=device)
    with FlopCounterMode(display=False) as counter:
        agent.update(batches(1, 1, device)[0][0])
    return counter.get_total_flops()


def bench_seeds(args, device: torch.device) -> None:
    print(f"(a) per-seed SAC updates/s, {args.updates} updates per round, median of {args.rounds} rounds")
    flops = update_flops(device)
    repeats = roof_matmuls(flops)  # as many 256 x 256 x 256 matmuls as one update's flops
    roof = matmul_roof(repeats * args.updates, device)

    for num_seeds in (1, 3, 5):
        singles, batch = seed_agents(num_seeds, device)
        data = batches(num_seeds, args.updates, device)

        def separate() -> None:
            for i in range(args.updates):
                for agent, seed_batches in zip(singles, data):
                    agent.update(seed_batches[i])

        def batched() -> None:
            for i in range(args.updates):
                batch.update(stacked([seed_batches[i] for seed_batches in data]))

        separate(), batched()  # warm-up
        t = rounds({"separate": separate, "batched": batched, "roof": roof}, args.rounds, device)
        per_seed = {name: num_seeds * args.updates / wall for name, (wall, _) in t.items()}
        wall_ratio, cpu_ratio = t["separate"][0] / t["batched"][0], t["separate"][1] / t["batched"][1]
        print(
            f"    S={num_seeds}: {num_seeds} separate agents {per_seed['separate']:7.1f} | one seed batch "
            f"{per_seed['batched']:7.1f} updates/s per seed | CPU-time ratio {cpu_ratio:.2f} | wall {wall_ratio:.2f}x"
        )
    roof_rate = args.updates / t["roof"][0]  # updates/s if all of an update's flops ran as 256^3 matmuls
    print(
        f"    matmul roof (in the S=5 rounds): one update = {flops / 1e6:.0f} MFLOP = {repeats} matmuls "
        f"256x256x256 -> {flops * roof_rate / 1e9:.1f} GFLOP/s, at most {roof_rate:.1f} updates/s per seed; "
        f"reached: separate {per_seed['separate'] / roof_rate:.0%}, seed batch {per_seed['batched'] / roof_rate:.0%}"
    )
    print(f"seeds speed-up: {wall_ratio:.2f}x")


def compiled_copy(agent: SAC) -> SAC:
    """A compiled agent holding ``agent``'s state (and a copy of its seed streams)."""
    twin = SAC(
        D,
        A,
        CONFIG,
        device=agent.device,
        num_seeds=agent.num_seeds,
        streams=copy.deepcopy(agent.streams),
        compile=True,
    )
    if agent.num_seeds is None:
        twin.load_full_state(agent.full_state())
    else:
        twin.load_seed_full_states([agent.seed_full_state(i) for i in range(agent.num_seeds)])
    return twin


def bench_compiled_sac(args, device: torch.device) -> None:
    print(f"(b) compiled vs eager SAC update, {args.updates} updates per round, median of {args.rounds} rounds")
    for num_seeds in (None, 5):
        data = batches(1 if num_seeds is None else num_seeds, args.updates, device)
        if num_seeds is None:
            with seeded(1, device):
                eager = SAC(D, A, CONFIG, device=device)
            inputs = data[0]
        else:
            _, eager = seed_agents(num_seeds, device)
            inputs = [stacked([d[i] for d in data]) for i in range(args.updates)]
        compiled, reference = compiled_copy(eager), copy.deepcopy(eager)
        start = time.perf_counter()
        with seeded(7, device):  # same state, batches and noise: the first calls compile
            compiled.update(inputs[0]), compiled.update(inputs[1])
            compile_s = time.perf_counter() - start
            for b in inputs[2:20]:
                compiled.update(b)
        with seeded(7, device):
            for b in inputs[:20]:
                reference.update(b)
        deviation = max((p - q).abs().max().item() for p, q in zip(reference.parameters(), compiled.parameters()))

        def run(agent: SAC):
            return lambda: [agent.update(b) for b in inputs]

        t = rounds({"eager": run(eager), "compiled": run(compiled)}, args.rounds, device)
        name = "one agent" if num_seeds is None else f"seed batch S={num_seeds}"
        n = args.updates * (num_seeds or 1)
        print(
            f"    {name}: eager {n / t['eager'][0]:7.1f} | compiled {n / t['compiled'][0]:7.1f} "
            f"updates/s per seed (compile warm-up {compile_s:.0f} s; max |param diff| after 20 updates "
            f"{deviation:.1e}) | "
            f"CPU-time ratio {t['eager'][1] / t['compiled'][1]:.2f} | "
            f"compiled sac: {t['eager'][0] / t['compiled'][0]:.2f}x"
        )


def bench_compiled_rollout(args, device: torch.device) -> None:
    windows = Windows(random_dataset(20_000), M, device)
    history = windows.history(torch.arange(M, M + DEFAULT_CHUNK, device=device))
    with seeded(0, device):
        eager = build_model("adm", D, A, max_backtrack=M).to(device)
    compiled = compile_model(copy.deepcopy(eager))
    policy = make_policy()

    def run(model):
        return lambda: rollout(model, policy, history, 5, penalty="adm_std")

    start = time.perf_counter()
    run(compiled)(), run(compiled)()
    compile_s = time.perf_counter() - start
    run(eager)()
    t = rounds({"eager": run(eager), "compiled": run(compiled)}, args.rounds, device)
    n = DEFAULT_CHUNK * 5
    print(
        f"(c) ADM roll-out B={DEFAULT_CHUNK}, H=5, adm_std, dropout on: eager {n / t['eager'][0]:,.0f} | compiled "
        f"{n / t['compiled'][0]:,.0f} transitions/s (compile warm-up {compile_s:.0f} s) | CPU-time ratio "
        f"{t['eager'][1] / t['compiled'][1]:.2f} | compiled rollout: {t['eager'][0] / t['compiled'][0]:.2f}x"
    )


def bench_official(args, device: torch.device) -> None:
    """(d) The official ADMPO ``SACAgent.learn`` (5 agents, one after another; fetched checkout named by
    ``ADMPO_OFFICIAL_PATH``, see ``benchmarks/peers/README.md``) against our seed batch of 5, same rounds."""
    if not os.environ.get("ADMPO_OFFICIAL_PATH"):
        print("(d) official ADMPO SAC: skipped (ADMPO_OFFICIAL_PATH not set)")
        return
    peer_root("ADMPO_OFFICIAL_PATH", "agent/sac.py")
    from agent.sac import SACAgent  # the official code, imported from the checkout

    space = gymnasium.spaces.Box(-1.0, 1.0, (A,), np.float32)
    official = [
        SACAgent((D,), [256, 256], A, space, 1, CONFIG.actor_lr, CONFIG.critic_lr, auto_alpha=True,
                 alpha_lr=CONFIG.alpha_lr, target_entropy=-A, device=str(device))
        for _ in range(5)
    ]  # fmt: skip
    _, batch = seed_agents(5, device)
    data = batches(5, args.updates, device)

    def theirs() -> None:
        for i in range(args.updates):
            for agent, seed_batches in zip(official, data):
                b = seed_batches[i]
                agent.learn(b["obs"], b["actions"], b["rewards"], b["next_obs"], b["terminals"].float())

    def ours() -> None:
        for i in range(args.updates):
            batch.update(stacked([seed_batches[i] for seed_batches in data]))

    theirs(), ours()
    t = rounds({"official": theirs, "ours": ours}, args.rounds, device)
    print(
        f"(d) official ADMPO SACAgent.learn, 5 agents: {5 * args.updates / t['official'][0]:7.1f} | our seed batch "
        f"S=5: {5 * args.updates / t['ours'][0]:7.1f} updates/s per seed | CPU-time ratio "
        f"{t['official'][1] / t['ours'][1]:.2f} | vs official: {t['official'][0] / t['ours'][0]:.2f}x"
    )


def profile_batch(args, device: torch.device) -> None:
    """Where the time of a seed-batched update (S = 5) goes: torch profiler, top operators by own CPU time."""
    from torch.profiler import ProfilerActivity, profile

    _, batch = seed_agents(5, device)
    data = batches(5, args.updates, device)
    inputs = [stacked([d[i] for d in data]) for i in range(args.updates)]
    batch.update(inputs[0])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in inputs[1:]:
            batch.update(b)
    print(f"profile of {args.updates - 1} seed-batched updates (S=5):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=30, help="SAC updates per round and variant")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--profile", action="store_true", help="only profile a seed-batched update (S = 5)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"device {device}, threads {args.threads}, torch {torch.__version__}, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, load average {os.getloadavg()[0]:.2f}"
    )
    if args.profile:
        return profile_batch(args, device)
    bench_seeds(args, device)
    bench_official(args, device)
    if not args.skip_compile:
        bench_compiled_sac(args, device)
        bench_compiled_rollout(args, device)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
