"""Throughput of the dynamics-model hot paths against naive references written here (DESIGN section 6).

Hopper sizes (D = 11, A = 3), m = 5, official network sizes (ADM: GRU 3 × 200 + 4 residual blocks;
ensemble: 7 × MLP 4 × 200). Random weights and data: throughput does not depend on training.

(a) ADM training, (window, k) samples/s: the all-k pass (one GRU pass over the m-step window trains every k,
    Eq. 2) against the official scheme (draw one k per batch, run the GRU over k steps, head on the last step).
(b) ADM roll-out with the ``adm_std`` penalty, B = 50,000 starts, H = 5, dropout on (official): cached
    hidden states (``models.adm.ADMStepper`` in ``rollout.rollout``) against the official scheme — every step re-runs
    the m sequences (s_{τ+1-k}, a_{τ+1-k:τ}), k = 1…m, one model call each, with NumPy round trips; the
    sample reuses the chosen k's output (the official code even runs one more call for it). Both process
    the starts in the same blocks of ``DEFAULT_CHUNK`` rows, so the ratio is the caching alone.
    A check on a small batch (dropout off, same random numbers) reports the largest difference.
(c) Ensemble roll-out (``rollout`` with ``EnsembleStepper``, max_aleatoric penalty), same B and H, compared with (b).
(d) The cached ADM roll-out of B / 5 starts in one block against blocks of ``DEFAULT_CHUNK`` starts (CPU:
    whole-batch temporaries of hundreds of MB are mapped and unmapped every step, costing page faults).

Run: ``.venv/bin/python benchmarks/bench_models.py`` (``torch.set_num_threads(2)`` by default, ``--threads`` to
change it). Every comparison line ends with the wall-clock speed-up ``<ratio>x``; the CPU-time ratio next to it
is less sensitive to other jobs on the machine. ``OMP_WAIT_POLICY=PASSIVE`` is set unless given: on a shared
machine spinning OpenMP threads otherwise lose whole time slices at every barrier (measured 12x slower).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP

import numpy as np  # noqa: E402
import torch  # noqa: E402

from offline_mbrl.data.dataset import TransitionDataset  # noqa: E402
from offline_mbrl.data.windows import Windows  # noqa: E402
from offline_mbrl.models import build_model  # noqa: E402
from offline_mbrl.rollout import DEFAULT_CHUNK, rollout  # noqa: E402

D, A, M = 11, 3, 5


def random_dataset(n: int, seed: int = 0) -> TransitionDataset:
    """n random transitions in episodes of 1000 steps (timeouts), Hopper-sized."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, D)).astype(np.float32)
    timeouts = (np.arange(n) % 1000) == 999
    return TransitionDataset(
        obs=obs,
        actions=rng.uniform(-1, 1, (n, A)),
        rewards=rng.normal(size=n),
        next_obs=obs + 0.1 * rng.normal(size=(n, D)),
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
    )


def make_policy(seed: int = 0):
    weight = torch.randn(D, A, generator=torch.Generator().manual_seed(seed)) * 0.3
    return lambda obs: torch.tanh(obs @ weight)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``; CPU time is less sensitive to other jobs."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


