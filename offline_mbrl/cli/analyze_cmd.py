"""``offline-mbrl tabulate RUNS...`` and ``offline-mbrl analyze <analysis> ...``.

Thin wrappers: the work is in ``offline_mbrl.analysis``. To add an analysis, write one function
``_add_<name>(subparsers)`` that adds its parser and sets ``func``, and append it to ``ANALYSES``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..analysis import plots, tables
from ..analysis.runs_io import VALUE_COLUMNS, read_runs


def _add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUNS",
                        help="run folders, or folders searched recursively for run folders (holding metrics.csv)")
    parser.add_argument("--value", choices=sorted(VALUE_COLUMNS), default="normalized",
                        help="metrics.csv value: per-episode-normalized score (default) or raw return")


def _add_tabulate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tabulate", help="score tables over seeds (Markdown, LaTeX, CSV)",
                                   description=tables.__doc__.split("\n\n")[0])
    _add_runs_arguments(parser)
    parser.add_argument("--format", choices=tables.FORMATS, default="markdown")
    parser.add_argument("--score", choices=[*tables.SCORE_KINDS, "both"], default="both",
                        help="final: last evaluation; last10: per-seed mean of the last 10 evaluations")
    parser.add_argument("--algos", type=lambda text: text.split(","), default=None,
                        help="comma-separated algorithm columns in this order (default: all, sorted)")
    parser.add_argument("--decimals", type=int, default=1)
    parser.set_defaults(func=_run_tabulate)


def _run_tabulate(args: argparse.Namespace) -> int:
    kinds = tuple(tables.SCORE_KINDS) if args.score == "both" else (args.score,)
    print(tables.format_tables(read_runs(args.runs), fmt=args.format, kinds=kinds, value=args.value,
                               algos=args.algos, decimals=args.decimals), end="")
    return 0


def _add_curves(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("curves", help="learning curves: score vs SAC step, mean and band over seeds",
                                   description=plots.__doc__.split("\n\n")[0])
    _add_runs_arguments(parser)
    parser.add_argument("--out", required=True, metavar="PNG", help="figure path; the plotted numbers go to .csv")
    parser.add_argument("--band", choices=plots.BANDS, default="sd",
                        help="sd: mean ± std over seeds (ddof=1); se: mean ± standard error")
    parser.set_defaults(func=_run_curves)


def _run_curves(args: argparse.Namespace) -> int:
    png, csv = plots.plot_curves(read_runs(args.runs), args.out, value=args.value, band=args.band)
    print(f"wrote {png} and {csv}")
    return 0


ANALYSES: list[Callable[[argparse._SubParsersAction], None]] = [_add_curves]
"""Each entry adds one ``offline-mbrl analyze <name>`` sub-command to the given sub-parsers."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tabulate`` and the ``analyze`` group with every sub-command in ``ANALYSES``."""
    _add_tabulate(subparsers)
    analyze = subparsers.add_parser("analyze", help="analyses of run folders and models")
    analyses = analyze.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    for add in ANALYSES:
        add(analyses)
