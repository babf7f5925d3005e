"""Score tables from synthetic run folders: known numbers in, exact table text out."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from offline_mbrl.analysis.runs_io import RunFolderError, dataset_labels, read_run, read_runs
from offline_mbrl.analysis.tables import format_tables, score_table, seed_scores
from offline_mbrl.cli import main

HOPPER = "minari:offline_mbrl/hopper/medium-v0"
WALKER = "/data/walker2d-medium-v2.hdf5"
EPOCHS = 12


def make_run(
    root: Path,
    algo: str,
    dataset: str,
    seed: int,
    scores: list[float],
    *,
    finished: bool | None = True,
    epochs_total: int = EPOCHS,
    variant: str = "cfg0",
) -> Path:
    """Write a run folder as the training loop does; ``finished=None`` writes no summary.json."""
    path = root / algo / re.sub(r"[^A-Za-z0-9]+", "-", dataset) / variant / f"seed{seed}"
    path.mkdir(parents=True)
    config = {
        "algo": algo,
        "dataset": dataset,
        "task": None,
        "seed": seed,
        "epochs": epochs_total,
        "sac": {"batch_size": 256},
    }
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    epochs = np.arange(1, len(scores) + 1)
    pd.DataFrame(
        {
            "epoch": epochs,
            "step": epochs * 1000,
            "eval/return_mean": np.asarray(scores) * 10.0,
            "eval/return_std": 1.0,
            "eval/normalized_score": scores,
            "eval/normalized_score_std": 2.0,
            "time/wall_s": epochs * 3.0,
            "train/critic_loss": 0.5,
        }
    ).to_csv(path / "metrics.csv", index=False)
    if finished is not None:
        (path / "summary.json").write_text(
            json.dumps(
                {
                    "algo": algo,
                    "dataset": dataset,
                    "seed": seed,
                    "epochs_completed": len(scores),
                    "epochs_total": epochs_total,
                    "finished": finished,
                    "final_normalized_score": scores[-1] if scores else None,
                    "final_return": None,
                }
            )
        )
    return path


def hopper_scores(base: float) -> list[float]:
    """12 evaluations: final = base, mean of the last 10 = base - 9."""
    return [0.0, 0.0] + [base - 10.0] * 9 + [base]


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    for seed, base in enumerate((100.0, 104.0, 108.0)):
        make_run(tmp_path, "admpo-off", HOPPER, seed, hopper_scores(base))
    for seed, base in enumerate((60.0, 70.0)):  # a missing seed: n=2
        make_run(tmp_path, "mopo", HOPPER, seed, hopper_scores(base))
    make_run(tmp_path, "admpo-off", WALKER, 0, [80.0] * EPOCHS)
    make_run(tmp_path, "admpo-off", WALKER, 1, [90.0] * EPOCHS)
    make_run(tmp_path, "admpo-off", WALKER, 2, [70.0] * 5, finished=False)
    make_run(tmp_path, "mopo", WALKER, 0, [30.0] * 3, finished=None)  # crashed before writing a summary
    return tmp_path


def expected_markdown(root: Path) -> str:
    return f"""Normalized score: mean ± std over seeds (ddof=1), (standard error = std/√n).

Final: each seed's score at its last evaluation.

| Task | admpo-off | mopo |
| --- | --- | --- |
| offline_mbrl/hopper/medium-v0 | 104.0 ± 4.0 (2.3) | 65.0 ± 7.1 (5.0) [n=2] |
| walker2d-medium-v2 | 80.0 ± 10.0 (5.8)† | 30.0 [n=1]† |
| Average | 92.0 | 47.5 |

Last-10: each seed's mean score over its last 10 evaluations (all, if fewer).

| Task | admpo-off | mopo |
| --- | --- | --- |
| offline_mbrl/hopper/medium-v0 | 95.0 ± 4.0 (2.3) | 56.0 ± 7.1 (5.0) [n=2] |
| walker2d-medium-v2 | 80.0 ± 10.0 (5.8)† | 30.0 [n=1]† |
| Average | 87.5 | 43.0 |

