"""Fitting a dynamics model: holdout split, training epochs, model selection / early stopping, sample weights.

One ``fit`` for all three models. What differs is declared by the model:

* ``window_length``: m for ADM (all k per pass, Eq. 2) and the bootstrapping RNN, 1 for the ensemble.
* ``selection``: ``"any_step"`` (official ADMPO ``learn_dynamics_from``, REFERENCE-algorithms 2.3): after each
  epoch the per-k holdout MSE is computed; the epoch is accepted (whole-model snapshot) only if some k
  improves **and** the mean over k drops; stop after ``patience`` (25) epochs without acceptance.
  ``"per_member"`` (MBPO / OfflineRL-Kit, section 1.1): member i keeps its own best weights when its holdout
  MSE improves by more than ``min_improvement`` (1 %); stop after ``patience`` (5) epochs in which no member
  improved; the members with the lowest holdout MSE become elites.
* batches: ADM and the RNN draw B windows with replacement per step, ``N_train // B`` steps per epoch
  (the same number of (window, k) samples as the official m·N/B one-k steps); the ensemble draws one
  bootstrap of the training rows per member at the start and reshuffles it every epoch.

``sample_weights`` (N,) are used by **resampling** (TOM Alg. 2 line 15; REFERENCE-algorithms 3.2): start rows
and bootstraps are drawn with probability ∝ weight, the loss itself is unweighted, and the holdout MSE is
the weight-averaged error (TOM weights its holdout loss). Inputs are normalized with statistics of the
whole dataset, holdout included (official ADMPO ``cal_mu_std``). Holdout errors are computed in eval
mode (no dropout) over the whole holdout set by default; ``FitConfig.validation_batch = 256`` uses the official
code's one dropout-on batch of 256 windows per channel instead (``sample_errors``), whose noise is what stops an
official ADM fit under the any-improvement rule.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.dataset import TransitionDataset
from ..data.windows import Windows, check_sample_weights
from ..errors import CheckpointError, ConfigError, DatasetError
from ..model_configs import FitConfig
from ..persist import load_checkpoint, rng_state, save_atomic, seeded, set_rng_state
from .base import DynamicsModel

_HOLDOUT_SPLITS = ("episodes", "last")
#: what a fit checkpoint holds about the fit itself (kept with a saved model by ``model fit``)
FIT_RECORD_KEYS = ("fingerprint", "history", "selection_best", "epochs_since_update")


@dataclass
class FitResult:
    """Outcome of ``fit``.

    Fields:
        holdout_errors: (C,) holdout MSE of the kept weights per channel (k for ADM / history length for the
            RNN / member for the ensemble), averaged over the D + 1 output dims.
        epochs: epochs run; best_epoch: last epoch whose snapshot was kept (any member, for the ensemble).
        num_train, num_holdout: rows in each split.
        history: per epoch ``{"epoch", "train_loss", "holdout_mse", "accepted"}`` (holdout_mse: mean over channels).
        elites: the channels roll-outs sample from when the selection keeps a subset (``per_member``: the
            ensemble's elites); empty when roll-outs use every channel.
    """

    holdout_errors: np.ndarray
    epochs: int
    best_epoch: int
    num_train: int
    num_holdout: int
    history: list[dict[str, float]] = field(default_factory=list)
    elites: tuple[int, ...] = ()


@dataclass(frozen=True)
class FitProgress:
    """Where a stopped or running fit stands, read from its checkpoint (``fit(checkpoint=…)``; ``model fit --out X``
    writes ``X.partial`` after every epoch), or how a finished one went, read from the model it saved (``model fit``
    keeps the fit's record in ``X``).

    Fields:
        path: the checkpoint or model file; saved: True for a saved model (the fit has ended).
        kind: the model kind; dataset: the dataset's source; rows: its number of rows.
        patience: epochs without a kept snapshot that stop the fit; min_improvement: the relative holdout
            improvement a channel needs (0 for ADM's any-step rule, 0.01 for the ensemble's 1 % rule).
        epochs: epochs done; best_epoch: the last epoch whose snapshot was kept (0 if none).
        epochs_since_update: epochs since ``best_epoch`` (the fit stops when it reaches ``patience``).
        holdout_mse: the selection's record, the mean over channels of the kept holdout MSE (per channel, the
            best so far for the ensemble); last_holdout_mse: the last epoch's holdout MSE (mean over channels).
        trend: the holdout MSE's relative change per epoch over the last ``window`` epochs (the slope of a
            least-squares line through log MSE: −0.007 is 0.7 % lower per epoch); NaN with fewer than 2 epochs.
    """

    path: str
    saved: bool
    kind: str
    dataset: str
    rows: int
    patience: int
    min_improvement: float
    epochs: int
    best_epoch: int
    epochs_since_update: int
    holdout_mse: float
    last_holdout_mse: float
    trend: float


def fit_record(checkpoint: str | Path) -> dict:
    """The record of the fit whose checkpoint is ``checkpoint``: its ``FIT_RECORD_KEYS`` (settings and dataset as
    the fingerprint, per-epoch history, per-channel selection record, epochs since the kept one); ``model fit``
    saves it with the model (``save_model(fit_record=…)``).

    Raises:
        CheckpointError: a missing or unreadable file, or a checkpoint that is not a fit's (names the missing keys).
    """
    return _record(load_checkpoint(checkpoint), checkpoint)


def _record(payload: dict, path: str | Path) -> dict:
    """``payload``'s ``FIT_RECORD_KEYS``; CheckpointError names the missing ones."""
    missing = [key for key in FIT_RECORD_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a fit checkpoint (no {', '.join(missing)})")
    return {key: payload[key] for key in FIT_RECORD_KEYS}


def fit_progress(path: str | Path, window: int = 30) -> FitProgress:
    """Read a fit checkpoint (``fit(checkpoint=path)``), or a model saved with its fit's record, without loading a
    model; see ``FitProgress``.

    Raises:
        CheckpointError: a missing or unreadable file, or a file that holds no fit record (names the missing keys).
        ConfigError: ``window`` < 2 (a ``ValueError``).
    """
    if window < 2:
        raise ConfigError(f"fit_progress: window must be >= 2 epochs, got {window}")
    payload = load_checkpoint(path)
    saved = isinstance(payload, dict) and "state_dict" in payload
    if saved and "fit" not in payload:
        raise CheckpointError(
            f"{path}: a saved model without its fit's record (saved by an older version, or not by `model fit`)"
        )
    record = _record(payload["fit"] if saved else payload, path)
    fingerprint, history = record["fingerprint"], record["history"]
    accepted = [entry["epoch"] for entry in history if entry["accepted"]]
    mse = np.array([entry["holdout_mse"] for entry in history[-window:]], dtype=float)
    trend = float(np.expm1(np.polyfit(np.arange(len(mse)), np.log(mse), 1)[0])) if len(mse) >= 2 else float("nan")
    return FitProgress(
        path=str(path),
        saved=saved,
        kind=fingerprint["model"]["kind"],
        dataset=fingerprint["dataset"],
        rows=int(fingerprint["rows"]),
        patience=int(fingerprint["fit"]["patience"]),
        min_improvement=float(fingerprint["fit"]["min_improvement"]),
        epochs=len(history),
        best_epoch=accepted[-1] if accepted else 0,
        epochs_since_update=int(record["epochs_since_update"]),
        holdout_mse=float(np.mean(record["selection_best"].numpy())),
        last_holdout_mse=float(mse[-1]) if len(mse) else float("nan"),
        trend=trend,
    )


def split_holdout(dataset: TransitionDataset, config: FitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Train and holdout row indices (sorted int64 arrays) as ``config`` says.

    ``"episodes"`` takes whole episodes in a random order (seeded by ``config.seed``) until the holdout holds at
    least ``min(int(fraction · N), max_holdout)`` rows; ``"last"`` takes exactly that many last rows.

    Raises:
        DatasetError: the dataset is too small for a holdout, or the holdout would leave no training rows.
    """
    n = len(dataset)
    size = min(int(config.holdout_fraction * n), config.max_holdout)
    if size < 1:
        raise DatasetError(
            f"{dataset.source}: {n} rows are too few for a holdout of fraction {config.holdout_fraction}"
        )
    rows = np.arange(n)
    if config.holdout_split == "last":
        held = rows >= n - size
    else:
        order = np.random.default_rng(config.seed).permutation(dataset.num_episodes)
        count = int(np.searchsorted(np.cumsum(dataset.episode_lengths()[order]), size)) + 1
        held = np.isin(dataset.episode_ids, order[:count])
    if held.all():
        raise DatasetError(
            f"{dataset.source}: the holdout ({config.holdout_split}) would take every row; "
            "the dataset needs more episodes"
        )
    return rows[~held], rows[held]


@torch.no_grad()
def evaluate_errors(model: nn.Module, windows: Windows, batch_size: int = 4096) -> Tensor:
    """Per-channel MSE (C,) of the model's mean over all windows of ``windows`` (eval mode; weighted by
    ``windows.sample_weights`` when set).

    Raises:
        DatasetError: some channel has no valid window (e.g. every holdout episode is shorter than m).
    """
    model.eval()
    total = count = 0.0
    for start in range(0, len(windows), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(windows)), device=windows.device)
        errors, valid = model.prediction_errors(windows.gather(rows))  # (b, C) each
        weight = valid.to(errors.dtype)
        if windows.sample_weights is not None:
            weight = weight * windows.sample_weights[rows, None].to(errors.dtype)
        total = total + (errors * weight).sum(dim=0)
        count = count + weight.sum(dim=0)
    if (count == 0).any():
        missing = (torch.nonzero(count == 0).squeeze(1) + 1).tolist()
        raise DatasetError(
            f"{windows.source}: no holdout window (with positive weight) is valid for channels {missing}; "
            "use a larger holdout or a smaller max_backtrack"
        )
    return total / count


@torch.no_grad()
def sample_errors(model: nn.Module, windows: Windows, batch_size: int, generator: torch.Generator) -> Tensor:
    """Per-channel MSE (C,) of the model's mean on one batch of ``batch_size`` windows per channel, drawn by
    ``windows.sample_rows`` (∝ ``sample_weights`` when set), with the model in train mode (dropout on): the
    official ADMPO validation (``learn_dynamics_from``: one batch of 256 windows per k; REFERENCE-algorithms
    §2.3). Windows too short for a channel (near an episode end) are left out of its mean; a batch without a
    valid window for its channel is drawn again.

    Args:
        model: a dynamics model with ``prediction_errors`` (C channels: k = 1..m for ADM, members for the ensemble).
        windows: the holdout windows; each draw gathers a ``WindowBatch`` of B = ``batch_size`` windows of M steps
            (obs0 (B, obs_dim), actions (B, M, action_dim), next_obs (B, M, obs_dim), rewards (B, M), mask (B, M)).
        batch_size: B, windows per channel (the official 256).
        generator: the torch generator the rows are drawn with (the fit's own, so a resumed fit draws alike).

    Returns:
        (C,) tensor: channel c's MSE over its valid windows of its own batch (normalized-target units, as
        ``evaluate_errors``).

    Raises:
        DatasetError: a channel found no valid window in 100 batches (e.g. every holdout episode is shorter
            than m; ``evaluate_errors`` names such channels for certain).
    """
    model.train()
    means: list[Tensor] = []
    failed = 0
    while True:
        errors, valid = model.prediction_errors(windows.gather(windows.sample_rows(batch_size, generator)))
        channel = len(means)
        count = valid[:, channel].sum()
        if count > 0:
            means.append((errors[:, channel] * valid[:, channel]).sum() / count)
            failed = 0
        elif (failed := failed + 1) == 100:
            raise DatasetError(
                f"{windows.source}: no valid holdout window for channel {channel + 1} in 100 batches of "
                f"{batch_size}; use a larger holdout, a larger validation batch or a smaller max_backtrack"
            )
        if len(means) == errors.shape[1]:
            return torch.stack(means)


class _Selection:
    """Holdout bookkeeping for the two official selection rules (module docstring)."""

    def __init__(self, rule: str, channels: int, min_improvement: float) -> None:
        self.rule, self.min_improvement = rule, min_improvement
        self.best = np.full(channels, np.inf)
        self.epochs_since_update = 0

    def update(self, errors: np.ndarray) -> np.ndarray:
        """Record this epoch's errors (C,); return the (C,) bool channels whose weights become the snapshot."""
        improved = errors < self.best * (1.0 - self.min_improvement)
        if self.rule == "any_step":
            improved = np.full_like(improved, improved.any() and errors.mean() < self.best.mean())
        self.best = np.where(improved, errors, self.best)
        self.epochs_since_update = 0 if improved.any() else self.epochs_since_update + 1
        return improved


def _keep_snapshot(model: nn.Module, best_state: dict[str, Tensor], improved: np.ndarray) -> None:
    """Copy the improved channels' current weights into ``best_state`` (whole model, or per member)."""
    members = torch.as_tensor(improved, device=next(model.parameters()).device)
    per_member = set(getattr(model, "member_parameter_names", ()))
    for name, value in model.state_dict().items():
        if name in per_member:
            best_state[name][members] = value[members]
        else:
            best_state[name].copy_(value)


def _epoch_rows(
    train: Windows, bootstrap: Tensor | None, batch_size: int, generator: torch.Generator
) -> Iterator[Tensor]:
    """Start rows of each gradient step of one epoch: (B,) with replacement, or (E·B,) member-major from a
    reshuffled per-member bootstrap (E, N_train)."""
    if bootstrap is None:
        for _ in range(max(1, len(train) // batch_size)):
            yield train.sample_rows(batch_size, generator)
        return
    order = torch.argsort(torch.rand(bootstrap.shape, generator=generator), dim=1).to(bootstrap.device)
    shuffled = bootstrap.gather(1, order)  # (E, N_train)
    for start in range(0, shuffled.shape[1], batch_size):
        yield shuffled[:, start : start + batch_size].reshape(-1)


def fit(
    model: DynamicsModel,
    dataset: TransitionDataset,
    config: FitConfig | None = None,
    sample_weights: np.ndarray | Tensor | None = None,
    progress: bool = False,
    checkpoint: str | Path | None = None,
    initial: str | None = None,
) -> FitResult:
    """Train ``model`` (ADM, BootRNN or ProbabilisticEnsemble) on ``dataset`` and keep the selected weights.

    Args:
        model: a fresh model on its target device (sets its normalization statistics from ``dataset``).
        dataset: transitions; windows never cross its episode ends.
        config: ``FitConfig`` (default ``FitConfig.for_model(model)``).
        sample_weights: optional (N,) non-negative per-transition weights (resampling, module docstring).
        progress: show a tqdm bar with train loss and holdout MSE.
        checkpoint: optional file written atomically after every epoch (weights, snapshot, optimizer, selection,
            history, random states). If it exists, the fit resumes from it and ends exactly as an uninterrupted
            fit would; ``max_epochs`` may differ from the stopped fit's. The caller removes it when done.
        initial: where ``model``'s weights come from when it is not fresh (a warm start, e.g. the path of a saved
            model). The checkpoint's fingerprint, and so the fit's record, then holds this label and the SHA-1 of
            the initial weights, and a stopped fit resumes only from the same start.

    Returns:
        ``FitResult``; the model holds the snapshot weights (and, for the ensemble, its elites) in eval mode.

    Raises:
        DatasetError: dataset too small for the holdout, bad ``sample_weights``, or a k with no holdout window.
        CheckpointError: ``checkpoint`` was written by a fit of another model, dataset or config (names the keys).
    """
    config = config or FitConfig.for_model(model)
    with seeded(config.seed, next(model.parameters()).device):  # dropout; the caller's random stream is kept
        return _fit(model, dataset, config, sample_weights, progress, checkpoint, initial)


def _fit(
    model: DynamicsModel,
    dataset: TransitionDataset,
    config: FitConfig,
    sample_weights: np.ndarray | Tensor | None,
    progress: bool,
    checkpoint: str | Path | None,
    initial: str | None,
) -> FitResult:
    """``fit`` in its seeded scope."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(config.seed)
    if sample_weights is not None:
        sample_weights = check_sample_weights(sample_weights, len(dataset), dataset.source)
    train_rows, holdout_rows = split_holdout(dataset, config)
    model.normalizer.set_stats(dataset.normalization_stats())
    train, holdout = (
        Windows(
            dataset.subset(rows), model.window_length, device, None if sample_weights is None else sample_weights[rows]
        )
        for rows in (train_rows, holdout_rows)
    )

    bootstrap = None
    if model.selection == "per_member":
        size = model.config.ensemble_size
        bootstrap = train.sample_rows(size * len(train), generator).view(size, len(train))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    state = _FitState(
        copy.deepcopy(model.state_dict()),
        [],
        _Selection(
            model.selection, len(evaluate_errors(model, holdout, config.eval_batch_size)), config.min_improvement
        ),
    )
    fingerprint = _fingerprint(model, dataset, config, sample_weights, initial)
    if checkpoint is not None and Path(checkpoint).is_file():
        state = _resume(Path(checkpoint), fingerprint, model, optimizer, generator, state)
    bar = tqdm(
        total=config.max_epochs, initial=len(state.history), desc=f"fit {model.kind}", disable=not progress, leave=False
    )
    while not state.done(config):
        _train_epoch(model, train, holdout, bootstrap, optimizer, generator, config, state)
        if checkpoint is not None:
            save_atomic(state.to_checkpoint(fingerprint, model, optimizer, generator), checkpoint)
        bar.update()
        bar.set_postfix(
            train_loss=f"{state.history[-1]['train_loss']:.4g}", holdout_mse=f"{state.history[-1]['holdout_mse']:.4g}"
        )
    bar.close()
    model.load_state_dict(state.best_state)
    model.eval()
    elites = ()
    if model.selection == "per_member":
        model.set_elites(torch.as_tensor(state.selection.best))
        elites = tuple(model.elites.tolist())
    best_epoch = max((h["epoch"] for h in state.history if h["accepted"]), default=0)
    return FitResult(
        holdout_errors=state.selection.best.copy(),
        epochs=len(state.history),
        best_epoch=best_epoch,
        num_train=len(train_rows),
        num_holdout=len(holdout_rows),
        history=state.history,
        elites=elites,
    )


@dataclass
class _FitState:
    """What a fit carries from epoch to epoch (besides the model, optimizer and generator)."""

    best_state: dict[str, Tensor]
    history: list[dict[str, float]]
    selection: _Selection

    def done(self, config: FitConfig) -> bool:
        capped = config.max_epochs is not None and len(self.history) >= config.max_epochs
        return bool(self.history) and (self.selection.epochs_since_update >= config.patience or capped)

    def to_checkpoint(
        self, fingerprint: dict, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> dict:
        return {
            "fingerprint": fingerprint,
            "model": model.state_dict(),
            "best_state": self.best_state,
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "rng": rng_state(),
            "history": self.history,
            "selection_best": torch.as_tensor(self.selection.best),
            "epochs_since_update": self.selection.epochs_since_update,
        }


def _fingerprint(
    model: nn.Module, dataset: TransitionDataset, config: FitConfig, sample_weights: Tensor | None, initial: str | None
) -> dict:
    """What a resumed fit must share with the stopped one (everything but ``max_epochs``); a warm start adds
    ``initial`` (its label and the initial weights' SHA-1), fresh fits keep the fingerprint they always had."""
    weights = "none" if sample_weights is None else hashlib.sha1(sample_weights.cpu().numpy().tobytes()).hexdigest()
    fingerprint = {
        "model": {"kind": model.kind, **dataclasses.asdict(model.config)},
        "dataset": dataset.source,
        "rows": len(dataset),
        "fit": {k: v for k, v in dataclasses.asdict(config).items() if k != "max_epochs"},
        "sample_weights": weights,
    }
    if initial is not None:
        digest = hashlib.sha1()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        fingerprint["initial"] = {"from": initial, "weights_sha1": digest.hexdigest()}
    return fingerprint


def _resume(
    path: Path,
    fingerprint: dict,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    state: _FitState,
) -> _FitState:
    """Load a fit checkpoint into the model, optimizer and generator; the restored state."""
    saved = load_checkpoint(path, next(model.parameters()).device)
    recorded = saved.get("fingerprint", {})
    differing = sorted(key for key in {*fingerprint, *recorded} if recorded.get(key) != fingerprint.get(key))
    if differing:
        raise CheckpointError(
            f"{path}: a fit checkpoint of another {', '.join(differing)} than this fit's; remove it "
            "or fit with the settings it was made with"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    generator.set_state(saved["generator"])
    set_rng_state(saved["rng"])
    state.best_state = saved["best_state"]
    state.history = list(saved["history"])
    state.selection.best = saved["selection_best"].numpy().copy()
    state.selection.epochs_since_update = int(saved["epochs_since_update"])
    return state


def _train_epoch(
    model: nn.Module,
    train: Windows,
    holdout: Windows,
    bootstrap: Tensor | None,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    config: FitConfig,
    state: _FitState,
) -> None:
    """One epoch of gradient steps, then holdout errors, selection and the snapshot update."""
    model.train()
    losses = []
    for rows in _epoch_rows(train, bootstrap, config.batch_size, generator):
        loss, _ = model.loss(train.gather(rows))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    if config.validation_batch is None:
        errors = evaluate_errors(model, holdout, config.eval_batch_size)
    else:
        errors = sample_errors(model, holdout, config.validation_batch, generator)
    errors = errors.cpu().numpy()
    improved = state.selection.update(errors)
    if improved.any():
        _keep_snapshot(model, state.best_state, improved)
    state.history.append(
        {
            "epoch": len(state.history) + 1,
            "train_loss": torch.stack(losses).mean().item(),
            "holdout_mse": float(errors.mean()),
            "accepted": bool(improved.any()),
        }
    )
