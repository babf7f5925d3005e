import numpy as np
import pytest
import torch

from offline_mbrl.data.windows import Windows
from offline_mbrl.envs.termination import termination_fn
from offline_mbrl.errors import ConfigError
from offline_mbrl.rollout import rollout
from tests.models_helpers import (
    fit_stats,
    linear_policy,
    recompute_rollout,
    tiny_adm,
    tiny_boot_rnn,
    tiny_ensemble,
)

M, H = 4, 6


@pytest.fixture(scope="module")
def history(ds):
    starts = ds.episode_starts
    rows = torch.tensor([starts[1], starts[1] + 1, starts[2] + 2, 40, 77, 150, 151, 260, 333, 399])
    hist = Windows(ds, M).history(rows)
    assert sorted(set(hist.lengths.tolist())) == [1, 2, 3, 4]  # short and full histories
    return hist


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def adm(ds, **kw):
    return fit_stats(tiny_adm(max_backtrack=M, rollout_dropout=False, **kw), ds).eval()


@pytest.mark.parametrize("penalty", ["adm_std", "adm_var"])
@pytest.mark.parametrize("sampling", ["trajectory", "batch"])
def test_cached_adm_rollout_equals_recomputation(ds, history, penalty, sampling):
    model = adm(ds)
    result = rollout(model, linear_policy(), history, H, penalty=penalty, generator=gen(1), backtrack_sampling=sampling)
    reference = recompute_rollout(
        model, linear_policy(), history, H, gen(1), penalty, shared_choice=sampling == "batch"
    )
    assert result.stats["rollout/num_transitions"] == H * len(history)
    np.testing.assert_array_equal(result.start_ids.numpy(), np.tile(np.arange(len(history)), H))
    np.testing.assert_array_equal(result.steps.numpy(), np.repeat(np.arange(H), len(history)))
    for key in ("obs", "actions", "next_obs", "rewards", "penalties"):
        torch.testing.assert_close(getattr(result, key), reference[key], atol=1e-5, rtol=0)
    assert (result.penalties > 0).any()


def test_chunks_are_rolled_out_one_after_another(ds, history):
    model = adm(ds)
    result = rollout(model, linear_policy(), history, H, penalty="adm_var", generator=gen(1), chunk_size=4)
    generator, parts = gen(1), []
    for start in range(0, len(history), 4):  # blocks 0-3, 4-7, 8-9
        block = history[start : start + 4]
        part = recompute_rollout(model, linear_policy(), block, H, generator, "adm_var")
        part["start_ids"] = torch.arange(len(block)).repeat(H) + start
        parts.append(part)
    for key in ("next_obs", "penalties", "start_ids"):
        torch.testing.assert_close(getattr(result, key), torch.cat([p[key] for p in parts]), atol=1e-5, rtol=0)
    assert result.stats["rollout/num_transitions"] == H * len(history) and result.stats["rollout/mean_length"] == H
    assert result.stats["rollout/mean_penalty"] == pytest.approx(result.penalties.mean().item())


@pytest.mark.parametrize("sampling", ["trajectory", "batch", "longest"])
def test_backtrack_sampling_modes(ds, sampling):
    model = adm(ds)
    with torch.no_grad():
        model.logvar_bounds.max_logvar.fill_(-30.0)  # σ ≈ 0: next_obs is the chosen k's mean
        model.logvar_bounds.min_logvar.fill_(-40.0)
    rows = torch.from_numpy(np.flatnonzero(Windows(ds, M).steps_from_start.numpy() >= M - 1)[:40])
    full = Windows(ds, M).history(rows)
    result = rollout(model, linear_policy(), full, 1, generator=gen(4), backtrack_sampling=sampling)
    action = linear_policy()(full.obs[:, -1])
    with torch.no_grad():
        predictions = torch.stack(
            [
                model.predict(full.obs[:, M - k], torch.cat([full.actions[:, M - k :], action[:, None]], 1))[0][:, -1]
                for k in range(1, M + 1)
            ]
        )  # (M, B, D)
    distance = (predictions - result.next_obs).abs().amax(-1)  # (M, B)
    assert (distance.min(0).values < 1e-4).all()
    chosen = set(distance.argmin(0).tolist())  # k - 1 of each row
    assert {"trajectory": len(chosen) > 1, "batch": len(chosen) == 1, "longest": chosen == {M - 1}}[sampling]


