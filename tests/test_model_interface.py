"""The public dynamics-model interface (``offline_mbrl.models.base``): what each model declares, its stepper
through the one roll-out loop, and the registry helpers that turn the run config into model sizes."""

import pytest
import torch

from offline_mbrl.algos.harness import build_dynamics
from offline_mbrl.config import resolve
from offline_mbrl.data.windows import Windows
from offline_mbrl.errors import ConfigError
from offline_mbrl.models import build_config, fields_from, model_fields
from offline_mbrl.models.base import StepperWrapper
from offline_mbrl.models.fit import FitConfig, fit
from offline_mbrl.rollout import rollout
from tests.models_helpers import fit_stats, linear_policy, tiny_adm, tiny_boot_rnn, tiny_ensemble

M, H = 4, 5


@pytest.fixture(scope="module")
def models(ds):
    return {
        "adm": fit_stats(tiny_adm(max_backtrack=M, rollout_dropout=False), ds).eval(),
        "boot_rnn": fit_stats(tiny_boot_rnn(max_backtrack=M, rollout_dropout=False), ds).eval(),
        "ensemble": fit_stats(tiny_ensemble(), ds).eval(),
    }


def test_models_declare_the_interface(models):
    declared = {
        kind: (m.window_length, m.quantifiers, m.rollout_dropout, m.channel, m.first_channel, m.selection)
        for kind, m in models.items()
    }
    assert declared == {
        "adm": (M, ("adm_var", "adm_std"), False, "k", 1, "any_step"),
        "boot_rnn": (M, (), False, "history", 1, "any_step"),
        "ensemble": (1, ("ensemble_std", "max_aleatoric"), False, "member", 0, "per_member"),
    }
    assert "longest" in models["adm"].backtrack_samplings and not models["ensemble"].backtrack_samplings


@pytest.mark.parametrize("kind", ["adm", "boot_rnn", "ensemble"])
def test_any_model_rolls_out_through_its_stepper(ds, models, kind):
    model = models[kind]
    windows = Windows(ds, model.window_length)
    history = windows.history(torch.arange(10, 30))
    penalty = model.quantifiers[0] if model.quantifiers else None
    run = [
        rollout(model, linear_policy(), history, H, penalty, generator=torch.Generator().manual_seed(0), observe=wrap)
        for wrap in (None, StepperWrapper)
    ]
    assert run[0].stats["rollout/num_transitions"] == H * len(history)
    for key in ("next_obs", "rewards", "penalties"):  # an observing wrapper changes nothing
        assert torch.equal(getattr(run[0], key), getattr(run[1], key))
    step = model.stepper(history)
    mean, logvar, available = step.predict(history.obs[:, -1], linear_policy()(history.obs[:, -1]))
    assert mean.shape == logvar.shape and mean.shape[1:] == (len(history), ds.obs_dim + 1)
    assert available is None or available.shape == mean.shape[:2]
    sampled = step.sampled_candidates()
    if sampled is None:
        assert StepperWrapper(step).sampled_candidates() is None
    else:  # the ensemble: exactly its elites are chosen
        chosen = step.choose(torch.rand(1000, generator=torch.Generator().manual_seed(0)))
        assert torch.equal(sampled, StepperWrapper(step).sampled_candidates()) and sampled.shape == mean.shape[:1]
        assert set(chosen.tolist()) == set(torch.nonzero(sampled).flatten().tolist()) == set(model.elites.tolist())


def test_start_states_equal_histories_of_one_state(ds, models):
    rows = torch.arange(50, 90)
    windows = Windows(ds, 1)
    a, b = (
        rollout(
            models["ensemble"], linear_policy(), starts, H, "max_aleatoric", generator=torch.Generator().manual_seed(1)
        )
        for starts in (windows.obs[rows], windows.history(rows))
    )
    for key in ("next_obs", "rewards", "penalties", "start_ids"):
        assert torch.equal(getattr(a, key), getattr(b, key))


def test_steppers_check_their_arguments(ds, models):
    history = Windows(ds, M).history(torch.arange(5))
    with pytest.raises(ConfigError, match="history holds 4 states, the ensemble model's max_backtrack is 1"):
        models["ensemble"].stepper(history)
    for model in models.values():
        with pytest.raises(ConfigError, match="'backtrack_sampling' must be one of"):
            model.stepper(Windows(ds, model.window_length).history(torch.arange(5)), "per-step")


@pytest.mark.parametrize("algo", ["admpo-off", "mopo"])
def test_run_config_becomes_model_sizes(algo):
    overrides = ["dynamics.max_backtrack=3", "dynamics.hidden_dim=16", "dynamics.ensemble_hidden_dims=[8,8]"]
    overrides.append("dynamics.ensemble_weight_decays=[1e-5,1e-5,1e-5]")
    config = resolve(algo, overrides=overrides, dataset="tiny")
    kind = config.dynamics.model
    fields = fields_from(kind, config.dynamics)
    assert set(fields) == set(model_fields(kind))
    model = build_dynamics(config, 11, 3)
    assert model.kind == kind and model.config == build_config(kind, 11, 3, **fields)
    expected = {"adm": ("max_backtrack", 3), "ensemble": ("hidden_dims", (8, 8))}[kind]
    assert getattr(model.config, expected[0]) == expected[1]
    with pytest.raises(ConfigError, match="unknown kind"):
        model_fields("gp")


def test_fit_keeps_the_callers_random_stream(ds):
    model = tiny_adm(max_backtrack=2)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    fit(model, ds, FitConfig(max_epochs=1, batch_size=64, seed=7))
    assert torch.equal(torch.get_rng_state(), before)
