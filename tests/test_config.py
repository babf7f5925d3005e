"""Typed configs: every shipped file loads, unknown keys and wrong types name the key, overrides, round trip."""

from pathlib import Path

import pytest
import yaml

from offline_mbrl.config import (
    CONFIG_DIR,
    TrainConfig,
    config_hash,
    default_config_file,
    from_dict,
    parse_override,
    resolve,
    to_dict,
)
from offline_mbrl.errors import ConfigError

# run configs; configs/sweeps/ holds sweep specs (tests/test_sweep.py)
ALL_FILES = sorted(p for p in CONFIG_DIR.rglob("*.yaml") if p.relative_to(CONFIG_DIR).parts[0] != "sweeps")
TABLE5_D4RL = {
    "hopper-random": (5, 50, 5),
    "halfcheetah-random": (2, 10, 2.5),
    "walker2d-random": (2, 50, 2.5),
    "hopper-medium": (5, 10, 1),
    "halfcheetah-medium": (2, 5, 2.5),
    "walker2d-medium": (5, 10, 5),
    "hopper-medium-replay": (5, 5, 0.1),
    "halfcheetah-medium-replay": (2, 5, 2.5),
    "walker2d-medium-replay": (5, 5, 0.1),
    "hopper-medium-expert": (2, 20, 20),
    "halfcheetah-medium-expert": (2, 50, 10),
    "walker2d-medium-expert": (3, 2, 6),
}
TABLE5_NEORL = {
    "hopper-low": (5, 20, 5),
    "halfcheetah-low": (2, 20, 10),
    "walker2d-low": (5, 10, 2.5),
    "hopper-medium": (5, 20, 50),
    "halfcheetah-medium": (2, 5, 20),
    "walker2d-medium": (5, 10, 5),
    "hopper-high": (5, 20, 50),
    "halfcheetah-high": (2, 10, 50),
    "walker2d-high": (5, 10, 2.5),
}


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_every_shipped_config_loads(path):
    config = resolve(None, path, dataset="x")
    assert from_dict(to_dict(config)) == config


@pytest.mark.parametrize("folder, table", [("d4rl", TABLE5_D4RL), ("neorl", TABLE5_NEORL)])
def test_table5_tasks_have_configs_with_its_values(folder, table):
    for task, (m, horizon, beta) in table.items():
        config = resolve("admpo-off", CONFIG_DIR / "admpo_off" / folder / f"{task}.yaml")
        assert (config.dynamics.max_backtrack, config.rollout.rollout_length, config.rollout.penalty_coef) == (
            m,
            horizon,
            beta,
        ), task
        assert config.rollout.penalty == "adm_std" and not config.sac.auto_alpha


def test_official_real_ratio_and_alpha():
    def load(task):
        return resolve("admpo-off", CONFIG_DIR / "admpo_off" / "d4rl" / f"{task}.yaml")

    assert load("hopper-medium-replay").real_ratio == 0.5 and load("hopper-medium").real_ratio == 0.05
    assert load("walker2d-medium-expert").sac.alpha == 0.011
    hc = load("halfcheetah-medium-replay")
    assert hc.sac.actor_lr == pytest.approx(7e-5) and not hc.sac.lr_schedule


@pytest.mark.parametrize(
    "override, key", [("rollout.zz=1", "rollout.zz"), ("bogus=1", "bogus"), ("sac.nope.deeper=1", "sac.nope")]
)
def test_unknown_key_is_named(override, key):
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        resolve("admpo-off", overrides=[override])


@pytest.mark.parametrize(
    "override, key", [("sac.alpha=abc", "sac.alpha"), ("epochs=1.5", "epochs"), ("sac.auto_alpha=3", "sac.auto_alpha")]
)
def test_wrong_type_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        resolve("admpo-off", overrides=[override])


def test_unknown_key_in_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"rollout": {"horizon": 5}}))
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'rollout\.horizon'"):
        resolve("admpo-off", path)


