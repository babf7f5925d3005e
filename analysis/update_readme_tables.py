"""Rewrite every score table of the README from the ``offline-mbrl tabulate`` command its marker names.

    python analysis/update_readme_tables.py [--readme README.md]

A table is a marker line ``<!-- tabulate ARGS (tests/test_results_table.py checks this block) -->`` followed by a
```` ```text ```` block; the block becomes the output of ``offline-mbrl tabulate ARGS`` run from the repository root
(the folder holding the README), which is what ``tests/test_results_table.py`` checks. Run it after
``analysis/export_results.py``; the prose around the tables is yours to update.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
from pathlib import Path

from offline_mbrl.cli import main as cli

MARKER = re.compile(
    r"(<!-- tabulate (.*?) \(tests/test_results_table.py checks this block\) -->\n```text\n)(.*?)(```)", re.S
)


def tabulate(args: str, root: Path) -> str:
    """The stdout of ``offline-mbrl tabulate ARGS`` run in ``root``. Raises SystemExit if the command fails."""
    out, cwd = io.StringIO(), Path.cwd()
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out):
            code = cli(["tabulate", *shlex.split(args)])
    finally:
        os.chdir(cwd)
    if code:
        raise SystemExit(f"offline-mbrl tabulate {args}: exit {code}")
    return out.getvalue()


def update(readme: Path) -> int:
    """Rewrite ``readme``'s tables in place (tabulate run in its folder); returns how many there are."""
    text = readme.read_text()
    new, count = MARKER.subn(lambda m: m.group(1) + tabulate(m.group(2), readme.parent) + m.group(4), text)
    readme.write_text(new)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    readme = parser.parse_args().readme.resolve()
    print(f"{readme}: {update(readme)} tables rewritten")


if __name__ == "__main__":
    main()
