"""`offline-mbrl model fit`: train a dynamics model (ADM, probabilistic ensemble or bootstrapping RNN) on a dataset
and save it (``offline_mbrl.models.checkpoint``), printing the per-k (or per-member) holdout MSE at the end.
A saved model is reused by ``offline-mbrl train --dynamics PATH``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

_KINDS = {"adm": "adm", "ensemble": "ensemble", "boot-rnn": "boot_rnn"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="fit and save dynamics models")
    model_subparsers = parser.add_subparsers(dest="model_command", required=True)
    p = model_subparsers.add_parser("fit", help="train a dynamics model and save it",
                                    description="Train a dynamics model with holdout model selection (official "
                                                "rules: ADM any-k acceptance with patience 25; ensemble 1 %% rule "
                                                "with patience 5) and save it atomically.")
    p.add_argument("--model", required=True, choices=sorted(_KINDS), help="model kind")
    p.add_argument("--dataset", required=True, help="dataset spec: minari:<id>, a D4RL .hdf5 or a NeoRL .npz")
    p.add_argument("--epochs", type=int, help="cap on training epochs (default: stop by patience only)")
    p.add_argument("--max-backtrack", type=int, help="m, the longest backtrack/history (adm, boot-rnn; default 5)")
    p.add_argument("--holdout-split", choices=("episodes", "last"), default="episodes",
                   help="random whole episodes (default) or the last rows (official ADMPO)")
    p.add_argument("--out", type=Path, help="checkpoint path (default runs/models/<model>-<dataset>-seed<S>.pt)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_fit)


def format_holdout_table(kind: str, holdout_errors, elites=()) -> str:
    """The holdout MSE per channel: k (ADM), history length (bootstrapping RNN) or member (ensemble, elites marked)."""
    label = {"adm": "k", "boot_rnn": "history", "ensemble": "member"}[kind]
    offset = 0 if kind == "ensemble" else 1
    lines = [f"{label:>8}  holdout MSE"]
    for i, error in enumerate(holdout_errors):
        mark = "  elite" if i in elites else ""
        lines.append(f"{i + offset:>8}  {error:.6g}{mark}")
    lines.append(f"{'mean':>8}  {sum(holdout_errors) / len(holdout_errors):.6g}")
    return "\n".join(lines)


def _fit(args: argparse.Namespace) -> int:
    import torch

    from ..data.load import load_dataset
    from ..errors import ConfigError
    from ..models import build_model
    from ..models.checkpoint import save_model
    from ..models.fit import FitConfig, fit

    kind = _KINDS[args.model]
    fields = {}
    if args.max_backtrack is not None:
        if kind == "ensemble":
            raise ConfigError("--max-backtrack applies to --model adm and boot-rnn only")
        fields["max_backtrack"] = args.max_backtrack
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ConfigError(f"--device: {exc}") from exc
    dataset = load_dataset(args.dataset)
    model = build_model(kind, dataset.obs_dim, dataset.action_dim, **fields).to(device)
    config = FitConfig.for_model(model, max_epochs=args.epochs, seed=args.seed, holdout_split=args.holdout_split)
    result = fit(model, dataset, config, progress=not args.no_progress)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(args.dataset).removeprefix("minari:")).strip("_")
    out = args.out or Path("runs") / "models" / f"{args.model}-{slug}-seed{args.seed}.pt"
    save_model(model, out)
    elites = model.elites.tolist() if kind == "ensemble" else ()
    print(f"{args.model} on {dataset.source}: {result.epochs} epochs, kept epoch {result.best_epoch}, "
          f"{result.num_train} train / {result.num_holdout} holdout rows")
    print(format_holdout_table(kind, result.holdout_errors, elites))
    print(f"saved {out}")
    return 0
