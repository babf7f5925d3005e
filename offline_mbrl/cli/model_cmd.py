"""`offline-mbrl model fit`: train a dynamics model (ADM, probabilistic ensemble or bootstrapping RNN) on a dataset
and save it (``offline_mbrl.models.checkpoint``), printing the per-k (or per-member) holdout MSE at the end.
A saved model is reused by ``offline-mbrl train --dynamics PATH``.

``--weights`` fits with per-transition sampling weights (resampling, ``offline_mbrl.models.fit``): PMAC presets
(``pmac``, ``pmac-tom``; read the dataset's ``collection_step``) or TOM (``tom``: a target policy
``--target-policy``, its real roll-outs ``--target-steps``, TOM settings ``--tom-q-steps``/``--tom-disc-epochs``);
see ``offline_mbrl.analysis.tom_weights``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # parsing stays free of torch
    from ..data.dataset import TransitionDataset
    from ..models.base import DynamicsModel
    from ..models.fit import FitConfig

_KINDS = {"adm": "adm", "ensemble": "ensemble", "boot-rnn": "boot_rnn"}
# = offline_mbrl.analysis.tom_weights.WEIGHT_METHODS (not imported here: parsing stays free of torch)
WEIGHT_METHODS = ("uniform", "pmac", "pmac-tom", "tom")
HOLDOUT_KEYS = ("seed", "holdout_fraction", "max_holdout", "holdout_split")  # FitConfig fields that set the holdout
STATUS_COLUMNS = (  # `model status`
    *("fit", "kind", "dataset", "state", "epochs", "kept epoch", "since kept", "kept MSE", "last MSE"),
    *("trend/epoch", "written"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="fit and save dynamics models")
    model_subparsers = parser.add_subparsers(dest="model_command", required=True)
    p = model_subparsers.add_parser(
        "fit",
        help="train a dynamics model and save it",
        description="Train a dynamics model with holdout model selection (official "
        "rules: ADM any-k acceptance with patience 25; ensemble 1 %% rule "
        "with patience 5) and save it atomically.",
    )
    p.add_argument("--model", required=True, choices=sorted(_KINDS), help="model kind")
    p.add_argument("--dataset", required=True, help="dataset spec: minari:<id>, a D4RL .hdf5 or a NeoRL .npz")
    p.add_argument("--epochs", type=int, help="cap on training epochs (default: stop by patience only)")
    p.add_argument("--max-backtrack", type=int, help="m, the longest backtrack/history (adm, boot-rnn; default 5)")
    p.add_argument(
        "--holdout-split",
        choices=("episodes", "last"),
        default="episodes",
        help="random whole episodes (default) or the last rows (official ADMPO)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="windows (ADM, boot-rnn: all k per pass) or transitions per member (ensemble) per gradient step "
        "(default 256); ADM with B = 256 / m takes the official number of Adam steps per epoch (m times ours)",
    )
    p.add_argument(
        "--validation-batch",
        type=int,
        metavar="B",
        help="measure each epoch's holdout error on one dropout-on batch of B windows per channel, as the "
        "official ADMPO code (B = 256), instead of on the whole holdout in eval mode (default); noisier, so an "
        "ADM fit meets its patience sooner",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="MODEL.pt",
        help="start from a saved model's weights (same kind and settings) instead of fresh ones, e.g. to go on "
        "with another --batch-size; the saved model's fit record names the start (path and weights' SHA-1)",
    )
    p.add_argument("--out", type=Path, help="checkpoint path (default runs/models/<model>-<dataset>-seed<S>.pt)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--weights",
        choices=WEIGHT_METHODS,
        default="uniform",
        help="per-transition sampling weights: uniform (default), PMAC presets pmac (alpha 0.9 per 250 "
        "steps) / pmac-tom (alpha 0.996 per step), or tom (needs --target-policy)",
    )
    add_tom_arguments(p)
    p.set_defaults(func=_fit)
    s = model_subparsers.add_parser(
        "status",
        help="where fits stand: epochs, kept epoch, epochs since it of the patience, holdout MSE and its trend",
        description="Read fit checkpoints (`model fit --out X` keeps X.partial until the fit ends) and print one "
        "line per fit: epochs done, the last kept epoch, epochs since then against the patience that stops the "
        "fit, the kept and the last holdout MSE, its trend per epoch, and how long ago the checkpoint was written "
        "(a running fit writes it every epoch). A saved model (X.pt without X.pt.partial) is listed as saved, with "
        "its fit's line when `model fit` kept the fit's record in it; another torch file as not a model; in "
        "folders, run folders' checkpoints/last.pt are left out.",
    )
    s.add_argument("paths", nargs="+", type=Path, help="model files (X.pt or X.pt.partial) or folders holding them")
    s.add_argument("--window", type=int, default=30, help="epochs the trend is fitted over (default 30)")
    s.set_defaults(func=_status)


def add_tom_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments TOM weights need: target policy, its roll-out size, TOM settings, environment id."""
    from_tom = "(TOM weights)"
    parser.add_argument(
        "--target-policy",
        type=Path,
        metavar="ACTOR.pt",
        help=f"target policy pi_T, an actor file (e.g. datasets/policies/hopper_expert.pt) {from_tom}",
    )
    parser.add_argument(
        "--target-steps",
        type=int,
        default=10_000,
        help=f"real-environment steps of pi_T: the discriminator's positives {from_tom}",
    )
    parser.add_argument(
        "--tom-q-steps",
        type=int,
        default=1000,
        help=f"dual Q steps (official 1000; more can lower the weights' quality where the data do "
        f"not cover pi_T's actions) {from_tom}",
    )
    parser.add_argument("--tom-disc-epochs", type=int, default=100, help=f"discriminator epochs {from_tom}")
    parser.add_argument("--env-id", help="gymnasium id to roll pi_T out in (default: the dataset's metadata env_id)")


