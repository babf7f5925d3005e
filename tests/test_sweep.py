"""`offline-mbrl sweep`: spec validation, expansion to trials, commands, and tiny sweeps on a local 2-CPU Ray that
finish, skip what is done when run again, and keep a failing trial from stopping the others."""

import json
import os
from pathlib import Path

import pytest
import yaml

from offline_mbrl import sweep
from offline_mbrl.cli import main
from offline_mbrl.config import CONFIG_DIR
from offline_mbrl.errors import ConfigError
from tests.test_offline import TINY

DATASET = "minari:test/hopper/sweep-v0"
# TINY without the model sizes: `model fit` makes default-size models (1 fit epoch keeps them cheap); a list value
# is a one-point grid axis
SMALL = {
    key: [value] if isinstance(value, list) else value
    for key, value in ((key, yaml.safe_load(text)) for key, text in (text.split("=", 1) for text in TINY))
    if not key.startswith("dynamics.") or key in ("dynamics.max_epochs", "dynamics.max_backtrack")
}


@pytest.fixture(scope="module")
def sweep_dataset(hopper_dataset):
    from offline_mbrl.data.minari_io import write_minari

    write_minari(
        hopper_dataset, DATASET[len("minari:") :], env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0
    )
    return DATASET


@pytest.fixture(scope="module")
def local_ray(sweep_dataset):
    """A local Ray of 2 CPUs for the module; its workers inherit MINARI_DATASETS_PATH (conftest) from here."""
    import ray

    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}}
    )
    yield
    ray.shutdown()


