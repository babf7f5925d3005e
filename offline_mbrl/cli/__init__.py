"""`offline-mbrl` command line. Each sub-command lives in its own module with a ``register(subparsers)``
function that adds its parser and sets ``func`` (called with the parsed args, returns an exit code)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Before torch loads: OpenMP threads sleep instead of spinning when they wait, so two torch jobs sharing a few
# cores do not slow each other down many times over (measured: 20x on 2 cores). A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ..errors import OfflineMBRLError

# module name -> registers these sub-commands
_COMMAND_MODULES = (
    "dataset_cmd",
    "collect_cmd",
    "model_cmd",
    "train_cmd",
    "analyze_cmd",
    "status_cmd",
    "sweep_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offline-mbrl", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # sub-command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OfflineMBRLError as exc:
        print(f"offline-mbrl: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
