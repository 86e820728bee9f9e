"""Every choice of a fine-tuning run, with a GPU default and a CPU preset."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..models.backbones import backbone_spec
from ..models.features import gpus
from .losses import loss_from_word


@dataclass(frozen=True)
class TrainingSettings:
    """Every choice of a fine-tuning run; the defaults are meant for a GPU (see :meth:`cpu`).

    ``hidden_dim``: the embedding head is the projection head's MLP (L2-normalised pooled features → Dense
    ``hidden_dim`` ReLU → Dense ``embedding_dim`` → L2, :func:`~cbir_tutorial.models.trained.embedding_model`);
    ``probe_steps``: full-batch steps fitting that head alone on the frozen backbone's features of the
    unaugmented training photos, before any epoch, exactly as
    :class:`~cbir_tutorial.models.projection_head.ProjectionHead` fits (the probe of LP-FT, Kumar et al.
    2022: the fine-tuning starts from a fitted head, and the probe is kept unless an epoch beats it on
    validation); ``beat_probe_level``: an epoch replaces the probe only when the paired bootstrap interval of
    its gain in validation AP@k over the probe's, at this level, lies above 0
    (:func:`~cbir_tutorial.evaluation.comparison.paired_bootstrap`, the level of notebook 6's verdicts; 0:
    any gain); ``refit_probe``: a probe kept is fitted again, once every choice is made, on every product of
    the training side (validation and held-out categories included, as the projection head is);
    ``trainable_blocks``: backbone blocks fine-tuned after ``warmup_epochs`` epochs of the head
    alone; ``learning_rate``: the head's (AdamW, ``weight_decay``); the proxies learn at ``learning_rate *
    proxy_lr_scale`` and the backbone's blocks at ``learning_rate * backbone_lr_scale``. A batch is
    ``classes_per_batch`` × ``images_per_class`` images. ``image_size``: None for the backbone's own.
    ``validation_fraction`` / ``validation_by``: see :func:`~cbir_tutorial.training.protocols.validation_split`.
    ``mixing_fraction``: the share of the products, in whole categories, held out of training
    (:func:`~cbir_tutorial.training.protocols.held_out_categories`; 0: none) to choose how much the saved model
    keeps of the frozen features (:mod:`~cbir_tutorial.training.mixing`: its embedding is the trained one fused
    with them, the weight chosen on those categories so that kinds of product it never saw are not searched
    worse than with the frozen features). ``patience``: epochs without a better validation MAP@``k`` before
    stopping (Keras's ``EarlyStopping``, which never stops after the first epoch of a run). ``mixed_precision``: as
    :func:`~cbir_tutorial.models.features.mixed_precision_policy` ("auto": on with a GPU).
    """

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    loss: str = "proxy-anchor"
    embedding_dim: int = 256
    hidden_dim: int = 512
    trainable_blocks: int = 4
    probe_steps: int = 300
    beat_probe_level: float = 0.95
    refit_probe: bool = True
    epochs: int = 30
    warmup_epochs: int = 2
    learning_rate: float = 1e-3
    backbone_lr_scale: float = 0.1
    proxy_lr_scale: float = 10.0
    weight_decay: float = 1e-4
    classes_per_batch: int = 16
    images_per_class: int = 4
    image_size: int | None = None
    resize: str = "squash"
    augment: bool = True
    validation_fraction: float = 0.2
    validation_by: str = "products"
    mixing_fraction: float = 0.15
    patience: int = 5
    k: int = 10
    seed: int = 0
    mixed_precision: str = "auto"

    @classmethod
    def cpu(cls, **changes) -> "TrainingSettings":
        """A preset for a laptop's CPU: batches of 8×4, the last 2 blocks, 12 epochs (1 of warm-up).

        The command line's runs on the sample with it (224 px, a shared 2-core CPU) stopped early and took 437 to
        1,335 s of wall time (benchmarks/RESULTS.md section 8)."""
        return replace(cls(classes_per_batch=8, images_per_class=4, trainable_blocks=2, epochs=12, warmup_epochs=1,
                           patience=4), **changes)

    @classmethod
    def for_this_machine(cls, **changes) -> "TrainingSettings":
        """The GPU defaults when TensorFlow sees a GPU, else :meth:`cpu`."""
        return replace(cls(), **changes) if gpus() else cls.cpu(**changes)

    def run_name(self, catalogue: str, n_products: int) -> str:
        """A folder name for a run of these settings on ``n_products`` of ``catalogue``:
        ``CATALOGUE-N-LOSS-HASH`` (the first 10 hex digits of SHA-256 of the settings and the package's version),
        so the same settings find their run again (and resume it) and other settings, or another version of the
        trainer, never do."""
        import hashlib

        from .._version import __version__

        digest = hashlib.sha256(f"{__version__} {self!r}".encode()).hexdigest()[:10]
        return f"{catalogue}-{n_products}-{self.loss}-{digest}"

    def checked(self) -> "TrainingSettings":
        """These settings with the loss and backbone names made canonical; ValueError for impossible ones."""
        if (self.warmup_epochs < 0 or self.epochs < 1 or self.trainable_blocks < 0 or self.probe_steps < 0
                or self.hidden_dim < 1):
            raise ValueError(f"epochs={self.epochs}, warmup_epochs={self.warmup_epochs}, "
                             f"trainable_blocks={self.trainable_blocks}, probe_steps={self.probe_steps}, "
                             f"hidden_dim={self.hidden_dim}: need epochs and hidden_dim >= 1 and the others >= 0")
        if not 0 <= self.beat_probe_level < 1:
            raise ValueError(f"beat_probe_level={self.beat_probe_level}: need a confidence level from 0 (any gain "
                             "replaces the probe) to below 1")
        if not 0 <= self.mixing_fraction < 1:
            raise ValueError(f"mixing_fraction={self.mixing_fraction}: need a share from 0 (no mixing) to below 1")
        if not (np.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise ValueError(f"learning_rate={self.learning_rate}: need a finite number >= 0 (0: nothing moves)")
        return replace(self, loss=loss_from_word(self.loss), backbone=backbone_spec(self.backbone).name)
