"""Normalized scores against the published reference returns (REFERENCE-datasets.md 1.4 and 2.3)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_mbrl.data import TransitionDataset, normalize_std, normalized_score, reference_scores, score_reference
from offline_mbrl.data.scores import known_tasks
from offline_mbrl.errors import ScoreError

# Typed in again from the reference tables, independently of scores.py.
PUBLISHED = {
    "hopper-medium-v2": (-20.272305, 3234.3),
    "halfcheetah-medium-replay-v2": (-280.178953, 12135.0),
    "walker2d-expert-v0": (1.629008, 4592.3),
    "neorl-hopper-low": (5.0, 3294.0),
    "neorl-halfcheetah-medium": (-298.0, 12284.0),
    "neorl-walker2d-high": (1.0, 5143.0),
}


@pytest.mark.parametrize("task, refs", PUBLISHED.items())
def test_published_references(task, refs):
    assert reference_scores(task) == refs
    returns = np.array([refs[0], refs[1], 1000.0])
    expected = 100.0 * (returns - refs[0]) / (refs[1] - refs[0])
    np.testing.assert_allclose(normalized_score(task, returns), expected, rtol=1e-12)


def test_all_d4rl_kinds_versions_and_spellings_share_the_env_reference():
    kinds = ("random", "medium", "expert", "medium-replay", "full-replay", "medium-expert")
    for kind in kinds:
        for name in (
            f"hopper-{kind}",
            f"hopper-{kind}-v0",
            f"hopper-{kind}-v1",
            f"hopper-{kind}-v2",
            f"Hopper_{kind.replace('-', '_')}-v2",
        ):
            assert reference_scores(name) == (-20.272305, 3234.3), name
    assert len([t for t in known_tasks() if t.startswith("neorl-")]) == 9
    assert len(known_tasks()) == 3 * len(kinds) + 9


def test_known_hopper_figure():
    # D4RL hopper: a return of 1000 is 100 * 1020.272305 / 3254.572305 = 31.3489 normalized
    assert normalized_score("hopper-medium-v2", 1000.0) == pytest.approx(31.3489, abs=1e-4)
    assert isinstance(normalized_score("hopper-medium-v2", 1000.0), float)


@pytest.mark.parametrize(
    "task",
    ["ant-medium-v2", "hopper-medium-v9", "neorl-hopper-expert", "neorl-hopper-low-v2", "mujoco/hopper/medium-v0"],
)
def test_unknown_task_lists_known_ones(task):
    with pytest.raises(ScoreError) as info:
        normalized_score(task, 1.0)
    message = str(info.value)
    assert f"no normalization reference for task '{task}'" in message
    assert "hopper-medium-replay" in message and "neorl-walker2d-high" in message


def _dataset(**metadata) -> TransitionDataset:
    return TransitionDataset(
        obs=np.zeros((2, 3)),
        actions=np.zeros((2, 1)),
        rewards=np.zeros(2),
        next_obs=np.zeros((2, 3)),
        terminals=np.zeros(2),
        timeouts=np.zeros(2),
        metadata=metadata,
        source="data.hdf5",
    )


def test_dataset_references_prefer_its_own_ref_scores():
    assert reference_scores(_dataset(ref_min_score=10.0, ref_max_score=110.0, task="hopper-medium-v2")) == (10.0, 110.0)
    assert reference_scores(_dataset(task="neorl-walker2d-low")) == (1.0, 5143.0)
    assert normalized_score(_dataset(ref_min_score=10.0, ref_max_score=110.0), 60.0) == pytest.approx(50.0)
    with pytest.raises(ScoreError, match="data.hdf5: no normalization reference: metadata has neither"):
        reference_scores(_dataset())
    with pytest.raises(ScoreError, match="data.hdf5: metadata ref scores: need finite R_min < R_max"):
        reference_scores(_dataset(ref_min_score=5.0, ref_max_score=5.0))


@pytest.mark.parametrize("pair", [(1.0, 0.0), (0.0, np.inf), (1.0,), ("a", "b"), 3.0])
def test_bad_reference_pairs(pair):
    with pytest.raises(ScoreError, match="reference pair"):
        normalized_score(pair, 1.0)


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(-1e4, 1e4), span=st.floats(1e-2, 1e5), returns=st.lists(st.floats(-1e5, 1e5), min_size=1, max_size=8)
)
def test_affine_map_properties(low, span, returns):
    refs = (low, low + span)
    scores = normalized_score(refs, np.array(returns).reshape(-1, 1))
    assert scores.shape == (len(returns), 1)
    np.testing.assert_allclose(scores[:, 0], 100.0 * (np.array(returns) - refs[0]) / (refs[1] - refs[0]))
    assert normalized_score(refs, refs[0]) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(refs, refs[1]) == pytest.approx(100.0)


def test_std_is_scaled_never_shifted():
    std = np.array([0.0, 100.0, 3254.572305])
    np.testing.assert_allclose(normalize_std("hopper-medium-v2", std), std * 100.0 / (3234.3 + 20.272305))
    assert normalize_std("hopper-medium-v2", 0.0) == 0.0  # an offset would make this nonzero
    returns = np.array([500.0, 900.0, 1700.0])
    np.testing.assert_allclose(
        normalize_std("neorl-hopper-low", returns.std()), normalized_score("neorl-hopper-low", returns).std()
    )


@pytest.mark.parametrize(
    "env_id, env",
    [("Hopper-v5", "hopper"), ("Walker2d-v5", "walker2d"), ("HalfCheetah-v5", "halfcheetah"), ("hopper-v2", "hopper")],
)
def test_dataset_without_references_falls_back_to_d4rl_of_its_env(env_id, env):
    reference = score_reference(_dataset(env_id=env_id))
    assert (reference.low, reference.high) == PUBLISHED[
        {"hopper": "hopper-medium-v2", "walker2d": "walker2d-expert-v0", "halfcheetah": "halfcheetah-medium-replay-v2"}[
            env
        ]
    ]
    assert reference.source == f"d4rl:{env}"
    assert reference.describe().startswith(f"D4RL {env} (dataset has none; env {env_id}): random ")


def test_reference_sources_in_order_of_precedence():
    own = _dataset(ref_min_score=10.0, ref_max_score=110.0, task="hopper-medium-v2", env_id="Hopper-v5")
    assert score_reference(own).source == "dataset"
    assert score_reference(_dataset(task="hopper-medium-v2", env_id="Walker2d-v5")).source == "task"
    assert score_reference("hopper-medium-v2").source == "task" and score_reference((0.0, 1.0)).source == "pair"


@pytest.mark.parametrize("env_id", ["Ant-v5", "MyHopper-v0", "Hopper", None])
def test_env_without_d4rl_counterpart_has_no_reference(env_id):
    with pytest.raises(ScoreError, match=f"its env_id {env_id!r} has no D4RL counterpart"):
        score_reference(_dataset(env_id=env_id))
