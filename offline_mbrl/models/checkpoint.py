"""Saving and loading dynamics models (STYLE 6: written atomically, loaded with ``weights_only=True``).

A checkpoint is a plain dict ``{"format": 1, "kind": "adm" | "ensemble" | "boot_rnn", "config": {…},
"state_dict": {…}}``; the state dict holds the weights, the normalization statistics and (ensemble) the
elite indices. A model saved by ``offline-mbrl model fit`` also holds ``"fit"``, the fit's record
(``models.fit.fit_record``: settings, dataset, per-epoch history, selection), which ``fit_progress`` and
``offline-mbrl model status`` read. ``load_model`` rebuilds the right class from ``kind``.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from ..errors import CheckpointError
from ..persist import save_atomic
from . import MODEL_CLASSES

FORMAT_VERSION = 1


def save_model(model: nn.Module, path: str | os.PathLike, fit_record: dict | None = None) -> None:
    """Write ``model`` (any of ``MODEL_CLASSES``) to ``path`` atomically (temp file in the same folder +
    ``os.replace``); parent folders are created. Tensors are saved as they are (load maps them).
    ``fit_record``: the record of the fit that made the model (``models.fit.fit_record``), kept under ``"fit"``."""
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model.config).items()}
    payload = {"format": FORMAT_VERSION, "kind": model.kind, "config": config, "state_dict": model.state_dict()}
    if fit_record is not None:
        payload["fit"] = fit_record
    save_atomic(payload, path)


def load_model(path: str | os.PathLike, device: torch.device | str | None = None) -> nn.Module:
    """Rebuild the model stored at ``path`` on ``device`` (default CPU), in eval mode.

    Raises:
        CheckpointError: missing or unreadable file, unknown format or kind, bad config, or a state dict that
            does not match the model. The message names the file.
    """
    device = torch.device(device or "cpu")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: checkpoint file does not exist") from exc
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: field 'format' must be {FORMAT_VERSION}, "
            f"got {payload.get('format') if isinstance(payload, dict) else type(payload).__name__}"
        )
    if payload.get("kind") not in MODEL_CLASSES:
        raise CheckpointError(
            f"{path}: field 'kind' must be one of {sorted(MODEL_CLASSES)}, got {payload.get('kind')!r}"
        )
    model_cls, config_cls = MODEL_CLASSES[payload["kind"]]
    try:
        model = model_cls(config_cls(**payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: '{payload['kind']}' checkpoint does not match the model ({exc})") from exc
    return model.to(device).eval()