Cells: n = 3 seeds unless marked [n=k]; — = no run. Average: mean over tasks of the cell means, \
only for algorithms with every task.
† unfinished runs (epochs completed/total):
- admpo-off / {WALKER} seed 2: 5/12 ({root.resolve()}/admpo-off/-data-walker2d-medium-v2-hdf5/cfg0/seed2)
- mopo / {WALKER} seed 0: 3/12 ({root.resolve()}/mopo/-data-walker2d-medium-v2-hdf5/cfg0/seed0)
"""


def test_markdown_table_exact(runs_root):
    assert format_tables(read_runs([runs_root])) == expected_markdown(runs_root)


def test_latex_table_exact_with_escaping_and_column_order(runs_root):
    text = format_tables(read_runs([runs_root]), fmt="latex", kinds=("final",), algos=["mopo", "admpo-off"])
    assert text.split("\n\n")[1] == "\n".join(
        [
            "% Final: each seed's score at its last evaluation.",
            r"\begin{tabular}{lcc}",
            r"\toprule",
            r"Task & mopo & admpo-off \\",
            r"\midrule",
            r"offline\_mbrl/hopper/medium-v0 & 65.0 $\pm$ 7.1 (5.0) [n=2] & 104.0 $\pm$ 4.0 (2.3) \\",
            r"walker2d-medium-v2 & 30.0 [n=1]$^\dagger$ & 80.0 $\pm$ 10.0 (5.8)$^\dagger$ \\",
            r"\midrule",
            r"Average & 47.5 & 92.0 \\",
            r"\bottomrule",
            r"\end{tabular}",
        ]
    )
    assert text.startswith("% Normalized score: mean $\\pm$ std")
    assert "% $^\\dagger$ unfinished runs" in text


def test_csv_holds_numpy_reference_numbers(runs_root):
    tidy = pd.read_csv(StringIO(format_tables(read_runs([runs_root]), fmt="csv")))
    assert list(tidy.columns) == ["kind", "task", "algo", "mean", "std", "sem", "n", "seeds", "unfinished"]
    cell = tidy[(tidy.kind == "final") & (tidy.task == "walker2d-medium-v2") & (tidy.algo == "admpo-off")].iloc[0]
    values = np.array([80.0, 90.0, 70.0])
    assert cell["mean"] == pytest.approx(values.mean())
    assert cell["std"] == pytest.approx(np.std(values, ddof=1))
    assert cell["sem"] == pytest.approx(np.std(values, ddof=1) / np.sqrt(3))
    assert (cell["n"], cell["unfinished"]) == (3, 1)
    average = tidy[(tidy.kind == "last10") & (tidy.task == "Average")].set_index("algo")["mean"]
    assert average.to_dict() == pytest.approx({"admpo-off": 87.5, "mopo": 43.0})
    assert tidy.loc[tidy.task == "Average", ["std", "n"]].isna().all().all()


def test_seed_scores_final_and_last10(tmp_path):
    rng = np.random.default_rng(0)
    scores = rng.normal(50, 10, size=(3, 15))
    for seed, row in enumerate(scores):
        make_run(tmp_path, "mopo", HOPPER, seed, row.tolist(), epochs_total=15)
    per_seed = seed_scores(read_runs([tmp_path])).sort_values("seed")
    np.testing.assert_allclose(per_seed["final"], scores[:, -1])
    np.testing.assert_allclose(per_seed["last10"], scores[:, -10:].mean(axis=1))
    table = score_table(per_seed, "last10")
    cell = table.cells.loc[("offline_mbrl/hopper/medium-v0", "mopo")]
    assert cell["std"] == pytest.approx(np.std(scores[:, -10:].mean(axis=1), ddof=1))
    assert not per_seed["unfinished"].any()


def test_std_is_never_shifted_by_return_offset(tmp_path):
    """Tabulating raw returns (10 × score here) scales the std by 10; nothing else moves it."""
    for seed, base in enumerate((10.0, 20.0)):
        make_run(tmp_path, "mopo", HOPPER, seed, [base] * 3, epochs_total=3)
    runs = read_runs([tmp_path])
    norm = score_table(seed_scores(runs, "normalized"), "final").cells.iloc[0]
    ret = score_table(seed_scores(runs, "return"), "final").cells.iloc[0]
    assert ret["std"] == pytest.approx(10 * norm["std"]) and ret["mean"] == pytest.approx(10 * norm["mean"])


def test_runs_without_summary_or_evaluations(tmp_path):
    path = make_run(tmp_path, "mopo", HOPPER, 0, [], finished=None, epochs_total=7)
    run = read_run(path)
    assert (run.finished, run.epochs_completed, run.epochs_total, len(run.metrics)) == (False, 0, 7, 0)
    with pytest.raises(RunFolderError, match="none of the 1 runs has completed an evaluation"):
        format_tables([run])
    make_run(tmp_path, "mopo", HOPPER, 1, [40.0], finished=False, epochs_total=7)
    text = format_tables(read_runs([tmp_path]), kinds=("final",))
    assert "| offline_mbrl/hopper/medium-v0 | 40.0† |" in text
    assert f"- mopo / {HOPPER} seed 0: 0/7" in text  # listed although it has no score yet


def test_dataset_labels_fall_back_to_spec_on_collision():
    labels = dataset_labels(["/a/hopper-medium-v2.hdf5", "/b/hopper-medium-v2.hdf5", "minari:x/y-v0", "c.npz"])
    assert labels == {
        "/a/hopper-medium-v2.hdf5": "/a/hopper-medium-v2.hdf5",
        "/b/hopper-medium-v2.hdf5": "/b/hopper-medium-v2.hdf5",
        "minari:x/y-v0": "x/y-v0",
        "c.npz": "c",
    }


def test_bad_run_folders_raise_named_errors(tmp_path):
    with pytest.raises(RunFolderError, match="is not an existing folder"):
        read_runs([tmp_path / "nope"])
    with pytest.raises(RunFolderError, match="no run folder"):
        read_runs([tmp_path])
    a = make_run(tmp_path / "a", "mopo", HOPPER, 0, [1.0])
    make_run(tmp_path / "b", "mopo", HOPPER, 0, [1.0])
    with pytest.raises(RunFolderError, match="two run folders for mopo / .* / seed 0"):
        read_runs([tmp_path])
    make_run(tmp_path / "a", "mopo", HOPPER, 1, [1.0], variant="cfg1")
    with pytest.raises(RunFolderError, match=r"has runs from 2 configs \['cfg0', 'cfg1'\]"):
        read_runs([tmp_path / "a"])
    (a / "summary.json").write_text(json.dumps({"epochs_completed": 4, "epochs_total": 12, "finished": True}))
    with pytest.raises(RunFolderError, match="epochs_completed = 4 but metrics.csv has 1 rows"):
        read_run(a)
    (a / "summary.json").write_text("[]")
    with pytest.raises(RunFolderError, match="summary.json: the run summary is not a mapping"):
        read_run(a)
    (a / "config.yaml").write_text(yaml.safe_dump({"algo": "mopo", "dataset": HOPPER}))
    with pytest.raises(RunFolderError, match=r"config.yaml: missing keys \['seed', 'epochs'\]"):
        read_run(a)
    bad = make_run(tmp_path / "c", "mopo", HOPPER, 0, [1.0, np.nan, 2.0])
    with pytest.raises(RunFolderError, match=r"'eval/normalized_score' is empty at epochs \[2\]"):
        seed_scores([read_run(bad)])
    pd.DataFrame({"epoch": [1, 1], "step": [1000, 1000]}).to_csv(bad / "metrics.csv", index=False)
    with pytest.raises(RunFolderError, match="'epoch' must be strictly increasing"):
        read_run(bad)


def test_cli_tabulate(runs_root, capsys):
    assert main(["tabulate", str(runs_root), "--format", "csv", "--score", "final", "--algos", "mopo"]) == 0
    tidy = pd.read_csv(StringIO(capsys.readouterr().out))
    assert set(tidy["kind"]) == {"final"} and set(tidy["algo"]) == {"mopo"}
    assert main(["tabulate", str(runs_root), "--algos", "cql"]) == 2
    assert "no runs for algorithms ['cql']" in capsys.readouterr().err


def test_reach_is_the_first_step_at_the_threshold_and_counts_the_seeds_that_never_do(tmp_path):
    make_run(tmp_path, "mbpo", HOPPER, 0, [10.0, 60.0, 40.0, 70.0])  # first >= 50 at step 2000 (not the best, 4000)
    make_run(tmp_path, "mbpo", HOPPER, 1, [50.0, 0.0, 0.0, 0.0])  # reaches exactly at its first evaluation
    make_run(tmp_path, "mbpo", HOPPER, 2, [10.0, 20.0, 30.0, 40.0])  # never
    make_run(tmp_path, "sac", HOPPER, 0, [10.0] * 4)
    make_run(tmp_path, "sac", HOPPER, 1, [49.9] * 3, finished=False)
    runs = read_runs([tmp_path])
    per_seed = seed_scores(runs, threshold=50.0).set_index(["algo", "seed"])
    assert per_seed.loc[("mbpo", 0), "reach"] == 2000 and per_seed.loc[("mbpo", 1), "reach"] == 1000
    assert per_seed["reach"].isna().tolist() == [False, False, True, True, True]
    text = format_tables(runs, kinds=("reach",), threshold=50.0, decimals=0)
    assert "Reach 50: the step of each seed's first evaluation scoring at least 50." in text
    row = "| offline_mbrl/hopper/medium-v0 | 1500 ± 707 (500) [2 of 3 reached] | not reached [0 of 2 reached]† |"
    assert row in text
    with pytest.raises(RunFolderError, match="needs a threshold"):
        format_tables(runs, kinds=("reach",))


def test_at_step_compares_runs_at_equal_budget(tmp_path):
    make_run(tmp_path, "mopo", HOPPER, 0, [1.0, 2.0, 3.0, 4.0, 5.0], finished=False)  # passed step 3000
    make_run(tmp_path, "mopo", HOPPER, 1, [7.0, 8.0], finished=False)  # stopped before it
    make_run(tmp_path, "admpo-off", HOPPER, 0, [9.0] * 5)
    runs = read_runs([tmp_path])
    per_seed = seed_scores(runs, at_step=3000).set_index(["algo", "seed"])
    assert per_seed.loc[("mopo", 0), "final"] == 3.0 and per_seed.loc[("mopo", 0), "last10"] == 2.0
    assert per_seed["unfinished"].to_dict() == {("admpo-off", 0): False, ("mopo", 0): False, ("mopo", 1): True}
    text = format_tables(runs, kinds=("final",), at_step=3000)
    assert "Evaluations up to step 3,000 only" in text and "| 9.0 [n=1] | 5.5 ± 3.5 (2.5)† |" in text
    assert "stopped before step 3,000" in text and f"- mopo / {HOPPER} seed 1: 2/12" in text
    assert f"- mopo / {HOPPER} seed 0:" not in text
    late = make_run(tmp_path, "sac", HOPPER, 0, [9.0] * 2)
    metrics = pd.read_csv(late / "metrics.csv")
    metrics["step"] += 5000  # first evaluation at step 6000
    metrics.to_csv(late / "metrics.csv", index=False)
    text = format_tables(read_runs([tmp_path]), kinds=("final",), at_step=3000)
    assert f"Not in the tables, no evaluation up to step 3,000:\n- sac / {HOPPER} seed 0" in text
    assert "| Task | admpo-off | mopo |" in text
    with pytest.raises(RunFolderError, match="has completed an evaluation at step <= 500"):
        format_tables(read_runs([tmp_path]), at_step=500)


def test_cli_tabulate_reach_needs_its_threshold(runs_root, capsys):
    assert main(["tabulate", str(runs_root), "--score", "reach"]) == 2
    assert "--threshold goes with --score reach" in capsys.readouterr().err
    assert main(["tabulate", str(runs_root), "--threshold", "5"]) == 2
    assert main(["tabulate", str(runs_root), "--score", "reach", "--threshold", "85", "--at-step", "12000"]) == 0
    assert "| walker2d-medium-v2 | 1000.0 [1 of 3 reached]† |" in capsys.readouterr().out


def test_markdown_rows_header_separator_and_empty_error():
    from offline_mbrl.analysis.tables import markdown_rows

    assert markdown_rows([["a", "b"], ["1", "2"]]) == "| a | b |\n| --- | --- |\n| 1 | 2 |"
    with pytest.raises(ValueError, match="need at least a header row"):
        markdown_rows([])


def test_unfinished_runs_below_the_working_directory_are_shown_relative(runs_root, monkeypatch):
    monkeypatch.chdir(runs_root)
    text = format_tables(read_runs(["."]))
    assert f"- mopo / {WALKER} seed 0: 3/12 (mopo/-data-walker2d-medium-v2-hdf5/cfg0/seed0)" in text


def test_reading_run_folders_imports_no_torch():
    """``tabulate`` and the CLI parser read run folders through ``runs.RunFolder`` without importing torch."""
    import subprocess
    import sys

    code = "import sys, offline_mbrl.analysis.runs_io, offline_mbrl.cli.train_cmd; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_reference_columns_stand_before_the_algorithms_with_their_average(runs_root):
    text = format_tables(
        read_runs([runs_root]),
        kinds=("final",),
        references={"behaviour@offline_mbrl/hopper/medium-v0": 33.7, "behaviour@walker2d-medium-v2": 60.2, "bc": 5},
    )
    table = text.split("\n\n")[2].splitlines()
    assert table[0] == "| Task | behaviour | bc | admpo-off | mopo |"
    assert table[2] == "| offline_mbrl/hopper/medium-v0 | 33.7 | 5.0 | 104.0 ± 4.0 (2.3) | 65.0 ± 7.1 (5.0) [n=2] |"
    assert table[3].startswith("| walker2d-medium-v2 | 60.2 | 5.0 | 80.0 ± 10.0 (5.8)† |")
    assert table[4] == f"| Average | {np.mean([33.7, 60.2]):.1f} | 5.0 | 92.0 | 47.5 |"
    assert "behaviour, bc: reference scores given with --reference (not runs)." in text
    one_task = format_tables(read_runs([runs_root]), kinds=("final",), references={"behaviour@walker2d-medium-v2": 9})
    assert one_task.split("\n\n")[2].splitlines()[-1] == "| Average | — | 92.0 | 47.5 |"  # not on every task
    tidy = pd.read_csv(StringIO(format_tables(read_runs([runs_root]), fmt="csv", references={"behaviour": 33.7})))
    rows = tidy[tidy.algo == "behaviour"]
    assert sorted(rows.task) == sorted(["Average", "offline_mbrl/hopper/medium-v0", "walker2d-medium-v2"] * 2)
    assert (rows["mean"] == 33.7).all() and rows[["std", "n"]].isna().all().all()


@pytest.mark.parametrize(
    ("references", "kinds", "message"),
    [
        ({"behaviour@hopper": 1.0}, ("final",), r"reference 'behaviour@hopper': no task 'hopper' in the table"),
        ({"mopo": 1.0}, ("final",), r"reference 'mopo': 'mopo' is an algorithm of the table"),
        ({"behaviour": 1.0}, ("reach",), r"reference scores cannot stand in a 'reach' table"),
    ],
)
def test_bad_references_are_refused(runs_root, references, kinds, message):
    with pytest.raises(RunFolderError, match=message):
        format_tables(read_runs([runs_root]), kinds=kinds, threshold=50.0, references=references)


def test_cli_tabulate_reference(runs_root, capsys):
    assert main(["tabulate", str(runs_root), "--score", "final", "--reference", "behaviour=33.7", "bc=1"]) == 0
    assert "| Task | behaviour | bc | admpo-off | mopo |" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse refuses the value before any work
        main(["tabulate", str(runs_root), "--reference", "behaviour=high"])
    assert "expected NAME=SCORE with a finite number, got 'behaviour=high'" in capsys.readouterr().err


def test_unfinished_run_may_hold_epochs_after_its_last_checkpoint(tmp_path):
    """summary.json counts the checkpointed epochs; metrics.csv may hold more until the next checkpoint."""
    path = make_run(tmp_path, "mopo", HOPPER, 0, [1.0, 2.0, 3.0], finished=False)
    summary = json.loads((path / "summary.json").read_text())
    (path / "summary.json").write_text(json.dumps({**summary, "epochs_completed": 2}))
    run = read_run(path)
    assert (run.epochs_completed, len(run.metrics), run.finished) == (3, 3, False)
    (path / "summary.json").write_text(json.dumps({**summary, "epochs_completed": 4}))
    with pytest.raises(RunFolderError, match="epochs_completed = 4 but metrics.csv has 3 rows"):
        read_run(path)


def test_read_run_while_the_run_writes_an_epoch(tmp_path, monkeypatch):
    """A run appends its metrics row, then writes summary.json: a reader between the two reads must not fail."""
    from offline_mbrl.runs import RunFolder

    path = make_run(tmp_path, "mopo", HOPPER, 0, [1.0, 2.0], finished=False)
    summary = json.loads((path / "summary.json").read_text())
    read_metrics = RunFolder.read_metrics

    def read_then_write_next_epoch(folder):
        metrics = read_metrics(folder)
        if not (path / "done").exists():  # the run finishes epoch 3 right after the reader got its metrics
            (path / "done").touch()
            with (path / "metrics.csv").open("a") as f:
                f.write("3,3000,30.0,1.0,3.0,2.0,9.0,0.5\n")
            (path / "summary.json").write_text(json.dumps({**summary, "epochs_completed": 3}))
        return metrics

    monkeypatch.setattr(RunFolder, "read_metrics", read_then_write_next_epoch)
    assert read_run(path).epochs_completed == 2
    assert read_run(path).epochs_completed == 3