def test_yaml_scientific_notation_and_ints_are_floats(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("sac:\n  actor_lr: 1e-4\n  alpha: 1\n")
    config = resolve("admpo-off", path)
    assert config.sac.actor_lr == 1e-4 and isinstance(config.sac.alpha, float)


def test_precedence_defaults_file_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"epochs": 7, "rollout": {"penalty_coef": 3.0}}))
    config = resolve("mopo", path, ["rollout.penalty_coef=4"], seed=2)
    assert (config.epochs, config.rollout.penalty_coef, config.seed) == (7, 4.0, 2)
    assert config.dynamics.model == "ensemble" and config.rollout.penalty == "max_aleatoric"
    assert parse_override("sac.hidden_dims=[64, 64]") == {"sac": {"hidden_dims": [64, 64]}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("epochs")


def test_algo_mismatch_and_bad_values():
    with pytest.raises(ConfigError, match="'algo' is 'mopo' but --algo is 'admpo-off'"):
        resolve("admpo-off", CONFIG_DIR / "mopo" / "d4rl" / "hopper-medium.yaml")
    with pytest.raises(ConfigError, match="real_ratio"):
        TrainConfig(real_ratio=1.5)


def test_config_hash_ignores_seed_only():
    a = resolve("admpo-off", dataset="d")
    assert config_hash(a) == config_hash(resolve("admpo-off", dataset="d", seed=4))
    assert config_hash(a) != config_hash(resolve("admpo-off", overrides=["rollout.penalty_coef=2"], dataset="d"))


def test_default_config_lookup():
    assert default_config_file("admpo-off", "hopper-medium-v2", None).name == "hopper-medium.yaml"
    assert default_config_file("admpo-off", "neorl-walker2d-high", None).parent.name == "neorl"
    found = default_config_file("mopo", None, "minari:offline_mbrl/walker2d/medium-replay-v0")
    assert found == CONFIG_DIR / "mopo" / "minari" / "walker2d-medium-replay.yaml"
    assert default_config_file("admpo-off", None, "data/unknown.hdf5") is None


@pytest.mark.parametrize("algo", ["admpo-off", "mopo"])
def test_default_config_of_every_hosted_mujoco_id(algo):
    folder = CONFIG_DIR / algo.replace("-", "_") / "minari"
    for env in ("hopper", "walker2d", "halfcheetah"):
        for kind, d4rl_kind in (("simple", "medium"), ("medium", "medium-expert"), ("expert", "medium-expert")):
            found = default_config_file(algo, None, f"minari:mujoco/{env}/{kind}-v0")
            assert found == folder / "mujoco" / f"{env}-{kind}.yaml"
            comment = " ".join(line[2:] for line in found.read_text().splitlines() if line.startswith("# "))
            assert f"D4RL {env}-{d4rl_kind} settings" in comment
            assert to_dict(resolve(algo, found)) == to_dict(
                resolve(algo, CONFIG_DIR / algo.replace("-", "_") / "d4rl" / f"{env}-{d4rl_kind}.yaml")
            )
    # the collected namespace keeps its configs; a namespace without a folder falls back to them; no config for Ant
    assert default_config_file(algo, None, "minari:offline_mbrl/hopper/medium-v0") == folder / "hopper-medium.yaml"
    assert default_config_file(algo, None, "minari:test/hopper/medium-v0") == folder / "hopper-medium.yaml"
    assert default_config_file(algo, None, "minari:mujoco/ant/medium-v0") is None


# hashes computed on main before the run config composed the component configs: a run in progress resumes by its
# folder's hash, so refactoring the config classes must keep them
RECORDED_RUN_CONFIG = Path(__file__).parent / "data" / "run_config_mopo_hopper_medium.yaml"
HASHES_BEFORE_COMPOSITION = {"admpo-off": "c129f2df", "mopo": "7ed8c808", "mobile": "16463ad1"}


def test_a_recorded_config_yaml_loads_writes_back_identically_and_keeps_its_hash():
    text = RECORDED_RUN_CONFIG.read_text()
    config = from_dict(yaml.safe_load(text), str(RECORDED_RUN_CONFIG))
    assert yaml.safe_dump(to_dict(config), sort_keys=False) == text
    assert config_hash(config) == "4894814e"


@pytest.mark.parametrize("algo", sorted(HASHES_BEFORE_COMPOSITION))
def test_default_config_hashes_are_unchanged(algo):
    config = resolve(algo, dataset="minari:offline_mbrl/hopper/medium-v0")
    assert config_hash(config) == HASHES_BEFORE_COMPOSITION[algo]


# ADM paper Table 4 (env steps, m, roll-out schedule, target entropy; UTD 20 everywhere) with the official ADMPO
# configs' actor_freq (config/mujoco/*.yml)
TABLE4 = {
    "hopper": (50_000, 5, (0, 50_000, 1, 15), -1, 1),
    "walker2d": (200_000, 2, (0, 100_000, 1, 10), -3, 20),
    "anttruncatedobs": (300_000, 2, (10_000, 100_000, 1, 5), -4, 20),
    "humanoidtruncatedobs": (300_000, 2, (10_000, 100_000, 1, 10), -8, 20),
}
# MBPO Appendix C Table 1 (epochs after the warm-up, G, H schedule in env steps 5000 + 1000 x epoch)
TABLE1 = {
    "hopper": (125, 20, (25_000, 105_000, 1, 15)),
    "walker2d": (300, 20, None),
    "halfcheetah": (400, 40, None),
    "anttruncatedobs": (300, 20, (25_000, 105_000, 1, 25)),
    "humanoidtruncatedobs": (300, 20, (25_000, 305_000, 1, 25)),
    "invertedpendulum": (15, 20, None),
}


@pytest.mark.parametrize("env", sorted(TABLE4))
def test_admpo_on_configs_hold_table4(env):
    steps, m, schedule, entropy, actor_freq = TABLE4[env]
    config = resolve("admpo-on", CONFIG_DIR / "admpo_on" / f"{env}.yaml", env_id="X-v5")
    o = config.online
    assert o.warmup_steps + config.epochs * config.steps_per_epoch == steps
    assert (config.dynamics.max_backtrack, o.rollout_schedule, o.target_entropy, o.utd_ratio) == (
        m,
        schedule,
        entropy,
        20,
    )
    assert o.actor_freq == actor_freq


@pytest.mark.parametrize("env", sorted(TABLE1))
def test_mbpo_configs_hold_table1(env):
    epochs, utd, schedule = TABLE1[env]
    config = resolve("mbpo", CONFIG_DIR / "mbpo" / f"{env}.yaml", env_id="X-v5")
    assert (config.epochs, config.online.utd_ratio, config.online.rollout_schedule) == (epochs, utd, schedule)
    assert config.online.rollout_schedule is not None or config.rollout.rollout_length == 1


def test_a_late_key_at_its_default_stays_out_of_config_yaml_and_the_hash():
    """``LATE_KEYS``: an option added after runs existed keeps their folders; setting it is recorded and hashed."""
    plain = resolve("admpo-on", env_id="Hopper-v5")
    assert "actor_freq" not in to_dict(plain)["online"] and from_dict(to_dict(plain)) == plain
    every_20 = resolve("admpo-on", env_id="Hopper-v5", overrides=["online.actor_freq=20"])
    assert to_dict(every_20)["online"]["actor_freq"] == 20 and from_dict(to_dict(every_20)) == every_20
    assert config_hash(every_20) != config_hash(plain)
