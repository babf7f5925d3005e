"""Online SAC on real Hopper-v5 and D4RL-style collection of every kind (tiny sizes)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml

from offline_mbrl.agents.sac import load_actor
from offline_mbrl.algos.collect import (
    KINDS,
    collect_all,
    load_replay_file,
    make_from_recipe,
    obs_from_state,
    random_policy,
    save_replay_file,
)
from offline_mbrl.algos.online_sac import OnlineSACConfig, OnlineSACTrainer
from offline_mbrl.cli import main
from offline_mbrl.data import load_dataset
from offline_mbrl.envs.gym_env import collect_transitions, evaluate_policy, training_episode_seed
from offline_mbrl.persist import derived_seed

TINY = OnlineSACConfig(
    env_id="Hopper-v5",
    total_steps=2000,
    warmup_steps=500,
    eval_every=500,
    eval_episodes=3,
    checkpoint_every=1000,
    sac=replace(OnlineSACConfig().sac, hidden_dims=(64, 64)),
)


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sac")
    OnlineSACTrainer(TINY, run_dir, progress=False).train()
    return run_dir


def test_short_online_run_improves_over_random(sac_run):
    import pandas as pd

    metrics = pd.read_csv(sac_run / "metrics.csv")
    assert list(metrics["step"]) == [500, 1000, 1500, 2000]
    random_return = evaluate_policy(random_policy("Hopper-v5"), "Hopper-v5", 10).mean()
    assert metrics["eval/return_mean"].iloc[-1] > 2 * random_return


def test_resume_continues_to_a_larger_budget(sac_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(sac_run, run)
    trainer = OnlineSACTrainer(replace(TINY, total_steps=2500), run, progress=False)
    trainer.train()
    rows = trainer.buffer.ordered()
    assert trainer.step == 2500 and len(trainer.buffer) == 2500
    assert torch.equal(rows["collection_step"], torch.arange(2500))
    cut = 1999  # the first run stopped here, mid-episode: that row is flagged, so episodes never merge
    assert bool(rows["terminals"][cut] or rows["timeouts"][cut])
    ends = rows["terminals"] | rows["timeouts"]
    inside = ~ends[:-1]
    assert torch.equal(rows["next_obs"][:-1][inside], rows["obs"][1:][inside])
    steps = np.loadtxt(run / "metrics.csv", delimiter=",", skiprows=1, usecols=0)
    assert list(steps) == [500, 1000, 1500, 2000, 2500]


def test_collection_records_sim_state_before_the_action():
    data = collect_transitions(None, "Hopper-v5", 300, seed=0, num_envs=3)
    assert len(data) == 300 and data.qpos.shape == (300, 6)
    np.testing.assert_array_equal(obs_from_state("Hopper-v5", data.qpos, data.qvel), data.obs)
    # every environment's budget ends with a flagged row, so episodes never merge
    ends = np.flatnonzero(data.terminals | data.timeouts)
    assert {99, 199, 299} <= set(ends)


def test_collect_all_kinds_round_trip(sac_run, tmp_path):
    out = tmp_path / "out"
    recipes = collect_all(sac_run, out, "Hopper-v5", KINDS, num_steps=400, seed=0, medium_fraction=0.0)
    info = recipes.pop("_hopper")
    assert info["medium_step"] == 500 and info["expert_return"] > info["random_return"]
    for name, recipe in recipes.items():
        data = load_dataset(f"minari:{recipe['dataset_id']}")
        assert data.metadata["ref_min_score"] == pytest.approx(info["random_return"])
        assert data.metadata["ref_max_score"] == pytest.approx(info["expert_return"])
        assert data.qpos is not None and data.metadata["env_id"] == "Hopper-v5"
        if recipe["kind"] == "medium-replay":
            assert len(data) == 500 and np.array_equal(data.collection_step, np.arange(500))
        else:
            assert len(data) == 400
    for policy in ("medium", "expert"):  # shipped policies load with weights_only=True
        torch.load(out / "policies" / f"hopper_{policy}.pt", weights_only=True)
        load_actor(out / "policies" / f"hopper_{policy}.pt")

    replay = load_replay_file(out / "hopper_replay.npz")
    assert len(replay) == TINY.total_steps
    prefix = load_replay_file(out / "hopper_replay.npz", upto_step=500)
    assert prefix.timeouts[-1] or prefix.terminals[-1]

    (out / "recipes.yaml").write_text(yaml.safe_dump(recipes))
    assert (
        main(
            [
                "dataset",
                "make",
                "hopper-medium",
                "--recipes",
                str(out / "recipes.yaml"),
                "--num-steps",
                "200",
                "--overwrite",
            ]
        )
        == 0
    )
    assert len(load_dataset("minari:offline_mbrl/hopper/medium-v0")) == 200
    _, again = make_from_recipe(recipes["hopper-medium-replay"], out, overwrite=True)
    assert np.array_equal(again.collection_step, np.arange(500))


def test_replay_file_is_exact(hopper_dataset, tmp_path):
    save_replay_file(hopper_dataset, "Hopper-v5", tmp_path / "r.npz")
    back = load_replay_file(tmp_path / "r.npz")
    for field in ("obs", "actions", "rewards", "next_obs", "terminals", "qpos", "qvel", "collection_step"):
        np.testing.assert_array_equal(getattr(back, field), getattr(hopper_dataset, field))


def test_unknown_recipe_lists_known_ones(tmp_path, capsys):
    (tmp_path / "recipes.yaml").write_text(yaml.safe_dump({"hopper-medium": {}, "_hopper": {}}))
    assert main(["dataset", "make", "nope", "--recipes", str(tmp_path / "recipes.yaml")]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'nope'" in err and "hopper-medium" in err and "_hopper" not in err


def test_quickstart_makes_the_dataset_prints_it_and_trains(tmp_path, capsys):
    from offline_mbrl.agents.sac import TanhGaussianActor
    from offline_mbrl.persist import save_atomic

    save_atomic(TanhGaussianActor(11, 3, (8,)).file_state(), tmp_path / "medium.pt")
    recipe = {
        "env_id": "Hopper-v5",
        "kind": "medium",
        "dataset_id": "test/hopper/quick-v0",
        "seed": 0,
        "num_steps": 300,
        "ref_min_score": -20.0,
        "ref_max_score": 3000.0,
        "policies": {"medium": "medium.pt"},
    }
    (tmp_path / "recipes.yaml").write_text(yaml.safe_dump({"hopper-medium": recipe}))
    tiny = {
        "algo": "admpo-off",
        "epochs": 1,
        "steps_per_epoch": 10,
        "eval_episodes": 1,
        "dynamics": {"max_epochs": 1, "hidden_dim": 16, "gru_layers": 1, "head_blocks": 1, "max_backtrack": 2},
        "rollout": {"rollout_batch_size": 32, "rollout_freq": 10, "rollout_length": 2},
        "sac": {"hidden_dims": [16, 16], "batch_size": 32},
    }
    (tmp_path / "quick.yaml").write_text(yaml.safe_dump(tiny))
    args = [
        "quickstart",
        "--recipes",
        str(tmp_path / "recipes.yaml"),
        "--config",
        str(tmp_path / "quick.yaml"),
        "--runs",
        str(tmp_path / "runs"),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "making minari:test/hopper/quick-v0" in out and "transitions             300" in out
    assert "normalized score" in out and "behaviour policy" in out
    assert "This was a smoke budget (10 SAC steps" in out and "--epochs 200 --dynamics" in out
    assert "offline-mbrl model fit --model adm --dataset minari:test/hopper/quick-v0" in out


def test_exported_training_resumes_identically(sac_run, tmp_path):
    from offline_mbrl.algos.collect import export_training, import_training
    from offline_mbrl.buffers import ordered_rows

    export_training(sac_run, tmp_path / "bundle", "Hopper-v5")
    import_training(tmp_path / "bundle", tmp_path / "run")
    a = torch.load(sac_run / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] and a["episodes"] == b["episodes"]
    rows_a, rows_b = ordered_rows(a["buffer"]), ordered_rows(b["buffer"])
    for k in rows_a:
        if k != "timeouts":
            assert torch.equal(rows_a[k], rows_b[k].to(rows_a[k].dtype)), k
    # only the interrupted last row may gain a timeout flag
    assert torch.equal(rows_a["timeouts"][:-1], rows_b["timeouts"][:-1])
    for k, v in a["sac"]["model"].items():
        assert torch.equal(v, b["sac"]["model"][k])


def test_end_step_selects_the_expert_snapshot_and_cuts_the_replay(sac_run, tmp_path):
    from offline_mbrl.errors import DatasetError

    recipes = collect_all(
        sac_run, tmp_path, "Hopper-v5", ("random",), num_steps=100, medium_fraction=0.0, end_step=1500, overwrite=True
    )
    assert recipes["_hopper"]["expert_step"] == 1500
    assert len(load_replay_file(tmp_path / "hopper_replay.npz")) == 1500
    shipped = torch.load(tmp_path / "policies" / "hopper_expert.pt", weights_only=True)["actor"]
    snapshot = torch.load(sac_run / "snapshots" / "actor_00001500.pt", weights_only=True)["actor"]
    assert all(torch.equal(shipped[k], snapshot[k]) for k in snapshot)
    with pytest.raises(DatasetError, match="fewer than end_step 5000"):
        collect_all(sac_run, tmp_path, "Hopper-v5", ("random",), num_steps=100, end_step=5000, overwrite=True)


def test_policy_collection_is_reproducible_under_a_seed():
    from offline_mbrl.agents.sac import TanhGaussianActor
    from offline_mbrl.algos.collect import stochastic

    actor = TanhGaussianActor(11, 3, (8,))
    a, b = (collect_transitions(stochastic(actor), "Hopper-v5", 200, seed=3, num_envs=2) for _ in range(2))
    np.testing.assert_array_equal(a.actions, b.actions)
    c = collect_transitions(stochastic(actor), "Hopper-v5", 200, seed=4, num_envs=2)
    assert not np.array_equal(a.actions, c.actions)


def test_training_episode_seeds_are_unique_and_above_every_evaluation_seed():
    seeds = [training_episode_seed(s, e) for s in range(3) for e in range(1000)]
    assert len(set(seeds)) == len(seeds) and min(seeds) >= 2**31
    assert training_episode_seed(1, 0) != training_episode_seed(0, 1)  # not seed + episode
    for bad in ((-1, 0), (0, -1), (0, 2**32)):
        with pytest.raises(ValueError, match="training_episode_seed"):
            training_episode_seed(*bad)
    assert derived_seed(1, 0) != derived_seed(0, 1) and derived_seed(4, 2, 1) == derived_seed(4, 2, 1)


def test_two_seeds_of_online_sac_never_start_an_episode_alike(tmp_path):
    """Seed 1's episode e used to reset like seed 0's episode e + 1 (env seed ``seed + episode``)."""
    starts = []
    for seed in (0, 1):
        config = replace(TINY, total_steps=300, warmup_steps=300, eval_every=300, eval_episodes=1, seed=seed)
        trainer = OnlineSACTrainer(config, tmp_path / f"seed{seed}", progress=False)
        trainer.train()
        rows = trainer.buffer.ordered()
        obs, ends = rows["obs"], rows["terminals"] | rows["timeouts"]
        starts.append({tuple(o) for o in obs[torch.cat([torch.tensor([True]), ends[:-1]])].tolist()})
        assert len(starts[-1]) > 5  # several episodes in 300 random steps
    assert not starts[0] & starts[1]