def parse_device(text: str):
    """:func:`offline_mbrl.persist.parse_device` (ConfigError naming ``--device`` for a bad or absent device), imported
    when called so that parsing stays free of torch."""
    from ..persist import parse_device as parse

    return parse(text)


def tom_target_from_args(args: argparse.Namespace, dataset, device):
    """``tom_weights.tom_target`` from the ``add_tom_arguments`` values (pi_T rolled out in the dataset's env).

    Raises:
        ConfigError: no ``--target-policy``, or bad TOM settings. DatasetError: no env id.
    """
    from dataclasses import replace

    from ..algos.weighting import TOMConfig
    from ..analysis.tom_weights import env_id_of, tom_target
    from ..errors import ConfigError

    if args.target_policy is None:
        raise ConfigError("TOM weights need --target-policy ACTOR.pt (the policy whose transitions get weight)")
    config = replace(TOMConfig(), q_steps=args.tom_q_steps, disc_epochs=args.tom_disc_epochs)
    return tom_target(args.target_policy, env_id_of(dataset, args.env_id), args.target_steps, config, args.seed, device)


def warm_start(model: DynamicsModel, path: Path, dataset: TransitionDataset, config: FitConfig) -> None:
    """Load the weights of the model saved at ``path`` (``models.checkpoint.load_model``) into ``model`` (fresh, of
    the same kind and settings: ``--model``, ``--max-backtrack`` and the dataset's dimensions). When the saved model
    keeps its fit's record, that fit must have used this ``dataset`` and this fit's holdout (``config``'s seed and
    split settings): otherwise the warm start would have trained on rows this fit holds out.

    Raises:
        CheckpointError: an unreadable file. ConfigError: a saved model of another kind or settings, or whose fit
            used another dataset or holdout (names the fields).
    """
    import dataclasses

    from ..errors import ConfigError
    from ..models.checkpoint import load_model
    from ..persist import load_checkpoint

    saved = load_model(path, next(model.parameters()).device)
    if saved.kind != model.kind:
        raise ConfigError(f"--init-from {path}: a saved '{saved.kind}' model, this fit is of a '{model.kind}' model")
    theirs, ours = dataclasses.asdict(saved.config), dataclasses.asdict(model.config)
    _refuse_differing(path, "a model of other settings", theirs, ours)
    record = load_checkpoint(path).get("fit")
    if record is not None:
        theirs = {"dataset": record["fingerprint"]["dataset"], **record["fingerprint"]["fit"]}
        ours = {"dataset": dataset.source, **{key: getattr(config, key) for key in HOLDOUT_KEYS}}
        _refuse_differing(path, "its fit used another dataset or holdout", theirs, ours)
    model.load_state_dict(saved.state_dict())


