"""Honest evaluation protocols for a trained model: what it learned, and how far that carries.

* :func:`unseen_categories_split` - train on some categories, test on the others (never seen);
* :func:`unseen_products_split` - in every category, train on some products, test on the others;
* :func:`new_types_split` - "trained on A, searched on B": train on half the categories (:func:`category_halves`),
  search a catalogue holding the held-out products of those and every product of the others;
* :func:`validation_split` - carved from the training side only, for early stopping and every setting
  (:func:`training_split`: the one a training run draws, refused when it cannot train or measure);
  :func:`held_out_categories` - whole categories kept out of training, to choose how much of the frozen
  features the trained model keeps (:mod:`.mixing`);
* instance retrieval - find the same product from an altered photo (:func:`altered_copies`) or, on
  Farfetch, from its model photo to its cut-out (:func:`farfetch_photo_pairs`), scored with
  :func:`instance_recall_at_k`.

Splits are drawn from the labels and a seed only, never from scores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

ALTERATIONS = ("crop", "colour", "scale")


@dataclass
class ProtocolSplit:
    """Two disjoint ``(N,)`` bool masks over a catalogue, ``train`` and ``test``, and the categories each
    holds. Unlabelled ("") products are in neither."""

    name: str
    train: np.ndarray
    test: np.ndarray
    train_categories: list[str]
    test_categories: list[str]

    def __repr__(self) -> str:
        return (f"ProtocolSplit({self.name!r}: train {int(self.train.sum())} products of "
                f"{len(self.train_categories)} categories, test {int(self.test.sum())} of "
                f"{len(self.test_categories)})")


def _categories(labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels as str (N,), category names (sorted), their sizes)``, the empty label left out."""
    labels = np.asarray(labels, dtype=object).astype(str)
    names, counts = np.unique(labels[labels != ""], return_counts=True)
    return labels, names, counts


def _split(name: str, labels: np.ndarray, test: np.ndarray) -> ProtocolSplit:
    train = (labels != "") & ~test
    return ProtocolSplit(name, train, test, sorted(set(labels[train])), sorted(set(labels[test])))


def unseen_categories_split(labels, *, test_fraction: float = 0.5, min_size: int = 2, seed: int = 0) -> ProtocolSplit:
    """Whole categories to the test side: ``test_fraction`` of those with at least ``min_size`` products
    (so each test product has a relevant item), drawn with ``seed``; every other labelled product trains.
    At least one category stays on each side."""
    labels, names, counts = _categories(labels)
    usable = names[counts >= min_size]
    if len(usable) < 2:
        raise ValueError(f"need 2 or more categories with {min_size}+ products (one or more to hold out, one to "
                         f"train), found {len(usable)} among {len(names)} categories")
    n_test = min(len(usable) - 1, max(1, round(test_fraction * len(usable))))
    test_names = np.random.default_rng(seed).permutation(usable)[:n_test]
    return _split("unseen categories", labels, np.isin(labels, test_names))


