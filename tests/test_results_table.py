"""Every score table in the README is exactly the `offline-mbrl tabulate` output its marker names (issue 12
acceptance for `analysis/results`; the online comparisons' tables in the same way). `analysis/update_readme_tables.py`
writes them."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from pathlib import Path

import pytest

from offline_mbrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("update_readme_tables", ROOT / "analysis" / "update_readme_tables.py")
update_readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(update_readme_tables)
BLOCKS = [(m.group(2), m.group(3)) for m in update_readme_tables.MARKER.finditer((ROOT / "README.md").read_text())]


def test_readme_keeps_the_results_table():
    assert "analysis/results" in [args for args, _ in BLOCKS], "README.md lost the marker of its results table"


@pytest.mark.parametrize(("args", "block"), BLOCKS, ids=[args for args, _ in BLOCKS])
def test_readme_table_is_tabulate_output(args, block, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # tabulate prints run paths relative to the working directory
    assert main(["tabulate", *shlex.split(args)]) == 0
    assert capsys.readouterr().out == block


def test_update_rewrites_a_stale_block(tmp_path):
    readme = (ROOT / "README.md").read_text()
    (tmp_path / "README.md").write_text(readme.replace(BLOCKS[0][1], "stale\n", 1))
    shutil.copytree(ROOT / "analysis", tmp_path / "analysis", ignore=shutil.ignore_patterns("*.png", "*.pdf"))
    assert update_readme_tables.update(tmp_path / "README.md") == len(BLOCKS)
    assert (tmp_path / "README.md").read_text() == readme