def _refuse_differing(path: Path, problem: str, theirs: dict, ours: dict) -> None:
    """ConfigError ``--init-from PATH: PROBLEM: key theirs (this fit: ours), ...`` for the keys of ``ours`` whose
    values differ."""
    from ..errors import ConfigError

    differing = sorted(key for key in ours if theirs.get(key) != ours[key])
    if differing:
        details = ", ".join(f"{key} {theirs.get(key)!r} (this fit: {ours[key]!r})" for key in differing)
        raise ConfigError(f"--init-from {path}: {problem}: {details}")


def format_holdout_table(model, result) -> str:
    """The holdout MSE of a ``FitResult`` per channel of ``model`` (``model.channel``: k for ADM, history length for
    the bootstrapping RNN, member for the ensemble), elites marked."""
    holdout_errors = result.holdout_errors
    lines = [f"{model.channel:>8}  holdout MSE"]
    for i, error in enumerate(holdout_errors):
        mark = "  elite" if i in result.elites else ""
        lines.append(f"{i + model.first_channel:>8}  {error:.6g}{mark}")
    lines.append(f"{'mean':>8}  {sum(holdout_errors) / len(holdout_errors):.6g}")
    return "\n".join(lines)


def _fit(args: argparse.Namespace) -> int:
    from ..analysis.tom_weights import format_weight_summary, transition_weights
    from ..data.load import load_dataset
    from ..errors import ConfigError
    from ..models import build_model, model_fields
    from ..models.checkpoint import save_model
    from ..models.fit import FitConfig, fit, fit_record
    from ..persist import check_output_file

    kind = _KINDS[args.model]
    fields = {}
    if args.max_backtrack is not None:
        if "max_backtrack" not in model_fields(kind):
            backtracking = [name for name, k in _KINDS.items() if "max_backtrack" in model_fields(k)]
            raise ConfigError(f"--max-backtrack applies to --model {' and '.join(backtracking)} only")
        fields["max_backtrack"] = args.max_backtrack
    if args.target_policy is not None and args.weights != "tom":
        raise ConfigError(f"--target-policy applies to --weights tom only (got --weights {args.weights})")
    device = parse_device(args.device)
    dataset = load_dataset(args.dataset)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(args.dataset).removeprefix("minari:")).strip("_")
    weights_tag = "" if args.weights == "uniform" else f"-{args.weights}"
    default_out = Path("runs") / "models" / f"{args.model}-{slug}{weights_tag}-seed{args.seed}.pt"
    out = check_output_file(args.out or default_out, "--out")
    model = build_model(kind, dataset.obs_dim, dataset.action_dim, **fields).to(device)  # checks --max-backtrack
    config = FitConfig.for_model(
        model,
        max_epochs=args.epochs,
        seed=args.seed,
        holdout_split=args.holdout_split,
        validation_batch=args.validation_batch,
        **({} if args.batch_size is None else {"batch_size": args.batch_size}),
    )
    if args.init_from is not None:
        warm_start(model, args.init_from, dataset, config)
    weights = None
    if args.weights != "uniform":
        target = tom_target_from_args(args, dataset, device) if args.weights == "tom" else None
        weights, _ = transition_weights(args.weights, dataset, target, seed=args.seed, device=device)
        print(format_weight_summary(args.weights, weights))
    partial = _partial(out)
    if partial.is_file():
        print(f"resuming the fit from {partial}", flush=True)
    initial = None if args.init_from is None else str(args.init_from)
    result = fit(
        model,
        dataset,
        config,
        sample_weights=weights,
        progress=not args.no_progress,
        checkpoint=partial,
        initial=initial,
    )
    save_model(model, out, fit_record=fit_record(partial))
    partial.unlink()
    print(
        f"{args.model} on {dataset.source}: {result.epochs} epochs, kept epoch {result.best_epoch}, "
        f"{result.num_train} train / {result.num_holdout} holdout rows"
    )
    print(format_holdout_table(model, result))
    print(f"saved {out}")
    return 0