def _spec(tmp_path: Path, **changes) -> Path:
    spec = {
        "algos": ["admpo-off", "mopo"],
        "datasets": [DATASET],
        "seeds": [0, 1],
        "epochs": 1,
        "set": SMALL,
        "runs": str(tmp_path / "runs"),
    } | changes
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"algo": ["mopo"]}, "unknown key 'algo'"),
        ({"seeds": []}, "key 'seeds' must be a non-empty list"),
        ({"seeds": [0, "1"]}, "key 'seeds' must be a non-empty list of ints >= 0"),
        ({"algos": ["sac"]}, "key 'algos'"),
        ({"epochs": 0}, "key 'epochs' must be an int >= 1"),
        ({"set": {"rollout.penalty_coef": []}}, "key 'set.rollout.penalty_coef'"),
        ({"algo_set": {"bc": {}}}, "key 'algo_set.bc'"),
        ({"dynamics": {"shared": True}}, "key 'dynamics'"),
        ({"dynamics": {"share": True, "seed": -1}}, "key 'dynamics.seed'"),
        ({"config": "no/such.yaml"}, "key 'config'"),
    ],
)
def test_a_bad_spec_is_rejected_naming_the_key(change, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        sweep.load_spec(_spec(tmp_path, **change))


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_spec_is_valid(path):
    assert sweep.load_spec(path).algos


def test_expansion_grid_per_algo_overrides_and_shared_models(sweep_dataset, tmp_path):
    spec = sweep.load_spec(
        _spec(
            tmp_path,
            set=SMALL | {"rollout.penalty_coef": [0.5, 1.0], "sac.hidden_dims": [[16, 16]]},
            algo_set={"mopo": {"sac.lr_schedule_epochs": 3000}},
            dynamics={"share": True, "seed": 0},
        )
    )
    trials = sweep.expand(spec)
    assert len(trials) == 2 * 2 * 2 and all(t.error is None for t in trials)
    assert len({t.run_dir for t in trials}) == len(trials)
    mopo = [t for t in trials if t.algo == "mopo"]
    assert all(t.config.sac.lr_schedule_epochs == 3000 and t.config.sac.hidden_dims == (16, 16) for t in mopo)
    assert {t.config.rollout.penalty_coef for t in mopo} == {0.5, 1.0}
    # one model per algorithm (its kind) and dataset: seed 0 and the penalty grid share it
    fits = sweep.model_fits(trials)
    assert len(fits) == 2 and {t.fit for t in trials} == set(fits)
    assert all(t.argv[t.argv.index("--dynamics") + 1] == str(t.fit.out) for t in trials)
    # a model config `model fit` cannot make: the trials fit their own
    own = sweep.expand(
        sweep.load_spec(_spec(tmp_path, set=SMALL | {"dynamics.hidden_dim": 16}, dynamics={"share": True}))
    )
    assert all(t.fit is None and "--dynamics" not in t.argv for t in own)
    # the official one-batch validation is a `model fit` flag: still shared, with the flag
    batch = sweep.expand(
        sweep.load_spec(
            _spec(
                tmp_path,
                set=SMALL | {"dynamics.validation_batch": 256, "dynamics.batch_size": 51},
                dynamics={"share": True},
            )
        )
    )
    argvs = [" ".join(t.fit.argv) for t in batch if t.fit is not None]
    assert len(argvs) == len(batch) and all("--validation-batch 256" in a and "--batch-size 51" in a for a in argvs)


def test_print_commands_give_the_fits_then_one_train_command_per_trial(sweep_dataset, tmp_path, capsys):
    spec = _spec(tmp_path, dynamics={"share": True, "seed": 0})
    assert main(["sweep", str(spec), "--print-commands"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines[:2]] == [["offline-mbrl", "model", "fit"]] * 2
    assert len(lines) == 2 + 4 and all(line.startswith("offline-mbrl train --algo ") for line in lines[2:])
    assert "--set rollout.rollout_batch_size=64" in lines[2] and "--dynamics" in lines[2]
    assert main(["sweep", str(spec), "--print-commands", "train"]) == 0
    assert capsys.readouterr().out.splitlines() == lines[2:]


def test_trial_states_from_the_run_folder_and_the_record(sweep_dataset, tmp_path):
    runs = tmp_path / "runs"
    trial = sweep.expand(sweep.load_spec(_spec(tmp_path, algos=["mopo"], seeds=[0])))[0]
    assert sweep.trial_status(trial, runs).state == "pending"
    (trial.run_dir / "checkpoints").mkdir(parents=True)
    assert sweep.trial_status(trial, runs).state == "partial"
    record = runs / sweep.BOOKKEEPING / f"{trial.key}.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"state": "running", "host": os.uname().nodename, "pid": os.getpid()}))
    assert sweep.trial_status(trial, runs).state == "running"
    record.write_text(json.dumps({"state": "running", "host": os.uname().nodename, "pid": 2**22 + 1}))
    assert sweep.trial_status(trial, runs).state == "partial"  # its process is gone: stopped mid-way
    (trial.run_dir / "summary.json").write_text(json.dumps({"finished": True}))
    assert sweep.trial_status(trial, runs).state == "done"


def _mtimes(paths):
    return {path: path.stat().st_mtime_ns for path in paths}


def test_sweep_finishes_skips_what_is_done_and_isolates_failures(local_ray, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = _spec(
        tmp_path,
        algo_set={"mopo": {"rollout.penalty_coef": [0.5, -1.0]}},  # -1: a bad override, 2 trials
        dynamics={"share": True, "seed": 0},
    )
    trials = sweep.expand(sweep.load_spec(spec))
    valid = [t for t in trials if t.error is None]
    assert len(trials) == 6 and len(valid) == 4
    # one trial is held by another live process (this one): it fails, the others go on
    blocked = valid[1]
    blocked.run_dir.mkdir(parents=True)
    (blocked.run_dir / ".lock").write_text(str(os.getpid()))

    assert main(["sweep", str(spec)]) == 1
    out = capsys.readouterr().out
    states = {t.key: sweep.trial_status(t, tmp_path / "runs") for t in trials}
    assert [states[t.key].state for t in trials].count("done") == 3
    assert "in use by process" in states[blocked.key].error
    assert all("rollout.penalty_coef" in states[t.key].error for t in trials if t.error)
    assert "3 done, 0 running, 3 failed" in out and "| Task | admpo-off | mopo |" in out
    models = sorted((tmp_path / "runs" / "models").glob("*.pt"))
    assert len(models) == 2
    done = [t for t in valid if t is not blocked]
    for trial in done:
        summary = json.loads((trial.run_dir / "summary.json").read_text())
        assert summary["finished"] and Path(summary["dynamics"]) == trial.fit.out.resolve()
        assert not (trial.run_dir / "dynamics.pt").exists()
    before = _mtimes(models + [t.run_dir / name for t in done for name in ("metrics.csv", "summary.json")])

    (blocked.run_dir / ".lock").unlink()
    assert main(["sweep", str(spec)]) == 1  # the bad overrides still fail
    out = capsys.readouterr().out
    assert "4 done, 0 running, 2 failed" in out and "Final" in out  # the score table of what is done
    assert _mtimes(before) == before  # nothing done was redone, no model refitted
    attempts = {t.key: sweep.log_path(tmp_path / "runs", t.key).read_text().count("\n=== ") + 1 for t in valid}
    assert attempts == {t.key: 2 if t is blocked else 1 for t in valid}
    assert main(["sweep", str(spec), "--status"]) == 0
    assert "4 done" in capsys.readouterr().out


def test_a_trial_records_its_failure_and_one_after_a_failed_fit_does_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run_command moves to the sweep's folder; this puts the test's back afterwards
    runs = tmp_path / "runs"
    missing = tmp_path / "no-run"
    error = sweep.run_command(("train", "--resume", str(missing)), str(runs), "t1", str(tmp_path))
    assert error.startswith(f"{missing / 'config.yaml'}: config file does not exist")
    assert sweep.log_path(runs, "t1").read_text().startswith("=== ")
    assert json.loads((runs / sweep.BOOKKEEPING / "t1.json").read_text())["error"] == error
    error = sweep.run_command(("train", "--resume", str(missing)), str(runs), "t2", str(tmp_path), after="boom")
    assert error == "shared dynamics model fit failed: boom" and not sweep.log_path(runs, "t2").exists()
