"""Uncertainty quantifiers against the true model error (ADM paper Section 4.3.3, Fig. 4).

The paper rolls the learned ADM and the ensemble out with three policies (uniform random actions, the
behaviour policy of the dataset, the policy learned offline), measures uncertainty and model error of the
sampled state-action pairs, reports their correlation (0.98 for ADM) and shows that random-action samples
get the largest uncertainty. The error definition is not published; here:

* **Roll-outs.** B start histories drawn uniformly from the dataset (seeded; the same rows for every policy
  and model), H steps with each policy (actions sampled, as in training roll-outs), the task's termination
  function, the model's own roll-out settings (``analysis.compounding.model_rollout``).
* **Uncertainty.** Every quantifier that applies to the model (``model.quantifiers``: ``adm_var``, ``adm_std``
  for ADM; ``ensemble_std``, ``max_aleatoric`` for the ensemble) is computed at each roll-out step from the very
  predictions (means, log-variances, available k) the roll-out sampled from.
* **Model error** ``‖ŝ' − s'_true‖₂`` over the state dims: ŝ' is the roll-out's sampled next state (what the
  agent trains on), s'_true the MuJoCo oracle's next state from the *model* state s and action a
  (``envs.oracle``). States whose observed velocity sits at the ±10 clip cannot be rebuilt: they are counted
  and excluded, as are the (rare) rows where the simulator itself returns non-finite values.
* **Scores** per quantifier (points of all policies pooled): Pearson and Spearman correlation of (error, U)
  (``scipy.stats``) and the AUROC of U for telling random-policy samples (positive) from behaviour-policy
  samples (``sklearn.metrics.roc_auc_score``; 1 = every random sample more uncertain).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..agents.sac import TanhGaussianActor, load_actor
from ..algos.collect import random_policy, stochastic
from ..data.dataset import TransitionDataset
from ..data.windows import HistoryBatch, Windows
from ..envs.gym_env import Policy, make_env
from ..envs.oracle import MujocoOracle, get_oracle
from ..envs.termination import TerminationFn
from ..errors import ConfigError
from ..models.base import DynamicsModel, Stepper, StepperWrapper, check_data_dims
from ..persist import seeded
from ..rollout import RolloutResult
from ..runs import RunFolder
from ..uncertainty import get_uncertainty
from .bc import BCConfig, fit_bc
from .compounding import model_rollout
from .tables import markdown_rows

POINTS_CSV, SUMMARY_CSV, SUMMARY_MD, PNG_NAME = (
    "calibration_points.csv",
    "calibration_summary.csv",
    "calibration_summary.md",
    "calibration.png",
)


def quantifiers_for(model: DynamicsModel) -> tuple[str, ...]:
    """The quantifier names that apply to ``model`` (``model.quantifiers``).

    Raises:
        ConfigError: the model has none (the bootstrapping RNN).
    """
    if not model.quantifiers:
        raise ConfigError(
            f"calibration: no uncertainty quantifier for a '{model.kind}' model; use a model that declares some "
            "(ADM, the ensemble)"
        )
    return model.quantifiers


class _Recorder(StepperWrapper):
    """Wraps a roll-out stepper: at each step computes every quantifier from the step's predictions
    (C, b, D + 1) and stores U by (trajectory, step) in ``values`` (Q, B, H), NaN where no step was taken."""

    def __init__(
        self, stepper: Stepper, names: tuple[str, ...], num_starts: int, rollout_length: int, device: torch.device
    ) -> None:
        super().__init__(stepper)
        self.quantifiers = [get_uncertainty(name) for name in names]
        self.values = torch.full((len(names), num_starts, rollout_length), float("nan"), device=device)
        self.ids = torch.arange(num_starts, device=device)  # (b,) live trajectories
        self.step = 0

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        mean, logvar, available = super().predict(obs, action)
        self.values[:, self.ids, self.step] = torch.stack([q(mean, logvar, available) for q in self.quantifiers])
        self.step += 1
        return mean, logvar, available

    def advance(self, next_obs: Tensor, keep: Tensor) -> None:
        self.ids = self.ids[keep]
        super().advance(next_obs, keep)


def rollout_uncertainties(
    model: DynamicsModel,
    policy: Policy,
    history: HistoryBatch,
    rollout_length: int,
    termination: TerminationFn | None = None,
    generator: torch.Generator | None = None,
    observe: Callable[[Stepper], Stepper] | None = None,
) -> tuple[RolloutResult, dict[str, Tensor]]:
    """Roll ``model`` out (``compounding.model_rollout``) and return, per applicable quantifier, U (N,) of every
    returned transition, computed from the predictions that transition was sampled from. ``observe`` wraps the
    recording stepper once more (``stepper -> stepper``), e.g. to record per-dimension spreads too.

    Raises:
        ConfigError: the model has no quantifier, or as ``model_rollout``.
    """
    names = quantifiers_for(model)
    device = next(model.parameters()).device
    recorders: list[_Recorder] = []

    def record(stepper: Stepper) -> Stepper:
        recorders.append(_Recorder(stepper, names, len(history), rollout_length, device))
        return observe(recorders[-1]) if observe else recorders[-1]

    result = model_rollout(
        model, policy, history, rollout_length, generator=generator, termination=termination, observe=record
    )
    values = recorders[0].values[:, result.start_ids, result.steps]  # (Q, N)
    return result, dict(zip(names, values))


def true_errors(
    oracle: MujocoOracle, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model error ``‖next_obs − oracle(obs, actions)‖₂`` per row, the oracle started from the given (model) states.

    Args:
        obs, next_obs: (N, D) model states and predicted next states; actions: (N, A).
    Returns:
        errors (N,) float64, NaN where excluded; clipped (N,) bool: a velocity at the clip, state not rebuilt;
        sim_nonfinite (N,) bool: the simulator returned a non-finite next state.
    Raises:
        DatasetError: wrong shapes (from the oracle).
    """
    step = oracle.step_from_obs(obs, actions)
    errors = np.linalg.norm(np.asarray(next_obs, np.float64) - step.next_obs, axis=1)
    clipped = ~step.reconstructible
    return errors, clipped, ~clipped & ~np.isfinite(errors)


