"""The side-by-side report of a protocol: frozen backbone, projection head and fine-tuned model on its test side."""

from __future__ import annotations


import numpy as np
import pandas as pd
from PIL import Image

from ..data.catalogue import Catalogue
from ..data.images import load_rgb
from ..models.trained import trained_model_name
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
    frozen features of the train side (``head``), the fine-tuned model in the folder ``trained`` alone and, when
    the folder fuses it with the frozen features, the folder's own embedding (``robust``: what a recipe built
    from the folder searches with).

    Columns: ``model, protocol, n_test, map_at_k`` (leave-one-out inside the test gallery), when the test side
    holds categories the train side lacks ``map_at_k_seen_types`` / ``map_at_k_unseen_types`` (the queries of
    each kind, searching the same gallery) and, for each
    alteration, ``<kind>_recall@1`` / ``<kind>_recall@10`` (the test photos altered are the queries, the
    originals the gallery, the same product the one relevant item). Test and train images must be readable.
    """
    from ..models.features import FeatureExtractor
    from ..models.projection_head import ProjectionHead
    from ..evaluation.comparison import per_query
    from ..models.trained import TrainedExtractor
    from ..search.backends import make_index

    labels = catalogue.labels.astype(str)
    test_paths = [catalogue.paths[i] for i in np.flatnonzero(split.test)]
    items = catalogue.table["id"].to_numpy()[split.test].astype(str)
    frozen = frozen if frozen is not None else FeatureExtractor(backbone)
    folder = trained.weights if isinstance(trained, TrainedExtractor) else trained
    robust = trained if isinstance(trained, TrainedExtractor) and trained.fusion else TrainedExtractor(folder)
    fine_tuned = TrainedExtractor(folder, info=robust.info, fusion=False) if robust.fused else robust
    models = {f"frozen {frozen.backbone}": (frozen, lambda f: f)}
    if head:
        train_paths = [catalogue.paths[i] for i in np.flatnonzero(split.train)]
        train_features = frozen.extract(train_paths, cache=cache, progress=progress).features
        fitted = ProjectionHead(frozen.feature_dim, seed=seed).fit(train_features, labels[split.train])
        models["projection head"] = (frozen, fitted.transform)
    models[trained_model_name(fine_tuned.info)] = (fine_tuned, lambda f: f)
    if robust.fused:
        models[f"robust (fused with frozen, w = {robust.info['fusion_weight']:g})"] = (robust, lambda f: f)
    seen = np.isin(labels[split.test], split.train_categories)
    extractors = list({id(e): e for e, _ in models.values()}.values())  # the head reuses the frozen features
    altered = dict(zip(map(id, extractors), altered_features(test_paths, extractors, alterations, seed)))
    originals = {id(e): e.extract(test_paths, cache=cache, progress=progress).features for e in extractors}
    rows = []
    for name, (extractor, transform) in models.items():
        gallery_features, query_features = originals[id(extractor)], altered[id(extractor)]
        gallery = transform(gallery_features)
        row = {"model": name, "protocol": split.name, "n_test": len(test_paths),
               f"map_at_{k}": category_map_at_k(gallery, labels[split.test], k)}
        if not seen.all():
            queries = per_query(make_index("exact", gallery), labels[split.test], k)
            kinds = seen[queries["row"].to_numpy()]
            row[f"map_at_{k}_seen_types"] = float(queries["ap_at_k"][kinds].mean())
            row[f"map_at_{k}_unseen_types"] = float(queries["ap_at_k"][~kinds].mean())
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


def similarity_gap(features: np.ndarray, labels, most: int = 2000, seed: int = 0) -> tuple[float, float]:
    """``(within, between)``: the mean cosine between two products of the same category and between two of
    different categories, over at most ``most`` of the ``(N, D)`` ``features`` drawn with ``seed`` (the cosine
    matrix grows as N²); unlabelled ("") products left out."""
    labels = np.asarray(labels, dtype=object).astype(str)
    rows = np.sort(np.random.default_rng(seed).permutation(len(labels))[:most])
    x, labels = np.asarray(features, dtype=np.float64)[rows], labels[rows]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cosine = x @ x.T
    labelled = labels != ""
    pairs = labelled[:, None] & labelled[None, :] & ~np.eye(len(labels), dtype=bool)
    same = labels[:, None] == labels[None, :]
    return float(cosine[pairs & same].mean()), float(cosine[pairs & ~same].mean())


def report_row(report: pd.DataFrame, protocol: str, model_start: str) -> pd.Series:
    """The row of :func:`protocol_report`'s ``report`` for ``protocol`` (a split's name) whose model's name starts
    with ``model_start`` (``"frozen"``, ``"projection head"``, ``"fine-tuned"`` or ``"probe kept"``
    (:func:`trained_model_name`), ``"robust"``); KeyError when none."""
    part = report[(report["protocol"] == protocol) & report["model"].str.startswith(model_start)]
    if part.empty:
        raise KeyError(f"no {model_start!r} row for {protocol!r} (models: {sorted(set(report['model']))})")
    return part.iloc[0]
