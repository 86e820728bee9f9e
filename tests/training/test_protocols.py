import numpy as np
import pytest
from PIL import Image

from cbir_tutorial.data.images import load_rgb
from cbir_tutorial.training.protocols import (ALTERATIONS, altered_copies, altered_copy, category_map_at_k,
                                              farfetch_photo_pairs, instance_recall_at_k, instance_retrieval,
                                              unseen_categories_split, unseen_products_split, validation_split)

LABELS = np.array(["bag"] * 10 + ["shoe"] * 6 + ["watch"] * 3 + ["belt"] * 1 + ["cap"] * 8 + [""] * 2, dtype=object)


def test_unseen_categories_puts_whole_categories_on_one_side():
    split = unseen_categories_split(LABELS, seed=0)
    assert not (split.train & split.test).any()
    assert not set(split.train_categories) & set(split.test_categories)
    assert len(split.test_categories) == 2 and "belt" not in split.test_categories  # 4 usable: half of them
    assert set(LABELS[split.test]) == set(split.test_categories)
    assert (split.train | split.test).sum() == len(LABELS) - 2  # every labelled product, on one side
    again = unseen_categories_split(LABELS, seed=0)
    assert np.array_equal(again.test, split.test)
    tests = {tuple(unseen_categories_split(LABELS, seed=s).test_categories) for s in range(10)}
    assert len(tests) > 1
    with pytest.raises(ValueError):
        unseen_categories_split(["a", "a", "b"])


def test_unseen_products_holds_out_products_in_every_large_category():
    split = unseen_products_split(LABELS, test_fraction=0.5, seed=1)
    assert not (split.train & split.test).any()
    for name, n_test in (("bag", 5), ("shoe", 3), ("cap", 4), ("watch", 0), ("belt", 0)):
        assert (split.test & (LABELS == name)).sum() == n_test
        assert (split.train & (LABELS == name)).sum() == (LABELS == name).sum() - n_test
    assert set(split.test_categories) <= set(split.train_categories)
    assert not np.array_equal(split.test, unseen_products_split(LABELS, seed=2).test)


def test_validation_comes_from_the_training_side_only():
    split = unseen_products_split(LABELS, seed=0)
    for by in ("products", "categories"):
        train, val = validation_split(LABELS, split.train, fraction=0.3, by=by, seed=0)
        assert val.any() and train.any()
        assert not (val & split.test).any() and not (train & split.test).any() and not (train & val).any()
        assert ((train | val) == split.train).all()
    _, val = validation_split(LABELS, split.train, by="categories", seed=0)
    train, _ = validation_split(LABELS, split.train, by="categories", seed=0)
    assert not set(LABELS[val]) & set(LABELS[train])


def test_category_map_at_k_on_separable_features():
    labels = np.array(["a"] * 3 + ["b"] * 3)
    features = np.eye(2, 4)[[0, 0, 0, 1, 1, 1]] + np.random.default_rng(0).normal(scale=0.01, size=(6, 4))
    assert category_map_at_k(features, labels, k=2) == pytest.approx(1.0)
    assert category_map_at_k(features, labels[[0, 3, 1, 4, 2, 5]], k=2) < 0.5


def test_instance_recall_is_a_hit_rate():
    mask = np.array([[False, True, True], [False, False, False], [True, False, False], [False, False, True]])
    assert instance_recall_at_k(mask, 1) == 0.25
    assert instance_recall_at_k(mask, 2) == 0.5
    assert instance_recall_at_k(mask, 3) == 0.75
    with pytest.raises(ValueError):
        instance_recall_at_k(mask, 4)


def test_instance_retrieval_finds_the_same_item():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(20, 8))
    items = [f"p{i}" for i in range(20)]
    queries = gallery[[3, 7, 11]] + rng.normal(scale=0.01, size=(3, 8))
    assert instance_retrieval(queries, gallery, ["p3", "p7", "p11"], items) == {"recall@1": 1.0, "recall@10": 1.0}
    wrong = instance_retrieval(queries, gallery, ["p4", "p7", "p12"], items, ks=(1,))
    assert wrong == {"recall@1": pytest.approx(1 / 3)}