def calibration_points(
    models: dict[str, DynamicsModel],
    dataset: TransitionDataset,
    policies: dict[str, Policy],
    oracle: MujocoOracle,
    num_starts: int,
    rollout_length: int,
    termination: TerminationFn | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Roll every model out with every policy and record (error, U) of each transition (module docstring).

    Returns:
        points: columns ``model, policy, start, step, error, quantifier, uncertainty``, one row per kept
            transition and quantifier; counts: columns ``model, policy, transitions, excluded_clipped,
            excluded_sim_nonfinite, used, rollout_nonfinite`` (samples the roll-out dropped as non-finite).
    Raises:
        ConfigError: a model without quantifier, or whose dims differ from the dataset's.
    """
    points, counts = [], []
    for label, model in models.items():
        check_data_dims(model, dataset.source, dataset.obs_dim, dataset.action_dim, label=f"'{label}'")
        device = next(model.parameters()).device
        windows = Windows(dataset, model.window_length, device)
        history = windows.history(windows.sample_rows(num_starts, torch.Generator().manual_seed(seed)))
        for name, policy in policies.items():
            with seeded(seed, device):  # the actor's samples and the dropout noise
                result, values = rollout_uncertainties(
                    model,
                    policy,
                    history,
                    rollout_length,
                    termination,
                    torch.Generator(device=device).manual_seed(seed),
                )
            errors, clipped, sim_nonfinite = true_errors(
                oracle, *(t.cpu().double().numpy() for t in (result.obs, result.actions, result.next_obs))
            )
            keep = ~clipped & ~sim_nonfinite
            counts.append(
                {
                    "model": label,
                    "policy": name,
                    "transitions": len(errors),
                    "excluded_clipped": int(clipped.sum()),
                    "excluded_sim_nonfinite": int(sim_nonfinite.sum()),
                    "used": int(keep.sum()),
                    "rollout_nonfinite": int(result.stats["rollout/num_nonfinite"]),
                }
            )
            base = {
                "model": label,
                "policy": name,
                "start": result.start_ids.cpu().numpy()[keep],
                "step": result.steps.cpu().numpy()[keep],
                "error": errors[keep],
            }
            points += [
                pd.DataFrame({**base, "quantifier": q, "uncertainty": u.cpu().double().numpy()[keep]})
                for q, u in values.items()
            ]
    return pd.concat(points, ignore_index=True), pd.DataFrame(counts)


def calibration_summary(points: pd.DataFrame, positive: str = "random", negative: str = "behaviour") -> pd.DataFrame:
    """Per model and quantifier: ``n`` points, Pearson r and Spearman ρ of (error, uncertainty) over all policies,
    and the AUROC of uncertainty for telling ``positive``-policy points (label 1) from ``negative`` ones.

    Returns:
        Columns ``model, quantifier, n, pearson, spearman, auroc``; a score is NaN where it is undefined
        (fewer than 2 points, a constant column, or one of the two policies absent).
    """
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    rows = []
    for (model, quantifier), group in points.groupby(["model", "quantifier"], sort=False):
        defined = len(group) >= 2 and group["error"].nunique() > 1 and group["uncertainty"].nunique() > 1
        pair = group[group["policy"].isin([positive, negative])]
        labels = pair["policy"] == positive
        rows.append(
            {
                "model": model,
                "quantifier": quantifier,
                "n": len(group),
                "pearson": stats.pearsonr(group["error"], group["uncertainty"])[0] if defined else np.nan,
                "spearman": stats.spearmanr(group["error"], group["uncertainty"])[0] if defined else np.nan,
                "auroc": roc_auc_score(labels, pair["uncertainty"]) if labels.nunique() == 2 else np.nan,
            }
        )
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame, decimals: int = 3) -> str:
    """A DataFrame as a Markdown table, floats rounded to ``decimals``."""
    cells = [
        [f"{v:.{decimals}f}" if isinstance(v, float) else str(v) for v in row] for row in frame.itertuples(index=False)
    ]
    return markdown_rows([list(frame.columns), *cells])


def write_calibration(
    points: pd.DataFrame,
    counts: pd.DataFrame,
    summary: pd.DataFrame,
    out_dir: str | Path,
    title: str,
    positive: str = "random",
    negative: str = "behaviour",
) -> list[Path]:
    """Write ``calibration.png`` (U vs error per model and quantifier, log-log, coloured by policy),
    ``calibration_points.csv`` (all points), ``calibration_summary.csv`` and ``calibration_summary.md``
    (scores and the per-policy counts of used and excluded transitions) into ``out_dir``."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.ticker import LogFormatter, LogLocator, NullFormatter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = points.assign(panel=points["model"] + ": " + points["quantifier"])
    order = list(dict.fromkeys(panels["panel"]))
    grid = sns.relplot(
        data=panels,
        x="error",
        y="uncertainty",
        hue="policy",
        col="panel",
        col_order=order,
        col_wrap=min(2, len(order)),
        kind="scatter",
        s=6,
        alpha=0.4,
        linewidth=0,
        height=3.2,
        facet_kws={"sharex": False, "sharey": False},
    )
    for row in summary.itertuples():
        ax = grid.axes_dict[f"{row.model}: {row.quantifier}"]
        ax.set(xscale="log", yscale="log", xlabel="model error ‖ŝ' − s'‖₂", ylabel="uncertainty U")
        for axis in (ax.xaxis, ax.yaxis):  # labels at 1, 2, 5 × 10^n: readable over short and long ranges
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(LogFormatter(labelOnlyBase=False))
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(
            f"{row.model}: {row.quantifier}\nr = {row.pearson:.2f}, ρ = {row.spearman:.2f}, AUROC = {row.auroc:.2f}",
            fontsize="small",
        )
    grid.tight_layout()
    grid.figure.suptitle(title, fontsize="medium", y=1.02)
    paths = [out_dir / name for name in (PNG_NAME, POINTS_CSV, SUMMARY_CSV, SUMMARY_MD)]
    grid.savefig(paths[0], dpi=120, bbox_inches="tight")
    plt.close(grid.figure)
    points.to_csv(paths[1], index=False)
    summary.to_csv(paths[2], index=False)
    paths[3].write_text(
        f"# Uncertainty vs model error: {title}\n\nPearson r and Spearman ρ of (model error, U) over the points of "
        f"all policies; AUROC of U for telling `{positive}` (positive) from `{negative}` roll-out samples.\n\n"
        f"{_markdown(summary)}\n\nTransitions per policy (clipped: a velocity at ±10, state not rebuilt; "
        f"sim_nonfinite: simulator returned NaN/inf; both excluded):\n\n{_markdown(counts)}\n"
    )
    return paths


# ---------------------------------------------------------------------------------------------- policies
def learned_actor(run_dir: str | Path, device: str | torch.device = "cpu") -> TanhGaussianActor:
    """The actor of an offline run folder (``runs.RunFolder.read_actor``).

    Raises:
        CheckpointError: missing/unreadable checkpoint or no actor weights in it (the message names the file).
    """
    return RunFolder(run_dir).read_actor(device)


def make_policy(
    source: str,
    dataset: TransitionDataset,
    env_id: str,
    device: str | torch.device = "cpu",
    seed: int = 0,
    bc_config: BCConfig = BCConfig(),
) -> Policy:
    """A roll-out policy ``(B, D) -> (B, A)`` from ``source``: ``random`` (uniform in the env's action box),
    ``bc`` (behaviour cloning on ``dataset``, ``analysis.bc``), a run folder (its learned actor) or an actor file
    (``TanhGaussianActor.file_state``, e.g. ``datasets/policies/hopper_medium.pt``). Actor policies sample.

    Raises:
        CheckpointError: the file or folder does not exist or holds no actor.
    """
    if source == "random":
        return random_policy(env_id, seed)
    if source == "bc":
        space = make_env(env_id).action_space
        return stochastic(fit_bc(dataset, space.low, space.high, bc_config, device))
    if Path(source).is_dir():
        return stochastic(learned_actor(source, device))
    return stochastic(load_actor(source, device))


def oracle_for(dataset: TransitionDataset, env_id: str, d4rl_model: bool = False) -> MujocoOracle:
    """The MuJoCo oracle whose observation matches the dataset's (root x included for NeoRL-style obs).

    Raises:
        ConfigError: unsupported env, or neither layout has the dataset's obs dim.
    """
    for include_x in (False, True):
        oracle = get_oracle(env_id, include_x=include_x, d4rl_model=d4rl_model)
        if oracle.obs_dim == dataset.obs_dim:
            return oracle
    raise ConfigError(f"{dataset.source}: obs dim {dataset.obs_dim} matches neither {env_id} observation layout")
