"""What a run measures on its decoded photos: embeddings, the validation AP@k, the gain over the probe, the mixing.

:class:`Validation` is the part of :class:`~.trainer.Trainer` that reads the model without changing it; the
callbacks call it after every epoch. It needs the trainer's ``photos``, ``settings``, ``probe_scores``, the
compiled functions ``_embed`` (photos → the trained embedding) and ``_pooled`` (photos → the backbone's pooled
features) and ``diverged`` (the error of a run that is not finite).
"""

from __future__ import annotations

import numpy as np

from ..models.features import default_batch_size
from .probe import gain_over_probe
from .protocols import category_ap_at_k


class Validation:
    """The trainer's measurements (a base class of :class:`~.trainer.Trainer`)."""

    def _batched(self, model, positions: np.ndarray) -> np.ndarray:
        """``model`` (a compiled images → vectors function) over the decoded photos at ``positions``, in
        device-sized batches: ``(len(positions), D)`` float32."""
        batch, images = default_batch_size(), self.photos.pixels[positions]
        return np.concatenate([np.asarray(model(images[i:i + batch]), dtype=np.float32)
                               for i in range(0, len(images), batch)])

    def pooled_features(self, positions: np.ndarray) -> np.ndarray:
        """``(len(positions), D)`` float32 L2-normalised: the backbone's pooled features (no augmentation) of
        the decoded photos at ``positions``, what the head receives (and what the frozen engine searches)."""
        return self._batched(self._pooled, positions)

    def validation_scores(self, frozen: bool = False, *, after: str = "the last step") -> np.ndarray:
        """``(Q,)`` leave-one-out AP@k of each validation query (no augmentation), in a fixed order; ``frozen``:
        of the backbone's pooled features instead (what the search engine uses without training). Embeddings
        that are not finite raise :class:`~.result.TrainingDivergedError` (``after``: where the run is)."""
        embeddings = self._batched(self._pooled if frozen else self._embed, self.photos.validation_rows)
        bad = ~np.isfinite(embeddings).all(axis=1)
        if bad.any() and not frozen:
            raise self.diverged(after, f"{int(bad.sum())} of the {len(bad)} validation embeddings hold NaN or "
                                       "infinity")
        return category_ap_at_k(embeddings, self.photos.validation_labels, self.settings.k)

    def validation_map(self, frozen: bool = False, *, after: str = "the last step") -> float:
        """Leave-one-out MAP@k of the current model on the validation split: the mean of
        :meth:`validation_scores`."""
        return float(np.mean(self.validation_scores(frozen, after=after)))

    def gain_over_probe(self, scores: np.ndarray) -> dict | None:
        """:func:`.probe.gain_over_probe` of ``scores`` (at ``beat_probe_level``); None without a probe."""
        s = self.settings
        return None if self.probe_scores is None else gain_over_probe(scores, self.probe_scores,
                                                                        s.beat_probe_level, s.seed)

    def mixing(self, frozen: np.ndarray | None) -> dict:
        """The fusion weight of the folder's best model and how it was chosen (:func:`.mixing.fusion_choice`;
        :func:`.mixing.no_fusion` without held-out categories). ``frozen``: the frozen features of the validation
        then held-out photos, computed before any training; the model holds the folder's best weights."""
        from .mixing import fusion_choice, no_fusion

        if frozen is None:
            return no_fusion(self.settings.mixing_fraction)
        p = self.photos
        trained = self._batched(self._embed, np.concatenate([p.validation_rows, p.held_out_rows]))
        labels = np.concatenate([p.validation_labels, p.held_out_labels])
        return fusion_choice(frozen, trained, labels, p.classes, self.settings.k, n_validation=len(p.validation_rows))
