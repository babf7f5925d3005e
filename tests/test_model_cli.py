import pytest

from offline_mbrl.cli import main
from offline_mbrl.models.checkpoint import load_model
from offline_mbrl.models.fit import fit_progress
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


@pytest.mark.parametrize(
    "model, kind, rows",
    [
        ("adm", "ADM", ["k", "1", "2"]),
        ("boot-rnn", "BootRNN", ["history", "1", "2"]),
        ("ensemble", "ProbabilisticEnsemble", ["member", "0", "6"]),
    ],
)
def test_fit_saves_a_loadable_model_and_prints_the_table(tmp_path, capsys, fake_loader, model, kind, rows):
    out = tmp_path / "m.pt"
    args = [
        "model",
        "fit",
        "--model",
        model,
        "--dataset",
        "hopper.hdf5",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--seed",
        "3",
        "--no-progress",
    ]
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
    assert fit_progress(out).saved and fit_progress(out).epochs == 1  # the fit's record is kept with the model
    if model == "ensemble":
        assert sum("elite" in line for line in printed.splitlines()) == 5
    else:
        assert loaded.config.max_backtrack == 2 and not any(row[0] == "3" for row in table if row)


def test_default_output_path(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "model",
                "fit",
                "--model",
                "adm",
                "--dataset",
                "minari:mujoco/hopper/medium-v0",
                "--epochs",
                "1",
                "--max-backtrack",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (tmp_path / "runs/models/adm-mujoco_hopper_medium-v0-seed0.pt").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "ensemble", "--max-backtrack", "3"], "--max-backtrack applies"),
        (["--model", "adm", "--device", "gpu7"], "--device"),
    ],
)
def test_errors_are_clean(capsys, extra, message):
    assert main(["model", "fit", "--dataset", "x.hdf5", "--epochs", "1", "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ --weights


@pytest.fixture
def fit_calls(monkeypatch):
    """Record the ``sample_weights`` the CLI hands to ``fit`` (and run the real fit)."""
    from offline_mbrl.models import fit as fit_module

    calls, real_fit = [], fit_module.fit

    def recording_fit(model, dataset, config=None, sample_weights=None, **kwargs):
        calls.append(sample_weights)
        return real_fit(model, dataset, config, sample_weights=sample_weights, **kwargs)

    monkeypatch.setattr(fit_module, "fit", recording_fit)
    return calls


def _with_collection_steps(monkeypatch):
    from dataclasses import replace

    import numpy as np

    dataset = replace(hopper_dataset(), collection_step=np.arange(400))
    monkeypatch.setattr("offline_mbrl.data.load.load_dataset", lambda spec: dataset)
    return dataset


def test_fit_with_pmac_weights(tmp_path, monkeypatch, capsys, fit_calls):
    import numpy as np

    from offline_mbrl.algos.weighting import pmac_weights

    dataset = _with_collection_steps(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "model",
                "fit",
                "--model",
                "adm",
                "--dataset",
                "replay.hdf5",
                "--epochs",
                "1",
                "--max-backtrack",
                "2",
                "--weights",
                "pmac-tom",
                "--no-progress",
            ]
        )
        == 0
    )
    expected = pmac_weights(dataset.collection_step, "pmac-tom")
    np.testing.assert_allclose(fit_calls[0], expected, rtol=1e-12)
    ess = 1.0 / np.square(expected).sum()
    printed = capsys.readouterr().out
    assert f"weights pmac-tom: effective sample size {ess:.1f} of 400 rows" in printed
    assert f"max {expected.max() * 400:.4g} / min {expected.min() * 400:.4g} x uniform" in printed
    assert (tmp_path / "runs/models/adm-replay.hdf5-pmac-tom-seed0.pt").exists()


def test_fit_uniform_passes_no_weights(tmp_path, capsys, fit_calls):
    assert (
        main(
            [
                "model",
                "fit",
                "--model",
                "ensemble",
                "--dataset",
                "x.hdf5",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "m.pt"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert fit_calls == [None] and "weights" not in capsys.readouterr().out


def test_fit_with_tom_weights(tmp_path, capsys, fit_calls):
    import numpy as np
    import torch

    from offline_mbrl.agents.sac import TanhGaussianActor
    from offline_mbrl.persist import save_atomic

    torch.manual_seed(0)
    actor = tmp_path / "expert.pt"
    save_atomic(TanhGaussianActor(11, 3, (8, 8)).file_state(), actor)
    args = [
        "model",
        "fit",
        "--model",
        "adm",
        "--dataset",
        "x.hdf5",
        "--epochs",
        "1",
        "--max-backtrack",
        "2",
        "--weights",
        "tom",
        "--target-policy",
        str(actor),
        "--target-steps",
        "40",
        "--tom-q-steps",
        "3",
        "--tom-disc-epochs",
        "1",
        "--out",
        str(tmp_path / "m.pt"),
        "--no-progress",
    ]
    assert main(args) == 0
    weights = fit_calls[0]
    assert weights.shape == (400,) and weights.sum() == pytest.approx(1.0) and weights.std() > 0
    assert "weights tom: effective sample size" in capsys.readouterr().out
    assert main(args) == 0  # same seed, same weights
    np.testing.assert_array_equal(fit_calls[1], weights)


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--weights", "pmac"],
            "Hopper-v5-random-400-seed0: weights 'pmac' need field 'collection_step' (the environment "
            "step of each row), which only replay-buffer datasets carry (e.g. medium-replay",
        ),
        (["--weights", "tom"], "TOM weights need --target-policy"),
        (["--weights", "pmac", "--target-policy", "a.pt"], "--target-policy applies to --weights tom only"),
        (["--weights", "tom", "--target-policy", "a.pt"], "a.pt: checkpoint file does not exist"),
        (["--weights", "tom", "--target-policy", "a.pt", "--tom-q-steps", "0"], "TOMConfig.q_steps must be > 0"),
    ],
)
def test_weight_errors_are_clean(capsys, extra, message):
    assert (
        main(["model", "fit", "--model", "adm", "--dataset", "x.hdf5", "--epochs", "1", "--no-progress", *extra]) == 2
    )
    assert message in capsys.readouterr().err