# ---------------------------------------------------------------------------------------------- (a) training
def train_all_k(model, windows, optimizer, iterations, generator) -> None:
    for _ in range(iterations):
        loss, _ = model.loss(windows.sample(256, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def train_one_k(model, windows, optimizer, iterations, generator) -> None:
    """Official ``learn_dynamics_from``: one k per batch, GRU over k steps, head on the last output."""
    for _ in range(iterations):
        k = int(torch.randint(1, M + 1, (1,), generator=generator))
        batch = windows.sample(256, generator)
        features, _ = model.gru(model.inputs(batch.obs0, batch.actions[:, :k]))
        mean, logvar = model.gaussian(features[:, -1])
        target = torch.cat([batch.next_obs[:, k - 1] - batch.obs0, batch.rewards[:, k - 1 : k]], dim=-1)
        loss = ((mean - target) ** 2 * torch.exp(-logvar)).mean() + logvar.mean() + model.logvar_bounds.penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


# ---------------------------------------------------------------------------------------------- (b) roll-out
def reference_rollout(model, policy, history, rollout_length: int, generator: torch.Generator):
    """Official ADMPO ``rollout`` + ``dstep`` structure: NumPy history, one model call per k per step."""
    s_hist, a_hist = history.obs.numpy(), history.actions.numpy()
    obs = s_hist[:, -1]
    next_states, penalties = [], []
    for _ in range(rollout_length):
        action = policy(torch.as_tensor(obs)).numpy()
        a_hist = np.concatenate([a_hist, action[:, None]], axis=1)
        uniform = torch.rand(1, generator=generator).numpy()
        noise = torch.randn(len(obs), D + 1, generator=generator).numpy()
        n = min(s_hist.shape[1], M)
        means, logvars = [], []
        for k in range(1, n + 1):
            with torch.no_grad():
                features, _ = model.gru(model.inputs(torch.as_tensor(s_hist[:, -k]), torch.as_tensor(a_hist[:, -k:])))
                mean, logvar = (x.numpy() for x in model.gaussian(features[:, -1]))
            mean[:, :-1] += s_hist[:, -k]
            means.append(mean)
            logvars.append(logvar)
        pick = min(int(uniform[0] * n), n - 1)
        sample = means[pick] + np.exp(0.5 * logvars[pick]) * noise
        penalties.append(np.sqrt(np.var(np.stack(means)[..., :-1], axis=0).mean(axis=-1)))
        obs = sample[:, :-1]
        next_states.append(obs)
        s_hist = np.concatenate([s_hist, obs[:, None]], axis=1)
    return np.concatenate(next_states), np.concatenate(penalties)


def check_equal(adm, policy, windows, batch: int) -> tuple[float, float]:
    """Max |cached − reference| of next states and penalties, dropout off, same random numbers."""
    history = windows.history(torch.arange(M, M + batch))
    model = build_model("adm", D, A, max_backtrack=M, rollout_dropout=False)
    model.load_state_dict(adm.state_dict())
    model.eval()
    cached = rollout(
        model,
        policy,
        history,
        5,
        penalty="adm_std",
        generator=torch.Generator().manual_seed(1),
        backtrack_sampling="batch",
    )
    next_obs, penalties = reference_rollout(model, policy, history, 5, torch.Generator().manual_seed(1))
    return (
        float(np.abs(cached.next_obs.numpy() - next_obs).max()),
        float(np.abs(cached.penalties.numpy() - penalties).max()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=50_000, help="roll-out starts B")
    parser.add_argument("--horizon", type=int, default=5, help="roll-out length H")
    parser.add_argument("--train-iterations", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cores, {torch.get_num_threads()} torch threads "
        f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), torch "
        f"{torch.__version__}; D={D} A={A} m={M}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    windows = Windows(random_dataset(max(args.batch + M, 20_000)), M)
    adm = build_model("adm", D, A, max_backtrack=M)
    ensemble = build_model("ensemble", D, A)
    for model in (adm, ensemble):
        model.normalizer.set_stats(random_dataset(1000).normalization_stats())
    policy = make_policy()

    rates = []
    for train, samples in ((train_all_k, 256 * M), (train_one_k, 256)):
        adm.train()
        optimizer = torch.optim.Adam(adm.parameters(), lr=1e-4)
        train(adm, windows, optimizer, 2, torch.Generator().manual_seed(0))  # warm-up
        wall, cpu = timed(
            lambda: train(adm, windows, optimizer, args.train_iterations, torch.Generator().manual_seed(1))
        )
        rates.append((samples * args.train_iterations / wall, samples * args.train_iterations / cpu))
    print(
        f"(a) ADM training, batch 256 windows: all-k pass {rates[0][0]:,.0f} (window,k) samples/s | one-k reference "
        f"{rates[1][0]:,.0f} samples/s | CPU-time ratio {rates[0][1] / rates[1][1]:.2f} | "
        f"training: {rates[0][0] / rates[1][0]:.1f}x"
    )

    max_obs, max_penalty = check_equal(adm, policy, windows, 256)
    print(
        f"    check (B=256, H=5, dropout off): max |cached - reference| next_obs {max_obs:.2e}, "
        f"penalty {max_penalty:.2e}"
    )
    history = windows.history(torch.arange(M, M + args.batch))
    adm.train()  # official: dropout on
    transitions = args.batch * args.horizon
    cached = timed(
        lambda: rollout(
            adm, policy, history, args.horizon, penalty="adm_std", generator=torch.Generator().manual_seed(2)
        )
    )
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():  # same blocks of starts as the cached roll-out (DEFAULT_CHUNK)
        reference = timed(
            lambda: [
                reference_rollout(adm, policy, history[start : start + DEFAULT_CHUNK], args.horizon, generator)
                for start in range(0, args.batch, DEFAULT_CHUNK)
            ]
        )
    print(
        f"(b) ADM roll-out + adm_std penalty, B={args.batch}, H={args.horizon}, dropout on: cached "
        f"{transitions / cached[0]:,.0f} transitions/s ({cached[0]:.1f} s) | "
        f"reference {transitions / reference[0]:,.0f} "
        f"transitions/s ({reference[0]:.1f} s) | CPU-time ratio {reference[1] / cached[1]:.2f} | "
        f"rollout: {reference[0] / cached[0]:.1f}x"
    )
    ens = timed(
        lambda: rollout(
            ensemble,
            policy,
            history.obs[:, -1],
            args.horizon,
            penalty="max_aleatoric",
            generator=torch.Generator().manual_seed(3),
        )
    )
    print(
        f"(c) ensemble roll-out (7 members, max_aleatoric), B={args.batch}, H={args.horizon}: "
        f"{transitions / ens[0]:,.0f} transitions/s ({ens[0]:.1f} s) | CPU-time ratio {ens[1] / cached[1]:.2f} | "
        f"ADM cached vs ensemble: {ens[0] / cached[0]:.2f}x"
    )
    blocks = args.batch // 5
    whole = timed(
        lambda: rollout(
            adm,
            policy,
            history[:blocks],
            args.horizon,
            penalty="adm_std",
            generator=torch.Generator().manual_seed(4),
            chunk_size=None,
        )
    )
    chunked = timed(
        lambda: rollout(
            adm, policy, history[:blocks], args.horizon, penalty="adm_std", generator=torch.Generator().manual_seed(4)
        )
    )
    print(
        f"(d) ADM roll-out, B={blocks}: whole batch at once {blocks * args.horizon / whole[0]:,.0f} transitions/s | "
        f"blocks of {DEFAULT_CHUNK} {blocks * args.horizon / chunked[0]:,.0f} transitions/s | CPU-time ratio "
        f"{whole[1] / chunked[1]:.2f} | chunking: {whole[0] / chunked[0]:.1f}x"
    )
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
