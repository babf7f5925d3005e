"""Compounding error of learned dynamics models under open-loop roll-outs (ADM paper Section 4.1, Fig. 2).

Protocol (the paper gives no formula; this follows the public third-party reproduction
``gslu1115/admpo_reproduction`` ``evaluation/figure2.py``, REFERENCE-algorithms section 5, where it is stated):

* **Segments.** A segment is ``M − 1 + H`` consecutive dataset rows inside one episode (it never crosses a
  terminal, a timeout or the data end), M being the longest history of the compared models, so every model
  starts predicting at the same row ``t0 + M − 1``. A model with history m reads the last m states and m − 1
  actions of the segment's first M steps. Segments come from the **holdout episodes of the model fit**: the
  holdout is rebuilt with ``models.fit.split_holdout`` from the fit's seed and split rule (the defaults of
  ``offline-mbrl model fit``), so the models never trained on them. ``segments_from="all"`` takes every
  episode instead (then the models have seen the data; say so with the figure).
* **Roll-out.** Each model is rolled out H steps **open-loop** with the segment's recorded actions, feeding
  its own sampled predictions back (Gaussian sampling on, no termination, head dropout as the model's
  ``rollout_dropout``), with ``offline_mbrl.rollout.rollout``. ADM is run with random backtracking (Alg. 1) and with
  the longest backtrack k = min(L + τ, m) = m at every step (``backtrack="longest"``).
* **Error** at step h = 1…H: ``‖ŝ_h − s_h‖₂`` against the recorded state ``next_obs[t0 + M − 2 + h]``, and
  the squared error per state dimension. As in the paper, an overflow counts as the float32 maximum: a step
  the model did not produce (the roll-out drops a non-finite sample and ends that trajectory) or whose error
  is non-finite or above float32 max is set to ``F32_MAX`` (every dimension too); such points are counted.
* **Summary** per model and h: the mean over segments with a 95 % bootstrap percentile interval over
  segments (``summarize_errors``), and the per-dimension MSE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.dataset import TransitionDataset
from ..data.windows import HistoryBatch, Windows
from ..envs.termination import TerminationFn
from ..errors import ConfigError
from ..models.base import DynamicsModel, Stepper, check_data_dims
from ..models.fit import FitConfig, split_holdout
from ..persist import seeded
from ..rollout import Policy, RolloutResult, rollout

F32_MAX = float(np.finfo(np.float32).max)
ADM_BACKTRACKS = ("random", "longest")
SEGMENT_SOURCES = ("holdout", "all")
CSV_NAME, PER_DIM_CSV_NAME, PNG_NAME = "compounding_error.csv", "compounding_error_per_dim.csv", "compounding_error.png"


# ---------------------------------------------------------------------------------------------- roll-outs
def model_rollout(
    model: DynamicsModel,
    policy: Policy,
    history: HistoryBatch,
    rollout_length: int,
    *,
    generator: torch.Generator | None = None,
    backtrack: str = "random",
    termination: TerminationFn | None = None,
    observe: Callable[[Stepper], Stepper] | None = None,
) -> RolloutResult:
    """``offline_mbrl.rollout.rollout`` of any dynamics model in one block, without penalty, with this study's
    backtracking names.

    Args:
        model: a fitted ``DynamicsModel`` (ADM, BootRNN or ProbabilisticEnsemble).
        policy: ``policy(obs (B, D)) -> (B, A)`` or open-loop actions (B, H, A) on the model's device.
        history: start histories of ``model.window_length`` states (``Windows(dataset, m).history``).
        rollout_length: H.
        generator: random source on the model's device.
        backtrack: ``"random"`` (Alg. 1, k per trajectory and step) or ``"longest"`` (k = m; models whose
            ``backtrack_samplings`` include it: ADM).
        termination: ``termination_fn(task)`` or None (never terminate).
        observe: optional wrapper of the stepper (``stepper -> stepper``); calibration uses it to record every
            quantifier from the roll-out's own predictions.
    Returns:
        ``RolloutResult`` without penalty (``penalties`` are zeros).
    Raises:
        ConfigError: unknown ``backtrack``, ``"longest"`` for a model without it, or a history whose length is
            not the model's window length.
    """
    if backtrack not in ADM_BACKTRACKS or (backtrack == "longest" and "longest" not in model.backtrack_samplings):
        raise ConfigError(
            f"rollout: 'backtrack' must be one of {ADM_BACKTRACKS} ('longest' for ADM only), "
            f"got {backtrack!r} for a {model.kind} model"
        )
    if history.max_backtrack != model.window_length:
        raise ConfigError(
            f"rollout: history holds {history.max_backtrack} states, the {model.kind} model reads {model.window_length}"
        )
    sampling = "longest" if backtrack == "longest" else "trajectory"
    return rollout(
        model, policy, history, rollout_length, None, termination, generator, sampling, chunk_size=None, observe=observe
    )


# ---------------------------------------------------------------------------------------------- segments
@dataclass(frozen=True)
class Segments:
    """S evaluation segments: rows ``t0 … t0 + M − 2 + H`` of one episode each.

    Attributes:
        rows: (S,) int64 first row t0 of each segment (sorted).
        max_backtrack: M, the largest m of the compared models: states read before the first prediction.
        horizon: H, predicted steps.
    """

    rows: np.ndarray
    max_backtrack: int
    horizon: int

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def start_rows(self) -> np.ndarray:
        """(S,) row of the roll-out start state ``s_{t0+M-1}``."""
        return self.rows + self.max_backtrack - 1

    def _steps(self) -> np.ndarray:
        return self.start_rows[:, None] + np.arange(self.horizon)[None]  # (S, H)

    def actions(self, dataset: TransitionDataset) -> np.ndarray:
        """(S, H, A) recorded actions a_{t0+M-1} … a_{t0+M-2+H} (the open-loop policy)."""
        return dataset.actions[self._steps()]

    def targets(self, dataset: TransitionDataset) -> np.ndarray:
        """(S, H, D) recorded states s_{t0+M} … s_{t0+M-1+H}: ``targets[:, h-1]`` is the target of step h."""
        return dataset.next_obs[self._steps()]


def holdout_mask(dataset: TransitionDataset, fit_seed: int = 0, holdout_split: str = "episodes") -> np.ndarray:
    """(N,) bool: the rows ``models.fit.fit`` held out when fitting with ``seed=fit_seed`` and ``holdout_split``
    (``FitConfig`` defaults otherwise, as ``offline-mbrl model fit``).

    Raises:
        ConfigError: unknown ``holdout_split``. DatasetError: the dataset is too small for a holdout.
    """
    mask = np.zeros(len(dataset), dtype=bool)
    mask[split_holdout(dataset, FitConfig(seed=fit_seed, holdout_split=holdout_split))[1]] = True
    return mask


def select_segments(
    dataset: TransitionDataset,
    horizon: int,
    max_backtrack: int,
    allowed: np.ndarray | None = None,
    num_segments: int | None = None,
    seed: int = 0,
) -> Segments:
    """Segments of ``max_backtrack − 1 + horizon`` rows inside one episode, starting at rows where ``allowed``
    (N,) bool is True (None: everywhere) and staying in allowed rows.

    Args:
        num_segments: draw this many distinct starts (seeded); None takes every eligible start.
    Raises:
        ConfigError: horizon or max_backtrack < 1, a wrong ``allowed`` shape, no eligible start, or fewer
            eligible starts than ``num_segments`` (the message gives the count).
    """
    if horizon < 1 or max_backtrack < 1:
        raise ConfigError(f"segments: 'horizon' and 'max_backtrack' must be >= 1, got {horizon}, {max_backtrack}")
    length = max_backtrack - 1 + horizon
    allowed = np.ones(len(dataset), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    if allowed.shape != (len(dataset),):
        raise ConfigError(f"segments: 'allowed' must have shape ({len(dataset)},), got {allowed.shape}")
    steps_to_end = Windows(dataset, 1).steps_to_end.numpy()  # (N,)
    last = np.minimum(np.arange(len(dataset)) + length - 1, len(dataset) - 1)
    # every row of [t, t + length) allowed  <=>  no disallowed row in it (prefix counts)
    disallowed_before = np.concatenate([[0], np.cumsum(~allowed)])
    inside = disallowed_before[last + 1] == disallowed_before[:-1]
    eligible = np.flatnonzero((steps_to_end >= length) & inside)
    if len(eligible) == 0 or (num_segments is not None and len(eligible) < num_segments):
        raise ConfigError(
            f"{dataset.source}: {len(eligible)} segments of {length} rows (history {max_backtrack} "
            f"+ horizon {horizon} - 1) fit inside one allowed episode; need "
            f"{num_segments or 1}. Use a shorter horizon, fewer segments or segments_from='all'"
        )
    if num_segments is not None:
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, size=num_segments, replace=False))
    return Segments(rows=eligible.astype(np.int64), max_backtrack=max_backtrack, horizon=horizon)


def rollout_segments(
    model: DynamicsModel, dataset: TransitionDataset, segments: Segments, backtrack: str = "random", seed: int = 0
) -> tuple[np.ndarray, int]:
    """Open-loop predictions of ``model`` on every segment.

    Returns:
        predictions (S, H, D) float64, NaN where the roll-out produced no step (a dropped non-finite sample
        ends its trajectory), and the number of dropped non-finite samples.
    Raises:
        ConfigError: the model's history is longer than ``segments.max_backtrack``, its dims differ from the
            dataset's, or as ``model_rollout``.
    """
    device = next(model.parameters()).device
    if model.window_length > segments.max_backtrack:
        raise ConfigError(
            f"compounding error: the {model.kind} model reads {model.window_length} states, the "
            f"segments hold {segments.max_backtrack}"
        )
    check_data_dims(model, dataset.source, dataset.obs_dim, dataset.action_dim)
    history = Windows(dataset, model.window_length, device).history(torch.as_tensor(segments.start_rows))
    actions = torch.as_tensor(segments.actions(dataset), device=device)  # (S, H, A)
    generator = torch.Generator(device=device).manual_seed(seed)
    with seeded(seed, device):  # dropout noise
        result = model_rollout(model, actions, history, segments.horizon, generator=generator, backtrack=backtrack)
    predictions = np.full((len(segments), segments.horizon, dataset.obs_dim), np.nan)
    predictions[result.start_ids.cpu().numpy(), result.steps.cpu().numpy()] = result.next_obs.cpu().double().numpy()
    return predictions, int(result.stats["rollout/num_nonfinite"])


# ---------------------------------------------------------------------------------------------- errors
def segment_errors(predictions: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Errors of predictions (S, H, D) against targets (S, H, D), computed in float64.

    Returns:
        l2 (S, H) ``‖ŝ − s‖₂``; squared (S, H, D) per-dimension squared error, capped at ``F32_MAX``;
        overflow (S, H) bool: prediction missing/non-finite or l2 non-finite or above ``F32_MAX``. At overflow
        points l2 and every dimension's squared error are ``F32_MAX`` (ADM paper Fig. 2).
    Raises:
        ConfigError: shapes differ.
    """
    if predictions.shape != targets.shape or predictions.ndim != 3:
        raise ConfigError(
            f"compounding error: predictions {predictions.shape} and targets {targets.shape} must both be (S, H, D)"
        )
    with np.errstate(over="ignore", invalid="ignore"):
        squared = (np.asarray(predictions, np.float64) - targets) ** 2
        l2 = np.sqrt(squared.sum(axis=-1))
    overflow = ~np.isfinite(l2) | (l2 > F32_MAX)
    l2 = np.where(overflow, F32_MAX, l2)
    squared = np.where(overflow[..., None] | ~(squared <= F32_MAX), F32_MAX, squared)
    return l2, squared, overflow


