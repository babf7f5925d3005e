"""`offline-mbrl sweep SPEC.yaml`: run a grid of `train` commands on Ray (``offline_mbrl.sweep``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run algorithms x datasets x seeds x overrides from a spec file on Ray (idempotent, resumable)",
        description="Expand a sweep spec (offline_mbrl/sweep.py documents the format) to train runs and run "
        "the ones not done on Ray: a local Ray by default, an existing cluster with --address. Finished runs "
        "are skipped, partial ones resume from their checkpoint, a failing run never stops the others.",
    )
    p.add_argument("spec", type=Path, metavar="SPEC.yaml")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto, ray://head:10001); default: a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all); one per trial")
    p.add_argument("--max-concurrent", type=int, help="trials running at once (default: as many as CPUs/GPUs allow)")
    p.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs per trial, fractions allowed; > 0 runs (and prints) the commands with --device cuda (0: CPU)",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--dry-run", action="store_true", help="list the trials and their state; run nothing")
    what.add_argument(
        "--print-commands",
        nargs="?",
        const="all",
        choices=("all", "fit", "train"),
        help="print one offline-mbrl command per line (the shared model fits first, which the train lines "
        "need), e.g. for a SLURM array; 'fit' or 'train' prints only those",
    )
    what.add_argument("--status", action="store_true", help="trials done/running/failed and the score table")
    p.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from .. import sweep

    spec = sweep.load_spec(args.spec)
    trials = sweep.expand(spec)
    if args.print_commands:
        lines = [] if args.print_commands == "train" else [f.argv for f in sweep.model_fits(trials)]
        lines += [] if args.print_commands == "fit" else [t.argv for t in trials if t.error is None]
        print("\n".join(sweep.command_line(argv + sweep.device_flags(args.gpus_per_trial)) for argv in lines))
        invalid = [t for t in trials if t.error]
        for trial in invalid:
            print(
                f"offline-mbrl: not printed, its config does not resolve: {trial.label}: {trial.error}", file=sys.stderr
            )
        return 1 if invalid else 0
    if args.dry_run:
        print(sweep.format_trials(trials, spec.runs))
        return 0
    if not args.status:
        sweep.run_sweep(
            trials,
            spec.runs,
            address=args.address,
            max_concurrent=args.max_concurrent,
            gpus_per_trial=args.gpus_per_trial,
            num_cpus=args.num_cpus,
        )
    print(sweep.format_status(trials, spec.runs), end="")
    failed = [t for t in trials if sweep.trial_status(t, spec.runs).state == "failed"]
    return 1 if failed and not args.status else 0
