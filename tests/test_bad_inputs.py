"""Bad inputs across readers, configs, CLI flags and checkpoints (issue 13): each one gets a named project error
(a subclass of OfflineMBRLError), the CLI exits with code 2 and prints no traceback, and nothing is written (no run
folder, no model file, no deleted or changed file). The Minari path-escape cases run against a decoy folder that
must survive."""

from __future__ import annotations

import errno
import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offline_mbrl.buffers import TensorBuffer
from offline_mbrl.cli import build_parser, main
from offline_mbrl.config import resolve
from offline_mbrl.data import TransitionDataset, write_d4rl
from offline_mbrl.data.minari_io import dataset_path, read_minari, write_minari
from offline_mbrl.errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    DatasetNotFoundError,
    OfflineMBRLError,
    RunLockedError,
    WriteError,
)
from offline_mbrl.models import build_model
from offline_mbrl.models.checkpoint import load_model, save_model
from offline_mbrl.persist import load_checkpoint, save_atomic
from offline_mbrl.runs import LOCK_NAME, run_lock
from test_offline import TINY

DS_ID = "bad/hopper/tiny-v0"
SETS = [x for o in TINY for x in ("--set", o)]


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory, hopper_dataset, hopper_x_dataset, minari_root):
    """Everything the cases name: a tiny Minari dataset, saved models, recipe files, run-folder stand-ins, a decoy
    folder outside the Minari root (and a symbolic link inside the root that points at it)."""
    base = tmp_path_factory.mktemp("bad_inputs")
    dataset = replace(hopper_dataset, metadata={**hopper_dataset.metadata, "env_id": "Hopper-v5"})
    write_minari(dataset, DS_ID, env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0, overwrite=True)
    decoy = minari_root.parent / "victim" / "x-v0"
    decoy.mkdir(parents=True, exist_ok=True)
    (decoy / "keep.txt").write_text("must survive")
    link = minari_root / "escape_link"
    if not link.exists():
        link.symlink_to(minari_root.parent / "victim")
    models = base / "models"
    save_model(build_model("adm", 12, 3, max_backtrack=3), models / "adm_obs12.pt")
    save_model(build_model("ensemble", 11, 3), models / "ensemble.pt")
    save_model(build_model("adm", 11, 3, max_backtrack=2), models / "adm_m2.pt")
    (models / "corrupt.pt").write_text("not a checkpoint")
    (base / "list.yaml").write_text("- 1\n- 2\n")
    (base / "mopo.yaml").write_text("algo: mopo\n")
    _write_recipes(base)
    _write_fake_runs(base)
    _write_bad_files(base, dataset)
    return base


def _write_recipes(base: Path) -> None:
    recipe = {
        "env_id": "Hopper-v5",
        "kind": "medium-replay",
        "replay": "replay.npz",
        "upto_step": 10,
        "ref_min_score": 0.0,
        "ref_max_score": 1.0,
    }
    recipes = {
        "escape": {**recipe, "dataset_id": "../victim/x-v0"},
        "absolute": {**recipe, "dataset_id": str(base / "abs-v0")},
        "symlink": {**recipe, "dataset_id": "escape_link/x-v0"},
        "dotdot": {**recipe, "dataset_id": "bad/../../victim/x-v0"},
        "exists": {**recipe, "dataset_id": DS_ID},
        "no_kind": {key: v for key, v in {**recipe, "dataset_id": "ok/new-v0"}.items() if key != "kind"},
        "no_seed": {**recipe, "dataset_id": "ok/new-v0", "kind": "random"},
        "bad_kind": {**recipe, "dataset_id": "ok/new-v0", "kind": "great"},
        "nan_score": {**recipe, "dataset_id": "ok/new-v0", "ref_max_score": float("nan")},
        "no_file": {**recipe, "dataset_id": "ok/new-v0", "replay": "absent.npz"},
        "not_mapping": [1, 2],
    }
    (base / "recipes.yaml").write_text(yaml.safe_dump(recipes))
    (base / "replay.npz").write_bytes(b"")
    (base / "empty_recipes.yaml").write_text("")
    (base / "broken_recipes.yaml").write_text("a: [1, 2\n")


