"""Learning curves from synthetic run folders: the PNG is written and the CSV holds what was plotted."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from offline_mbrl.analysis.plots import MARKED_POINTS, curve_summary, draw_curves, plot_curves
from offline_mbrl.analysis.runs_io import RunFolderError, evaluations, read_runs
from offline_mbrl.cli import main
from test_tables import HOPPER, WALKER, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCORES = np.array([[10.0, 20.0, 30.0, 40.0], [12.0, 26.0, 30.0, 50.0], [14.0, 20.0, 36.0, 60.0]])  # (seeds, epochs)


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    for seed, row in enumerate(SCORES):
        make_run(tmp_path / "runs", "admpo-off", HOPPER, seed, row.tolist(), epochs_total=4)
    make_run(tmp_path / "runs", "mopo", HOPPER, 0, [5.0, 6.0, 7.0, 8.0], epochs_total=4)
    make_run(tmp_path / "runs", "mopo", HOPPER, 1, [7.0, 8.0], epochs_total=4, finished=False)
    make_run(tmp_path / "runs", "mopo", WALKER, 0, [1.0, 2.0, 3.0, 4.0], epochs_total=4)
    return tmp_path / "runs"


def test_curves_png_and_csv_of_plotted_numbers(runs_root, tmp_path):
    png, csv = plot_curves(read_runs([runs_root]), tmp_path / "fig" / "curves.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and csv == tmp_path / "fig" / "curves.csv"
    summary = pd.read_csv(csv)
    assert list(summary.columns) == ["task", "algo", "step", "mean", "std", "n", "sem", "band_low", "band_high"]
    adm = summary[summary.algo == "admpo-off"].sort_values("step")
    np.testing.assert_array_equal(adm["step"], [1000, 2000, 3000, 4000])
    np.testing.assert_allclose(adm["mean"], SCORES.mean(axis=0))
    np.testing.assert_allclose(adm["std"], SCORES.std(axis=0, ddof=1))
    np.testing.assert_allclose(adm["band_high"], SCORES.mean(axis=0) + SCORES.std(axis=0, ddof=1))
    mopo = summary[(summary.algo == "mopo") & (summary.task == "offline_mbrl/hopper/medium-v0")].sort_values("step")
    np.testing.assert_array_equal(mopo["n"], [2, 2, 1, 1])  # the unfinished seed stops after 2 evaluations
    np.testing.assert_allclose(mopo["mean"], [6.0, 7.0, 7.0, 8.0])
    assert mopo["std"].iloc[2:].isna().all()
    assert set(summary["task"]) == {"offline_mbrl/hopper/medium-v0", "walker2d-medium-v2"}


def test_standard_error_band(runs_root):
    summary = curve_summary(evaluations(read_runs([runs_root])), band="se")
    adm = summary.query("algo == 'admpo-off'").sort_values("step")
    sem = SCORES.std(axis=0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(adm["band_low"], SCORES.mean(axis=0) - sem)


def test_curves_errors_and_cli(runs_root, tmp_path, capsys):
    with pytest.raises(RunFolderError, match="must be a .png file"):
        plot_curves(read_runs([runs_root]), tmp_path / "curves.pdf")
    with pytest.raises(RunFolderError, match="unknown band 'ci'"):
        plot_curves(read_runs([runs_root]), tmp_path / "curves.png", band="ci")
    out = tmp_path / "cli.png"
    assert main(["analyze", "curves", str(runs_root), "--out", str(out), "--value", "return"]) == 0
    assert out.exists() and f"wrote {out}" in capsys.readouterr().out
    summary = pd.read_csv(out.with_suffix(".csv"))
    assert summary.query("algo == 'mopo' and step == 4000 and task == 'walker2d-medium-v2'")["mean"].item() == 40.0


def test_at_step_draws_every_curve_on_the_same_budget(runs_root, tmp_path):
    out = tmp_path / "budget.png"
    assert main(["analyze", "curves", str(runs_root), "--out", str(out), "--at-step", "2500"]) == 0
    summary = pd.read_csv(out.with_suffix(".csv"))
    assert sorted(summary["step"].unique()) == [1000, 2000]
    adm = summary[summary.algo == "admpo-off"].sort_values("step")
    np.testing.assert_allclose(adm["mean"], SCORES[:, :2].mean(axis=0))
    with pytest.raises(RunFolderError, match="has completed an evaluation at step <= 500"):
        plot_curves(read_runs([runs_root]), tmp_path / "none.png", at_step=500)


def test_reference_lines_in_every_panel_and_cli_errors(runs_root, tmp_path, capsys):
    evals = evaluations(read_runs([runs_root]), "normalized")
    grid = draw_curves(evals, "normalized", "sd", {"behaviour": 33.7})
    for ax in grid.axes.flat:
        flat = [line for line in ax.get_lines() if len(line.get_ydata()) and np.allclose(line.get_ydata(), 33.7)]
        assert len(flat) == 1 and ax.texts[-1].get_text() == "behaviour 33.7"
    out = tmp_path / "ref.png"
    assert main(["analyze", "curves", str(runs_root), "--out", str(out), "--reference", "behaviour=33.7"]) == 0
    for bad in ("behaviour", "behaviour=x", "=3", "b=nan"):
        with pytest.raises(SystemExit):
            main(["analyze", "curves", str(runs_root), "--out", str(out), "--reference", bad])
        assert "expected NAME=SCORE with a finite number" in capsys.readouterr().err


def test_a_task_reference_is_drawn_in_its_panel_only(runs_root):
    evals = evaluations(read_runs([runs_root]), "normalized")
    tasks = sorted(evals["task"].unique())
    assert len(tasks) > 1
    grid = draw_curves(evals, "normalized", "sd", {f"behaviour@{tasks[0]}": 12.5})
    for task, ax in grid.axes_dict.items():
        lines = [line for line in ax.get_lines() if len(line.get_ydata()) and np.allclose(line.get_ydata(), 12.5)]
        assert len(lines) == (task == tasks[0])
        assert [t.get_text() for t in ax.texts] == (["behaviour 12.5"] if task == tasks[0] else [])
    with pytest.raises(RunFolderError, match=r"reference 'b@nope': no panel 'nope'"):
        draw_curves(evals, "normalized", "sd", {"b@nope": 1.0})


def test_short_curves_get_markers_so_a_one_point_curve_shows(runs_root):
    evals = evaluations(read_runs([runs_root]), "normalized")
    one_point = evals[evals["step"] == evals["step"].min()]

    def markers(frame):
        grid = draw_curves(frame, "normalized", "sd", {})
        return {line.get_marker() for ax in grid.axes.flat for line in ax.get_lines() if len(line.get_xdata())}

    assert markers(one_point) == {"o"}
    long = pd.concat([evals.assign(step=evals["step"] + 1000 * i) for i in range(MARKED_POINTS)])
    assert "o" not in markers(long)


def _online(path: Path, env_id: str = "Hopper-v5") -> Path:
    """Turn a ``make_run`` folder into an online run's: no dataset, an environment."""
    config = yaml.safe_load((path / "config.yaml").read_text())
    (path / "config.yaml").write_text(yaml.safe_dump({**config, "dataset": None, "env_id": env_id}))
    return path