def test_boot_rnn_rollout_equals_recomputation(ds, history):
    model = fit_stats(tiny_boot_rnn(max_backtrack=M, rollout_dropout=False), ds)
    result = rollout(model, linear_policy(), history, H, generator=gen(2))
    reference = recompute_rollout(model, linear_policy(), history, H, gen(2))
    for key in ("obs", "actions", "next_obs", "rewards"):
        torch.testing.assert_close(getattr(result, key), reference[key], atol=1e-5, rtol=0)
    assert (result.penalties == 0).all()


def test_ensemble_samples_only_elites(ds):
    model = fit_stats(tiny_ensemble(), ds)
    with torch.no_grad():
        model.logvar_bounds.max_logvar.fill_(-30.0)  # σ ≈ 0
        model.logvar_bounds.min_logvar.fill_(-40.0)
        model.layers[-1].bias[:, 0, :12] += 10.0 * torch.arange(4.0)[:, None]  # members far apart
    model.elites.copy_(torch.tensor([1, 3]))
    obs = torch.from_numpy(ds.obs[:200])
    result = rollout(model, linear_policy(), obs, 1, generator=gen(3))
    with torch.no_grad():
        mean, _ = model(obs, linear_policy()(obs))
    distance = (mean[..., :-1] + obs - result.next_obs).abs().amax(-1)  # (E, B)
    used = distance.argmin(0)
    assert (distance.min(0).values < 1e-3).all()
    assert set(used.tolist()) == {1, 3}


@pytest.mark.parametrize("kind", ["adm", "ensemble", "boot_rnn"])
def test_trajectories_stop_at_their_first_terminal(ds, history, kind):
    termination = termination_fn("Hopper-v5")
    if kind == "ensemble":
        result = rollout(
            fit_stats(tiny_ensemble(), ds),
            linear_policy(),
            history.obs[:, -1],
            H,
            termination=termination,
            generator=gen(),
        )
    elif kind == "adm":
        result = rollout(adm(ds), linear_policy(), history, H, termination=termination, generator=gen())
    else:
        result = rollout(
            fit_stats(tiny_boot_rnn(max_backtrack=M), ds),
            linear_policy(),
            history,
            H,
            termination=termination,
            generator=gen(),
        )
    assert result.terminals.sum() > 0
    for start in range(len(history)):
        rows = result.start_ids == start
        steps, terminal = result.steps[rows], result.terminals[rows]
        np.testing.assert_array_equal(steps.numpy(), np.arange(len(steps)))
        assert not terminal[:-1].any()
        assert terminal[-1] or len(steps) == H
        np.testing.assert_array_equal(
            terminal.numpy(), termination(result.obs[rows], result.actions[rows], result.next_obs[rows]).numpy()
        )
    assert result.stats["rollout/num_terminated"] == result.terminals.sum().item()
    assert result.stats["rollout/mean_length"] == len(result.rewards) / len(history)


def exploding_policy(threshold):
    """Infinite actions for states with obs[0] above ``threshold``: the model's output becomes NaN there."""
    return lambda obs: torch.where(obs[:, :1] > threshold, torch.inf, linear_policy()(obs))


