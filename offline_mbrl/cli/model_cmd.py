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

_KINDS = {"adm": "adm", "ensemble": "ensemble", "boot-rnn": "boot_rnn"}
# = offline_mbrl.analysis.tom_weights.WEIGHT_METHODS (not imported here: parsing stays free of torch)
WEIGHT_METHODS = ("uniform", "pmac", "pmac-tom", "tom")


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
    from ..models.fit import FitConfig, fit
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
    config = FitConfig.for_model(model, max_epochs=args.epochs, seed=args.seed, holdout_split=args.holdout_split)
    weights = None
    if args.weights != "uniform":
        target = tom_target_from_args(args, dataset, device) if args.weights == "tom" else None
        weights, _ = transition_weights(args.weights, dataset, target, seed=args.seed, device=device)
        print(format_weight_summary(args.weights, weights))
    partial = out.with_name(out.name + ".partial")
    if partial.is_file():
        print(f"resuming the fit from {partial}", flush=True)
    result = fit(model, dataset, config, sample_weights=weights, progress=not args.no_progress, checkpoint=partial)
    save_model(model, out)
    partial.unlink()
    print(
        f"{args.model} on {dataset.source}: {result.epochs} epochs, kept epoch {result.best_epoch}, "
        f"{result.num_train} train / {result.num_holdout} holdout rows"
    )
    print(format_holdout_table(model, result))
    print(f"saved {out}")
    return 0
