"""`offline-mbrl dataset ...`: the dataset sub-command group (``info`` here; ``make`` is added later).

Each `dataset <name>` sub-command is a function that takes the group's subparsers object, adds its
parser and sets ``func``. HOOK: to add a sub-command (e.g. ``dataset make <recipe>``), write such a
function and append it to ``_SUBCOMMANDS`` at the end of this module.
"""

from __future__ import annotations

import argparse

from ..data import load_dataset, normalized_score, score_reference
from ..data.dataset import TransitionDataset
from ..data.load import ACCEPTED_SPECS
from ..errors import ScoreError
from .collect_cmd import add_make


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``dataset`` group and every sub-command in ``_SUBCOMMANDS`` to the top-level parser."""
    parser = subparsers.add_parser("dataset", help="inspect (and build) offline datasets")
    dataset_subparsers = parser.add_subparsers(dest="dataset_command", required=True)
    for add_subcommand in _SUBCOMMANDS:
        add_subcommand(dataset_subparsers)


def format_summary(dataset: TransitionDataset) -> str:
    """Human-readable summary of a dataset: sizes, dims, returns, flags, sim state, notes, and the reference returns
    that normalize its scores with where they come from (:func:`~offline_mbrl.data.scores.score_reference`)."""
    info = dataset.summary()
    rows = [
        ("source", info["source"]),
        ("task", info["task"] or "-"),
        ("env id", info["env_id"] or "-"),
        ("transitions", info["transitions"]),
        ("episodes", f"{info['episodes']} (mean length {info['length_mean']:.1f})"),
        ("return mean/min/max", f"{info['return_mean']:.3f} / {info['return_min']:.3f} / {info['return_max']:.3f}"),
        ("obs dim / action dim", f"{info['obs_dim']} / {info['action_dim']}"),
        ("terminals / timeouts", f"{info['terminals']} / {info['timeouts']}"),
        ("sim state (qpos/qvel)", "yes" if info["has_sim_state"] else "no"),
        ("collection step", "yes" if info["has_collection_step"] else "no"),
    ]
    try:
        reference = score_reference(dataset)
        rows.append(("reference returns", reference.describe()))
        rows.append(("normalized mean return", f"{normalized_score(reference, info['return_mean']):.2f}"))
    except ScoreError as exc:
        rows.append(("reference returns", f"none, so no normalized score ({exc})"))
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    if info["notes"]:
        lines += ["notes:"] + [f"  - {note}" for note in info["notes"]]
    return "\n".join(lines)


def _add_info(dataset_subparsers: argparse._SubParsersAction) -> None:
    parser = dataset_subparsers.add_parser(
        "info", help="print a dataset's summary", description="Print a dataset's summary."
    )
    parser.add_argument("spec", help="dataset spec: " + "; ".join(ACCEPTED_SPECS))
    parser.set_defaults(func=_info)


def _info(args: argparse.Namespace) -> int:
    print(format_summary(load_dataset(args.spec)))
    return 0


# HOOK: every `offline-mbrl dataset <name>` sub-command; append new ones here.
_SUBCOMMANDS = (_add_info, add_make)
