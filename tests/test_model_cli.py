import pytest

from offline_mbrl.cli import main
from offline_mbrl.models.checkpoint import load_model
from tests.models_helpers import hopper_dataset


@pytest.fixture(autouse=True)
def fake_loader(monkeypatch):
    """The CLI loads through ``offline_mbrl.data.load.load_dataset``; serve the small real-Hopper dataset."""
    specs = []

    def load(spec):
        specs.append(spec)
        return hopper_dataset()

    monkeypatch.setattr("offline_mbrl.data.load.load_dataset", load)
    return specs


@pytest.mark.parametrize("model, kind, rows", [("adm", "ADM", ["k", "1", "2"]), ("boot-rnn", "BootRNN", ["history", "1", "2"]),
                                               ("ensemble", "ProbabilisticEnsemble", ["member", "0", "6"])])
def test_fit_saves_a_loadable_model_and_prints_the_table(tmp_path, capsys, fake_loader, model, kind, rows):
    out = tmp_path / "m.pt"
    args = ["model", "fit", "--model", model, "--dataset", "hopper.hdf5", "--epochs", "1", "--out", str(out),
            "--seed", "3", "--no-progress"]
    if model != "ensemble":
        args += ["--max-backtrack", "2"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert fake_loader == ["hopper.hdf5"]
    assert "1 epochs, kept epoch 1" in printed and f"saved {out}" in printed
    table = [line.split() for line in printed.splitlines()]
    assert [rows[0], "holdout", "MSE"] in table
    assert {row[0] for row in table if len(row) >= 2} >= set(rows) | {"mean"}
    loaded = load_model(out)
    assert type(loaded).__name__ == kind
    if model == "ensemble":
        assert sum("elite" in line for line in printed.splitlines()) == 5
    else:
        assert loaded.config.max_backtrack == 2 and not any(row[0] == "3" for row in table if row)


def test_default_output_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["model", "fit", "--model", "adm", "--dataset", "minari:mujoco/hopper/medium-v0", "--epochs", "1",
                 "--max-backtrack", "2", "--no-progress"]) == 0
    assert (tmp_path / "runs/models/adm-mujoco_hopper_medium-v0-seed0.pt").exists()


@pytest.mark.parametrize("extra, message", [(["--model", "ensemble", "--max-backtrack", "3"], "--max-backtrack applies"),
                                            (["--model", "adm", "--device", "gpu7"], "--device")])
def test_errors_are_clean(capsys, extra, message):
    assert main(["model", "fit", "--dataset", "x.hdf5", "--epochs", "1", "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err
