"""The side-by-side report of a protocol: frozen backbone, projection head and fine-tuned model on its test side."""

from __future__ import annotations


import numpy as np
import pandas as pd
from PIL import Image

from ..data.catalogue import Catalogue
from ..data.images import load_rgb
from .protocols import ALTERATIONS, ProtocolSplit, alteration_rng, altered_copy, category_map_at_k, instance_retrieval


#: Test photos decoded and altered at a time: memory stays bounded whatever the catalogue's size.
ALTERED_CHUNK = 256


def _features_of_photos(extractor, photos: list[np.ndarray]) -> np.ndarray:
    pixels = np.stack([load_rgb(Image.fromarray(p), extractor.input_size, extractor.resize) for p in photos])
    return np.concatenate([extractor.features_of_pixels(pixels[i:i + extractor.batch_size])
                           for i in range(0, len(pixels), extractor.batch_size)])


def altered_features(paths, extractors, alterations=ALTERATIONS, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """For each of ``extractors``, ``{kind: (N, D) features}`` of the photos at ``paths`` altered by each kind
    (:func:`~.protocols.altered_copy`), every extractor seeing the same altered photos. The photos are read
    and altered :data:`ALTERED_CHUNK` at a time; the alterations are those of
    :func:`~.protocols.altered_copies` over the whole list."""
    rngs = {kind: alteration_rng(kind, seed) for kind in alterations}
    parts = [{kind: [] for kind in alterations} for _ in extractors]
    for start in range(0, len(paths), ALTERED_CHUNK):
        originals = [load_rgb(p) for p in paths[start:start + ALTERED_CHUNK]]
        for kind in alterations:
            photos = [altered_copy(image, kind, rngs[kind]) for image in originals]
            for part, extractor in zip(parts, extractors):
                part[kind].append(_features_of_photos(extractor, photos))
    return [{kind: np.concatenate(chunks) for kind, chunks in part.items()} for part in parts]


def protocol_report(catalogue: Catalogue, split: ProtocolSplit, trained, *, backbone: str = "efficientnet_lite0",
                    k: int = 10, alterations=ALTERATIONS, head: bool = True, cache=True, seed: int = 0,
                    progress: bool = False, frozen=None) -> pd.DataFrame:
    """MAP@k and instance Recall@1 / @10 on ``split``'s test side, one row per model: the frozen
    ``backbone`` (ImageNet), a :class:`~cbir_tutorial.models.projection_head.ProjectionHead` trained on the
    frozen features of the train side (``head``), and the fine-tuned model in the folder ``trained``.

    Columns: ``model, protocol, n_test, map_at_k`` (leave-one-out inside the test gallery) and, for each
    alteration, ``<kind>_recall@1`` / ``<kind>_recall@10`` (the test photos altered are the queries, the
    originals the gallery, the same product the one relevant item). Test and train images must be readable.
    """
    from ..models.features import FeatureExtractor
    from ..models.projection_head import ProjectionHead
    from ..models.trained import TrainedExtractor

    labels = catalogue.labels.astype(str)
    test_paths = [catalogue.paths[i] for i in np.flatnonzero(split.test)]
    items = catalogue.table["id"].to_numpy()[split.test].astype(str)
    frozen = frozen if frozen is not None else FeatureExtractor(backbone)
    fine_tuned = trained if isinstance(trained, TrainedExtractor) else TrainedExtractor(trained)
    models = {f"frozen {frozen.backbone}": (frozen, lambda f: f)}
    if head:
        train_paths = [catalogue.paths[i] for i in np.flatnonzero(split.train)]
        train_features = frozen.extract(train_paths, cache=cache, progress=progress).features
        fitted = ProjectionHead(frozen.feature_dim, seed=seed).fit(train_features, labels[split.train])
        models["projection head"] = (frozen, fitted.transform)
    models[f"fine-tuned ({fine_tuned.info.get('loss', '?')})"] = (fine_tuned, lambda f: f)
    extractors = list({id(e): e for e, _ in models.values()}.values())  # the head reuses the frozen features
    altered = dict(zip(map(id, extractors), altered_features(test_paths, extractors, alterations, seed)))
    originals = {id(e): e.extract(test_paths, cache=cache, progress=progress).features for e in extractors}
    rows = []
    for name, (extractor, transform) in models.items():
        gallery_features, query_features = originals[id(extractor)], altered[id(extractor)]
        gallery = transform(gallery_features)
        row = {"model": name, "protocol": split.name, "n_test": len(test_paths),
               f"map_at_{k}": category_map_at_k(gallery, labels[split.test], k)}
        for kind, features in query_features.items():
            found = instance_retrieval(transform(features), gallery, items, items)
            row.update({f"{kind}_{key}": value for key, value in found.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def photo_pair_retrieval(extractor, pairs: pd.DataFrame, *, ks=(1, 10), transform=None, cache=True,
                         progress: bool = False) -> dict[str, float]:
    """Instance Recall@K from one photo of a listing to the other: ``pairs`` with columns ``id``,
    ``model_path`` (the queries) and ``cutout_path`` (the gallery), as
    :func:`~.protocols.farfetch_photo_pairs` returns. ``extractor``: any feature extractor (frozen or
    trained); ``transform``: optional ``(N, D) → (N, d)`` on its features (a projection head).
    Pairs with an unreadable photo are left out; ``n_pairs`` says how many were scored."""
    queries = extractor.extract(pairs["model_path"].tolist(), cache=cache, progress=progress)
    gallery = extractor.extract(pairs["cutout_path"].tolist(), cache=cache, progress=progress)
    both = queries.kept & gallery.kept
    transform = transform or (lambda f: f)
    query_features = transform(queries.features[both[queries.kept]])
    gallery_features = transform(gallery.features[both[gallery.kept]])
    ids = pairs["id"].to_numpy().astype(str)[both]
    return {"n_pairs": int(both.sum()), **instance_retrieval(query_features, gallery_features, ids, ids, ks)}
