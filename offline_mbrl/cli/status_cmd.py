"""``offline-mbrl status RUNS...``: where each run folder below RUNS stands (``analysis.progress``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis import progress
from ..analysis.runs_io import find_run_dirs, read_run


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="progress of run folders: epochs done, running or stopped, latest scores, time left",
        description=progress.__doc__.split("\n\n")[0],
    )
    parser.add_argument("runs", nargs="+", help="run folders, or folders to search for them (e.g. runs/)")
    parser.add_argument(
        "--pace-epochs",
        type=int,
        default=progress.PACE_EPOCHS,
        metavar="N",
        help="the pace is the median epoch time of the last N epochs",
    )
    parser.add_argument("--decimals", type=int, default=1)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    runs = [read_run(path) for path in find_run_dirs(args.runs)]
    frame = progress.progress_table(runs, Path.cwd(), args.pace_epochs)  # folders relative to where it is run
    print(progress.format_progress(frame, args.decimals), end="")
    return 0
