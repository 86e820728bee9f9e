"""Training: teach the engine a catalogue's categories by metric learning, and measure it honestly.

One concept per module: ``losses`` (Proxy-Anchor, multi-similarity), ``sampler`` (P classes × K images),
``augment`` (random resized crop, flip, colour jitter), ``model`` (last blocks trainable, BatchNorm frozen, the
projection head's MLP on top), ``settings`` (every choice of a run), ``learner`` (the ``keras.Model`` that
``fit`` trains, its grouped optimiser and batches), ``callbacks`` (validation, the best model, the checkpoint,
early stopping), ``trainer`` (the head fitted on frozen features, then ``fit``; a diverged run stopped at once),
``validation`` (what a run measures on its photos), ``result`` (what it returns), ``checkpoint`` (the checkpoint
file and the checks before resuming it), ``output_folder`` (the run's folder checked before any work and locked
against a second run), ``mixing`` (the fusion with the frozen features, its weight chosen on held-out
categories), ``protocols`` (unseen categories, unseen products, new types, instance retrieval) and ``report``
(frozen, projection head and fine-tuned side by side). A saved model is read back by
:mod:`cbir_tutorial.models.trained`, which needs nothing from here. TensorFlow is imported when a model is built
or a loss computed.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "proxy_anchor_loss": ".losses", "multi_similarity_loss": ".losses", "proxy_variable": ".losses",
    "pk_batches": ".sampler", "Augmentation": ".augment", "augmented": ".augment",
    "trainable_model": ".model", "TrainingSettings": ".settings",
    "MetricLearner": ".learner", "GroupAdamW": ".learner", "PKBatches": ".learner", "TrainingResult": ".result",
    "Trainer": ".trainer", "train": ".trainer", "TrainingDivergedError": ".result", "CheckpointError": ".checkpoint",
    "OutputLock": ".output_folder", "OutputFolderError": ".output_folder", "FolderBusyError": ".output_folder",
    "OutputWriteError": ".output_folder",
    "ProtocolSplit": ".protocols", "unseen_categories_split": ".protocols", "unseen_products_split": ".protocols",
    "validation_split": ".protocols", "held_out_categories": ".protocols", "new_types_split": ".protocols",
    "category_halves": ".protocols", "mixing_curve": ".mixing", "chosen_weight": ".mixing",
    "tradeoff_figure": ".mixing", "altered_copies": ".protocols", "instance_recall_at_k": ".protocols",
    "instance_retrieval": ".protocols", "farfetch_photo_pairs": ".protocols", "category_map_at_k": ".protocols",
    "protocol_report": ".report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