def test_labelled_paths_show_variants_of_one_algorithm_side_by_side(tmp_path, capsys):
    small = [make_run(tmp_path / "small", "mopo", HOPPER, seed, [1.0, 2.0], variant="cfg5k") for seed in (0, 1)]
    large = [make_run(tmp_path / "large", "mopo", HOPPER, s, [3.0, 5.0 + s], variant="cfg50k") for s in (0, 1)]
    paths = [tmp_path / "small", tmp_path / "large"]
    with pytest.raises(RunFolderError, match=r"two run folders for mopo .* seed 0: .*LABEL=PATH"):
        read_runs(paths)
    with pytest.raises(RunFolderError, match=r"from 2 configs \['cfg50k', 'cfg5k'\].*LABEL=PATH"):
        read_runs([small[0], large[1]])
    runs = read_runs(paths, labels=["mopo-5k", "mopo-50k"])
    assert sorted({run.algo for run in runs}) == ["mopo-50k", "mopo-5k"]
    with pytest.raises(RunFolderError, match="under two runs paths labelled a and b"):
        read_runs([tmp_path / "small", tmp_path / "small" / "mopo"], labels=["a", "b"])
    with pytest.raises(RunFolderError, match="need one non-empty label or None per path"):
        read_runs(paths, labels=["a"])
    out = tmp_path / "fig.png"
    assert main(["analyze", "curves", f"mopo-5k={paths[0]}", f"mopo-50k={paths[1]}", "--out", str(out)]) == 0
    plotted = pd.read_csv(out.with_suffix(".csv")).set_index(["algo", "step"])["mean"]
    assert plotted[("mopo-5k", 2000)] == 2.0 and plotted[("mopo-50k", 2000)] == 5.5
    capsys.readouterr()
    assert main(["tabulate", f"mopo-5k={paths[0]}", f"mopo-50k={paths[1]}", "--format", "csv", "--score", "final"]) == 0
    tidy = pd.read_csv(StringIO(capsys.readouterr().out)).query("task == 'offline_mbrl/hopper/medium-v0'")
    tidy = tidy.set_index("algo")["mean"]
    assert tidy["mopo-5k"] == 2.0 and tidy["mopo-50k"] == 5.5
    with pytest.raises(SystemExit):
        main(["tabulate", f"={paths[0]}"])
    assert "expected PATH or LABEL=PATH" in capsys.readouterr().err


def test_x_axis_counts_environment_steps_for_online_runs_whatever_their_label(tmp_path):
    online = _online(make_run(tmp_path / "on", "sac", "Hopper-v5", 0, [100.0, 200.0]))
    make_run(tmp_path / "off", "mopo", HOPPER, 0, [1.0, 2.0])

    def x_label(paths, labels=None):
        grid = draw_curves(evaluations(read_runs(paths, labels), "return"), "return", "sd", {})
        assert grid.axes.flat[0].xaxis.get_major_formatter()(60000) == "60k"  # short ticks that do not collide
        return grid.axes.flat[0].get_xlabel()

    assert x_label([online], ["sac-utd5"]) == "environment step"
    assert x_label([tmp_path / "off"], ["mopo-variant"]) == "SAC step"
    assert x_label([tmp_path]) == "SAC step (offline) / environment step (online)"