def summarize_errors(
    l2: np.ndarray, overflow: np.ndarray, num_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Mean error per step over segments with a bootstrap percentile interval (resampling segments).

    Args:
        l2: (S, H) errors; overflow: (S, H) bool.
        num_boot: bootstrap resamples (each draws S segments with replacement, seeded).
    Returns:
        Columns ``h`` (1…H), ``mean``, ``ci_low``, ``ci_high``, ``n_segments``, ``n_overflow``.
    """
    rng = np.random.default_rng(seed)
    num_segments = l2.shape[0]
    means = []
    for start in range(0, num_boot, 100):  # chunks keep the (boots, S) count matrix small
        counts = rng.multinomial(
            num_segments, np.full(num_segments, 1.0 / num_segments), size=min(100, num_boot - start)
        )
        means.append(counts @ l2 / num_segments)  # (boots, H)
    low, high = np.quantile(np.concatenate(means), [(1 - level) / 2, (1 + level) / 2], axis=0)
    return pd.DataFrame(
        {
            "h": np.arange(1, l2.shape[1] + 1),
            "mean": l2.mean(axis=0),
            "ci_low": low,
            "ci_high": high,
            "n_segments": num_segments,
            "n_overflow": overflow.sum(axis=0),
        }
    )


@dataclass(frozen=True)
class CompoundingResult:
    """What ``compounding_error`` measured.

    Attributes:
        summary: columns ``model, h, mean, ci_low, ci_high, n_segments, n_overflow, mse`` (mse: mean squared
            error over segments and dims, the reproduction's metric).
        per_dim: columns ``model, h, dim, mse``.
        segments: the segments used.
        num_nonfinite: per model label, roll-out samples dropped as non-finite.
    """

    summary: pd.DataFrame
    per_dim: pd.DataFrame
    segments: Segments
    num_nonfinite: dict[str, int]


def model_variants(
    models: dict[str, DynamicsModel], adm_backtracks: tuple[str, ...] = ADM_BACKTRACKS
) -> list[tuple[str, DynamicsModel, str]]:
    """(label, model, backtrack) per curve: one per model, and one per backtrack mode for ADM (``NAME`` for
    random backtracking, ``NAME (k=m=5)`` for the longest; m = 1 has one mode only).

    Raises:
        ConfigError: an unknown backtrack mode.
    """
    unknown = set(adm_backtracks) - set(ADM_BACKTRACKS)
    if unknown or not adm_backtracks:
        raise ConfigError(
            f"compounding error: ADM backtracking modes must be among {ADM_BACKTRACKS}, got {adm_backtracks}"
        )
    variants = []
    for name, model in models.items():
        m = model.window_length
        modes = adm_backtracks if "longest" in model.backtrack_samplings and m > 1 else ("random",)
        variants += [(name if mode == "random" else f"{name} (k=m={m})", model, mode) for mode in modes]
    return variants


def compounding_error(
    models: dict[str, DynamicsModel],
    dataset: TransitionDataset,
    segments: Segments,
    adm_backtracks: tuple[str, ...] = ADM_BACKTRACKS,
    seed: int = 0,
) -> CompoundingResult:
    """Roll every model (variant, ``model_variants``) over ``segments`` and summarize its errors per step.

    Raises:
        ConfigError: as ``rollout_segments`` and ``model_variants``.
    """
    targets = segments.targets(dataset)  # (S, H, D)
    summaries, per_dims, nonfinite = [], [], {}
    for label, model, backtrack in model_variants(models, adm_backtracks):
        predictions, nonfinite[label] = rollout_segments(model, dataset, segments, backtrack, seed)
        l2, squared, overflow = segment_errors(predictions, targets)
        summary = summarize_errors(l2, overflow, seed=seed)
        summary.insert(0, "model", label)
        summary["mse"] = squared.mean(axis=(0, 2))
        summaries.append(summary)
        mse = squared.mean(axis=0)  # (H, D)
        h, dim = np.meshgrid(np.arange(1, mse.shape[0] + 1), np.arange(mse.shape[1]), indexing="ij")
        per_dims.append(pd.DataFrame({"model": label, "h": h.ravel(), "dim": dim.ravel(), "mse": mse.ravel()}))
    return CompoundingResult(
        pd.concat(summaries, ignore_index=True), pd.concat(per_dims, ignore_index=True), segments, nonfinite
    )


def plot_error_curves(summary: pd.DataFrame, ax, hue: str = "model", ylabel: str = "L2 error") -> None:
    """Mean error vs h per ``hue`` value (seaborn lines, log y) with the ``ci_low``–``ci_high`` band of the
    summary filled in the line's colour; the legend gives each curve's overflow points."""
    import seaborn as sns

    overflow = summary.groupby(hue, sort=False)["n_overflow"].sum()
    curve = summary[hue].map(lambda value: f"{value} (overflow {overflow[value]})")
    labels = list(dict.fromkeys(curve))
    palette = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    sns.lineplot(x=summary["h"], y=summary["mean"], hue=curve, palette=palette, errorbar=None, ax=ax)
    for label in labels:
        rows = summary[curve == label]
        ax.fill_between(rows["h"], rows["ci_low"], rows["ci_high"], color=palette[label], alpha=0.2, linewidth=0)
    ax.set_yscale("log")
    ax.set(xlabel="roll-out step h", ylabel=ylabel)
    ax.legend(title=None, fontsize="small")


def write_compounding(result: CompoundingResult, out_dir: str | Path, title: str) -> list[Path]:
    """Write ``compounding_error.png`` (mean L2 error vs h, log y, 95 % bootstrap band over segments),
    ``compounding_error.csv`` (``result.summary``) and ``compounding_error_per_dim.csv`` into ``out_dir``."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    plot_error_curves(result.summary, ax, ylabel="mean L2 error over segments")
    ax.set_title(
        f"{title}\n{len(result.segments)} segments, history {result.segments.max_backtrack}", fontsize="medium"
    )
    fig.tight_layout()
    paths = [out_dir / PNG_NAME, out_dir / CSV_NAME, out_dir / PER_DIM_CSV_NAME]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    result.summary.to_csv(paths[1], index=False)
    result.per_dim.to_csv(paths[2], index=False)
    return paths


def evaluation_segments(
    dataset: TransitionDataset,
    models: list[DynamicsModel],
    horizon: int,
    segments_from: str = "holdout",
    num_segments: int | None = None,
    fit_seed: int = 0,
    holdout_split: str = "episodes",
    seed: int = 0,
) -> Segments:
    """The segments of the module docstring for ``models`` (history M = their longest window).

    Raises:
        ConfigError: unknown ``segments_from``, or as ``select_segments``/``holdout_mask``.
    """
    if segments_from not in SEGMENT_SOURCES:
        raise ConfigError(f"compounding error: 'segments_from' must be one of {SEGMENT_SOURCES}, got {segments_from!r}")
    allowed = holdout_mask(dataset, fit_seed, holdout_split) if segments_from == "holdout" else None
    return select_segments(dataset, horizon, max(model.window_length for model in models), allowed, num_segments, seed)
