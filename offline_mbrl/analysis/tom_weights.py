"""TOM weight-progression study and the effect of transition weights on a learned model.

* **Weights** (``transition_weights``): per-row sampling weights of a dataset, normalized to sum 1, by
  ``uniform``, ``pmac`` / ``pmac-tom`` (PMAC presets, seeds/000 Eq. 4; ``offline_mbrl.algos.weighting``) or
  ``tom`` (TOM Eq. 21-23, Alg. 2 lines 3-11, offline: the target policy π_T's real transitions are the
  discriminator positives, V uses π_T's actions, s0 are the dataset's episode starts; REFERENCE-algorithms 3.2).
* **Progression** (TOM Section 5.2, Fig. 3; official ``utils.get_weights_pos_bar``): a combined dataset,
  uniform-random transitions first and a SAC replay buffer after them in collection order
  (``combine_random_and_replay``); the final (expert) SAC policy is π_T. The mean normalized weight of
  each sequential bin is plotted as a bar chart, random and replay bins coloured apart, one panel per
  method. Bins never straddle the two parts: each part is cut into ``bin_size`` rows from its start, so
  each part's last bin may be shorter (column ``rows``). TOM's paper uses 1M + 1M rows and bins of 100k;
  the CPU-sized study uses e.g. 100k random + a 200k replay buffer and bins of 10k (REFERENCE-algorithms 3.3).
* **Model error** (``model_error_study``): ADM fitted on the combined dataset with each method's weights
  (``offline_mbrl.models.fit``, resampling), evaluated on held-out π_T transitions: the one-step error
  (k = 1 mean prediction, eval mode) and the open-loop error of a sampled ADM roll-out (Alg. 1, cached
  hidden states, ``rollout.rollout`` with the model's ``rollout_dropout``) fed π_T's *recorded* actions for H
  steps from every held-out row with H steps left in its episode, its history window from the same episode.
  Error = mean over the D obs dims of (ŝ − s)², averaged over trajectories (REFERENCE-algorithms 5).

Shape letters: N dataset rows, T target rows, B roll-out starts, H horizon, D obs dim, A action dim.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..agents.sac import load_actor
from ..algos.collect import load_replay_file, stochastic
from ..algos.weighting import (
    PMAC_PRESETS,
    Policy,
    TOMConfig,
    TOMResult,
    TransitionTensors,
    initial_obs,
    pmac_weights,
    tom_weights,
)
from ..data.dataset import TransitionDataset
from ..data.load import load_dataset
from ..data.windows import Windows
from ..envs.gym_env import collect_transitions
from ..errors import ConfigError, DatasetError
from ..models import build_model
from ..models.adm import ADM
from ..models.fit import FitConfig, fit
from ..persist import seeded
from ..rollout import rollout
from .tables import markdown_rows

WEIGHT_METHODS = ("uniform", *PMAC_PRESETS, "tom")
"""Names accepted by ``transition_weights`` (and ``offline-mbrl model fit --weights``)."""

PARTS = ("random", "replay")
# seed offsets of the environment roll-outs, so the sets never share an environment seed (10 envs each)
TARGET_SEED_OFFSET, TEST_SEED_OFFSET, RANDOM_SEED_OFFSET = 0, 100, 200
_REPLAY_FILE_KEYS = {"env_id", "qpos", "qvel", "collection_step", "end_next_obs"}


# ====================================================================== data


@dataclass(frozen=True)
class CombinedDataset:
    """Random transitions followed by a replay buffer (TOM Section 5.2).

    Attributes:
        dataset: N rows; rows ``[0, num_random)`` are the random part; ``collection_step`` is the row's
            position in collection order (random rows 0…R − 1, replay rows R + their own collection step).
        num_random: R.
    """

    dataset: TransitionDataset
    num_random: int

    @property
    def is_random(self) -> np.ndarray:
        """(N,) bool: the row belongs to the random part."""
        return np.arange(len(self.dataset)) < self.num_random

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per part: ``{"random": R, "replay": N − R}``."""
        return {"random": self.num_random, "replay": len(self.dataset) - self.num_random}