def _write_fake_runs(base: Path) -> None:
    for name, text in (
        ("corrupt_summary", "{not json"),
        ("list_summary", "[1, 2]"),
        ("no_env_summary", '{"algo": "mopo"}'),
        ("good_summary", '{"env_id": "Hopper-v5"}'),
    ):
        (base / name).mkdir()
        (base / name / "summary.json").write_text(text)
    (base / "good_summary" / "checkpoints").mkdir()
    (base / "good_summary" / "checkpoints" / "last.pt").write_bytes(b"\x00truncated")
    (base / "no_summary").mkdir()


def _write_bad_files(base: Path, dataset: TransitionDataset) -> None:
    for name, field, value in (("huge", "observations", 1e30), ("nan", "rewards", np.nan)):
        path = write_d4rl(dataset, base / f"{name}.hdf5")
        with h5py.File(path, "r+") as f:
            f[field][0] = value
    path = write_d4rl(dataset, base / "strings.hdf5")
    with h5py.File(path, "r+") as f:
        del f["actions"]
        f["actions"] = np.full((len(dataset), 3), "x", dtype="S1")
    np.savez(base / "strings.npz", obs=np.array(["a"] * 4))


def _tree(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under ``folder`` (symbolic links not followed)."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def fails(argv: list[str], capsys) -> OfflineMBRLError:
    """Run the command: it raises a project error, and through ``main`` exits with 2 and a one-line message."""
    args = build_parser().parse_args(argv)
    with pytest.raises(OfflineMBRLError) as info:
        args.func(args)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("offline-mbrl: error:") and "Traceback" not in err, err
    return info.value


# ------------------------------------------------------------------------------ CLI: train (config and flags)
TRAIN = ["train", "--algo", "admpo-off", "--dataset", f"minari:{DS_ID}", "--no-progress", "--epochs", "1"]
CONFIG_CASES = [  # (--set override, error class, words in the message)
    ("rollout.penalty_coef=nan", ConfigError, "rollout.penalty_coef"),
    ("rollout.penalty_coef=inf", ConfigError, "rollout.penalty_coef"),
    ("rollout.penalty_coef=-1", ConfigError, "rollout.penalty_coef"),
    ("sac.batch_size=0", ConfigError, "sac.batch_size"),
    ("rollout.rollout_batch_size=0", ConfigError, "rollout.rollout_batch_size"),
    ("rollout.rollout_freq=0", ConfigError, "rollout.rollout_freq"),
    ("rollout.rollout_length=-1", ConfigError, "rollout.rollout_length"),
    ("rollout.model_retain_epochs=0", ConfigError, "rollout.model_retain_epochs"),
    ("sac.actor_lr=-1", ConfigError, "sac.actor_lr"),
    ("sac.critic_lr=0", ConfigError, "sac.critic_lr"),
    ("sac.alpha_lr=nan", ConfigError, "sac.alpha_lr"),
    ("sac.alpha=0", ConfigError, "sac.alpha"),
    ("sac.gamma=1.5", ConfigError, "sac.gamma"),
    ("sac.tau=0", ConfigError, "sac.tau"),
    ("sac.hidden_dims=[0]", ConfigError, "sac.hidden_dims"),
    ("sac.hidden_dims=16", ConfigError, "sac.hidden_dims"),
    ("dynamics.ensemble_weight_decays=1e-4", ConfigError, "dynamics.ensemble_weight_decays"),
    ("sac.lr_schedule_epochs=0", ConfigError, "sac.lr_schedule_epochs"),
    ("rollout.penalty=bogus", ConfigError, "rollout.penalty"),
    ("rollout.backtrack_sampling=bogus", ConfigError, "rollout.backtrack_sampling"),
    ("rollout.rollout_batch_size=100000000", ConfigError, "model buffer"),
    ("dynamics.max_backtrack=0", ConfigError, "dynamics.max_backtrack"),
    ("dynamics.max_backtrack=5000000", ConfigError, "dynamics.max_backtrack"),
    ("dynamics.hidden_dim=0", ConfigError, "dynamics.hidden_dim"),
    ("dynamics.gru_layers=0", ConfigError, "dynamics.gru_layers"),
    ("dynamics.dropout=1.0", ConfigError, "dynamics.dropout"),
    ("dynamics.num_elites=9", ConfigError, "dynamics.num_elites"),
    ("dynamics.learning_rate=-0.1", ConfigError, "dynamics.learning_rate"),
    ("dynamics.holdout_split=random", ConfigError, "dynamics.holdout_split"),
    ("dynamics.batch_size=0", ConfigError, "dynamics.batch_size"),
    ("dynamics.max_epochs=0", ConfigError, "dynamics.max_epochs"),
    ("dynamics.validation_batch=0", ConfigError, "dynamics.validation_batch"),
    ("dynamics.ensemble_hidden_dims=[]", ConfigError, "dynamics.ensemble_hidden_dims"),
    ("dynamics.model=ensemble", ConfigError, "dynamics.model"),
    ("real_ratio=nan", ConfigError, "real_ratio"),
    ("real_ratio=2", ConfigError, "real_ratio"),
    ("steps_per_epoch=0", ConfigError, "steps_per_epoch"),
    ("eval_episodes=0", ConfigError, "eval_episodes"),
    ("no_such_key=1", ConfigError, "no_such_key"),
    ("sac.batch_size=abc", ConfigError, "batch_size"),
]


@pytest.mark.parametrize("override, error, words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_value_is_refused_before_any_work(override, error, words, world, tmp_path, capsys):
    runs = tmp_path / "runs"
    exc = fails(TRAIN + SETS + ["--set", override, "--runs", str(runs)], capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert not runs.exists()


FLAG_CASES = [  # (extra flags with {w} = the world folder, error class, words in the message)
    (["--device", "cuda:99"], ConfigError, "--device"),
    (["--device", "banana"], ConfigError, "--device"),
    (["--seed", "-1"], ConfigError, "seed"),
    (["--epochs", "0"], ConfigError, "epochs"),
    (["--env", "Walker2d-v5"], ConfigError, "obs dim 17"),
    (["--env", "NoSuchEnv-v0"], ConfigError, "NoSuchEnv-v0"),
    (["--dynamics", "{w}/models/absent.pt"], ConfigError, "absent.pt"),
    (["--dynamics", "{w}/models/adm_obs12.pt"], ConfigError, "obs_dim 12"),
    (["--dynamics", "{w}/models/ensemble.pt"], ConfigError, "'ensemble' model"),
    (["--dynamics", "{w}/models/adm_m2.pt"], ConfigError, "max_backtrack 2"),
    (["--dynamics", "{w}/models/corrupt.pt"], CheckpointError, "corrupt.pt"),
    (["--dynamics", "{w}/models"], ConfigError, "models"),
    (["--config", "{w}/absent.yaml"], ConfigError, "absent.yaml"),
    (["--config", "{w}/list.yaml"], ConfigError, "mapping"),
    (["--config", "{w}/mopo.yaml"], ConfigError, "--algo"),
]


@pytest.mark.parametrize("extra, error, words", FLAG_CASES, ids=[" ".join(c[0]) for c in FLAG_CASES])
def test_bad_train_flag_is_refused_before_any_work(extra, error, words, world, tmp_path, capsys):
    runs, before = tmp_path / "runs", _tree(world / "models")
    extra = [x.format(w=world) for x in extra]
    exc = fails(TRAIN + SETS + extra + ["--runs", str(runs)], capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert not runs.exists() and _tree(world / "models") == before


def test_cuda_without_cuda_is_a_named_error(world, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    exc = fails(TRAIN + ["--device", "cuda", "--runs", str(tmp_path / "runs")], capsys)
    assert isinstance(exc, ConfigError) and "CUDA is not available" in str(exc)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ CLI: dataset specs and readers
DATASET_CASES = [  # (spec with {w}, error class, words)
    ("minari:../escape/x-v0", DatasetError, "not a valid Minari dataset id"),
    ("minari:/etc/x-v0", DatasetError, "not a valid Minari dataset id"),
    ("minari:escape_link/x-v0", DatasetError, "outside the Minari root"),
    ("minari:a//b-v0", DatasetError, "not a valid Minari dataset id"),
    ("minari:no-version", DatasetError, "not a valid Minari dataset id"),
    ("minari:~/x-v0", DatasetError, "not a valid Minari dataset id"),
    ("minari:absent/x-v0", DatasetNotFoundError, "no local Minari dataset"),
    ("{w}/data.txt", DatasetError, "unknown dataset spec"),
    ("{w}/absent.hdf5", DatasetNotFoundError, "absent.hdf5"),
    ("{w}/huge.hdf5", DatasetError, "field 'obs'"),
    ("{w}/nan.hdf5", DatasetError, "field 'rewards'"),
    ("{w}/strings.hdf5", DatasetError, "field 'actions'"),
    ("{w}/strings.npz", DatasetError, "strings.npz"),
]


@pytest.mark.parametrize("spec, error, words", DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
@pytest.mark.parametrize("command", ["info", "train"])
def test_bad_dataset_spec_is_refused(command, spec, error, words, world, tmp_path, capsys):
    spec = spec.format(w=world)
    argv = (
        ["dataset", "info", spec]
        if command == "info"
        else ["train", "--algo", "mopo", "--dataset", spec, "--runs", str(tmp_path / "runs")]
    )
    exc = fails(argv, capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------ CLI: dataset make (decoy must survive)
MAKE_CASES = [  # (recipes file, recipe, --overwrite, error class, words)
    ("recipes.yaml", "escape", True, DatasetError, "not a valid Minari dataset id"),
    ("recipes.yaml", "absolute", True, DatasetError, "not a valid Minari dataset id"),
    ("recipes.yaml", "symlink", True, DatasetError, "outside the Minari root"),
    ("recipes.yaml", "dotdot", True, DatasetError, "not a valid Minari dataset id"),
    ("recipes.yaml", "exists", False, DatasetError, "already exists"),
    ("recipes.yaml", "no_kind", True, DatasetError, "field 'kind'"),
    ("recipes.yaml", "bad_kind", True, DatasetError, "field 'kind'"),
    ("recipes.yaml", "no_seed", True, DatasetError, "missing key(s) ['num_steps', 'seed']"),
    ("recipes.yaml", "nan_score", True, DatasetError, "ref_max_score"),
    ("recipes.yaml", "no_file", True, DatasetError, "absent.npz"),
    ("recipes.yaml", "not_mapping", True, DatasetError, "mapping"),
    ("recipes.yaml", "unknown", True, DatasetError, "unknown recipe"),
    ("empty_recipes.yaml", "x", True, DatasetError, "empty file"),
    ("broken_recipes.yaml", "x", True, DatasetError, "not valid YAML"),
    ("absent.yaml", "x", True, DatasetError, "does not exist"),
]


@pytest.mark.parametrize(
    "file, recipe, overwrite, error, words", MAKE_CASES, ids=[c[1] + "@" + c[0] for c in MAKE_CASES]
)
def test_bad_recipe_is_refused_and_deletes_nothing(file, recipe, overwrite, error, words, world, minari_root, capsys):
    decoy, before = minari_root.parent / "victim", _tree(minari_root.parent / "victim")
    datasets_before = _tree(minari_root)
    exc = fails(["dataset", "make", recipe, "--recipes", str(world / file)] + ["--overwrite"] * overwrite, capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert _tree(decoy) == before == {"x-v0/keep.txt": hashlib.sha1(b"must survive").hexdigest()}
    assert _tree(minari_root) == datasets_before


@pytest.mark.parametrize("dataset_id", ["../victim/x-v0", "escape_link/x-v0"])
def test_writer_never_deletes_outside_the_root(dataset_id, hopper_dataset, world, minari_root):
    with pytest.raises(DatasetError):
        write_minari(
            hopper_dataset, dataset_id, env_id="Hopper-v5", ref_min_score=None, ref_max_score=None, overwrite=True
        )
    assert (minari_root.parent / "victim" / "x-v0" / "keep.txt").read_text() == "must survive"


def test_reader_never_reads_outside_the_root(world, minari_root):
    with pytest.raises(DatasetError, match="outside the Minari root"):
        read_minari("escape_link/x-v0")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.sampled_from(["..", ".", "", "a", "b-v0", "~", "/", "x..y", "c d"]), min_size=1, max_size=4),
    lead=st.sampled_from(["", "/"]),
)
def test_any_id_either_fails_or_stays_inside_the_root(parts, lead, minari_root):
    dataset_id = lead + "/".join(parts) + "-v0"
    try:
        path = dataset_path(dataset_id)
    except DatasetError:
        return
    assert path.is_relative_to(minari_root.resolve()) and ".." not in dataset_id and not dataset_id.startswith("/")


# ------------------------------------------------------------------------------ CLI: model fit and evaluate
MODEL_FIT = ["model", "fit", "--dataset", f"minari:{DS_ID}", "--epochs", "1", "--no-progress"]
FIT_CASES = [  # (extra flags with {w}, error class, words)
    (["--model", "adm", "--out", "{w}/models"], ConfigError, "is a directory"),
    (["--model", "adm", "--out", "{w}/list.yaml/m.pt"], ConfigError, "is a file"),
    (["--model", "adm", "--max-backtrack", "5000000", "--out", "{w}/new.pt"], ConfigError, "max_backtrack"),
    (["--model", "adm", "--max-backtrack", "0", "--out", "{w}/new.pt"], ConfigError, "max_backtrack"),
    (["--model", "adm", "--device", "cuda:99", "--out", "{w}/new.pt"], ConfigError, "--device"),
    (["--model", "ensemble", "--max-backtrack", "3", "--out", "{w}/new.pt"], ConfigError, "--max-backtrack"),
]


@pytest.mark.parametrize("extra, error, words", FIT_CASES, ids=[" ".join(c[0][:4]) for c in FIT_CASES])
def test_bad_model_fit_flag_is_refused_before_fitting(extra, error, words, world, capsys):
    exc = fails(MODEL_FIT + [x.format(w=world) for x in extra], capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert not (world / "new.pt").exists()


EVALUATE_CASES = [  # (run folder under the world, extra flags, error class, words)
    ("good_summary", ["--episodes", "0"], ConfigError, "--episodes"),
    ("good_summary", ["--device", "banana"], ConfigError, "--device"),
    ("corrupt_summary", [], CheckpointError, "not valid JSON"),
    ("list_summary", [], CheckpointError, "env_id"),
    ("no_env_summary", [], CheckpointError, "env_id"),
    ("no_summary", [], CheckpointError, "no summary.json"),
    ("good_summary", [], CheckpointError, "last.pt"),
]


@pytest.mark.parametrize(
    "run, extra, error, words", EVALUATE_CASES, ids=[c[0] + " ".join(c[1]) for c in EVALUATE_CASES]
)
def test_bad_evaluate_input_is_a_named_error(run, extra, error, words, world, capsys):
    exc = fails(["evaluate", str(world / run)] + extra, capsys)
    assert isinstance(exc, error) and words in str(exc)


COLLECT_CASES = [  # (extra flags, error class, words)
    (["--env", "NoSuchEnv-v0"], ConfigError, "NoSuchEnv-v0"),
    (["--env", "Hopper-v5", "--total-steps", "0"], ConfigError, "total_steps"),
    (["--env", "Hopper-v5", "--hidden", "0"], ConfigError, "--hidden"),
    (["--env", "Hopper-v5", "--device", "banana"], ConfigError, "--device"),
    (["--env", "Hopper-v5", "--kinds", "great"], DatasetError, "great"),
]


@pytest.mark.parametrize("extra, error, words", COLLECT_CASES, ids=[" ".join(c[0]) for c in COLLECT_CASES])
def test_bad_collect_flag_is_refused_before_training(extra, error, words, tmp_path, capsys):
    argv = ["collect", "--run-dir", str(tmp_path / "sac"), "--out", str(tmp_path / "out"), "--no-progress"] + extra
    exc = fails(argv, capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert not (tmp_path / "sac").exists() and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ resume conflicts and the lock
@pytest.fixture(scope="module")
def finished_run(world, tmp_path_factory):
    """A finished one-epoch run folder (trained through the CLI)."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    assert main(TRAIN + SETS + ["--runs", str(runs)]) == 0
    return next(runs.rglob("summary.json")).parent


@pytest.fixture
def run_copy(finished_run, tmp_path):
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


RESUME_CASES = [  # (extra flags with {w}, error class, words)
    (["--set", "rollout.penalty_coef=2"], ConfigError, "rollout.penalty_coef: 1.0 -> 2.0"),
    (["--epochs", "3"], ConfigError, "lr_schedule_epochs"),
    (["--seed", "3"], ConfigError, "seed: 0 -> 3"),
    (["--algo", "mopo"], ConfigError, "algo"),
    (["--dataset", "minari:other/x-v0"], ConfigError, "dataset"),
    (["--env", "Walker2d-v5"], ConfigError, "env_id"),
    (["--config", "{w}/mopo.yaml"], ConfigError, "algo"),
    (["--dynamics", "{w}/models/adm_m2.pt"], ConfigError, "dynamics"),
]


@pytest.mark.parametrize("extra, error, words", RESUME_CASES, ids=[" ".join(c[0]) for c in RESUME_CASES])
def test_resume_with_conflicting_flags_is_refused(extra, error, words, world, run_copy, capsys):
    before = _tree(run_copy)
    exc = fails(["train", "--resume", str(run_copy), "--no-progress"] + [x.format(w=world) for x in extra], capsys)
    assert isinstance(exc, error) and words in str(exc)
    assert _tree(run_copy) == before


def test_resume_of_a_hand_edited_config_is_refused(run_copy, capsys):
    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["rollout"]["penalty_coef"] = 3.0
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    before = _tree(run_copy)
    exc = fails(["train", "--resume", str(run_copy), "--no-progress"], capsys)
    assert isinstance(exc, CheckpointError) and "rollout.penalty_coef: 1.0 -> 3.0" in str(exc)
    assert _tree(run_copy) == before and not (run_copy / LOCK_NAME).exists()


def test_resume_of_a_missing_folder_is_refused(tmp_path, capsys):
    exc = fails(["train", "--resume", str(tmp_path / "absent")], capsys)
    assert isinstance(exc, ConfigError) and "config.yaml" in str(exc)
    assert not (tmp_path / "absent").exists()


def test_second_writer_is_refused_with_the_holders_pid(run_copy, capsys):
    (run_copy / LOCK_NAME).write_text(f"{__import__('os').getpid()}\n")  # a live process holds it
    before = _tree(run_copy)
    exc = fails(["train", "--resume", str(run_copy), "--no-progress"], capsys)
    assert isinstance(exc, RunLockedError) and f"process {__import__('os').getpid()}" in str(exc)
    assert _tree(run_copy) == before


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(dead.stdout)
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(__import__("os").getpid())
    assert "stale lock" in capsys.readouterr().err and not (tmp_path / LOCK_NAME).exists()


# ------------------------------------------------------------------------------ readers, buffers, checkpoints
def _arrays(dataset: TransitionDataset, **changes) -> dict:
    fields = {
        name: getattr(dataset, name)
        for name in ("obs", "actions", "rewards", "next_obs", "terminals", "timeouts", "qpos", "qvel")
    }
    return {**fields, **changes}


def _obs_with(dataset, value):
    obs = dataset.obs.astype(object if isinstance(value, str) else np.float64)
    obs[3, 1] = value
    return obs


READER_CASES = [  # (field, bad array maker, words)
    ("obs", lambda d: _obs_with(d, 1e30), "field 'obs' holds 1 value(s) of magnitude"),
    ("next_obs", lambda d: _obs_with(d, -2e6), "field 'next_obs'"),
    ("rewards", lambda d: np.where(np.arange(len(d)) == 0, np.inf, d.rewards), "field 'rewards' holds 1 NaN/inf"),
    ("actions", lambda d: np.full_like(d.actions, np.nan), "field 'actions'"),
    ("qpos", lambda d: d.qpos * 1e9, "field 'qpos'"),
    ("obs", lambda d: d.obs.astype(str), "field 'obs' must be numeric"),
    ("rewards", lambda d: d.rewards.astype(object), "field 'rewards' must be numeric"),
    ("terminals", lambda d: d.terminals.astype(str), "field 'terminals' must hold booleans"),
    ("timeouts", lambda d: np.full(len(d), 2), "field 'timeouts' must hold only 0/1"),
]


@pytest.mark.parametrize("field, make, words", READER_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(READER_CASES)])
def test_bad_dataset_array_is_refused_naming_the_field(field, make, words, hopper_dataset):
    with pytest.raises(DatasetError) as info:
        TransitionDataset(**_arrays(hopper_dataset, **{field: make(hopper_dataset)}), source="bad")
    assert words in str(info.value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["obs", "actions", "rewards", "next_obs"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf, 1e7, -3e30]),
    row=st.integers(0, 50),
)
def test_any_non_finite_or_huge_value_is_refused(field, value, row, hopper_dataset):
    array = getattr(hopper_dataset, field).astype(np.float64).copy()
    array.reshape(len(array), -1)[row, 0] = value
    with pytest.raises(DatasetError, match=f"field '{field}'"):
        TransitionDataset(**_arrays(hopper_dataset, **{field: array}), source="bad")


def test_model_buffer_refuses_non_finite_rows():
    buffer = TensorBuffer(4, {"x": ((2,), torch.float32)})
    with pytest.raises(OfflineMBRLError, match="field 'x'"):
        buffer.add(x=torch.tensor([[1.0, float("nan")]]))
    assert len(buffer) == 0


def test_disk_full_while_writing_a_checkpoint_names_the_file_and_leaves_no_tmp(tmp_path, monkeypatch):
    target = tmp_path / "last.pt"
    save_atomic({"v": 1}, target)

    def full(obj, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(WriteError, match="last.pt: cannot write"):
        save_atomic({"v": 2}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    monkeypatch.undo()
    assert load_checkpoint(target)["v"] == 1


def test_checkpoint_to_a_directory_is_a_named_error(tmp_path):
    (tmp_path / "last.pt").mkdir()
    with pytest.raises(WriteError, match="last.pt"):
        save_atomic({"v": 1}, tmp_path / "last.pt")
    assert not (tmp_path / "last.pt.tmp").exists()


CHECKPOINT_CASES = [  # (file content, loader, error)
    (b"", load_checkpoint, CheckpointError),
    (b"\x80\x02garbage", load_checkpoint, CheckpointError),
    (b"", load_model, CheckpointError),
    ("torch-list", load_model, CheckpointError),
]


@pytest.mark.parametrize("content, loader, error", CHECKPOINT_CASES, ids=range(len(CHECKPOINT_CASES)))
def test_bad_checkpoint_file_is_a_named_error(content, loader, error, tmp_path):
    path = tmp_path / "bad.pt"
    if content == "torch-list":
        torch.save([1, 2], path)
    else:
        path.write_bytes(content)
    with pytest.raises(error, match="bad.pt"):
        loader(path)


def test_buffer_state_of_another_layout_is_a_named_error():
    buffer = TensorBuffer(4, {"x": ((2,), torch.float32)})
    with pytest.raises(CheckpointError, match="does not match"):
        buffer.load_state_dict(
            {"storage": {"y": torch.zeros(1, 2)}, "ptr": 1, "size": 1, "total_added": 1, "capacity": 4}
        )


def test_config_file_values_are_checked_like_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("rollout:\n  penalty_coef: .nan\n")
    with pytest.raises(ConfigError, match="rollout.penalty_coef"):
        resolve("admpo-off", tmp_path / "c.yaml")
