"""Policy gap: does the model believe what the real environment does under a *trained* policy?

MOPO and ADMPO-OFF train SAC on model roll-outs; a policy can find states where the model predicts survival and
reward that the real environment does not give (model exploitation, MOPO Section 4). Calibration (Fig. 4) scores
one model step at a time; this study follows whole closed-loop trajectories. For each policy and start set, the
same start states are rolled out H steps

* in the **model**: ``offline_mbrl.rollout.rollout`` with the model's own settings (ADM: random backtracking
  (Alg. 1) and dropout as configured; ensemble: a random elite per step), the task's termination function and
  the uncertainty U of ``penalty`` from the very predictions the step was sampled from;
* in the **real** v5 env: the simulator set to the stored state of the same row
  (``envs.oracle.MujocoOracle.rollout_from_state``), the same policy (a fresh sample per step), stopped at the
  first ``terminated``.

Start sets: ``dataset`` (rows drawn uniformly) and ``episode_start`` (the first row of episodes, i.e. the
states a policy is evaluated from). Per step h = 1…H and source: the fraction of starts still running (alive),
the mean reward of the running ones, and for the model the mean U and r̂ − βU. Summary per policy, start set and
source: expected steps survived within H and the mean H-step return per start (reward summed over the steps
taken, averaged over all starts). A model whose survival or return stays above the real env's, at low U, is
being exploited where its uncertainty does not see its error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.dataset import TransitionDataset
from ..data.windows import Windows
from ..envs.gym_env import Policy
from ..envs.oracle import MujocoOracle, OracleRollout
from ..envs.termination import TerminationFn
from ..errors import ConfigError, DatasetError
from ..models.base import DynamicsModel, check_data_dims
from ..persist import seeded
from ..rollout import rollout
from .tables import markdown_rows

START_SETS = ("dataset", "episode_start")
SOURCES = ("model", "real")
PNG_NAME, STEPS_CSV, SUMMARY_CSV, SUMMARY_MD = (
    "policy_gap.png",
    "policy_gap.csv",
    "policy_gap_summary.csv",
    "policy_gap_summary.md",
)


@dataclass(frozen=True)
class PolicyGapStudy:
    """The study's numbers.

    Attributes:
        steps: one row per (policy, starts, source, step): ``alive`` (fraction of the starts that took step h),
            ``reward`` (mean over those), ``penalty`` and ``penalized`` (model rows only; NaN for real).
        summary: one row per (policy, starts, source): ``steps_survived`` (mean steps taken within H),
            ``return`` (mean H-step return per start), ``penalized_return`` (model only).
        num_starts: starts per start set.
        penalty: the quantifier's name; penalty_coef: β of ``penalized``.
    """

    steps: pd.DataFrame
    summary: pd.DataFrame
    num_starts: dict[str, int]
    penalty: str
    penalty_coef: float


def start_rows(dataset: TransitionDataset, num_starts: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Start rows per start set: ``{"dataset": (n,), "episode_start": (n',)}`` integer dataset row indices, sorted,
    drawn without replacement (``np.random.default_rng(seed)``), ``min(num_starts, pool size)`` each.

    Raises:
        ConfigError: ``num_starts`` < 1.
        DatasetError: the dataset stores no simulator state (``qpos``/``qvel``) to set the real env to.
    """
    if num_starts < 1:
        raise ConfigError(f"policy gap: 'num_starts' must be >= 1, got {num_starts}")
    if dataset.qpos is None or dataset.qvel is None:
        raise DatasetError(
            f"{dataset.source}: the policy gap needs the simulator state of each start row (qpos/qvel, stored by "
            "`offline-mbrl collect` / `dataset make` and D4RL's infos/qpos); this dataset has none"
        )
    rng = np.random.default_rng(seed)
    pools = {"dataset": np.arange(len(dataset)), "episode_start": dataset.episode_starts}
    return {name: np.sort(rng.choice(pool, min(num_starts, len(pool)), replace=False)) for name, pool in pools.items()}