def unseen_products_split(labels, *, test_fraction: float = 0.5, min_size: int = 4, seed: int = 0) -> ProtocolSplit:
    """In each category with at least ``min_size`` products, ``test_fraction`` of them (at least 2, at
    least 2 left to train) to the test side, drawn with ``seed``; smaller categories train whole."""
    labels, names, counts = _categories(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for name, count in zip(names, counts):
        if count < max(min_size, 4):
            continue
        rows = rng.permutation(np.flatnonzero(labels == name))
        test[rows[:min(count - 2, max(2, round(test_fraction * count)))]] = True
    if not test.any():
        largest = f"the largest of the {len(names)} categories has {counts.max()}" if len(names) else "none is labelled"
        raise ValueError(f"no category has {max(min_size, 4)}+ products ({largest}): holding products out needs 2 of "
                         "a category to test and 2 to train")
    return _split("unseen products of seen categories", labels, test)


def category_halves(labels) -> tuple[list[str], list[str]]:
    """``(A, B)``: a catalogue's categories in two halves by a fixed rule, no seed: sorted by size (largest
    first, ties by name) and dealt alternately, the first to A, so both halves hold large and small ones."""
    _, names, counts = _categories(labels)
    order = sorted(zip(names.tolist(), counts.tolist()), key=lambda pair: (-pair[1], pair[0]))
    return sorted(name for name, _ in order[0::2]), sorted(name for name, _ in order[1::2])


def new_types_split(labels, *, test_fraction: float = 0.5, seed: int = 0) -> ProtocolSplit:
    """"Trained on A, searched on B": the categories in two halves (:func:`category_halves`); the train side is
    :func:`unseen_products_split` of half A's categories (``test_fraction``, ``seed``), the test side holds A's
    held-out products and every product of B: a shop's catalogue where new kinds of product arrived. Its
    ``test_categories`` - ``train_categories`` are the types the model never saw."""
    labels, _, _ = _categories(labels)
    a, _ = category_halves(labels)
    in_a = np.isin(labels, a)
    seen = unseen_products_split(np.where(in_a, labels, ""), test_fraction=test_fraction, seed=seed)
    return _split("trained on A, searched on B", labels, (labels != "") & (seen.test | ~in_a))


def held_out_categories(labels, within, *, fraction: float, min_size: int = 2, seed: int = 0) -> np.ndarray:
    """``(N,)`` bool: whole categories of the ``within`` mask held out of training, for choosing what a model
    keeps of the frozen features on kinds of product it never saw. Categories with at least ``min_size``
    products in ``within`` are drawn in a seeded order and kept while the products held out stay within
    ``fraction`` of ``within``'s; all False unless at least 2 categories are held out and 2 are left to train."""
    within = np.asarray(within, dtype=bool)
    labels = np.asarray(labels, dtype=object).astype(str)
    names, counts = np.unique(labels[within & (labels != "")], return_counts=True)
    held, total = [], 0
    for i in np.random.default_rng([seed, 1]).permutation(len(names)):
        if counts[i] >= min_size and total + counts[i] <= fraction * within.sum():
            held.append(names[i])
            total += counts[i]
    if len(held) < 2 or len(names) - len(held) < 2:
        return np.zeros(len(labels), dtype=bool)
    return within & np.isin(labels, held)


def validation_split(labels, within, *, fraction: float = 0.2, by: str = "products",
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` ``(N,)`` bool masks that split the ``within`` mask (the training side) only.

    ``by="products"``: :func:`unseen_products_split` of the training products (the validation set has
    held-out products of training categories); ``by="categories"``: :func:`unseen_categories_split`
    (whole training categories held out, to choose settings for the unseen-categories protocol).
    """
    within = np.asarray(within, dtype=bool)
    labels = np.asarray(labels, dtype=object).astype(str)
    if by not in ("products", "categories"):
        raise ValueError(f"by={by!r}: use 'products' or 'categories'")
    split = (unseen_products_split if by == "products" else unseen_categories_split)(
        labels[within], test_fraction=fraction, seed=seed)
    train, validation = np.zeros(len(labels), dtype=bool), np.zeros(len(labels), dtype=bool)
    train[np.flatnonzero(within)[split.train]] = True
    validation[np.flatnonzero(within)[split.test]] = True
    return train, validation


def training_split(labels, settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, validation, held_out)`` ``(N,)`` bool masks of a catalogue's ``labels``: first the
    :func:`held_out_categories` (``settings.mixing_fraction`` of the products, none when the catalogue has
    too few categories), then :func:`validation_split` of the rest with a run's ``settings.validation_*``
    (and ``seed``, :class:`~.settings.TrainingSettings`). ValueError, saying which side needs what, when metric
    learning cannot be done or measured: fewer than 2 categories, no split to draw, or a side with fewer than 2
    categories (a MAP over one category is 1 whatever the model)."""
    labels = np.asarray(labels, dtype=object).astype(str)
    labelled = labels != ""
    held_out = held_out_categories(labels, labelled, fraction=settings.mixing_fraction, seed=settings.seed)
    names, counts = np.unique(labels[labelled], return_counts=True)
    if len(names) < 2:
        found = f" ({names[0]}, {counts[0]} products)" if len(names) else ""
        raise ValueError(f"metric learning needs products of at least 2 categories; found {len(names)}{found}: add "
                         "photos of other categories")
    kind = ("held-out products of the training categories" if settings.validation_by == "products"
            else "held-out training categories")
    where = (f"the validation split ({kind}, validation_by={settings.validation_by!r}) of {int(labelled.sum())} "
             f"products in {len(names)} categories (the largest has {counts.max()})")
    try:
        train, validation = validation_split(labels, labelled & ~held_out, fraction=settings.validation_fraction,
                                             by=settings.validation_by, seed=settings.seed)
    except ValueError as error:
        raise ValueError(f"{where}: {error}; give more products per category") from None
    problem = sides_problem(labels[train], labels[validation])
    if problem:
        raise ValueError(f"{where}: {problem}")
    return train, validation, held_out


def sides_problem(train_labels: np.ndarray, validation_labels: np.ndarray) -> str | None:
    """What makes a split unusable for training and validation, or None."""
    def categories(names) -> str:
        return (f"1 category ({names[0]})" if len(names) == 1 else f"{len(names)} categories") if len(names) \
            else "no category"

    names, counts = np.unique(validation_labels, return_counts=True)
    scored = names[counts >= 2]  # a category scores only with another of its products to find
    if len(np.unique(train_labels)) < 2:
        return f"its training side holds {categories(np.unique(train_labels))}: metric learning needs 2 or more"
    if len(scored) < 2:
        return (f"its validation side holds {categories(scored)} with 2+ products: a MAP over fewer than 2 "
                "categories is 1 whatever the model; give more products per category, or more categories")
    return None


def category_ap_at_k(features: np.ndarray, labels, k: int = 10) -> np.ndarray:
    """``(Q,)`` leave-one-out AP@k inside one gallery, in row order: every product whose category has another
    member queries the rest (:func:`cbir_tutorial.evaluation.comparison.per_query`); ``features`` ``(N, D)``."""
    from ..evaluation.comparison import per_query
    from ..search.backends import make_index

    queries = per_query(make_index("exact", np.asarray(features, dtype=np.float32)), labels, k)
    if len(queries) == 0:
        raise ValueError("no category has 2 or more products: nothing to evaluate")
    return queries["ap_at_k"].to_numpy(dtype=float)


def category_map_at_k(features: np.ndarray, labels, k: int = 10) -> float:
    """Leave-one-out MAP@k inside one gallery: the mean of :func:`category_ap_at_k` (what
    :func:`cbir_tutorial.evaluation.metrics.evaluate` reports as ``map_at_k``)."""
    return float(np.mean(category_ap_at_k(features, labels, k)))


# --------------------------------------------------------------------------------------------------
# Instance retrieval


def altered_copy(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """``(H, W, 3)`` uint8 → the same photo altered, same shape and dtype.

    ``"crop"``: a random window of 55-80 % of each side, resized back; ``"colour"``: hue turned by 15-45°
    either way, saturation × 0.6-1.4, brightness × 0.75-1.25; ``"scale"``: shrunk to 45-75 % and pasted at
    a random place on white (the product smaller in the frame).
    """
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    w, h = picture.size
    if kind == "crop":
        cw, ch = (max(1, round(s * rng.uniform(0.55, 0.8))) for s in (w, h))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = picture.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)
    elif kind == "colour":
        hsv = np.asarray(picture.convert("HSV")).copy()
        turn = rng.uniform(15, 45) * rng.choice([-1, 1]) * 256 / 360
        hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + round(turn)) % 256).astype(np.uint8)
        out = Image.fromarray(hsv, "HSV").convert("RGB")
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    elif kind == "scale":
        s = rng.uniform(0.45, 0.75)
        sw, sh = max(1, round(w * s)), max(1, round(h * s))
        out = Image.new("RGB", (w, h), (255, 255, 255))
        out.paste(picture.resize((sw, sh), Image.Resampling.BILINEAR),
                  (int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))))
    else:
        raise ValueError(f"alteration {kind!r}: use one of {ALTERATIONS}")
    return np.asarray(out, dtype=np.uint8)


def altered_copies(images, kind: str, seed: int = 0) -> list[np.ndarray]:
    """Each ``(H, W, 3)`` uint8 image of ``images`` (sizes may differ) through :func:`altered_copy` (``kind``),
    drawn from ``seed`` and the kind only, so every model is queried with the same altered photos."""
    rng = alteration_rng(kind, seed)
    return [altered_copy(image, kind, rng) for image in images]


def alteration_rng(kind: str, seed: int = 0) -> np.random.Generator:
    """The random stream of ``kind``'s alterations: photo ``i`` of a sequence gets the ``i``-th draws, so a
    sequence altered in chunks with one generator is altered as :func:`altered_copies` alters it whole."""
    if kind not in ALTERATIONS:
        raise ValueError(f"alteration {kind!r}: use one of {ALTERATIONS}")
    return np.random.default_rng([seed, ALTERATIONS.index(kind)])


def instance_recall_at_k(mask: np.ndarray, k: int) -> float:
    """Share of queries with at least one relevant item in the top ``k``: ``mask`` ``(Q, K ≥ k)`` bool.

    This is Recall@K as metric learning reports it (a hit rate: 1 for a query as soon as one relevant
    item shows up), not :func:`cbir_tutorial.evaluation.metrics.recall_at_k`, the share of all R relevant
    items found.
    """
    mask = np.atleast_2d(np.asarray(mask, dtype=bool))
    if not 1 <= k <= mask.shape[1]:
        raise ValueError(f"k={k}: need 1 <= k <= {mask.shape[1]} (the results retrieved per query)")
    return float(mask[:, :k].any(axis=1).mean())


def instance_retrieval(query_features: np.ndarray, gallery_features: np.ndarray, query_items, gallery_items,
                       ks=(1, 10)) -> dict[str, float]:
    """``{"recall@1": ..., "recall@10": ...}``: :func:`instance_recall_at_k` of the queries ``(Q, D)`` against
    the gallery ``(N, D)``; a result is relevant when its item id equals the query's."""
    from ..evaluation.metrics import relevance_mask
    from ..search.backends import make_index

    k = min(max(ks), len(gallery_features))
    _, found = make_index("exact", np.asarray(gallery_features, dtype=np.float32)).search(
        np.asarray(query_features, dtype=np.float32), k)
    mask = relevance_mask(np.asarray(query_items, dtype=object).astype(str),
                          np.asarray(gallery_items, dtype=object).astype(str)[found])
    return {f"recall@{k_}": instance_recall_at_k(mask, min(k_, k)) for k_ in ks}


def farfetch_photo_pairs(root: str | os.PathLike | None = None, **options) -> pd.DataFrame:
    """The Farfetch listings that have both photos: columns ``id, model_path, cutout_path, category``
    (the model photo is the query, the cut-out of the same listing the one relevant item).

    ``root`` and ``options`` as :func:`cbir_tutorial.data.loaders.load_farfetch` takes them.
    """
    from ..data.loaders import load_farfetch

    model = load_farfetch(root, "model", **options).table[["id", "path", "category"]]
    cutout = load_farfetch(root, "cutout", **options).table[["id", "path"]]
    pairs = model.merge(cutout, on="id", suffixes=("_model", "_cutout"))
    return pairs.rename(columns={"path_model": "model_path", "path_cutout": "cutout_path"})[
        ["id", "model_path", "cutout_path", "category"]]
