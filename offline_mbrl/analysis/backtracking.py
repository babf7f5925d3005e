"""Maximum-backtracking-length ablation (ADM paper Appendix E.2, Fig. 6).

The paper shows ADMPO-OFF's score for several m on hopper-medium and walker2d-medium ("not very sensitive").
This study adds what the model itself does with m, on one dataset:

* **Holdout error per k.** One ADM per m is fitted (``models.fit.fit``: all k per pass, the official
  any-k acceptance rule, patience 25, an optional epoch cap) with the same seed, so every m has the same
  holdout episodes; the kept snapshot's holdout MSE (mean over the D + 1 outputs) is reported per k = 1…m.
* **Compounding error per m.** Each fitted ADM is rolled out open-loop on the same holdout segments with
  random backtracking (``analysis.compounding``; the segments' history is the longest m, so all m start
  predicting at the same rows).
* **Scores per m** (optional). Final and last-10 normalized scores of ADMPO-OFF run folders trained with each
  m (``analysis.tables.seed_scores``: the last evaluation, and the mean of the last 10).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data.dataset import TransitionDataset
from ..errors import ConfigError
from ..models import build_model
from ..models.adm import ADM
from ..models.checkpoint import save_model
from ..models.fit import FitConfig, fit
from ..persist import seeded
from .compounding import compounding_error, evaluation_segments, plot_error_curves
from .runs_io import read_run
from .tables import seed_scores

_SCORE_COLUMNS = ["m", "run", "seed", "final", "last10", "unfinished"]
HOLDOUT_CSV, COMPOUNDING_CSV, SCORES_CSV, PNG_NAME = (
    "backtracking_holdout.csv",
    "backtracking_compounding.csv",
    "backtracking_scores.csv",
    "backtracking.png",
)


@dataclass(frozen=True)
class BacktrackingResult:
    """What ``backtracking_ablation`` measured.

    Attributes:
        models: the fitted ADM per m.
        holdout: columns ``m, k, holdout_mse``.
        compounding: ``compounding_error`` summary with ``model`` = ``m=<m>`` and an ``m`` column.
        scores: columns ``m, run, seed, final, last10, unfinished`` (empty without run folders).
    """

    models: dict[int, ADM]
    holdout: pd.DataFrame
    compounding: pd.DataFrame
    scores: pd.DataFrame


def check_max_backtracks(max_backtracks: list[int]) -> list[int]:
    """The distinct m values, sorted.

    Raises:
        ConfigError: empty, or an m below 1.
    """
    if not max_backtracks or min(max_backtracks) < 1:
        raise ConfigError(f"backtracking: every m must be >= 1, got {max_backtracks}")
    return sorted(set(max_backtracks))


def fit_per_m(
    dataset: TransitionDataset,
    max_backtracks: list[int],
    fit_config: FitConfig,
    model_fields: dict | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> tuple[dict[int, ADM], pd.DataFrame]:
    """Fit one ADM per m with ``fit_config`` (same seed, so the same holdout for every m).

    Args:
        model_fields: ``RecurrentConfig`` overrides (e.g. ``hidden_dim``) applied to every m.
    Returns:
        models per m, and the holdout errors: columns ``m, k, holdout_mse``.
    Raises:
        ConfigError: bad m or model fields. DatasetError: as ``fit``.
    """
    models, rows = {}, []
    for m in check_max_backtracks(max_backtracks):
        with seeded(fit_config.seed):  # the same initial weights for every m
            model = build_model("adm", dataset.obs_dim, dataset.action_dim, max_backtrack=m, **(model_fields or {}))
        result = fit(model.to(device), dataset, fit_config, progress=progress)
        models[m] = model
        rows.append(pd.DataFrame({"m": m, "k": np.arange(1, m + 1), "holdout_mse": result.holdout_errors}))
    return models, pd.concat(rows, ignore_index=True)


def run_scores(runs: list[tuple[int, str | Path]]) -> pd.DataFrame:
    """Final and last-10 scores of run folders given as (m, folder) pairs (several folders per m = seeds).

    Returns:
        Columns ``m, run, seed, final, last10, unfinished``.
    Raises:
        RunFolderError: as ``runs_io.read_run`` and ``tables.seed_scores``.
    """
    frames = []
    for m, path in runs:
        per_seed = seed_scores([read_run(path)])
        frames.append(per_seed.assign(m=m, run=str(path))[_SCORE_COLUMNS])
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_SCORE_COLUMNS)


def backtracking_ablation(
    dataset: TransitionDataset,
    max_backtracks: list[int],
    fit_config: FitConfig,
    model_fields: dict | None = None,
    horizon: int = 100,
    num_segments: int | None = None,
    runs: list[tuple[int, str | Path]] = (),
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> BacktrackingResult:
    """Fit ADM per m, measure holdout error per k and compounding error per m, read the runs' scores.

    Segments are drawn from the holdout of ``fit_config`` (seeded by ``fit_config.seed``).

    Raises:
        ConfigError, DatasetError, RunFolderError: as the steps above.
    """
    scores = run_scores(list(runs))  # read first: a bad folder fails before hours of fitting
    models, holdout = fit_per_m(dataset, max_backtracks, fit_config, model_fields, device, progress)
    segments = evaluation_segments(
        dataset,
        list(models.values()),
        horizon,
        "holdout",
        num_segments,
        fit_config.seed,
        fit_config.holdout_split,
        fit_config.seed,
    )
    labelled = {f"m={m}": model for m, model in models.items()}
    summary = compounding_error(labelled, dataset, segments, ("random",), fit_config.seed).summary
    summary.insert(1, "m", summary["model"].str.removeprefix("m=").astype(int))
    return BacktrackingResult(models, holdout, summary, scores)


def write_backtracking(result: BacktrackingResult, out_dir: str | Path, title: str) -> list[Path]:
    """Write ``backtracking.png`` (holdout MSE per k, compounding error per m and, with runs, final scores per
    m), the three CSVs and the fitted models (``models/adm-m<m>.pt``) into ``out_dir``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = 3 if len(result.scores) else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 4.0))
    holdout = result.holdout.assign(m=result.holdout["m"].map(lambda m: f"m={m}"))
    sns.lineplot(data=holdout, x="k", y="holdout_mse", hue="m", marker="o", ax=axes[0])
    axes[0].set(yscale="log", xlabel="backtrack k", ylabel="holdout MSE", title="holdout error per backtrack k")
    axes[0].set_xticks(sorted(result.holdout["k"].unique()))
    plot_error_curves(result.compounding, axes[1], ylabel="mean L2 error over segments")
    axes[1].set_title(f"compounding error, {result.compounding['n_segments'].iloc[0]} holdout segments")
    if panels == 3:
        scores = result.scores.assign(m=result.scores["m"].astype(str))
        order = [str(m) for m in sorted(result.scores["m"].unique())]
        sns.pointplot(data=scores, x="m", y="final", order=order, errorbar="sd", linestyle="none", ax=axes[2])
        sns.stripplot(data=scores, x="m", y="final", order=order, color="0.4", size=4, ax=axes[2])
        axes[2].set(xlabel="max backtrack m", ylabel="final score", title="ADMPO-OFF final score (mean ± sd)")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    paths = [out_dir / name for name in (PNG_NAME, HOLDOUT_CSV, COMPOUNDING_CSV, SCORES_CSV)]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)
    for path, frame in zip(paths[1:], (result.holdout, result.compounding, result.scores)):
        frame.to_csv(path, index=False)
    for m, model in result.models.items():
        paths.append(out_dir / "models" / f"adm-m{m}.pt")
        save_model(model, paths[-1])
    return paths