def _per_step(rewards: np.ndarray, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H,) alive fraction and mean reward of the running starts from (N, H) arrays (NaN where none run)."""
    count = alive.sum(0)
    total = np.where(alive, rewards, 0.0).sum(0)
    return count / len(alive), np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)


def _model_rollout(
    model: DynamicsModel,
    windows: Windows,
    rows: np.ndarray,
    policy: Policy,
    horizon: int,
    termination: TerminationFn,
    penalty: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, H) model reward, U (NaN where no step was taken) and alive mask of closed-loop roll-outs from ``rows``
    (N,)."""
    result = rollout(
        model, policy, windows.history(torch.as_tensor(rows, device=windows.device)), horizon, penalty, termination
    )
    shape = (len(rows), horizon)
    rewards, penalties, alive = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape, dtype=bool)
    at = (result.start_ids.cpu().numpy(), result.steps.cpu().numpy())
    rewards[at], penalties[at], alive[at] = result.rewards.cpu().numpy(), result.penalties.cpu().numpy(), True
    return rewards, penalties, alive


def policy_gap(
    model: DynamicsModel,
    dataset: TransitionDataset,
    policies: dict[str, Policy],
    oracle: MujocoOracle,
    num_starts: int,
    horizon: int,
    termination: TerminationFn,
    penalty: str | None = None,
    penalty_coef: float = 0.0,
    seed: int = 0,
) -> PolicyGapStudy:
    """Roll every policy out from the same starts in the model and in the real env (module docstring).

    Args:
        model: a fitted dynamics model; its device is the policies' and the roll-out's (the real env steps on CPU).
        dataset: the data the model was fitted on, with ``qpos``/``qvel``.
        policies: name -> ``policy(obs (B, D)) -> (B, A)`` (stochastic samples, as in training roll-outs).
        oracle: the real env (``calibration.oracle_for``).
        num_starts: starts per start set; horizon: H ≥ 1.
        termination: the task's termination function (the model's roll-outs stop where it fires).
        penalty: a quantifier of ``model.quantifiers`` (default: the first).
        penalty_coef: finite β ≥ 0 of the ``penalized`` column r̂ − β·U (ADM Eq. 8, MOPO Eq. 3).
        seed: start rows, model sampling and the policies' draws.
    Returns:
        PolicyGapStudy.
    Raises:
        ConfigError: no policy, ``num_starts``/``horizon`` < 1, a negative or non-finite β, a quantifier the
            model lacks, or dataset dims that differ from the model's.
        DatasetError: no stored simulator states.
    """
    if not policies:
        raise ConfigError("policy gap: give at least one policy")
    if horizon < 1:
        raise ConfigError(f"policy gap: 'horizon' must be >= 1, got {horizon}")
    if not (math.isfinite(penalty_coef) and penalty_coef >= 0):
        raise ConfigError(f"policy gap: 'penalty_coef' must be a finite number >= 0, got {penalty_coef}")
    check_data_dims(model, dataset.source, dataset.obs_dim, dataset.action_dim)
    penalty = penalty or model.quantifiers[0]
    if penalty not in model.quantifiers:
        raise ConfigError(f"policy gap: the {model.kind} model has no quantifier {penalty!r}; use {model.quantifiers}")
    starts = start_rows(dataset, num_starts, seed)
    device = next(model.parameters()).device
    windows = Windows(dataset, model.window_length, device)
    frames = []
    with seeded(seed, device):
        for policy_name, policy in policies.items():
            for start_set, rows in starts.items():
                reward, u, alive = _model_rollout(model, windows, rows, policy, horizon, termination, penalty)
                real: OracleRollout = oracle.rollout_from_state(
                    dataset.qpos[rows], dataset.qvel[rows], policy, horizon, device
                )
                for source, (r, a) in zip(SOURCES, ((reward, alive), (real.rewards, real.alive))):
                    alive_frac, mean_reward = _per_step(r, a)
                    mean_u = _per_step(u, alive)[1] if source == "model" else np.full(horizon, np.nan)
                    frames.append(
                        pd.DataFrame(
                            {
                                "policy": policy_name,
                                "starts": start_set,
                                "source": source,
                                "step": np.arange(1, horizon + 1),
                                "alive": alive_frac,
                                "reward": mean_reward,
                                "penalty": mean_u,
                                "penalized": mean_reward - penalty_coef * mean_u,
                            }
                        )
                    )
    steps = pd.concat(frames, ignore_index=True)
    return PolicyGapStudy(steps, _summary(steps), {k: len(v) for k, v in starts.items()}, penalty, penalty_coef)