@pytest.mark.parametrize("kind", ["adm", "ensemble"])
def test_nonfinite_steps_are_dropped_and_counted(ds, history, kind):
    height = history.obs[:, -1, 0]
    policy = exploding_policy(height.median())
    if kind == "adm":
        result = rollout(adm(ds), policy, history, H, penalty="adm_var", generator=gen(), chunk_size=3)
    else:
        result = rollout(
            fit_stats(tiny_ensemble(), ds),
            policy,
            history.obs[:, -1],
            H,
            penalty="ensemble_std",
            generator=gen(),
            chunk_size=3,
        )
    exploded = set(torch.nonzero(height > height.median()).flatten().tolist())
    assert len(exploded) == 5 and result.stats["rollout/num_nonfinite"] >= len(exploded)
    for t in (result.obs, result.actions, result.rewards, result.penalties, result.next_obs):
        assert torch.isfinite(t).all()
    assert not (set(result.start_ids.tolist()) & exploded)  # an exploded trajectory ends there
    assert result.stats["rollout/num_transitions"] + result.stats["rollout/num_nonfinite"] <= H * len(history)


def test_exploding_model_weights_leave_no_nonfinite_output(ds, history):
    model = adm(ds)
    with torch.no_grad():
        model.head[-1].weight.mul_(1e38)  # means overflow to ±inf
    result = rollout(model, linear_policy(), history, H, penalty="adm_std", generator=gen())
    assert len(result.rewards) == 0 and result.stats["rollout/num_nonfinite"] == len(history)
    assert result.stats["rollout/mean_penalty"] == 0.0 and result.stats["rollout/mean_length"] == 0.0


def test_open_loop_actions_and_determinism(ds, history):
    model = adm(ds)
    actions = torch.rand(len(history), H, 3, generator=gen(9)) * 2 - 1
    a = rollout(model, actions, history, H, penalty="adm_std", generator=gen(5))
    torch.testing.assert_close(a.actions, actions[a.start_ids, a.steps])
    b = rollout(model, actions, history, H, generator=gen(5))
    c = rollout(model, actions, history, H, generator=gen(6))
    assert torch.equal(a.next_obs, b.next_obs) and not torch.equal(a.next_obs, c.next_obs)
    torch.testing.assert_close(a.penalized_rewards(2.5), a.rewards - 2.5 * a.penalties)
    assert a.stats["rollout/mean_penalty"] == pytest.approx(a.penalties.mean().item())


def test_rollout_dropout_switch(ds, history):
    model = fit_stats(tiny_adm(max_backtrack=M, rollout_dropout=True, dropout=0.5), ds)
    model.eval()
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # dropout masks come from torch's global RNG
        runs.append(rollout(model, linear_policy(), history, 2, generator=gen()).next_obs)
    assert not torch.equal(*runs) and not model.training  # dropout was on, mode restored


def test_errors_name_the_problem(ds, history):
    with pytest.raises(ConfigError, match="history holds 4 states, the adm model's max_backtrack is 5"):
        rollout(fit_stats(tiny_adm(max_backtrack=5), ds), linear_policy(), history, H)
    with pytest.raises(ConfigError, match="chunk_size"):
        rollout(adm(ds), linear_policy(), history, H, chunk_size=0)
    with pytest.raises(ConfigError, match="no start states"):
        rollout(fit_stats(tiny_ensemble(), ds), linear_policy(), history.obs[:0, -1], H)
    with pytest.raises(ConfigError, match="rollout_length"):
        rollout(adm(ds), linear_policy(), history, 0)
    with pytest.raises(ConfigError, match="backtrack_sampling"):
        rollout(adm(ds), linear_policy(), history, H, backtrack_sampling="per-step")
    with pytest.raises(ConfigError, match=r"open-loop 'policy' actions must have shape \(B=10, H>=6, A=3\)"):
        rollout(adm(ds), torch.zeros(10, 2, 3), history, H)
    with pytest.raises(ConfigError, match="unknown quantifier"):
        rollout(fit_stats(tiny_ensemble(), ds), linear_policy(), history.obs[:, -1], H, penalty="var")
