"""The config keys a train/evaluate instruction carries. No Flower import here, so the
orchestrator can build instructions without touching Flower."""

from __future__ import annotations

from fedpilot.tasks._base import TrainSettings
from fedpilot.types import Config

# Flower's convention: "server-round" and hyphenated keys; "num-examples" in replies.
SERVER_ROUND = "server-round"
# Set by the attack simulation: the learner's label_flip transform flips its labels.
LABEL_FLIP = "label-flip"
# `task.<name>`: a value of the task's own param `<name>` for this call (learner tuning).
TASK_PARAM_PREFIX = "task."


def train_config(settings: TrainSettings, server_round: int) -> Config:
    """The ``"config"`` record of a train instruction."""
    return {
        SERVER_ROUND: server_round,
        "local-epochs": float(settings.epochs),
        "batch-size": settings.batch_size,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "momentum": settings.momentum,
        "weight-decay": settings.weight_decay,
        "seed": settings.seed,
    }


_DEFAULTS = TrainSettings()  # one instance: settings_from_config runs every training call


def settings_from_config(config: Config) -> TrainSettings:
    """Inverse of :func:`train_config`; missing keys take TrainSettings' defaults."""
    optimizer = str(config.get("optimizer", _DEFAULTS.optimizer))
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"`optimizer` must be 'sgd' or 'adam', got optimizer={optimizer!r}")
    return TrainSettings(
        epochs=float(config.get("local-epochs", _DEFAULTS.epochs)),
        batch_size=int(config.get("batch-size", _DEFAULTS.batch_size)),
        optimizer="sgd" if optimizer == "sgd" else "adam",
        lr=float(config.get("lr", _DEFAULTS.lr)),
        momentum=float(config.get("momentum", _DEFAULTS.momentum)),
        weight_decay=float(config.get("weight-decay", _DEFAULTS.weight_decay)),
        seed=int(config.get("seed", _DEFAULTS.seed)),
        task_params={
            key.removeprefix(TASK_PARAM_PREFIX): float(value)
            for key, value in config.items()
            if key.startswith(TASK_PARAM_PREFIX)
        },
    )