def test_fit_cli_resumes_a_stopped_fit_and_removes_its_checkpoint(tmp_path, monkeypatch, capsys, fake_loader):
    from offline_mbrl.models import fit as fit_module

    out = tmp_path / "m.pt"
    real_fit = fit_module.fit

    def stopped_after_one_epoch(model, dataset, config=None, **kwargs):
        from dataclasses import replace

        real_fit(model, dataset, replace(config, max_epochs=1), **kwargs)
        raise KeyboardInterrupt  # stopped before the model is saved

    monkeypatch.setattr(fit_module, "fit", stopped_after_one_epoch)
    args = [
        "model",
        "fit",
        "--model",
        "ensemble",
        "--dataset",
        "tiny",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert (tmp_path / "m.pt.partial").is_file() and not out.exists()
    monkeypatch.setattr(fit_module, "fit", real_fit)
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"resuming the fit from {tmp_path / 'm.pt.partial'}" in printed and ": 2 epochs" in printed
    assert out.is_file() and not (tmp_path / "m.pt.partial").exists()


def test_validation_batch_reaches_the_fit_and_a_bad_one_is_a_clean_error(tmp_path, capsys, monkeypatch):
    from offline_mbrl.models import fit as fit_module

    configs, real_fit = [], fit_module.fit

    def recording_fit(model, dataset, config=None, **kw):
        configs.append(config)
        return real_fit(model, dataset, config, **kw)

    monkeypatch.setattr(fit_module, "fit", recording_fit)
    base = ["model", "fit", "--model", "adm", "--dataset", "x.hdf5", "--epochs", "1", "--no-progress"]
    assert main([*base, "--max-backtrack", "2", "--validation-batch", "16", "--out", str(tmp_path / "m.pt")]) == 0
    assert main([*base, "--max-backtrack", "2", "--batch-size", "51", "--out", str(tmp_path / "b.pt")]) == 0
    assert [(c.validation_batch, c.batch_size) for c in configs] == [(16, 256), (None, 51)]
    assert main([*base, "--validation-batch", "0", "--out", str(tmp_path / "n.pt")]) == 2
    assert "'validation_batch' must be >= 1 or None, got 0" in capsys.readouterr().err


def test_init_from_starts_from_the_saved_weights_and_records_the_start(tmp_path, capsys, monkeypatch):
    import torch

    from offline_mbrl.models import fit as fit_module

    base = ["model", "fit", "--model", "adm", "--dataset", "x.hdf5", "--max-backtrack", "2", "--no-progress"]
    first = tmp_path / "first.pt"
    assert main([*base, "--epochs", "1", "--out", str(first)]) == 0
    starts, real_fit = [], fit_module.fit

    def recording_fit(model, dataset, config=None, **kw):
        starts.append({key: value.clone() for key, value in model.state_dict().items()})
        return real_fit(model, dataset, config, **kw)

    monkeypatch.setattr(fit_module, "fit", recording_fit)
    warm = tmp_path / "warm.pt"
    assert main([*base, "--epochs", "1", "--batch-size", "51", "--init-from", str(first), "--out", str(warm)]) == 0
    saved = load_model(first).state_dict()
    assert all(torch.equal(starts[0][key], saved[key]) for key in saved)
    initial = torch.load(warm, weights_only=True)["fit"]["fingerprint"]["initial"]
    assert initial["from"] == str(first) and len(initial["weights_sha1"]) == 40
    capsys.readouterr()
    ensemble = ["model", "fit", "--model", "ensemble", "--dataset", "x.hdf5", "--epochs", "1", "--no-progress"]
    assert main([*ensemble, "--init-from", str(first), "--out", str(tmp_path / "e.pt")]) == 2
    assert f"--init-from {first}: a saved 'adm' model, this fit is of a 'ensemble' model" in capsys.readouterr().err
    longer = [*base[:-3], "--max-backtrack", "3", "--epochs", "1", "--no-progress"]
    assert main([*longer, "--init-from", str(first), "--out", str(tmp_path / "m3.pt")]) == 2
    assert f"--init-from {first}: a model of other settings: max_backtrack 2 (this fit: 3)" in capsys.readouterr().err
    other_seed = [*base, "--seed", "1", "--epochs", "1", "--init-from", str(first), "--out", str(tmp_path / "s1.pt")]
    assert main(other_seed) == 2
    assert f"--init-from {first}: its fit used another dataset or holdout: seed 0 (this fit: 1)" in (
        capsys.readouterr().err
    )
