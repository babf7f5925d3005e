"""The README's results table is exactly `offline-mbrl tabulate analysis/results` (issue 12 acceptance)."""

from __future__ import annotations

import re
from pathlib import Path

from offline_mbrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- tabulate analysis/results"


def test_readme_table_is_tabulate_output(capsys, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    assert MARKER in readme, "README.md lost the marker of its results table"
    block = re.search(re.escape(MARKER) + r"[^\n]*\n```text\n(.*?)```", readme, re.S)
    assert block, "no ```text block after the results-table marker"
    monkeypatch.chdir(ROOT)  # tabulate prints run paths relative to the working directory
    assert main(["tabulate", "analysis/results"]) == 0
    assert capsys.readouterr().out == block.group(1)
