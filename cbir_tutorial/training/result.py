"""What a fine-tuning run returns (:class:`TrainingResult`) and the error of one that diverged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class TrainingDivergedError(RuntimeError):
    """A loss or an embedding that is not finite: the run stopped there; one line naming the epoch and step."""


@dataclass
class TrainingResult:
    """What a run did: ``history`` (one dict per epoch: ``epoch``, ``phase``, ``loss``, ``val_map``,
    ``seconds`` and, after a probe, ``gain`` over its validation MAP, its interval ``gain_low`` / ``gain_high``
    and ``beats_probe``, :meth:`~.trainer.Trainer.gain_over_probe`), the ``best_epoch`` and its ``best_val_map``
    (epoch 0: the probe was best), ``frozen_val_map`` (the backbone's own features on the same validation
    split), ``probe_val_map`` (the head fitted on frozen features; NaN without one), ``refit`` (the photos the
    kept probe was fitted again on; 0: not refitted), ``mixing`` (the fusion weight chosen and its curve,
    :meth:`~.trainer.Trainer.mixing`) and ``folder`` (the saved trained model)."""

    folder: Path
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_map: float = -1.0
    frozen_val_map: float = float("nan")
    probe_val_map: float = float("nan")
    refit: int = 0
    stopped_early: bool = False
    skipped: list[str] = field(default_factory=list)
    mixing: dict = field(default_factory=dict)