def fit_files(paths: list[Path]) -> list[Path]:
    """The fits named by ``paths``: a folder stands for its ``*.pt`` and ``*.pt.partial`` files (recursively, run
    folders' training checkpoints ``checkpoints/last.pt`` left out); a model ``X.pt`` stands for ``X.pt.partial``
    while that exists (a fit in progress). Each fit once, sorted.

    Raises:
        ConfigError: a path that does not exist, a file that is neither ``.pt`` nor ``.pt.partial``, or a folder
            without either.
    """
    from ..errors import ConfigError

    found = set()
    for path in paths:
        if path.is_dir():
            inside = [p for p in [*path.rglob("*.pt"), *path.rglob("*.pt.partial")] if not _run_checkpoint(p)]
            if not inside:
                raise ConfigError(f"{path}: no model file (*.pt or *.pt.partial) in this folder")
            found.update(inside)
        elif not path.exists() and not _partial(path).is_file():
            raise ConfigError(f"{path}: no such file or folder (nor a fit in progress, {_partial(path).name})")
        elif not path.name.endswith((".pt", ".pt.partial")):
            raise ConfigError(f"{path}: not a model file (*.pt) or fit checkpoint (*.pt.partial)")
        else:
            found.add(path)
    fits = {path.with_name(path.name.removesuffix(".partial")) for path in found}  # X.pt per fit
    return sorted(_partial(fit) if _partial(fit).is_file() else fit for fit in fits)


def _partial(model: Path) -> Path:
    return model.with_name(model.name + ".partial")


def _run_checkpoint(path: Path) -> bool:
    from ..runs import CHECKPOINT_FILE

    return path.as_posix().endswith("/" + CHECKPOINT_FILE)


def _status(args: argparse.Namespace) -> int:
    import math
    import time

    from ..analysis.tables import markdown_rows
    from ..errors import CheckpointError
    from ..models.fit import fit_progress

    rows = [list(STATUS_COLUMNS)]
    for path in fit_files(args.paths):
        age = f"{(time.time() - path.stat().st_mtime) / 60:.0f} min ago"
        try:
            fit = fit_progress(path, args.window)
        except CheckpointError:
            if path.name.endswith(".partial"):
                raise
            kind = _saved_kind(path)  # a model saved without its fit's record, or another torch file
            rows.append([str(path), kind or "—", "—", "saved" if kind else "not a model", *["—"] * 6, age])
            continue
        rows.append(
            [
                str(path.with_name(path.name.removesuffix(".partial"))),
                fit.kind,
                fit.dataset,
                "saved" if fit.saved else "in progress",
                str(fit.epochs),
                str(fit.best_epoch),
                f"{fit.epochs_since_update}/{fit.patience}",
                f"{fit.holdout_mse:.4g}",
                f"{fit.last_holdout_mse:.4g}",
                "—" if math.isnan(fit.trend) else f"{100 * fit.trend:+.2f} %",
                age,
            ]
        )
    print(markdown_rows(rows))
    return 0


def _saved_kind(path: Path) -> str | None:
    """The kind of a saved model (``models.checkpoint``; None for another torch file, an actor say); CheckpointError
    names an unreadable file."""
    from ..persist import load_checkpoint

    payload = load_checkpoint(path)
    return str(payload["kind"]) if isinstance(payload, dict) and "kind" in payload else None