def combine_random_and_replay(random: TransitionDataset, replay: TransitionDataset) -> CombinedDataset:
    """The combined dataset of TOM Section 5.2: every ``random`` row, then every ``replay`` row in collection order.

    The replay's ``collection_step`` (when it has one) must be non-decreasing; without one its rows are taken
    to be stored in collection order (as D4RL replay files are). Metadata: the replay's, plus ``num_random``.

    Raises:
        DatasetError: obs/action dims differ (naming both sources), the replay is not in collection order,
            or a part's last row ends no episode (``TransitionDataset.concatenate``).
    """
    if (random.obs_dim, random.action_dim) != (replay.obs_dim, replay.action_dim):
        raise DatasetError(
            f"{random.source} has obs/action dims {(random.obs_dim, random.action_dim)}, "
            f"{replay.source} has {(replay.obs_dim, replay.action_dim)}; they cannot be combined"
        )
    steps = np.arange(len(replay)) if replay.collection_step is None else replay.collection_step
    if (np.diff(steps) < 0).any():
        first = int(np.flatnonzero(np.diff(steps) < 0)[0]) + 1
        raise DatasetError(
            f"{replay.source}: field 'collection_step' decreases at row {first}; "
            "the replay buffer must be stored in collection order"
        )
    num_random = len(random)
    merged = TransitionDataset.concatenate([random, replay], source=f"{random.source} + {replay.source}")
    dataset = replace(
        merged,
        collection_step=np.concatenate([np.arange(num_random), num_random + steps]),
        metadata={**random.metadata, **replay.metadata, "num_random": num_random},
    )
    return CombinedDataset(dataset, num_random)


def load_replay(spec: str | Path) -> TransitionDataset:
    """A replay buffer: a compact replay file of ``offline-mbrl collect`` (``<env>_replay.npz``, read with
    ``load_replay_file``) or any dataset spec (``minari:<id>``, D4RL ``.hdf5``, NeoRL ``.npz``).

    Raises:
        DatasetNotFoundError / DatasetError: as ``load_dataset``.
    """
    path = Path(str(spec))
    if path.suffix.lower() == ".npz" and path.is_file():
        with np.load(path) as f:
            if _REPLAY_FILE_KEYS <= set(f.files):
                return load_replay_file(path)
    return load_dataset(spec)


def env_id_of(dataset: TransitionDataset, override: str | None = None) -> str:
    """``override``, else the dataset's ``metadata["env_id"]``.

    Raises:
        DatasetError: neither is given.
    """
    env_id = override or dataset.metadata.get("env_id")
    if not env_id:
        raise DatasetError(f"{dataset.source}: metadata has no 'env_id' to roll policies out in; pass --env-id")
    return str(env_id)


def load_random(spec: str, env_id: str, seed: int = 0) -> TransitionDataset:
    """The random part: ``spec`` = a number N (N fresh uniform-random steps in ``env_id``, env seeds
    ``seed + RANDOM_SEED_OFFSET + i``) or a dataset spec (e.g. a D4RL ``*_random`` file).

    Raises:
        DatasetError: N < 1, or as ``load_dataset``.
    """
    if not str(spec).isdigit():
        return load_dataset(spec)
    if int(spec) < 1:
        raise DatasetError(f"--random {spec}: need at least 1 random step")
    return collect_transitions(None, env_id, int(spec), seed + RANDOM_SEED_OFFSET)


# ====================================================================== weights


@dataclass(frozen=True)
class TOMTarget:
    """What TOM needs besides the dataset: π_T's real transitions (discriminator positives), π_T itself
    (a sampling policy on the weights' device) and the TOM settings."""

    transitions: TransitionDataset
    policy: Policy
    config: TOMConfig = TOMConfig()


