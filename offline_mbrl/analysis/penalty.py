"""Penalty diagnostic: is a penalty coefficient β below, at or past the break-even point of a fitted model?

MOPO / ADMPO-OFF train on ``r̃ = r̂ − β·U`` (ADM paper Eq. 8, MOPO Eq. 3). On Hopper and Walker2d a roll-out ends
where the termination function fires, with no value after it; once the mean penalized reward of the states a
policy can reach falls to zero, falling early is as good as hopping, and SAC learns to fall. This study measures,
for one fitted model and every quantifier that applies to it (``model.quantifiers``), the distributions of
the predicted reward r̂, the uncertainty U and r̂ − βU on three sets of model transitions:

* ``dataset``: one model step from dataset start histories with the recorded action (the data's own pairs);
* ``behaviour``: H-step roll-outs under a behaviour-cloned policy of the dataset (``analysis.bc``);
* ``random``: H-step roll-outs under uniform random actions.

Each roll-out uses the model's own settings (``compounding.model_rollout``: ADM samples k per trajectory and
step with dropout as configured; the ensemble samples a random elite) and the task's termination function, and
U comes from the very predictions the transition was sampled from (``calibration.rollout_uncertainties``).

**Break-even** β* = mean(r̂) / mean(U) over the behaviour roll-outs (``uncertainty.break_even_coef``): the β at
which their mean penalized reward is 0. **Rule for our collected datasets**: β = min(β_published, ``RULE_FRACTION``
· β*), the algorithm's published β for the task (its D4RL config) capped at half the break-even, rounded to two
significant digits; without a published β, half the break-even. It uses only the data, the fitted model and the
paper's setting, never returns.
**Dimensions**: per observation dimension, the share of the epistemic spread ``Var_c μ_c,d`` and of the mean
predicted variance ``σ_d²`` (reward last), i.e. which dimensions carry the uncertainty
(``uncertainty.dimension_spread``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data.dataset import TransitionDataset
from ..data.windows import Windows
from ..envs.gym_env import Policy
from ..envs.termination import TerminationFn
from ..errors import ConfigError
from ..models.base import DynamicsModel, Stepper, StepperWrapper, check_data_dims
from ..persist import seeded
from ..uncertainty import break_even_coef, dimension_spread
from .calibration import quantifiers_for, rollout_uncertainties
from .tables import markdown_rows

SOURCES = ("dataset", "behaviour", "random")
RULE_FRACTION = 0.5
PNG_NAME, POINTS_CSV, SUMMARY_CSV, DIMENSIONS_CSV, SUMMARY_MD = (
    "penalty.png",
    "penalty_points.csv",
    "penalty_summary.csv",
    "penalty_dimensions.csv",
    "penalty_summary.md",
)


def rule_penalty_coef(break_even: float, published: float | None = None, fraction: float = RULE_FRACTION) -> float:
    """The β rule of the collected-dataset configs: ``fraction · β*`` rounded to two significant digits, capped
    by the algorithm's published β for the task when given: ``min(published, fraction · β*)``. So the paper's β
    stands wherever it is safely below break-even, and the cap applies only where the paper's β would make the
    behaviour's roll-outs worthless. This project's rule (module docstring) for the β of r̃ = r̂ − β·U (ADM Eq. 8,
    MOPO Eq. 3).

    Args:
        break_even: β* of the behaviour roll-outs (:func:`uncertainty.break_even_coef`), reward units per unit of U.
        published: the algorithm's published β for the task, or None.
        fraction: the share of β* the rule keeps, in (0, 1].

    Returns:
        The rule β (same units as ``break_even``).
    Raises:
        ConfigError: β* is not a positive finite number (the model predicts no positive mean reward, or no U),
            ``published`` is not a finite number >= 0, or ``fraction`` is not in (0, 1].
    """
    if not (math.isfinite(break_even) and break_even > 0):
        raise ConfigError(f"penalty rule: break-even β must be positive and finite, got {break_even}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"penalty rule: the fraction of β* must be in (0, 1], got {fraction}")
    if published is not None and not (math.isfinite(published) and published >= 0):
        raise ConfigError(f"penalty rule: the published β must be a finite number >= 0, got {published}")
    cap = float(f"{fraction * break_even:.2g}")
    return cap if published is None else min(published, cap)


@dataclass(frozen=True)
class PenaltyStudy:
    """Outcome of :func:`penalty_study`.

    Attributes:
        points: one row per transition and quantifier: ``source, start`` (index of the start history in [0, B)),
            ``step`` (h in [0, H)), ``reward`` (r̂), ``quantifier, uncertainty`` (U).
        summary: one row per source and quantifier: ``transitions``, ``reward_mean`` and ``uncertainty_mean``
            (means of r̂ and U), ``uncertainty_p90`` (90th percentile of U), ``break_even_coef`` (β* of that
            source), ``published_coef`` and ``rule_penalty_coef`` (behaviour rows only; NaN elsewhere and where
            undefined), ``penalty_coef`` (β used for the penalized columns), ``penalized_mean`` (mean r̂ − βU),
            ``penalized_negative_fraction`` (share of transitions with r̂ − βU < 0).
        dimensions: one row per source and dimension: ``dimension`` (``obs[i]`` or ``reward``), ``epistemic`` and
            ``aleatoric`` (means over transitions) and their shares of the total (per source, in [0, 1]).
    """

    points: pd.DataFrame
    summary: pd.DataFrame
    dimensions: pd.DataFrame


class _DimensionRecorder(StepperWrapper):
    """Wraps a roll-out stepper and sums ``dimension_spread`` over the finite rows of every step: ``epistemic``
    (D,) and ``aleatoric`` (D + 1,) float64 on the model's device, ``rows`` the count of finite rows."""

    def __init__(self, stepper: Stepper) -> None:
        super().__init__(stepper)
        self.epistemic, self.aleatoric, self.rows = 0.0, 0.0, 0

    def predict(self, obs: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        mean, logvar, available = super().predict(obs, action)
        epistemic, aleatoric = dimension_spread(mean, logvar, available)  # (b, D), (b, D + 1)
        finite = torch.isfinite(epistemic).all(dim=1) & torch.isfinite(aleatoric).all(dim=1)
        self.epistemic = self.epistemic + epistemic[finite].double().sum(dim=0)
        self.aleatoric = self.aleatoric + aleatoric[finite].double().sum(dim=0)
        self.rows += int(finite.sum())
        return mean, logvar, available


def penalty_study(
    model: DynamicsModel,
    dataset: TransitionDataset,
    policies: dict[str, Policy],
    num_starts: int,
    rollout_length: int,
    termination: TerminationFn | None,
    penalty_coef: float | None = None,
    quantifiers: tuple[str, ...] | None = None,
    seed: int = 0,
    published_coefs: dict[str, float] | None = None,
) -> PenaltyStudy:
    """Measure r̂, U and r̂ − βU of ``model`` on dataset pairs and on roll-outs of ``policies`` (module docstring).

    Args:
        model: a fitted ADM or ensemble (``models.checkpoint.load_model``).
        dataset: the data the model was fitted on; its obs/action dims must match the model's.
        policies: ``{"behaviour": bc policy, "random": uniform policy}`` (``calibration.make_policy``), each
            ``(B, D) -> (B, A)``; a name outside ``SOURCES`` is allowed and reported as its own source, but not
            ``"dataset"`` (the recorded actions' source).
        num_starts: B, start histories drawn (seeded) from the dataset; the same rows for every source.
        rollout_length: H of the policy roll-outs (the dataset source always takes one step).
        termination: ``termination_fn(task)`` or None.
        penalty_coef: β of the penalized columns; None: the rule β (``rule_penalty_coef``) of each quantifier.
        quantifiers: names to measure (default: all that apply to the model).
        seed: seeds the start rows, the roll-out noise, the policies' samples and dropout (scoped).
        published_coefs: quantifier -> the algorithm's published β for the task (e.g. ``{"adm_std": 1.0}`` from
            the D4RL config); the rule β of that quantifier is then ``min(published, ½ β*)``.

    Returns:
        The :class:`PenaltyStudy` (β* as in ``uncertainty.break_even_coef``; r̂ − βU is ADM Eq. 8 / MOPO Eq. 3).
    Raises:
        ConfigError: the model has no quantifier, dims differ from the dataset's, a quantifier does not apply to
            the model or is listed twice, β (or a published β, or its quantifier) is negative, not finite or
            unknown, a policy is named ``dataset``, no ``behaviour`` policy is given with ``penalty_coef=None``,
            or ``num_starts``/``rollout_length`` < 1.
    """
    applicable = quantifiers_for(model)
    quantifiers = tuple(quantifiers or applicable)
    unknown = sorted(set(quantifiers) - set(applicable))
    if unknown:
        raise ConfigError(f"penalty: quantifier(s) {unknown} do not apply to a '{model.kind}' model; use {applicable}")
    if len(set(quantifiers)) != len(quantifiers):
        raise ConfigError(f"penalty: a quantifier is listed twice in {quantifiers}")
    if penalty_coef is not None and not (math.isfinite(penalty_coef) and penalty_coef >= 0):
        raise ConfigError(f"penalty: --penalty-coef must be a finite number >= 0, got {penalty_coef}")
    published_coefs = dict(published_coefs or {})
    for name, value in published_coefs.items():
        if name not in quantifiers or not (math.isfinite(value) and value >= 0):
            raise ConfigError(
                f"penalty: --published-coef {name}={value}: needs a measured quantifier ({quantifiers}) and a "
                "finite β >= 0"
            )
    if "dataset" in policies:
        raise ConfigError("penalty: a policy may not be named 'dataset' (the source of the recorded actions)")
    if penalty_coef is None and "behaviour" not in policies:
        raise ConfigError("penalty: the rule β needs a 'behaviour' policy (or pass penalty_coef)")
    check_data_dims(model, dataset.source, dataset.obs_dim, dataset.action_dim)
    if num_starts < 1 or rollout_length < 1:
        raise ConfigError(f"penalty: starts and horizon must be >= 1, got {num_starts} and {rollout_length}")
    device = next(model.parameters()).device
    windows = Windows(dataset, model.window_length, device)
    rows = windows.sample_rows(num_starts, torch.Generator().manual_seed(seed))
    history = windows.history(rows)
    runs = {
        "dataset": (windows.actions[rows][:, None], 1),
        **{name: (p, rollout_length) for name, p in policies.items()},
    }
    points, dimensions = [], []
    for source, (policy, horizon) in runs.items():
        recorders: list[_DimensionRecorder] = []

        def observe(stepper: Stepper) -> Stepper:
            recorders.append(_DimensionRecorder(stepper))
            return recorders[-1]

        with seeded(seed, device):
            result, values = rollout_uncertainties(
                model, policy, history, horizon, termination, torch.Generator(device=device).manual_seed(seed), observe
            )
        base = {
            "source": source,
            "start": result.start_ids.cpu().numpy(),
            "step": result.steps.cpu().numpy(),
            "reward": result.rewards.cpu().double().numpy(),
        }
        points += [
            pd.DataFrame({**base, "quantifier": q, "uncertainty": values[q].cpu().double().numpy()})
            for q in quantifiers
        ]
        dimensions.append(_dimension_frame(source, recorders[0], dataset.obs_dim))
    points = pd.concat(points, ignore_index=True)
    return PenaltyStudy(
        points, _summary(points, penalty_coef, published_coefs), pd.concat(dimensions, ignore_index=True)
    )


def _dimension_frame(source: str, recorder: _DimensionRecorder, obs_dim: int) -> pd.DataFrame:
    """Per-dimension mean epistemic / aleatoric spread of one source and their shares (D + 1 rows, reward last)."""
    rows = max(recorder.rows, 1)
    epistemic, aleatoric = (
        torch.as_tensor(total, dtype=torch.float64).cpu().numpy().reshape(-1) / rows  # sums may sit on a GPU
        for total in (recorder.epistemic, recorder.aleatoric)
    )
    epistemic = np.append(epistemic, np.nan)  # no reward term
    names = [f"obs[{i}]" for i in range(obs_dim)] + ["reward"]
    return pd.DataFrame(
        {
            "source": source,
            "dimension": names,
            "epistemic": epistemic,
            "aleatoric": aleatoric,
            "epistemic_share": epistemic / np.nansum(epistemic),
            "aleatoric_share": aleatoric / aleatoric.sum(),
        }
    )


def _rule_or_nan(break_even: float, published: float | None) -> float:
    """The rule β, or NaN where it is undefined (β* not positive and finite: the model predicts no positive mean
    reward, or no uncertainty)."""
    return rule_penalty_coef(break_even, published) if math.isfinite(break_even) and break_even > 0 else float("nan")


def _penalty_coefs(summary: pd.DataFrame) -> pd.Series:
    """quantifier -> β of the penalized columns (the summary's ``penalty_coef``; the same for every source)."""
    return summary.drop_duplicates("quantifier").set_index("quantifier")["penalty_coef"]


def _penalized(points: pd.DataFrame, coefs: pd.Series) -> pd.Series:
    """r̂ − β·U of every point (ADM Eq. 8), β = ``coefs`` of the point's quantifier."""
    return points["reward"] - points["quantifier"].map(coefs) * points["uncertainty"]


def _summary(points: pd.DataFrame, penalty_coef: float | None, published: dict[str, float]) -> pd.DataFrame:
    """Per (source, quantifier) statistics; β of the penalized columns is ``penalty_coef`` or the behaviour rule."""
    rows = []
    for (source, quantifier), group in points.groupby(["source", "quantifier"], sort=False):
        rewards, penalties = (torch.from_numpy(group[c].to_numpy(copy=True)) for c in ("reward", "uncertainty"))
        rows.append(
            {
                "source": source,
                "quantifier": quantifier,
                "transitions": len(group),
                "reward_mean": float(rewards.mean()),
                "uncertainty_mean": float(penalties.mean()),
                "uncertainty_p90": float(np.quantile(group["uncertainty"], 0.9)),
                "break_even_coef": break_even_coef(rewards, penalties),
            }
        )
    summary = pd.DataFrame(rows)
    behaviour = summary[summary["source"] == "behaviour"].set_index("quantifier")["break_even_coef"]
    rule = {q: _rule_or_nan(b, published.get(q)) for q, b in behaviour.items()}
    is_behaviour = summary["source"] == "behaviour"
    summary["published_coef"] = np.where(is_behaviour, summary["quantifier"].map(published).astype(float), np.nan)
    summary["rule_penalty_coef"] = np.where(is_behaviour, summary["quantifier"].map(rule).astype(float), np.nan)
    summary["penalty_coef"] = penalty_coef if penalty_coef is not None else summary["quantifier"].map(rule)
    penalized = _penalized(points, _penalty_coefs(summary))
    by, keys = [points["source"], points["quantifier"]], pd.MultiIndex.from_frame(summary[["source", "quantifier"]])
    summary["penalized_mean"] = penalized.groupby(by, sort=False).mean().reindex(keys).to_numpy()
    negative = (penalized < 0).groupby(by, sort=False).mean().reindex(keys).to_numpy()
    summary["penalized_negative_fraction"] = np.where(summary["penalty_coef"].notna(), negative, np.nan)  # β undefined
    return summary


def format_summary(study: PenaltyStudy, top: int = 3) -> str:
    """Terminal summary: one line per source and quantifier with the means, β* and the penalized mean, then the
    ``top`` dimensions that carry most of the uncertainty under the behaviour policy and on the dataset pairs,
    then the rule β per quantifier."""
    lines = []
    for row in study.summary.itertuples():
        lines.append(
            f"{row.quantifier:>13} {row.source:>9}: r̂ {row.reward_mean:7.3f}  U {row.uncertainty_mean:8.4f}  "
            f"β* {row.break_even_coef:8.3f}  mean r̂−βU {row.penalized_mean:7.3f} at β {row.penalty_coef:g} "
            f"({100 * row.penalized_negative_fraction:.0f} % < 0)"
        )
    for source in ("behaviour", "dataset"):
        dims = study.dimensions[study.dimensions["source"] == source]
        if len(dims):
            for column in ("epistemic_share", "aleatoric_share"):
                best = dims.nlargest(top, column)
                lines.append(
                    f"{source} {column.split('_')[0]} spread: "
                    + ", ".join(f"{d} {100 * v:.0f} %" for d, v in zip(best["dimension"], best[column]))
                )
    rule = study.summary[study.summary["source"] == "behaviour"]
    lines += [
        f"rule β = {_rule_text(p)} for {q}: "
        + (f"{b:g}" if math.isfinite(b) else "undefined (β* not positive and finite: no positive mean reward, or no U)")
        for q, b, p in zip(rule["quantifier"], rule["rule_penalty_coef"], rule["published_coef"])
    ]
    return "\n".join(lines)


def _rule_text(published: float) -> str:
    """The rule's formula for a published β (NaN: none)."""
    half = f"{RULE_FRACTION} · β*(behaviour)"
    return half if math.isnan(published) else f"min(published {published:g}, {half})"


def write_penalty(study: PenaltyStudy, out_dir: str | Path, title: str) -> list[Path]:
    """Write ``penalty.png`` (per quantifier: histograms of r̂, U and r̂ − βU by source, and the per-dimension
    shares under the behaviour policy), the points, summary and dimension CSVs and a Markdown summary into
    ``out_dir`` (created if missing); returns the paths."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    beta = _penalty_coefs(study.summary)
    points = study.points.assign(penalized=_penalized(study.points, beta))
    quantifiers = list(dict.fromkeys(points["quantifier"]))
    fig, axes = plt.subplots(len(quantifiers), 4, figsize=(17, 3.4 * len(quantifiers)), squeeze=False)
    for row, quantifier in zip(axes, quantifiers):
        data = points[points["quantifier"] == quantifier]
        for ax, column, label in zip(
            row,
            ("reward", "uncertainty", "penalized"),
            ("predicted reward r̂", f"U ({quantifier})", f"r̂ − βU, β = {beta[quantifier]:g}"),
        ):
            sns.histplot(
                data=data,
                x=column,
                hue="source",
                stat="density",
                common_norm=False,
                element="step",
                fill=False,
                bins=60,
                ax=ax,
            )
            ax.set(xlabel=label, ylabel="density")
        row[2].axvline(0.0, color="black", linestyle="--", linewidth=1)
        be = study.summary[(study.summary["quantifier"] == quantifier) & (study.summary["source"] == "behaviour")]
        if len(be):
            row[1].set_title(f"break-even β* (behaviour) = {be['break_even_coef'].iloc[0]:.3g}", fontsize="small")
        dims = study.dimensions[study.dimensions["source"] == "behaviour"].melt(
            id_vars="dimension",
            value_vars=["epistemic_share", "aleatoric_share"],
            var_name="spread",
            value_name="share",
        )
        sns.barplot(data=dims, x="dimension", y="share", hue="spread", ax=row[3])
        row[3].tick_params(axis="x", rotation=90)
        row[3].set(xlabel="", ylabel="share of the spread (behaviour roll-outs)")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    paths = [out_dir / name for name in (PNG_NAME, POINTS_CSV, SUMMARY_CSV, DIMENSIONS_CSV, SUMMARY_MD)]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    plt.close(fig)
    study.points.to_csv(paths[1], index=False)
    study.summary.to_csv(paths[2], index=False)
    study.dimensions.to_csv(paths[3], index=False)
    columns = [
        "source",
        "quantifier",
        "transitions",
        "reward_mean",
        "uncertainty_mean",
        "break_even_coef",
        "penalty_coef",
        "penalized_mean",
        "penalized_negative_fraction",
        "rule_penalty_coef",
    ]
    table = markdown_rows(
        [columns, *([_cell(v) for v in row] for row in study.summary[columns].itertuples(index=False))]
    )
    paths[4].write_text(f"# Penalty diagnostic: {title}\n\n{table}\n")
    return paths


def _cell(value: object) -> str:
    """A Markdown table cell: floats with 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
