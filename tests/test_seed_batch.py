"""Seeds as a batch dimension (issue 15): S seeds trained in one process (``train --seeds``) give each seed the result
of its own single-seed run, to float rounding, write the same run folders, and each folder resumes on its own."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from offline_mbrl.agents.sac import SAC, SACConfig
from offline_mbrl.algos.base import Algorithm
from offline_mbrl.algos.harness import OfflineTrainer, SeedBatchTrainer
from offline_mbrl.errors import CheckpointError, ConfigError
from offline_mbrl.persist import seeded
from offline_mbrl.seeds import SeedStreams, capture
from test_offline import DETERMINISTIC_COLUMNS, _config

SEEDS = (0, 3)
#: 5 epochs x 20 steps = 100 SAC updates, a checkpoint every 2 epochs
RUN = dict(algo="admpo-off", epochs=5, extra=["checkpoint_every=2", "rollout.model_retain_epochs=1"])
#: float tolerance of a seed of a seed batch against its single-seed run (batched matmuls round differently)
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


class _Killed(BaseException):
    """Stands for SIGKILL (see tests/test_kill_resume.py)."""


@pytest.fixture(scope="module")
def data(hopper_dataset):
    return replace(
        hopper_dataset,
        metadata={**hopper_dataset.metadata, "env_id": "Hopper-v5", "ref_min_score": -20.0, "ref_max_score": 3000.0},
    )


def _members(data, root, seeds=SEEDS, cls=OfflineTrainer, **run):
    config = _config(**(run or RUN))
    return [cls(replace(config, seed=s), root / f"seed{s}", data, progress=False) for s in seeds]


@pytest.fixture(scope="module")
def singles(data, tmp_path_factory):
    """Each seed run on its own, as ``train --seed S``."""
    root = tmp_path_factory.mktemp("singles")
    for trainer in _members(data, root):
        trainer.train()
    return root


def _assert_same_runs(root, reference, seeds=SEEDS):
    for s in seeds:
        a, b = pd.read_csv(reference / f"seed{s}" / "metrics.csv"), pd.read_csv(root / f"seed{s}" / "metrics.csv")
        assert list(a["epoch"]) == list(b["epoch"]) == [1, 2, 3, 4, 5]
        pd.testing.assert_frame_equal(DETERMINISTIC_COLUMNS(a), DETERMINISTIC_COLUMNS(b), **TOLERANCE)
        wa = torch.load(reference / f"seed{s}" / "checkpoints" / "last.pt", weights_only=True)["sac"]
        wb = torch.load(root / f"seed{s}" / "checkpoints" / "last.pt", weights_only=True)["sac"]
        for key, value in wa["model"].items():
            torch.testing.assert_close(wb["model"][key], value, **TOLERANCE)
        state_b = wb["critic_optim"]["state"]
        for i, value in wa["critic_optim"]["state"].items():
            torch.testing.assert_close(state_b[i]["exp_avg"], value["exp_avg"], **TOLERANCE)


def test_a_seed_batch_gives_each_seed_its_single_seed_run(data, singles, tmp_path):
    summaries = SeedBatchTrainer(_members(data, tmp_path)).train()
    assert [s["seed"] for s in summaries] == list(SEEDS) and all(s["sac_steps"] == 100 for s in summaries)
    _assert_same_runs(tmp_path, singles)
    assert (tmp_path / "seed3" / "dynamics.pt").is_file()  # per-seed models, fitted by each seed as a single run


class _KillInSAC(OfflineTrainer):
    def sac_batch(self):
        if self.epoch == 2 and self.step % 20 == 15:  # mid-epoch 3, after the epoch-2 checkpoint
            raise _Killed
        return super().sac_batch()


@pytest.mark.parametrize("how", ["alone", "together"])
def test_a_killed_seed_batch_resumes_per_folder_or_as_a_batch(how, data, singles, tmp_path):
    with pytest.raises(_Killed):
        SeedBatchTrainer(_members(data, tmp_path, cls=_KillInSAC)).train()
    for s in SEEDS:
        (tmp_path / f"seed{s}" / ".lock").write_text("999999999\n")  # a real kill leaves its locks
    if how == "alone":
        for trainer in _members(data, tmp_path):
            trainer.train()
    else:
        SeedBatchTrainer(_members(data, tmp_path)).train()
    _assert_same_runs(tmp_path, singles)


class _OwnUpdate(Algorithm):
    def update(self, sac, model, batch, num_real):
        return sac.update(batch)


def test_mobile_seed_batch_gives_each_seed_its_single_seed_run(data, tmp_path):
    """MOBILE's own Bellman target (its penalty) is computed per seed, with that seed's agent, model and stream."""
    run = dict(algo="mobile", epochs=2, extra=[])
    for trainer in _members(data, tmp_path / "singles", **run):
        trainer.train()
    SeedBatchTrainer(_members(data, tmp_path / "batch", **run)).train()
    for s in SEEDS:
        a = pd.read_csv(tmp_path / "singles" / f"seed{s}" / "metrics.csv")
        b = pd.read_csv(tmp_path / "batch" / f"seed{s}" / "metrics.csv")
        assert a["train/bellman_penalty"].gt(0).all()
        pd.testing.assert_frame_equal(DETERMINISTIC_COLUMNS(a), DETERMINISTIC_COLUMNS(b), **TOLERANCE)


def test_seeds_at_different_epochs_or_an_own_update_are_refused(data, singles, tmp_path):
    members = _members(data, tmp_path, seeds=(0,), epochs=2, algo="admpo-off", extra=RUN["extra"])
    members[0].train()
    with pytest.raises(CheckpointError, match="different epochs"):
        SeedBatchTrainer(_members(data, tmp_path, seeds=(0, 1), epochs=2, algo="admpo-off", extra=RUN["extra"])).train()
    assert not (tmp_path / "seed1" / "config.yaml").exists()
    members = _members(data, tmp_path / "own", epochs=1, algo="admpo-off", extra=[])
    members[0].algorithm = _OwnUpdate(members[0].config)
    with pytest.raises(ConfigError, match="updates SAC its own way"):
        SeedBatchTrainer(members)
    with pytest.raises(ConfigError, match="each seed once"):
        SeedBatchTrainer(_members(data, tmp_path / "twice", seeds=(0, 0)))


def test_seed_states_round_trip_exactly():
    config = SACConfig(hidden_dims=(8, 8), auto_alpha=True)
    agents = [SAC(5, 2, config) for _ in range(2)]
    batch = SAC(5, 2, config, num_seeds=2)
    batch.load_seed_full_states([a.full_state() for a in agents])
    batch.update({k: torch.stack([v, v]) for k, v in _rows().items()})
    again = SAC(5, 2, config, num_seeds=2)
    again.load_seed_full_states([batch.seed_full_state(0), batch.seed_full_state(1)])
    for key, value in batch.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    for mine, theirs in zip(batch.critic_optim.state.values(), again.critic_optim.state.values()):
        assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    single = SAC(5, 2, config)
    single.load_full_state(batch.seed_full_state(1))  # a seed's state is a single agent's
    assert torch.equal(single.critic.layers[0].weight, batch.critic.layers[0].weight[1])


def test_streams_draw_each_seeds_numbers_and_leave_the_caller_stream_alone():
    states = []
    for s in (1, 2):
        with seeded(s):
            states.append(capture())
    streams = SeedStreams(states)
    torch.manual_seed(9)
    after = torch.rand(2)
    torch.manual_seed(9)
    first, second = streams.randn(4), streams.randn(4)
    assert torch.equal(torch.rand(2), after)
    for i, s in enumerate((1, 2)):
        with seeded(s):
            assert torch.equal(first[i], torch.randn(4)) and torch.equal(second[i], torch.randn(4))


def _rows(n=6):
    g = torch.Generator().manual_seed(0)
    return {
        "obs": torch.randn(n, 5, generator=g),
        "actions": torch.rand(n, 2, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g),
        "next_obs": torch.randn(n, 5, generator=g),
        "terminals": torch.rand(n, generator=g) < 0.2,
    }


def test_train_cli_seeds_writes_each_seeds_folder_and_tabulates(data, tmp_path, capsys):
    from io import StringIO

    from offline_mbrl.algos.harness import fit_dynamics
    from offline_mbrl.cli import main
    from offline_mbrl.data.minari_io import write_minari
    from offline_mbrl.models.checkpoint import save_model
    from offline_mbrl.runs import run_dir_for
    from test_offline import TINY

    write_minari(data, "test/hopper/seeds-v0", env_id="Hopper-v5", ref_min_score=-20.0, ref_max_score=3000.0)
    save_model(fit_dynamics(_config("mopo"), data, "cpu"), tmp_path / "ensemble.pt")
    args = ["train", "--algo", "mopo", "--dataset", "minari:test/hopper/seeds-v0", "--runs", str(tmp_path / "runs")]
    args += ["--dynamics", str(tmp_path / "ensemble.pt"), "--no-progress", "--epochs", "1", "--seeds", "1", "2"]
    args += [x for o in TINY for x in ("--set", o)]
    assert main(args) == 0
    folders = sorted(p.parent for p in (tmp_path / "runs").rglob("summary.json"))
    config = _config("mopo", epochs=1)
    expected = run_dir_for(tmp_path / "runs", replace(config, dataset="minari:test/hopper/seeds-v0", seed=1))
    assert [f.name for f in folders] == ["seed1", "seed2"] and folders[0].parent == expected.parent
    assert not (folders[0] / "dynamics.pt").exists()  # the shared model, given once
    capsys.readouterr()
    assert main(["tabulate", str(tmp_path / "runs"), "--format", "csv", "--score", "final"]) == 0
    tidy = pd.read_csv(StringIO(capsys.readouterr().out))
    assert set(tidy["algo"]) == {"mopo"}
    assert main(["train", "--resume", str(folders[1]), "--no-progress"]) == 0  # finished: resumes to a no-op
    assert main(args + ["--seed", "3"]) == 2
    assert "--seeds cannot be combined with --seed" in capsys.readouterr().err
