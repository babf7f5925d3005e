import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from offline_mbrl.errors import ConfigError
from offline_mbrl.uncertainty import UNCERTAINTY, get_uncertainty

# Plain NumPy references on one row: mean, logvar (C, D + 1) of the available candidates only.


def np_adm_var(mean, logvar):
    mu, var = mean[:, :-1].astype(np.float64), np.exp(logvar[:, :-1].astype(np.float64))
    mixture = (var + mu**2).mean(axis=0) - mu.mean(axis=0) ** 2  # Eq. 4 as printed
    return np.abs(mixture).sum()


def np_std_of_means(mean, logvar):
    return np.sqrt(np.var(mean[:, :-1].astype(np.float64), axis=0).mean())  # np.var: ddof 0


def np_max_aleatoric(mean, logvar):
    return np.linalg.norm(np.sqrt(np.exp(logvar.astype(np.float64))), axis=1).max()


REFERENCES = {
    "adm_var": np_adm_var,
    "adm_std": np_std_of_means,
    "ensemble_std": np_std_of_means,
    "max_aleatoric": np_max_aleatoric,
}


def random_predictions(seed, c=5, b=7, d=4):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(c, b, d + 1)).astype(np.float32) * rng.uniform(0.1, 3)
    logvar = rng.uniform(-6, 1, size=(c, b, d + 1)).astype(np.float32)
    mask = rng.random((c, b)) < 0.6
    mask[0] = True  # k = 1 is always available
    return mean, logvar, mask


@pytest.mark.parametrize("name", sorted(UNCERTAINTY))
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), use_mask=st.booleans())
def test_matches_numpy_reference(name, seed, use_mask):
    mean, logvar, mask = random_predictions(seed)
    if not use_mask:
        mask[:] = True
    u = get_uncertainty(name)(
        torch.from_numpy(mean), torch.from_numpy(logvar), torch.from_numpy(mask) if use_mask else None
    )
    assert u.shape == (mean.shape[1],)
    expected = [REFERENCES[name](mean[mask[:, b], b], logvar[mask[:, b], b]) for b in range(mean.shape[1])]
    np.testing.assert_allclose(u.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert (u >= 0).all()


@pytest.mark.parametrize("name", ["adm_std", "ensemble_std"])
def test_zero_when_all_means_agree(name):
    mean, logvar, mask = random_predictions(0)
    mean[:] = mean[:1]
    mean[1:, 2] += 1e6  # an unavailable candidate is ignored
    mask[1:, 2] = False
    u = get_uncertainty(name)(torch.from_numpy(mean), torch.from_numpy(logvar), torch.from_numpy(mask))
    np.testing.assert_allclose(u.numpy(), 0.0, atol=1e-6)  # float rounding of the mean only


def test_adm_var_of_agreeing_deterministic_predictions_is_zero_and_grows_with_sigma():
    mean, logvar, _ = random_predictions(1)
    mean[:] = mean[:1]
    u_small = get_uncertainty("adm_var")(torch.from_numpy(mean), torch.full(mean.shape, -40.0))
    assert torch.allclose(u_small, torch.zeros(mean.shape[1]), atol=1e-12)
    u_big = get_uncertainty("adm_var")(torch.from_numpy(mean), torch.full(mean.shape, 0.0))
    np.testing.assert_allclose(u_big.numpy(), mean.shape[2] - 1, rtol=1e-6)  # Σ_d σ² with σ = 1, state dims only


def test_max_aleatoric_ignores_unavailable_and_includes_reward():
    mean = torch.zeros(3, 1, 3)
    logvar = torch.log(torch.tensor([[[1.0, 1.0, 4.0]], [[9.0, 9.0, 9.0]], [[100.0, 0.0, 0.0]]]))
    u = get_uncertainty("max_aleatoric")(mean, logvar, torch.tensor([[True], [True], [False]]))
    np.testing.assert_allclose(u.item(), np.sqrt(27.0), rtol=1e-6)


def test_nan_in_unavailable_candidate_does_not_leak():
    mean, logvar, mask = random_predictions(2)
    mean[~mask] = np.nan
    logvar[~mask] = np.inf
    for name in UNCERTAINTY:
        u = get_uncertainty(name)(torch.from_numpy(mean), torch.from_numpy(logvar), torch.from_numpy(mask))
        assert torch.isfinite(u).all(), name


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown quantifier 'nope'.*adm_std"):
        get_uncertainty("nope")
    with pytest.raises(ConfigError, match="'mask' must have shape"):
        get_uncertainty("adm_var")(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ConfigError, match=r"\(C, B, D \+ 1\)"):
        get_uncertainty("adm_std")(torch.zeros(2, 4), torch.zeros(2, 4))