def _policy_rollouts(
    policy: Policy, env_id: str, num_steps: int, seed: int, device: torch.device | str, source: str
) -> TransitionDataset:
    """``collect_transitions`` of a stochastic ``policy`` with env seeds ``seed + i`` and its action noise seeded
    (``collect_transitions`` seeds torch's RNG with ``seed``).

    Raises:
        DatasetError: ``num_steps`` < 1.
    """
    if num_steps < 1:
        raise DatasetError(f"{source}: need at least 1 roll-out step, got {num_steps}")
    return replace(collect_transitions(policy, env_id, num_steps, seed, device=device), source=source)


def tom_target(
    actor_path: str | Path,
    env_id: str,
    num_steps: int,
    config: TOMConfig = TOMConfig(),
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TOMTarget:
    """Load π_T (an actor file, ``load_actor``) and roll it out stochastically for ``num_steps`` real steps in
    ``env_id`` (``collect_transitions``, env seeds ``seed + TARGET_SEED_OFFSET + i``, action noise seeded).

    Raises:
        CheckpointError: not an actor file. DatasetError: ``num_steps`` < 1.
    """
    with seeded(seed, device):  # building the actor before loading its weights draws random numbers
        policy = stochastic(load_actor(actor_path, device))
    transitions = _policy_rollouts(
        policy, env_id, num_steps, seed + TARGET_SEED_OFFSET, device, f"<{Path(actor_path).name} roll-outs in {env_id}>"
    )
    return TOMTarget(transitions, policy, config)


def target_test_set(
    target: TOMTarget, env_id: str, num_steps: int, seed: int = 0, device: torch.device | str = "cpu"
) -> TransitionDataset:
    """Held-out π_T transitions for the model-error table: ``num_steps`` new stochastic roll-out steps of
    ``target.policy`` in ``env_id`` (env seeds ``seed + TEST_SEED_OFFSET + i``, unlike the discriminator's)."""
    return _policy_rollouts(
        target.policy,
        env_id,
        num_steps,
        seed + TEST_SEED_OFFSET,
        device,
        f"<held-out target-policy roll-outs in {env_id}>",
    )


def transition_weights(
    method: str,
    dataset: TransitionDataset,
    tom: TOMTarget | None = None,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, TOMResult | None]:
    """Sampling weights (N,) float64 summing to 1 of every dataset row by ``method`` (module docstring).

    Args:
        method: one of ``WEIGHT_METHODS``.
        dataset: N rows; PMAC reads ``collection_step``.
        tom: required for ``"tom"``. seed: TOM's seed. device: where TOM trains.

    Returns:
        (weights, the TOMResult for ``"tom"`` else None).

    Raises:
        ConfigError: unknown method, or ``"tom"`` without ``tom``.
        DatasetError: PMAC on a dataset without ``collection_step``; TOM input errors (``tom_weights``).
    """
    if method not in WEIGHT_METHODS:
        raise ConfigError(f"unknown weights '{method}'; choose one of {list(WEIGHT_METHODS)}")
    if method == "uniform":
        return np.full(len(dataset), 1.0 / len(dataset)), None
    if method in PMAC_PRESETS:
        if dataset.collection_step is None:
            raise DatasetError(
                f"{dataset.source}: weights '{method}' need field 'collection_step' (the environment "
                "step of each row), which only replay-buffer datasets carry (e.g. medium-replay "
                "written by `offline-mbrl collect`, or a replay file <env>_replay.npz); this dataset "
                "has none"
            )
        return pmac_weights(dataset.collection_step, method), None
    if tom is None:
        raise ConfigError("weights 'tom' need a target policy and its transitions (--target-policy)")
    result = tom_weights(
        TransitionTensors.from_dataset(dataset, device),
        TransitionTensors.from_dataset(tom.transitions, device),
        initial_obs(dataset, device),
        tom.policy,
        tom.config,
        seed=seed,
    )
    weights = result.weights.double().cpu().numpy()
    return weights / weights.sum(), result


def weight_summary(weights: np.ndarray) -> dict[str, float]:
    """Summary of sampling weights (N,) ≥ 0: ``rows``; ``ess`` = (Σw)² / Σw² (Kish's effective sample size) and
    ``ess_fraction`` = ess / N; ``max_relative`` / ``min_relative`` = max / min of w·N/Σw (1 = uniform);
    ``zero_rows`` = rows with weight exactly 0 (never sampled).

    Raises:
        DatasetError: ``weights`` empty, negative, non-finite or summing to 0.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
        raise DatasetError(
            f"weight summary: need non-empty, finite, non-negative weights with a positive sum; got "
            f"{w.size} weights summing to {w.sum() if w.size else 0}"
        )
    relative = w * len(w) / w.sum()
    ess = float(w.sum() ** 2 / np.square(w).sum())
    return {
        "rows": len(w),
        "ess": ess,
        "ess_fraction": ess / len(w),
        "max_relative": float(relative.max()),
        "min_relative": float(relative.min()),
        "zero_rows": int((w == 0).sum()),
    }


def format_weight_summary(method: str, weights: np.ndarray) -> str:
    """One line: ``weights <method>: effective sample size … of N rows (… %), max … / min … x uniform, … rows
    with weight 0`` (``weight_summary``)."""
    s = weight_summary(weights)
    return (
        f"weights {method}: effective sample size {s['ess']:.1f} of {s['rows']} rows "
        f"({100 * s['ess_fraction']:.2f} %), "
        f"max {s['max_relative']:.4g} / min {s['min_relative']:.4g} x uniform, {s['zero_rows']} rows with weight 0"
    )


# ====================================================================== progression


def bin_means(weights: np.ndarray, num_random: int, bin_size: int) -> pd.DataFrame:
    """Mean weight of each sequential bin, bins cut separately in the random prefix and the replay part.

    Args:
        weights: (N,) sampling weights in dataset order (normalized or not).
        num_random: R, rows ``[0, R)`` are the random part.
        bin_size: rows per bin (each part's last bin may hold fewer).

    Returns:
        One row per bin in order: ``bin`` (0…), ``part`` (``random``/``replay``), ``start``, ``stop`` (row range),
        ``rows``, ``mean_weight`` (mean of w / Σw over the bin), ``relative_weight`` (mean_weight · N; 1 = uniform).

    Raises:
        ConfigError: ``bin_size`` < 1. DatasetError: ``weights`` not 1-D/non-empty, R outside [0, N], Σw ≤ 0.
    """
    if bin_size < 1:
        raise ConfigError(f"bin size must be >= 1, got {bin_size}")
    w = np.asarray(weights, dtype=np.float64)
    n = len(w)
    if w.ndim != 1 or n == 0 or not 0 <= num_random <= n or not w.sum() > 0:
        raise DatasetError(
            f"bin_means: weights of shape {w.shape} (sum {w.sum() if w.size else 0}) with "
            f"{num_random} random rows; need (N > 0,) positive-sum weights and 0 <= random rows <= N"
        )
    rows = np.arange(n)
    part_start = np.where(rows < num_random, 0, num_random)  # (N,)
    random_bins = -(-num_random // bin_size)
    bin_id = (rows - part_start) // bin_size + np.where(rows < num_random, 0, random_bins)  # (N,)
    counts = np.bincount(bin_id)
    mean_weight = np.bincount(bin_id, weights=w / w.sum()) / counts
    first = np.flatnonzero(np.r_[True, np.diff(bin_id) > 0])  # first row of each bin
    return pd.DataFrame(
        {
            "bin": np.arange(len(counts)),
            "part": np.where(first < num_random, *PARTS),
            "start": first,
            "stop": first + counts,
            "rows": counts,
            "mean_weight": mean_weight,
            "relative_weight": mean_weight * n,
        }
    )


def progression_stats(bins: pd.DataFrame) -> dict[str, float]:
    """For one method's ``bin_means``: the mean relative weight of the random and the replay part (row-weighted)
    and the Spearman rank correlation of the replay bins' mean weight with their position (TOM expects > 0)."""
    from scipy.stats import spearmanr

    stats: dict[str, float] = {}
    for part in PARTS:
        rows = bins[bins["part"] == part]
        stats[f"{part}_relative_weight"] = (
            float(np.average(rows["relative_weight"], weights=rows["rows"])) if len(rows) else float("nan")
        )
    replay = bins[bins["part"] == "replay"]
    stats["replay_spearman"] = (
        float(spearmanr(replay["bin"], replay["mean_weight"]).statistic) if len(replay) > 1 else float("nan")
    )
    return stats


@dataclass(frozen=True)
class Progression:
    """Output of ``weight_progression``: per-method weights (N,) summing to 1, the long bin table (``bin_means``
    columns plus ``method``), and TOM's diagnostics."""

    weights: dict[str, np.ndarray]
    bins: pd.DataFrame
    tom: TOMResult


def weight_progression(
    combined: CombinedDataset, tom: TOMTarget, bin_size: int, *, seed: int = 0, device: torch.device | str = "cpu"
) -> Progression:
    """TOM, PMAC and PMAC-TOM weights of the combined dataset and their sequential bin means (TOM Fig. 3).

    Raises:
        as ``transition_weights`` and ``bin_means``.
    """
    tom_row_weights, tom_result = transition_weights("tom", combined.dataset, tom, seed=seed, device=device)
    weights = {"tom": tom_row_weights, **{m: transition_weights(m, combined.dataset)[0] for m in PMAC_PRESETS}}
    bins = pd.concat(
        [bin_means(w, combined.num_random, bin_size).assign(method=m) for m, w in weights.items()], ignore_index=True
    )
    return Progression(weights, bins, tom_result)


def plot_progression(bins: pd.DataFrame, out: str | Path) -> Path:
    """Bar chart of ``relative_weight`` per bin (x: the bin's row range, thousands of rows in dataset order),
    coloured by part, one panel per method (own y scale). Returns the PNG path."""
    import matplotlib.pyplot as plt  # heavy imports kept out of `offline-mbrl` start-up
    import seaborn as sns

    methods = list(dict.fromkeys(bins["method"]))
    colors = dict(zip(PARTS, sns.color_palette("colorblind", 2)[::-1]))  # random orange, replay blue (as Fig. 3)
    fig, axes = plt.subplots(len(methods), 1, figsize=(8, 2.4 * len(methods)), sharex=True, squeeze=False)
    for ax, method in zip(axes[:, 0], methods):
        frame = bins[bins["method"] == method]
        for part in PARTS:
            rows = frame[frame["part"] == part]
            ax.bar(
                rows["start"] / 1e3,
                rows["relative_weight"],
                width=rows["rows"] / 1e3,
                align="edge",
                color=colors[part],
                edgecolor="white",
                linewidth=0.3,
                label=part,
            )
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(method, fontsize=10)
        ax.set_ylabel("mean weight × N")
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("transition index in the combined dataset (thousands)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_progression(
    progression: Progression, combined: CombinedDataset, out_dir: str | Path, settings: Mapping[str, object]
) -> dict[str, Path]:
    """Write ``weight_progression.png`` (``plot_progression``), ``weight_progression.csv`` (the bin table),
    ``weights.npz`` (``is_random`` and each method's per-row weights, for re-plotting) and ``summary.json``
    (sizes, ``settings``, TOM discriminator accuracy/AUROC and final losses, ``weight_summary`` and
    ``progression_stats`` per method) into ``out_dir``. Returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "png": plot_progression(progression.bins, out_dir / "weight_progression.png"),
        "csv": out_dir / "weight_progression.csv",
        "npz": out_dir / "weights.npz",
        "json": out_dir / "summary.json",
    }
    progression.bins.to_csv(paths["csv"], index=False)
    np.savez_compressed(paths["npz"], is_random=combined.is_random, **progression.weights)
    tom = progression.tom
    methods = {
        m: {**weight_summary(w), **progression_stats(progression.bins[progression.bins["method"] == m])}
        for m, w in progression.weights.items()
    }
    summary = {
        "sizes": combined.sizes,
        "source": combined.dataset.source,
        "settings": dict(settings),
        "tom": {
            "disc_accuracy": tom.disc_accuracy,
            "disc_auroc": tom.disc_auroc,
            "disc_loss_last": float(tom.disc_loss_history[-1]),
            "q_loss_last": tom.q_loss,
        },
        "methods": methods,
    }
    paths["json"].write_text(json.dumps(summary, indent=2))
    return paths


def format_progression(progression: Progression, combined: CombinedDataset) -> str:
    """Lines for the terminal: sizes, TOM's discriminator scores and final losses, and per method its
    ``format_weight_summary`` and ``progression_stats``."""
    tom = progression.tom
    lines = [
        f"combined dataset: {combined.num_random} random + {combined.sizes['replay']} replay rows "
        f"({combined.dataset.source})",
        f"TOM discriminator: balanced accuracy {tom.disc_accuracy:.3f}, AUROC {tom.disc_auroc:.3f}, last loss "
        f"{tom.disc_loss_history[-1]:.4g}; dual Q loss at its last step ({len(tom.q_loss_history)}) {tom.q_loss:.4g}",
    ]
    for method, weights in progression.weights.items():
        stats = progression_stats(progression.bins[progression.bins["method"] == method])
        lines += [
            format_weight_summary(method, weights),
            f"  mean weight x N: random part {stats['random_relative_weight']:.3g}, replay part "
            f"{stats['replay_relative_weight']:.3g}; Spearman(replay bin, weight) {stats['replay_spearman']:.3f}",
        ]
    return "\n".join(lines)


# ====================================================================== model error


@torch.no_grad()
def one_step_mse(model: ADM, test: TransitionDataset, batch_size: int = 4096) -> float:
    """Mean over rows and the D obs dims of (ŝ' − s')², ŝ' the k = 1 mean prediction in eval mode."""
    device = next(model.parameters()).device
    model.eval()
    total = 0.0
    for start in range(0, len(test), batch_size):
        rows = slice(start, start + batch_size)
        obs = torch.as_tensor(test.obs[rows], device=device)  # (B, D)
        actions = torch.as_tensor(test.actions[rows], device=device)[:, None]  # (B, 1, A)
        next_obs, _ = model.predict(obs, actions)  # (B, 1, D)
        total += (next_obs[:, 0] - torch.as_tensor(test.next_obs[rows], device=device)).pow(2).mean(dim=1).sum().item()
    return total / len(test)


def open_loop_mse(model: ADM, test: TransitionDataset, horizon: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-step error of a sampled ADM roll-out fed the recorded actions (module docstring).

    Starts: every row t of ``test`` with ``horizon`` rows t … t+H−1 in its episode; history = the m states
    before t in that episode (``Windows.history``). Step h (1…H) is compared with ``next_obs[t + h − 1]``.

    Returns:
        (H,) mean over trajectories of mean_D (ŝ − s)², and (H,) trajectories still finite at each step (a
        non-finite sample ends its roll-out, ``rollout.rollout``).

    Raises:
        ConfigError: ``horizon`` < 1. DatasetError: no episode of ``test`` has ``horizon`` rows.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon}")
    device = next(model.parameters()).device
    windows = Windows(test, model.config.max_backtrack, device)
    starts = torch.nonzero(windows.steps_to_end >= horizon).squeeze(1)  # (B,)
    if len(starts) == 0:
        raise DatasetError(f"{test.source}: no episode has {horizon} rows for a {horizon}-step open-loop roll-out")
    index = starts[:, None] + torch.arange(horizon, device=device)  # (B, H)
    generator = torch.Generator(device).manual_seed(seed)
    with seeded(seed, device):  # dropout noise
        result = rollout(
            model, windows.actions[index], windows.history(starts), horizon, penalty=None, generator=generator
        )  # actions (B, H, A)
    truth = windows.next_obs[index[result.start_ids, result.steps]]  # (rows, D)
    errors = (result.next_obs - truth).pow(2).mean(dim=1)
    counts = torch.bincount(result.steps, minlength=horizon)
    sums = torch.zeros(horizon, dtype=errors.dtype, device=device).index_add_(0, result.steps, errors)
    return (sums / counts.clamp(min=1)).cpu().numpy(), counts.cpu().numpy()


def model_error_study(
    dataset: TransitionDataset,
    weights: Mapping[str, np.ndarray],
    test: TransitionDataset,
    *,
    horizon: int = 10,
    fit_config: FitConfig = FitConfig(),
    model_fields: Mapping[str, object] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> pd.DataFrame:
    """Fit one ADM per weighting method on ``dataset`` and measure its error on π_T's held-out transitions ``test``.

    Every model has the same init (built in ``seeded(fit_config.seed)``) and fit seed. A fit
    that raises DatasetError (e.g. bad weights, or no holdout row with a non-zero float32 weight) is reported in
    ``note`` with NaN errors instead of ending the study.

    Args:
        weights: method -> (N,) sampling weights (``"uniform"`` fits without weights).
        fit_config: use ``holdout_split="last"`` (official ADMPO) on a combined dataset: the holdout is then
            the newest replay rows, the closest to π_T and the ones PMAC weights most. With random episodes,
            ``pmac-tom`` weights of holdout rows more than about 25k steps older than the newest underflow
            float32 (0.996^25000 ≈ 1e-44), and a holdout made only of such rows cannot select a model.
        model_fields: ``RecurrentConfig`` fields of the ADM (default: official sizes, m = 5).

    Returns:
        One row per method: ``method, ess_fraction, epochs, best_epoch, one_step_mse, open_loop_mse_h1 …
        open_loop_mse_h{H}, open_loop_mse_mean, note``.
    """
    rows = []
    for method, w in weights.items():
        with seeded(fit_config.seed):  # the same initial weights for every method
            model = build_model("adm", dataset.obs_dim, dataset.action_dim, **dict(model_fields or {})).to(device)
        try:
            result = fit(model, dataset, fit_config, None if method == "uniform" else w, progress=progress)
        except DatasetError as exc:
            rows.append({"method": method, "note": f"fit failed: {exc}"})
            continue
        per_step, counts = open_loop_mse(model, test, horizon, fit_config.seed)
        rows.append(
            {
                "method": method,
                "ess_fraction": weight_summary(w)["ess_fraction"],
                "note": "",
                "epochs": result.epochs,
                "best_epoch": result.best_epoch,
                "one_step_mse": one_step_mse(model, test),
                **{f"open_loop_mse_h{h + 1}": e for h, e in enumerate(per_step)},
                "open_loop_mse_mean": float(per_step.mean()),
                "open_loop_starts": int(counts[0]),
            }
        )
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, columns: list[str], digits: int = 4) -> str:
    """``frame[columns]`` as a Markdown table, numbers in ``digits`` significant digits, NaN as ``—``."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "—" if np.isnan(value) else f"{value:.{digits}g}"
        return str(value)

    cells = [[cell(v) for v in row] for row in frame.reindex(columns=columns).itertuples(index=False)]
    return markdown_rows([columns, *cells]) + "\n"


def write_model_error(table: pd.DataFrame, horizon: int, out_dir: str | Path, caption: str) -> dict[str, Path]:
    """Write ``model_error.csv`` (every column) and ``model_error.md`` (``caption`` and the method, ESS share,
    epochs, one-step, H-step and mean open-loop errors, note) into ``out_dir``. Returns name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "model_error.csv", "md": out_dir / "model_error.md"}
    table.to_csv(paths["csv"], index=False)
    columns = [
        "method",
        "ess_fraction",
        "epochs",
        "one_step_mse",
        f"open_loop_mse_h{horizon}",
        "open_loop_mse_mean",
        "note",
    ]
    paths["md"].write_text(f"{caption}\n\n{markdown_table(table, columns)}")
    return paths
