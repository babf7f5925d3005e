"""A model fit stopped after any epoch resumes from its checkpoint to the uninterrupted fit's weights, bit for bit;
a checkpoint of another fit is refused by name."""

from __future__ import annotations

import pytest
import torch

from offline_mbrl.errors import CheckpointError
from offline_mbrl.models.fit import FitConfig, fit
from tests.test_compounding import tiny


def _fresh(kind, dataset):
    return tiny(kind, dataset, seed=7).train()


@pytest.mark.parametrize("kind, validation_batch", [("adm", None), ("adm", 32), ("ensemble", None)])
def test_stopped_fit_resumes_bit_exactly(kind, validation_batch, hopper_dataset, tmp_path):
    def config(epochs):
        return FitConfig.for_model(
            _fresh(kind, hopper_dataset), max_epochs=epochs, seed=3, batch_size=64, validation_batch=validation_batch
        )

    whole = _fresh(kind, hopper_dataset)
    expected = fit(whole, hopper_dataset, config(4))
    partial = tmp_path / "fit.partial"
    fit(_fresh(kind, hopper_dataset), hopper_dataset, config(2), checkpoint=partial)  # "killed" after epoch 2
    assert len(torch.load(partial, weights_only=True)["history"]) == 2
    torch.manual_seed(12345)  # whatever the caller's random state, the resumed fit continues the stopped one's
    resumed_model = _fresh(kind, hopper_dataset)
    resumed = fit(resumed_model, hopper_dataset, config(4), checkpoint=partial)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history == expected.history and resumed.best_epoch == expected.best_epoch
    for key, value in whole.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key


def test_a_checkpoint_of_another_fit_is_refused(hopper_dataset, tmp_path):
    partial = tmp_path / "fit.partial"
    fit(
        _fresh("ensemble", hopper_dataset),
        hopper_dataset,
        FitConfig(max_epochs=1, seed=0, batch_size=64),
        checkpoint=partial,
    )
    with pytest.raises(CheckpointError, match=r"fit.partial: a fit checkpoint of another fit than this fit's"):
        fit(
            _fresh("ensemble", hopper_dataset),
            hopper_dataset,
            FitConfig(max_epochs=2, seed=1, batch_size=64),
            checkpoint=partial,
        )


def test_a_warm_started_fit_resumes_only_from_the_same_start(hopper_dataset, tmp_path):
    partial = tmp_path / "fit.partial"
    config = FitConfig(max_epochs=1, seed=0, batch_size=64)
    fit(_fresh("ensemble", hopper_dataset), hopper_dataset, config, checkpoint=partial, initial="start.pt")
    assert torch.load(partial, weights_only=True)["fingerprint"]["initial"]["from"] == "start.pt"
    with pytest.raises(CheckpointError, match=r"fit.partial: a fit checkpoint of another initial than this fit's"):
        fit(_fresh("ensemble", hopper_dataset), hopper_dataset, config, checkpoint=partial)  # a fresh start
    other = _fresh("ensemble", hopper_dataset)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    with pytest.raises(CheckpointError, match=r"another initial than this fit's"):
        fit(other, hopper_dataset, config, checkpoint=partial, initial="start.pt")  # same label, other weights