def _summary(steps: pd.DataFrame) -> pd.DataFrame:
    """Per (policy, starts, source): steps survived within H and the mean H-step (penalized) return per start."""
    weighted = steps.assign(
        ret=steps["alive"] * steps["reward"].fillna(0.0), pen=steps["alive"] * steps["penalized"].fillna(0.0)
    )
    out = weighted.groupby(["policy", "starts", "source"], sort=False).agg(
        steps_survived=("alive", "sum"), **{"return": ("ret", "sum"), "penalized_return": ("pen", "sum")}
    )
    out.loc[out.index.get_level_values("source") == "real", "penalized_return"] = np.nan
    return out.reset_index()


def format_summary(study: PolicyGapStudy) -> str:
    """The summary as a terminal table, with the start counts, H and the quantifier."""
    horizon = int(study.steps["step"].max())
    head = (
        f"policy gap over H = {horizon} steps ({', '.join(f'{v} {k} starts' for k, v in study.num_starts.items())}); "
        f"penalized = r - {study.penalty_coef:g} * {study.penalty}"
    )
    return head + "\n" + study.summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def write_policy_gap(study: PolicyGapStudy, out_dir: str | Path, title: str) -> list[Path]:
    """Write ``policy_gap.png`` (alive fraction, reward and U per step; solid real, dashed model), the per-step
    and summary CSVs and a Markdown summary into ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = study.steps
    start_sets = list(dict.fromkeys(steps["starts"]))
    fig, axes = plt.subplots(len(start_sets), 3, figsize=(14, 3.6 * len(start_sets)), squeeze=False)
    colors = dict(zip(dict.fromkeys(steps["policy"]), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for row, start_set in zip(axes, start_sets):
        for (policy, source), part in steps[steps["starts"] == start_set].groupby(["policy", "source"], sort=False):
            style = {"color": colors[policy], "linestyle": "-" if source == "real" else "--"}
            row[0].plot(part["step"], part["alive"], label=f"{policy} ({source})", **style)
            row[1].plot(part["step"], part["reward"], label=f"{policy} ({source})", **style)
            if source == "model":
                row[2].plot(part["step"], part["penalty"], label=f"{policy}: U", **style)
                row[2].plot(part["step"], part["penalized"], label=f"{policy}: r - βU", color=colors[policy], ls=":")
        for ax, ylabel in zip(row, ("fraction still running", "mean reward of running", "model U, r - βU")):
            ax.set_title(f"{start_set} starts ({study.num_starts[start_set]})", fontsize=9)
            ax.set_xlabel("step h")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        row[0].set_ylim(-0.02, 1.02)
        row[0].legend(fontsize=7)
        row[2].legend(fontsize=7)
    fig.suptitle(
        f"{title}\nsolid: real env, dashed: model; U = {study.penalty}, β = {study.penalty_coef:g}", fontsize=9
    )
    fig.tight_layout()
    paths = [out / PNG_NAME, out / STEPS_CSV, out / SUMMARY_CSV, out / SUMMARY_MD]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    steps.to_csv(paths[1], index=False)
    study.summary.to_csv(paths[2], index=False)
    columns = list(study.summary.columns)
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in study.summary.itertuples(False)]
    paths[3].write_text(f"# Policy gap: {title}\n\n{markdown_rows([columns, *cells])}\n")
    return paths