@pytest.fixture(scope="module")
def photos(sample_dir):
    return np.stack([load_rgb(p, 64) for p in sorted((sample_dir / "images").glob("*.jpg"))[:4]])


@pytest.mark.parametrize("kind", ALTERATIONS)
def test_altered_copies_change_the_photo_and_are_seeded(photos, kind):
    out = np.stack(altered_copies(photos, kind, seed=0))
    assert out.shape == photos.shape and out.dtype == np.uint8
    assert (np.abs(out.astype(int) - photos).reshape(4, -1).mean(axis=1) > 3).all()
    np.testing.assert_array_equal(out, np.stack(altered_copies(photos, kind, seed=0)))
    assert not np.array_equal(out, np.stack(altered_copies(photos, kind, seed=1)))


def test_scale_leaves_a_white_border(photos):
    out = altered_copy(photos[0], "scale", np.random.default_rng(0))
    assert (out[0] == 255).all() or (out[-1] == 255).all() or (out[:, 0] == 255).all()
    with pytest.raises(ValueError, match="alteration"):
        altered_copy(photos[0], "blur", np.random.default_rng(0))
    with pytest.raises(ValueError, match="alteration"):
        altered_copies(photos, "blur")


def test_altered_copies_keep_each_photos_own_size(photos):
    mixed = [photos[0], photos[1][:40, :30]]
    assert [a.shape for a in altered_copies(mixed, "crop")] == [(64, 64, 3), (40, 30, 3)]


def test_farfetch_pairs_join_the_two_photos_of_a_listing(tmp_path, sample_dir):
    from farfetch_layout import build_farfetch_layout

    root = build_farfetch_layout(tmp_path / "farfetch", sample_dir, n_listings=40)
    pairs = farfetch_photo_pairs(root)
    assert list(pairs.columns) == ["id", "model_path", "cutout_path", "category"]
    assert len(pairs) > 10 and pairs["id"].is_unique
    assert (pairs["model_path"] != pairs["cutout_path"]).all()
    assert pairs["model_path"].str.contains("model").all() and pairs["cutout_path"].str.contains("cutout").all()


def test_model_photo_to_cutout_retrieval(tmp_path, sample_dir, lite_extractor):
    from farfetch_layout import build_farfetch_layout

    from cbir_tutorial.training.report import photo_pair_retrieval

    pairs = farfetch_photo_pairs(build_farfetch_layout(tmp_path / "farfetch", sample_dir, n_listings=30))
    found = photo_pair_retrieval(lite_extractor, pairs, cache=False)
    assert found["n_pairs"] <= len(pairs) and found["n_pairs"] >= 20  # the layout's few unreadable files are left out
    assert 0.5 < found["recall@1"] <= found["recall@10"] <= 1  # the "model photo" is the cut-out mirrored
    shuffled = pairs.assign(cutout_path=pairs["cutout_path"].sample(frac=1, random_state=0).to_numpy())
    assert photo_pair_retrieval(lite_extractor, shuffled, cache=False)["recall@1"] < found["recall@1"]


class MeanColour:
    """The smallest extractor :func:`altered_features` accepts: each photo's mean colour at 16 px, per channel."""

    input_size, resize, batch_size = 16, "squash", 4

    def features_of_pixels(self, pixels):
        return pixels.reshape(len(pixels), -1, 3).mean(axis=1).astype(np.float32)


def test_altered_features_in_chunks_are_the_whole_list_altered_at_once(sample_catalogue, monkeypatch):
    from cbir_tutorial.training import report

    paths = sample_catalogue.paths[:7]
    whole = {kind: MeanColour().features_of_pixels(np.stack([load_rgb(Image.fromarray(p), 16) for p in
                                                             altered_copies([load_rgb(q) for q in paths], kind, 3)]))
             for kind in ("crop", "scale")}
    monkeypatch.setattr(report, "ALTERED_CHUNK", 3)  # 3 + 3 + 1 photos
    first, second = report.altered_features(paths, [MeanColour(), MeanColour()], ("crop", "scale"), seed=3)
    for kind in ("crop", "scale"):
        assert first[kind].shape == (7, 3)
        np.testing.assert_array_equal(first[kind], whole[kind])
        np.testing.assert_array_equal(second[kind], whole[kind])
