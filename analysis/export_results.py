"""Copy the small files of finished or running training runs into the committed results tree.

    python analysis/export_results.py RUNS_ROOT [--out analysis/results]

For every run folder under RUNS_ROOT (``<algo>/<dataset-slug>/<config-hash>/seed<S>/``, see
``offline_mbrl.runs``) it copies ``config.yaml``, ``metrics.csv`` and ``summary.json`` (never
checkpoints or models) to ``OUT/<dataset-slug>/<algo>/seed<S>/``, so that ``offline-mbrl tabulate OUT`` and
``offline-mbrl analyze curves OUT`` reproduce the README's results. Two configs of one algorithm on one dataset
would collide there: that is an error naming both folders.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from offline_mbrl.analysis.runs_io import find_run_dirs
from offline_mbrl.runs import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE

FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE)


def export(runs_root: Path, out: Path) -> list[Path]:
    """Copy ``FILES`` of every run folder under ``runs_root``; returns the destination folders."""
    sources: dict[Path, Path] = {}
    for run in find_run_dirs([runs_root]):
        algo, slug, seed = run.parents[2].name, run.parents[1].name, run.name
        dest = out / slug / algo / seed
        if dest in sources:
            raise SystemExit(f"{run} and {sources[dest]}: two configs of {algo} on {slug}; export them separately")
        sources[dest] = run
    for dest, run in sources.items():
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (run / name).is_file():
                shutil.copy2(run / name, dest / name)
    return sorted(sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_root", type=Path)
    parser.add_argument("--out", type=Path, default=Path("analysis/results"))
    args = parser.parse_args()
    for dest in export(args.runs_root, args.out):
        print(dest)


if __name__ == "__main__":
    main()
